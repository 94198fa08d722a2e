"""Never silent inside the Rasa server (rasa_ext/never_silent.py): the action server is killed (SIGKILL),
hung (SIGSTOP), replaced by a server that answers errors, and every visitor message still gets a reply;
emergencies, crises and the disclaimer never depend on it; conversations recover when it is back.
And when the action server is healthy, the patched server stores exactly what Rasa's own does."""

from __future__ import annotations

import asyncio
import inspect
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests

from devtools.servers import ROOT, Servers, Visitor, free_port

pytestmark = pytest.mark.e2e

EMERGENCY = "chest pain and can't breathe"
CRISIS = "I'm thinking about ending my life"
REPLY_DEADLINE = 10.0  # seconds: the widget shows the technical message itself after ~10 s
DEFAULT_ACTION_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def servers(shared_servers) -> Iterator[Servers]:
    yield shared_servers  # shared with other modules (conftest.py): every test here revives what it broke
    _revive(shared_servers)


def _revive(servers: Servers) -> None:
    """The action server back as it was, whatever a test did to it."""
    process = servers.processes.get("actions")
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGCONT)
    else:
        servers.start_actions()


@pytest.fixture()
def healthy(servers: Servers) -> Iterator[Servers]:
    yield servers
    _revive(servers)


def texts(messages: List[Dict[str, Any]]) -> List[str]:
    return [message.get("text") or "" for message in messages]


def wait_until_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def timed_say(visitor: Visitor, text: str) -> tuple[List[str], float]:
    started = time.monotonic()
    messages = visitor.say(text)
    return texts(messages), time.monotonic() - started


def test_killed_action_server(healthy: Servers, knowledge) -> None:
    """kill -9 mid-conversation: answers, safety, a new visitor and a form in progress all recover."""
    technical = knowledge.technical_problem
    visitor, booker = Visitor(healthy), Visitor(healthy)
    assert knowledge.disclaimer in texts(visitor.say("hello"))
    assert "name" in booker.says("I'd like to book a consultation")

    healthy.signal_actions(signal.SIGKILL)

    assert texts(visitor.say("what is fibromyalgia")) == [technical]
    assert texts(visitor.say(EMERGENCY)) == [knowledge.emergency_text]
    assert "911" in knowledge.emergency_text
    assert texts(visitor.say(CRISIS)) == [knowledge.crisis_text]
    assert "988" in knowledge.crisis_text
    newcomer = Visitor(healthy)
    assert texts(newcomer.say("what is fibromyalgia")) == [knowledge.disclaimer, technical]
    assert texts(booker.say("Jane Doe")) == [technical]

    healthy.start_actions()

    answer = newcomer.says("what are the symptoms of fibromyalgia")
    assert "symptoms" in answer and technical not in answer and knowledge.disclaimer not in answer
    assert "phone" in booker.says("Jane Doe")  # the form took the name and asks the next question
    assert "symptoms" in visitor.says("what are the symptoms of fibromyalgia")


def test_hung_action_server(healthy: Servers, knowledge) -> None:
    """SIGSTOP: each turn is answered before the widget's deadline, safety replies do not wait for the
    call timeout, and the form resumes after SIGCONT."""
    technical = knowledge.technical_problem
    visitor, booker = Visitor(healthy), Visitor(healthy)
    visitor.say("hello")
    assert "name" in booker.says("I'd like to book a consultation")

    healthy.signal_actions(signal.SIGSTOP)

    replies, seconds = timed_say(visitor, "what is fibromyalgia")
    assert replies == [technical] and seconds < REPLY_DEADLINE
    replies, seconds = timed_say(visitor, EMERGENCY)
    assert replies == [knowledge.emergency_text] and seconds < DEFAULT_ACTION_TIMEOUT
    replies, seconds = timed_say(visitor, CRISIS)
    assert replies == [knowledge.crisis_text] and seconds < DEFAULT_ACTION_TIMEOUT
    newcomer = Visitor(healthy)
    replies, seconds = timed_say(newcomer, "hello")
    assert replies == [knowledge.disclaimer, technical] and seconds < REPLY_DEADLINE
    replies, seconds = timed_say(booker, "Jane Doe")
    assert replies == [technical] and seconds < REPLY_DEADLINE

    healthy.signal_actions(signal.SIGCONT)

    assert "phone" in booker.says("Jane Doe")
    assert "symptoms" in newcomer.says("what are the symptoms of fibromyalgia")


def test_action_server_answering_errors(healthy: Servers, knowledge) -> None:
    """Another server on the action server's port answers every call with an error (501)."""
    healthy.signal_actions(signal.SIGKILL)
    stub = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(healthy.action_port)],
                            cwd=healthy.folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{healthy.action_port}/")
        visitor = Visitor(healthy)
        assert texts(visitor.say("what is fibromyalgia")) == [knowledge.disclaimer, knowledge.technical_problem]
        assert texts(visitor.say(EMERGENCY)) == [knowledge.emergency_text]
    finally:
        stub.kill()
        stub.wait()
    healthy.start_actions()
    assert "symptoms" in visitor.says("what are the symptoms of fibromyalgia")


# --- When the action server is healthy, the patches change nothing --------------------------------------

CONVERSATION = [
    "hello",
    "what is fibromyalgia",
    "does water therapy help?",
    "/ask_symptoms",
    "I'd like to book a consultation",
    "Jane Doe",
    "what causes it?",
    "310 555 0134",
    EMERGENCY,
    CRISIS,
    "thanks",
]


class PlainRasa(Servers):
    """Rasa's own server (``python -m rasa``, no patches) on another server's action server."""

    def __init__(self, folder: Path, actions_of: Servers) -> None:
        super().__init__(folder)
        self.action_port = actions_of.action_port
        self.env = actions_of.env  # the same action server, and the same secret for it if any
        self.endpoints.write_text(actions_of.endpoints.read_text().replace(str(actions_of.db), str(self.db)))

    def start(self) -> "PlainRasa":
        self._start("rasa", self.rasa_command(patched=False))
        self._wait(self.url + "/", "rasa")
        return self


def stored_events(db: Path, sender: str) -> List[Dict[str, Any]]:
    """A conversation's stored events without what differs from run to run (times, message ids)."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("select type_name, action_name, intent_name, data from events "
                                  "where sender_id = ? order by id", (sender,)).fetchall()
    events = []
    for type_name, action_name, intent_name, data in rows:
        data = json.loads(data)
        for part in (data, data.get("parse_data") or {}):
            part.pop("timestamp", None)
            part.pop("message_id", None)
        events.append({"type": type_name, "action": action_name, "intent": intent_name, "data": data})
    return events


def test_patched_server_stores_and_says_what_rasa_does(servers: Servers, tmp_path: Path) -> None:
    plain = PlainRasa(tmp_path, servers).start()
    try:
        patched_visitor, plain_visitor = Visitor(servers), Visitor(plain)
        plain_visitor.sender = patched_visitor.sender
        for text in CONVERSATION:
            assert patched_visitor.say(text) == plain_visitor.say(text), text
    finally:
        plain.stop()
    patched_events = stored_events(servers.db, patched_visitor.sender)
    assert len(patched_events) > 3 * len(CONVERSATION)
    assert patched_events == stored_events(plain.db, plain_visitor.sender)


def test_action_timeout_setting(monkeypatch) -> None:
    from rasa_ext import never_silent

    monkeypatch.delenv("ACTION_TIMEOUT", raising=False)
    assert never_silent.action_timeout() == DEFAULT_ACTION_TIMEOUT
    monkeypatch.setenv("ACTION_TIMEOUT", "2.5")
    assert never_silent.action_timeout() == 2.5
    for bad in ("0", "-1", "soon", "1000"):
        monkeypatch.setenv("ACTION_TIMEOUT", bad)
        with pytest.raises(ValueError, match="ACTION_TIMEOUT"):
            never_silent.action_timeout()


def test_rasa_server_refuses_a_bad_timeout(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "rasa_ext", "--version"], cwd=ROOT, capture_output=True,
                            text=True, env={**Servers(tmp_path).env, "ACTION_TIMEOUT": "soon"}, timeout=300)
    assert result.returncode != 0 and "ACTION_TIMEOUT" in result.stderr


# --- The wrapper itself, on real sockets, in this process --------------------------------------------


def _turn(domain_file: Path, *events: Any) -> Any:
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

    domain = Domain.load(str(domain_file))
    return domain, DialogueStateTracker.from_events("visitor", list(events), domain.slots)


def _run(action: Any, domain: Any, tracker: Any) -> List[Any]:
    from rasa.core.channels.channel import CollectingOutputChannel
    from rasa.core.nlg import TemplatedNaturalLanguageGenerator

    from rasa_ext.never_silent import NeverSilentAction

    wrapped = NeverSilentAction(action)
    run = wrapped.run(CollectingOutputChannel(), TemplatedNaturalLanguageGenerator(domain.responses), tracker, domain)
    return asyncio.run(asyncio.wait_for(run, 30))


def test_a_failed_session_start_still_starts_the_session(knowledge) -> None:
    """Rasa's own session-start events follow the technical reply, so the conversation is not stuck."""
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted
    from rasa.utils.endpoints import EndpointConfig

    class RemoteSessionStart(RemoteAction):
        """The action server's session start as Rasa as released calls it (in this pytest process the
        patches may already run ``action_session_start`` locally: tests/test_patches.py applies them)."""

        run = inspect.unwrap(RemoteAction.run)

    domain, tracker = _turn(ROOT / "domain.yml")
    nowhere = EndpointConfig(f"http://127.0.0.1:{free_port()}/webhook")  # nothing listens there
    events = _run(RemoteSessionStart("action_session_start", nowhere), domain, tracker)
    assert [type(event) for event in events] == [BotUttered, SessionStarted, ActionExecuted]
    assert events[0].text == knowledge.technical_problem and events[2].action_name == "action_listen"


def test_after_a_failure_the_turn_does_not_wait_for_the_action_server_again(knowledge) -> None:
    """A second custom action in a turn that already failed is skipped: a server that accepts the
    connection and never answers would otherwise hold the turn again."""
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
    from rasa.utils.endpoints import EndpointConfig

    domain, tracker = _turn(ROOT / "domain.yml", ActionExecuted("action_listen"), UserUttered("hi", {"name": "greet"}),
                            ActionExecuted("action_answer"), BotUttered(knowledge.technical_problem))
    with socket.socket() as silent_server:
        silent_server.bind(("127.0.0.1", 0))
        silent_server.listen()
        endpoint = EndpointConfig(f"http://127.0.0.1:{silent_server.getsockname()[1]}/webhook")
        assert _run(RemoteAction("action_answer", endpoint), domain, tracker) == []
