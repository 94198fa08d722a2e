"""A fair share for each client, through the real servers: per-address and per-conversation limits at
the door (channels/fair_share.py), addresses from trusted proxies only, and the hostile load of the
issue: ten attacking connections from one address sending 2,000-character punctuation runs as fast as
they are answered, while another visitor books a consultation over REST and socket.io.

``FAIR_SHARE_ATTACK_SECONDS`` (default 20) and ``FAIR_SHARE_ATTACKERS`` (default 10) set the attack;
``make attack`` runs a longer one and prints the figures.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

import aiohttp
import pytest
import requests
import socketio

from core.knowledge_loader import get_knowledge
from devtools.servers import Servers
from scripts import credentials

pytestmark = pytest.mark.e2e

KNOWLEDGE = get_knowledge()
SLOW_DOWN = KNOWLEDGE.door["slow_down"]
TECHNICAL = KNOWLEDGE.technical_problem
ATTACKER, REST_VISITOR, SOCKET_VISITOR = "203.0.113.9", "198.51.100.7", "198.51.100.8"
SECONDS = float(os.environ.get("FAIR_SHARE_ATTACK_SECONDS", "20"))
ATTACKERS = int(os.environ.get("FAIR_SHARE_ATTACKERS", "10"))
BOOKING = ["I'd like to book a consultation", "Maria Lopez", "(310) 555-0134", "weekday mornings", "skip",
           "back pain from fibromyalgia", "what is fibromyalgia?", "does massage help?", "thanks"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The servers behind a (pretend) proxy on 127.0.0.1, with the default limits."""
    folder = tmp_path_factory.mktemp("fair-share")
    path = folder / "credentials.yml"  # the callback channel too (its URL a port nobody listens on)
    credentials.write(credentials.render({"CALLBACK_URL": "http://127.0.0.1:9/bot"}), path)
    running = Servers(folder, credentials=path, env={"TRUSTED_PROXIES": "127.0.0.1", "CLINIC_RATE_PER_ADDRESS": "",
                                   "CLINIC_RATE_PER_CONVERSATION": "", "CLINIC_MAX_REQUESTS_PER_CLIENT": "0"}).start()
    yield running
    running.stop()


def post(servers: Servers, sender: str, text: str, address: Optional[str] = None) -> requests.Response:
    headers = {"X-Forwarded-For": address} if address else {}
    return requests.post(f"{servers.url}/webhooks/rest/webhook", json={"sender": sender, "message": text},
                         headers=headers, timeout=60)


def user_texts(servers: Servers, sender: str) -> List[str]:
    import sqlite3

    with sqlite3.connect(servers.db) as connection:
        return [row[0] for row in connection.execute(
            "select json_extract(data, '$.text') from events where sender_id = ? and type_name = 'user'",
            (sender,))]


def test_a_conversation_over_its_share_gets_429_and_the_polite_reply_and_is_not_handled(servers):
    sender, address = uuid.uuid4().hex, "192.0.2.11"
    answers = [post(servers, sender, f"hello {index}", address) for index in range(16)]
    statuses = [answer.status_code for answer in answers]
    assert statuses[:10] == [200] * 10 and 429 in statuses[10:], statuses  # the burst of 10, then 20 a minute
    refused = answers[statuses.index(429)]
    assert refused.json() == [{"recipient_id": sender, "text": SLOW_DOWN}]
    assert 1 <= int(refused.headers["Retry-After"]) <= 3
    assert "911" in SLOW_DOWN and "988" in SLOW_DOWN
    stored = user_texts(servers, sender)  # refused: not stored
    assert stored == [f"hello {index}" for index, status in enumerate(statuses) if status == 200]
    # another conversation of the same address is not held up by that one
    assert post(servers, uuid.uuid4().hex, "hello", address).status_code == 200


def test_an_address_over_its_share_is_refused_in_every_conversation_others_are_not(servers):
    address = "192.0.2.12"
    started = time.monotonic()
    statuses = [post(servers, uuid.uuid4().hex, "hi", address).status_code for _ in range(45)]
    assert 30 <= statuses.count(200) <= 30 + (time.monotonic() - started) + 1 and 429 in statuses, statuses
    assert post(servers, uuid.uuid4().hex, "hi", "192.0.2.13").status_code == 200


def test_the_callback_channel_has_the_same_limits(servers):
    sender = uuid.uuid4().hex
    statuses = [requests.post(f"{servers.url}/webhooks/callback/webhook", json={"sender": sender, "message": "hi"},
                              headers={"X-Forwarded-For": "192.0.2.14"}, timeout=60).status_code
                for _ in range(11)]
    assert statuses[0] == 200 and statuses[-1] == 429, statuses


# --- the hostile load ---------------------------------------------------------------------------------

def punctuation(index: int) -> str:
    """2,000 characters of punctuation without spaces, one character changed per message."""
    text = ("'(?$').+%" * 223)[:2000]
    position = index % 2000
    return text[:position] + "!" + text[position + 1:]


async def attack(url: str, stop: float, counts: Dict[int, int]) -> None:
    async with aiohttp.ClientSession(headers={"X-Forwarded-For": ATTACKER}) as session:
        async def one(number: int) -> None:
            sender, index = uuid.uuid4().hex, 0
            while time.monotonic() < stop:
                index += 1
                try:
                    async with session.post(f"{url}/webhooks/rest/webhook",
                                            json={"sender": sender, "message": punctuation(index)}) as answer:
                        await answer.read()
                        counts[answer.status] = counts.get(answer.status, 0) + 1
                except aiohttp.ClientError:
                    counts[0] = counts.get(0, 0) + 1

        await asyncio.gather(*(one(number) for number in range(ATTACKERS)))


async def rest_visitor(url: str, stop: float, times: List[float], replies: List[str]) -> None:
    async with aiohttp.ClientSession(headers={"X-Forwarded-For": REST_VISITOR}) as session:
        while time.monotonic() < stop:
            sender = uuid.uuid4().hex
            for text in BOOKING:
                if time.monotonic() >= stop:
                    return
                started = time.monotonic()
                async with session.post(f"{url}/webhooks/rest/webhook",
                                        json={"sender": sender, "message": text}) as answer:
                    body = await answer.json()
                times.append(time.monotonic() - started)
                replies.append(f"{answer.status} " + " ".join(message.get("text") or "" for message in body))
                await asyncio.sleep(1.0)  # a person reads and types


async def socket_visitor(url: str, stop: float, times: List[float], replies: List[str]) -> None:
    client = socketio.AsyncClient(reconnection=False)
    answers: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
    confirmed: "asyncio.Queue[str]" = asyncio.Queue()
    client.on("bot_uttered", answers.put)
    client.on("session_confirm", confirmed.put)
    await client.connect(url, headers={"X-Forwarded-For": SOCKET_VISITOR}, transports=["polling"], wait_timeout=30)
    try:
        await client.emit("session_request", {"session_id": None})
        session = await asyncio.wait_for(confirmed.get(), 30)
        for text in BOOKING * 3:
            if time.monotonic() >= stop:
                return
            started = time.monotonic()
            await client.emit("user_uttered", {"message": text, "session_id": session})
            reply = await asyncio.wait_for(answers.get(), 30)
            times.append(time.monotonic() - started)
            await asyncio.sleep(0.3)  # the rest of the turn's messages arrive
            while not answers.empty():
                answers.get_nowait()
            replies.append(reply.get("text") or "")
            await asyncio.sleep(3.2)  # within a conversation's share of 20 messages a minute
    finally:
        await client.disconnect()


def p95(values: List[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def hostile_load(servers: Servers, seconds: float) -> Tuple[Dict[int, int], List[float], List[float], List[str]]:
    async def scenario():
        stop = time.monotonic() + seconds
        counts: Dict[int, int] = {}
        rest_times: List[float] = []
        socket_times: List[float] = []
        replies: List[str] = []
        await asyncio.gather(attack(servers.url, stop, counts), rest_visitor(servers.url, stop, rest_times, replies),
                             socket_visitor(servers.url, stop, socket_times, replies))
        return counts, rest_times, socket_times, replies

    return asyncio.run(scenario())


def test_ten_attacking_connections_do_not_move_another_visitors_latency(servers):
    rasa = servers.processes["rasa"]
    counts, rest_times, socket_times, replies = hostile_load(servers, SECONDS)
    figures = (f"attack answers by status {counts}; REST visitor: {len(rest_times)} turns, median "
               f"{statistics.median(rest_times):.3f} s, p95 {p95(rest_times):.3f} s, max {max(rest_times):.3f} s; "
               f"socket.io visitor: {len(socket_times)} turns, median {statistics.median(socket_times):.3f} s, "
               f"p95 {p95(socket_times):.3f} s, max {max(socket_times):.3f} s")
    print(figures)
    assert counts.get(429, 0) > counts.get(200, 0), figures  # the attack was held to its share
    assert not any(TECHNICAL in reply or SLOW_DOWN in reply for reply in replies), figures
    assert all(reply.startswith("200 ") for reply in replies if reply[:3].isdigit()), figures
    assert rasa.poll() is None and servers.processes["rasa"] is rasa  # no restart, no crash
    assert p95(rest_times) <= 0.5 and max(rest_times) <= 2.0, figures
    assert p95(socket_times) <= 0.5 and max(socket_times) <= 2.0, figures


def test_rasas_root_names_no_version(servers):
    answer = requests.get(f"{servers.url}/", timeout=30)
    assert answer.status_code == 200 and answer.text == "ok"
    assert "server" not in {name.lower() for name in answer.headers}
