"""What the messaging channels share across Rasa servers, in the assistant's database (SQLAlchemy).

* ``channel_deliveries``: one row per platform message taken (channel, the platform's delivery id:
  Twilio's ``MessageSid``, Telegram's ``update_id``, Messenger's ``mid``, Slack's ``event_id``). The
  primary key makes the first insert win: a re-delivered message, on whichever server it lands, finds
  its row and gets no second turn. The rows also count each conversation's recent messages for the
  per-sender cap (:meth:`PlatformStore.recent`).
* ``channel_options``: the options last offered to a conversation as a numbered list (SMS, WhatsApp,
  Slack), so that the visitor's "1" is read as that button on the next turn.

No visitor text is stored here: ids, times and the button titles the assistant itself sent.
Created like the project's other tables: by ``python -m scripts.migrate`` (:func:`create_tables`),
and by the channels at start-up if missing. Rasa-free (tests/test_channel_store.py).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import IntegrityError

from channels.shaping import Option, Options

# A delivery id is kept this long: platforms re-deliver within minutes (Slack), hours (Messenger) or a
# day (Telegram keeps an update for 24 hours).
RETENTION = dt.timedelta(days=7)

metadata = sa.MetaData()
channel_deliveries = sa.Table(
    "channel_deliveries",
    metadata,
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("delivery_id", sa.String(128), primary_key=True),
    sa.Column("conversation_id", sa.String(255), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("channel_deliveries_by_conversation", "conversation_id", "received_at"),
)
channel_options = sa.Table(
    "channel_options",
    metadata,
    sa.Column("conversation_id", sa.String(255), primary_key=True),
    sa.Column("options", sa.Text, nullable=False),  # JSON [[title, payload], …]
    sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
)


def create_tables(engine: Engine) -> None:
    """Creates the channels' tables where missing; changes nothing that exists."""
    metadata.create_all(engine, checkfirst=True)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class PlatformStore:
    """The channels' de-duplication, per-sender counts and remembered options."""

    def __init__(self, database: URL | str | Engine) -> None:
        self.engine = database if isinstance(database, Engine) else sa.create_engine(
            database, pool_pre_ping=True, future=True, hide_parameters=True)

    def create_tables(self) -> None:
        for attempt in range(3):
            try:
                create_tables(self.engine)
                return
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError):  # another server creating them now
                if attempt == 2:
                    raise

    def first_delivery(self, channel: str, delivery_id: str, conversation_id: str) -> bool:
        """Records a platform message; False when it was already recorded (a re-delivery)."""
        row = {"channel": channel, "delivery_id": delivery_id[:128], "conversation_id": conversation_id,
               "received_at": _now()}
        try:
            with self.engine.begin() as connection:
                connection.execute(channel_deliveries.insert().values(**row))
        except IntegrityError:
            return False
        if random.random() < 0.01:  # now and then, forget deliveries no platform re-sends any more
            self.prune()
        return True

    def recent(self, conversation_id: str, window: dt.timedelta) -> int:
        """How many messages of the conversation were taken within ``window`` (this one included)."""
        query = (sa.select(sa.func.count()).select_from(channel_deliveries)
                 .where(channel_deliveries.c.conversation_id == conversation_id,
                        channel_deliveries.c.received_at > _now() - window))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def prune(self, older_than: Optional[dt.timedelta] = None) -> None:
        limit = _now() - (older_than or RETENTION)
        with self.engine.begin() as connection:
            connection.execute(channel_deliveries.delete().where(channel_deliveries.c.received_at < limit))

    def options(self, conversation_id: str) -> Options:
        """The options last offered to the conversation (empty when none)."""
        query = sa.select(channel_options.c.options).where(channel_options.c.conversation_id == conversation_id)
        with self.engine.connect() as connection:
            value = connection.execute(query).scalar_one_or_none()
        try:
            return tuple(Option(str(title), str(payload)) for title, payload in json.loads(value or "[]"))
        except (ValueError, TypeError):
            return ()

    def offer(self, conversation_id: str, choices: Options) -> None:
        """Remembers the options just offered (none: forgets the previous ones)."""
        table = channel_options
        try:
            with self.engine.begin() as connection:
                connection.execute(table.delete().where(table.c.conversation_id == conversation_id))
                if choices:
                    value = json.dumps([[option.title, option.payload] for option in choices])
                    connection.execute(table.insert().values(conversation_id=conversation_id, options=value,
                                                             offered_at=_now()))
        except IntegrityError:  # a turn of the same conversation offered its options at the same moment
            pass
