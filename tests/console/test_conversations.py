"""The conversations list and transcripts (console.conversations), on real SQLite and real PostgreSQL:
flags, topics, filters, injection, escaping, new events, paging through generated bulk data, extreme dates."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from console import db
from core.store import consultation_requests
from devtools import fake_conversations
from tests.console.support import (
    DAY,
    EMAIL,
    INJECTION,
    NOW,
    add_conversation,
    audit_rows,
    ids,
    make_app,
    page,
    signed_in_client,
    transcript_path,
)


def test_the_list_shows_flags_topics_and_newest_first(console):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    html = page(client, "/conversations")
    assert ids(html) == ["conv-emergency", "conv-booking", "conv-fallback"]
    assert "3 conversations" in html
    assert "<script>alert" not in html
    with engine.connect() as connection:
        rows = {row.sender_id: row for row in connection.execute(sa.select(db.conversations))}
    assert (rows["conv-fallback"].turns, rows["conv-fallback"].fallback, rows["conv-fallback"].emergency) == (3, True, False)
    assert rows["conv-booking"].consultation and not rows["conv-booking"].fallback
    assert rows["conv-emergency"].emergency and not rows["conv-emergency"].consultation
    assert rows["conv-fallback"].topics == "|ask_symptoms|ask_what_is_fibromyalgia|"


@pytest.mark.parametrize("query, expected", [
    ("flag=fallback", ["conv-fallback"]),
    ("flag=consultation", ["conv-booking"]),
    ("flag=emergency", ["conv-emergency"]),
    ("topic=ask_symptoms", ["conv-fallback"]),
    ("topic=ask_treatment", ["conv-emergency"]),
    ("q=WATER+therapy", ["conv-emergency"]),
    ("q=conv-booking", ["conv-booking"]),
    ("q=100%25", ["conv-emergency"]),  # "%" is taken literally
    ("q=_", []),
    ("q=%25", ["conv-emergency"]),
    ("date_from={d2}", ["conv-emergency", "conv-booking"]),
    ("date_to={d3}", ["conv-fallback"]),
    ("date_from={d2}&date_to={d2}", ["conv-booking"]),
    ("flag=fallback&topic=ask_treatment", []),
])
def test_filters(console, query, expected):
    app, engine, _ = console
    client = signed_in_client(app, engine)

    def day(days):
        return dt.datetime.fromtimestamp(NOW - days * DAY, dt.timezone.utc).date().isoformat()

    html = page(client, "/conversations?" + query.format(d2=day(2), d3=day(3)))
    assert ids(html) == expected


@pytest.mark.parametrize("query", [
    "q=" + INJECTION, "topic=x' OR '1'='1", "flag=fallback' OR 1=1 --", "date_from=2024-01-01' OR '1'='1",
    "q=\\", "page=1;DROP TABLE events", "topic=ask_symptoms'--",
])
def test_sql_injection_in_filters_is_harmless(console, query):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    for path in ("/conversations?", "/insight?", "/export.json?"):
        response = client.get(path + query)
        assert response.status_code == 200
    html = page(client, "/conversations?" + query)
    shown = ids(html)
    if query.startswith("q=" + INJECTION[:3]):
        assert shown == ["conv-emergency"]  # found as text, nothing else
    elif "topic=" in query or query.startswith("q=\\"):
        assert shown == []  # no such topic or text
    else:  # an invalid value is dropped: everything is listed
        assert shown == ["conv-emergency", "conv-booking", "conv-fallback"]
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(db.events)).scalar() > 30
        assert connection.execute(sa.select(sa.func.count()).select_from(consultation_requests)).scalar() == 1


def test_the_transcript_shows_turns_intents_confidence_and_actions_with_html_as_text(console):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    html = page(client, transcript_path("conv-fallback"))
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    order = [html.index(text) for text in ("what is fibromyalgia", "Fibromyalgia is ...", "qwzx vbnm plok",
                                           "Sorry, I&#39;m not sure I understood.", "Symptoms include ...")]
    assert order == sorted(order)
    assert "<code>ask_what_is_fibromyalgia</code> · confidence 0.98" in html
    assert "<code>nlu_fallback</code> · confidence 0.40" in html
    assert "by <code>action_fallback</code>" in html and "by <code>action_answer</code>" in html
    assert "by <code>action_session_start</code>" in html
    booking = page(client, transcript_path("conv-booking"))
    assert "Consultation request #" in booking and "&lt;b&gt;Maria&lt;/b&gt;" in booking
    assert client.get(transcript_path("no-such-conversation")).status_code == 404
    [entry] = audit_rows(engine, "view_transcript")[:1]
    assert entry["actor"] == EMAIL and entry["target"] == "conv-fallback"


def test_new_events_appear_and_changed_conversations_are_recomputed(console):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    assert len(ids(page(client, "/conversations"))) == 3
    add_conversation(engine, "conv-later", [("hi", "greet", 0.9, "action_answer", "Hello!")])
    add_conversation(engine, "conv-fallback", [("I'm thinking of ending it", "crisis", 1.0, "action_safety",
                                                "Call 988.")], at=NOW)  # the same visitor, later
    html = page(client, "/conversations?flag=emergency")
    assert ids(html) == ["conv-emergency", "conv-fallback"]  # newest first by start
    assert ids(page(client, "/conversations"))[0] == "conv-later"


def test_bulk_generated_conversations_page_filter_and_export(url, monkeypatch):
    monkeypatch.setenv("CONSOLE_SECRET_KEY", "k" * 48)
    app, engine = make_app(url)
    senders = fake_conversations.generate(engine, 230, days=30, seed=5)
    client = signed_in_client(app, engine)
    first = page(client, "/conversations")
    assert "230 conversations" in first and len(ids(first)) == 50
    last = page(client, "/conversations?page=5")
    assert len(ids(last)) == 30 and 'rel="next"' not in last and 'rel="prev"' in last
    seen = []
    for number in range(1, 6):
        seen += ids(page(client, f"/conversations?page={number}"))
    assert sorted(seen) == sorted(senders)  # every conversation once
    with engine.connect() as connection:
        started = dict(connection.execute(sa.select(db.conversations.c.sender_id, db.conversations.c.started_at)).all())
        fallback = {row[0] for row in connection.execute(
            sa.select(db.events.c.sender_id).where(db.events.c.action_name == "action_fallback").distinct())}
        emergency = {row[0] for row in connection.execute(
            sa.select(db.events.c.sender_id).where(db.events.c.action_name == "action_safety").distinct())}
    assert [started[s] for s in seen] == sorted(started.values(), reverse=True)  # newest first
    exported = json.loads(client.get("/export.json?flag=fallback").get_data(as_text=True))["conversations"]
    assert {item["conversation_id"] for item in exported} == fallback and fallback
    assert f"{len(emergency)} conversation" in page(client, "/conversations?flag=emergency")


@pytest.mark.parametrize("query", ["date_to=9999-12-31", "date_from=0001-01-01&date_to=9999-12-31",
                                   "date_from=9999-12-31"])
def test_the_widest_dates_are_accepted(console, query):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    expected = [] if query.startswith("date_from=9999") else ["conv-emergency", "conv-booking", "conv-fallback"]
    assert ids(page(client, "/conversations?" + query)) == expected
    page(client, "/insight?" + query)
    exported = json.loads(page(client, "/export.json?" + query))["conversations"]
    assert [item["conversation_id"] for item in exported] == expected
    page(client, "/export.csv?" + query)
