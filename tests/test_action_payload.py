"""The action server answers the windowed payload (rasa_ext.speed.window_action_payload) exactly as it
answers Rasa's whole-session payload, and no action reads an event before the window (core/payload.py).

Conversations are held with an in-process Rasa agent (the project's model, patches and SQLite tracker
store) and the real action server over HTTP. Every action call is sent twice: first with the payload Rasa
3.6.21 builds (every event of the session), then with the patched one; the two responses must be equal.
Consultation requests are stored once per submission: a request key built from a wrong form start would
store a second row.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import re
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from core.payload import payload_window_start
from devtools.servers import MODEL, Servers
from rasa_ext import patches

patches.apply()

from rasa.core.actions.action import RemoteAction  # noqa: E402  (after the patches, as in the server)
from rasa.shared.core.events import (  # noqa: E402
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.utils.endpoints import EndpointConfig  # noqa: E402

BOOKING = ["Jane Doe", "555-201-3344", "jane@example.com", "mornings", "yes"]
QUESTIONS = ["what is fibromyalgia", "does acupuncture help", "and does it hurt?", "where is the clinic",
             "what are the symptoms", "how much does it cost", "is it safe?", "tell me about massage",
             "does that work for everyone", "what causes it", "hi", "thanks", "who are the doctors",
             "what about physical therapy", "how long does it take", "what is your phone number"]

# Long conversations, where the action server must see what lies beyond the window: follow-ups on an
# answer given many turns earlier, a form interrupted by many questions, a second request, a cancel.
SCRIPTED = [
    QUESTIONS[:10] + ["I'd like to book a consultation", "Jane Doe", *QUESTIONS[:7], "555-201-3344",
                      "what is fibromyalgia", "jane@example.com", "does it help?", "mornings", "no",
                      "my name is Ann Lee", "yes"],
    ["I want to book an appointment", "John Smith", "stop", *QUESTIONS[3:9], "book a consultation please",
     *BOOKING, *QUESTIONS[:4], "can I book another consultation", "Mary Major", "555-987-6543", "skip",
     "evenings", "actually my phone is 555-987-0000", "yes"],
]


def _random_conversations(count: int, turns: int, seed: int = 5) -> List[List[str]]:
    """Visitors who wander: questions, follow-ups, a booking started, answered, left and taken up again."""
    rng = random.Random(seed)
    pool = QUESTIONS + ["book a consultation", "cancel", "yes", "no", "skip", "asdf qwer", "go back"] + BOOKING
    return [[rng.choice(pool) for _ in range(turns)] for _ in range(count)]


@pytest.fixture(scope="module")
def action_server(tmp_path_factory):
    servers = Servers(tmp_path_factory.mktemp("payload"))
    servers._start_actions()
    try:
        servers._wait(f"http://127.0.0.1:{servers.action_port}/health", "actions")
        yield servers
    finally:
        servers.stop()


async def _converse(servers: Servers, conversations: List[List[str]]) -> Dict[str, Any]:
    from rasa.core.agent import load_agent
    from rasa.core.channels import UserMessage
    from rasa.core.utils import AvailableEndpoints
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.INFO)  # as `rasa run` does (the in-process agent would print debug lines)
    agent = await load_agent(model_path=str(MODEL), endpoints=AvailableEndpoints.read_endpoints(str(servers.endpoints)))
    full_payloads: Dict[int, Dict[str, Any]] = {}
    seen = {"calls": 0, "windowed": 0, "differences": [], "submissions": 0, "dropped_events": 0, "full": []}
    windowed_format = RemoteAction._action_call_format
    request = EndpointConfig.request

    def call_format(self: RemoteAction, tracker: Any, domain: Any) -> Dict[str, Any]:
        payload = windowed_format(self, tracker, domain)
        full_payloads[id(payload)] = windowed_format.__wrapped__(self, tracker, domain)
        return payload

    async def request_twice(self: EndpointConfig, *args: Any, **kwargs: Any) -> Any:
        payload = kwargs.get("json")
        full = full_payloads.pop(id(payload), None) if isinstance(payload, dict) else None
        if full is None:
            return await request(self, *args, **kwargs)
        seen["calls"] += 1
        seen["full"].append(full)
        seen["submissions"] += payload["next_action"] == "action_submit_consultation"
        dropped = len(full["tracker"]["events"]) - len(payload["tracker"]["events"])
        if dropped:
            seen["windowed"] += 1
            seen["dropped_events"] += dropped
            assert {**full["tracker"], "events": None} == {**payload["tracker"], "events": None}
            assert full["tracker"]["events"][dropped:] == payload["tracker"]["events"]
        expected = await request(self, *args, **{**kwargs, "json": full})
        answer = await request(self, *args, **kwargs)
        if answer != expected:
            seen["differences"].append((payload["next_action"], expected, answer))
        return answer

    RemoteAction._action_call_format = call_format  # type: ignore[assignment]
    EndpointConfig.request = request_twice  # type: ignore[assignment]
    try:
        for messages in conversations:
            sender = uuid.uuid4().hex
            for text in messages:
                await agent.handle_message(UserMessage(text, sender_id=sender))
    finally:
        RemoteAction._action_call_format = windowed_format  # type: ignore[assignment]
        EndpointConfig.request = request  # type: ignore[assignment]
    return seen


def _requests_stored(servers: Servers) -> int:
    with sqlite3.connect(servers.db) as db:
        return db.execute("SELECT COUNT(*) FROM consultation_requests").fetchone()[0]


@pytest.fixture(scope="module")
def conversed(action_server) -> Dict[str, Any]:
    """The scripted and random conversations, every action call answered twice (window, whole session)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("ACTION_SERVER_TOKEN", action_server.token)  # the endpoints file reads it
        conversations = SCRIPTED + _random_conversations(count=3, turns=45)
        return asyncio.run(_converse(action_server, conversations))


@pytest.mark.e2e
def test_the_action_server_answers_the_window_as_it_answers_the_whole_session(action_server, conversed) -> None:
    seen = conversed
    assert seen["differences"] == []
    # The window left out events in most calls, and the scripted requests were stored once each.
    assert seen["calls"] > 200 and seen["windowed"] > seen["calls"] // 2, seen
    assert seen["submissions"] >= 2
    assert _requests_stored(action_server) == seen["submissions"]


def _events(*kinds: str) -> List[Any]:
    make = {"user": lambda: UserUttered("hi", intent={"name": "greet", "confidence": 1.0}),
            "listen": lambda: ActionExecuted("action_listen"), "answer": lambda: ActionExecuted("action_answer"),
            "bot": lambda: BotUttered("hello"), "slot": lambda: SlotSet("topic", "x"),
            "form": lambda: ActiveLoop("consultation_form"), "end": lambda: ActiveLoop(None),
            "session": lambda: SessionStarted()}
    return [make[kind]() for kind in kinds]


def test_the_window_starts_at_the_third_latest_message() -> None:
    events = _events("session", "listen", *["user", "answer", "bot", "slot", "listen"] * 5)
    assert payload_window_start(events) == 2 + 5 * 2
    assert isinstance(events[12], UserUttered)


def test_the_window_reaches_back_to_the_latest_activation_of_a_loop() -> None:
    events = _events("session", "listen", "user", "form", "listen", *["user", "answer", "listen"] * 4, "end",
                     "user", "answer", "listen")
    assert payload_window_start(events) == 3
    # A loop activated again: the latest activation counts.
    events = _events("user", "form", "end", "listen", "user", "form", *["user", "answer", "listen"] * 4)
    assert payload_window_start(events) == 5


@pytest.mark.parametrize("users", [0, 1, 2])
def test_a_short_conversation_is_sent_whole(users: int) -> None:
    assert payload_window_start(_events("session", "listen", *["user", "answer"] * users)) == 0


def test_the_payload_is_rasas_but_for_the_events_left_out() -> None:
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

    domain = Domain.load(str(Path(__file__).resolve().parent.parent / "domain.yml"))
    events = _events("session", "listen", "user", "form", *["user", "answer", "bot", "slot", "listen"] * 6)
    tracker = DialogueStateTracker.from_events("payload", events, domain.slots)
    action = RemoteAction("action_answer", EndpointConfig("http://127.0.0.1:9/webhook"))
    original = RemoteAction._action_call_format.__wrapped__(action, tracker, domain)
    windowed = action._action_call_format(tracker, domain)
    assert windowed["tracker"]["events"] == original["tracker"]["events"][3:]
    assert {**windowed, "tracker": None} == {**original, "tracker": None}
    assert {**windowed["tracker"], "events": None} == {**original["tracker"], "events": None}


# --- No action reads before the window ----------------------------------------------------------------------

ACTIONS_FOLDER = str(Path(__file__).resolve().parent.parent / "actions")


class _ReadRecorder(list):
    """A conversation's events that remember the earliest index the project's actions read (the code in
    actions/; rasa-sdk's own reads and core/payload.py's count of the window are not the actions')."""

    def __init__(self, events: List[Any]) -> None:
        super().__init__(events)
        self.earliest = len(events)

    def _read(self, index: int) -> None:
        if sys._getframe(2).f_code.co_filename.startswith(ACTIONS_FOLDER):
            self.earliest = min(self.earliest, index)

    def __getitem__(self, key: Any) -> Any:
        indexes = range(len(self))[key]
        if isinstance(indexes, range):
            if len(indexes):
                self._read(min(indexes[0], indexes[-1]))
        else:
            self._read(indexes)
        return super().__getitem__(key)

    def __iter__(self) -> Iterator[Any]:
        for index in range(len(self)):
            self._read(index)
            yield list.__getitem__(self, index)

    def __reversed__(self) -> Iterator[Any]:
        for index in range(len(self) - 1, -1, -1):
            self._read(index)
            yield list.__getitem__(self, index)


async def _earliest_reads(payloads: List[Dict[str, Any]]) -> List[Tuple[str, int, int]]:
    """(action, earliest event index it read, the window's first index) for each whole-session call."""
    from rasa_sdk.executor import ActionExecutor

    executor = ActionExecutor()
    executor.register_package("actions")
    reads = []
    for payload in payloads:
        payload = copy.deepcopy(payload)
        events = _ReadRecorder(payload["tracker"]["events"])
        payload["tracker"]["events"] = events
        try:
            await executor.run(payload)
        except Exception:  # noqa: BLE001 - a rejected form answer is an exception too; the reads count
            pass
        reads.append((payload["next_action"], events.earliest, payload_window_start(list.copy(events))))
    return reads


@pytest.mark.e2e
def test_no_action_reads_an_event_before_the_window(conversed, tmp_path, monkeypatch) -> None:
    """Every action of the conversations, run again on the whole session it would have been sent without
    the window: it reads no event before the window."""
    monkeypatch.setenv("CLINIC_DB_URL", f"sqlite:///{tmp_path / 'again.db'}")  # the submissions, stored again
    reads = asyncio.run(_earliest_reads(conversed["full"]))
    assert len(reads) > 200 and sum(window > 0 for _, _, window in reads) > len(reads) // 2
    assert {action for action, _, _ in reads} >= {"action_answer", "validate_consultation_form",
                                                   "action_submit_consultation"}
    past = [(action, earliest, window) for action, earliest, window in reads if earliest < window]
    assert past == []


def test_the_recorder_sees_a_read_before_the_window() -> None:
    """The check above can fail: code in actions/ that reads the whole session is caught."""
    namespace: Dict[str, Any] = {}
    exec(compile("def first(events):\n    return [event for event in events][0]\n",
                 f"{ACTIONS_FOLDER}/example.py", "exec"), namespace)
    events = _ReadRecorder([{"event": "user"}] * 5)
    namespace["first"](events)
    assert events.earliest == 0


def test_actions_read_events_only_through_the_window() -> None:
    """No module of actions/ but base.py (ClinicAction.payload_events) reads ``tracker.events``."""
    readers = [path.name for path in Path(ACTIONS_FOLDER).glob("*.py")
               if path.name != "base.py" and re.search(r"\btracker\.events\b", path.read_text())]
    assert readers == []
