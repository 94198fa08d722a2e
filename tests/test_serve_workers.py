"""``make run WORKERS=2`` (scripts/serve.py with ``RASA_WORKERS``): a Rasa server of two Sanic worker
processes sharing the SQLite conversations and the real Redis as their lock store, started as a
stranger starts it, and talked to over REST and over socket.io (WebSockets, as the demo page's widget
then connects)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator, List

import pytest
import requests
import websockets

from devtools.servers import ROOT, free_port
from tests.test_supervisor import Run, children, run_env, running

pytestmark = pytest.mark.e2e  # starts real servers

BOOKING = ["I'd like to book a consultation", "Jane Doe", "555-201-3344", "mornings", "jane@example.com", "skip",
           "yes"]


@pytest.fixture(scope="module")
def workers_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    with running(tmp_path_factory.mktemp("make-run-workers"), {"RASA_WORKERS": "2"}) as started:
        yield started


def _say(run: Run, sender: str, text: str) -> str:
    response = requests.post(f"http://127.0.0.1:{run.env['RASA_PORT']}/webhooks/rest/webhook",
                             json={"sender": sender, "message": text}, timeout=60)
    response.raise_for_status()
    return "\n".join(message.get("text") or "" for message in response.json())


def test_the_rasa_server_runs_two_workers_with_the_redis_lock_store(workers_run: Run) -> None:
    rasa = workers_run.pids()["rasa"]
    assert len(children(rasa)) >= 2, children(rasa)
    endpoints = Path(workers_run.env["CLINIC_VAR_DIR"]) / "endpoints.workers.yml"
    assert "rasa_ext.lock_store.AtomicRedisLockStore" in endpoints.read_text()
    assert endpoints.stat().st_mode & 0o077 == 0


def test_conversations_hold_together_across_the_workers(workers_run: Run) -> None:
    """Each message is a new connection, so the two workers take turns; a booking started on one ends
    on the other, and no reply is lost or empty."""
    for _ in range(3):
        sender = uuid.uuid4().hex
        replies = [_say(workers_run, sender, text) for text in BOOKING]
        assert all(replies), replies
        assert "jane@example.com" in replies[-2]  # the summary
        assert "Thank you, Jane Doe! Your consultation request has been sent" in replies[-1], replies
        assert "fibromyalgia" in _say(workers_run, sender, "what is fibromyalgia?").lower()


def test_widget_sessions_over_websockets_are_answered(workers_run: Run) -> None:
    origin = f"http://127.0.0.1:{workers_run.env['WEB_PORT']}"
    page = requests.get(origin + "/", timeout=10).text
    assert 'data-chat-transports="websocket"' in page

    async def visit() -> List[str]:
        """One widget session over a raw WebSocket, speaking Engine.IO 4 / Socket.IO 5 as the widget's
        client does (python-socketio's own client needs a newer aiohttp than Rasa pins)."""
        url = f"ws://127.0.0.1:{workers_run.env['RASA_PORT']}/socket.io/?EIO=4&transport=websocket"
        async with websockets.connect(url, origin=origin, open_timeout=30) as ws:

            async def receive(kind: str, event: str = "") -> Any:
                """The next packet of ``kind`` ("0", "40", "42": an event, then named ``event``)."""
                while True:
                    packet = await asyncio.wait_for(ws.recv(), 60)
                    if packet == "2":  # the server's ping
                        await ws.send("3")
                    elif kind == "42" and packet.startswith("42"):
                        name, *data = json.loads(packet[2:])
                        if name == event:
                            return data[0] if data else None
                    elif kind != "42" and packet.startswith(kind):
                        return packet

            await receive("0")  # the Engine.IO handshake
            await ws.send("40")
            await receive("40")
            await ws.send('42["session_request",{"session_id":null}]')
            confirmed = await receive("42", "session_confirm")
            session = confirmed["session_id"] if isinstance(confirmed, dict) else confirmed
            await ws.send("42" + json.dumps(["user_uttered", {"message": "what is biofeedback", "session_id": session}]))
            answers = []  # the session's greeting first, then the answer
            while not any("biofeedback" in answer.lower() for answer in answers) and len(answers) < 5:
                answers.append((await receive("42", "bot_uttered")).get("text") or "")
            return answers

    async def visits() -> List[List[str]]:
        return await asyncio.gather(*(visit() for _ in range(6)))  # several connections at once: both workers

    for answers in asyncio.run(visits()):
        assert "biofeedback" in answers[-1].lower(), answers


def _serve(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/serve.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("value", ["two", "0", "99", "-1"])
def test_a_bad_number_of_workers_stops_make_run_with_a_message(tmp_path: Path, value: str) -> None:
    result = _serve({**run_env(tmp_path), "RASA_WORKERS": value})
    assert result.returncode != 0 and "RASA_WORKERS must be a whole number from 1 to 8" in result.stderr


def test_workers_without_redis_stop_make_run_with_a_message(tmp_path: Path) -> None:
    result = _serve({**run_env(tmp_path), "RASA_WORKERS": "2", "REDIS_PORT": str(free_port())})
    assert result.returncode != 0 and "needs Redis for the lock store" in result.stderr
    assert "Traceback" not in result.stderr
