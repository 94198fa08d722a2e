"""Keeps ``console_conversations`` (one row per conversation) in step with Rasa's ``events`` table.

Each refresh reads the events added since the last one (plus an overlap of recent ids, so that a transaction
committed late on PostgreSQL is not missed) and recomputes the summary of every conversation they belong to,
from all of its events: recomputing is idempotent, so reading an event twice does no harm.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
import unicodedata
from collections import defaultdict
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from console import db
from console.text import clean
from core.knowledge_loader import get_knowledge

logger = logging.getLogger(__name__)

FALLBACK_INTENTS = {"nlu_fallback"}
FALLBACK_ACTIONS = {"action_fallback"}
OUT_OF_SCOPE_INTENTS = {"out_of_scope"}
CONSULTATION_INTENTS = {"request_consultation"}
CONSULTATION_ACTIONS = {"consultation_form", "action_submit_consultation"}
EMERGENCY_INTENTS = {"emergency", "crisis"}
EMERGENCY_ACTIONS = {"action_safety"}
# Actions that are not an answer to the visitor's message.
NOT_ANSWERS = {"action_listen", "action_session_start", "action_unlikely_intent"}
# A fallback turn that set one of these slots answered the message: a named treatment (therapy), or a
# topic, a follow-up or "the article doesn't cover that" with the closest topic (topic; actions/answers.py).
ANSWER_SLOTS = {"therapy", "topic"}
MAX_NORMALISED = 300
_PUNCTUATION = re.compile(r"[\W_]+")


def not_topics() -> FrozenSet[str]:
    """Intents that say nothing about what the visitor wanted to know: not "topics" (topics.yml
    ``conversation.not_topics``)."""
    return get_knowledge().answering.not_topics


OVERLAP = 500  # ids re-read at each refresh
RESCAN_SECONDS = 10.0  # re-read the overlap this often even when no new id appeared
BATCH = 400  # conversations recomputed per transaction

_lock = threading.Lock()
_last_scan: Dict[str, float] = {}


def topic_label(intent: str) -> str:
    name = intent[4:] if intent.startswith("ask_") else intent
    return name.replace("_", " ")


def parse(data: Optional[str]) -> Dict[str, Any]:
    """An event's stored JSON as a dict ({} when it is not one: bad data is not an error)."""
    try:
        value = json.loads(data) if data else {}
    except (TypeError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def mapping(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def day_of(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d")


def _get_state(connection, key: str) -> Optional[str]:
    return connection.execute(sa.select(db.state.c.value).where(db.state.c.key == key)).scalar()


def _set_state(connection, key: str, value: str) -> None:
    if connection.execute(db.state.update().where(db.state.c.key == key).values(value=value)).rowcount == 0:
        connection.execute(db.state.insert().values(key=key, value=value))


def timestamp(value: Any) -> Optional[float]:
    """A stored event time (None when missing). Raises ValueError for one no date can show: bad data, whose
    row is then skipped."""
    if value is None:
        return None
    try:
        value = float(value)
        day_of(value)
    except (TypeError, ValueError, OverflowError, OSError):
        raise ValueError("event time out of range") from None
    return value


def normalise(text: str) -> str:
    """A message's text for grouping near-identical messages: compatibility forms folded, case folded,
    punctuation and symbols taken as spaces, runs of spaces collapsed ("What is fibro??" = "what is fibro")."""
    text = unicodedata.normalize("NFKC", text[:MAX_NORMALISED * 4]).casefold()
    return " ".join(_PUNCTUATION.sub(" ", text).split())[:MAX_NORMALISED]


def _close_turn(turn: Optional[Dict[str, Any]], unanswered: Dict[int, Dict[str, Any]]) -> None:
    """Files the visitor message of a finished turn as unanswered when it got the fallback (and the fallback
    did not answer it after all) or was out of scope."""
    if turn is None:
        return
    actions = turn.pop("actions")
    fallback = turn.pop("fallback_intent") or bool(set(actions) & FALLBACK_ACTIONS)
    answered = turn.pop("answered")
    out_of_scope = turn.pop("out_of_scope")
    turn["action"] = ", ".join(dict.fromkeys(actions))[:255] or None
    if fallback and not answered:
        unanswered[turn["event_id"]] = {**turn, "reason": "fallback"}
    elif out_of_scope:
        unanswered[turn["event_id"]] = {**turn, "reason": "out of scope"}


def summarise(sender_id: str, rows: Iterable[Any]) -> Dict[str, Any]:
    """A conversation's summary row, its topics and its unanswered messages, from its events in id order.

    An event that cannot be read (a time out of range, a text that is not one) is skipped and logged by its id,
    never by its content: one bad row must not stop the summary of every other conversation."""
    started = last = None
    turns = 0
    topics: Dict[str, int] = defaultdict(int)
    texts: List[str] = []
    first_message = ""
    flags = {"fallback": False, "consultation": False, "emergency": False}
    unanswered: Dict[int, Dict[str, Any]] = {}
    turn: Optional[Dict[str, Any]] = None  # the latest visitor message and what answered it
    for row in rows:
        try:
            at = timestamp(row.timestamp)
            if at is not None:
                started = at if started is None else min(started, at)
                last = at if last is None else max(last, at)
            if row.type_name == "user":
                _close_turn(turn, unanswered)
                turns += 1
                text = clean(parse(row.data).get("text"))
                intent = clean(row.intent_name)[:255]
                if not first_message and text:
                    first_message = text[:300]
                texts.append(text.lower())
                turn = {"event_id": row.id, "sender_id": sender_id, "at": at or 0.0, "text": text,
                        "normalized": normalise(text), "intent": intent or None, "actions": [],
                        "fallback_intent": intent in FALLBACK_INTENTS, "answered": False,
                        "out_of_scope": intent in OUT_OF_SCOPE_INTENTS}
                if intent and intent not in not_topics():
                    topics[intent] += 1
                flags["consultation"] |= intent in CONSULTATION_INTENTS
                flags["emergency"] |= intent in EMERGENCY_INTENTS
            elif row.type_name == "action":
                action = clean(row.action_name)[:255]
                if turn is not None and action and action not in NOT_ANSWERS:
                    turn["actions"].append(action)
                flags["consultation"] |= action in CONSULTATION_ACTIONS
                flags["emergency"] |= action in EMERGENCY_ACTIONS
            elif row.type_name == "slot" and row.action_name in ANSWER_SLOTS:
                if turn is not None and set(turn["actions"]) & FALLBACK_ACTIONS:
                    turn["answered"] = True  # the fallback recognised what was asked and answered it
        except Exception as error:  # noqa: BLE001 - bad data: skipped, logged by id only
            logger.warning("console summary: skipped event %s (%s)", getattr(row, "id", "?"), type(error).__name__)
    _close_turn(turn, unanswered)
    flags["fallback"] = any(item["reason"] == "fallback" for item in unanswered.values())
    started = started or 0.0
    topic_names = sorted(topics)
    while topic_names and len("|" + "|".join(topic_names) + "|") > 2000:
        topic_names.pop()
    summary = {
        "sender_id": sender_id, "started_at": started, "last_at": last or started, "started_day": day_of(started),
        "turns": turns, "fallbacks": sum(1 for item in unanswered.values() if item["reason"] == "fallback"),
        "topics": "|" + "|".join(topic_names) + "|" if topic_names else "",
        "first_message": first_message, "search_text": "\n".join(texts), **flags,
    }
    return {"summary": summary,
            "topics": [{"sender_id": sender_id, "topic": topic, "asked": topics[topic]} for topic in topic_names],
            "unanswered": list(unanswered.values())}


def _write(engine: Engine, batch: List[str], results: List[Dict[str, Any]]) -> None:
    """Replaces the summaries of ``batch`` by ``results`` in one transaction."""
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


def recompute(engine: Engine, senders: Sequence[str]) -> None:
    """Recomputes the summaries of ``senders`` (a conversation without events loses its summary).

    A conversation whose summary the database refuses is skipped (and logged by its first event's id): the
    others are written."""
    e = db.events.c
    for start in range(0, len(senders), BATCH):
        batch = list(senders[start:start + BATCH])
        query = (sa.select(e.id, e.sender_id, e.type_name, e.timestamp, e.intent_name, e.action_name,
                           sa.case((e.type_name == "user", e.data), else_=sa.null()).label("data"))
                 .where(e.sender_id.in_(batch))
                 .where(sa.or_(e.type_name.in_(("user", "action", "session_started")),
                               sa.and_(e.type_name == "slot", e.action_name.in_(sorted(ANSWER_SLOTS)))))
                 .order_by(e.sender_id, e.id))
        grouped: Dict[str, List[Any]] = defaultdict(list)
        with engine.connect() as connection:
            for row in connection.execute(query):
                grouped[row.sender_id].append(row)
        results = []
        for sender, rows in grouped.items():
            try:
                results.append(summarise(sender, rows))
            except Exception as error:  # noqa: BLE001 - bad data: skipped, logged by id only
                logger.warning("console summary: skipped the conversation of event %s (%s)", rows[0].id,
                               type(error).__name__)
        for attempt in range(3):
            try:
                _write(engine, batch, results)
                break
            except sa.exc.IntegrityError:  # another process recomputed the same conversations meanwhile
                if attempt == 2:
                    raise
                time.sleep(0.05)
            except Exception:  # noqa: BLE001 - one summary the database refuses: write them one by one
                for result in results:
                    try:
                        _write(engine, [result["summary"]["sender_id"]], [result])
                    except Exception as error:  # noqa: BLE001 - that one is skipped, logged by id only
                        logger.warning("console summary: could not store the conversation of event %s (%s)",
                                       grouped[result["summary"]["sender_id"]][0].id, type(error).__name__)
                break


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
