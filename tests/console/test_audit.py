"""The audit log (console.audit), on real SQLite and real PostgreSQL: who viewed what, every entry paged."""

from __future__ import annotations

import datetime as dt

from console import db
from tests.console.support import (
    EMAIL,
    audit_rows,
    page,
    signed_in_client,
)


def test_views_are_audited_with_who_and_what(console):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    page(client, "/conversations?flag=fallback")
    page(client, "/requests")
    actions = [(row["actor"], row["action"]) for row in audit_rows(engine)]
    assert actions == [(EMAIL, "login"), (EMAIL, "view_conversations"), (EMAIL, "view_requests")]
    assert "flag=fallback" in audit_rows(engine, "view_conversations")[0]["detail"]
    assert "view_conversations" in page(client, "/audit")


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
