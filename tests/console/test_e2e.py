"""The console on conversations held with the real assistant (real Rasa and action servers, SQLite), and a
staff member's visit in headless Chromium: sign in, filter, read a transcript, export, mark a request
contacted."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest
import requests
import sqlalchemy as sa

from console import db
from console.links import conversation_key
from core.store import consultation_requests, consultation_status_history, make_engine
from devtools.servers import Visitor, free_port
from tests.conftest import ROOT
from tests.console.support import PASSWORD, make_app, signed_in_client

pytestmark = pytest.mark.e2e

SCRIPT = "<script>alert(1)</script>"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def chats(shared_servers, tmp_path_factory):
    """Two conversations with the real assistant (the shared servers): one with a fallback, HTML and a
    consultation request, one with an emergency; then a database holding exactly what the assistant
    stored for these two, row for row (the console reads it alone, as if no one else had talked)."""
    booking = Visitor(shared_servers)
    booking.say("hello")
    booking.say(f"does water therapy help? {SCRIPT}")
    booking.say("qwzx vbnm plok")
    assert "name" in booking.says("I'd like to book a consultation")
    booking.say("Maria Lopez")
    booking.say("(310) 555-0134")
    booking.say("weekday mornings")
    booking.say("maria@example.com")
    booking.say("back pain")
    assert "will call you back" in booking.says("yes")
    emergency = Visitor(shared_servers)
    assert "911" in emergency.says("my legs went numb and I can't feel my groin")
    path = tmp_path_factory.mktemp("console-e2e") / "conversations.db"
    copy_conversations(shared_servers.db, path, [booking.sender, emergency.sender])
    return {"url": f"sqlite:///{path}", "booking": booking.sender, "emergency": emergency.sender}


def copy_conversations(source: Path, target: Path, senders: List[str]) -> None:
    """The assistant's tables in ``target``, with the rows of ``source`` that belong to ``senders``."""
    marks = ",".join("?" * len(senders))
    with sqlite3.connect(source) as db:
        db.execute("attach database ? as copy", (str(target),))
        tables = [name for name, in db.execute("select name from main.sqlite_master where type = 'table'")]
        assert {"events", "consultation_requests", "consultation_status_history"} <= set(tables), tables
        for sql, in db.execute("select sql from main.sqlite_master where sql is not null and type in ('table', 'index')"
                               " order by type desc").fetchall():
            db.execute(sql.replace("CREATE TABLE ", "CREATE TABLE copy.", 1).replace("CREATE INDEX ", "CREATE INDEX copy.", 1)
                       .replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX copy.", 1))
        db.execute(f"insert into copy.events select * from main.events where sender_id in ({marks})", senders)
        db.execute("insert into copy.consultation_requests select * from main.consultation_requests"
                   f" where conversation_id in ({marks})", senders)
        db.execute("insert into copy.consultation_status_history select * from main.consultation_status_history"
                   " where request_id in (select id from copy.consultation_requests)")
        db.commit()
        db.execute("detach database copy")


def test_real_conversations_are_listed_flagged_and_readable(chats, monkeypatch):
    monkeypatch.setenv("CONSOLE_SECRET_KEY", "e" * 48)
    app, engine = make_app(chats["url"])
    client = signed_in_client(app, engine)
    listing = client.get("/conversations").get_data(as_text=True)
    key = {name: conversation_key(chats[name]) for name in ("booking", "emergency")}  # links name them so
    assert listing.index(key["emergency"]) < listing.index(key["booking"])  # newest first
    fallback = client.get("/conversations?flag=fallback").get_data(as_text=True)
    assert key["booking"] in fallback and key["emergency"] not in fallback
    assert key["booking"] in client.get("/conversations?flag=consultation").get_data(as_text=True)
    assert key["emergency"] in client.get("/conversations?flag=emergency").get_data(as_text=True)
    assert key["booking"] in client.get("/conversations?topic=ask_treatment").get_data(as_text=True)
    with engine.connect() as connection:
        row = connection.execute(sa.select(db.conversations).where(
            db.conversations.c.sender_id == chats["booking"])).first()
    assert row.turns == 10 and row.fallbacks == 1 and row.consultation and not row.emergency
    page = client.get(f"/conversations/{conversation_key(chats['booking'])}").get_data(as_text=True)
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for shown in ("<code>greet</code> · confidence", "<code>nlu_fallback</code> · confidence 0.40",
                  "by <code>action_fallback</code>", "by <code>action_answer</code>",
                  "by <code>consultation_form</code>", "by <code>action_submit_consultation</code>",
                  "Consultation request #", "(310) 555-0134"):
        assert shown in page, shown
    assert "by <code>action_safety</code>" in client.get(f"/conversations/{conversation_key(chats['emergency'])}").get_data(as_text=True)
    insight = client.get("/insight").get_data(as_text=True)
    assert "qwzx vbnm plok" in insight


@pytest.fixture()
def console_server(chats, tmp_path):
    env = {"CLINIC_DB_URL": chats["url"], "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
           "CONSOLE_SECRET_KEY": "b" * 48, "CONSOLE_PORT": str(free_port())}
    created = subprocess.run([sys.executable, "-m", "console.users", "create", "browser@clinic.example",
                              "--password-stdin"], cwd=ROOT, env=env, input=PASSWORD + "\n",
                             capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    log = open(tmp_path / "console.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "console"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{env['CONSOLE_PORT']}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/login", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "console.log").read_text()
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_staff_member_signs_in_filters_reads_exports_and_follows_up_in_chromium(chats, console_server):
    from playwright.sync_api import sync_playwright
    base = console_server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(java_script_enabled=False)  # the console needs none
            page = context.new_page()
            remote = []
            page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(base) else None)

            page.goto(base + "/conversations")
            assert "/login" in page.url
            page.fill("input[name=email]", "browser@clinic.example")
            page.fill("input[name=password]", PASSWORD)
            page.click("button:has-text('Sign in')")
            assert page.url.endswith("/conversations")
            assert page.locator("h1").inner_text() == "Conversations"

            page.fill("input[name=q]", "water therapy")
            page.click("button:has-text('Filter')")
            assert "q=water+therapy" in page.url
            links = page.locator("table.list tbody a.first")
            assert links.count() == 1
            links.first.click()
            assert page.url.endswith("/conversations/" + conversation_key(chats["booking"]))
            assert SCRIPT in page.locator("ol.transcript").inner_text()  # shown as text
            assert page.locator("ol.transcript script").count() == 0
            assert "action_answer" in page.content() and "confidence" in page.content()

            exported = context.request.get(f"{base}/export.json?q=maria%40example&redact=1")
            assert exported.ok
            [item] = json.loads(exported.text())["conversations"]
            assert item["conversation_id"].startswith("conv-")  # hashed: on SMS the id is a phone number
            assert chats["booking"] not in exported.text()
            assert "maria@example.com" not in exported.text() and "[email]" in exported.text()

            page.click("text=Follow it up")
            assert "/requests" in page.url
            row = page.locator("tr", has_text="Maria Lopez")
            row.locator("select[name=status]").select_option("contacted")
            row.locator("button:has-text('Save')").click()
            assert "marked contacted" in page.locator(".flash").inner_text()
            assert "by browser@clinic.example" in page.locator("tr", has_text="Maria Lopez").inner_text()
            assert remote == []  # nothing loaded from elsewhere
        finally:
            browser.close()
    engine = make_engine(chats["url"])
    with engine.connect() as connection:
        request = connection.execute(sa.select(consultation_requests).where(
            consultation_requests.c.conversation_id == chats["booking"])).first()
        history = connection.execute(sa.select(consultation_status_history.c.new_status)
                                     .where(consultation_status_history.c.request_id == request.id)).all()
        actions = [row[0] for row in connection.execute(
            sa.select(db.audit.c.action).where(db.audit.c.actor == "browser@clinic.example").order_by(db.audit.c.id))]
    assert (request.status, request.status_changed_by) == ("contacted", "browser@clinic.example")
    assert [h[0] for h in history] == ["contacted"]
    assert actions[:2] == ["login", "view_conversations"]
    assert {"view_transcript", "export", "view_requests", "change_request_status"} <= set(actions)
