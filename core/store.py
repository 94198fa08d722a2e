"""The ``consultation_requests`` table, in the same database as Rasa's tracker store
(:func:`core.settings.database_url`).

The table is created if missing (and a column added since is added to an existing table).
:meth:`RequestStore.submit` stores a request within the abuse limits, counted in the table itself so that
every action server shares them. :class:`RequestStore` is also the one read layer for the requests: the
``make requests`` command and the staff console read them through it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import IntegrityError

STATUSES = ("new", "contacted", "closed")

metadata = sa.MetaData()
consultation_requests = sa.Table(
    "consultation_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # One key per request: the same request confirmed twice is stored once.
    sa.Column("request_key", sa.String(64), nullable=False, unique=True),
    sa.Column("conversation_id", sa.String(255), nullable=False, index=True),
    sa.Column("name", sa.String(120), nullable=False),
    sa.Column("phone", sa.String(20), nullable=False),
    sa.Column("callback_time", sa.String(300), nullable=False),
    sa.Column("email", sa.String(254)),
    sa.Column("reason", sa.String(1000)),
    sa.Column("status", sa.String(16), nullable=False, default="new", index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("status_changed_at", sa.DateTime(timezone=True)),
    sa.Column("status_changed_by", sa.String(120)),
    # The channel's pseudonymous client (16 hex characters of an HMAC of the address: the address itself is
    # never stored), for the per-client limit; None when the channel gave none.
    sa.Column("client", sa.String(16), index=True),
)
# Columns added after the table was first created: create_table adds them to an existing table.
ADDED_COLUMNS = ("client",)
# Every status change, oldest first: who changed what and when (the request keeps only the latest).
consultation_status_history = sa.Table(
    "consultation_status_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Integer, nullable=False, index=True),
    sa.Column("old_status", sa.String(16)),
    sa.Column("new_status", sa.String(16), nullable=False),
    sa.Column("changed_by", sa.String(120), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)


def advisory_lock_key(table: str, text: str) -> int:
    """A signed 64-bit PostgreSQL advisory lock key for ``text`` among the rows of ``table``."""
    return int.from_bytes(hashlib.sha256(f"{table}|{text}".encode()).digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class ConsultationRequest:
    """A confirmed request, as the visitor gave it (phone in E.164 form)."""

    request_key: str
    conversation_id: str
    name: str
    phone: str
    callback_time: str
    email: Optional[str] = None
    reason: Optional[str] = None
    client: Optional[str] = None


# What :meth:`RequestStore.submit` did with a request.
CREATED = "created"
DUPLICATE = "duplicate"
CONVERSATION_LIMIT = "conversation_limit"
CLIENT_LIMIT = "client_limit"


@dataclass(frozen=True)
class Limits:
    """How many requests one conversation and one client may store within ``window`` (0: no limit)."""

    per_conversation: int
    per_client: int
    window: dt.timedelta


class _OverLimit(Exception):
    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def make_engine(url: URL | str) -> Engine:
    """An engine for the assistant's database. ``hide_parameters``: an error never carries the statement's
    values (a visitor's details, password hashes) into a log or a command's output."""
    return sa.create_engine(url, pool_pre_ping=True, future=True, hide_parameters=True)


class RequestStore:
    """Reads and writes consultation requests."""

    def __init__(self, database: URL | str | Engine) -> None:
        """On ``database``: an engine the process already has (the console's), or a URL to make one for."""
        self.engine: Engine = database if isinstance(database, Engine) else make_engine(database)

    def create_table(self) -> None:
        """Creates the tables and their indexes if they do not exist, and adds the columns a table
        created by an earlier version lacks. Several servers may start at once on one database: what
        another one created first is not an error."""
        try:
            metadata.create_all(self.engine)
        except sa.exc.DBAPIError:
            # PostgreSQL refuses the second of two simultaneous CREATE TABLEs; the tables now exist.
            metadata.create_all(self.engine)
        for name in ADDED_COLUMNS:
            try:
                self._add_column(name)
            except sa.exc.DBAPIError:
                # Another server starting at the same moment added it first (or is adding its index).
                if name not in self._columns():
                    raise

    def _columns(self) -> set:
        return {column["name"] for column in sa.inspect(self.engine).get_columns("consultation_requests")}

    def _add_column(self, name: str) -> None:
        """Adds column ``name`` of ``consultation_requests`` and its index, when the table lacks it."""
        if name in self._columns():
            return
        kind = consultation_requests.c[name].type.compile(dialect=self.engine.dialect)
        with self.engine.begin() as connection:
            connection.exec_driver_sql(f"ALTER TABLE consultation_requests ADD COLUMN {name} {kind}")
        for index in consultation_requests.indexes:
            if [column.name for column in index.columns] == [name]:
                index.create(self.engine, checkfirst=True)

    def submit(self, request: ConsultationRequest, limits: Limits) -> str:
        """Stores ``request`` unless it is a duplicate or over a limit; returns :data:`CREATED`,
        :data:`DUPLICATE`, :data:`CONVERSATION_LIMIT` or :data:`CLIENT_LIMIT`.

        The request is inserted first and the window counted after, in one transaction that is rolled
        back when over a limit. The insert holds SQLite's write lock until the end, and on PostgreSQL
        an advisory lock per conversation and per client is taken first, so that simultaneous requests
        on several action servers cannot all pass a count that none of them has joined yet.
        """
        now = dt.datetime.now(dt.timezone.utc)
        since = now - limits.window
        r = consultation_requests.c
        row = {**request.__dict__, "status": "new", "created_at": now}
        checks = [(CONVERSATION_LIMIT, r.conversation_id, request.conversation_id, limits.per_conversation)]
        if request.client:
            checks.append((CLIENT_LIMIT, r.client, request.client, limits.per_client))
        checks = [check for check in checks if check[3] > 0]
        try:
            with self.engine.begin() as connection:
                if self.engine.dialect.name == "postgresql":
                    for key in sorted(advisory_lock_key("consultation_requests", f"{check[0]}|{check[2]}") for check in checks):
                        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
                connection.execute(consultation_requests.insert().values(**row))
                for outcome, column, value, limit in checks:
                    count = connection.execute(sa.select(sa.func.count()).select_from(consultation_requests)
                                               .where(column == value, r.created_at >= since)).scalar()
                    if count > limit:
                        raise _OverLimit(outcome)
        except IntegrityError:
            return DUPLICATE
        except _OverLimit as over:
            return over.outcome
        return CREATED

    def list(self, status: Optional[str] = None, limit: int = 100, offset: int = 0,
             with_history: bool = False) -> List[Dict[str, Any]]:
        """The newest requests first, optionally only those with ``status``; ``with_history``: each with its
        status changes, oldest first, under ``"history"``."""
        r = consultation_requests.c
        query = sa.select(consultation_requests).order_by(r.created_at.desc(), r.id.desc()).limit(limit).offset(offset)
        if status:
            query = query.where(r.status == status)
        with self.engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query)]
            if with_history and rows:
                h = consultation_status_history.c
                history: Dict[int, List[Dict[str, Any]]] = {}
                for change in connection.execute(sa.select(consultation_status_history)
                                                 .where(h.request_id.in_([row["id"] for row in rows])).order_by(h.id)):
                    history.setdefault(change.request_id, []).append(dict(change._mapping))
                for row in rows:
                    row["history"] = history.get(row["id"], [])
        return rows

    def count(self, status: Optional[str] = None) -> int:
        """How many requests there are, optionally only with ``status``."""
        query = sa.select(sa.func.count()).select_from(consultation_requests)
        if status:
            query = query.where(consultation_requests.c.status == status)
        with self.engine.connect() as connection:
            return connection.execute(query).scalar() or 0

    def find(self, conversation_id: str) -> List[Dict[str, Any]]:
        """The requests made in one conversation, oldest first."""
        query = (sa.select(consultation_requests)
                 .where(consultation_requests.c.conversation_id == conversation_id)
                 .order_by(consultation_requests.c.id))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def set_status(self, request_id: int, status: str, changed_by: str) -> bool:
        """Changes a request's status, recording who and when (also in ``consultation_status_history``);
        False if there is no such request."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        now = dt.datetime.now(dt.timezone.utc)
        row = consultation_requests.c
        with self.engine.begin() as connection:
            old = connection.execute(sa.select(row.status).where(row.id == request_id)).scalar()
            if old is None:
                return False
            update = (consultation_requests.update().where(row.id == request_id)
                      .values(status=status, status_changed_by=changed_by, status_changed_at=now))
            if connection.execute(update).rowcount != 1:
                return False
            connection.execute(consultation_status_history.insert().values(
                request_id=request_id, old_status=old, new_status=status, changed_by=changed_by, changed_at=now))
        return True
