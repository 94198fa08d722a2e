"""The door of the Rasa server (channels/door.py, channels/rest.py, channels/socketio.py,
core/privacy.py): the input rules on their own, then against the real servers over REST and
socket.io — bad bodies and ids refused with a 4xx, long messages answered without reaching the NLU,
metadata replaced, conversations namespaced per channel, signed socket.io sessions, no silent turn when
the database or the action server fails, and no visitor text in the logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import multiprocessing
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from typing import Any, Dict, List

import pytest
import requests
import socketio
import structlog

from channels import door
from core import privacy
from core.knowledge_loader import get_knowledge
from devtools.servers import ROOT, Receiver, Servers, Visitor, free_port
from scripts import credentials
from tests.expectations import TOPIC_PHRASES, contains_all

KNOWLEDGE = get_knowledge()
TOO_LONG = KNOWLEDGE.door["too_long"]
REFUSED = KNOWLEDGE.door["refused"]
TECHNICAL = KNOWLEDGE.technical_problem


# --- the rules on their own -------------------------------------------------------------------------

def test_control_characters_and_lone_surrogates_are_removed_newline_and_tab_kept():
    assert door.clean_text("hi\x00 the\x07re\r\n\tok\x7f\x85\ud800\udfff") == "hi there\n\tok"
    assert door.clean_text("café – 日本語 😀 \u00a0") == "café – 日本語 😀 \u00a0"
    assert door.clean_text("") == ""
    for bad in (None, 12345, ["hi"], {"text": "hi"}, b"hi", True):
        with pytest.raises(door.Refused):
            door.clean_text(bad)


def test_the_length_limit_counts_characters():
    assert not door.too_long("é" * door.MAX_MESSAGE_CHARS)
    assert door.too_long("a" * (door.MAX_MESSAGE_CHARS + 1))


@pytest.mark.parametrize("sender", [None, "", "default", "+13105550177", "../export.json", "a" * 31 + "g",
                                    "a" * 31, "a" * 129, ["a" * 32], {"id": "a" * 32}, 12345678901234567890,
                                    "a" * 32 + "\x00", " " + "a" * 32, "a" * 32 + "\n"])
def test_rest_senders_of_an_unsafe_form_are_refused(sender):
    with pytest.raises(door.Refused):
        door.rest_sender(sender)


def test_rest_senders_are_32_to_128_hex_characters():
    for sender in (uuid.uuid4().hex, uuid.uuid4().hex.upper(), "f" * 128):
        assert door.rest_sender(sender) == sender


def test_session_ids_are_signed_and_namespaced():
    signer = door.SessionSigner(b"k" * 32)
    issued = signer.issue()
    conversation = signer.verify(issued)
    assert conversation == "socketio-" + issued.split(".")[0]
    assert signer.issue() != issued
    ident, signature = issued.split(".")
    forged = [None, "", ident, f"{ident}.{'0' * 32}", f"{uuid.uuid4().hex}.{signature}", issued.upper(),
              issued + "0", [issued], {"id": issued}, 7]
    assert all(signer.verify(bad) is None for bad in forged)
    assert door.SessionSigner(b"x" * 32).verify(issued) is None  # another key, another server farm
    with pytest.raises(door.Refused):  # no REST client can name a socket.io conversation
        door.rest_sender(conversation)


def _load(path: str, queue: Any) -> None:
    os.environ["CLINIC_SESSION_SECRET_FILE"] = path
    os.environ.pop("CLINIC_SESSION_SECRET", None)
    queue.put(door.load_secret())


def test_the_secret_is_generated_once_privately_and_shared_by_concurrent_servers(tmp_path, monkeypatch):
    path = tmp_path / "var" / "session_secret"
    queue = multiprocessing.get_context("fork").Queue()
    processes = [multiprocessing.get_context("fork").Process(target=_load, args=(str(path), queue))
                 for _ in range(6)]
    for process in processes:
        process.start()
    keys = {queue.get(timeout=30) for _ in processes}
    for process in processes:
        process.join(30)
    assert len(keys) == 1 and len(keys.pop()) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv("CLINIC_SESSION_SECRET", "short")
    with pytest.raises(ValueError):
        door.load_secret()
    monkeypatch.setenv("CLINIC_SESSION_SECRET", "s" * 40)
    assert door.load_secret() == b"s" * 40


def test_the_client_is_the_peer_unless_a_trusted_proxy_forwarded_it(monkeypatch):
    monkeypatch.delenv("TRUSTED_PROXIES", raising=False)
    proxies = {"127.0.0.1"}
    assert door.client_address("203.0.113.9", "198.51.100.1", proxies) == "203.0.113.9"
    assert door.client_address("127.0.0.1", "198.51.100.1, 192.0.2.7", proxies) == "192.0.2.7"
    assert door.client_address("127.0.0.1", "not an address", proxies) == "127.0.0.1"
    assert door.client_address("127.0.0.1", None, proxies) == "127.0.0.1"
    assert door.client_address("127.0.0.1", "198.51.100.1", door.trusted_proxies()) == "127.0.0.1"  # default
    one = door.client_metadata(b"k" * 32, "192.0.2.7")
    assert re.fullmatch(r"[0-9a-f]{16}", one["client"]) and list(one) == ["client"]
    assert one == door.client_metadata(b"k" * 32, "192.0.2.7") != door.client_metadata(b"k" * 32, "192.0.2.8")


# --- the log filter -----------------------------------------------------------------------------------

def _logged(emit: Any) -> str:
    """What a logger writes with the privacy filter on its handler (the process-wide install is
    tested in a subprocess below, so as not to change this test process's logging)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(privacy.PrivacyFilter())
    logger = logging.getLogger(f"privacy-test-{uuid.uuid4().hex[:6]}")
    logger.addHandler(handler)
    logger.propagate = False
    emit(logger)
    return stream.getvalue()


def test_the_filter_removes_the_turns_text_ids_phones_and_sql_parameters():
    text, sender = "my name is Zebulon Quixote and I hurt", uuid.uuid4().hex

    def emit(logger: logging.Logger) -> None:
        privacy.remember(f"  {text}\nsecond line of it\n", ids=(sender,))
        logger.warning("failed for %s: %r", sender, {"text": text})
        logger.warning("Failed to parse arguments in line '%s'", f"{text}\nsecond line of it")
        logger.warning("only one line quoted: %s", "second line of it")
        logger.warning("Failed to parse arguments in line '/x'. Expected the intent to be one of [['greet']] "
                       "but found Quixote and I.Continuing with given line as user text.")
        try:
            raise KeyError(f"bad value {text!r} for +13105550177")
        except KeyError:
            logger.exception("crash in conversation %s", sender.upper())
        logger.error('(sqlite3.IntegrityError) x\n[SQL: INSERT INTO events VALUES (?)]\n'
                     '[parameters: ("%s", "{\\"text\\": \\"secret words\\"}")]\n(Background on this error)', sender)

    written = _logged(emit)
    assert "Zebulon" not in written and "Quixote" not in written and sender not in written
    assert sender.upper() not in written
    assert "3105550177" not in written and "secret words" not in written and "second line" not in written
    assert privacy.pseudonym(sender) in written and "KeyError" in written and "Traceback" in written
    privacy.forget_recent()


def test_the_filter_drops_structlog_traceback_locals_and_text_fields():
    text = "Zebulon's private words"

    def failing(message: str) -> None:
        raise RuntimeError("no")

    try:
        failing(text)
    except RuntimeError:
        event = structlog.processors.dict_tracebacks(None, "error", {
            "event": "rest.message.received.failure", "text": text, "exc_info": sys.exc_info()})
    rendered = structlog.processors.JSONRenderer()(None, "error", event)
    assert text in rendered and '"locals"' in rendered  # what Rasa would log without the filter
    written = _logged(lambda logger: logger.error(rendered))
    assert "Zebulon" not in written and '"locals"' not in written
    assert json.loads(written)["event"] == "rest.message.received.failure"
    assert json.loads(written)["exception"][0]["exc_type"] == "RuntimeError"


def test_rasas_own_failure_line_loses_its_text_and_locals():
    """Rasa's REST code logs ``rest.message.received.failure`` with ``text=`` and, in its JSON log
    format (output not a terminal), a traceback with every frame's locals: here with Rasa's own
    structlog configuration."""
    code = ("import logging, structlog; from core import privacy; privacy.install(); "
            "from rasa.utils.log_utils import configure_structlog; configure_structlog(logging.INFO)\n"
            "def handle(message):\n    tracker = {'latest': message}\n    raise RuntimeError('failed')\n"
            "try:\n    handle('Zebulon lives at Elm Street')\n"
            "except RuntimeError:\n"
            "    structlog.get_logger().exception('rest.message.received.failure', text='Zebulon lives at Elm Street')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "rest.message.received.failure" in out and "RuntimeError" in out and '"frames"' in out
    assert "Zebulon" not in out and '"locals"' not in out


def test_install_filters_every_logger_of_the_process_whatever_its_handlers():
    code = ("import logging, sys; from core import privacy; privacy.install(); "
            "logging.basicConfig(stream=sys.stdout); h = logging.StreamHandler(sys.stdout); "
            "logging.getLogger('sanic.error').addHandler(h); privacy.remember('Zebulon is here'); "
            "logging.getLogger('sanic.error').error('got %s from %s', 'Zebulon is here', 'ab' * 20); "
            "logging.getLogger().warning('+13105550177 said hi'); "
            "import warnings; warnings.warn('Failed to parse arguments in line /Zebulon is here')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Zebulon" not in out and "ab" * 20 not in out and "3105550177" not in out
    assert out.count(privacy.TEXT) == 2 and privacy.PHONE in out and "could not read a message" in out


# --- the real servers ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def servers(shared_servers) -> Servers:
    return shared_servers  # with the callback channel, shared with other modules (conftest.py)


def post(servers: Servers, body: Any, raw: bool = False, headers: Any = None) -> requests.Response:
    data = body if raw else json.dumps(body)
    return requests.post(f"{servers.url}/webhooks/rest/webhook", data=data, timeout=60,
                         headers={"Content-Type": "application/json", **(headers or {})})


def events(servers: Servers, sender: str) -> List[Dict[str, Any]]:
    with sqlite3.connect(servers.db) as connection:
        return [json.loads(row[0]) for row in connection.execute(
            "select data from events where sender_id = ? order by id", (sender,))]


def user_events(servers: Servers, sender: str, wait_for: int = 0) -> List[Dict[str, Any]]:
    """The stored user messages of a conversation, waiting up to 15 s for ``wait_for`` of them
    (socket.io replies are emitted before the turn is stored)."""
    deadline = time.monotonic() + 15
    while True:
        found = [event for event in events(servers, sender) if event["event"] == "user"]
        if len(found) >= wait_for or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.mark.e2e
@pytest.mark.parametrize("body", [b"[]", b'"x"', b"null", b"12", b"true", b"{", b"", b"\xff\xfe{}", b"[" * 5000,
                                  b'{"sender": 1' + b"0" * 6000 + b"}", b"{}", b"NaN"])
def test_rest_bodies_that_are_not_a_json_object_get_400_with_a_json_error(servers, body):
    response = post(servers, body, raw=True)
    assert response.status_code == 400 and "error" in response.json()


@pytest.mark.e2e
@pytest.mark.parametrize("sender", [None, "", "default", "+13105550177", "../export.json", "ab" * 8,
                                    ["a" * 32], {"a": 1}, 12345])
def test_rest_refuses_missing_empty_and_odd_senders(servers, sender):
    body = {"message": "what are the symptoms?"}
    if sender is not None:
        body["sender"] = sender
    response = post(servers, body)
    assert response.status_code == 400 and "sender" in response.json()["error"]
    with sqlite3.connect(servers.db) as connection:
        assert connection.execute("select count(*) from events where sender_id in ('default', '')").fetchone()[0] == 0


@pytest.mark.e2e
@pytest.mark.parametrize("body", [{"message": "hi"}, {"sender": "default", "message": "hi"}, [], "x", None])
def test_the_callback_channel_applies_the_same_rules(servers, body):
    response = requests.post(f"{servers.url}/webhooks/callback/webhook", data=json.dumps(body), timeout=60,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "error" in response.json()


@pytest.mark.e2e
@pytest.mark.parametrize("message", [None, 12345, ["hi"], {"text": "hi"}, True])
def test_rest_refuses_a_message_that_is_not_a_string(servers, message):
    response = post(servers, {"sender": uuid.uuid4().hex, "message": message})
    assert response.status_code == 400 and "message" in response.json()["error"]


@pytest.mark.e2e
def test_a_message_over_2000_characters_is_answered_without_reaching_the_nlu(servers):
    sender = uuid.uuid4().hex
    response = post(servers, {"sender": sender, "message": "what is fibromyalgia " * 100})
    assert response.status_code == 200 and [m["text"] for m in response.json()] == [TOO_LONG]
    assert events(servers, sender) == []  # nothing parsed, nothing stored
    at_limit = ("what is fibromyalgia " * 100)[:door.MAX_MESSAGE_CHARS - 1] + "?"
    answer = Visitor(servers)
    answer.sender = sender
    assert TOO_LONG not in answer.says(at_limit)
    assert [len(event["text"]) for event in user_events(servers, sender)] == [door.MAX_MESSAGE_CHARS]


@pytest.mark.e2e
def test_bodies_over_32_kb_are_refused_by_the_server_and_any_encoding_of_2000_characters_is_read(servers):
    sender = uuid.uuid4().hex
    escaped = json.dumps({"sender": sender, "message": "\U0001F600" * door.MAX_MESSAGE_CHARS})  # \ud83d\ude00…
    assert len(escaped) > 24000
    assert post(servers, escaped, raw=True).status_code == 200  # (the 2,000 emoji are answered, not refused)
    sender = uuid.uuid4().hex
    response = post(servers, {"sender": sender, "message": "a" * 40000})
    assert response.status_code == 413
    response = post(servers, {"sender": sender, "message": "hi", "metadata": {"junk": "x" * 5_000_000}})
    assert response.status_code == 413
    assert events(servers, sender) == []


@pytest.mark.e2e
def test_control_characters_are_removed_and_client_metadata_and_channel_replaced(servers):
    sender = uuid.uuid4().hex
    response = post(servers, {"sender": sender, "message": "what is\u0000 fibro\u0007myalgia\ud800?\r\n",
                              "metadata": {"client": "forged", "x": [1] * 100}, "input_channel": "twilio"})
    assert response.status_code == 200 and response.json()
    [user] = user_events(servers, sender)
    assert user["text"] == "what is fibromyalgia?"  # (Rasa strips the outer whitespace)
    assert re.fullmatch(r"[0-9a-f]{16}", user["metadata"]["client"])
    assert set(user["metadata"]) - {"model_id", "assistant_id"} == {"client"}  # (Rasa adds its model's)
    assert user["input_channel"] == "rest"
    # the same client address gives the same hash; X-Forwarded-For is not believed from a peer that is not
    # in TRUSTED_PROXIES (none by default): rotating it changes nothing, naming another address neither
    # (behind a trusted proxy: tests/test_fair_share.py)
    other = uuid.uuid4().hex
    post(servers, {"sender": other, "message": "hello"})
    post(servers, {"sender": other, "message": "hello"}, headers={"X-Forwarded-For": "192.0.2.7"})
    first, second = (event["metadata"]["client"] for event in user_events(servers, other))
    assert first == user["metadata"]["client"] == second


# --- socket.io -------------------------------------------------------------------------------------

class Socket:
    """A raw python-socketio client: whatever it emits, and what it receives."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = socketio.AsyncClient(reconnection=False)
        self.messages: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
        self.confirmed: "asyncio.Queue[str]" = asyncio.Queue()
        self.client.on("bot_uttered", self.messages.put)
        self.client.on("session_confirm", self.confirmed.put)

    async def __aenter__(self) -> "Socket":
        await self.client.connect(self.url, wait_timeout=10, transports=["polling"])
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.eio.disconnect(abort=True)

    async def session(self, data: Any) -> str:
        await self.client.emit("session_request", data)
        return await asyncio.wait_for(self.confirmed.get(), 10)

    async def reply(self, timeout: float = 60) -> str:
        return (await asyncio.wait_for(self.messages.get(), timeout)).get("text") or ""

    async def silent(self, seconds: float = 2) -> bool:
        try:
            await asyncio.wait_for(self.messages.get(), seconds)
        except asyncio.TimeoutError:
            return True
        return False


@pytest.mark.e2e
def test_socketio_issues_signed_sessions_and_refuses_other_sessions_and_bad_messages(servers):
    async def check() -> None:
        async with Socket(servers.url) as visitor, Socket(servers.url) as intruder:
            session = await visitor.session({"session_id": None})
            assert re.fullmatch(r"[0-9a-f]{32}\.[0-9a-f]{32}", session)
            assert await visitor.session({"session_id": session}) == session  # its own id is kept
            # forged, client-chosen, other-typed ids: a new id, never the one asked for
            for forged in [uuid.uuid4().hex + uuid.uuid4().hex, session.split(".")[0],
                           session[:-1] + ("1" if session.endswith("0") else "0"), ["x"], {"a": 1}, 7, "default"]:
                issued = await intruder.session({"session_id": forged})
                assert issued != forged and issued != session
            for data in [None, "x", ["session_id"], 12]:
                assert await intruder.session(data) not in (session, data)
            # the intruder's socket did not join the visitor's session: refused, and the visitor hears nothing
            await intruder.client.emit("user_uttered", {"message": "cancel", "session_id": session})
            assert await intruder.reply() == REFUSED
            for bad in [{"message": "hi", "session_id": ["x"]}, {"message": "hi", "session_id": {"a": 1}},
                        {"message": "hi"}, "hello", ["hi"], None]:
                await intruder.client.emit("user_uttered", bad)
                assert await intruder.reply() == REFUSED
            await visitor.client.emit("user_uttered", {"message": 12345, "session_id": session})
            assert await visitor.reply() == REFUSED
            assert await visitor.silent(2)  # nothing of the intruder's reached the visitor
            await visitor.client.emit("user_uttered", {"message": "x" * 2001, "session_id": session})
            assert await visitor.reply() == TOO_LONG
            await visitor.client.emit("user_uttered", {"message": "hello\u0000\u001b", "session_id": session,
                                                       "metadata": {"client": "forged"}})
            assert await visitor.reply()
        conversation = "socketio-" + session.split(".")[0]
        [user] = user_events(servers, conversation, wait_for=1)
        assert user["text"] == "hello" and user["metadata"]["client"] != "forged"
        assert user_events(servers, session) == [] and user_events(servers, session.split(".")[0]) == []

    asyncio.run(check())


@pytest.mark.e2e
def test_socketio_refuses_packets_over_32_kb(servers):
    async def check() -> None:
        async with Socket(servers.url) as visitor:
            session = await visitor.session({"session_id": None})
            await visitor.client.emit("user_uttered", {"message": "a" * 40000, "session_id": session})
            assert await visitor.silent(3)  # refused: neither parsed nor answered "please shorten"
        async with Socket(servers.url) as again:  # and keeps serving others
            session = await again.session({"session_id": None})
            await again.client.emit("user_uttered", {"message": "hello", "session_id": session})
            assert await again.reply()
        assert [event["text"] for event in user_events(servers, "socketio-" + session.split(".")[0], 1)] == ["hello"]

    asyncio.run(check())
    raw = requests.post(f"{servers.url}/socket.io/?EIO=4&transport=polling&sid=x", data="4" + "a" * 40000,
                        timeout=10)
    assert raw.status_code == 413


# --- never silent, no text in the logs ------------------------------------------------------------------

@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A Rasa server whose every turn raises: its lock store is a Redis server that is not there
    (a free port nobody listens on), as when Redis is down. Only Rasa runs: no turn gets further."""
    folder = tmp_path_factory.mktemp("door-broken")
    path = folder / "credentials.yml"
    receiver = Receiver()
    credentials.write(credentials.render({"CALLBACK_URL": receiver.url}), path)
    running = Servers(folder, credentials=path)
    running.receiver = receiver
    with running.endpoints.open("a") as endpoints:
        endpoints.write(f"lock_store:\n  type: redis\n  url: 127.0.0.1\n  port: {free_port()}\n"
                        f"  key_prefix: door{uuid.uuid4().hex[:8]}\n  socket_timeout: 2\n")
    running._start_rasa()
    running._wait(running.url + "/", "rasa")
    yield running
    running.stop()
    receiver.close()


@pytest.mark.e2e
def test_when_handling_raises_every_channel_answers_technical_problem_and_logs_no_text(broken):
    secret = "Zebulon Quixote at 14 Elm Street"
    sender = uuid.uuid4().hex
    response = post(broken, {"sender": sender, "message": f"my name is {secret}"})
    assert response.status_code == 200 and [m["text"] for m in response.json()] == [TECHNICAL]

    async def socket() -> None:
        async with Socket(broken.url) as visitor:
            session = await visitor.session({"session_id": None})
            await visitor.client.emit("user_uttered", {"message": f"I live at {secret}", "session_id": session})
            assert await visitor.reply() == TECHNICAL

    asyncio.run(socket())
    # the callback channel (Rasa's answers 500 here and sends nothing): "success", and the reply is posted
    callback = requests.post(f"{broken.url}/webhooks/callback/webhook", timeout=60,
                             json={"sender": sender, "message": f"callback {secret}"})
    assert callback.status_code == 200 and callback.text == "success"
    [posted] = broken.receiver.messages(lambda got: len(got) >= 1)
    assert posted["json"]["text"] == TECHNICAL and posted["json"]["recipient_id"] == sender
    log = broken.log("rasa")
    assert "Traceback" in log and "ConnectionError" in log
    assert "Zebulon" not in log and "Elm Street" not in log and sender not in log
    assert privacy.pseudonym(sender) in log


@pytest.mark.e2e
def test_when_the_action_server_is_down_every_channel_still_answers(servers):
    servers.stop("actions")
    try:
        answer = Visitor(servers).say("what is fibromyalgia")
        assert TECHNICAL in [message.get("text") for message in answer]

        async def socket() -> None:
            async with Socket(servers.url) as visitor:
                session = await visitor.session({"session_id": None})
                await visitor.client.emit("user_uttered", {"message": "what causes it", "session_id": session})
                # A new visitor gets the disclaimer first: the Rasa server says it without the action server.
                assert TECHNICAL in [await visitor.reply(), await visitor.reply()]

        asyncio.run(socket())
    finally:
        servers._start("actions", [sys.executable, "-m", "actions", "--port", str(servers.action_port)])
        servers._wait(f"http://127.0.0.1:{servers.action_port}/health", "actions")
    assert contains_all(Visitor(servers).says("what is fibromyalgia"), TOPIC_PHRASES["what_is_fibromyalgia"])
