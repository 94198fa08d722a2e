"""The staff console's pages, on real SQLite and real PostgreSQL: sign-in, sessions, CSRF, filters, transcripts,
requests, insight, export, audit, retention and generated bulk data."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
import time

import pytest
import sqlalchemy as sa
from flask import url_for

from actions.store import consultation_requests, consultation_status_history
from console import auth, db, queries, retention, summary
from console.links import conversation_id, conversation_key
from tests import fake_conversations
from tests.console_support import (
    EMAIL,
    PASSWORD,
    add_conversation,
    add_request,
    audit_rows,
    csrf_of,
    make_app,
    sign_in,
    signed_in_client,
)

HTML = '<script>alert("x")</script><img src=x onerror=alert(1)>'
INJECTION = "'; DROP TABLE events; --"
NOW = time.time()
DAY = 86400.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'conversations.db'}"
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture()
def console(url, monkeypatch):
    monkeypatch.setenv("CONSOLE_SECRET_KEY", "k" * 48)
    engine = db.make_engine(url)
    # Three conversations, as Rasa stores them: before the console ever ran.
    add_conversation(engine, "conv-fallback", [
        ("what is fibromyalgia", "ask_what_is_fibromyalgia", 0.98, "action_answer", "Fibromyalgia is ..."),
        ("qwzx vbnm plok", "nlu_fallback", 0.4, "action_fallback", "Sorry, I'm not sure I understood."),
        (HTML, "ask_symptoms", 0.61, "action_answer", "Symptoms include ..."),
    ], at=NOW - 3 * DAY)
    add_conversation(engine, "conv-booking", [
        ("I'd like to book a consultation", "request_consultation", 0.99, "consultation_form", "What's your name?"),
        ("email me at maria@example.com or call 310-555-0134", "inform", 0.97, "consultation_form", "Thanks."),
        ("=HYPERLINK(\"http://evil\")", "inform", 0.9, "consultation_form", "Thanks."),
    ], at=NOW - 2 * DAY)
    add_conversation(engine, "conv-emergency", [
        ("does water therapy help? 100% sure", "ask_treatment", 0.88, "action_answer", "Water therapy ..."),
        (INJECTION, "out_of_scope", 0.7, "action_answer", "I can only answer questions about fibromyalgia."),
        ("my legs went numb", "emergency", 1.0, "action_safety", "Please call 911."),
    ], at=NOW - 1 * DAY)
    engine.dispose()
    app, engine = make_app(url)
    request_id = add_request(engine, "conv-booking", name="<b>Maria</b> Lopez")
    yield app, engine, request_id
    engine.dispose()


def page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def transcript_path(sender: str) -> str:
    return "/conversations/" + conversation_key(sender)


def ids(html: str):
    import re
    seen = []
    for key in re.findall(r'href="/conversations/([^"?#]+)"', html):
        sender = conversation_id(key)
        if sender not in seen:
            seen.append(sender)
    return seen


def test_every_page_and_export_needs_a_session(console):
    app, engine, request_id = console
    client = app.test_client()
    values = {"key": conversation_key("conv-booking"), "request_id": request_id}
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "account.login"):
            continue
        formats = ["csv", "json"] if "fmt" in rule.arguments else [None]
        for fmt in formats:
            with app.test_request_context():
                path = url_for(rule.endpoint, **{k: v for k, v in {**values, "fmt": fmt}.items()
                                                 if k in rule.arguments})
            for method in sorted(rule.methods & {"GET", "POST"}):
                response = client.open(path, method=method, data={"status": "closed"})
                body = response.get_data(as_text=True)
                checked += 1
                if method == "GET":
                    assert response.status_code == 302 and "/login" in response.location, (path, method)
                else:
                    assert response.status_code == 401, (path, method)
                assert not any(secret in body.lower() for secret in ("maria", "qwzx", "water therapy", "<table")), \
                    (path, method)
    assert checked >= 9
    with engine.connect() as connection:
        assert connection.execute(sa.select(consultation_requests.c.status)).scalar() == "new"
    # Signed in, every GET page answers.
    client = signed_in_client(app, engine)
    for path in ("/", "/conversations", f"/conversations/{conversation_key('conv-booking')}", "/requests", "/insight", "/audit",
                 "/export.csv", "/export.json"):
        assert client.get(path).status_code in (200, 302), path


def test_sign_in_sets_a_hardened_cookie_and_sign_out_ends_the_session(console):
    app, engine, _ = console
    other = signed_in_client(app, engine)  # creates the account; a session of its own
    client = app.test_client()
    response = sign_in(client)
    assert response.status_code == 302 and response.location.endswith("/conversations")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "no-store" in client.get("/conversations").headers["Cache-Control"]
    assert "default-src 'none'" in client.get("/conversations").headers["Content-Security-Policy"]
    token = csrf_of(page(client, "/conversations"))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/conversations").status_code == 302
    assert other.get("/conversations").status_code == 200  # signing out ends that session only
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(db.sessions)).scalar() == 1


def test_secure_cookie_flag_is_configurable(url, monkeypatch):
    monkeypatch.setenv("CONSOLE_SECRET_KEY", "k" * 48)
    monkeypatch.setenv("CONSOLE_SECURE_COOKIES", "1")
    app, engine = make_app(url)
    signed_in_client(app, engine)
    response = sign_in(app.test_client())
    assert "Secure" in response.headers["Set-Cookie"]


def test_wrong_password_and_unknown_account_are_refused_alike(console):
    app, engine, _ = console
    signed_in_client(app, engine)
    wrong = sign_in(app.test_client(), password="not the password at all")
    unknown = sign_in(app.test_client(), email="nobody@clinic.example")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong email or password" in wrong.get_data(as_text=True)
    assert [row["action"] for row in audit_rows(engine) if row["action"].startswith("login_")] == \
        ["login_wrong", "login_unknown"]


def test_repeated_wrong_passwords_lock_the_account(console):
    app, engine, _ = console
    signed_in_client(app, engine)
    client = app.test_client()
    for _ in range(5):
        assert sign_in(client, password="wrong password!!").status_code == 401
    # Locked: even the right password is refused now.
    assert sign_in(client).status_code == 401
    assert audit_rows(engine, "login_locked")
    with engine.begin() as connection:
        locked_until = connection.execute(sa.select(db.users.c.locked_until)).scalar()
        assert locked_until > time.time() + 60
        connection.execute(db.users.update().values(locked_until=time.time() - 1))  # the lock ran out
    assert sign_in(client).status_code == 302


def test_sessions_expire_when_idle_and_after_the_maximum_age(console):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    assert client.get("/conversations").status_code == 200
    with engine.begin() as connection:
        connection.execute(db.sessions.update().values(last_seen_at=time.time() - 31 * 60))
    assert client.get("/conversations").status_code == 302
    client = signed_in_client(app, engine)
    with engine.begin() as connection:
        connection.execute(db.sessions.update().values(created_at=time.time() - 13 * 3600))
    assert client.get("/conversations").status_code == 302


def test_post_forms_need_the_sessions_csrf_token(console):
    app, engine, request_id = console
    client = signed_in_client(app, engine)
    path = f"/requests/{request_id}/status"
    assert client.post(path, data={"status": "contacted"}).status_code == 400
    assert client.post(path, data={"status": "contacted", "csrf_token": "forged"}).status_code == 400
    other = signed_in_client(app, engine, "other@clinic.example")  # another session's token is no good
    assert client.post(path, data={"status": "contacted",
                                   "csrf_token": csrf_of(page(other, "/requests"))}).status_code == 400
    assert client.post("/logout", data={}).status_code == 400
    # Signing in needs the token of the sign-in page, too.
    assert app.test_client().post("/login", data={"email": EMAIL, "password": PASSWORD}).status_code == 400
    with engine.connect() as connection:
        assert connection.execute(sa.select(consultation_requests.c.status)).scalar() == "new"


def test_marking_a_request_contacted_records_who_when_and_history(console):
    app, engine, request_id = console
    client = signed_in_client(app, engine)
    html = page(client, "/requests")
    assert "&lt;b&gt;Maria&lt;/b&gt; Lopez" in html and "<b>Maria</b>" not in html
    assert "(310) 555-0134" in html and f'href="/conversations/{conversation_key("conv-booking")}"' in html
    response = client.post(f"/requests/{request_id}/status", data={"status": "contacted", "csrf_token": csrf_of(html)})
    assert response.status_code == 302
    assert client.post(f"/requests/{request_id}/status",
                       data={"status": "lost", "csrf_token": csrf_of(html)}).status_code == 400
    assert client.post("/requests/999999/status",
                       data={"status": "closed", "csrf_token": csrf_of(html)}).status_code == 404
    with engine.connect() as connection:
        row = connection.execute(sa.select(consultation_requests)).first()
        history = connection.execute(sa.select(consultation_status_history)).all()
    assert row.status == "contacted" and row.status_changed_by == EMAIL and row.status_changed_at is not None
    assert [(h.old_status, h.new_status, h.changed_by) for h in history] == [("new", "contacted", EMAIL)]
    [entry] = audit_rows(engine, "change_request_status")
    assert entry["actor"] == EMAIL and entry["target"] == f"request {request_id}" and "contacted" in entry["detail"]
    assert "new → contacted by staff@clinic.example" in page(client, "/requests?status=contacted")
    assert "No consultation requests" in page(client, "/requests?status=new")


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


def test_insight_counts_days_topics_fallback_rate_and_unanswered_messages(console):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    html = page(client, "/insight")
    from console import queries
    figures = queries.insight(engine, queries.Filters())
    assert figures["conversations"] == 3 and figures["messages"] == 9 and figures["fallbacks"] == 1
    assert round(figures["fallback_rate"], 3) == round(1 / 9, 3)
    assert [d["conversations"] for d in figures["per_day"]] == [1, 1, 1]
    assert {t["topic"]: t["asked"] for t in figures["topics"]} == {
        "ask_what_is_fibromyalgia": 1, "ask_symptoms": 1, "request_consultation": 1, "ask_treatment": 1,
        "out_of_scope": 1, "emergency": 1}
    assert [(u["text"], u["reason"]) for u in figures["unanswered"]] == [(INJECTION, "out of scope"),
                                                                          ("qwzx vbnm plok", "fallback")]
    assert "11.1 %" in html and "qwzx vbnm plok" in html and "&#39;; DROP TABLE events; --" in html
    assert audit_rows(engine, "view_insight")


def test_export_csv_and_json_with_and_without_redaction(console):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    plain = client.get("/export.json?flag=consultation")
    assert plain.status_code == 200 and "attachment" in plain.headers["Content-Disposition"]
    [item] = json.loads(plain.get_data(as_text=True))["conversations"]
    assert item["conversation_id"] == "conv-booking" and item["consultation"] is True
    texts = [m["text"] for m in item["messages"]]
    assert "email me at maria@example.com or call 310-555-0134" in texts
    visitor = [m for m in item["messages"] if m["speaker"] == "visitor"]
    assert visitor[0]["intent"] == "request_consultation" and visitor[0]["confidence"] == 0.99
    assert [m["action"] for m in item["messages"] if m["speaker"] == "assistant"][1] == "consultation_form"
    redacted = json.loads(client.get("/export.json?flag=consultation&redact=1").get_data(as_text=True))
    assert "email me at [email] or call [phone]" in [m["text"] for m in redacted["conversations"][0]["messages"]]
    assert "maria@example.com" not in json.dumps(redacted) and "555-0134" not in json.dumps(redacted)

    rows = list(csv.DictReader(io.StringIO(client.get("/export.csv").get_data(as_text=True))))
    assert {row["conversation_id"] for row in rows} == {"conv-fallback", "conv-booking", "conv-emergency"}
    assert any(row["text"] == HTML for row in rows)  # data, not a page: kept as the visitor wrote it
    assert any(row["text"] == "'=HYPERLINK(\"http://evil\")" for row in rows)  # no spreadsheet formulas
    red = client.get("/export.csv?q=maria&redact=1").get_data(as_text=True)
    assert "[email]" in red and "maria@example.com" not in red and "310-555-0134" not in red
    exports = audit_rows(engine, "export")
    assert [e["detail"].split(";")[:2] for e in exports] == [
        ["format: json", " redacted: no"], ["format: json", " redacted: yes"], ["format: csv", " redacted: no"],
        ["format: csv", " redacted: yes"]]
    assert all(e["actor"] == EMAIL for e in exports) and "q=maria" in exports[-1]["detail"]


def test_views_are_audited_with_who_and_what(console):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    page(client, "/conversations?flag=fallback")
    page(client, "/requests")
    actions = [(row["actor"], row["action"]) for row in audit_rows(engine)]
    assert actions == [(EMAIL, "login"), (EMAIL, "view_conversations"), (EMAIL, "view_requests")]
    assert "flag=fallback" in audit_rows(engine, "view_conversations")[0]["detail"]
    assert "view_conversations" in page(client, "/audit")


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


def test_retention_keeps_a_conversation_whose_visitor_came_back_during_the_run(console):
    app, engine, _ = console
    for sender in ("conv-back", "conv-gone"):
        add_conversation(engine, sender, [("what causes fibromyalgia", "ask_causes", 0.9, "action_answer", "...")],
                         at=NOW - 40 * DAY)
    summary.refresh(engine, force=True)
    with engine.connect() as connection:
        before = connection.execute(sa.select(sa.func.count()).select_from(db.events)
                                    .where(db.events.c.sender_id == "conv-back")).scalar()
    other = db.make_engine(engine.url)
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


class CountingHasher:
    """auth's hasher, counting verifications and the most that ran at the same time."""

    def __init__(self, real):
        self.real, self.calls, self.running, self.most = real, 0, 0, 0
        self.lock = threading.Lock()

    def verify(self, password_hash, password):
        with self.lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.01)
            return self.real.verify(password_hash, password)
        finally:
            with self.lock:
                self.running -= 1

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_parallel_wrong_passwords_lock_the_account(console, monkeypatch):
    app, engine, _ = console
    signed_in_client(app, engine)
    counting = CountingHasher(auth.hasher)
    monkeypatch.setattr(auth, "hasher", counting)
    attempts = 40
    # from 40 addresses, so that the per-address throttle stays out of the way
    clients = [app.test_client() for _ in range(attempts)]
    for number, client in enumerate(clients):
        client.environ_base["REMOTE_ADDR"] = f"10.1.0.{number + 1}"
    tokens = [csrf_of(client.get("/login").get_data(as_text=True)) for client in clients]
    start = threading.Barrier(attempts)
    statuses, errors = [], []

    def attempt(client, token):
        try:
            start.wait()
            response = client.post("/login", data={"email": EMAIL, "password": "wrong password!!",
                                                   "csrf_token": token})
            statuses.append(response.status_code)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=attempt, args=pair) for pair in zip(clients, tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and statuses == [401] * attempts
    with engine.connect() as connection:
        locked_until = connection.execute(sa.select(db.users.c.locked_until)).scalar()
    assert locked_until and locked_until > time.time() + 60
    # One argon2 verification per attempt, never more than the bound at the same time.
    assert counting.calls == attempts and counting.most <= auth.MAX_CONCURRENT_VERIFICATIONS
    # Every attempt counted: the first four were wrong, the fifth locked, the rest found it locked.
    assert len(audit_rows(engine, "login_wrong")) == 4
    assert len(audit_rows(engine, "login_locked")) == attempts - 4
    assert sign_in(app.test_client()).status_code == 401  # even the right password, while locked


def test_a_locked_account_takes_a_password_check_like_any_other(console, monkeypatch):
    app, engine, _ = console
    signed_in_client(app, engine)
    with engine.begin() as connection:
        connection.execute(db.users.update().values(locked_until=time.time() + 600))
    counting = CountingHasher(auth.hasher)
    monkeypatch.setattr(auth, "hasher", counting)
    assert auth.authenticate(engine, EMAIL, "wrong password!!", 5, 60)["outcome"] == "locked"
    assert auth.authenticate(engine, "nobody@clinic.example", "wrong password!!", 5, 60)["outcome"] == "unknown"
    assert counting.calls == 2  # one argon2 verification each, as for a wrong password


def test_database_errors_carry_no_values(url):
    engine = db.make_engine(url)
    secret = "call me at 3105550134, Maria Lopez"
    with pytest.raises(sa.exc.DBAPIError) as caught:
        with engine.connect() as connection:
            connection.execute(sa.text("select * from no_such_table\nwhere :v = 'x'"), {"v": secret})
    assert "3105550134" not in str(caught.value) and "hidden" in str(caught.value)
    described = db.describe_error(caught.value)
    assert described.startswith("ProgrammingError") or described.startswith("OperationalError")
    assert "no_such_table" in described and "3105550134" not in described and "\n" not in described
    engine.dispose()


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


def test_a_non_ascii_csrf_token_is_refused_not_an_error(console):
    app, engine, _ = console
    signed_in_client(app, engine)
    client = app.test_client()
    client.get("/login")  # the session has a token
    response = client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": "jeton-é"})
    assert response.status_code == 400
    signed = signed_in_client(app, engine)
    assert signed.post("/logout", data={"csrf_token": "ü" * 43}).status_code == 400
    assert signed.get("/conversations").status_code == 200  # still signed in


def test_times_labelled_utc_are_shown_in_utc_whatever_the_session_time_zone(url, monkeypatch):
    monkeypatch.setenv("CONSOLE_SECRET_KEY", "k" * 48)
    postgres = url.startswith("postgresql")
    if postgres:
        url += "%20-ctimezone%3DAmerica/Los_Angeles"
    app, engine = make_app(url)
    if postgres:
        with engine.connect() as connection:
            assert connection.execute(sa.text("show timezone")).scalar() == "America/Los_Angeles"
    noon = dt.datetime(2024, 3, 5, 12, 0, tzinfo=dt.timezone.utc)
    request_id = add_request(engine, "conv-noon", created_at=noon)
    with engine.begin() as connection:
        connection.execute(consultation_requests.update().values(
            status="contacted", status_changed_by="noon@clinic.example", status_changed_at=noon))
        connection.execute(consultation_status_history.insert().values(
            request_id=request_id, old_status="new", new_status="contacted", changed_by="noon@clinic.example",
            changed_at=noon))
        connection.execute(db.audit.insert().values(at=noon, actor="noon@clinic.example", action="noon_check"))
    client = signed_in_client(app, engine)
    requests_html = page(client, "/requests")
    assert requests_html.count("2024-03-05 12:00") == 3  # received, status changed, history
    assert "2024-03-05 04:00" not in requests_html
    audit_html = page(client, "/audit")
    assert "2024-03-05 12:00" in audit_html and "2024-03-05 04:00" not in audit_html
    engine.dispose()


def test_the_audit_log_pages_through_every_entry(console):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    at = dt.datetime.now(dt.timezone.utc)
    with engine.begin() as connection:
        connection.execute(db.audit.insert(), [
            {"at": at, "actor": "bulk@clinic.example", "action": "bulk", "detail": f"entry-{n:03}"}
            for n in range(150)])
    first = page(client, "/audit")
    assert "entry-149" in first and "entry-000" not in first and 'rel="next"' in first
    assert "page 1 of 2" in first
    second = page(client, "/audit?page=2")
    assert "entry-000" in second and "entry-149" not in second and 'rel="next"' not in second
    assert "page 2 of 2" in second


def test_redaction_catches_numbers_and_addresses_glued_to_words(console):
    app, engine, _ = console
    add_conversation(engine, "conv-glued", [
        ("cell3105550134 or x3105550134, mail:josé@exemple.fr and contactmaria@example.com", "inform", 0.9,
         "consultation_form", "Thanks."),
        ("tel+1 (310) 555-0134.", "inform", 0.9, "consultation_form", "Thanks."),
    ])
    client = signed_in_client(app, engine)
    exported = json.loads(page(client, "/export.json?q=conv-glued&redact=1"))["conversations"]
    texts = [m["text"] for m in exported[0]["messages"] if m["speaker"] == "visitor"]
    assert texts == ["cell[phone] or x[phone], mail:[email] and [email]", "tel[phone]."]
