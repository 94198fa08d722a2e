"""The real action server over HTTP: only the Rasa server may call it (the shared secret, JSON only), its
errors never send the conversation back, it refuses to start without its secret, one visitor's hostile
message does not make the others wait, and forged submissions store nothing."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest
import requests
import yaml
from rasa_sdk import __version__ as SDK_VERSION

from core.store import RequestStore
from devtools.servers import Visitor, free_port
from tests.conftest import ROOT
from tests.expectations import PHONE

HEADER = "X-Action-Token"
MARKER = "Zanzibar-7f3e"  # visitor text that must never come back in a response or reach the log


class ActionServer:
    """``python -m actions`` on a free port with its own SQLite database."""

    def __init__(self, folder: Path, token: Optional[str] = None, db_url: Optional[str] = None) -> None:
        self.folder = folder
        self.token = token or secrets.token_hex(32)
        self.port = free_port()
        self.db_url = db_url or f"sqlite:///{folder / 'conversations.db'}"
        self.log_path = folder / f"actions-{self.port}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ACTION_SERVER_TOKEN": self.token, "CLINIC_DB_URL": self.db_url}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "actions", "--port", str(self.port)], cwd=ROOT,
                                            env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            try:
                if requests.get(self.url("/health"), timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.3)
        raise RuntimeError(f"the action server did not start:\n{self.log()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def call(self, action: str, tracker: Dict[str, Any], token: Optional[str] = "default",
             **kwargs: Any) -> requests.Response:
        headers = {HEADER: self.token if token == "default" else token} if token is not None else {}
        return requests.post(self.url("/webhook"), json=action_call(action, tracker), headers=headers,
                             timeout=60, **kwargs)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text())


def tracker_state(text: str = "hello", intent: str = "greet", slots: Optional[Dict[str, Any]] = None,
                  events: Optional[list] = None, sender: Optional[str] = None, **extra: Any) -> Dict[str, Any]:
    return {"sender_id": sender or uuid.uuid4().hex, "slots": slots or {},
            "latest_message": {"text": text, "intent": {"name": intent, "confidence": 0.95}, "entities": [],
                               **extra},
            "events": events or [{"event": "user", "text": text}], "paused": False, "followup_action": None,
            "active_loop": {}, "latest_action_name": "action_listen"}


def action_call(action: str, tracker: Dict[str, Any]) -> Dict[str, Any]:
    return {"next_action": action, "sender_id": tracker["sender_id"], "tracker": tracker, "domain": DOMAIN,
            "version": SDK_VERSION}


def at_question(field: str, text: str, slots: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The tracker the form's validation action gets for an answer to ``field``'s question."""
    state = tracker_state(text, "nlu_fallback", slots={"requested_slot": field, **(slots or {})},
                          events=[{"event": "user", "text": text}, {"event": "action", "name": "consultation_form"}])
    state.update(active_loop={"name": "consultation_form"}, latest_action_name="consultation_form")
    return state


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ActionServer]:
    server = ActionServer(tmp_path_factory.mktemp("action-server"))
    try:
        yield server
    finally:
        server.stop()


def texts_of(response: requests.Response) -> str:
    return "\n".join(message.get("text") or "" for message in response.json()["responses"])


# --- The shared secret -------------------------------------------------------------------------------

@pytest.mark.e2e
def test_a_call_with_the_secret_is_answered(server):
    response = server.call("action_answer", tracker_state("what is fibromyalgia?", "ask_what_is_fibromyalgia"))
    assert response.status_code == 200
    assert "fibromyalgia" in texts_of(response).lower()


@pytest.mark.e2e
@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 64, "é" * 64])
def test_a_call_without_the_right_secret_is_refused(server, token):
    response = server.call("action_answer", tracker_state(f"what is {MARKER}?", "ask_what_is_fibromyalgia"),
                           token=token)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}


@pytest.mark.e2e
def test_a_secret_that_only_starts_right_is_refused(server):
    for token in (server.token[:-1], server.token + "0", server.token.upper()):
        assert server.call("action_answer", tracker_state(), token=token).status_code == 401


@pytest.mark.e2e
@pytest.mark.parametrize("method, path", [("OPTIONS", "/webhook"), ("OPTIONS", "/actions"), ("OPTIONS", "/health"),
                                          ("OPTIONS", "/"), ("OPTIONS", "/nowhere"), ("PUT", "/webhook"),
                                          ("DELETE", "/actions"), ("POST", "/health"), ("GET", "/nowhere")])
def test_everything_but_get_health_without_the_secret_is_401(server, method, path):
    response = requests.request(method, server.url(path), timeout=10,
                                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert response.status_code == 401 and response.json() == {"error": "unauthorized"}
    assert not any(name.lower().startswith("access-control") for name in response.headers)


@pytest.mark.e2e
def test_the_list_of_actions_needs_the_secret_and_the_health_check_does_not(server):
    assert requests.get(server.url("/actions"), timeout=10).status_code == 401
    assert requests.get(server.url("/actions"), headers={HEADER: server.token}, timeout=10).status_code == 200
    assert requests.get(server.url("/health"), timeout=10).json() == {"status": "ok"}


# --- JSON only, and no echo ----------------------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "", "application/jsonx"])
def test_a_body_that_is_not_json_is_refused(server, content_type):
    body = json.dumps(action_call("action_answer", tracker_state(MARKER, "ask_what_is_fibromyalgia")))
    headers = {HEADER: server.token, "Content-Type": content_type}
    response = requests.post(server.url("/webhook"), data=body.encode(), headers=headers, timeout=10)
    assert response.status_code == 415
    assert MARKER not in response.text


@pytest.mark.e2e
def test_json_with_a_charset_is_accepted(server):
    body = json.dumps(action_call("action_answer", tracker_state("hi", "greet")))
    headers = {HEADER: server.token, "Content-Type": "application/json; charset=utf-8"}
    assert requests.post(server.url("/webhook"), data=body.encode(), headers=headers, timeout=10).status_code == 200


@pytest.mark.parametrize("body", [
    {"next_action": "action_answer", "marker": MARKER},  # no tracker: the SDK raises
    {"next_action": "action_answer", "tracker": {"latest_message": {"text": MARKER}}},
    [MARKER], MARKER,
])
@pytest.mark.e2e
def test_errors_never_send_the_request_back(server, body):
    response = requests.post(server.url("/webhook"), json=body, headers={HEADER: server.token}, timeout=10)
    assert 400 <= response.status_code < 600
    assert MARKER not in response.text and "request_body" not in response.text
    assert set(response.json()) == {"error"}


@pytest.mark.e2e
def test_malformed_json_is_a_plain_400(server):
    headers = {HEADER: server.token, "Content-Type": "application/json"}
    response = requests.post(server.url("/webhook"), data=b'{"tracker": "' + MARKER.encode(), headers=headers,
                             timeout=10)
    assert response.status_code == 400
    assert MARKER not in response.text


# --- One visitor cannot freeze the others ----------------------------------------------------------------

@pytest.mark.e2e
def test_a_hostile_answer_does_not_make_another_visitor_wait(server):
    """Issue 11 row 1: 100 KB of address characters at the email question took 7 s of the one event loop."""
    slow: Dict[str, Any] = {}

    def hostile() -> None:
        started = time.monotonic()
        slow["response"] = server.call("validate_consultation_form", at_question("email", "a" * 100_000))
        slow["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=hostile)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    other = server.call("action_answer", tracker_state("what is fibromyalgia?", "ask_what_is_fibromyalgia"))
    waited = time.monotonic() - started
    thread.join(timeout=120)
    assert other.status_code == 200 and "fibromyalgia" in texts_of(other).lower()
    assert waited < 3.0, f"another visitor waited {waited:.1f} s"
    assert slow["response"].status_code == 200
    assert "email address" in texts_of(slow["response"])  # the hostile visitor is asked again, politely


# --- Forged submissions ----------------------------------------------------------------------------------

GOOD = {"name": "Maria Lopez", "phone": "+13105550134", "callback_time": "weekday mornings",
        "email": "maria@example.com", "reason": "skipped", "confirmed": True}


def submission(slots: Dict[str, Any], sender: Optional[str] = None, client: Optional[str] = None) -> Dict[str, Any]:
    extra = {"metadata": {"client": client}} if client else {}
    return tracker_state("yes", "affirm", slots=slots, sender=sender,
                         events=[{"event": "active_loop", "name": "consultation_form", "timestamp": time.time()},
                                 {"event": "user", "text": "yes"}], **extra)


@pytest.mark.parametrize("forged", [
    {"name": "<img src=x onerror=alert(1)>"}, {"name": "=HYPERLINK(\"http://evil.example\")"},
    {"phone": "=HYPERLINK(\"http://evil.example\",\"310 555 0134\")"}, {"phone": "+1310555013"},
    {"phone": 3105550134}, {"callback_time": "x"}, {"callback_time": ["mornings"]}, {"email": "not an address"},
    {"email": "maria@example.com<script>"}, {"reason": "r" * 5000}, {"name": None}, {"confirmed": "yes"},
])
@pytest.mark.e2e
def test_a_forged_submission_stores_nothing_and_the_visitor_is_told_to_call(server, forged):
    sender = uuid.uuid4().hex
    response = server.call("action_submit_consultation", submission({**GOOD, **forged}, sender))
    assert response.status_code == 200
    store = RequestStore(server.db_url)
    store.create_table()
    assert store.find(sender) == []
    assert PHONE in texts_of(response) and "couldn't send your request" in texts_of(response)
    events = response.json()["events"]
    assert {"event": "slot", "timestamp": None, "name": "name", "value": None} in events


@pytest.mark.e2e
def test_the_same_request_through_the_form_is_stored(server):
    sender = uuid.uuid4().hex
    response = server.call("action_submit_consultation", submission(GOOD, sender))
    assert "has been sent" in texts_of(response)
    [row] = RequestStore(server.db_url).find(sender)
    assert (row["name"], row["phone"], row["email"], row["reason"]) == ("Maria Lopez", "+13105550134",
                                                                          "maria@example.com", None)


@pytest.mark.e2e
@pytest.mark.postgres
def test_two_action_servers_share_the_limits_in_postgresql(tmp_path, pg_schema_url):
    """Six confirmations of one conversation at once, spread over two action servers: two are stored."""
    token = secrets.token_hex(32)
    servers = [ActionServer(tmp_path, token, pg_schema_url) for _ in range(2)]
    try:
        sender, client = uuid.uuid4().hex, "0123456789abcdef"
        calls = [submission(GOOD, sender, client) for _ in range(6)]
        for index, call in enumerate(calls):
            call["events"][0]["timestamp"] = 1700000000.0 + index  # six different forms
        replies: Dict[int, str] = {}
        barrier = threading.Barrier(len(calls))

        def confirm(index: int) -> None:
            barrier.wait()
            replies[index] = texts_of(servers[index % 2].call("action_submit_consultation", calls[index]))

        threads = [threading.Thread(target=confirm, args=(index,)) for index in range(len(calls))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(RequestStore(pg_schema_url).find(sender)) == 2
        assert sum("has been sent" in text for text in replies.values()) == 2
        assert sum("haven't sent this one" in text and PHONE in text for text in replies.values()) == 4
    finally:
        for server in servers:
            server.stop()


# --- Start-up and logs -------------------------------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("token, problem", [(None, "ACTION_SERVER_TOKEN is not set"), ("", "is not set"),
                                            ("short", "at least 16 characters")])
def test_the_server_refuses_to_start_without_its_secret(tmp_path, token, problem):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLINIC_DB_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    env.pop("ACTION_SERVER_TOKEN", None)
    if token is not None:
        env["ACTION_SERVER_TOKEN"] = token
    result = subprocess.run([sys.executable, "-m", "actions", "--port", str(free_port())], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert problem in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_the_log_names_conversations_but_holds_no_visitor_text(server):
    server.call("action_submit_consultation", submission({**GOOD, "name": f"<b>{MARKER}</b>"}, "forged-conv"))
    requests.post(server.url("/webhook"), json={"next_action": "action_answer", "marker": MARKER},
                  headers={HEADER: server.token}, timeout=10)
    log = server.log()
    assert "forged-conv" in log
    assert MARKER not in log and "Maria" not in log and "3105550134" not in log


# --- The Rasa server sends the secret ---------------------------------------------------------------------

def test_the_endpoints_files_send_the_secret_from_the_environment(monkeypatch):
    from rasa.utils.endpoints import read_endpoint_config

    monkeypatch.setenv("ACTION_SERVER_TOKEN", "s3cret-token-0123456789")
    monkeypatch.setenv("ACTION_SERVER_HOST", "127.0.0.1")
    monkeypatch.setenv("ACTION_SERVER_PORT", "5055")
    for name in ("endpoints.yml", "endpoints.postgres.yml"):
        for variable in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "REDIS_HOST", "REDIS_PORT"):
            monkeypatch.setenv(variable, "1")
        endpoint = read_endpoint_config(str(ROOT / name), "action_endpoint")
        assert endpoint.url == "http://127.0.0.1:5055/webhook", name
        assert endpoint.headers == {HEADER: "s3cret-token-0123456789"}, name


@pytest.mark.e2e
def test_the_rasa_server_calls_the_action_server_with_the_secret(shared_servers):
    assert "fibromyalgia" in Visitor(shared_servers).says("what is fibromyalgia?").lower()
    # and the action server refuses whoever does not know it
    port = shared_servers.action_port
    assert requests.post(f"http://127.0.0.1:{port}/webhook", json={}, timeout=10).status_code == 401
