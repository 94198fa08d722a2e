"""The console's tables, Rasa's ``events`` table as the console reads it, and the database connection.

The console creates its own tables (``console_*``) and, when Rasa's ``events`` table exists, a few indexes on it
(create-if-missing). Rasa creates ``events`` itself; the console never changes its columns or rows, except
the retention command, which deletes old conversations.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.store import RequestStore

metadata = sa.MetaData()

# Rasa's table (rasa/core/tracker_store.py, SQLTrackerStore.SQLEvent), kept in a metadata of its own so that
# ``create_all`` never creates it: only the tests' conversation generator creates it, when it is missing.
rasa_metadata = sa.MetaData()
events = sa.Table(
    "events",
    rasa_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sender_id", sa.String(255), nullable=False, index=True),
    sa.Column("type_name", sa.String(255), nullable=False),
    sa.Column("timestamp", sa.Float),
    sa.Column("intent_name", sa.String(255)),
    sa.Column("action_name", sa.String(255)),
    sa.Column("data", sa.Text),
)
# Indexes the console adds to ``events``: the refresh and the transcript read by id range and by sender.
EVENT_INDEXES = (
    sa.Index("ix_console_events_sender_id_id", events.c.sender_id, events.c.id),
    sa.Index("ix_console_events_timestamp", events.c.timestamp),
)

# One row per conversation (Rasa sender id), derived from ``events`` by console.summary.refresh.
conversations = sa.Table(
    "console_conversations",
    metadata,
    sa.Column("sender_id", sa.String(255), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("last_at", sa.Float, nullable=False),
    sa.Column("started_day", sa.String(10), nullable=False),  # YYYY-MM-DD (UTC) of started_at
    sa.Column("turns", sa.Integer, nullable=False),  # visitor messages
    sa.Column("fallbacks", sa.Integer, nullable=False),  # visitor messages the assistant could not answer
    sa.Column("fallback", sa.Boolean, nullable=False),
    sa.Column("consultation", sa.Boolean, nullable=False),
    sa.Column("emergency", sa.Boolean, nullable=False),  # emergency or crisis routing
    sa.Column("topics", sa.String(2000), nullable=False),  # "|ask_symptoms|ask_causes|"
    sa.Column("first_message", sa.String(300), nullable=False),
    sa.Column("search_text", sa.Text, nullable=False),  # the visitor's messages, lower case
    sa.Index("ix_console_conversations_started", "started_at", "sender_id"),
    sa.Index("ix_console_conversations_day", "started_day"),
    sa.Index("ix_console_conversations_last", "last_at"),
)
conversation_topics = sa.Table(
    "console_conversation_topics",
    metadata,
    sa.Column("sender_id", sa.String(255), primary_key=True),
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("asked", sa.Integer, nullable=False),
    sa.Index("ix_console_topics_topic", "topic", "sender_id"),
)
# Visitor messages the assistant could not answer (fallback) or that were out of scope.
unanswered = sa.Table(
    "console_unanswered",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sender_id", sa.String(255), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("intent", sa.String(255)),
    sa.Column("reason", sa.String(20), nullable=False),  # "fallback" or "out of scope"
    # the text as grouped on the insight page (console.summary.normalise)
    sa.Column("normalized", sa.String(300), nullable=False),
    sa.Column("action", sa.String(255)),  # the action(s) that answered it
    sa.Index("ix_console_unanswered_normalized", "normalized", "event_id"),
)
# Tables derived from ``events`` (rebuilt from it whenever their layout changes: see DERIVED_VERSION).
DERIVED = (conversations, conversation_topics, unanswered)
DERIVED_VERSION = "3"  # 2: unanswered.normalized and unanswered.action; 3: the topic slot counts as answered
state = sa.Table(
    "console_state",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
)
users = sa.Table(
    "console_users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(254), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("failed_logins", sa.Integer, nullable=False, default=0),
    sa.Column("locked_until", sa.Float),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_login_at", sa.DateTime(timezone=True)),
)
sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # sha256 of the token in the signed cookie
    sa.Column("user_id", sa.Integer, nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_seen_at", sa.Float, nullable=False),
)
# Failed sign-ins by client address, for the per-address throttle (console.auth.throttled).
login_failures = sa.Table(
    "console_login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ip", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_console_login_failures_ip_at", "ip", "at"),
)
audit = sa.Table(
    "console_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.String(254), nullable=False, index=True),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("target", sa.String(300)),
    sa.Column("detail", sa.Text),
    sa.Column("ip", sa.String(64)),
)


def current_engine() -> Engine:
    """The engine of the console app serving the current request (made once by console.app.create_app)."""
    return current_app.extensions["console_engine"]


def current_requests() -> RequestStore:
    """The consultation requests of the console app serving the current request, on its engine."""
    return current_app.extensions["console_requests"]


def describe_error(error: BaseException) -> str:
    """A short description of a database or configuration error for command output: for a database
    error, its type and the first line of the database's message (not the statement, nor the database's
    details, which may quote values)."""
    if not isinstance(error, SQLAlchemyError):  # a configuration error: its message names the setting
        return str(error)
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    message = lines[0].strip() if lines else ""
    return f"{type(error).__name__}: {message[:200]}" if message else type(error).__name__


def has_events(engine: Engine) -> bool:
    return sa.inspect(engine).has_table("events")


def create_schema(engine: Engine) -> None:
    """Creates the console's tables, the requests tables and the indexes on ``events`` if missing. The tables
    derived from ``events`` are dropped and rebuilt (by the next refresh) when their layout changed."""
    state.create(engine, checkfirst=True)
    try:
        with engine.begin() as connection:
            version = connection.execute(sa.select(state.c.value).where(state.c.key == "derived_version")).scalar()
            if version != DERIVED_VERSION:
                for table in DERIVED:
                    table.drop(connection, checkfirst=True)
                connection.execute(state.delete().where(state.c.key.in_(("derived_version", "events_watermark"))))
                connection.execute(state.insert().values(key="derived_version", value=DERIVED_VERSION))
    except sa.exc.IntegrityError:  # another console process did it meanwhile
        pass
    metadata.create_all(engine)
    # The requests tables as the action server creates them, with the columns a table made by an earlier
    # version lacks (the console reads every column).
    RequestStore(engine).create_table()
    ensure_event_indexes(engine)


def ensure_event_indexes(engine: Engine) -> bool:
    """Adds the console's indexes to Rasa's ``events`` table if it exists; whether it exists."""
    if not has_events(engine):
        return False
    existing = {index["name"] for index in sa.inspect(engine).get_indexes("events")}
    for index in EVENT_INDEXES:
        if index.name not in existing:
            try:
                index.create(engine)
            except sa.exc.DBAPIError:  # created meanwhile by another process
                pass
    return True


def write_audit(engine: Engine, actor: str, action: str, target: Optional[str] = None,
                detail: Optional[str] = None, ip: Optional[str] = None) -> None:
    with engine.begin() as connection:
        connection.execute(audit.insert().values(
            at=dt.datetime.now(dt.timezone.utc), actor=actor[:254], action=action[:40],
            target=None if target is None else target[:300], detail=detail, ip=ip))
