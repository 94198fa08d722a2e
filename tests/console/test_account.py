"""Signing in and out (console.account), on real SQLite and real PostgreSQL: hardened cookies, wrong
passwords, lockout (also under parallel attempts), session expiry and CSRF tokens."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from console import auth, db
from core.store import consultation_requests
from tests.console.support import (
    EMAIL,
    PASSWORD,
    audit_rows,
    csrf_of,
    make_app,
    page,
    sign_in,
    signed_in_client,
)


def test_sign_in_sets_a_hardened_cookie_and_sign_out_ends_the_session(console):
    app, engine, _ = console
    other = signed_in_client(app, engine)  # creates the account; a session of its own
    client = app.test_client()
    response = sign_in(client)
    assert response.status_code == 302 and response.location.endswith("/conversations")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "no-store" in client.get("/conversations").headers["Cache-Control"]
    assert "default-src 'none'" in client.get("/conversations").headers["Content-Security-Policy"]
    token = csrf_of(page(client, "/conversations"))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/conversations").status_code == 302
    assert other.get("/conversations").status_code == 200  # signing out ends that session only
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(db.sessions)).scalar() == 1


def test_secure_cookie_flag_is_configurable(url, monkeypatch):
    monkeypatch.setenv("CONSOLE_SECRET_KEY", "k" * 48)
    monkeypatch.setenv("CONSOLE_SECURE_COOKIES", "1")
    app, engine = make_app(url)
    signed_in_client(app, engine)
    response = sign_in(app.test_client())
    assert "Secure" in response.headers["Set-Cookie"]


def test_wrong_password_and_unknown_account_are_refused_alike(console):
    app, engine, _ = console
    signed_in_client(app, engine)
    wrong = sign_in(app.test_client(), password="not the password at all")
    unknown = sign_in(app.test_client(), email="nobody@clinic.example")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong email or password" in wrong.get_data(as_text=True)
    assert [row["action"] for row in audit_rows(engine) if row["action"].startswith("login_")] == \
        ["login_wrong", "login_unknown"]


def test_repeated_wrong_passwords_lock_the_account(console):
    app, engine, _ = console
    signed_in_client(app, engine)
    client = app.test_client()
    for _ in range(5):
        assert sign_in(client, password="wrong password!!").status_code == 401
    # Locked: even the right password is refused now.
    assert sign_in(client).status_code == 401
    assert audit_rows(engine, "login_locked")
    with engine.begin() as connection:
        locked_until = connection.execute(sa.select(db.users.c.locked_until)).scalar()
        assert locked_until > time.time() + 60
        connection.execute(db.users.update().values(locked_until=time.time() - 1))  # the lock ran out
    assert sign_in(client).status_code == 302


def test_sessions_expire_when_idle_and_after_the_maximum_age(console):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    assert client.get("/conversations").status_code == 200
    with engine.begin() as connection:
        connection.execute(db.sessions.update().values(last_seen_at=time.time() - 31 * 60))
    assert client.get("/conversations").status_code == 302
    client = signed_in_client(app, engine)
    with engine.begin() as connection:
        connection.execute(db.sessions.update().values(created_at=time.time() - 13 * 3600))
    assert client.get("/conversations").status_code == 302


def test_post_forms_need_the_sessions_csrf_token(console):
    app, engine, request_id = console
    client = signed_in_client(app, engine)
    path = f"/requests/{request_id}/status"
    assert client.post(path, data={"status": "contacted"}).status_code == 400
    assert client.post(path, data={"status": "contacted", "csrf_token": "forged"}).status_code == 400
    other = signed_in_client(app, engine, "other@clinic.example")  # another session's token is no good
    assert client.post(path, data={"status": "contacted",
                                   "csrf_token": csrf_of(page(other, "/requests"))}).status_code == 400
    assert client.post("/logout", data={}).status_code == 400
    # Signing in needs the token of the sign-in page, too.
    assert app.test_client().post("/login", data={"email": EMAIL, "password": PASSWORD}).status_code == 400
    with engine.connect() as connection:
        assert connection.execute(sa.select(consultation_requests.c.status)).scalar() == "new"


class CountingHasher:
    """auth's hasher, counting verifications and the most that ran at the same time."""

    def __init__(self, real):
        self.real, self.calls, self.running, self.most = real, 0, 0, 0
        self.lock = threading.Lock()

    def verify(self, password_hash, password):
        with self.lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.01)
            return self.real.verify(password_hash, password)
        finally:
            with self.lock:
                self.running -= 1

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_parallel_wrong_passwords_lock_the_account(console, monkeypatch):
    app, engine, _ = console
    signed_in_client(app, engine)
    counting = CountingHasher(auth.hasher)
    monkeypatch.setattr(auth, "hasher", counting)
    attempts = 40
    # from 40 addresses, so that the per-address throttle stays out of the way
    clients = [app.test_client() for _ in range(attempts)]
    for number, client in enumerate(clients):
        client.environ_base["REMOTE_ADDR"] = f"10.1.0.{number + 1}"
    tokens = [csrf_of(client.get("/login").get_data(as_text=True)) for client in clients]
    start = threading.Barrier(attempts)
    statuses, errors = [], []

    def attempt(client, token):
        try:
            start.wait()
            response = client.post("/login", data={"email": EMAIL, "password": "wrong password!!",
                                                   "csrf_token": token})
            statuses.append(response.status_code)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=attempt, args=pair) for pair in zip(clients, tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and statuses == [401] * attempts
    with engine.connect() as connection:
        locked_until = connection.execute(sa.select(db.users.c.locked_until)).scalar()
    assert locked_until and locked_until > time.time() + 60
    # One argon2 verification per attempt, never more than the bound at the same time.
    assert counting.calls == attempts and counting.most <= auth.MAX_CONCURRENT_VERIFICATIONS
    # Every attempt counted: the first four were wrong, the fifth locked, the rest found it locked.
    assert len(audit_rows(engine, "login_wrong")) == 4
    assert len(audit_rows(engine, "login_locked")) == attempts - 4
    assert sign_in(app.test_client()).status_code == 401  # even the right password, while locked


def test_a_locked_account_takes_a_password_check_like_any_other(console, monkeypatch):
    app, engine, _ = console
    signed_in_client(app, engine)
    with engine.begin() as connection:
        connection.execute(db.users.update().values(locked_until=time.time() + 600))
    counting = CountingHasher(auth.hasher)
    monkeypatch.setattr(auth, "hasher", counting)
    assert auth.authenticate(engine, EMAIL, "wrong password!!", 5, 60)["outcome"] == "locked"
    assert auth.authenticate(engine, "nobody@clinic.example", "wrong password!!", 5, 60)["outcome"] == "unknown"
    assert counting.calls == 2  # one argon2 verification each, as for a wrong password


def test_a_non_ascii_csrf_token_is_refused_not_an_error(console):
    app, engine, _ = console
    signed_in_client(app, engine)
    client = app.test_client()
    client.get("/login")  # the session has a token
    response = client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": "jeton-é"})
    assert response.status_code == 400
    signed = signed_in_client(app, engine)
    assert signed.post("/logout", data={"csrf_token": "ü" * 43}).status_code == 400
    assert signed.get("/conversations").status_code == 200  # still signed in
