"""The project's SQL tracker store: Rasa's ``SQLTrackerStore`` for a database that comes and goes.

Configured by module path in the endpoints files (``tracker_store.type:
rasa_ext.tracker_store.ResilientSQLTrackerStore``, with the same keys as Rasa's ``SQL`` type). It keeps
Rasa's table, rows and queries, and changes what happens when the database misbehaves:

* Pooled connections are pinged before use (``pool_pre_ping``), so a connection the database dropped
  (restart, ``pg_terminate_backend``, a proxy's idle timeout) is replaced instead of failing the message.
* A transient error (connection lost, database refusing connections, SQLite busy) is retried a bounded
  number of times. Queries run in a worker thread and the waits are asynchronous, so a slow or
  unreachable database never holds up the server's other conversations.
* When the database still cannot be read or written, the store raises :class:`TrackerStoreUnavailable`.
  Rasa's own store, wrapped by Rasa's ``FailSafeTrackerStore``, would hand back a fresh tracker instead:
  the visitor would be silently started over (disclaimer again, form lost) and the turn kept only in
  memory. Here the message fails as a whole, the project's channels answer with the technical-problem
  reply, and the conversation resumes where it was once the database is back.
* Tables are never created while serving messages: ``python -m scripts.migrate`` creates them (``make
  run`` runs it first). At start-up the store creates missing tables as Rasa's does, but never waits for
  the database: a server started during an outage serves (the technical-problem reply) until it is back.
* Text is made storable before it reaches the database: NUL (which PostgreSQL refuses) and the other
  control characters except newline and tab, and lone surrogates (which no encoder accepts), are removed
  from sender ids and from every string of an event. Rasa's own store took PostgreSQL's refusal of a NUL in
  a sender id for a missing schema and made the whole server exit.

And it is cheaper per message, the same at turn 100 as at turn 1 (a store read the whole session on every
message):

* Each store keeps the rows it last read of its most recent conversations (:class:`Recent`). A read
  checks them against the database with one query (the count of the sender's rows up to the last cached
  id, and that row's data) and fetches only the rows added since; anything else (a row another process inserted below the last cached id, a
  deleted row) makes it read the whole conversation again, as Rasa does. So several Rasa processes may share
  the database. Stored rows are never updated in place (Rasa's store only inserts them). The latest session
  is selected from the rows exactly as Rasa's query selects it (``timestamp >=`` the latest
  ``session_started`` timestamp). ``save`` counts the stored events of the session from the same cache
  instead of running Rasa's count query.
* It also keeps the events it deserialised from those rows (``Parsed``), so a read deserialises
  only the new rows (``json.loads`` and ``Event.from_parameters``, the larger part of a read at turn 100)
  and replays the tracker from copies of the others with ``DialogueStateTracker.from_events``, as Rasa's
  ``from_dict`` does from all of them. A cached event counts only while its row still has the same data.
* SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit no longer waits for an fsync (one per
  message, ~24 ms on this machine, taken while holding the database's only write lock), and readers never
  wait for the writer. The database stays consistent after any crash; a power cut or an operating-system
  crash (not a crash of the server) may lose the last commits before the next checkpoint.
* SQLite connections are kept in a pool (SQLAlchemy 1.4 opens and closes one per query for a SQLite
  file): closing the last connection to a WAL database checkpoints it and deletes the log, with fsyncs,
  so a save cost about 25 ms. A pooled connection is used only while its file is still the database's
  path (same device and inode, checked at each checkout): a database file deleted or replaced under a
  running server is opened again, as before, instead of being written to unseen.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import os
import re
import threading
from typing import Any, Callable, Dict, Generator, Generic, Iterable, List, Optional, Text, Tuple, TypeVar

import sqlalchemy as sa
from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import (
    FailSafeTrackerStore,
    SQLTrackerStore,
    TrackerStore,
    create_engine_kwargs,
    ensure_schema_exists,
    is_postgresql_url,
    validate_port,
)
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import Event, SessionStarted, deserialise_events
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException
from rasa.shared.nlu.constants import INTENT_NAME_KEY
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from rasa_ext.version import require_rasa_version

logger = logging.getLogger(__name__)

T = TypeVar("T")
V = TypeVar("V")

# Control characters except \t (09) and \n (0a), DEL and the C1 controls, and lone surrogates.
_UNSTORABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")

MIGRATE_HINT = "create the tables with `python -m scripts.migrate`"


class TrackerStoreUnavailable(RasaException):
    """The conversation could not be read or written: the database is unreachable or not set up.

    Raised instead of handing back a fresh tracker, so that the visitor is told there is a technical
    problem rather than being silently started over. The message names the conversation id and the
    database's error (its first line, never a statement's values)."""


def unavailable(message: str) -> TrackerStoreUnavailable:
    """The exception for ``message``, logged (the message holds ids and database errors, never text)."""
    logger.error("The conversations database is unavailable: %s", message)
    return TrackerStoreUnavailable(message)


def clean_text(text: str) -> str:
    """``text`` without the characters a database may refuse (NUL and other controls, lone surrogates);
    newline and tab are kept."""
    return _UNSTORABLE.sub("", text) if _UNSTORABLE.search(text) else text


def clean(value: Any) -> Any:
    """``value`` (an event's JSON-able data) with :func:`clean_text` applied to every string in it."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(key) if isinstance(key, str) else key: clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(item) for item in value]
    return value


def describe(error: BaseException) -> str:
    """The error's type and the first line of the database's message: the statement and its values stay
    out (they may hold a visitor's text)."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    first = lines[0].strip()[:200] if lines else ""
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__


def is_transient(error: SQLAlchemyError) -> bool:
    """Whether trying again may succeed: the connection was lost or refused, or the database was busy.

    A missing table (PostgreSQL's ``ProgrammingError``) or a refused value is not retried. SQLite reports
    a missing table as an ``OperationalError`` too; retrying it a few times costs a few tenths of a second.
    """
    if isinstance(error, sa.exc.TimeoutError):  # no pooled connection free in time
        return True
    if not isinstance(error, DBAPIError):
        return False
    return error.connection_invalidated or isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError))


# One stored event as the cache keeps it: (id, type_name, timestamp, data).
Row = Tuple[int, str, Optional[float], str]
# The events deserialised from the rows last read, by row id: (the row's data, its events). They are never
# handed out (a tracker gets copies, see fresh()); an entry counts only while the row still has that data
# (SQLite may give a deleted row's id to a new row).
Parsed = Dict[int, Tuple[str, List[Event]]]


def latest_session(rows: List[Row]) -> List[Row]:
    """The rows of the latest session, as Rasa's ``SQLTrackerStore._event_query`` selects them: those whose
    timestamp is ``>=`` the greatest timestamp of a ``session_started`` row, or all rows when there is none
    (SQL's ``max`` skips NULLs, and a NULL timestamp is never ``>=`` anything)."""
    starts = [stamp for _, type_name, stamp, _ in rows if type_name == SessionStarted.type_name and stamp is not None]
    if not starts:
        return rows
    start = max(starts)
    return [row for row in rows if row[2] is not None and row[2] >= start]


def fresh(event: Event) -> Event:
    """A shallow copy of ``event`` (what ``copy.copy`` makes of it, Rasa's events having no copy hooks,
    four times faster): Rasa reassigns attributes of a tracker's events (``timestamp``, ``metadata``), so a
    tracker never gets the cached objects themselves."""
    copied = object.__new__(type(event))
    copied.__dict__.update(event.__dict__)
    return copied


class Recent(Generic[V]):
    """A value per conversation for the most recently used conversations (at most ``size``; 0 keeps none).
    Shared by the store's worker threads: values are replaced, never changed in place."""

    def __init__(self, size: int) -> None:
        self.size = max(0, int(size))
        self._values: "collections.OrderedDict[str, V]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[V]:
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def put(self, key: str, value: V) -> None:
        if not self.size:
            return
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)


def use_wal(dbapi_connection: Any, _record: Any) -> None:
    """SQLite: write-ahead log, and no fsync at each commit (see the module's docstring)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def file_identity(path: str) -> Optional[Tuple[int, int]]:
    """(device, inode) of the file at ``path``, or None when there is none."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def pool_sqlite_file(engine_kwargs: Dict[str, Any], url: Any) -> Optional[str]:
    """For a SQLite file: ``engine_kwargs`` set for a pool of connections any worker thread may use; the
    file's path (None for another database, or SQLite in memory)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    engine_kwargs["poolclass"] = sa.pool.QueuePool
    engine_kwargs["connect_args"] = {**(engine_kwargs.get("connect_args") or {}), "check_same_thread": False}
    return os.path.abspath(url.database)


def watch_sqlite_file(engine: sa.engine.Engine, path: str) -> None:
    """Each pooled connection remembers which file it opened; one whose file is no longer at ``path`` is
    discarded at checkout (SQLAlchemy then connects again)."""

    def remember(_dbapi_connection: Any, record: Any) -> None:
        record.info["file"] = file_identity(path)

    def check(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.get("file") != file_identity(path):
            raise sa.exc.DisconnectionError("the SQLite database file was replaced")

    sa.event.listen(engine, "connect", remember)
    sa.event.listen(engine, "checkout", check)


class ResilientSQLTrackerStore(SQLTrackerStore):
    """Rasa's SQL tracker store with pre-pinged connections, bounded retries, an exception (never a fresh
    tracker) when the database cannot answer, no table creation at request time, and storable text.

    Extra endpoint keys (optional): ``attempts`` (tries per read or write, default 3), ``retry_delay``
    (seconds before the second try, doubled each time, default 0.2), ``connect_timeout`` (PostgreSQL,
    seconds, default 3), ``cached_conversations`` (how many conversations' rows and events are kept, default
    256; 0 reads and deserialises every conversation whole, as Rasa does), ``sqlite_wal`` (default true).
    """

    def __init__(
        self,
        domain: Optional[Domain] = None,
        dialect: Text = "sqlite",
        host: Optional[Text] = None,
        port: Optional[int] = None,
        db: Text = "rasa.db",
        username: Optional[Text] = None,
        password: Optional[Text] = None,
        event_broker: Optional[EventBroker] = None,
        login_db: Optional[Text] = None,
        query: Optional[Dict] = None,
        attempts: int = 3,
        retry_delay: float = 0.2,
        connect_timeout: int = 3,
        cached_conversations: int = 256,
        sqlite_wal: bool = True,
        **kwargs: Any,
    ) -> None:
        # Rasa's constructor is not called: it loops forever while the database is unreachable and, with
        # ``login_db``, creates the database (the migration's job here). The rest is as Rasa sets it up.
        let_unavailable_through()
        self.attempts = max(1, int(attempts))
        self.retry_delay = float(retry_delay)
        url = self.get_db_url(dialect, host, validate_port(port), db, username, password, None, query)
        engine_kwargs: Dict[str, Any] = create_engine_kwargs(url)
        if is_postgresql_url(url):
            connect_args = dict(engine_kwargs.get("connect_args") or {})
            connect_args.setdefault("connect_timeout", int(connect_timeout))
            engine_kwargs["connect_args"] = connect_args
        sqlite_file = pool_sqlite_file(engine_kwargs, sa.engine.make_url(url))
        # hide_parameters: an error never carries a statement's values (a visitor's text) into a log.
        self.engine = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True, **engine_kwargs)
        if sqlite_file:
            watch_sqlite_file(self.engine, sqlite_file)
        if self.engine.dialect.name == "sqlite" and sqlite_wal:
            sa.event.listen(self.engine, "connect", use_wal)
        self.cache: Recent[List[Row]] = Recent(cached_conversations)
        self.parsed: Recent[Parsed] = Recent(cached_conversations)
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
        TrackerStore.__init__(self, domain, event_broker, **kwargs)
        self._create_tables_at_start()

    def _create_tables_at_start(self) -> None:
        """Creates missing tables once, as Rasa's store does at start-up; never waits for the database."""
        try:
            self.Base.metadata.create_all(self.engine)
        except SQLAlchemyError as error:
            # Unreachable now (each message gets the technical-problem reply until it is back), or created
            # at the same moment by another server (then the table exists and all is well).
            logger.warning("The conversations database is not ready at start-up (%s); messages fail until "
                           "it is reachable and its tables exist (%s).", describe(error), MIGRATE_HINT)

    @contextlib.contextmanager
    def session_scope(self) -> Generator[sa.orm.Session, None, None]:
        """A session, closed afterwards. Unlike Rasa's, a ``ValueError`` raised inside (e.g. a driver
        refusing a value) is not taken for a missing schema and never makes the server exit."""
        session = self.sessionmaker()
        try:
            try:
                ensure_schema_exists(session)
            except ValueError as missing:
                raise unavailable(f"the PostgreSQL schema {missing} (POSTGRESQL_SCHEMA) does not exist") from None
            yield session
        finally:
            session.close()

    async def _run(self, what: str, sender_id: Text, work: Callable[[], T]) -> T:
        """``work()``, tried up to ``attempts`` times on transient errors; raises TrackerStoreUnavailable
        when it still fails.

        The work runs in a worker thread and the waits are asynchronous: a database that answers slowly or
        not at all (a connection attempt waits up to ``connect_timeout``) never holds up the server's other
        conversations, as Rasa's store, which queries on the event loop, did."""
        loop = asyncio.get_running_loop()
        for attempt in range(1, self.attempts + 1):
            try:
                return await loop.run_in_executor(None, work)
            except TrackerStoreUnavailable:
                raise
            except Exception as error:  # whatever fails, the visitor is never silently started over
                if attempt < self.attempts and isinstance(error, SQLAlchemyError) and is_transient(error):
                    logger.warning("Could not %s conversation %r (try %d of %d), trying again: %s",
                                   what, sender_id, attempt, self.attempts, describe(error))
                    await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
                    continue
                missing = await loop.run_in_executor(None, self._events_table_missing)
                hint = f"; the events table is missing: {MIGRATE_HINT}" if missing else ""
                raise unavailable(f"cannot {what} conversation {sender_id!r}: {describe(error)}{hint}") from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _events_table_missing(self) -> bool:
        """Whether the database answers but has no ``events`` table (dropped, or a new database)."""
        try:
            return not sa.inspect(self.engine).has_table(self.SQLEvent.__tablename__)
        except SQLAlchemyError:  # unreachable: nothing to say about its tables
            return False

    async def keys(self) -> Iterable[Text]:
        """The stored conversation ids."""
        def read() -> List[Text]:
            with self.session_scope() as session:
                return [sender for (sender,) in session.query(self.SQLEvent.sender_id).distinct().all()]
        return await self._run("list", "*", read)

    def _rows(self, session: sa.orm.Session, key: Text) -> List[Row]:
        """Every stored row of the conversation (all sessions), in id order: the cached rows and those added
        since, when the database still has exactly the cached rows up to the last cached id; else all read
        again. Runs in a worker thread."""
        event = self.SQLEvent
        columns = (event.id, event.type_name, event.timestamp, event.data)
        cached = self.cache.get(key)
        if cached is not None:
            last, last_data = (cached[-1][0], cached[-1][3]) if cached else (0, None)
            # The count, and the last cached row's data: after a database is recreated, ids start again and
            # another server may have written as many rows under the same ids.
            count, data = session.query(sa.func.count(event.id), sa.func.max(sa.case((event.id == last, event.data)))
                                        ).filter(event.sender_id == key, event.id <= last).one()
            if count == len(cached) and data == last_data:
                added = session.query(*columns).filter(event.sender_id == key, event.id > last).order_by(event.id)
                rows = cached + [tuple(row) for row in added.all()]
                self.cache.put(key, rows)
                return rows
        rows = [tuple(row) for row in session.query(*columns).filter(event.sender_id == key).order_by(event.id)]
        self.cache.put(key, rows)
        return rows

    async def _retrieve(self, sender_id: Text, fetch_events_from_all_sessions: bool
                        ) -> Optional[DialogueStateTracker]:
        key = clean_text(sender_id)

        def read() -> List[Row]:
            with self.session_scope() as session:
                rows = self._rows(session, key)
            return rows if fetch_events_from_all_sessions else latest_session(rows)

        rows = await self._run("read", key, read)
        if not (self.domain and rows):
            return None
        try:
            events = self._events(key, rows)
            return DialogueStateTracker.from_events(sender_id, events, self.domain.slots)
        except TrackerStoreUnavailable:
            raise
        except Exception as error:
            raise unavailable(f"conversation {key!r}: its stored events cannot be replayed "
                              f"({type(error).__name__})") from error

    def _events(self, key: str, rows: List[Row]) -> List[Event]:
        """The events of ``rows``, as Rasa's ``DialogueStateTracker.from_dict`` deserialises them: only
        the rows not deserialised at the previous read are, the others are copies of the cached events."""
        known = self.parsed.get(key) or {}
        kept: Parsed = {}
        events: List[Event] = []
        for row_id, _, _, data in rows:
            cached = known.get(row_id)
            if cached is None or cached[0] != data:
                try:
                    value = json.loads(data)
                except (TypeError, ValueError):
                    # Named by id (never its text): the conversation gets the technical-problem reply, not
                    # a fresh start over a hole in its history; the others are unaffected.
                    raise unavailable(f"conversation {key!r}: stored event id {row_id} cannot be read") from None
                cached = (data, deserialise_events([value]))
            kept[row_id] = cached
            events.extend(fresh(event) for event in cached[1])
        self.parsed.put(key, kept)
        return events

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Stores the events the database does not have yet (Rasa's rule: those after the stored count of
        the latest session, counted from the cached rows)."""
        await self.stream_events(tracker)
        key = clean_text(tracker.sender_id)

        def write() -> None:
            with self.session_scope() as session:
                stored = len(latest_session(self._rows(session, key)))
                for event in itertools.islice(tracker.events, stored, len(tracker.events)):
                    session.add(self._row(key, event.type_name, event.as_dict()))
                session.commit()

        await self._run("write", key, write)

    def _row(self, sender_id: Text, type_name: Text, data: Dict[str, Any]) -> "SQLTrackerStore.SQLEvent":
        data = clean(data)
        intent = ((data.get("parse_data") or {}).get("intent") or {}).get(INTENT_NAME_KEY)
        # noinspection PyArgumentList
        return self.SQLEvent(sender_id=sender_id, type_name=clean_text(type_name), timestamp=data.get("timestamp"),
                             intent_name=intent, action_name=data.get("name"), data=json.dumps(data))


# ---------------------------------------------------------------------------------------------------------
# Rasa's Agent wraps every tracker store in a FailSafeTrackerStore, which catches any error of the store:
# a failed read returns None (Rasa then starts a new conversation for that visitor) and a failed write is
# kept in memory only. So an exception raised by the store alone never reaches the channels. This lets
# TrackerStoreUnavailable (raised only by the store above) through; every other error is handled exactly as
# before. Installed when the store is created, so it is in place wherever the store is used; pinned to the
# Rasa version of rasa_ext.version.


def let_unavailable_through() -> None:
    """Makes Rasa's FailSafeTrackerStore re-raise TrackerStoreUnavailable instead of falling back."""
    if getattr(FailSafeTrackerStore, "_lets_unavailable_through", False):
        return
    require_rasa_version("rasa_ext.tracker_store's FailSafeTrackerStore change")
    on_error = FailSafeTrackerStore.on_tracker_store_error
    on_retrieve_error = FailSafeTrackerStore.on_tracker_store_retrieve_error

    def on_tracker_store_error(self: FailSafeTrackerStore, error: Exception) -> None:
        if isinstance(error, TrackerStoreUnavailable):
            raise error
        on_error(self, error)

    def on_tracker_store_retrieve_error(self: FailSafeTrackerStore, error: Exception) -> None:
        if isinstance(error, TrackerStoreUnavailable):
            raise error
        on_retrieve_error(self, error)

    FailSafeTrackerStore.on_tracker_store_error = on_tracker_store_error  # type: ignore[assignment]
    FailSafeTrackerStore.on_tracker_store_retrieve_error = on_tracker_store_retrieve_error  # type: ignore
    FailSafeTrackerStore._lets_unavailable_through = True  # type: ignore[attr-defined]
