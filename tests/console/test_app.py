"""The console app (console.app.create_app): every page and export is behind sign-in."""

from __future__ import annotations

import sqlalchemy as sa
from flask import url_for

from console.links import conversation_key
from core.store import consultation_requests
from tests.console.support import (
    signed_in_client,
)


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
