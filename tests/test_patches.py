"""The speed patches (rasa_ext/speed.py) and the dialogue policy (rasa_ext/rule_policy.py) return exactly
what Rasa 3.6.21's own code returns, and the patches refuse any other Rasa version.

Each patched function is run beside the original (kept as ``__wrapped__``) on the same inputs: every
``Event`` type, the events of real conversations held with the real Rasa and action servers, and valid and
invalid action-server responses.
"""

from __future__ import annotations

import copy
import gc
import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from jsonschema import ValidationError

from devtools.servers import Visitor
from rasa_ext import patches, speed
from rasa_ext.rule_policy import WindowedRulePolicy
from rasa_ext.version import PatchError

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
def stored_events(shared_servers) -> List[Dict[str, Any]]:
    """Every event (as the tracker store keeps it) of the scripted conversations with the real servers
    (the shared pair: only these conversations' events are read back)."""
    senders = []
    for messages in CONVERSATIONS:
        visitor = Visitor(shared_servers)
        senders.append(visitor.sender)
        for text in messages:
            visitor.say(text)
    marks = ",".join("?" * len(senders))
    with sqlite3.connect(shared_servers.db) as db:
        rows = db.execute(f"SELECT sender_id, data FROM events WHERE sender_id IN ({marks}) ORDER BY id",
                          senders).fetchall()
    return [{"sender_id": sender, **json.loads(data)} for sender, data in rows]


def test_the_patches_are_applied() -> None:
    assert hasattr(Event.resolve_by_type, "__wrapped__")
    assert hasattr(RemoteAction._validate_action_result, "__wrapped__")


def test_every_patch_is_listed_with_its_concern_and_reason() -> None:
    assert len({patch.name for patch in patches.PATCHES}) == len(patches.PATCHES)
    for patch in patches.PATCHES:
        assert patch.concern in (patches.NEVER_SILENT, patches.DATABASES, patches.SPEED), patch.name
        assert len(patch.reason) > 30 and patch.install.__doc__, patch.name


def test_the_patches_refuse_any_other_rasa_version(monkeypatch) -> None:
    """On another Rasa, apply() raises before installing anything, and the policy refuses to be built."""
    import rasa

    installed = [patch.name for patch in patches.PATCHES]
    monkeypatch.setattr(patches, "_applied", False)
    monkeypatch.setattr(patches, "PATCHES", tuple(patches.Patch(lambda: installed.append("ran"), p.concern, p.reason)
                                                  for p in patches.PATCHES))
    for version in ("3.6.20", "3.7.0", "4.0.0"):
        monkeypatch.setattr(rasa, "__version__", version)
        with pytest.raises(PatchError, match=f"Rasa 3.6.21, not {version}"):
            patches.apply()
        with pytest.raises(PatchError, match=f"Rasa 3.6.21, not {version}"):
            WindowedRulePolicy({}, None, None, None)
    assert "ran" not in installed and patches._applied is False
    monkeypatch.setattr(rasa, "__version__", "3.6.21")
    patches.apply()
    assert installed.count("ran") == len(patches.PATCHES)


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
        speed._event_types.clear()
        gc.collect()
    assert Event.resolve_by_type("undo") is original("undo") is ActionReverted


@pytest.mark.e2e
def test_the_conversations_cover_every_kind_of_turn(stored_events) -> None:
    names = {event["event"] for event in stored_events}
    assert {"session_started", "action", "user", "bot", "slot", "active_loop", "user_featurization"} <= names


def _deserialised(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [Event.from_parameters(copy.deepcopy(event)).as_dict() for event in events]


@pytest.mark.e2e
def test_stored_events_deserialise_to_the_same_events(stored_events, monkeypatch) -> None:
    events = [{k: v for k, v in event.items() if k != "sender_id"} for event in stored_events]
    patched = _deserialised(events)
    monkeypatch.setattr(Event, "resolve_by_type", staticmethod(Event.resolve_by_type.__wrapped__))
    assert patched == _deserialised(events)


@pytest.mark.e2e
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


@pytest.mark.e2e
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


# --- RulePolicy's states of the last turns only ----------------------------------------------------------

@pytest.fixture(scope="module")
def rule_policy():
    """The trained RulePolicy of the project's model, as the server runs it."""
    from rasa.core.agent import Agent
    from rasa.core.policies.rule_policy import RulePolicy

    agent = Agent.load(str(ROOT / "models" / "clinic.tar.gz"))
    nodes = agent.processor.graph_runner._instantiated_nodes
    policy = next(node._component for node in nodes.values() if isinstance(getattr(node, "_component", None), RulePolicy))
    assert type(policy) is WindowedRulePolicy  # config.yml names it
    return policy, agent.domain


def _same_prediction(policy, tracker, domain) -> Any:
    """Runs the patched and the original prediction on the same tracker; returns the original's."""
    from rasa.core.policies.rule_policy import RulePolicy

    patched = WindowedRulePolicy.predict_action_probabilities(policy, tracker, domain)
    original = RulePolicy.predict_action_probabilities(policy, tracker, domain)
    assert vars(patched) == vars(original), [event.as_dict() for event in tracker.events][-8:]
    return original


@pytest.mark.model
def test_rule_policy_predicts_as_before_at_every_step_of_every_story(rule_policy) -> None:
    """Every prefix (before each action) of every training and test story and rule."""
    from rasa.shared.core.generator import TrainingDataGenerator
    from rasa.shared.importers.importer import TrainingDataImporter

    policy, domain = rule_policy
    checked = 0
    for paths in (["data/stories.yml", "data/rules.yml"], ["tests/test_stories.yml"]):
        importer = TrainingDataImporter.load_from_dict(domain_path=str(ROOT / "domain.yml"),
                                                      training_data_paths=[str(ROOT / p) for p in paths])
        trackers = TrainingDataGenerator(importer.get_stories(), domain, augmentation_factor=0,
                                         use_story_concatenation=False).generate()
        for tracker in trackers:
            events = list(tracker.events)
            for index, event in enumerate(events):
                if event.type_name == "action":
                    prefix = DialogueStateTracker.from_events("story", events[:index], domain.slots)
                    _same_prediction(policy, prefix, domain)
                    checked += 1
    assert checked > 300


def _generated_conversations(policy, domain, conversations: int, seed: int = 9) -> set:
    """Random conversations of 80 turns (random intents, the predicted actions, the form's loop started,
    rejected and left, slots set and unset at random, new sessions, reverted turns), each prediction
    checked against the original; returns the actions predicted (and "rejected", "interrupted")."""
    import random

    from rasa.shared.core.events import (
        ActionExecuted,
        ActionExecutionRejected,
        ActiveLoop,
        SessionStarted,
        SlotSet,
        UserUtteranceReverted,
        UserUttered,
    )

    rng = random.Random(seed)
    intents = sorted(domain.intents)
    checked = set()
    for conversation in range(conversations):
        tracker = DialogueStateTracker.from_events(f"generated-{conversation}", [
            ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen")], domain.slots)
        for _turn in range(80):
            intent = rng.choice(intents)
            tracker.update(UserUttered(rng.choice(["", "some words"]),
                                       intent={"name": intent, "confidence": rng.random()}))
            for _ in range(4):
                prediction = _same_prediction(policy, tracker, domain)
                best = max(range(len(prediction.probabilities)), key=prediction.probabilities.__getitem__)
                action = domain.action_names_or_texts[best] if prediction.max_confidence > 0 else "action_listen"
                checked.add(action)
                if action == tracker.active_loop_name and rng.random() < 0.4:
                    tracker.update(ActionExecutionRejected(action))  # the visitor's answer does not fit
                    checked.add("rejected")
                    continue
                if prediction.events:
                    checked.add("interrupted")
                tracker.update(ActionExecuted(action))
                if action == tracker.active_loop_name and rng.random() < 0.3:
                    # The form refused, and a rule answered (an unhappy path).
                    tracker.update(ActionExecutionRejected(action))
                    tracker.update(ActionExecuted("action_answer"))
                    continue
                if action in domain.form_names and rng.random() < 0.7:
                    tracker.update(ActiveLoop(action))
                    tracker.update(SlotSet("requested_slot", rng.choice([None, *list(domain.slots)[:6]]).__str__()))
                elif rng.random() < 0.1:
                    tracker.update(ActiveLoop(None))
                if rng.random() < 0.2:
                    slot = rng.choice(domain.slots)
                    tracker.update(SlotSet(slot.name, rng.choice([None, "x", True, 1.0])))
                if action == "action_listen":
                    break
            else:
                tracker.update(ActionExecuted("action_listen"))
            if rng.random() < 0.05:
                tracker.update(UserUtteranceReverted())
            if rng.random() < 0.02:
                tracker.update(ActionExecuted("action_session_start"))
                tracker.update(SessionStarted())
                tracker.update(ActionExecuted("action_listen"))
    return checked


@pytest.mark.model
def test_rule_policy_predicts_as_before_in_long_generated_conversations(rule_policy) -> None:
    policy, domain = rule_policy
    checked = _generated_conversations(policy, domain, conversations=12)
    # The answers, the fallback, the form (started, rejected, filled, submitted), the defaults.
    assert {"action_answer", "action_fallback", "consultation_form", "action_submit_consultation",
            "action_back", "action_restart", "rejected"} <= checked, checked


@pytest.mark.model
def test_rule_policy_predicts_as_before_when_rules_return_to_an_interrupted_form(rule_policy) -> None:
    """The project's rules never mark a form as interrupted: a copy of the policy with unhappy-path rules
    that do (``LOOP_WAS_INTERRUPTED`` after an answer given while the form is active, as a rule that
    returns to the form would) exercises that branch."""
    from rasa.core.policies.rule_policy import LOOP_WAS_INTERRUPTED, RULES_FOR_LOOP_UNHAPPY_PATH

    policy, domain = rule_policy
    interrupting = copy.copy(policy)
    loop = {"active_loop": {"name": "consultation_form"}}
    answered = {**loop, "prev_action": {"action_name": "action_answer"}}
    extra = {json.dumps([answered], sort_keys=True): LOOP_WAS_INTERRUPTED,
             json.dumps([{**loop, "prev_action": {"action_name": "action_listen"}}, answered], sort_keys=True):
                 LOOP_WAS_INTERRUPTED}
    interrupting.lookup = {**policy.lookup, RULES_FOR_LOOP_UNHAPPY_PATH: {
        **policy.lookup[RULES_FOR_LOOP_UNHAPPY_PATH], **extra}}
    assert "interrupted" in _generated_conversations(interrupting, domain, conversations=6, seed=3)


@pytest.mark.model
def test_rule_policy_lets_rasa_decide_when_its_key_of_all_states_may_be_a_rule_not_in_stories(rule_policy) -> None:
    """With no rule for the history, Rasa's key of all its states decides ``hide_rule_turn``: a copy of the
    policy whose ``rules_not_in_stories`` holds that key hides the turn, patched or not."""
    from rasa.core.policies.rule_policy import RULES_NOT_IN_STORIES, RulePolicy
    from rasa.shared.core.events import ActionExecuted, UserUttered

    policy, domain = rule_policy
    for intent, action in itertools.product(sorted(domain.intents), domain.action_names_or_texts):
        tracker = DialogueStateTracker.from_events("short", [
            ActionExecuted("action_listen"), UserUttered("", intent={"name": intent, "confidence": 1.0}),
            ActionExecuted(action)], domain.slots)
        prediction, key = policy._predict(tracker, domain)
        if prediction.max_confidence < 1 and key and key not in policy.lookup[RULES_NOT_IN_STORIES]:
            break
    else:
        pytest.fail("a rule for every history")
    hiding = copy.copy(policy)
    hiding.lookup = {**policy.lookup, RULES_NOT_IN_STORIES: [*policy.lookup[RULES_NOT_IN_STORIES], key]}
    assert RulePolicy.predict_action_probabilities(hiding, tracker, domain).hide_rule_turn
    _same_prediction(hiding, tracker, domain)


@pytest.mark.model
def test_rule_policy_builds_only_the_last_states_of_a_long_conversation(rule_policy, monkeypatch) -> None:
    from rasa.core.policies.rule_policy import RulePolicy
    from rasa.shared.core.events import ActionExecuted, UserUttered

    policy, domain = rule_policy
    events = [ActionExecuted("action_listen")]
    for _ in range(100):
        events += [UserUttered("hi", intent={"name": "greet", "confidence": 1.0}), ActionExecuted("action_answer"),
                   ActionExecuted("action_listen")]
    tracker = DialogueStateTracker.from_events("long", events, domain.slots)
    built = []
    get_active_state = type(domain).get_active_state
    monkeypatch.setattr(type(domain), "get_active_state", lambda *args, **kw: built.append(1) or get_active_state(*args, **kw))
    RulePolicy.predict_action_probabilities(policy, tracker, domain)
    assert len(built) > 300  # Rasa: every past state, twice (text, then intent)
    built.clear()
    WindowedRulePolicy.predict_action_probabilities(policy, tracker, domain)
    assert len(built) == 3  # the longest rule's length
    # The next prediction on the same tracker (after the next action) replays only what was added.
    replayed = []
    update = DialogueStateTracker.update
    monkeypatch.setattr(DialogueStateTracker, "update", lambda *args, **kw: replayed.append(1) or update(*args, **kw))
    tracker.update(UserUttered("hi", intent={"name": "greet", "confidence": 1.0}))
    tracker.update(ActionExecuted("action_answer"))
    replayed.clear()
    built.clear()
    WindowedRulePolicy.predict_action_probabilities(policy, tracker, domain)
    assert len(replayed) == 2 and len(built) == 2  # the new action's state, and the state after it
    _same_prediction(policy, tracker, domain)


# --- Undoing reverted turns without copying ----------------------------------------------------------------

def test_undoing_reverted_turns_removes_the_same_events() -> None:
    import random

    from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered

    patched = DialogueStateTracker._undo_till_previous
    original = patched.__wrapped__
    assert patched is not original
    rng = random.Random(9)
    kinds = [lambda: ActionExecuted("action_listen"), lambda: UserUttered("hi"), lambda: SlotSet("name", "x")]
    for _ in range(300):
        events = [rng.choice(kinds)() for _ in range(rng.randrange(0, 12))]
        for event_type in (ActionExecuted, UserUttered, SlotSet, ActionReverted):
            mine, theirs = list(events), list(events)
            patched(event_type, mine)
            original(event_type, theirs)
            assert mine == theirs


@pytest.mark.e2e
def test_applied_events_of_real_conversations_are_the_same(stored_events, monkeypatch) -> None:
    from rasa.shared.core.events import UserUtteranceReverted

    domain = Domain.load(str(ROOT / "domain.yml"))
    conversations: Dict[str, List[Dict[str, Any]]] = {}
    for event in stored_events:
        conversations.setdefault(event["sender_id"], []).append(event)
    # The back button and a revert after every fifth event, so that turns are really undone.
    for sender, events in conversations.items():
        tracker = DialogueStateTracker.from_dict(sender, events, domain.slots)
        for index in range(len(tracker.events)):
            if index % 5 == 4:
                tracker.update(UserUtteranceReverted() if index % 10 == 4 else ActionReverted())
        mine = [event.as_dict() for event in tracker.applied_events()]
        monkeypatch.setattr(DialogueStateTracker, "_undo_till_previous",
                            staticmethod(DialogueStateTracker._undo_till_previous.__wrapped__))
        theirs = [event.as_dict() for event in tracker.applied_events()]
        monkeypatch.undo()
        assert mine == theirs and len(mine) < len(tracker.events)


# --- applied_events continued from its previous result ---------------------------------------------------

def _random_events(rng: Any, count: int) -> List[Any]:
    """Random events of every kind the rules of ``applied_events`` treat apart: loops (one of them named
    only late), their executions, rejections and interruptions, reverts, restarts and new sessions."""
    from rasa.shared.core.events import (
        ActionExecuted,
        ActionExecutionRejected,
        ActiveLoop,
        AllSlotsReset,
        BotUttered,
        ConversationPaused,
        ConversationResumed,
        DefinePrevUserUtteredFeaturization,
        EntitiesAdded,
        FollowupAction,
        LoopInterrupted,
        Restarted,
        SessionStarted,
        SlotSet,
        UserUtteranceReverted,
        UserUttered,
    )

    loops = ["consultation_form", "late_form"]
    kinds = [
        lambda: ActionExecuted("action_listen"), lambda: ActionExecuted("action_answer"),
        lambda: ActionExecuted(rng.choice(loops)), lambda: ActionExecuted(rng.choice(loops)),
        lambda: ActiveLoop(rng.choice(loops[:1] if rng.random() < 0.8 else loops)), lambda: ActiveLoop(None),
        lambda: ActionExecutionRejected(rng.choice(loops)), lambda: LoopInterrupted(rng.random() < 0.5),
        lambda: UserUttered("hi", intent={"name": "greet", "confidence": 1.0}), lambda: UserUttered("x"),
        lambda: BotUttered("hello"), lambda: SlotSet("name", "x"), lambda: DefinePrevUserUtteredFeaturization(False),
        lambda: ActionReverted(), lambda: UserUtteranceReverted(), lambda: Restarted(), lambda: SessionStarted(),
        lambda: EntitiesAdded([{"entity": "therapy", "value": rng.choice(["massage", "yoga"])}]),
        lambda: SlotSet(rng.choice(["topic", "therapy", "requested_slot"]), rng.choice([None, "massage", "phone"])),
        lambda: FollowupAction("action_answer"), lambda: ConversationPaused(), lambda: ConversationResumed(),
        lambda: AllSlotsReset(),
    ]
    weights = [8, 6, 5, 5, 3, 2, 2, 1, 8, 2, 5, 4, 1, 1, 1, 0.3, 0.3, 1, 3, 0.5, 0.2, 0.2, 0.2]
    return [rng.choices(kinds, weights)[0]() for _ in range(count)]


def _random_moments(seed: int, conversations: int, longest: int, share: float) -> Iterator[Tuple[Any, Any]]:
    """Random conversations built event by event: (the tracker, the event just added) at a random
    ``share`` of the moments, and (the tracker, None) at the end of each conversation."""
    import random

    domain = Domain.load(str(ROOT / "domain.yml"))
    rng = random.Random(seed)
    for _ in range(conversations):
        tracker = DialogueStateTracker("random", domain.slots)
        for event in _random_events(rng, rng.randrange(1, longest)):
            tracker.update(event)
            if rng.random() < share:
                yield tracker, event
        yield tracker, None


def _same_applied_events(tracker: DialogueStateTracker) -> List[Any]:
    mine = tracker.applied_events()
    theirs = DialogueStateTracker.applied_events.__wrapped__(tracker)
    assert [id(event) for event in mine] == [id(event) for event in theirs], [e.as_dict() for e in tracker.events]
    return mine


def test_applied_events_continued_from_the_last_result_are_the_same() -> None:
    """Random conversations built event by event, compared with Rasa's result at random moments (so the
    patched method continues over one event or several), and its result changed by the caller."""
    continued = 0
    for tracker, event in _random_moments(seed=11, conversations=400, longest=80, share=0.4):
        if event is None:  # the end of a conversation
            _same_applied_events(tracker)
            continue
        continued += "_rasa_ext_applied" in tracker.__dict__
        _same_applied_events(tracker).append(event)  # the caller's list is its own
    assert continued > 3000


def test_applied_events_are_computed_again_when_the_events_are_not_just_added_to() -> None:
    from rasa.shared.core.events import ActionExecuted, ActiveLoop, UserUttered

    domain = Domain.load(str(ROOT / "domain.yml"))
    tracker = DialogueStateTracker("changed", domain.slots)
    for event in [UserUttered("hi"), ActionExecuted("late_form"), ActionExecuted("action_listen"),
                  UserUttered("x"), ActionExecuted("late_form")]:
        tracker.update(event)
    _same_applied_events(tracker)
    tracker.update(ActiveLoop("late_form"))  # a loop name first seen now changes how earlier events count
    _same_applied_events(tracker)
    tracker.events.pop()
    tracker.events.pop()
    for event in [ActionExecuted("action_answer"), UserUttered("y"), ActionExecuted("action_listen")]:
        tracker.update(event)  # more events than before, but not the same ones
    _same_applied_events(tracker)
    tracker.events = tracker._create_events([UserUttered("new")] * 9)
    assert [e.text for e in _same_applied_events(tracker)] == ["new"] * 9


def test_applied_events_of_a_bounded_history_are_rasas() -> None:
    import random

    domain = Domain.load(str(ROOT / "domain.yml"))
    rng = random.Random(3)
    tracker = DialogueStateTracker("bounded", domain.slots, max_event_history=10)
    for event in _random_events(rng, 60):
        tracker.update(event)
        _same_applied_events(tracker)
    assert "_rasa_ext_applied" not in tracker.__dict__


# --- tracker copies without replaying ---------------------------------------------------------------------

def _state(tracker: DialogueStateTracker) -> Dict[str, Any]:
    """Everything a tracker holds: its attributes, its events (which objects), its slots (value and whether
    set), and what every user event of it says (a replay applies some events to earlier messages)."""
    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.trackers import EventVerbosity

    return {
        "current": tracker.current_state(EventVerbosity.ALL),
        "attributes": sorted(name for name in vars(tracker) if not name.startswith("_rasa_ext")),
        "events": [id(event) for event in tracker.events],
        "slots": {name: (slot.value, slot.has_been_set) for name, slot in tracker.slots.items()},
        "loop": tracker.active_loop, "paused": tracker._paused, "model": (tracker.model_id, tracker.assistant_id),
        "source": (tracker.sender_source, tracker.is_rule_tracker, tracker._max_event_history),
        "bot": tracker.latest_bot_utterance,
        "users": [(event.as_dict(), event.use_text_for_featurization) for event in tracker.events
                  if isinstance(event, UserUttered)],
    }


def _same_copy(tracker: DialogueStateTracker) -> None:
    """Compares the patched copy with Rasa's replay, and shows the copy is a tracker of its own."""
    copied = tracker.copy()
    before = _state(tracker)
    replayed = DialogueStateTracker.copy.__wrapped__(tracker)
    assert _state(tracker) == before  # the replay changed nothing in the events the copy shares
    assert _state(copied) == _state(replayed)
    # A copy is a tracker of its own: what happens to it leaves the original as it was.
    from rasa.shared.core.events import ActionExecuted, LoopInterrupted, SlotSet

    for event in (SlotSet("topic", "other"), LoopInterrupted(True), ActionExecuted("consultation_form")):
        copied.update(event)
    assert _state(tracker) == before


def test_tracker_copies_of_random_conversations_are_rasas_replays() -> None:
    compared = 0
    for tracker, event in _random_moments(seed=23, conversations=250, longest=60, share=0.3):
        if event is not None:
            _same_copy(tracker)
            compared += 1
    assert compared > 1500


@pytest.mark.e2e
def test_tracker_copies_of_real_conversations_are_rasas_replays(stored_events) -> None:
    domain = Domain.load(str(ROOT / "domain.yml"))
    conversations: Dict[str, List[Dict[str, Any]]] = {}
    for event in stored_events:
        conversations.setdefault(event["sender_id"], []).append(event)
    for sender, events in conversations.items():
        tracker = DialogueStateTracker.from_dict(sender, events, domain.slots)
        prefix = DialogueStateTracker(sender, domain.slots)
        for event in tracker.events:
            prefix.update(event)
            _same_copy(prefix)


def test_a_tracker_copy_replays_when_the_state_cannot_be_told_from_the_latest_events(monkeypatch) -> None:
    from rasa.shared.core.events import ActionExecuted, UserUtteranceReverted, UserUttered

    domain = Domain.load(str(ROOT / "domain.yml"))
    replays = []
    travel = DialogueStateTracker.travel_back_in_time
    monkeypatch.setattr(DialogueStateTracker, "travel_back_in_time", lambda *a: replays.append(1) or travel(*a))
    tracker = DialogueStateTracker("plain", domain.slots)
    for event in [UserUttered("hi"), ActionExecuted("action_answer"), ActionExecuted("action_listen")]:
        tracker.update(event)
    _same_copy(tracker)
    assert len(replays) == 1  # Rasa's, for the comparison: the patched copy did not replay
    replays.clear()
    tracker.update(UserUtteranceReverted())  # the latest message is now an earlier one, or none
    _same_copy(tracker)
    assert len(replays) == 2
    replays.clear()
    bounded = DialogueStateTracker("bounded", domain.slots, max_event_history=5)
    bounded.update(UserUttered("hi"))
    _same_copy(bounded)
    assert len(replays) == 2
