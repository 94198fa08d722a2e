"""The project's fixes inside Rasa Open Source 3.6.21, applied at start-up by ``python -m rasa_ext``.

Rasa 3.6 is the last open-source release, so its defects are fixed here rather than upstream. Each fix
is one function below, documented with the defect it fixes; :func:`apply` installs them all, once, and
refuses to install anything on another Rasa version (the patched internals may differ there). Tests in
``tests/test_patches.py`` and ``tests/test_never_silent.py`` prove that each patched function returns
exactly what the original did.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
from typing import Any, Callable, Dict, List, Optional

from rasa_ext.version import require_rasa_version

logger = logging.getLogger(__name__)

_applied = False


def _check_version() -> None:
    require_rasa_version("rasa_ext.patches")


# Each patch is a function that installs one fix; they run in this order.
PATCHES: List[Callable[[], None]] = []


# --- Never silent (engineer "silent"; rasa_ext/never_silent.py, tests/test_never_silent.py) -------------
# Each patch wraps the attribute as it is when the patch runs, so later patches can wrap it again.


def patch_action_timeout() -> None:
    """A hung action server holds a turn for at most ``ACTION_TIMEOUT`` seconds (default 5), not minutes.

    ``RemoteAction.run`` uses aiohttp's timeout of ``DEFAULT_REQUEST_TIMEOUT`` (5 minutes); the wrapper
    raises ``ActionServerFailure`` when the call takes longer than the timeout.
    """
    from rasa.core.actions.action import RemoteAction

    from rasa_ext import never_silent

    never_silent.log_like_rasa()
    timeout = never_silent.action_timeout()  # a bad value stops the start, naming the variable
    run = RemoteAction.run

    async def run_with_timeout(self, output_channel, nlg, tracker, domain):  # type: ignore[no-untyped-def]
        return await never_silent.run_with_timeout(run, self, output_channel, nlg, tracker, domain, timeout)

    run_with_timeout.__wrapped__ = run  # type: ignore[attr-defined]
    RemoteAction.run = run_with_timeout  # type: ignore[assignment]


def patch_local_actions() -> None:
    """``action_safety`` and ``action_session_start`` run in the Rasa process, never on the action server.

    Emergencies (911), crises (988) and the session-start disclaimer must not depend on the action
    server; see :class:`rasa_ext.never_silent.LocalActions`. The knowledge files are loaded here, so a
    broken knowledge folder stops the Rasa server at start-up, as it stops the action server.
    """
    from rasa.core.actions.action import RemoteAction

    from rasa_ext import never_silent

    never_silent.technical_problem_text()
    local = never_silent.LocalActions()
    run = RemoteAction.run

    async def run_locally_or_remotely(self, output_channel, nlg, tracker, domain):  # type: ignore[no-untyped-def]
        if local.handles(self.name()):
            return await local.run(self, output_channel, nlg, tracker, domain)
        return await run(self, output_channel, nlg, tracker, domain)

    run_locally_or_remotely.__wrapped__ = run  # type: ignore[attr-defined]
    RemoteAction.run = run_locally_or_remotely  # type: ignore[assignment]


def patch_never_silent_turns() -> None:
    """Every action the processor runs is wrapped in ``NeverSilentAction``: a failed action gives the
    visitor ``knowledge.technical_problem`` (once per turn) instead of silence, and a failed session
    start still starts the session, so a new visitor is not stuck behind Rasa's circuit breaker."""
    from rasa.core.processor import MessageProcessor

    from rasa_ext import never_silent

    run_action = MessageProcessor._run_action

    async def run_action_never_silent(self, action, tracker, output_channel, nlg, prediction):  # type: ignore[no-untyped-def]
        if not isinstance(action, never_silent.NeverSilentAction):
            action = never_silent.NeverSilentAction(action)
        return await run_action(self, action, tracker, output_channel, nlg, prediction)

    MessageProcessor._run_action = run_action_never_silent  # type: ignore[assignment]


def patch_bounded_spacy_vocabulary() -> None:
    """The spaCy pipeline is reloaded once its vocabulary has gained ``SPACY_MAX_NEW_STRINGS`` strings,
    so memory stays bounded with ever-new words (see :mod:`rasa_ext.spacy_memory`). Only message
    processing is patched; training is unchanged."""
    from rasa.nlu.utils.spacy_utils import SpacyNLP

    from rasa_ext import spacy_memory

    limit = spacy_memory.max_new_strings()
    process = SpacyNLP.process

    def process_bounded(self, messages, model):  # type: ignore[no-untyped-def]
        spacy_memory.bound_vocabulary(model, limit)
        return process(self, messages, model)

    SpacyNLP.process = process_bounded  # type: ignore[assignment]


PATCHES += [patch_action_timeout, patch_local_actions, patch_never_silent_turns, patch_bounded_spacy_vocabulary]


# --- Databases that come and go (issue 8 item 3) -------------------------------------------------------------

def patch_tracker_store_unavailable() -> None:
    """Rasa's ``FailSafeTrackerStore`` (which the Agent wraps around every tracker store) swallows every
    store error: a failed read becomes a fresh tracker (the visitor silently starts over) and a failed
    write is lost. It re-raises :class:`rasa_ext.tracker_store.TrackerStoreUnavailable` instead, so the
    channels answer with the technical-problem reply; every other error is handled as before. The store's
    constructor installs it too, so that the store keeps its promise when it is used without
    ``python -m rasa_ext`` (the call is idempotent)."""
    from rasa_ext.tracker_store import let_unavailable_through

    let_unavailable_through()


PATCHES += [patch_tracker_store_unavailable]


def apply() -> None:
    """Installs every patch once (a second call does nothing)."""
    global _applied
    if _applied:
        return
    _check_version()
    for patch in PATCHES:
        patch()
    _applied = True
    logger.debug("Applied %d Rasa patches", len(PATCHES))


# ---------------------------------------------------------------------------------------------------------
# Speed (engineer "speed", issue 9): the cost of a message, and its growth with the conversation's length.
# Each patch keeps the original function's results; tests/test_patches.py runs both on the same inputs.
# ---------------------------------------------------------------------------------------------------------

# type_name -> the class Event.resolve_by_type finds for it; emptied whenever an Event subclass is defined.
_event_types: Dict[str, type] = {}


def cache_event_types() -> None:
    """``Event.resolve_by_type`` looks the event's class up in a table instead of walking every subclass.

    Rasa 3.6.21 calls ``all_subclasses(Event)`` (a recursive walk with ``inspect.isabstract`` on each of
    ~30 classes) for *every* event it deserialises, and the tracker store deserialises the whole session on
    every message: about half a millisecond per event, so the cost of a turn grew with the conversation.
    The table keeps the first class in ``all_subclasses`` order for each type name (the one the walk
    returns), and is rebuilt after any new ``Event`` subclass is defined (``__init_subclass__``), so a
    class imported later is found exactly as before.
    """
    import rasa.shared.utils.common
    from rasa.shared.core.events import Event

    original = Event.resolve_by_type
    inherited_init_subclass = Event.__dict__.get("__init_subclass__")

    def resolve_by_type(type_name: str, default: Optional[type] = None) -> Optional[type]:
        if not _event_types:
            for cls in rasa.shared.utils.common.all_subclasses(Event):
                _event_types.setdefault(cls.type_name, cls)
        cls = _event_types.get(type_name)
        if cls is not None:
            return cls
        return original(type_name, default)  # unknown names: "topic", the default, or the same ValueError

    def __init_subclass__(cls: type, **kwargs: Any) -> None:
        _event_types.clear()
        if inherited_init_subclass is not None:
            inherited_init_subclass.__func__(cls, **kwargs)
        else:
            super(Event, cls).__init_subclass__(**kwargs)

    resolve_by_type.__doc__ = original.__doc__
    resolve_by_type.__wrapped__ = original  # type: ignore[attr-defined]
    Event.__init_subclass__ = classmethod(__init_subclass__)  # type: ignore[assignment]
    Event.resolve_by_type = staticmethod(resolve_by_type)  # type: ignore[assignment]


def prebuild_action_response_validator() -> None:
    """``RemoteAction._validate_action_result`` validates with a jsonschema validator built once.

    ``jsonschema.validate`` first checks the schema itself against the JSON Schema meta-schema, on every
    call: for Rasa's events schema that took longer than the rest of an action call. The schema is a
    constant, so it is checked once, when the validator is built; each response is then validated exactly
    as ``jsonschema.validate`` does (``best_match`` of the errors, the same ``ValidationError`` with Rasa's
    hint appended). A subclass that overrides ``action_response_format_spec`` keeps the original path.
    """
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.constants import DOCS_BASE_URL

    original = RemoteAction._validate_action_result
    spec = RemoteAction.action_response_format_spec
    built: list = []

    def _validate_action_result(self: RemoteAction, result: Dict[str, Any]) -> bool:
        if type(self).action_response_format_spec is not spec:
            return original(self, result)
        if not built:
            schema = spec()
            cls = validator_for(schema)
            cls.check_schema(schema)
            built.append(cls(schema))
        error = best_match(built[0].iter_errors(result))
        if error is None:
            return True
        error.message += (
            f". Failed to validate Action server response from API, "
            f"make sure your response from the Action endpoint is valid. "
            f"For more information about the format visit "
            f"{DOCS_BASE_URL}/custom-actions"
        )
        raise error

    _validate_action_result.__doc__ = original.__doc__
    _validate_action_result.__wrapped__ = original  # type: ignore[attr-defined]
    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[assignment]


PATCHES += [cache_event_types, prebuild_action_response_validator]


def window_rule_policy_states() -> None:
    """``RulePolicy`` computes the dialogue states of the last few turns only, not of the whole history.

    Rasa 3.6.21 builds the state of *every* past turn (``Domain.get_active_state`` on each prior tracker)
    up to three times per message, and deep-copies and formats them all for a debug log even when debug
    logging is off, so the cost of a message grew with the conversation. Only the last ``M`` states can
    decide which rule applies, ``M`` being the length of the longest rule in the trained lookup
    (``_is_rule_applicable`` accepts any rule at a turn further back than its length), so the patched
    ``predict_action_probabilities`` builds those ``M`` states once per prediction (the tracker is still
    replayed, which is cheap) and runs Rasa's own matching on them.

    Rasa's ``_predict`` also returns, when no rule applies, a key made of *all* states; at prediction time
    it only decides ``hide_rule_turn`` (whether the key is one of the lookup's ``rules_not_in_stories``).
    Those keys are at most ``K`` states long, so when the history has more than ``K`` states no key can
    match; when it has ``K`` or fewer, the original runs. The original also runs when debug logging is
    on for ``rasa.core.policies.rule_policy`` (its log shows all states), for a subclass of ``RulePolicy``
    or another featurizer, and for a tracker with a rule snippet action. Training is unchanged.
    """
    import copy

    from rasa.core.featurizers.tracker_featurizers import MaxHistoryTrackerFeaturizer
    from rasa.core.policies.rule_policy import (
        DO_NOT_PREDICT_LOOP_ACTION,
        LOOP_WAS_INTERRUPTED,
        RULES,
        RULES_FOR_LOOP_UNHAPPY_PATH,
        RULES_NOT_IN_STORIES,
        RulePolicy,
    )
    from rasa.shared.core.constants import ACTION_LISTEN_NAME, RULE_SNIPPET_ACTION_NAME
    from rasa.shared.core.events import ActionExecuted
    from rasa.shared.core.trackers import get_active_loop_name

    original = RulePolicy.predict_action_probabilities
    rule_logger = logging.getLogger("rasa.core.policies.rule_policy")

    def plan(policy: RulePolicy) -> Optional[tuple]:
        """(states needed, longest key of rules_not_in_stories) for this policy's lookup; None: original."""
        cached = policy.__dict__.get("_rasa_ext_window")
        if cached is not None and cached[0] is policy.lookup:
            return cached[1]
        result = None
        if type(policy) is RulePolicy and type(policy.featurizer) is MaxHistoryTrackerFeaturizer:
            rules = list(policy.lookup.get(RULES, {})) + list(policy.lookup.get(RULES_FOR_LOOP_UNHAPPY_PATH, {}))
            needed = max([len(policy._rule_key_to_state(key)) for key in rules] + [1])
            longest = 0
            for key in policy.lookup.get(RULES_NOT_IN_STORIES, []):
                try:
                    value = json.loads(key)
                except ValueError:
                    continue
                if isinstance(value, list):
                    longest = max(longest, len(value))
            result = (needed, longest)
        policy.__dict__["_rasa_ext_window"] = (policy.lookup, result)
        return result

    def last_states(tracker: Any, domain: Any, window: int) -> tuple:
        """(number of states, the last ``window`` states): what ``Domain.states_for_tracker_history``
        gives (without rule-only turns ignored), only the last ``window`` computed.

        The replay is kept on the tracker: the next prediction on the same tracker (the processor
        predicts again after each action) replays only the applied events added since, when the applied
        events start with exactly those replayed (the same objects); otherwise it replays them all."""
        applied = tracker.applied_events()
        memo = tracker.__dict__.get("_rasa_ext_states")
        if (memo is not None and memo[0] is domain and memo[1] == window and len(applied) >= len(memo[2])
                and all(a is b for a, b in zip(applied, memo[2]))):
            _, _, seen, replay, index, before = memo
            new, first = applied[len(seen):], 0
        else:
            replay, index, before, new = tracker.init_copy(), 0, collections.deque(maxlen=max(window - 1, 0)), applied
            first = 1 + sum(isinstance(event, ActionExecuted) for event in applied) - window
        for event in new:
            if isinstance(event, ActionExecuted):
                if index >= first:
                    before.append(domain._clean_state(domain.get_active_state(replay)))
                index += 1
            replay.update(event)
        tracker.__dict__["_rasa_ext_states"] = (domain, window, applied, replay, index, before)
        return 1 + index, [*before, domain._clean_state(domain.get_active_state(replay))]

    def predict_action_probabilities(self: RulePolicy, tracker: Any, domain: Any,
                                     rule_only_data: Optional[Dict[str, Any]] = None, **kwargs: Any) -> Any:
        window = plan(self)
        if (window is None or rule_logger.isEnabledFor(logging.DEBUG)
                or any(isinstance(event, ActionExecuted) and event.action_name == RULE_SNIPPET_ACTION_NAME
                       for event in tracker.events)):
            return original(self, tracker, domain, rule_only_data, **kwargs)
        needed, longest_unmatched_key = window
        computed: list = []

        def find(use_text: bool) -> tuple:
            """``_find_action_from_rules`` on the last states: (action, rule key or None, returning from
            an unhappy path, number of states)."""
            if use_text and tracker.latest_action_name != ACTION_LISTEN_NAME:
                return None, None, False, 0
            if not computed:
                computed.append(last_states(tracker, domain, needed))
            total, raw = computed[0]
            featurizer = self.featurizer
            states = featurizer.slice_state_history(copy.deepcopy(raw), featurizer.max_history)
            featurizer._choose_last_user_input([states], use_text)
            count = total if featurizer.max_history is None else min(total, featurizer.max_history)
            returning = False
            rule_keys = self._get_possible_keys(self.lookup[RULES], states)
            name = None
            best = ""
            if rule_keys:
                best = max(rule_keys, key=len)
                name = self.lookup[RULES].get(best)
            loop = tracker.active_loop_name
            if loop:
                unhappy = [self.lookup[RULES_FOR_LOOP_UNHAPPY_PATH].get(key)
                           for key in self._get_possible_keys(self.lookup[RULES_FOR_LOOP_UNHAPPY_PATH], states)]
                if name == ACTION_LISTEN_NAME and not get_active_loop_name(self._rule_key_to_state(best)[-1]):
                    if DO_NOT_PREDICT_LOOP_ACTION not in unhappy:
                        return loop, best, returning, count
                    name = None
                if LOOP_WAS_INTERRUPTED in unhappy:
                    returning = True
            return name, best or None, returning, count

        text_name, text_key, text_returning, _ = find(True)
        default_name, default_source = self._find_action_from_default_actions(tracker)
        if default_name and not text_name:
            return self._rule_prediction(self._prediction_result(default_name, tracker, domain), default_source)
        loop_name, loop_source = self._find_action_from_loop_happy_path(tracker)
        if loop_name:
            return self._rule_prediction(self._prediction_result(loop_name, tracker, domain), loop_source,
                                         is_no_user_prediction=True)
        if text_name:
            return self._rule_prediction(self._prediction_result(text_name, tracker, domain), text_key,
                                         returning_from_unhappy_path=text_returning, is_end_to_end_prediction=True)
        name, key, returning, count = find(False)
        if key is None and count <= longest_unmatched_key:
            # Rasa's key of all states might be one of rules_not_in_stories: let Rasa decide.
            return original(self, tracker, domain, rule_only_data, **kwargs)
        probabilities = (self._prediction_result(name, tracker, domain) if name
                         else self._default_predictions(domain))
        # With no rule, Rasa's key has more states than any of rules_not_in_stories: hide_rule_turn False.
        return self._rule_prediction(probabilities, key, returning_from_unhappy_path=text_returning or returning,
                                     is_end_to_end_prediction=False)

    predict_action_probabilities.__doc__ = original.__doc__
    predict_action_probabilities.__wrapped__ = original  # type: ignore[attr-defined]
    RulePolicy.predict_action_probabilities = predict_action_probabilities  # type: ignore[assignment]


PATCHES += [window_rule_policy_states]


def undo_without_copying() -> None:
    """``DialogueStateTracker._undo_till_previous`` removes the undone events without copying the list.

    ``applied_events`` (run several times per message over the whole session) calls it for every reverted
    turn (``UserUtteranceReverted``, ``ActionReverted``: the back button, the fallback's reverts) and the
    original copied all events applied so far each time (``reversed(done_events[:])``), so a session's
    cost grew with the square of its reverts. It removes the same events, from the end, up to and
    including the first of ``event_type``.
    """
    from rasa.shared.core.trackers import DialogueStateTracker

    original = DialogueStateTracker.__dict__["_undo_till_previous"].__func__

    def _undo_till_previous(event_type: type, done_events: list) -> None:
        while done_events:
            if isinstance(done_events.pop(), event_type):
                break

    _undo_till_previous.__doc__ = original.__doc__
    _undo_till_previous.__wrapped__ = original  # type: ignore[attr-defined]
    DialogueStateTracker._undo_till_previous = staticmethod(_undo_till_previous)  # type: ignore[assignment]


PATCHES += [undo_without_copying]


# How far back the action server sees: the visitor's last ``PAYLOAD_USER_MESSAGES`` messages (and what came
# after them), and each loop's latest activation. The project's actions read no further back (see
# :func:`window_action_payload`); tests/test_action_payload.py holds them to it.
PAYLOAD_USER_MESSAGES = 3


def payload_window_start(events: List[Any]) -> int:
    """The index of the first event the action server is sent: the visitor's ``PAYLOAD_USER_MESSAGES``-th
    latest message, or the latest activation of a loop if that is earlier, or 0 (every event)."""
    users = 0
    start = len(events)
    seen_loops = set()
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        name = event.type_name
        if name == "user" and users < PAYLOAD_USER_MESSAGES:
            users += 1
            start = index
        elif name == "active_loop" and event.name and event.name not in seen_loops:
            seen_loops.add(event.name)
            start = index
    return 0 if users < PAYLOAD_USER_MESSAGES else start


def window_action_payload() -> None:
    """``RemoteAction`` sends the action server the events of the last few turns, not the whole session.

    Rasa 3.6.21 sends every event of the session (``EventVerbosity.ALL``) with every action call, and each
    user event carries its whole parse data: at turn 100 that was about 290 KB per call, serialised by Rasa
    and parsed by the action server on every call, so the cost of a message grew with the conversation.
    The project's actions read events back to the visitor's previous message at most (``_previous_slot``
    in actions/answers.py, ``answers_latest_message`` in actions/booking.py) and to the consultation form's
    latest activation (``form_started_at``); rasa_sdk's form validation reads the slot events at the end.
    So the payload keeps the events from the visitor's ``PAYLOAD_USER_MESSAGES``-th latest message (or from
    the latest activation of each loop, if earlier) to the end. Everything else in the payload (slots,
    latest message, active loop, latest action, input channel, the time of the latest event, the domain)
    is exactly what Rasa sends, computed from the whole tracker.
    """
    from rasa.core.actions.action import RemoteAction

    original = RemoteAction._action_call_format

    def _action_call_format(self: RemoteAction, tracker: Any, domain: Any) -> Dict[str, Any]:
        events = list(tracker.events)
        start = payload_window_start(events)
        if start == 0:
            return original(self, tracker, domain)
        result = original(self, _WithoutEvents(tracker), domain)
        result["tracker"]["events"] = [event.as_dict() for event in events[start:]]
        return result

    _action_call_format.__doc__ = original.__doc__
    _action_call_format.__wrapped__ = original  # type: ignore[attr-defined]
    RemoteAction._action_call_format = _action_call_format  # type: ignore[assignment]


class _WithoutEvents:
    """A tracker whose ``current_state`` leaves the events out (they are added from the window)."""

    def __init__(self, tracker: Any) -> None:
        self._tracker = tracker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracker, name)

    def current_state(self, event_verbosity: Any = None) -> Dict[str, Any]:
        return self._tracker.current_state()  # EventVerbosity.NONE: "events" is None


PATCHES += [window_action_payload]


def memoise_applied_events() -> None:
    """``DialogueStateTracker.applied_events`` continues from its previous result when events were only
    added, and tells event types apart with a table instead of an ``isinstance`` chain.

    Rasa 3.6.21 computes the applied events from the first event on every call, and a message calls it
    several times (the session check twice, each policy prediction, each payload): each call costs about
    a microsecond per event of the session (``isinstance`` against Rasa's abstract ``Event`` classes),
    so the cost of a message grew with the conversation. The patched method keeps, on the tracker, the
    events it saw and its result; when the tracker's events start with exactly those (the same objects,
    checked one by one) and no loop name appeared that the earlier events did not have, it applies the
    same rules to the new events only. Anything else (a tracker with a bounded event history, events
    removed or replaced, a new loop name, a subclass that overrides a helper the rules use) computes
    everything again, as Rasa does. Callers get a new list each time, as before.
    """
    from rasa.shared.core.events import (
        ActionExecuted,
        ActionReverted,
        ActiveLoop,
        Restarted,
        SessionStarted,
        UserUtteranceReverted,
        UserUttered,
    )
    from rasa.shared.core.trackers import DialogueStateTracker

    original = DialogueStateTracker.applied_events
    helpers = {name: DialogueStateTracker.__dict__[name] for name in
               ("_undo_till_previous", "_first_loop_execution_or_unhappy_path", "_undo_till_previous_loop_execution")}
    reset, undo, rewind, action, other = range(5)
    kinds: Dict[type, tuple] = {}

    def kind(event: Any) -> tuple:
        """(what the rules do with an event of this type, whether it is an ``ActiveLoop``)."""
        cls = type(event)
        found = kinds.get(cls)
        if found is None:
            if isinstance(event, (Restarted, SessionStarted)):
                rule = reset
            elif isinstance(event, ActionReverted):
                rule = undo
            elif isinstance(event, UserUtteranceReverted):
                rule = rewind
            elif isinstance(event, ActionExecuted):
                rule = action
            else:
                rule = other
            found = kinds[cls] = (rule, isinstance(event, ActiveLoop))
        return found

    def fold(tracker: Any, events: Any, applied: list, loop_names: frozenset) -> list:
        """Rasa's rules of ``applied_events``, applied to ``events`` after ``applied``."""
        for event in events:
            rule = kind(event)[0]
            if rule == reset:
                applied = []
            elif rule == undo:
                tracker._undo_till_previous(ActionExecuted, applied)
            elif rule == rewind:
                tracker._undo_till_previous(UserUttered, applied)
                tracker._undo_till_previous(ActionExecuted, applied)
            elif (rule == action and event.action_name in loop_names
                  and not tracker._first_loop_execution_or_unhappy_path(event.action_name, applied)):
                tracker._undo_till_previous_loop_execution(event.action_name, applied)
            else:
                applied.append(event)
        return applied

    def loop_names_of(events: Any) -> frozenset:
        return frozenset(event.name for event in events if kind(event)[1] and event.name)

    def applied_events(self: DialogueStateTracker) -> List[Any]:
        events = self.events
        if (getattr(events, "maxlen", None) is not None
                or any(type(self).__dict__.get(name, helper) is not helper for name, helper in helpers.items())):
            return original(self)
        memo = self.__dict__.get("_rasa_ext_applied")
        if memo is not None:
            seen, loop_names, applied = memo
            if (len(events) >= len(seen) and all(a is b for a, b in zip(events, seen))
                    and loop_names_of(itertools.islice(events, len(seen), None)) <= loop_names):
                new = list(itertools.islice(events, len(seen), None))
                if new:
                    applied = fold(self, new, list(applied), loop_names)
                    self.__dict__["_rasa_ext_applied"] = (seen + new, loop_names, applied)
                return list(applied)
        seen = list(events)
        loop_names = loop_names_of(seen)
        applied = fold(self, seen, [], loop_names)
        self.__dict__["_rasa_ext_applied"] = (seen, loop_names, applied)
        return list(applied)

    applied_events.__doc__ = original.__doc__
    applied_events.__wrapped__ = original  # type: ignore[attr-defined]
    DialogueStateTracker.applied_events = applied_events  # type: ignore[assignment]


PATCHES += [memoise_applied_events]


def copy_without_replaying() -> None:
    """``DialogueStateTracker.copy`` copies the tracker's state instead of replaying every event.

    Rasa 3.6.21 copies the tracker for every action it runs (``MessageProcessor._run_action``), by
    replaying all its events into a new tracker (``travel_back_in_time(inf)``): twice per message, a cost
    that grew with the conversation. A tracker's state is what its events made of it (Rasa changes it
    only through ``update``), so the patched copy is a new tracker (``init_copy``, as before) given the
    same events (the same objects, as the replay gives it) and a copy of the state they produced: slots
    (copied, with their values), the loop (copied), the latest action (copied), the latest message and bot
    utterance (the same events), the pause and the follow-up action. The original runs whenever that
    could differ from a replay: a subclass, a bounded event history, slots that are not a plain dict, an
    event whose timestamp the replay would stop at, a latest message or bot utterance that is not the
    last such event since the last reset (a reverted turn, a new session), or an event since that reset
    that changes a latest message the tracker does not hold as an event.
    """
    import copy as copying
    import dataclasses

    from rasa.shared.core.events import (
        ActionReverted,
        BotUttered,
        DefinePrevUserUtteredFeaturization,
        EntitiesAdded,
        Restarted,
        SessionStarted,
        UserUtteranceReverted,
        UserUttered,
    )
    from rasa.shared.core.trackers import DialogueStateTracker

    original = DialogueStateTracker.copy
    infinity = float("inf")

    def latest_events(tracker: DialogueStateTracker) -> Optional[tuple]:
        """(the latest message, the latest bot utterance) a replay would leave, each the event itself or
        None for the fresh empty one; None when this cannot be told from the events since the last reset
        (a reverted turn replays the applied events; an event changed an empty latest message)."""
        user = bot = None
        changes_message = False
        for event in reversed(tracker.events):
            if isinstance(event, (UserUtteranceReverted, ActionReverted)):
                return None if user is None or bot is None else (user, bot)
            if isinstance(event, (Restarted, SessionStarted)):
                break
            if user is None and isinstance(event, UserUttered):
                user = event
            elif bot is None and isinstance(event, BotUttered):
                bot = event
            elif user is None and isinstance(event, (EntitiesAdded, DefinePrevUserUtteredFeaturization)):
                changes_message = True
            if user is not None and bot is not None:
                return user, bot
        return None if user is None and changes_message else (user, bot)

    def copy(self: DialogueStateTracker) -> DialogueStateTracker:
        try:
            replayable = all(event.timestamp <= infinity for event in self.events)
        except TypeError:
            replayable = False
        latest = latest_events(self) if replayable else None
        if (type(self) is not DialogueStateTracker or self._max_event_history is not None
                or type(self.slots) is not dict or latest is None
                or (latest[0] is not None and self.latest_message is not latest[0])
                or (latest[1] is not None and self.latest_bot_utterance is not latest[1])):
            return original(self)
        new = self.init_copy()  # its own empty latest message and bot utterance, as a replay starts
        new.events.extend(self.events)
        new.slots = {name: copying.copy(slot) for name, slot in self.slots.items()}
        new._paused = self._paused
        new.followup_action = self.followup_action
        new.latest_action = dict(self.latest_action) if self.latest_action is not None else None
        new.active_loop = dataclasses.replace(self.active_loop) if self.active_loop is not None else None
        if latest[0] is not None:
            new.latest_message = latest[0]
        if latest[1] is not None:
            new.latest_bot_utterance = latest[1]
        return new

    copy.__doc__ = original.__doc__
    copy.__wrapped__ = original  # type: ignore[attr-defined]
    DialogueStateTracker.copy = copy  # type: ignore[assignment]


PATCHES += [copy_without_replaying]
