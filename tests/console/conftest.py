"""Fixtures of the console tests: ``url`` (a fresh SQLite file, and a fresh PostgreSQL schema) and ``console``
(an app on three conversations, as Rasa stores them, and one consultation request)."""

from __future__ import annotations

import pytest

from core.store import make_engine
from tests.console.support import DAY, HTML, INJECTION, NOW, add_conversation, add_request, make_app


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'conversations.db'}"
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture()
def console(url, monkeypatch):
    monkeypatch.setenv("CONSOLE_SECRET_KEY", "k" * 48)
    engine = make_engine(url)
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
