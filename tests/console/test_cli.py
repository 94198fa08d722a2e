"""The console's commands: staff accounts, retention, the tests' conversation generator, and the secret key."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from console import auth, config, db
from core.store import consultation_requests, make_engine
from tests.conftest import ROOT
from tests.console.support import add_conversation, add_request


def run(module, *args, url, stdin=None):
    env = {"CLINIC_DB_URL": url, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture()
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'conversations.db'}"


def test_accounts_are_created_by_the_command_only_with_a_long_password(url):
    engine = make_engine(url)
    db.create_schema(engine)
    assert auth.list_users(engine) == []  # no default account
    created = run("console.users", "create", "Staff@Clinic.example", "--password-stdin", url=url,
                  stdin="a long enough passphrase\n")
    assert created.returncode == 0, created.stderr
    assert auth.authenticate(engine, "staff@clinic.example", "a long enough passphrase", 5, 60)["outcome"] == "ok"
    with engine.connect() as connection:
        stored = connection.execute(sa.select(db.users.c.password_hash)).scalar()
    assert stored.startswith("$argon2id$") and "passphrase" not in stored
    again = run("console.users", "create", "staff@clinic.example", "--password-stdin", url=url, stdin="x" * 20)
    assert again.returncode == 1 and "already exists" in again.stderr
    short = run("console.users", "create", "other@clinic.example", "--password-stdin", url=url, stdin="short\n")
    assert short.returncode == 1 and "at least 12 characters" in short.stderr
    bad = run("console.users", "create", "not-an-email", "--password-stdin", url=url, stdin="y" * 20)
    assert bad.returncode == 1 and "not an email address" in bad.stderr
    listed = run("console.users", "list", url=url)
    assert "staff@clinic.example  active" in listed.stdout and "other@" not in listed.stdout


def test_disable_and_password_change_end_sessions_and_enable_unlocks(url):
    engine = make_engine(url)
    db.create_schema(engine)
    auth.create_user(engine, "a@clinic.example", "first passphrase!")
    user = auth.authenticate(engine, "a@clinic.example", "first passphrase!", 5, 60)["user"]
    token = auth.start_session(engine, user)
    assert run("console.users", "disable", "a@clinic.example", url=url).returncode == 0
    assert auth.session_user(engine, token, 600, 3600) is None
    assert auth.authenticate(engine, "a@clinic.example", "first passphrase!", 5, 60)["outcome"] == "unknown"
    assert run("console.users", "enable", "a@clinic.example", url=url).returncode == 0
    token = auth.start_session(engine, user)
    changed = run("console.users", "passwd", "a@clinic.example", "--password-stdin", url=url,
                  stdin="second passphrase\n")
    assert changed.returncode == 0
    assert auth.session_user(engine, token, 600, 3600) is None
    assert auth.authenticate(engine, "a@clinic.example", "second passphrase", 5, 60)["outcome"] == "ok"


def test_the_retention_command(url):
    engine = make_engine(url)
    now = time.time()
    add_conversation(engine, "old", [("what causes it", "ask_causes", 0.9, "action_answer", "...")], at=now - 10 * 86400)
    add_conversation(engine, "new", [("what causes it", "ask_causes", 0.9, "action_answer", "...")], at=now - 3600)
    db.create_schema(engine)
    add_request(engine, "old", status="closed",
                created_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10))
    dry = run("console.retention", "--days", "7", "--dry-run", url=url)
    assert dry.returncode == 0 and "Would delete 1 conversations" in dry.stdout and "1 closed" in dry.stdout
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count(sa.distinct(db.events.c.sender_id)))).scalar() == 2
    done = run("console.retention", "--days", "7", url=url)
    assert done.returncode == 0 and "Deleted 1 conversations" in done.stdout
    with engine.connect() as connection:
        assert [r[0] for r in connection.execute(sa.select(db.events.c.sender_id).distinct())] == ["new"]
        assert connection.execute(sa.select(sa.func.count()).select_from(consultation_requests)).scalar() == 0
    assert run("console.retention", "--days", "0", url=url).returncode == 2  # argparse error


def test_fixtures_refuse_a_database_with_real_conversations(url):
    engine = make_engine(url)
    add_conversation(engine, "a-real-visitor", [("hi", "greet", 0.9, "action_answer", "Hello")])
    refused = run("devtools.fake_conversations", "--conversations", "5", url=url)
    assert refused.returncode == 1 and "real conversations" in refused.stderr
    forced = run("devtools.fake_conversations", "--conversations", "5", "--force", url=url)
    assert forced.returncode == 0, forced.stderr
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count(sa.distinct(db.events.c.sender_id)))).scalar() == 6


def test_a_missing_secret_key_is_generated_once_into_a_private_file(tmp_path, monkeypatch):
    monkeypatch.delenv("CONSOLE_SECRET_KEY", raising=False)
    path = tmp_path / "var" / "console_secret_key"
    monkeypatch.setenv("CONSOLE_SECRET_KEY_FILE", str(path))
    key = config.secret_key()
    assert len(key) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.secret_key() == key  # kept
    os.chmod(path, 0o644)
    with pytest.raises(SystemExit, match="chmod 600"):
        config.secret_key()
    monkeypatch.setenv("CONSOLE_SECRET_KEY", "too short")
    with pytest.raises(SystemExit, match="at least 32"):
        config.secret_key()


def test_the_default_key_file_is_git_ignored():
    ignored = subprocess.run(["git", "check-ignore", "-q", "var/console_secret_key"], cwd=ROOT)
    assert ignored.returncode == 0


def test_database_errors_in_commands_show_the_error_not_the_values(url):
    engine = make_engine(url)
    now = time.time()
    add_conversation(engine, "old-visitor-maria-lopez", [("call 3105550134", "inform", 0.9, "action_answer", "...")],
                     at=now - 10 * 86400)
    db.create_schema(engine)
    auth.create_user(engine, "a@clinic.example", "first passphrase!")
    with engine.begin() as connection:
        connection.execute(sa.text("create trigger frozen_users before update on console_users "
                                   "begin select raise(abort, 'frozen'); end"))
        connection.execute(sa.text("create trigger frozen_events before delete on events "
                                   "begin select raise(abort, 'frozen'); end"))
    changed = run("console.users", "passwd", "a@clinic.example", "--password-stdin", url=url,
                  stdin="second passphrase\n")
    assert changed.returncode == 2
    assert "IntegrityError: frozen" in changed.stderr and len(changed.stderr.strip().splitlines()) == 1
    assert "$argon2" not in changed.stderr and "[SQL" not in changed.stderr
    deleted = run("console.retention", "--days", "7", url=url)
    assert deleted.returncode == 2 and "IntegrityError: frozen" in deleted.stderr
    assert "old-visitor" not in deleted.stderr and "[SQL" not in deleted.stderr
