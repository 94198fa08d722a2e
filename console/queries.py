"""What the console's pages show: filtered conversation lists, transcripts, insight figures and exports.

Every value that comes from a request reaches the database as a bound parameter (SQLAlchemy Core), never as
SQL text.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from actions.store import consultation_requests, consultation_status_history
from console import db
from console.summary import (CONSULTATION_ACTIONS, EMERGENCY_ACTIONS, EMERGENCY_INTENTS, FALLBACK_ACTIONS,
                             FALLBACK_INTENTS, parse, topic_label)

FLAGS = ("fallback", "consultation", "emergency")
PAGE_SIZE = 50
MAX_TEXT = 200  # longest free-text filter accepted


@dataclass
class Filters:
    """The conversation filters of a request's query string (invalid values are dropped, with a message)."""

    date_from: Optional[dt.date] = None
    date_to: Optional[dt.date] = None
    flag: Optional[str] = None
    topic: Optional[str] = None
    text: Optional[str] = None
    errors: List[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> "Filters":
        filters = cls()
        for name in ("date_from", "date_to"):
            value = (args.get(name) or "").strip()
            if value:
                try:
                    setattr(filters, name, dt.date.fromisoformat(value))
                except ValueError:
                    filters.errors.append(f"{'From' if name == 'date_from' else 'To'} date must be YYYY-MM-DD.")
        flag = (args.get("flag") or "").strip()
        if flag:
            if flag in FLAGS:
                filters.flag = flag
            else:
                filters.errors.append("Unknown flag.")
        filters.topic = (args.get("topic") or "").strip()[:255] or None
        filters.text = (args.get("q") or "").strip()[:MAX_TEXT] or None
        return filters

    def as_args(self) -> Dict[str, str]:
        """The filters as query-string arguments (for links and exports)."""
        args = {"date_from": self.date_from.isoformat() if self.date_from else "",
                "date_to": self.date_to.isoformat() if self.date_to else "",
                "flag": self.flag or "", "topic": self.topic or "", "q": self.text or ""}
        return {key: value for key, value in args.items() if value}

    def describe(self) -> str:
        return " ".join(f"{key}={value}" for key, value in sorted(self.as_args().items())) or "(none)"


def epoch(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()


def day_after(day: dt.date) -> Optional[dt.date]:
    """The day after ``day``, or None after the last representable day (then there is no upper bound)."""
    return None if day >= dt.date.max else day + dt.timedelta(days=1)


def like_pattern(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere, its wildcards taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def has_request():
    return sa.exists().where(consultation_requests.c.conversation_id == db.conversations.c.sender_id)


def conditions(filters: Filters) -> List[Any]:
    c = db.conversations.c
    where: List[Any] = []
    if filters.date_from:
        where.append(c.started_at >= epoch(filters.date_from))
    if filters.date_to and day_after(filters.date_to):
        where.append(c.started_at < epoch(day_after(filters.date_to)))
    if filters.flag == "fallback":
        where.append(c.fallback == sa.true())
    elif filters.flag == "emergency":
        where.append(c.emergency == sa.true())
    elif filters.flag == "consultation":
        where.append(sa.or_(c.consultation == sa.true(), has_request()))
    if filters.topic:
        t = db.conversation_topics.alias("topic_filter").c
        where.append(sa.exists().where(t.sender_id == c.sender_id).where(t.topic == filters.topic))
    if filters.text:
        pattern = like_pattern(filters.text)
        where.append(sa.or_(c.search_text.like(pattern, escape="\\"), c.sender_id == filters.text))
    return where


def count_conversations(engine: Engine, filters: Filters) -> int:
    query = sa.select(sa.func.count()).select_from(db.conversations).where(*conditions(filters))
    with engine.connect() as connection:
        return connection.execute(query).scalar() or 0


def list_conversations(engine: Engine, filters: Filters, page: int = 1,
                       page_size: int = PAGE_SIZE) -> List[Dict[str, Any]]:
    c = db.conversations.c
    query = (sa.select(c.sender_id, c.started_at, c.last_at, c.turns, c.fallback, c.consultation, c.emergency,
                       c.topics, c.first_message, has_request().label("has_request"))
             .where(*conditions(filters))
             .order_by(c.started_at.desc(), c.sender_id.desc())
             .limit(page_size).offset((max(page, 1) - 1) * page_size))
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
    for row in rows:
        row["topics"] = [topic for topic in row["topics"].split("|") if topic]
        row["consultation"] = bool(row["consultation"] or row["has_request"])
    return rows


def known_topics(engine: Engine) -> List[str]:
    t = db.conversation_topics.c
    with engine.connect() as connection:
        return [row[0] for row in connection.execute(sa.select(t.topic).distinct().order_by(t.topic))]


def conversation(engine: Engine, sender_id: str) -> Optional[Dict[str, Any]]:
    c = db.conversations.c
    with engine.connect() as connection:
        row = connection.execute(sa.select(db.conversations).where(c.sender_id == sender_id)).first()
    return dict(row._mapping) if row else None


def transcript(engine: Engine, sender_id: str) -> List[Dict[str, Any]]:
    """The conversation's turns in order. Each turn: the visitor's message (text, intent, confidence; None
    before the first message) and the assistant's messages with the action that produced each."""
    e = db.events.c
    query = (sa.select(e.id, e.type_name, e.timestamp, e.intent_name, e.action_name, e.data)
             .where(e.sender_id == sender_id)
             .where(e.type_name.in_(("user", "bot", "action", "session_started")))
             .order_by(e.id))
    turns: List[Dict[str, Any]] = []
    turn: Dict[str, Any] = {"user": None, "replies": [], "actions": [], "session_start": False}
    action: Optional[str] = None
    with engine.connect() as connection:
        for row in connection.execute(query):
            if row.type_name == "session_started":
                if turn["user"] or turn["replies"]:
                    turns.append(turn)
                turn = {"user": None, "replies": [], "actions": [], "session_start": True}
            elif row.type_name == "user":
                if turn["user"] or turn["replies"] or turn["session_start"]:
                    turns.append(turn)
                data = parse(row.data)
                intent = (data.get("parse_data") or {}).get("intent") or {}
                turn = {"user": {"text": str(data.get("text") or ""), "at": row.timestamp,
                                 "intent": row.intent_name or intent.get("name"),
                                 "confidence": intent.get("confidence")},
                        "replies": [], "actions": [], "session_start": False}
                action = None
            elif row.type_name == "action":
                if row.action_name == "action_listen":
                    continue
                action = row.action_name
                turn["actions"].append(action)
            else:  # bot
                data = parse(row.data)
                extra = data.get("data") or {}
                buttons = [str(b.get("title") or b.get("payload") or "") for b in (extra.get("buttons") or [])
                           if isinstance(b, dict)]
                turn["replies"].append({"text": str(data.get("text") or ""), "action": action,
                                        "buttons": buttons, "at": row.timestamp})
    if turn["user"] or turn["replies"]:
        turns.append(turn)
    for item in turns:
        intent = (item["user"] or {}).get("intent")
        actions = set(item["actions"])
        item["fallback"] = intent in FALLBACK_INTENTS or bool(actions & FALLBACK_ACTIONS)
        item["emergency"] = intent in EMERGENCY_INTENTS or bool(actions & EMERGENCY_ACTIONS)
        item["consultation"] = bool(actions & CONSULTATION_ACTIONS)
    return turns


def requests_for(engine: Engine, sender_id: str) -> List[Dict[str, Any]]:
    r = consultation_requests.c
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(
            sa.select(consultation_requests).where(r.conversation_id == sender_id).order_by(r.id))]


def list_requests(engine: Engine, status: Optional[str], page: int = 1,
                  page_size: int = PAGE_SIZE) -> Tuple[List[Dict[str, Any]], int]:
    r = consultation_requests.c
    where = [r.status == status] if status else []
    with engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(consultation_requests)
                                   .where(*where)).scalar() or 0
        rows = [dict(row._mapping) for row in connection.execute(
            sa.select(consultation_requests).where(*where).order_by(r.created_at.desc(), r.id.desc())
            .limit(page_size).offset((max(page, 1) - 1) * page_size))]
        if rows:
            h = consultation_status_history.c
            history: Dict[int, List[Dict[str, Any]]] = {}
            for row in connection.execute(sa.select(consultation_status_history)
                                          .where(h.request_id.in_([row["id"] for row in rows])).order_by(h.id)):
                history.setdefault(row.request_id, []).append(dict(row._mapping))
            for row in rows:
                row["history"] = history.get(row["id"], [])
    return rows, total


def insight(engine: Engine, filters: Filters, unanswered_limit: int = 100) -> Dict[str, Any]:
    c, t, u = db.conversations.c, db.conversation_topics.c, db.unanswered.c
    where = conditions(filters)
    with engine.connect() as connection:
        per_day = [dict(row._mapping) for row in connection.execute(
            sa.select(c.started_day.label("day"), sa.func.count().label("conversations"))
            .where(*where).group_by(c.started_day).order_by(c.started_day.desc()).limit(366))]
        totals = connection.execute(
            sa.select(sa.func.count().label("conversations"),
                      sa.func.coalesce(sa.func.sum(c.turns), 0).label("messages"),
                      sa.func.coalesce(sa.func.sum(c.fallbacks), 0).label("fallbacks"),
                      sa.func.coalesce(sa.func.sum(sa.case((c.fallback == sa.true(), 1), else_=0)), 0)
                      .label("with_fallback"))
            .where(*where)).first()._mapping
        topics = [dict(row._mapping) for row in connection.execute(
            sa.select(t.topic, sa.func.sum(t.asked).label("asked"),
                      sa.func.count().label("conversations"))
            .select_from(db.conversation_topics.join(db.conversations, t.sender_id == c.sender_id))
            .where(*where).group_by(t.topic).order_by(sa.desc("asked"), t.topic).limit(30))]
        missed_where = []
        if filters.date_from:
            missed_where.append(u.at >= epoch(filters.date_from))
        if filters.date_to and day_after(filters.date_to):
            missed_where.append(u.at < epoch(day_after(filters.date_to)))
        missed = [dict(row._mapping) for row in connection.execute(
            sa.select(db.unanswered).where(*missed_where).order_by(u.at.desc(), u.event_id.desc())
            .limit(unanswered_limit))]
        missed_total = connection.execute(
            sa.select(sa.func.count()).select_from(db.unanswered).where(*missed_where)).scalar() or 0
    per_day.reverse()
    for topic in topics:
        topic["label"] = topic_label(topic["topic"])
    return {"per_day": per_day, "max_per_day": max([d["conversations"] for d in per_day] or [0]),
            "conversations": totals["conversations"], "messages": totals["messages"],
            "fallbacks": totals["fallbacks"], "with_fallback": totals["with_fallback"],
            "fallback_rate": (totals["fallbacks"] / totals["messages"]) if totals["messages"] else 0.0,
            "conversation_fallback_rate": (totals["with_fallback"] / totals["conversations"])
            if totals["conversations"] else 0.0,
            "topics": topics, "unanswered": missed, "unanswered_total": missed_total}


# Export -------------------------------------------------------------------------------------------------

# Any letters (not only ASCII) on both sides of the @, so that an address glued to words is redacted whole.
EMAIL = re.compile(r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)+")
# Phone numbers: 7 or more digits, possibly with a leading +, spaces, dots, dashes and parentheses between.
# Only digits around it end a number, so that numbers glued to words ("cell3105550134") are redacted too.
PHONE = re.compile(r"(?<!\d)\+?\(?\d(?:[\s().\-]*\d){6,14}(?!\d)")


def redact(text: Optional[str]) -> Optional[str]:
    if not text:
        return text
    return PHONE.sub("[phone]", EMAIL.sub("[email]", text))


def export_conversations(engine: Engine, filters: Filters, redacted: bool,
                         batch: int = 200) -> Iterator[Dict[str, Any]]:
    """The filtered conversations, newest first, each with its messages in order."""
    c, e = db.conversations.c, db.events.c
    query = (sa.select(c.sender_id, c.started_at, c.last_at, c.turns, c.topics, c.fallback, c.consultation,
                       c.emergency, has_request().label("has_request"))
             .where(*conditions(filters)).order_by(c.started_at.desc(), c.sender_id.desc()))
    clean = redact if redacted else (lambda text: text)
    with engine.connect() as connection:
        summaries = [dict(row._mapping) for row in connection.execute(query)]
    for start in range(0, len(summaries), batch):
        chunk = summaries[start:start + batch]
        messages: Dict[str, List[Dict[str, Any]]] = {row["sender_id"]: [] for row in chunk}
        last_action: Dict[str, Optional[str]] = {}
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(e.sender_id, e.type_name, e.timestamp, e.intent_name, e.action_name, e.data)
                .where(e.sender_id.in_(list(messages)))
                .where(e.type_name.in_(("user", "bot", "action")))
                .order_by(e.sender_id, e.id))
            for row in rows:
                if row.type_name == "action":
                    if row.action_name != "action_listen":
                        last_action[row.sender_id] = row.action_name
                    continue
                data = parse(row.data)
                if row.type_name == "user":
                    last_action[row.sender_id] = None
                    intent = (data.get("parse_data") or {}).get("intent") or {}
                    messages[row.sender_id].append({
                        "at": iso(row.timestamp), "speaker": "visitor", "text": clean(str(data.get("text") or "")),
                        "intent": row.intent_name, "confidence": intent.get("confidence"), "action": None})
                else:
                    messages[row.sender_id].append({
                        "at": iso(row.timestamp), "speaker": "assistant", "text": clean(str(data.get("text") or "")),
                        "intent": None, "confidence": None, "action": last_action.get(row.sender_id)})
        for row in chunk:
            yield {"conversation_id": row["sender_id"], "started_at": iso(row["started_at"]),
                   "last_at": iso(row["last_at"]), "turns": row["turns"],
                   "topics": [topic for topic in row["topics"].split("|") if topic],
                   "fallback": bool(row["fallback"]),
                   "consultation": bool(row["consultation"] or row["has_request"]),
                   "emergency": bool(row["emergency"]), "messages": messages[row["sender_id"]]}


def iso(timestamp: Optional[float]) -> Optional[str]:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds")
