"""Fuzzing the door: thousands of generated hostile inputs over REST and socket.io against the real
servers (issue 11, "Done when"), then: no 5xx, no silent turn, no stored event over the size limit, no
conversation under an odd id, no visitor text in either server's log, and a healthy server.

``FUZZ_INPUTS`` sets the number of inputs (default 2,000, about 30 s here); ``FUZZ_SEED`` replays a
run (the seed is printed when the test fails).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Tuple

import pytest
import requests
import socketio

from channels import door
from core.knowledge_loader import get_knowledge
from devtools.servers import Servers, Visitor
from tests.expectations import TOPIC_PHRASES, contains_all

pytestmark = pytest.mark.e2e

INPUTS = int(os.environ.get("FUZZ_INPUTS", "2000"))
SEED = int(os.environ.get("FUZZ_SEED", str(random.SystemRandom().randrange(1 << 30))))
SOCKET_SHARE = 0.3
SOCKET_CLIENTS = 8
REST_WORKERS = 6
MAX_EVENT_BYTES = 64 * 1024  # a 2,000-character message of astral characters, JSON-escaped, twice
ODD_IDS = ["", "default", "+13105550177", "../export.json", "a" * 31, "g" * 32, "a" * 32 + "\x00",
           "\ud800" * 40, "0" * 129, "<script>", "socketio-" + "a" * 32, " " * 40, "9" * 20]


class Fuzz:
    """Generates hostile inputs; every text carries a canary word that must never reach a log."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.canaries: List[str] = []
        self.senders = [uuid_hex(self.random) for _ in range(40)]

    def canary(self) -> str:
        word = "zq" + "".join(self.random.choice("bcdfghjklmnpqrstvwxz") for _ in range(10))
        self.canaries.append(word)
        return word

    def char(self) -> str:
        pick = self.random.random()
        if pick < 0.35:
            return chr(self.random.randrange(0x20, 0x7F))
        if pick < 0.5:
            return chr(self.random.choice([*range(0x00, 0x20), *range(0x7F, 0xA0)]))
        if pick < 0.6:
            return chr(self.random.randrange(0xD800, 0xE000))  # lone surrogates
        if pick < 0.7:
            return self.random.choice(["\u202e", "\u200b", "\ufeff", "\u0301", "\uffff", "\u2028", "\n", "\t", "\r"])
        if pick < 0.85:
            return chr(self.random.randrange(0xA0, 0xD800))
        return chr(self.random.randrange(0x10000, 0x110000))

    def text(self, kind: str = "") -> str:
        """Random text: ``short`` (under 200 characters), ``long`` (up to 1,990), ``too_long`` (2,001 to
        2,600: "please shorten") or ``huge`` (100,000: over the body limit); by default a mix."""
        kind = kind or self.random.choices(["short", "long", "too_long", "huge"], [60, 15, 20, 5])[0]
        length = {"short": (0, 200), "long": (200, 1990), "too_long": (2001, 2600), "huge": (3000, 3001)}[kind]
        target = self.random.randrange(*length)
        body = "".join(self.char() for _ in range(target))
        if kind == "too_long":  # over the limit once cleaned, too
            missing = door.MAX_MESSAGE_CHARS + 1 - len(door.clean_text(body))
            body += "".join(chr(self.random.randrange(0x21, 0x7F)) for _ in range(max(missing, 0)))
        if kind == "huge":
            body = (body * 34)[:100_000]
        at = self.random.randrange(0, len(body) + 1)
        return body[:at] + f" {self.canary()} " + body[at:]

    def odd_value(self) -> Any:
        return self.random.choice([None, 0, -1, 1e308, True, [], {}, ["hi"], {"text": "hi"}, [[[[[]]]]],
                                   {"message": self.text("short")}])

    def rest_body(self) -> Tuple[bytes, bool]:
        """A request body, and whether it is a well-formed message (sender and text as they must be)."""
        roll = self.random.random()
        sender, message = uuid_hex(self.random), self.text("short")
        if roll < 0.12:
            value = self.random.choice([[], "x", None, 12, True, [{"sender": sender}], self.text("short")])
            return json.dumps(value).encode(), False
        if roll < 0.22:
            raw = self.random.choice([b"{", b"", b"\xff\xfe\xfd", b"[" * 3000, b'{"sender": "' + b"\x00" * 50,
                                      b'{"sender": 1' + b"0" * 5000 + b"}",
                                      self.text("short").encode("utf-8", "surrogatepass")])
            return raw, False
        if roll < 0.32:
            body: Dict[str, Any] = self.random.choice([{"sender": sender, "message": self.text("huge")},
                                                       {"sender": sender, "message": "hi", "metadata": "x" * 50_000},
                                                       {"sender": "a" * 100_000, "message": "hi"}])
        elif roll < 0.57:
            body = {"sender": self.random.choice(ODD_IDS + [self.odd_value()]), "message": message}
        elif roll < 0.70:
            body = {"sender": sender, "message": self.odd_value()}
        elif roll < 0.85:
            body = {"sender": sender, "message": self.text("too_long")}
        else:  # 15% reach the assistant, from a few dozen visitors
            body = {"sender": self.random.choice(self.senders),
                    "message": self.text(self.random.choice(["short"] * 9 + ["long"]))}
        if self.random.random() < 0.15:
            body["metadata"] = self.random.choice([{"client": "forged"}, "x" * 2_000, [1, 2], {"a": self.text("short")}])
        if self.random.random() < 0.05:
            body["input_channel"] = self.random.choice(["socketio", "twilio", self.text("short")])
        well_formed = (isinstance(body["sender"], str) and bool(door.REST_SENDER.fullmatch(body["sender"]))
                       and isinstance(body["message"], str))
        return json.dumps(body).encode(), well_formed

    def socket_message(self, session: str) -> Tuple[Any, bool]:
        """A user_uttered payload, and whether the server refuses it whole (over the packet limit)."""
        roll = self.random.random()
        if roll < 0.01:
            return {"message": self.text("huge"), "session_id": session}, True
        if roll < 0.41:
            data = self.random.choice([self.odd_value(), {"message": self.text("short"), "session_id": self.odd_value()},
                                       {"message": self.odd_value(), "session_id": session},
                                       {"message": self.text("short"), "session_id": self.random.choice(ODD_IDS)},
                                       {"message": self.text("short")}])
        elif roll < 0.80:
            data = {"message": self.text("too_long"), "session_id": session}
        else:  # 20% reach the assistant
            data = {"message": self.text(self.random.choice(["short"] * 9 + ["long"])), "session_id": session,
                    "metadata": self.random.choice([None, {"client": "forged"}, "x" * 1000])}
        # python-socketio sends JSON with \u escapes: 2,600 astral characters are 31 KB, over the limit
        return data, len(json.dumps(data, separators=(",", ":"))) > door.MAX_BODY_BYTES - 1000


def uuid_hex(rng: random.Random) -> str:
    return "%032x" % rng.getrandbits(128)


@pytest.fixture(scope="module")
def servers(shared_servers) -> Servers:
    return shared_servers  # shared with other modules (conftest.py)


def fuzz_rest(servers: Servers, fuzz: Fuzz, count: int) -> List[str]:
    bodies = [fuzz.rest_body() for _ in range(count)]
    local = threading.local()
    problems: List[str] = []

    def send(item: Tuple[bytes, bool]) -> None:
        body, well_formed = item
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        try:
            response = session.post(f"{servers.url}/webhooks/rest/webhook", data=body, timeout=120,
                                    headers={"Content-Type": "application/json"})
        except requests.ConnectionError:  # the server may hang up on a body over the limit while it is sent
            local.session = None
            if len(body) <= door.MAX_BODY_BYTES:
                problems.append(f"the connection dropped on a {len(body)}-byte body")
            return
        if response.status_code >= 500:
            problems.append(f"{response.status_code} for a {len(body)}-byte body")
        elif response.status_code == 200:
            messages = response.json()
            if not (isinstance(messages, list) and messages and all(m.get("text") or m.get("buttons")
                                                                    for m in messages)):
                problems.append(f"an empty or odd answer: {str(messages)[:200]}")
        elif well_formed and len(body) <= door.MAX_BODY_BYTES:
            problems.append(f"{response.status_code} for a well-formed message")
        elif not isinstance(response.json(), dict):  # 400 and 413 explain themselves in JSON
            problems.append(f"{response.status_code} without a JSON error")

    with ThreadPoolExecutor(REST_WORKERS) as pool:
        list(pool.map(send, bodies))
    return problems


async def fuzz_socketio(url: str, fuzz: Fuzz, count: int) -> List[str]:
    problems: List[str] = []
    drops: List[int] = []
    per_client = count // SOCKET_CLIENTS

    async def client_run() -> None:
        sent = 0
        while sent < per_client:
            client = socketio.AsyncClient(reconnection=False)
            received: "asyncio.Queue[Any]" = asyncio.Queue()
            confirmed: "asyncio.Queue[Any]" = asyncio.Queue()
            client.on("bot_uttered", received.put)
            client.on("session_confirm", confirmed.put)
            await client.connect(url, transports=["polling"], wait_timeout=10)
            odd = fuzz.random.choice([None, {"session_id": None}, {"session_id": fuzz.random.choice(ODD_IDS)},
                                      "x", [1], {"session_id": ["a"]}, {"session_id": {"a": 1}}, 7])
            await client.emit("session_request", odd)
            session = await asyncio.wait_for(confirmed.get(), 30)
            sent += 1
            if not re.fullmatch(r"[0-9a-f]{32}\.[0-9a-f]{32}", str(session)):
                problems.append(f"an odd session id issued: {str(session)[:80]}")
            emitted = answered = 0
            while sent < per_client and client.connected:
                data, oversize = fuzz.socket_message(session)
                sent += 1
                await client.emit("user_uttered", data)
                if oversize:
                    await asyncio.sleep(2)  # the client sees its request refused and hangs up
                    break
                emitted += 1
                try:  # every message gets at least one answer (replies of a turn may come later)
                    await asyncio.wait_for(received.get(), 60)
                    answered += 1
                except asyncio.TimeoutError:
                    if not client.connected:  # the transport dropped (a missed ping on a loaded machine)
                        drops.append(1)
                        emitted -= 1
                        break
                    shape = {key: (type(value).__name__, len(value) if isinstance(value, str) else None)
                             for key, value in data.items()} if isinstance(data, dict) else type(data).__name__
                    problems.append(f"a socket.io message got no answer within 60 s: {shape}, "
                                    f"{'its own session' if isinstance(data, dict) and data.get('session_id') == session else 'another session'}")
            await asyncio.sleep(0.5)
            answered += received.qsize()
            if answered < emitted:
                problems.append(f"socket.io: {emitted} messages, {answered} answers")
            await client.eio.disconnect(abort=True)

    await asyncio.gather(*(client_run() for _ in range(SOCKET_CLIENTS)))
    if len(drops) > max(2, count // 100):
        problems.append(f"socket.io: {len(drops)} connections dropped by the server")
    return problems


def test_hostile_inputs_over_rest_and_socketio(servers):
    fuzz = Fuzz(SEED)
    socket_count = int(INPUTS * SOCKET_SHARE)
    started = time.monotonic()
    problems = fuzz_rest(servers, fuzz, INPUTS - socket_count)
    rest_done = time.monotonic()
    problems += asyncio.run(fuzz_socketio(servers.url, fuzz, socket_count))
    print(f"fuzz: {INPUTS - socket_count} REST inputs in {rest_done - started:.1f} s, "
          f"{socket_count} socket.io inputs in {time.monotonic() - rest_done:.1f} s")
    assert not problems, f"FUZZ_SEED={SEED}: {problems[:10]}"

    # nothing stored over the limits, nothing stored under an odd id
    with sqlite3.connect(servers.db) as connection:
        rows = connection.execute("select sender_id, type_name, data from events").fetchall()
    assert rows, "nothing was stored at all"
    biggest = max(len(data.encode("utf-8", "surrogatepass")) for _, _, data in rows)
    assert biggest <= MAX_EVENT_BYTES, f"FUZZ_SEED={SEED}: a stored event of {biggest} bytes"
    texts = [json.loads(data).get("text") or "" for _, kind, data in rows if kind == "user"]
    assert max(map(len, texts)) <= door.MAX_MESSAGE_CHARS
    assert not [t for t in texts if re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]", t)]
    senders = {sender for sender, _, _ in rows}
    odd = [s for s in senders if not re.fullmatch(r"[0-9a-fA-F]{32,128}|socketio-[0-9a-f]{32}", s)]
    assert not odd, f"FUZZ_SEED={SEED}: conversations under odd ids: {odd[:5]}"
    assert any(s.startswith("socketio-") for s in senders)

    # no visitor text in either server's log, and no 500 logged
    for name in ("rasa", "actions"):
        log = servers.log(name)
        leaked = [canary for canary in fuzz.canaries if canary in log]
        assert not leaked, f"FUZZ_SEED={SEED}: {len(leaked)} visitor texts in the {name} log, e.g. {leaked[0]}"
    assert "Exception occurred while handling" not in servers.log("rasa")

    # a healthy server afterwards, on both channels
    assert all(process.poll() is None for process in servers.processes.values())
    assert contains_all(Visitor(servers).says("what is fibromyalgia"), TOPIC_PHRASES["what_is_fibromyalgia"])

    async def widget() -> str:
        client = socketio.AsyncClient(reconnection=False)
        received: "asyncio.Queue[Any]" = asyncio.Queue()
        confirmed: "asyncio.Queue[Any]" = asyncio.Queue()
        client.on("bot_uttered", received.put)
        client.on("session_confirm", confirmed.put)
        await client.connect(servers.url, transports=["polling"], wait_timeout=10)
        await client.emit("session_request", {"session_id": None})
        session = await asyncio.wait_for(confirmed.get(), 30)
        await client.emit("user_uttered", {"message": "what causes fibromyalgia", "session_id": session})
        text = ""
        while not contains_all(text, TOPIC_PHRASES["causes"]):
            text += "\n" + ((await asyncio.wait_for(received.get(), 60)).get("text") or "")
        await client.eio.disconnect(abort=True)
        return text

    assert contains_all(asyncio.run(widget()), TOPIC_PHRASES["causes"])
    assert knowledge_text_not_in(servers.log("rasa"))


def knowledge_text_not_in(log: str) -> bool:
    """The assistant's own answers are not logged either (they can quote the visitor's details)."""
    return get_knowledge().topics["causes"].answer[:60] not in log
