"""Keeps ``console_conversations`` (one row per conversation) in step with Rasa's ``events`` table.

Each refresh reads the events added since the last one (plus an overlap of recent ids, so that a transaction
committed late on PostgreSQL is not missed) and recomputes the summary of every conversation they belong to,
from all of its events: recomputing is idempotent, so reading an event twice does no harm.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from console import db

FALLBACK_INTENTS = {"nlu_fallback"}
FALLBACK_ACTIONS = {"action_fallback"}
OUT_OF_SCOPE_INTENTS = {"out_of_scope"}
CONSULTATION_INTENTS = {"request_consultation"}
CONSULTATION_ACTIONS = {"consultation_form", "action_submit_consultation"}
EMERGENCY_INTENTS = {"emergency", "crisis"}
EMERGENCY_ACTIONS = {"action_safety"}
# Intents that say nothing about what the visitor wanted to know: not "topics".
NOT_TOPICS = {"inform", "affirm", "deny", "greet", "goodbye", "thank", "stop", "nlu_fallback"}

OVERLAP = 500  # ids re-read at each refresh
RESCAN_SECONDS = 10.0  # re-read the overlap this often even when no new id appeared
BATCH = 400  # conversations recomputed per transaction

_lock = threading.Lock()
_last_scan: Dict[str, float] = {}


def topic_label(intent: str) -> str:
    name = intent[4:] if intent.startswith("ask_") else intent
    return name.replace("_", " ")


def parse(data: Optional[str]) -> Dict[str, Any]:
    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def day_of(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d")


def _get_state(connection, key: str) -> Optional[str]:
    return connection.execute(sa.select(db.state.c.value).where(db.state.c.key == key)).scalar()


def _set_state(connection, key: str, value: str) -> None:
    if connection.execute(db.state.update().where(db.state.c.key == key).values(value=value)).rowcount == 0:
        connection.execute(db.state.insert().values(key=key, value=value))


def summarise(sender_id: str, rows: Iterable[Any]) -> Dict[str, Any]:
    """A conversation's summary row, its topics and its unanswered messages, from its events in id order."""
    started = last = None
    turns = 0
    topics: Dict[str, int] = defaultdict(int)
    texts: List[str] = []
    first_message = ""
    flags = {"fallback": False, "consultation": False, "emergency": False}
    unanswered: Dict[int, Dict[str, Any]] = {}
    current: Optional[Dict[str, Any]] = None  # the latest visitor message
    for row in rows:
        if row.timestamp is not None:
            started = row.timestamp if started is None else min(started, row.timestamp)
            last = row.timestamp if last is None else max(last, row.timestamp)
        if row.type_name == "user":
            turns += 1
            text = str(parse(row.data).get("text") or "")
            intent = row.intent_name or ""
            if not first_message and text:
                first_message = text[:300]
            texts.append(text.lower())
            current = {"event_id": row.id, "sender_id": sender_id, "at": row.timestamp or 0.0, "text": text,
                       "intent": intent or None}
            if intent and intent not in NOT_TOPICS:
                topics[intent] += 1
            if intent in FALLBACK_INTENTS:
                flags["fallback"] = True
                unanswered[row.id] = {**current, "reason": "fallback"}
            elif intent in OUT_OF_SCOPE_INTENTS:
                unanswered[row.id] = {**current, "reason": "out of scope"}
            flags["consultation"] |= intent in CONSULTATION_INTENTS
            flags["emergency"] |= intent in EMERGENCY_INTENTS
        elif row.type_name == "action":
            action = row.action_name or ""
            if action in FALLBACK_ACTIONS:
                flags["fallback"] = True
                if current is not None:
                    unanswered[current["event_id"]] = {**current, "reason": "fallback"}
            flags["consultation"] |= action in CONSULTATION_ACTIONS
            flags["emergency"] |= action in EMERGENCY_ACTIONS
    started = started or 0.0
    summary = {
        "sender_id": sender_id, "started_at": started, "last_at": last or started, "started_day": day_of(started),
        "turns": turns, "fallbacks": sum(1 for item in unanswered.values() if item["reason"] == "fallback"),
        "topics": "|" + "|".join(sorted(topics)) + "|" if topics else "",
        "first_message": first_message, "search_text": "\n".join(texts), **flags,
    }
    return {"summary": summary,
            "topics": [{"sender_id": sender_id, "topic": topic, "asked": count} for topic, count in topics.items()],
            "unanswered": list(unanswered.values())}


def recompute(engine: Engine, senders: Sequence[str]) -> None:
    """Recomputes the summaries of ``senders`` (a conversation without events loses its summary)."""
    e = db.events.c
    for start in range(0, len(senders), BATCH):
        batch = list(senders[start:start + BATCH])
        query = (sa.select(e.id, e.sender_id, e.type_name, e.timestamp, e.intent_name, e.action_name,
                           sa.case((e.type_name == "user", e.data), else_=sa.null()).label("data"))
                 .where(e.sender_id.in_(batch))
                 .where(e.type_name.in_(("user", "action", "session_started")))
                 .order_by(e.sender_id, e.id))
        grouped: Dict[str, List[Any]] = defaultdict(list)
        with engine.connect() as connection:
            for row in connection.execute(query):
                grouped[row.sender_id].append(row)
        results = [summarise(sender, rows) for sender, rows in grouped.items()]
        for attempt in range(3):
            try:
                with engine.begin() as connection:
                    for table, column in ((db.conversations, db.conversations.c.sender_id),
                                          (db.conversation_topics, db.conversation_topics.c.sender_id),
                                          (db.unanswered, db.unanswered.c.sender_id)):
                        connection.execute(table.delete().where(column.in_(batch)))
                    if results:
                        connection.execute(db.conversations.insert(), [r["summary"] for r in results])
                    topics = [t for r in results for t in r["topics"]]
                    if topics:
                        connection.execute(db.conversation_topics.insert(), topics)
                    missed = [u for r in results for u in r["unanswered"]]
                    if missed:
                        connection.execute(db.unanswered.insert(), missed)
                break
            except sa.exc.IntegrityError:  # another process recomputed the same conversations meanwhile
                if attempt == 2:
                    raise
                time.sleep(0.05)


def refresh(engine: Engine, force: bool = False) -> int:
    """Brings the summaries up to date; the number of conversations recomputed."""
    key = str(engine.url)
    with _lock:
        if not db.ensure_event_indexes(engine):
            return 0
        e = db.events.c
        with engine.connect() as connection:
            max_id = connection.execute(sa.select(sa.func.max(e.id))).scalar() or 0
            watermark = int(_get_state(connection, "events_watermark") or 0)
        now = time.monotonic()
        if not force and max_id == watermark and now - _last_scan.get(key, 0.0) < RESCAN_SECONDS:
            return 0
        _last_scan[key] = now
        low = max(0, watermark - OVERLAP) if watermark <= max_id else 0  # events deleted and ids reused: all
        with engine.connect() as connection:
            senders = [row[0] for row in connection.execute(
                sa.select(e.sender_id).where(e.id > low).where(e.id <= max_id).distinct())]
        recompute(engine, senders)
        try:
            with engine.begin() as connection:
                _set_state(connection, "events_watermark", str(max_id))
        except sa.exc.IntegrityError:  # another process set it first
            pass
        return len(senders)


def forget(engine: Engine, senders: Sequence[str]) -> None:
    """Removes the summaries of deleted conversations."""
    with engine.begin() as connection:
        for start in range(0, len(senders), BATCH):
            batch = list(senders[start:start + BATCH])
            for table in (db.conversations, db.conversation_topics, db.unanswered):
                connection.execute(table.delete().where(table.c.sender_id.in_(batch)))
