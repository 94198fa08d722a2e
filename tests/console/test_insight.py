"""The insight page (console.conversations.insight), on real SQLite and real PostgreSQL."""

from __future__ import annotations

from console import queries
from tests.console.support import (
    INJECTION,
    audit_rows,
    page,
    signed_in_client,
)


def test_insight_counts_days_topics_fallback_rate_and_unanswered_messages(console):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    html = page(client, "/insight")
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
