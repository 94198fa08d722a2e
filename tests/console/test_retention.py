"""Retention (console.retention), on real SQLite and real PostgreSQL: old conversations and old closed
requests only, and a visitor who comes back during the run."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import sqlalchemy as sa

from console import db, queries, retention, summary
from core.store import consultation_requests, make_engine
from tests.console.support import (
    DAY,
    NOW,
    add_conversation,
    add_request,
    audit_rows,
)


def test_retention_deletes_old_conversations_and_old_closed_requests_only(console):
    app, engine, _ = console
    old = NOW - 40 * DAY
    for sender in ("conv-old", "conv-old-contacted", "conv-old-new"):
        add_conversation(engine, sender, [("what causes fibromyalgia", "ask_causes", 0.9, "action_answer", "...")],
                         at=old)
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=40)
    old_closed = add_request(engine, "conv-old", name="Old Closed", status="closed", created_at=long_ago)
    # Requests still to be handled keep their conversations, whatever their age.
    old_open = add_request(engine, "conv-old-contacted", name="Old Open", status="contacted", created_at=long_ago)
    old_new = add_request(engine, "conv-old-new", name="Old New", status="new", created_at=long_ago)
    recent_closed = add_request(engine, "conv-booking", name="Recent Closed", status="closed")
    summary.refresh(engine, force=True)
    counts = retention.apply(engine, 30)
    assert (counts["conversations"], counts["requests"]) == (1, 1) and counts["events"] > 5
    with engine.connect() as connection:
        senders = {row[0] for row in connection.execute(sa.select(db.events.c.sender_id).distinct())}
        requests = {row[0] for row in connection.execute(sa.select(consultation_requests.c.id))}
        summaries = {row[0] for row in connection.execute(sa.select(db.conversations.c.sender_id))}
    assert senders == summaries == {"conv-fallback", "conv-booking", "conv-emergency", "conv-old-contacted",
                                    "conv-old-new"}
    assert old_closed not in requests and {old_open, old_new, recent_closed} <= requests
    [entry] = audit_rows(engine, "retention")
    assert "1 conversations" in entry["detail"] and entry["actor"] == "retention"
    assert retention.apply(engine, 30) == {"conversations": 0, "events": 0, "requests": 0}
    with pytest.raises(ValueError):
        retention.apply(engine, 0)


def test_retention_keeps_a_conversation_whose_visitor_came_back_during_the_run(console):
    app, engine, _ = console
    for sender in ("conv-back", "conv-gone"):
        add_conversation(engine, sender, [("what causes fibromyalgia", "ask_causes", 0.9, "action_answer", "...")],
                         at=NOW - 40 * DAY)
    summary.refresh(engine, force=True)
    with engine.connect() as connection:
        before = connection.execute(sa.select(sa.func.count()).select_from(db.events)
                                    .where(db.events.c.sender_id == "conv-back")).scalar()
    other = make_engine(engine.url)
    returned = []

    def visitor_returns(conn, cursor, statement, parameters, context, executemany):
        # Between the selection of old conversations and their deletion, the visitor writes again.
        if statement.lstrip().upper().startswith("DELETE FROM EVENTS") and not returned:
            returned.append(True)
            add_conversation(other, "conv-back", [("I'm back", "greet", 0.9, "action_answer", "Welcome back")],
                             at=time.time())

    sa.event.listen(engine, "before_cursor_execute", visitor_returns)
    try:
        counts = retention.apply(engine, 30)
    finally:
        sa.event.remove(engine, "before_cursor_execute", visitor_returns)
        other.dispose()
    assert returned and counts["conversations"] == 1
    with engine.connect() as connection:
        back = connection.execute(sa.select(sa.func.count()).select_from(db.events)
                                  .where(db.events.c.sender_id == "conv-back")).scalar()
        gone = connection.execute(sa.select(sa.func.count()).select_from(db.events)
                                  .where(db.events.c.sender_id == "conv-gone")).scalar()
    assert gone == 0 and back > before  # the old messages are kept with the new ones
    summary.refresh(engine)
    assert queries.conversation(engine, "conv-back") is not None
