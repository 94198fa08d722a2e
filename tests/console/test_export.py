"""The export (console.export), on real SQLite and real PostgreSQL: CSV and JSON, with and without
redaction."""

from __future__ import annotations

import csv
import io
import json

from tests.console.support import (
    EMAIL,
    HTML,
    add_conversation,
    audit_rows,
    page,
    signed_in_client,
)


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
