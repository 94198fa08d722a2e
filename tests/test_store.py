"""The consultation requests table on real SQLite and real PostgreSQL, and how its database is found."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa

from core.settings import ConfigError, database_url, url_from_tracker_store
from core.store import (
    CLIENT_LIMIT,
    CONVERSATION_LIMIT,
    CREATED,
    DUPLICATE,
    ConsultationRequest,
    Limits,
    RequestStore,
    consultation_requests,
)
from tests.conftest import ROOT


def request(key="k1", conversation="c1", name="Maria Lopez"):
    return ConsultationRequest(request_key=key, conversation_id=conversation, name=name, phone="+13105550134",
                               callback_time="mornings", email="maria@example.com", reason=None)


# No abuse limit (0): the tests of the table itself.
UNLIMITED = Limits(per_conversation=0, per_client=0, window=dt.timedelta(hours=24))


def exercise(store: RequestStore) -> None:
    store.create_table()
    store.create_table()  # idempotent
    assert store.submit(request("k1", "c1"), UNLIMITED) == CREATED
    assert store.submit(request("k1", "c1"), UNLIMITED) == DUPLICATE  # the same request twice is one row
    assert store.submit(request("k2", "c2", name="Robert'); DROP TABLE consultation_requests;--"),
                        UNLIMITED) == CREATED
    rows = store.list()
    assert [row["conversation_id"] for row in rows] == ["c2", "c1"]  # newest first
    assert rows[0]["name"] == "Robert'); DROP TABLE consultation_requests;--"
    assert store.set_status(rows[1]["id"], "contacted", "staff@clinic") is True
    assert store.set_status(999999, "closed", "staff@clinic") is False
    with pytest.raises(ValueError):
        store.set_status(rows[1]["id"], "lost", "staff@clinic")
    [contacted] = store.list(status="contacted")
    assert contacted["conversation_id"] == "c1" and contacted["status_changed_by"] == "staff@clinic"
    assert contacted["status_changed_at"] is not None
    assert [row["request_key"] for row in store.find("c1")] == ["k1"]
    # The staff console's reads: a page of a status, the count, each request's status changes.
    assert store.set_status(rows[1]["id"], "closed", "other@clinic") is True
    assert (store.count(), store.count("closed"), store.count("new")) == (2, 1, 1)
    assert [row["request_key"] for row in store.list(limit=1, offset=1)] == ["k1"]
    [closed] = store.list(status="closed", with_history=True)
    assert [(h["old_status"], h["new_status"], h["changed_by"]) for h in closed["history"]] == [
        ("new", "contacted", "staff@clinic"), ("contacted", "closed", "other@clinic")]
    assert store.list(status="new", with_history=True)[0]["history"] == []
    assert "history" not in store.list()[0]


def test_requests_on_sqlite(tmp_path):
    exercise(RequestStore(f"sqlite:///{tmp_path / 'conversations.db'}"))


@pytest.mark.postgres
def test_requests_on_postgresql(pg_schema_url):
    store = RequestStore(pg_schema_url)
    exercise(store)
    assert sa.inspect(store.engine).has_table("consultation_requests")


def test_the_database_is_the_tracker_stores(tmp_path, monkeypatch):
    monkeypatch.delenv("CLINIC_DB_URL", raising=False)
    url = database_url()
    assert url.drivername == "sqlite" and url.database == str(ROOT / "var" / "conversations.db")
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text("tracker_store:\n  type: SQL\n  dialect: postgresql\n  url: ${PGHOST}\n"
                         "  port: 5432\n  db: clinic\n  username: rasa\n  password: ${PGPASSWORD}\n")
    monkeypatch.setenv("CLINIC_ENDPOINTS", str(endpoints))
    monkeypatch.setenv("PGHOST", "db.internal")
    monkeypatch.setenv("PGPASSWORD", "s3cret")
    url = database_url()
    assert (url.drivername, url.host, url.port, url.database, url.username, url.password) == \
        ("postgresql", "db.internal", 5432, "clinic", "rasa", "s3cret")
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(ConfigError, match="environment variable PGPASSWORD is not set"):
        database_url()
    monkeypatch.setenv("CLINIC_DB_URL", "sqlite:///elsewhere.db")
    assert database_url() == "sqlite:///elsewhere.db"


def test_a_tracker_store_that_is_not_sql_is_refused():
    with pytest.raises(ConfigError, match="must be of type SQL"):
        url_from_tracker_store({"type": "redis"}, ROOT)


def test_the_requests_command_lists_requests(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = RequestStore(url)
    store.create_table()
    store.submit(request("k1", "conversation-abc"), UNLIMITED)
    env = {"CLINIC_DB_URL": url, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    table = subprocess.run([sys.executable, "-m", "actions.list_requests"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "Maria Lopez" in table.stdout and "(310) 555-0134" in table.stdout and "new" in table.stdout
    as_json = subprocess.run([sys.executable, "-m", "actions.list_requests", "--json", "--status", "new"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
    import json
    [row] = json.loads(as_json.stdout)
    assert row["conversation_id"] == "conversation-abc" and row["phone"] == "+13105550134"
    empty = subprocess.run([sys.executable, "-m", "actions.list_requests", "--status", "closed"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode == 0 and "No consultation requests" in empty.stdout


# --- Abuse limits, counted in the database ----------------------------------------------------------------

LIMITS = Limits(per_conversation=2, per_client=3, window=dt.timedelta(hours=24))


def limited(key, conversation="c1", client=None):
    return ConsultationRequest(request_key=key, conversation_id=conversation, name="Maria Lopez",
                               phone="+13105550134", callback_time="mornings", client=client)


def exercise_limits(store: RequestStore) -> None:
    store.create_table()
    assert store.submit(limited("a1", "c1", "00112233aabbccdd"), LIMITS) == CREATED
    assert store.submit(limited("a1", "c1", "00112233aabbccdd"), LIMITS) == DUPLICATE  # confirmed twice
    assert store.submit(limited("a2", "c1", "00112233aabbccdd"), LIMITS) == CREATED
    assert store.submit(limited("a3", "c1", "00112233aabbccdd"), LIMITS) == CONVERSATION_LIMIT
    assert store.submit(limited("b1", "c2", "00112233aabbccdd"), LIMITS) == CREATED  # 3rd for the client
    assert store.submit(limited("b2", "c2", "00112233aabbccdd"), LIMITS) == CLIENT_LIMIT
    assert store.submit(limited("d1", "c3", "ffeeddccbbaa9988"), LIMITS) == CREATED  # another client
    assert store.submit(limited("e1", "c4"), LIMITS) == CREATED  # no client: only the conversation counts
    assert store.submit(limited("e2", "c4"), LIMITS) == CREATED
    assert store.submit(limited("e3", "c4"), LIMITS) == CONVERSATION_LIMIT
    rows = store.list()
    assert sorted(row["request_key"] for row in rows) == ["a1", "a2", "b1", "d1", "e1", "e2"]
    assert {row["client"] for row in rows} == {"00112233aabbccdd", "ffeeddccbbaa9988", None}
    assert store.submit(limited("a4", "c1", "00112233aabbccdd"), UNLIMITED) == CREATED  # 0: no limit
    # Requests older than the window do not count.
    with store.engine.begin() as connection:
        old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=25)
        connection.execute(consultation_requests.update().where(consultation_requests.c.conversation_id == "c4")
                           .values(created_at=old))
    assert store.submit(limited("e4", "c4"), LIMITS) == CREATED


def test_limits_on_sqlite(tmp_path):
    exercise_limits(RequestStore(f"sqlite:///{tmp_path / 'conversations.db'}"))


@pytest.mark.postgres
def test_limits_on_postgresql(pg_schema_url):
    exercise_limits(RequestStore(pg_schema_url))


def race(url: str, submissions: int = 8) -> list:
    """``submissions`` requests of one conversation and one client at the same moment, each from its own
    store (as from several action servers)."""
    stores = [RequestStore(url) for _ in range(submissions)]
    stores[0].create_table()
    barrier = threading.Barrier(submissions)
    outcomes = [None] * submissions

    def submit(index: int) -> None:
        barrier.wait()
        outcomes[index] = stores[index].submit(limited(f"r{index}", "same", "0123456789abcdef"), LIMITS)

    threads = [threading.Thread(target=submit, args=(index,)) for index in range(submissions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(stores[0].find("same")) == LIMITS.per_conversation
    return outcomes


def test_simultaneous_requests_cannot_pass_the_limit_together_on_sqlite(tmp_path):
    outcomes = race(f"sqlite:///{tmp_path / 'conversations.db'}")
    assert sorted(outcomes).count(CREATED) == LIMITS.per_conversation


@pytest.mark.postgres
def test_simultaneous_requests_cannot_pass_the_limit_together_on_postgresql(pg_schema_url):
    outcomes = race(pg_schema_url)
    assert outcomes.count(CREATED) == LIMITS.per_conversation
    assert outcomes.count(CONVERSATION_LIMIT) == len(outcomes) - LIMITS.per_conversation


def old_table(engine: sa.engine.Engine) -> None:
    """The requests table as the previous version created it, without the ``client`` column."""
    old = sa.MetaData()
    sa.Table("consultation_requests", old, *(sa.Column(c.name, c.type, primary_key=c.primary_key)
                                             for c in consultation_requests.columns if c.name != "client"))
    old.create_all(engine)


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_table_from_the_previous_version_gets_the_client_column(tmp_path, request, database):
    url = f"sqlite:///{tmp_path / 'c.db'}" if database == "sqlite" else request.getfixturevalue("pg_schema_url")
    store = RequestStore(url)
    old_table(store.engine)
    assert "client" not in {c["name"] for c in sa.inspect(store.engine).get_columns("consultation_requests")}
    store.create_table()
    store.create_table()
    assert "client" in {c["name"] for c in sa.inspect(store.engine).get_columns("consultation_requests")}
    assert store.submit(limited("k", "c", "0123456789abcdef"), LIMITS) == CREATED


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_servers_starting_together_on_a_previous_versions_table_all_start(tmp_path, request, database):
    url = f"sqlite:///{tmp_path / 'c.db'}" if database == "sqlite" else request.getfixturevalue("pg_schema_url")
    old_table(RequestStore(url).engine)
    stores = [RequestStore(url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors = []

    def start(store: RequestStore) -> None:
        barrier.wait()
        try:
            store.create_table()
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(error))

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert "client" in {c["name"] for c in sa.inspect(stores[0].engine).get_columns("consultation_requests")}
