"""The speed patches in rasa_ext/patches.py return exactly what Rasa 3.6.21's own code returns.

Each patched function is run beside the original (kept as ``__wrapped__``) on the same inputs: every
``Event`` type, the events of real conversations held with the real Rasa and action servers, and valid and
invalid action-server responses.
"""

from __future__ import annotations

import copy
import gc
import json
import sqlite3
from pathlib import Path
from typing import Any, Dict, List

import pytest
from jsonschema import ValidationError

from rasa_ext import patches
from tests.servers import Servers, Visitor

patches.apply()

from rasa.core.actions.action import RemoteAction  # noqa: E402  (after the patches, as in the server)
from rasa.shared.core.domain import Domain  # noqa: E402
from rasa.shared.core.events import ActionReverted, Event  # noqa: E402
from rasa.shared.core.trackers import DialogueStateTracker  # noqa: E402
from rasa.shared.utils.common import all_subclasses  # noqa: E402
from rasa.utils.endpoints import EndpointConfig  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# Conversations that visit every kind of turn the assistant has: answers, the consultation form with an
# interruption and a correction, a cancel, the fallback, safety routing.
CONVERSATIONS = [
    ["hi", "what is fibromyalgia", "what are the symptoms", "do you offer acupuncture", "where is the clinic",
     "asdf qwer zxcv", "thanks", "bye"],
    ["I'd like to book a consultation", "Jane Doe", "what does it cost?", "not-a-phone", "555-201-3344",
     "jane@example.com", "mornings", "yes"],
    ["book an appointment please", "John", "stop", "who are the doctors", "I want to kill myself"],
    ["I think I'm having a heart attack", "is surgery needed for back pain"],
]


@pytest.fixture(scope="module")
def stored_events(tmp_path_factory) -> List[Dict[str, Any]]:
    """Every event (as the tracker store keeps it) of the scripted conversations with the real servers."""
    folder = tmp_path_factory.mktemp("patches")
    servers = Servers(folder).start()
    try:
        for messages in CONVERSATIONS:
            visitor = Visitor(servers)
            for text in messages:
                visitor.say(text)
    finally:
        servers.stop()
    with sqlite3.connect(servers.db) as db:
        rows = db.execute("SELECT sender_id, data FROM events ORDER BY id").fetchall()
    return [{"sender_id": sender, **json.loads(data)} for sender, data in rows]


def test_the_patches_are_applied() -> None:
    assert hasattr(Event.resolve_by_type, "__wrapped__")
    assert hasattr(RemoteAction._validate_action_result, "__wrapped__")


# --- Event.resolve_by_type ---------------------------------------------------------------------------------

EVENT_NAMES = sorted({cls.type_name for cls in all_subclasses(Event)})


@pytest.mark.parametrize("type_name", EVENT_NAMES)
def test_every_event_type_resolves_to_the_same_class(type_name: str) -> None:
    original = Event.resolve_by_type.__wrapped__
    assert Event.resolve_by_type(type_name) is original(type_name)
    assert Event.resolve_by_type(type_name, default=Event) is original(type_name, default=Event)


def test_unknown_type_names_behave_as_before() -> None:
    original = Event.resolve_by_type.__wrapped__
    assert Event.resolve_by_type("topic") is original("topic") is None
    assert Event.resolve_by_type("no_such_event", default=Event) is original("no_such_event", default=Event)
    with pytest.raises(ValueError) as patched_error:
        Event.resolve_by_type("no_such_event")
    with pytest.raises(ValueError) as original_error:
        original("no_such_event")
    assert str(patched_error.value) == str(original_error.value)


def test_an_event_class_defined_later_is_found() -> None:
    original = Event.resolve_by_type.__wrapped__
    Event.resolve_by_type("user")  # the table is built

    class LateEvent(ActionReverted):
        type_name = "late_event_for_test"

    assert Event.resolve_by_type("late_event_for_test") is original("late_event_for_test") is LateEvent
    assert Event.from_parameters({"event": "late_event_for_test"}) == LateEvent()


def test_a_later_class_that_comes_first_in_rasas_walk_wins_as_before() -> None:
    """``all_subclasses`` lists Event's direct subclasses before the deeper ones: a new direct subclass
    named like a deeper class ("undo" is ActionReverted's, a subclass of UserUtteranceReverted) is what
    Rasa's walk returns from then on, so the table must be rebuilt when a class is defined."""
    original = Event.resolve_by_type.__wrapped__
    assert Event.resolve_by_type("undo") is ActionReverted

    class ShadowUndo(Event):
        type_name = "undo"

        def __eq__(self, other: Any) -> bool:
            return isinstance(other, type(self))

        def as_story_string(self) -> str:
            return "undo"

    try:
        assert Event.resolve_by_type("undo") is original("undo") is ShadowUndo
    finally:
        del ShadowUndo
        patches._event_types.clear()
        gc.collect()
    assert Event.resolve_by_type("undo") is original("undo") is ActionReverted


def test_the_conversations_cover_every_kind_of_turn(stored_events) -> None:
    names = {event["event"] for event in stored_events}
    assert {"session_started", "action", "user", "bot", "slot", "active_loop", "user_featurization"} <= names


def _deserialised(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [Event.from_parameters(copy.deepcopy(event)).as_dict() for event in events]


def test_stored_events_deserialise_to_the_same_events(stored_events, monkeypatch) -> None:
    events = [{k: v for k, v in event.items() if k != "sender_id"} for event in stored_events]
    patched = _deserialised(events)
    monkeypatch.setattr(Event, "resolve_by_type", staticmethod(Event.resolve_by_type.__wrapped__))
    assert patched == _deserialised(events)


def test_stored_trackers_rebuild_to_the_same_state(stored_events, monkeypatch) -> None:
    domain = Domain.load(str(ROOT / "domain.yml"))
    by_sender: Dict[str, List[Dict[str, Any]]] = {}
    for event in stored_events:
        by_sender.setdefault(event["sender_id"], []).append({k: v for k, v in event.items() if k != "sender_id"})

    def states() -> List[Any]:
        result = []
        for sender, events in by_sender.items():
            tracker = DialogueStateTracker.from_dict(sender, copy.deepcopy(events), domain.slots)
            result.append((tracker.current_state(), tracker.past_states(domain)))
        return result

    patched = states()
    monkeypatch.setattr(Event, "resolve_by_type", staticmethod(Event.resolve_by_type.__wrapped__))
    assert patched == states()
    assert len(patched) == len(CONVERSATIONS)


# --- RemoteAction._validate_action_result ------------------------------------------------------------------

def _action() -> RemoteAction:
    return RemoteAction("action_answer", EndpointConfig("http://127.0.0.1:1/webhook"))


def _outcome(function, action: RemoteAction, response: Dict[str, Any]) -> Any:
    """What the validation returned, or the error it raised (type, message, path, schema path)."""
    try:
        return function(action, copy.deepcopy(response))
    except ValidationError as error:
        return ("ValidationError", error.message, list(error.path), list(error.schema_path), error.validator)


def _valid_responses(stored_events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    events = [{k: v for k, v in event.items() if k != "sender_id"} for event in stored_events]
    by_type: Dict[str, Dict[str, Any]] = {}
    for event in events:
        by_type.setdefault(event["event"], event)
    return [
        {"events": [], "responses": []},
        {},
        {"events": events[:40], "responses": [{"text": "hello", "buttons": [{"title": "a", "payload": "/a"}]}]},
        *({"events": [event], "responses": [{"response": "utter_greet"}]} for event in by_type.values()),
        {"events": [{"event": "slot", "name": "phone", "value": None}]},
        {"events": [{"event": "active_loop", "name": None}]},
    ]


INVALID_RESPONSES = [
    {"events": "not a list"},
    {"events": [{"no_event_key": 1}]},
    {"events": [{"event": "no_such_event"}]},
    {"events": [{"event": "slot", "name": 3}]},
    {"events": [{"event": "user", "text": 5}]},
    {"events": [{"event": "action", "name": ["x"]}]},
    {"events": [{"event": "bot", "text": "hi"}, {"event": 7}]},
    {"events": [{"event": "slot"}]},
    {"events": [{"event": "user", "parse_data": "x"}]},
    {"events": [], "responses": "not a list"},
    {"events": [], "responses": ["not an object"]},
    {"events": [{"event": "slot", "name": "a", "timestamp": "now"}]},
    [],
    "just a string",
]


def test_valid_action_responses_are_accepted_as_before(stored_events) -> None:
    action = _action()
    original = RemoteAction._validate_action_result.__wrapped__
    for response in _valid_responses(stored_events):
        assert _outcome(RemoteAction._validate_action_result, action, response) == \
               _outcome(original, action, response) is True


@pytest.mark.parametrize("response", INVALID_RESPONSES, ids=[str(i) for i in range(len(INVALID_RESPONSES))])
def test_invalid_action_responses_are_refused_with_the_same_error(response: Any) -> None:
    action = _action()
    original = RemoteAction._validate_action_result.__wrapped__
    patched = _outcome(RemoteAction._validate_action_result, action, response)
    assert patched == _outcome(original, action, response)
    assert patched[0] == "ValidationError" and "Failed to validate Action server response" in patched[1]
    # Twice: the prebuilt validator keeps no state between calls.
    assert _outcome(RemoteAction._validate_action_result, action, response) == patched


def test_a_subclass_with_its_own_schema_keeps_the_original_path() -> None:
    class Strict(RemoteAction):
        @staticmethod
        def action_response_format_spec() -> Dict[str, Any]:
            return {"type": "object", "required": ["events"]}

    action = Strict("action_answer", EndpointConfig("http://127.0.0.1:1/webhook"))
    original = RemoteAction._validate_action_result.__wrapped__
    for response in ({"events": []}, {"responses": []}):
        assert _outcome(RemoteAction._validate_action_result, action, response) == \
               _outcome(original, action, response)
    assert _outcome(RemoteAction._validate_action_result, action, {"responses": []})[0] == "ValidationError"
