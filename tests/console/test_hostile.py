"""The console against hostile and bad data (issue 11 rows 4, 5, 10, 11, 12, 13; issue 8 row 7) and the insight
page's "could not answer" list (issue 10 item 7), on real SQLite and real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from urllib.parse import urljoin, urlsplit

import pytest
import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from console import auth, db, queries, redaction, summary
from console.links import conversation_id
from core.store import consultation_requests, make_engine
from devtools.servers import ROOT, free_port
from tests.console.support import (
    EMAIL,
    PASSWORD,
    add_conversation,
    audit_rows,
    csrf_of,
    ids,
    make_app,
    page,
    sign_in,
    signed_in_client,
    transcript_path,
)

NUL_TEXT = "hi\x00there \x1b[31mred\x07 \ud800 and\r\nnext line"
CLEAN_TEXT = "hithere [31mred \ufffd and\nnext line"


def is_postgres(engine) -> bool:
    return engine.url.get_backend_name() == "postgresql"


# Row 4: control characters -------------------------------------------------------------------------------

def test_nul_and_control_characters_never_break_an_export_or_a_page(console):
    app, engine, _ = console
    add_conversation(engine, "conv-nul", [(NUL_TEXT, "nlu_fallback", 0.3, "action_fallback", "Sorry\x00!")])
    senders = ["conv-nul"]
    if not is_postgres(engine):  # PostgreSQL cannot store a NUL in a sender id at all
        add_conversation(engine, "conv\x00sender\x1b", [("hello", "greet", 0.9, "action_answer", "Hi!")])
        senders.append("conv\x00sender\x1b")
    client = signed_in_client(app, engine)
    for path in ("/export.csv", "/export.csv?redact=1", "/export.json", "/export.json?redact=1"):
        response = client.get(path)
        body = response.get_data(as_text=True)
        assert response.status_code == 200, path
        assert "\x00" not in body and "\x1b" not in body and "\x07" not in body and "EXPORT FAILED" not in body
        if path.startswith("/export.csv"):
            rows = list(csv.DictReader(io.StringIO(body)))
            texts = {row["text"] for row in rows}
            ids_seen = {row["conversation_id"] for row in rows}
        else:
            document = json.loads(body)
            assert document["complete"] is True
            texts = {m["text"] for c in document["conversations"] for m in c["messages"]}
            ids_seen = {c["conversation_id"] for c in document["conversations"]}
        assert CLEAN_TEXT in texts and "Sorry!" in texts, path
        assert len(ids_seen) == 3 + len(senders), path  # every conversation is in it, up to the end
        if "redact" not in path and len(senders) == 2:
            assert "convsender" in ids_seen
    # Exporting, listing and reading that conversation, and filtering with control characters
    for sender in senders:
        assert client.get(transcript_path(sender)).status_code == 200
        assert client.get("/export.csv", query_string={"q": sender}).status_code == 200
    for query in ({"q": "hi\x00there"}, {"topic": "x\x00"}, {"q": "\x00"}):
        for path in ("/conversations", "/insight", "/export.csv", "/export.json"):
            assert client.get(path, query_string=query).status_code == 200, (path, query)
    html = page(client, transcript_path("conv-nul"))
    assert "hithere" in html and "\x00" not in html
    assert "hithere" in page(client, "/conversations")


class LiveConsole:
    """The console app served by werkzeug on a free port (as `python -m console` serves it), in a thread."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", free_port(), app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LiveConsole":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.thread.join(10)

    def session(self) -> requests.Session:
        session = requests.Session()
        token = csrf_of(session.get(self.url + "/login", timeout=10).text)
        response = session.post(self.url + "/login", data={"email": EMAIL, "password": PASSWORD,
                                                           "csrf_token": token}, allow_redirects=False, timeout=30)
        assert response.status_code == 302
        return session


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_an_export_that_fails_part_way_says_so_and_is_never_a_clean_200(console, fmt, caplog):
    app, engine, _ = console
    signed_in_client(app, engine)  # the account

    def fail(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("SELECT events.sender_id, events.type_name"):  # the export's read of messages
            raise sa.exc.OperationalError(statement, {}, RuntimeError("connection lost"))

    with LiveConsole(app) as live:
        session = live.session()
        sa.event.listen(engine, "before_cursor_execute", fail)
        try:
            response = session.get(f"{live.url}/export.{fmt}", stream=True, timeout=30)
            assert response.status_code == 200  # sent before the first row
            assert response.headers.get("Transfer-Encoding") == "chunked"
            received = b""
            with pytest.raises(requests.exceptions.ChunkedEncodingError):  # the body never ends cleanly
                for chunk in response.iter_content(1024):
                    received += chunk
        finally:
            sa.event.remove(engine, "before_cursor_execute", fail)
    text = received.decode()
    if fmt == "csv":
        assert text.rstrip().endswith("EXPORT FAILED: this file is incomplete")
    else:
        assert json.loads(text)["complete"] is False
    [failed] = audit_rows(engine, "export_failed")
    assert failed["actor"] == EMAIL and "OperationalError" in failed["detail"]
    assert "export failed part-way (OperationalError)" in caplog.text


# Rows 5 and 11: redaction ---------------------------------------------------------------------------------

HOSTILE = {
    "address-characters-no": "a" * 100_000,
    "dotted-run": "a." * 50_000,
    "digits": "1" * 100_000,
    "digits-and-dashes": "1-" * 50_000,
    "short-digit-groups": "12 34 " * 16_667,
    "spaces": " " * 100_000,
    "words": "a " * 50_000,
    "spelled-at": "a at " * 20_000,
    "at-signs": "a@" * 50_000,
    "spelled-dots": "a at b" + " dot" * 24_000,
    "number-words": "one two x " * 10_000,
    "parentheses": "(((1" * 25_000,
    "plus-signs": "+" * 100_000,
    "letters": "é" * 100_000,
}


TIMER = """
import json, sys, time
from console import redaction
from tests.console.test_hostile import HOSTILE
times = {}
for name, text in HOSTILE.items():
    started = time.monotonic()
    redaction.redact(text)
    for pattern in (redaction.EMAIL, redaction.PHONE, redaction.SPELLED):  # each pattern on all of it, uncapped
        pattern.sub("", text)
    times[name] = time.monotonic() - started
print(json.dumps(times))
"""


def test_redaction_takes_linear_time_on_100_kb_of_hostile_text():
    # A budget, not a speed target: the old email pattern took 16 s for 80,000 address characters (and minutes
    # for 100 KB). In a child process, so that a catastrophic pattern fails the test instead of hanging it.
    try:
        done = subprocess.run([sys.executable, "-c", TIMER], cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        pytest.fail("redacting 100 KB of hostile text took more than a minute")
    assert done.returncode == 0, done.stderr
    times = json.loads(done.stdout)
    assert set(times) == set(HOSTILE)
    slow = {name: round(seconds, 2) for name, seconds in times.items() if seconds > 2.0}
    assert not slow, slow


def test_redaction_sees_bounded_input():
    long = "call 310-555-0134 " + "x" * (redaction.MAX_TEXT + 5000)
    redacted = redaction.redact(long)
    assert redacted.startswith("call [phone] ") and len(redacted) < redaction.MAX_TEXT + 100
    assert redacted.endswith("more characters not exported]") and "0134" not in redacted


@pytest.mark.parametrize("text, expected", [
    ("310/555/0134", "[phone]"),
    ("call 310.555.0134 or +1 (310) 555-0134", "call [phone] or [phone]"),
    ("three one zero five five five zero one three four", "[phone]"),
    ("Three-one-zero, five five five, oh one three four please", "[phone] please"),
    ("it's 310 five five five 0134", "it's [phone]"),
    ("maria dot lopez at gmail dot com", "[email]"),
    ("name at gmail dot com", "[email]"),
    ("write to maria (at) example (dot) org", "write to [email]"),
    ("maria at example.com", "[email]"),
    ("user@localhost", "[email]"),
    ("root@localhost, then", "[email], then"),
    ("I'm 45, had 3 surgeries and one or two questions at most", None),  # unchanged
    ("one two three", None),
])
def test_redaction_catches_spelled_and_unusual_numbers_and_addresses(text, expected):
    assert redaction.redact(text) == (text if expected is None else expected)


def test_redacted_exports_hash_conversation_ids(console):
    app, engine, _ = console
    add_conversation(engine, "+13105550177", [("hello", "greet", 0.9, "action_answer", "Hi!"),
                                               ("my email is name at gmail dot com", "inform", 0.9,
                                                "consultation_form", "Thanks.")])
    client = signed_in_client(app, engine)
    first = json.loads(page(client, "/export.json?redact=1"))["conversations"]
    second = json.loads(page(client, "/export.json?redact=1"))["conversations"]
    keys = [item["conversation_id"] for item in first]
    assert keys == [item["conversation_id"] for item in second]  # stable: rows can be followed across exports
    assert len(set(keys)) == 4 and all(re.fullmatch(r"conv-[0-9a-f]{24}", key) for key in keys)
    body = page(client, "/export.csv?redact=1") + json.dumps(first)
    for secret in ("3105550177", "conv-booking", "conv-fallback", "name at gmail"):
        assert secret not in body
    rows = list(csv.DictReader(io.StringIO(page(client, "/export.csv?redact=1"))))
    assert {row["conversation_id"] for row in rows} == set(keys)
    assert "+13105550177" in page(client, "/export.json")  # the plain export keeps them


# Row 10: links --------------------------------------------------------------------------------------------

CRAFTED = ["../export.json", "..", ".", "a/b?c=1#d", "%2e%2e", "..%2Fexport.json", "x\\..\\export.csv", " spaced "]


def test_crafted_sender_ids_cannot_make_a_link_resolve_elsewhere(console):
    app, engine, _ = console
    for number, sender in enumerate(CRAFTED):
        add_conversation(engine, sender, [(f"crafted message {number}", "greet", 0.9, "action_answer", "Hi")])
    client = signed_in_client(app, engine)
    html = page(client, "/conversations")
    links = re.findall(r'href="(/conversations/[^"]*)"', html)
    assert {conversation_id(link.rsplit("/", 1)[1]) for link in links} >= set(CRAFTED)
    for link in links:
        # as a browser resolves it: still a transcript, and the transcript of that conversation
        resolved = urlsplit(urljoin("http://console.example/conversations", link.replace("&amp;", "&")))
        assert resolved.path.startswith("/conversations/") and not resolved.query and not resolved.fragment
        assert resolved.path == link
        assert client.get(resolved.path).status_code == 200
    for number, sender in enumerate(CRAFTED):
        assert f"crafted message {number}" in page(client, transcript_path(sender))
    assert not audit_rows(engine, "export")  # no click downloaded anything


# Row 12: next and ids -------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["/\r//evil.example", "//evil.example", "/\\evil.example", "/\t/evil.example",
                                    "https://evil.example/", "/%0d%0a//evil.example".replace("%0d%0a", "\r\n"),
                                    "/ /evil.example", "javascript:alert(1)", "/login?next=//evil.example",
                                    "/\x00//evil.example"])
def test_next_after_sign_in_only_goes_to_this_console(console, target):
    app, engine, _ = console
    signed_in_client(app, engine)
    client = app.test_client()
    token = csrf_of(client.get("/login", query_string={"next": target}).get_data(as_text=True))
    response = client.post("/login", query_string={"next": target},
                           data={"email": EMAIL, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    assert response.location == "/conversations"


def test_next_keeps_a_page_of_this_console(console):
    app, engine, _ = console
    signed_in_client(app, engine)
    client = app.test_client()
    response = client.get("/insight?flag=fallback")
    assert response.status_code == 302
    token = csrf_of(client.get(response.location).get_data(as_text=True))
    signed = client.post(response.location, data={"email": EMAIL, "password": PASSWORD, "csrf_token": token})
    assert signed.location == "/insight?flag=fallback"


@pytest.mark.parametrize("request_id", [2**31, 2**63, 10**40])
def test_a_huge_request_id_is_not_found_never_an_error(console, request_id):
    app, engine, _ = console
    client = signed_in_client(app, engine)
    token = csrf_of(page(client, "/requests"))
    response = client.post(f"/requests/{request_id}/status", data={"status": "closed", "csrf_token": token})
    assert response.status_code == 404


# Row 13: per-address throttle -----------------------------------------------------------------------------

def client_from(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_failed_sign_ins_from_one_address_are_throttled(url, monkeypatch):
    monkeypatch.setenv("CONSOLE_SECRET_KEY", "k" * 48)
    app, engine = make_app(url, IP_MAX_FAILED_LOGINS=3, IP_WINDOW_SECONDS=600)
    signed_in_client(app, engine)
    attacker = client_from(app, "203.0.113.7")
    for number in range(3):  # unknown accounts: the per-account lockout never sees them
        assert sign_in(attacker, email=f"guess{number}@clinic.example").status_code == 401
    refused = sign_in(attacker)  # even the right password, from that address
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.get_data(as_text=True)
    assert audit_rows(engine, "login_throttled")
    # Other addresses are not affected, and the account is not locked.
    assert sign_in(client_from(app, "198.51.100.1")).status_code == 302
    with engine.begin() as connection:  # the window has passed
        connection.execute(db.login_failures.update().values(at=time.time() - 601))
    assert sign_in(attacker).status_code == 302


def test_throttled_sign_ins_are_counted_in_one_audit_row_per_address_and_window_without_their_text(url, monkeypatch):
    monkeypatch.setenv("CONSOLE_SECRET_KEY", "k" * 48)
    app, engine = make_app(url, IP_MAX_FAILED_LOGINS=2, IP_WINDOW_SECONDS=600)
    attacker, other = client_from(app, "203.0.113.8"), client_from(app, "203.0.113.9")
    for number in range(2):
        sign_in(attacker, email=f"guess{number}@clinic.example")
        sign_in(other, email=f"guess{number}@clinic.example")
    for number in range(40):
        assert sign_in(attacker, email=f"flood-{number}-<script>@evil.example").status_code == 429
    assert sign_in(other, email="flood@evil.example").status_code == 429
    rows = audit_rows(engine, "login_throttled")
    assert len(rows) == 2, rows  # one per address and window, however many attempts
    by_address = {row["ip"]: row for row in rows}
    assert by_address["203.0.113.8"]["detail"] == "40 sign-ins refused" and by_address["203.0.113.9"]["detail"] == \
        "1 sign-in refused"
    assert all(row["actor"] == "-" for row in rows)  # no attacker text stored
    assert not any("flood" in str(value) for row in audit_rows(engine) for value in row.values())


def test_a_burst_of_parallel_sign_ins_from_one_address_is_throttled_too(url, monkeypatch):
    monkeypatch.setenv("CONSOLE_SECRET_KEY", "k" * 48)
    app, engine = make_app(url, IP_MAX_FAILED_LOGINS=3, IP_WINDOW_SECONDS=600)
    signed_in_client(app, engine)
    clients = [client_from(app, "203.0.113.9") for _ in range(12)]
    tokens = [csrf_of(client.get("/login").get_data(as_text=True)) for client in clients]
    start = threading.Barrier(len(clients))
    statuses = []

    def attempt(number, client, token):
        start.wait()
        statuses.append(client.post("/login", data={"email": f"burst{number}@clinic.example",
                                                    "password": "wrong password!!", "csrf_token": token}).status_code)

    threads = [threading.Thread(target=attempt, args=(n, c, t)) for n, (c, t) in enumerate(zip(clients, tokens))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(statuses) == [401] * 3 + [429] * 9


def test_parallel_attempts_from_one_address_pass_the_throttle_at_most_max_times(url):
    """Found in a full `make test` on PostgreSQL: 4 of a burst got through a limit of 3. Ids come from a
    sequence in call order, not in commit order, so an attempt that counted only lower, committed ids missed
    a lower id still in flight. Calls begin_attempt itself, 30 at once (a pooled connection each), in 20 rounds
    (before the fix, 5 rounds of 20 let 4 or 5 through). SQLite's write lock serialises the attempts (the race
    is PostgreSQL's, and 30 writers waiting on that lock took 37 s for 20 rounds): 5 rounds there."""
    postgres = url.startswith("postgresql")
    engine = sa.create_engine(url, pool_size=30, max_overflow=0) if postgres else make_engine(url)
    db.metadata.create_all(engine)
    rounds = 20 if postgres else 5
    passed = []
    for round_number in range(rounds):
        address = f"198.51.100.{round_number}"
        results = []
        start = threading.Barrier(30)

        def attempt():
            start.wait()
            results.append(auth.begin_attempt(engine, address, 3, 600))

        threads = [threading.Thread(target=attempt) for _ in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        passed.append(sum(result is not None for result in results))
    engine.dispose()
    assert passed == [3] * rounds


# Issue 8 row 7: bad stored data ---------------------------------------------------------------------------

def add_bad_rows(engine) -> dict:
    """A NUL message (as the old REST channel stored it) and events no summary can read; their ids."""
    add_conversation(engine, "conv-bad", [("before", "greet", 0.9, "action_answer", "Hi"),
                                          ("secret\x00text 3105550134", "nlu_fallback", 0.2, "action_fallback",
                                           "Sorry")])
    e = db.events.c
    bad = [
        {"sender_id": "conv-bad", "type_name": "user", "timestamp": 1e300, "intent_name": "greet",
         "action_name": None, "data": '{"text": "far future secret"}'},
        {"sender_id": "conv-bad", "type_name": "user", "timestamp": time.time(), "intent_name": "x" * 255,
         "action_name": None, "data": '{"text": {"nested": "secret"}, "parse_data": []}'},
        {"sender_id": "conv-bad", "type_name": "user", "timestamp": None, "intent_name": None,
         "action_name": None, "data": "not json secret"},
    ]
    with engine.begin() as connection:
        connection.execute(db.events.insert(), bad)
        far = connection.execute(sa.select(e.id).where(e.timestamp == 1e300)).scalar()
    return {"far": far}


def test_bad_stored_data_never_stops_the_summary(console, caplog):
    app, engine, _ = console
    ids_ = add_bad_rows(engine)
    caplog.set_level(logging.WARNING, logger="console.summary")
    summary.refresh(engine, force=True)
    row = queries.conversation(engine, "conv-bad")
    assert row is not None and "secrettext 3105550134" in row["search_text"] and row["turns"] == 4  # the far-future one skipped
    client = signed_in_client(app, engine)
    assert "secrettext" in page(client, transcript_path("conv-bad"))
    assert "conv-bad" in [i for i in ids(page(client, "/conversations"))]
    page(client, "/insight")
    page(client, "/export.csv")
    assert "far future" in page(client, "/export.json")
    assert f"skipped event {ids_['far']}" in caplog.text  # by id
    assert "secret" not in caplog.text and "3105550134" not in caplog.text  # never its text


@pytest.mark.e2e  # starts the console server
def test_the_console_starts_whatever_is_stored(url, tmp_path):
    engine = make_engine(url)
    add_conversation(engine, "conv-ok", [("hello", "greet", 0.9, "action_answer", "Hi")])
    add_bad_rows(engine)
    engine.dispose()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLINIC_DB_URL": url, "CONSOLE_SECRET_KEY": "k" * 48,
           "CONSOLE_PORT": str(port)}
    log = tmp_path / "console.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "console"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/login", timeout=2)
                if answer.status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        # served by a production WSGI server (waitress), whose headers name no server and no version
        assert "server" not in {name.lower() for name in answer.headers}, answer.headers
        assert "via" not in {name.lower() for name in answer.headers}, answer.headers
    finally:
        process.terminate()
        process.wait(10)
    assert "secret" not in log.read_text()
    engine = make_engine(url)
    assert queries.conversation(engine, "conv-bad") is not None and queries.conversation(engine, "conv-ok")
    engine.dispose()


# Issue 10 item 7: what the assistant could not answer -------------------------------------------------------

def test_unanswered_messages_are_grouped_counted_and_answered_ones_left_out(console):
    app, engine, _ = console
    fallback = ("nlu_fallback", 0.3, "action_fallback", "Sorry, I'm not sure I understood.")
    add_conversation(engine, "conv-cbd-1", [("Do you sell CBD oil??", *fallback), ("do you sell cbd oil", *fallback)])
    add_conversation(engine, "conv-cbd-2", [("  do you SELL cbd-oil!", *fallback)])
    add_conversation(engine, "conv-parking", [("is parking validated?", *fallback)])
    # An unclear message naming a treatment: action_fallback answered it (and set the therapy slot).
    add_conversation(engine, "conv-swim", [("swimming??", "nlu_fallback", 0.35, "action_fallback",
                                            "Swimming is a low-impact activity ...", {"therapy": "exercise"})])
    # A question the article doesn't answer: action_fallback said so with the closest topic (the topic slot).
    add_conversation(engine, "conv-contagious", [("catchable from my wife?", "nlu_fallback", 0.31, "action_fallback",
                                                  "The article doesn't say whether ...", {"topic": "causes"})])
    summary.refresh(engine, force=True)
    figures = queries.insight(engine, queries.Filters())
    groups = [(item["normalized"], item["count"], item["conversations"]) for item in figures["unanswered"]]
    # most frequent first, then the newest
    assert groups == [("do you sell cbd oil", 3, 2), ("is parking validated", 1, 1), ("drop table events", 1, 1),
                      ("qwzx vbnm plok", 1, 1)]
    assert all("swimming" not in item["normalized"] and "catchable" not in item["normalized"]
               for item in figures["unanswered"])
    assert figures["unanswered_total"] == 6 and figures["unanswered_groups"] == 4
    assert figures["fallbacks"] == 5  # the answered one is not a fallback
    assert [item["action"] for item in figures["unanswered"]][:2] == ["action_fallback", "action_fallback"]
    with engine.connect() as connection:
        swim = connection.execute(sa.select(db.conversations).where(db.conversations.c.sender_id == "conv-swim")).first()
    assert not swim.fallback and swim.fallbacks == 0
    client = signed_in_client(app, engine)
    html = page(client, "/insight")
    assert "6 in all, 4 different" in html
    row = re.search(r'<tr><td class="num">3 <span class="meta">in 2 conversations</span></td>\s*'
                    r"<td>(.*?)</td>.*?<code>(.*?)</code>", html, re.S)
    assert row, html
    assert row.group(1) == "  do you SELL cbd-oil!" and row.group(2) == "action_fallback"  # the newest, its answer
    assert "swimming" not in html
    assert "flag fallback" not in page(client, transcript_path("conv-swim")).split('class="transcript"')[1]


def test_the_console_adds_columns_an_older_requests_table_lacks(console):
    app, engine, request_id = console
    with engine.begin() as connection:  # the table as an earlier version created it
        for index in consultation_requests.indexes:
            if [column.name for column in index.columns] == ["client"]:
                connection.exec_driver_sql(f"DROP INDEX IF EXISTS {index.name}")
        connection.exec_driver_sql("ALTER TABLE consultation_requests DROP COLUMN client")
    app, engine = make_app(str(engine.url.render_as_string(hide_password=False)))
    client = signed_in_client(app, engine)
    assert "Maria" in page(client, "/requests")
