"""What the console's pages show: filtered conversation lists, transcripts, insight figures, exports and the
audit log. (The consultation requests are read through core.store.RequestStore, as the action server
writes them.)

Every value that comes from a request reaches the database as a bound parameter (SQLAlchemy Core), never as
SQL text.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from console import db
from console.redaction import redact
from console.summary import (
    ANSWER_SLOTS,
    CONSULTATION_ACTIONS,
    EMERGENCY_ACTIONS,
    EMERGENCY_INTENTS,
    FALLBACK_ACTIONS,
    FALLBACK_INTENTS,
    mapping,
    parse,
    topic_label,
)
from console.text import clean, clean_optional
from core.store import consultation_requests

FLAGS = ("fallback", "consultation", "emergency")
PAGE_SIZE = 50
AUDIT_PAGE_SIZE = 100
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
        # Control characters never reach the database (PostgreSQL refuses NUL: a 500).
        filters.topic = clean(args.get("topic") or "").strip()[:255] or None
        filters.text = clean(args.get("q") or "").strip()[:MAX_TEXT] or None
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
             .where(sa.or_(e.type_name.in_(("user", "bot", "action", "session_started")),
                           sa.and_(e.type_name == "slot", e.action_name.in_(sorted(ANSWER_SLOTS)))))
             .order_by(e.id))
    turns: List[Dict[str, Any]] = []
    turn: Dict[str, Any] = {"user": None, "replies": [], "actions": [], "session_start": False}
    action: Optional[str] = None
    with engine.connect() as connection:
        for row in connection.execute(query):
            if row.type_name == "slot":  # the fallback answered after all (console.summary.ANSWER_SLOTS)
                if set(turn["actions"]) & FALLBACK_ACTIONS:
                    turn["answered"] = True
            elif row.type_name == "session_started":
                if turn["user"] or turn["replies"]:
                    turns.append(turn)
                turn = {"user": None, "replies": [], "actions": [], "session_start": True}
            elif row.type_name == "user":
                if turn["user"] or turn["replies"] or turn["session_start"]:
                    turns.append(turn)
                data = parse(row.data)
                intent = mapping(mapping(data.get("parse_data")).get("intent"))
                turn = {"user": {"text": clean(data.get("text")), "at": row.timestamp,
                                 "intent": clean_optional(row.intent_name or intent.get("name")),
                                 "confidence": number(intent.get("confidence"))},
                        "replies": [], "actions": [], "session_start": False}
                action = None
            elif row.type_name == "action":
                if row.action_name == "action_listen":
                    continue
                action = clean_optional(row.action_name)
                turn["actions"].append(action)
            else:  # bot
                data = parse(row.data)
                extra = data.get("data")
                buttons = [clean(b.get("title") or b.get("payload")) for b in (extra.get("buttons") or [])
                           if isinstance(b, dict)] if isinstance(extra, dict) and isinstance(
                    extra.get("buttons"), list) else []
                turn["replies"].append({"text": clean(data.get("text")), "action": action,
                                        "buttons": buttons, "at": row.timestamp})
    if turn["user"] or turn["replies"]:
        turns.append(turn)
    for item in turns:
        intent = (item["user"] or {}).get("intent")
        actions = set(item["actions"])
        item["fallback"] = (intent in FALLBACK_INTENTS or bool(actions & FALLBACK_ACTIONS)) and not item.get("answered")
        item["emergency"] = intent in EMERGENCY_INTENTS or bool(actions & EMERGENCY_ACTIONS)
        item["consultation"] = bool(actions & CONSULTATION_ACTIONS)
    return turns


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
        # Identical and near-identical messages (console.summary.normalise) as one group, most frequent first;
        # each group shown by its newest message (text, answer, conversation).
        groups = (sa.select(u.normalized, sa.func.count().label("count"), sa.func.max(u.event_id).label("newest"),
                            sa.func.count(sa.distinct(u.sender_id)).label("conversations"))
                  .where(*missed_where).group_by(u.normalized)
                  .order_by(sa.desc("count"), sa.desc("newest")).limit(unanswered_limit).subquery())
        missed = [dict(row._mapping) for row in connection.execute(
            sa.select(groups.c.count, groups.c.conversations, u.normalized, u.text, u.at, u.sender_id, u.reason,
                      u.intent, u.action)
            .select_from(groups.join(db.unanswered, u.event_id == groups.c.newest))
            .order_by(groups.c.count.desc(), groups.c.newest.desc()))]
        missed_total, missed_groups = connection.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(u.normalized)))
            .select_from(db.unanswered).where(*missed_where)).first()
    per_day.reverse()
    for topic in topics:
        topic["label"] = topic_label(topic["topic"])
    return {"per_day": per_day, "max_per_day": max([d["conversations"] for d in per_day] or [0]),
            "conversations": totals["conversations"], "messages": totals["messages"],
            "fallbacks": totals["fallbacks"], "with_fallback": totals["with_fallback"],
            "fallback_rate": (totals["fallbacks"] / totals["messages"]) if totals["messages"] else 0.0,
            "conversation_fallback_rate": (totals["with_fallback"] / totals["conversations"])
            if totals["conversations"] else 0.0,
            "topics": topics, "unanswered": missed, "unanswered_total": missed_total or 0,
            "unanswered_groups": missed_groups or 0}


def audit_page(engine: Engine, page: int, page_size: int = AUDIT_PAGE_SIZE) -> Tuple[List[Dict[str, Any]], int]:
    """A page of the audit log, newest first, and the number of entries."""
    a = db.audit.c
    with engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(db.audit)).scalar() or 0
        rows = [dict(row._mapping) for row in connection.execute(
            sa.select(db.audit).order_by(a.id.desc()).limit(page_size).offset((page - 1) * page_size))]
    return rows, total


# Export -------------------------------------------------------------------------------------------------

def export_conversations(engine: Engine, filters: Filters, redacted: bool, batch: int = 200,
                         id_key: Optional[Callable[[str], str]] = None) -> Iterator[Dict[str, Any]]:
    """The filtered conversations, newest first, each with its messages in order. Every text is cleaned
    (console.text); redacted, the texts lose phone numbers and addresses and the conversation ids are
    replaced by ``id_key(id)``."""
    c, e = db.conversations.c, db.events.c
    query = (sa.select(c.sender_id, c.started_at, c.last_at, c.turns, c.topics, c.fallback, c.consultation,
                       c.emergency, has_request().label("has_request"))
             .where(*conditions(filters)).order_by(c.started_at.desc(), c.sender_id.desc()))
    scrub = (lambda text: redact(clean(text))) if redacted else clean
    if redacted and id_key is None:
        raise ValueError("a redacted export needs id_key")
    show_id = id_key if redacted else clean
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
                    intent = mapping(mapping(data.get("parse_data")).get("intent"))
                    messages[row.sender_id].append({
                        "at": iso(row.timestamp), "speaker": "visitor", "text": scrub(data.get("text")),
                        "intent": clean_optional(row.intent_name), "confidence": number(intent.get("confidence")),
                        "action": None})
                else:
                    messages[row.sender_id].append({
                        "at": iso(row.timestamp), "speaker": "assistant", "text": scrub(data.get("text")),
                        "intent": None, "confidence": None, "action": clean_optional(last_action.get(row.sender_id))})
        for row in chunk:
            yield {"conversation_id": show_id(row["sender_id"]), "started_at": iso(row["started_at"]),
                   "last_at": iso(row["last_at"]), "turns": row["turns"],
                   "topics": [topic for topic in row["topics"].split("|") if topic],
                   "fallback": bool(row["fallback"]),
                   "consultation": bool(row["consultation"] or row["has_request"]),
                   "emergency": bool(row["emergency"]), "messages": messages[row["sender_id"]]}


def iso(timestamp: Optional[float]) -> Optional[str]:
    """A stored time as ISO 8601 (UTC); None when missing or out of range (bad data is not an error)."""
    try:
        return dt.datetime.fromtimestamp(float(timestamp), dt.timezone.utc).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def number(value: Any) -> Optional[float]:
    """A confidence as stored, or None when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")):
        return None
    return float(value)
