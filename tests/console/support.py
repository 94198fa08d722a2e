"""Helpers for the console tests: databases, conversations written as Rasa writes them, signed-in clients (the
fixtures the page tests share are in conftest.py beside this file)."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any, Optional, Sequence, Tuple

import sqlalchemy as sa

from console import auth, db
from console.app import create_app
from console.links import conversation_id, conversation_key
from core.store import consultation_requests
from devtools.fake_conversations import Writer

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
