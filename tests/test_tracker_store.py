"""The project's SQL tracker store and the migration, in process, on real SQLite files and real PostgreSQL
databases (each test creates its own database ``t_<random>`` and drops it at the end).

The faults are real: PostgreSQL connections are terminated with ``pg_terminate_backend`` and the database
is closed with ``ALTER DATABASE … ALLOW_CONNECTIONS false``; tables are really dropped.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest
import sqlalchemy as sa
from rasa.core.tracker_store import FailSafeTrackerStore, InMemoryTrackerStore, SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    SessionStarted,
    SlotSet,
    UserUtteranceReverted,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker, EventVerbosity
from sqlalchemy.engine import URL, make_url

from rasa_ext.tracker_store import ResilientSQLTrackerStore, TrackerStoreUnavailable, clean_text
from scripts.migrate import migrate
from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = Domain.load(str(ROOT / "domain.yml"))


# --- PostgreSQL databases of the test's own (also used by tests/test_db_faults.py) ----------------------

def maintenance_engine() -> sa.engine.Engine:
    """The ``postgres`` maintenance database of the test server, in autocommit mode."""
    return sa.create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT", future=True)


class PgDatabase:
    """A PostgreSQL database created for one test (``t_<random>``) and dropped at the end."""

    def __init__(self) -> None:
        self.name = f"t_{uuid.uuid4().hex[:16]}"
        self.url: URL = make_url(PG_URL).set(database=self.name)
        self.admin = maintenance_engine()
        try:
            self._sql(f'CREATE DATABASE "{self.name}"')
        except sa.exc.OperationalError as error:  # a missing service is a failure, never a skip
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL}: {error}")

    def _sql(self, statement: str) -> None:
        with self.admin.connect() as connection:
            connection.execute(sa.text(statement))

    def terminate_connections(self) -> int:
        """Ends every connection to the database (as a restart or a proxy would); how many there were."""
        with self.admin.connect() as connection:
            return len(connection.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": self.name}).all())

    def block(self) -> None:
        """The database refuses every connection, and the open ones are ended: it is unreachable."""
        self._sql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self.terminate_connections()

    def unblock(self) -> None:
        self._sql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    def drop_and_recreate(self) -> None:
        self._sql(f'DROP DATABASE "{self.name}" WITH (FORCE)')
        self._sql(f'CREATE DATABASE "{self.name}"')

    def engine(self) -> sa.engine.Engine:
        return sa.create_engine(self.url, future=True)

    def drop(self) -> None:
        self._sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.dispose()


@pytest.fixture()
def pg_db() -> Iterator[PgDatabase]:
    database = PgDatabase()
    try:
        yield database
    finally:
        database.drop()


# --- helpers ---------------------------------------------------------------------------------------------

def store_on(url: URL, **options) -> ResilientSQLTrackerStore:
    """The store as Rasa creates it from an endpoints file's keys."""
    if url.get_backend_name() == "sqlite":
        return ResilientSQLTrackerStore(domain=DOMAIN, dialect="sqlite", db=url.database, **options)
    return ResilientSQLTrackerStore(domain=DOMAIN, dialect="postgresql", host=url.host, port=url.port or 5432,
                                    db=url.database, username=url.username, password=url.password, **options)


def conversation(sender: str, text: str = "I'd like to book a consultation") -> DialogueStateTracker:
    # From SessionStarted on: what Rasa's store gives back (it counts stored events from the session's start).
    return DialogueStateTracker.from_events(sender, [
        SessionStarted(), ActionExecuted("action_listen"),
        UserUttered(text, intent={"name": "request_consultation", "confidence": 0.97}),
        SlotSet("requested_slot", "name"),
    ], slots=DOMAIN.slots)


def run(coroutine):
    return asyncio.run(coroutine)


def stored_rows(url: URL) -> List[dict]:
    engine = sa.create_engine(url, future=True)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text("SELECT * FROM events ORDER BY id"))]
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> Iterator[URL]:
    if request.param == "sqlite":
        yield make_url(f"sqlite:///{tmp_path / 'conversations.db'}")
    else:
        database = PgDatabase()
        try:
            yield database.url
        finally:
            database.drop()


# --- storable text ---------------------------------------------------------------------------------------

def test_clean_text_removes_controls_and_lone_surrogates_but_keeps_newline_tab_and_unicode():
    assert clean_text("a\x00b\x1b[31mc\r\n\td\x7fe\x85f\ud800g é—🙂") == "ab[31mc\n\tdefg é—🙂"
    assert clean_text("plain") == "plain"


def test_nul_and_control_characters_are_removed_before_storage(url):
    store = store_on(url)
    sender = "visitor\x00\x1b-" + uuid.uuid4().hex
    tracker = conversation(sender, text="my back\x00 hurts\r\n\tbadly \ud83d")
    tracker.update(UserUttered("/greet\x00", intent={"name": "greet\x00", "confidence": 1.0}))
    run(store.save(tracker))  # Rasa's store: PostgreSQL refuses the NUL (and the server exits)

    rows = stored_rows(url)
    assert {row["sender_id"] for row in rows} == {"visitor-" + sender.rsplit("-", 1)[1]}
    texts = [json.loads(row["data"]).get("text") for row in rows if row["type_name"] == "user"]
    assert texts == ["my back hurts\n\tbadly ", "/greet"]
    assert all("\\u0000" not in row["data"] and "\\u001b" not in row["data"] for row in rows)
    assert "greet" in {row["intent_name"] for row in rows}

    again = run(store.retrieve(sender))  # the same visitor, by the id the channel gives
    assert again is not None and again.sender_id == sender
    assert [event.as_dict().get("text") for event in again.events if isinstance(event, UserUttered)] == texts
    assert again.get_slot("requested_slot") == "name"
    tracker.update(ActionExecuted("action_listen"))
    run(store.save(tracker))  # only the new event is added
    assert len(stored_rows(url)) == len(rows) + 1


def test_a_failing_value_is_never_taken_for_a_missing_schema(pg_db, monkeypatch):
    """Rasa's store calls sys.exit on any ValueError in a session; ours raises a clear error instead."""
    monkeypatch.setenv("POSTGRESQL_SCHEMA", "no_such_schema")
    store = store_on(pg_db.url)
    with pytest.raises(TrackerStoreUnavailable, match="schema no_such_schema"):
        run(store.retrieve("someone"))


def test_an_unreadable_stored_event_is_named_by_id_and_never_starts_the_visitor_over(tmp_path):
    url = make_url(f"sqlite:///{tmp_path / 'conversations.db'}")
    store = store_on(url)
    run(store.save(conversation("damaged")))
    run(store.save(conversation("intact")))
    engine = sa.create_engine(url, future=True)
    with engine.begin() as connection:
        damaged = connection.execute(sa.text(
            "SELECT max(id) FROM events WHERE sender_id = 'damaged'")).scalar()
        connection.execute(sa.text("UPDATE events SET data = 'not json' WHERE id = :id"), {"id": damaged})
    engine.dispose()
    wrapped = FailSafeTrackerStore(store)
    with pytest.raises(TrackerStoreUnavailable, match=f"event id {damaged} cannot be read"):
        run(wrapped.get_or_create_tracker("damaged"))
    assert run(wrapped.get_or_create_tracker("intact")).get_slot("requested_slot") == "name"


# --- dropped connections, an unreachable database --------------------------------------------------------

def test_dropped_connections_are_replaced_before_use(pg_db):
    store = store_on(pg_db.url, attempts=1)  # no retry: the pre-ping alone must replace the dead connection
    sender = uuid.uuid4().hex
    run(store.save(conversation(sender)))
    assert pg_db.terminate_connections() >= 1  # the pooled connection is gone
    tracker = run(store.retrieve(sender))
    assert tracker is not None and tracker.get_slot("requested_slot") == "name"
    pg_db.terminate_connections()
    tracker.update(UserUttered("Maria Lopez", intent={"name": "inform", "confidence": 0.9}))
    run(store.save(tracker))
    assert len(stored_rows(pg_db.url)) == len(tracker.events)


def test_a_transient_outage_is_retried(pg_db):
    sender = uuid.uuid4().hex
    run(store_on(pg_db.url).save(conversation(sender)))
    pg_db.block()
    try:
        with pytest.raises(TrackerStoreUnavailable):
            run(store_on(pg_db.url, attempts=1).retrieve(sender))
        # Back after about half a second: the waits (0.2 + 0.4 + 0.8 + 1.6 s) outlast it.
        reopen = threading.Timer(0.5, pg_db.unblock)
        reopen.start()
        tracker = run(store_on(pg_db.url, attempts=5, retry_delay=0.2).retrieve(sender))
        reopen.join()
    finally:
        pg_db.unblock()
    assert tracker is not None and tracker.get_slot("requested_slot") == "name"


def test_an_unreachable_database_raises_instead_of_starting_the_visitor_over(pg_db):
    store = store_on(pg_db.url, attempts=2, retry_delay=0.05)
    wrapped = FailSafeTrackerStore(store)  # what Rasa's Agent wraps around every tracker store
    sender = uuid.uuid4().hex
    tracker = conversation(sender)
    run(wrapped.save(tracker))
    pg_db.block()
    try:
        with pytest.raises(TrackerStoreUnavailable, match=sender):
            run(wrapped.get_or_create_tracker(sender))  # Rasa's: a fresh tracker, the visitor starts over
        tracker.update(UserUttered("Maria Lopez", intent={"name": "inform", "confidence": 0.9}))
        with pytest.raises(TrackerStoreUnavailable):
            run(wrapped.save(tracker))  # Rasa's: kept in memory only, lost at the next message
        with pytest.raises(TrackerStoreUnavailable):
            run(wrapped.retrieve_full_tracker(sender))
    finally:
        pg_db.unblock()
    resumed = run(wrapped.get_or_create_tracker(sender))
    assert [type(event).__name__ for event in resumed.events].count("SessionStarted") == 1
    assert resumed.get_slot("requested_slot") == "name"
    assert len(resumed.events) == len(tracker.events) - 1  # the turn that failed was not half stored


def test_a_query_that_waits_never_holds_up_the_servers_other_work(pg_db):
    """Rasa's store queries on the event loop: one slow query stops every conversation of the server."""
    store = store_on(pg_db.url)
    sender = uuid.uuid4().hex
    run(store.save(conversation(sender)))
    locker = pg_db.engine().connect()
    transaction = locker.begin()
    locker.execute(sa.text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))  # the store's reads now wait
    safety_net = threading.Timer(10, transaction.rollback)  # frees a blocked event loop if the test fails
    safety_net.start()

    async def scenario():
        ticks = 0

        async def other_work():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        other = asyncio.create_task(other_work())
        read = asyncio.create_task(store.retrieve(sender))
        await asyncio.sleep(0.5)
        waiting, ticked = not read.done(), ticks
        transaction.rollback()  # the lock is released: the read goes on
        tracker = await read
        other.cancel()
        return waiting, ticked, tracker

    try:
        waiting, ticked, tracker = run(scenario())
    finally:
        safety_net.cancel()
        locker.close()
    assert waiting and ticked > 0  # the read was still waiting while the loop served other work
    assert tracker.get_slot("requested_slot") == "name"


def test_other_store_errors_are_handled_by_rasa_exactly_as_before(tmp_path):
    """The FailSafeTrackerStore change lets TrackerStoreUnavailable through and nothing else."""
    stock = SQLTrackerStore(domain=DOMAIN, dialect="sqlite", db=str(tmp_path / "stock.db"))
    with stock.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE events"))  # Rasa's own store now fails with OperationalError
    store_on(make_url(f"sqlite:///{tmp_path / 'other.db'}"))  # the change is installed
    wrapped = FailSafeTrackerStore(stock)
    assert run(wrapped.retrieve("someone")) is None
    assert run(wrapped.retrieve_full_tracker("someone")) is None
    assert list(run(wrapped.keys())) == []
    tracker = conversation("someone")
    run(wrapped.save(tracker))  # falls back to memory, as Rasa does
    assert isinstance(wrapped.fallback_tracker_store, InMemoryTrackerStore)
    assert run(wrapped.fallback_tracker_store.retrieve("someone")) is not None


def test_start_up_never_waits_for_the_database(pg_db):
    pg_db.block()  # Rasa's own store loops here, every 5 s, until the database answers
    try:
        store = store_on(pg_db.url, attempts=1)
        with pytest.raises(TrackerStoreUnavailable):
            run(store.retrieve("someone"))
    finally:
        pg_db.unblock()
    migrate(pg_db.url)
    assert run(store.retrieve("someone")) is None  # reachable and set up: a new visitor, as it should be


# --- tables: created by the migration, never at request time ---------------------------------------------

def test_tables_are_never_created_at_request_time_and_the_migration_brings_them_back(url):
    store = store_on(url, retry_delay=0.01)
    sender = uuid.uuid4().hex
    run(store.save(conversation(sender)))
    engine = sa.create_engine(url, future=True)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE events"))
    with pytest.raises(TrackerStoreUnavailable, match="scripts.migrate"):
        run(store.retrieve(sender))
    with pytest.raises(TrackerStoreUnavailable):
        run(store.save(conversation(sender)))
    assert "events" not in sa.inspect(engine).get_table_names()
    engine.dispose()
    assert "events" in migrate(url)
    run(store.save(conversation(sender)))  # the same store object: no restart needed
    assert run(store.retrieve(sender)).get_slot("requested_slot") == "name"


def test_a_dropped_and_recreated_database_works_again_after_the_migration(pg_db):
    store = store_on(pg_db.url, retry_delay=0.01)
    run(store.save(conversation(uuid.uuid4().hex)))
    pg_db.drop_and_recreate()
    with pytest.raises(TrackerStoreUnavailable):
        run(store.retrieve("someone"))
    migrate(pg_db.url)
    sender = uuid.uuid4().hex
    run(store.save(conversation(sender)))
    assert run(store.retrieve(sender)).get_slot("requested_slot") == "name"


EXPECTED_TABLES = {"events", "consultation_requests", "consultation_status_history", "console_users"}


def test_the_migration_is_idempotent_and_keeps_data(url):
    first = migrate(url)
    assert EXPECTED_TABLES <= set(first)
    run(store_on(url).save(conversation("kept")))
    assert migrate(url) == []
    assert {row["sender_id"] for row in stored_rows(url)} == {"kept"}
    engine = sa.create_engine(url, future=True)
    assert EXPECTED_TABLES <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_the_migration_creates_a_missing_postgresql_database():
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = make_url(PG_URL).set(database=name)
    admin = maintenance_engine()
    try:
        created = migrate(url)
        assert created[0] == f"database {name}" and EXPECTED_TABLES <= set(created)
        assert migrate(url) == []
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _migrate_command(env: dict) -> subprocess.CompletedProcess:
    clean_env = {key: value for key, value in os.environ.items()
                 if key not in ("CLINIC_DB_URL", "CLINIC_ENDPOINTS", "RASA_ENDPOINTS")}
    return subprocess.run([sys.executable, "-m", "scripts.migrate"], cwd=ROOT, capture_output=True, text=True,
                          env={**clean_env, "PYTHONPATH": str(ROOT), **env}, timeout=120)


def test_the_migration_command_uses_the_rasa_servers_endpoints_file(tmp_path):
    database = tmp_path / "var" / "conversations.db"
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(f"tracker_store:\n  type: rasa_ext.tracker_store.ResilientSQLTrackerStore\n"
                         f"  dialect: sqlite\n  db: {database}\n")
    done = _migrate_command({"RASA_ENDPOINTS": str(endpoints)})
    assert done.returncode == 0, done.stderr
    assert "created" in done.stdout and "events" in done.stdout
    assert oct(database.stat().st_mode & 0o777) == "0o600"  # private, like the servers' files
    again = _migrate_command({"RASA_ENDPOINTS": str(endpoints)})
    assert again.returncode == 0 and "nothing to create" in again.stdout


def test_the_migration_command_says_why_it_cannot_reach_the_database():
    done = _migrate_command({"CLINIC_DB_URL": "postgresql://postgres@127.0.0.1:1/nowhere"})
    assert done.returncode == 2
    assert "cannot be prepared" in done.stderr and "Traceback" not in done.stderr


# --- the row cache and SQLite's write-ahead log (issue 9) --------------------------------------------------

def rasa_store_on(url: URL) -> SQLTrackerStore:
    """Rasa's own store on the same database: the reference for what a read must return."""
    if url.get_backend_name() == "sqlite":
        return SQLTrackerStore(domain=DOMAIN, dialect="sqlite", db=url.database)
    return SQLTrackerStore(domain=DOMAIN, dialect="postgresql", host=url.host, port=url.port or 5432,
                           db=url.database, username=url.username, password=url.password)


def dump(tracker) -> list:
    """Everything a read gives: the events, and the state replayed from them (slots, active loop, latest
    message and action, paused, followup: Rasa's ``current_state`` of all events)."""
    if tracker is None:
        return None
    return [[event.as_dict() for event in tracker.events], tracker.current_state(EventVerbosity.ALL),
            tracker.is_paused(), tracker.followup_action]


def assert_reads_as_rasa(store: ResilientSQLTrackerStore, reference: SQLTrackerStore, sender: str) -> None:
    assert dump(run(store.retrieve(sender))) == dump(run(reference.retrieve(sender)))
    assert dump(run(store.retrieve_full_tracker(sender))) == dump(run(reference.retrieve_full_tracker(sender)))


def sql(url: URL, statement: str, **values) -> None:
    engine = sa.create_engine(url, future=True)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(statement), values)
    finally:
        engine.dispose()


def test_two_servers_sharing_the_database_never_read_a_stale_conversation(url):
    """Two stores (two Rasa processes' views) take turns writing one conversation in random order; after
    every write each reads exactly what Rasa's own store reads, sessions included."""
    import random

    first, second, reference = store_on(url), store_on(url), rasa_store_on(url)
    sender = uuid.uuid4().hex
    rng = random.Random(9)
    clock = 1_700_000_000.0
    for step in range(40):
        writer = rng.choice([first, second])
        tracker = run(writer.retrieve(sender)) or DialogueStateTracker(sender, DOMAIN.slots)
        clock += 1
        if step % 13 == 0:  # a new session: reads keep only it, full reads keep all
            tracker.update(SessionStarted(timestamp=clock))
        tracker.update(ActionExecuted("action_listen", timestamp=clock + 0.25))
        tracker.update(UserUttered(f"message {step}", intent={"name": "greet", "confidence": 1.0},
                                   timestamp=clock + 0.5))
        tracker.update(SlotSet("requested_slot", f"slot {step}", timestamp=clock + 0.75))
        if step % 7 == 3:  # a form, and a reverted message: replaying them changes the state
            tracker.update(ActiveLoop("consultation_form" if step % 14 == 3 else None, timestamp=clock + 0.8))
            tracker.update(UserUtteranceReverted(timestamp=clock + 0.9))
        run(writer.save(tracker))
        for store in (first, second):
            assert_reads_as_rasa(store, reference, sender)
    assert len(stored_rows(url)) == 40 * 3 + 4 + 6 * 2  # nothing written twice


def test_a_row_committed_late_or_deleted_is_seen_by_a_store_that_cached_the_conversation(url):
    store, reference = store_on(url), rasa_store_on(url)
    sender = uuid.uuid4().hex
    run(store.save(conversation(sender)))
    event = json.dumps(ActionExecuted("utter_late", timestamp=2_000_000_000.0).as_dict())
    top = max(row["id"] for row in stored_rows(url))
    # Another process's insert commits with a higher id, then one with a lower id (a later commit).
    sql(url, "INSERT INTO events (id, sender_id, type_name, timestamp, data) VALUES (:id, :s, 'action', 2e9, :d)",
        id=top + 10, s=sender, d=event)
    assert_reads_as_rasa(store, reference, sender)
    sql(url, "INSERT INTO events (id, sender_id, type_name, timestamp, data) VALUES (:id, :s, 'action', 2e9, :d)",
        id=top + 5, s=sender, d=event)
    assert_reads_as_rasa(store, reference, sender)
    assert sum(isinstance(e, ActionExecuted) and e.action_name == "utter_late"
               for e in run(store.retrieve(sender)).events) == 2
    sql(url, "DELETE FROM events WHERE id = :id", id=top + 5)
    assert_reads_as_rasa(store, reference, sender)
    sql(url, "DELETE FROM events WHERE sender_id = :s", s=sender)
    assert run(store.retrieve(sender)) is None


def test_rows_written_again_under_the_same_ids_are_seen_by_a_store_that_cached_the_conversation(url):
    """After a database is dropped and recreated, ids start again: another server can write as many rows
    for the conversation, under the same ids, as this store has cached. The count alone matches."""
    store, reference = store_on(url), rasa_store_on(url)
    sender = uuid.uuid4().hex
    run(store.save(conversation(sender)))
    assert_reads_as_rasa(store, reference, sender)
    ids = [row["id"] for row in stored_rows(url) if row["sender_id"] == sender]
    sql(url, "DELETE FROM events WHERE sender_id = :s", s=sender)
    for number, row_id in enumerate(ids):
        event = json.dumps(ActionExecuted(f"utter_again_{number}", timestamp=2_000_000_000.0 + number).as_dict())
        sql(url, "INSERT INTO events (id, sender_id, type_name, timestamp, data) "
                 "VALUES (:id, :s, 'action', :t, :d)", id=row_id, s=sender, t=2e9 + number, d=event)
    assert_reads_as_rasa(store, reference, sender)


def test_a_cached_read_fetches_only_the_rows_added_since(tmp_path):
    url = make_url(f"sqlite:///{tmp_path / 'conversations.db'}")
    store = store_on(url)
    sender = uuid.uuid4().hex
    tracker = conversation(sender)
    run(store.save(tracker))
    statements: List[str] = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *args: statements.append(statement))
    run(store.retrieve(sender))
    tracker.update(ActionExecuted("action_listen"))
    run(store.save(tracker))
    # No statement reads the whole conversation (Rasa's query, or the store's own full read) again.
    # (The check reads one row's data: the last cached id's, inside max(CASE ...).)
    reads = [s for s in statements if "events.data" in s and "CASE WHEN" not in s]
    assert reads and all("events.id >" in s for s in reads), statements
    assert not any("max(events.timestamp)" in s for s in statements)
    assert len(stored_rows(url)) == len(tracker.events)


def test_sqlite_runs_with_a_write_ahead_log_and_no_fsync_per_commit(tmp_path):
    store = store_on(make_url(f"sqlite:///{tmp_path / 'conversations.db'}"))
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    plain = store_on(make_url(f"sqlite:///{tmp_path / 'plain.db'}"), sqlite_wal=False)
    with plain.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"


def test_a_cached_read_deserialises_only_the_rows_added_since(tmp_path, monkeypatch):
    import rasa_ext.tracker_store as module

    store = store_on(make_url(f"sqlite:///{tmp_path / 'conversations.db'}"))
    sender = uuid.uuid4().hex
    tracker = conversation(sender)
    run(store.save(tracker))
    run(store.retrieve(sender))
    deserialised: List[dict] = []

    def counting(values):
        deserialised.extend(values)
        return module.deserialise_events.__wrapped__(values)

    counting.__wrapped__ = module.deserialise_events
    monkeypatch.setattr(module, "deserialise_events", counting)
    tracker.update(ActionExecuted("utter_greet"))
    tracker.update(BotUttered("Hello", {"buttons": [{"title": "a", "payload": "/greet"}]}))
    run(store.save(tracker))
    read = run(store.retrieve(sender))
    assert [value["event"] for value in deserialised] == ["action", "bot"]
    assert dump(read) == dump(run(rasa_store_on(store.engine.url).retrieve(sender)))


def test_the_cached_events_are_never_handed_out_nor_changed_by_what_a_tracker_does(url):
    """Rasa reassigns the attributes of a tracker's events (``timestamp`` when it logs events, ``metadata``
    with the model id): each read gets its own event objects, so the next read is still what is stored."""
    store, reference = store_on(url), rasa_store_on(url)
    sender = uuid.uuid4().hex
    run(store.save(conversation(sender)))
    first, second = run(store.retrieve(sender)), run(store.retrieve(sender))
    assert not {id(event) for event in first.events} & {id(event) for event in second.events}
    for event in first.events:
        event.timestamp = 1.0
        event.metadata = {"model_id": "another"}
    first.model_id = "another"
    first.update(ActionExecuted("utter_greet"))
    assert_reads_as_rasa(store, reference, sender)


def test_a_row_id_given_again_with_other_data_is_deserialised_again(tmp_path):
    """SQLite gives the id of a deleted last row to the next row: the cached events of that id no longer
    count once the data differs (here another row is deleted too, so the rows are read again)."""
    url = make_url(f"sqlite:///{tmp_path / 'conversations.db'}")
    store, reference = store_on(url), rasa_store_on(url)
    sender = uuid.uuid4().hex
    tracker = conversation(sender)
    tracker.update(ActionExecuted("utter_first", timestamp=2_000_000_000.0))
    run(store.save(tracker))
    assert_reads_as_rasa(store, reference, sender)
    top = max(row["id"] for row in stored_rows(url))
    sql(url, "DELETE FROM events WHERE id >= :id", id=top - 1)
    event = json.dumps(ActionExecuted("utter_second", timestamp=2_000_000_000.0).as_dict())
    sql(url, "INSERT INTO events (id, sender_id, type_name, timestamp, data) VALUES (:id, :s, 'action', 2e9, :d)",
        id=top, s=sender, d=event)
    assert_reads_as_rasa(store, reference, sender)
    assert run(store.retrieve(sender)).latest_action_name == "utter_second"


def test_sqlite_connections_are_kept_between_messages(tmp_path):
    """A pool, not a connection per query: closing the last connection of a WAL database checkpoints it
    (with fsyncs) at every message."""
    store = store_on(make_url(f"sqlite:///{tmp_path / 'conversations.db'}"))
    opened = []
    sa.event.listen(store.engine, "connect", lambda *_: opened.append(1))
    sender = uuid.uuid4().hex
    for _ in range(20):
        run(store.save(conversation(sender)))
        assert run(store.retrieve(sender)) is not None
    assert len(opened) <= 3, len(opened)


def test_a_sqlite_file_replaced_under_a_running_store_is_opened_again(tmp_path):
    """A pooled connection would write to a deleted file unseen; the store opens the path again, so the
    missing tables are reported (the technical-problem reply) until the migration makes them."""
    path = tmp_path / "conversations.db"
    url = make_url(f"sqlite:///{path}")
    store = store_on(url, retry_delay=0.01)
    sender = uuid.uuid4().hex
    run(store.save(conversation(sender)))
    for name in ("conversations.db", "conversations.db-wal", "conversations.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(TrackerStoreUnavailable, match="scripts.migrate"):
        run(store.retrieve(sender))
    migrate(url)
    assert run(store.retrieve(sender)) is None  # a new, empty database: the old file is gone
    run(store.save(conversation(sender)))
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM events WHERE sender_id = ?", (sender,)).fetchone()[0] > 0
