"""No cross-site REST: a page on another web site cannot make its visitors' browsers post to the REST
webhook. Browsers send a "simple" cross-site POST (``text/plain``, a form) without asking the server
first (no CORS preflight); the channel refuses any content type but ``application/json`` (415) and any
``Origin`` it does not list (403), before anything is stored or counted."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import requests
from playwright.sync_api import sync_playwright

from devtools.servers import Servers, free_port

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

PAGE = """<!doctype html><html><body><p>A page on another web site</p>
<form id="form" method="post" enctype="text/plain" action="{webhook}" target="sink">
<input type="hidden" name='{{"sender": "{sender}", "message": "I' value='d like to book a consultation", "x": "1"}}'>
</form><iframe name="sink"></iframe>
<script>
const results = [];
async function send(init) {{
  try {{ await fetch("{webhook}", init); results.push("sent"); }} catch (error) {{ results.push("error"); }}
}}
window.attack = async () => {{
  const body = JSON.stringify({{sender: "{sender}", message: "I'd like to book a consultation"}});
  for (let i = 0; i < 5; i++) {{
    await send({{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body}});
  }}
  await send({{method: "POST", mode: "cors", headers: {{"Content-Type": "application/json"}}, body}});
  document.getElementById("form").submit();
  await new Promise(resolve => setTimeout(resolve, 1500));
  return results;
}};
</script></body></html>"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[Servers]:
    running = Servers(tmp_path_factory.mktemp("cross-site"), env={"CLINIC_MAX_REQUESTS_PER_CLIENT": "5"}).start()
    yield running
    running.stop()


@pytest.fixture()
def foreign_page(servers) -> Iterator[tuple]:
    """A page served on another origin (another port) that posts to the webhook."""
    sender = uuid.uuid4().hex
    html = PAGE.format(webhook=f"{servers.url}/webhooks/rest/webhook", sender=sender).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}/", sender
    server.shutdown()


def stored(servers: Servers, sender: str) -> int:
    with sqlite3.connect(servers.db) as connection:
        count = connection.execute("select count(*) from events where sender_id = ?", (sender,)).fetchone()[0]
    requests_db = Path(servers.db)
    assert requests_db.exists()
    return count


def test_a_foreign_page_cannot_post_to_the_webhook_and_the_visitor_books_afterwards(servers, foreign_page):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    url, sender = foreign_page
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            results = page.evaluate("window.attack()")
        finally:
            browser.close()
    assert len(results) == 6
    assert stored(servers, sender) == 0  # refused: nothing stored, nothing counted
    # the same visitor (same address) on the clinic's own page, over REST from its own server: accepted
    visitor = uuid.uuid4().hex
    steps = ["I'd like to book a consultation", "Maria Lopez", "(310) 555-0134", "weekday mornings", "skip",
             "back pain from fibromyalgia", "yes"]
    for text in steps:
        answer = requests.post(f"{servers.url}/webhooks/rest/webhook", json={"sender": visitor, "message": text},
                               timeout=60)
        assert answer.status_code == 200
    assert "will call you back" in " ".join(message.get("text") or "" for message in answer.json())


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None, "application/jsonp", "text/json"])
def test_any_content_type_but_json_is_refused_with_415(servers, content_type):
    sender = uuid.uuid4().hex
    headers = {"Content-Type": content_type} if content_type else {}
    answer = requests.post(f"{servers.url}/webhooks/rest/webhook", headers=headers,
                           data=f'{{"sender": "{sender}", "message": "hello"}}', timeout=60)
    assert answer.status_code == 415 and "application/json" in answer.json()["error"]
    assert stored(servers, sender) == 0


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:1"])
def test_a_foreign_origin_is_refused_with_403_and_json_with_no_origin_is_accepted(servers, origin):
    sender = uuid.uuid4().hex
    answer = requests.post(f"{servers.url}/webhooks/rest/webhook", headers={"Origin": origin},
                           json={"sender": sender, "message": "hello"}, timeout=60)
    assert answer.status_code == 403 and stored(servers, sender) == 0
    answer = requests.post(f"{servers.url}/webhooks/rest/webhook", json={"sender": sender, "message": "hello"},
                           headers={"Content-Type": "application/json; charset=utf-8"}, timeout=60)
    assert answer.status_code == 200 and stored(servers, sender) > 0
