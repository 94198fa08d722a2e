"""The consultation requests page (console.consultations), on real SQLite and real PostgreSQL: follow-up
with history, times shown in UTC."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from console import db
from console.links import conversation_key
from core.store import consultation_requests, consultation_status_history
from tests.console.support import (
    EMAIL,
    add_request,
    audit_rows,
    csrf_of,
    make_app,
    page,
    signed_in_client,
)


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
