"""The consultation requests table on real SQLite and real PostgreSQL, and how its database is found."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa

from actions.store import (ConfigError, ConsultationRequest, RequestStore, database_url,
                           url_from_tracker_store)

from tests.conftest import ROOT


def request(key="k1", conversation="c1", name="Maria Lopez"):
    return ConsultationRequest(request_key=key, conversation_id=conversation, name=name, phone="+13105550134",
                               callback_time="mornings", email="maria@example.com", reason=None)


def exercise(store: RequestStore) -> None:
    store.create_table()
    store.create_table()  # idempotent
    assert store.save(request("k1", "c1")) is True
    assert store.save(request("k1", "c1")) is False  # the same request twice is one row
    assert store.save(request("k2", "c2", name="Robert'); DROP TABLE consultation_requests;--")) is True
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
    store.save(request("k1", "conversation-abc"))
    env = {"CLINIC_DB_URL": url, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    table = subprocess.run([sys.executable, "-m", "actions.requests"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "Maria Lopez" in table.stdout and "(310) 555-0134" in table.stdout and "new" in table.stdout
    as_json = subprocess.run([sys.executable, "-m", "actions.requests", "--json", "--status", "new"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
    import json
    [row] = json.loads(as_json.stdout)
    assert row["conversation_id"] == "conversation-abc" and row["phone"] == "+13105550134"
    empty = subprocess.run([sys.executable, "-m", "actions.requests", "--status", "closed"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode == 0 and "No consultation requests" in empty.stdout
