"""Helpers for the console tests: databases, conversations written as Rasa writes them, signed-in clients, and the
fixtures the page tests share (``url``: SQLite and PostgreSQL; ``console``: an app on three conversations and a
request). A test module imports the fixtures it requests."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any, Optional, Sequence, Tuple

import pytest
import sqlalchemy as sa

from console import auth, db
from console.app import create_app
from console.links import conversation_id, conversation_key
from core.store import consultation_requests
from tests.fake_conversations import Writer

PASSWORD = "correct horse battery staple"
EMAIL = "staff@clinic.example"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HTML = '<script>alert("x")</script><img src=x onerror=alert(1)>'
INJECTION = "'; DROP TABLE events; --"
NOW = time.time()
DAY = 86400.0

# (visitor text, intent, confidence, action, bot text[, {slot: value} the action set])
Turn = Tuple[Any, ...]


def add_conversation(engine, sender: str, turns: Sequence[Turn], at: Optional[float] = None) -> None:
    """Writes a conversation into ``events`` the way Rasa's SQL tracker store does."""
    db.rasa_metadata.create_all(engine)
    writer = Writer(engine)
    at = at if at is not None else time.time()

    def event(kind, intent=None, action=None, **data):
        nonlocal at
        at += 0.5
        writer.event(sender, kind, at, intent=intent, action=action, **data)

    event("action", action="action_session_start", name="action_session_start")
    event("bot", text="I'm a virtual assistant, not a doctor.", data={"buttons": None})
    event("session_started")
    event("action", action="action_listen", name="action_listen")
    for text, intent, confidence, action, reply, *slots in turns:
        event("user", intent=intent, text=text,
              parse_data={"intent": {"name": intent, "confidence": confidence}, "entities": [], "text": text})
        event("user_featurization", use_text_for_featurization=False)
        event("action", action=action, name=action)
        for name, value in (slots[0] if slots else {}).items():  # slots the action set
            event("slot", action=name, name=name, value=value)
        event("bot", text=reply, data={"buttons": [{"title": "Symptoms", "payload": "/ask_symptoms"}]})
        event("action", action="action_listen", name="action_listen")
    writer.flush()


def add_request(engine, conversation_id: str, name: str = "Maria Lopez", status: str = "new",
                created_at: Optional[dt.datetime] = None, email: Optional[str] = "maria@example.com") -> int:
    with engine.begin() as connection:
        result = connection.execute(consultation_requests.insert().values(
            request_key=f"{conversation_id}-{name}-{status}", conversation_id=conversation_id, name=name,
            phone="+13105550134", callback_time="mornings", email=email, reason="back pain", status=status,
            created_at=created_at or dt.datetime.now(dt.timezone.utc)))
        return int(result.inserted_primary_key[0])


def make_app(url: str, **console):
    app = create_app(url, {"TESTING": True, "CONSOLE": console} if console else {"TESTING": True})
    return app, app.extensions["console_engine"]


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(client, email: str = EMAIL, password: str = PASSWORD):
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def signed_in_client(app, engine, email: str = EMAIL):
    try:
        auth.create_user(engine, email, PASSWORD)
    except auth.AccountError:
        pass
    client = app.test_client()
    response = sign_in(client, email)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def audit_rows(engine, action: Optional[str] = None) -> list:
    query = sa.select(db.audit).order_by(db.audit.c.id)
    if action:
        query = query.where(db.audit.c.action == action)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


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
    seen = []
    for key in re.findall(r'href="/conversations/([^"?#]+)"', html):
        sender = conversation_id(key)
        if sender not in seen:
            seen.append(sender)
    return seen
