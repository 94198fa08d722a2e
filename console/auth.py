"""Staff accounts (argon2 hashes), sign-in with lockout, and server-side sessions."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.engine import Engine

from console import db
from core.store import advisory_lock_key

MIN_PASSWORD = 12
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
hasher = PasswordHasher()
# Verified when the email is unknown, so that an unknown email takes as long as a wrong password.
_DUMMY_HASH = hasher.hash(secrets.token_urlsafe(16))
# Each argon2 verification takes the hasher's memory cost (64 MiB by default): at most this many at a time, so
# that a burst of parallel sign-ins on the threaded server cannot exhaust memory (the others wait their turn).
MAX_CONCURRENT_VERIFICATIONS = 4
_verifications = threading.BoundedSemaphore(MAX_CONCURRENT_VERIFICATIONS)


class AccountError(Exception):
    """An account cannot be created or changed as asked."""


@dataclass(frozen=True)
class User:
    id: int
    email: str


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not EMAIL.match(email) or len(email) > 254:
        raise AccountError(f"not an email address: {email!r}")
    return email


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters long")


def create_user(engine: Engine, email: str, password: str) -> int:
    email = normalise_email(email)
    check_password(password)
    try:
        with engine.begin() as connection:
            result = connection.execute(db.users.insert().values(
                email=email, password_hash=hasher.hash(password), active=True, failed_logins=0,
                created_at=dt.datetime.now(dt.timezone.utc)))
            return int(result.inserted_primary_key[0])
    except sa.exc.IntegrityError:
        raise AccountError(f"an account for {email} already exists") from None


def set_password(engine: Engine, email: str, password: str) -> None:
    email = normalise_email(email)
    check_password(password)
    with engine.begin() as connection:
        user_id = connection.execute(sa.select(db.users.c.id).where(db.users.c.email == email)).scalar()
        if user_id is None:
            raise AccountError(f"no account for {email}")
        connection.execute(db.users.update().where(db.users.c.id == user_id).values(
            password_hash=hasher.hash(password), failed_logins=0, locked_until=None))
        connection.execute(db.sessions.delete().where(db.sessions.c.user_id == user_id))


def set_active(engine: Engine, email: str, active: bool) -> None:
    email = normalise_email(email)
    with engine.begin() as connection:
        user_id = connection.execute(sa.select(db.users.c.id).where(db.users.c.email == email)).scalar()
        if user_id is None:
            raise AccountError(f"no account for {email}")
        connection.execute(db.users.update().where(db.users.c.id == user_id).values(
            active=active, failed_logins=0, locked_until=None))
        if not active:
            connection.execute(db.sessions.delete().where(db.sessions.c.user_id == user_id))


def list_users(engine: Engine):
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(
            sa.select(db.users.c.email, db.users.c.active, db.users.c.failed_logins, db.users.c.locked_until,
                      db.users.c.created_at, db.users.c.last_login_at).order_by(db.users.c.email))]


def authenticate(engine: Engine, email: str, password: str, max_failed: int, lock_seconds: int) -> Dict[str, Any]:
    """Checks a sign-in. Returns {"user": User or None, "outcome": "ok" | "wrong" | "locked" | "unknown"}.

    ``max_failed`` wrong passwords in a row lock the account for ``lock_seconds``; while locked, even the right
    password is refused (and the lock is not extended)."""
    try:
        email = normalise_email(email)
    except AccountError:
        email = ""
    with engine.connect() as connection:
        row = connection.execute(sa.select(db.users).where(db.users.c.email == email)).first() if email else None
    if row is None or not row.active:
        _verify(_DUMMY_HASH, password or "-")
        return {"user": None, "outcome": "unknown"}
    now = time.time()
    if row.locked_until and row.locked_until > now:
        _verify(_DUMMY_HASH, password or "-")  # answers no sooner than for an unlocked account
        return {"user": None, "outcome": "locked"}
    u = db.users.c
    not_locked = sa.or_(u.locked_until.is_(None), u.locked_until <= now)
    if not _verify(row.password_hash, password):
        # Counted in SQL, so that parallel wrong passwords all count; the row stays locked (PostgreSQL) or the
        # database is (SQLite) until the transaction ends, so the lock is decided on the latest count.
        with engine.begin() as connection:
            connection.execute(db.users.update().where(u.id == row.id).where(not_locked).values(
                # a lock that ran out starts a new count
                failed_logins=sa.case((u.locked_until.is_not(None), 1), else_=u.failed_logins + 1),
                locked_until=None))
            failed, locked_until = connection.execute(
                sa.select(u.failed_logins, u.locked_until).where(u.id == row.id)).first()
            if locked_until and locked_until > now:  # locked meanwhile by a parallel attempt
                return {"user": None, "outcome": "locked"}
            if failed >= max_failed:
                connection.execute(db.users.update().where(u.id == row.id).values(
                    failed_logins=0, locked_until=now + lock_seconds))
                return {"user": None, "outcome": "locked"}
        return {"user": None, "outcome": "wrong"}
    values = {"failed_logins": 0, "locked_until": None, "last_login_at": dt.datetime.now(dt.timezone.utc)}
    if hasher.check_needs_rehash(row.password_hash):
        values["password_hash"] = hasher.hash(password)
    with engine.begin() as connection:
        signed_in = connection.execute(
            db.users.update().where(u.id == row.id).where(not_locked).values(**values)).rowcount
    if not signed_in:  # locked meanwhile by parallel wrong passwords
        return {"user": None, "outcome": "locked"}
    return {"user": User(row.id, row.email), "outcome": "ok"}


def _verify(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``, with at most MAX_CONCURRENT_VERIFICATIONS at a time."""
    with _verifications:
        try:
            return hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(engine: Engine, user: User) -> str:
    """A new session for ``user``; the token goes into the signed cookie, only its hash into the database."""
    token = secrets.token_urlsafe(32)
    now = time.time()
    with engine.begin() as connection:
        connection.execute(db.sessions.insert().values(id=_token_id(token), user_id=user.id, created_at=now,
                                                       last_seen_at=now))
    return token


def session_user(engine: Engine, token: Optional[str], idle_seconds: int, max_seconds: int) -> Optional[User]:
    """The signed-in user of ``token``, or None if there is none or it expired (then it is deleted)."""
    if not token or not isinstance(token, str):
        return None
    now = time.time()
    s, u = db.sessions.c, db.users.c
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(s.id, s.created_at, s.last_seen_at, u.id.label("user_id"), u.email, u.active)
            .select_from(db.sessions.join(db.users, s.user_id == u.id))
            .where(s.id == _token_id(token))).first()
    if row is None:
        return None
    if not row.active or now - row.last_seen_at > idle_seconds or now - row.created_at > max_seconds:
        end_session(engine, token)
        return None
    if now - row.last_seen_at > 30:  # keeps writes rare
        with engine.begin() as connection:
            connection.execute(db.sessions.update().where(s.id == row.id).values(last_seen_at=now))
    return User(row.user_id, row.email)


def end_session(engine: Engine, token: Optional[str]) -> None:
    if token:
        with engine.begin() as connection:
            connection.execute(db.sessions.delete().where(db.sessions.c.id == _token_id(token)))


def begin_attempt(engine: Engine, ip: Optional[str], max_failures: int, window_seconds: int) -> Optional[int]:
    """Counts a sign-in attempt from the address ``ip`` as failed until :func:`attempt_succeeded` says otherwise;
    None when the address is throttled: it already had ``max_failures`` failed attempts within the last
    ``window_seconds``.

    The per-account lockout stops guessing one account's password; this stops one address from guessing many
    accounts, or from locking every staff account in turn. The attempt is written before the password is
    checked and the decision counts only earlier attempts (lower ids), in one transaction (on PostgreSQL under
    an advisory lock per address), so that a burst of parallel attempts cannot all pass the check at once. A
    throttled address is refused before any password check (no argon2 work), and refused attempts do not
    count: the address is free again once the window has passed.
    ``max_failures`` 0 turns the throttle off (the attempt is not recorded)."""
    if max_failures <= 0:
        return 0
    now = time.time()
    address = (ip or "-")[:64]
    f = db.login_failures.c
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Ids come from a sequence in call order, not commit order: without this lock a lower id could
            # still be in flight when a later attempt counts. SQLite's write lock already serialises writers.
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(advisory_lock_key("login_failures", address))))
        connection.execute(db.login_failures.delete().where(f.at < now - window_seconds))
        row_id = int(connection.execute(db.login_failures.insert().values(ip=address, at=now))
                     .inserted_primary_key[0])
        earlier = connection.execute(
            sa.select(sa.func.count()).select_from(db.login_failures)
            .where(f.ip == address).where(f.at > now - window_seconds).where(f.id < row_id)).scalar() or 0
        if earlier >= max_failures:
            connection.execute(db.login_failures.delete().where(f.id == row_id))
            return None
    return row_id


def attempt_succeeded(engine: Engine, attempt: Optional[int]) -> None:
    """A successful sign-in does not count against its address."""
    if attempt:
        with engine.begin() as connection:
            connection.execute(db.login_failures.delete().where(db.login_failures.c.id == attempt))
