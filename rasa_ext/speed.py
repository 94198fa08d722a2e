"""Speed: the cost of a message, and its growth with the conversation's length, inside Rasa 3.6.21.

Each function installs one change of a Rasa internal that no extension point reaches (the tracker, the
events, the action call); :mod:`rasa_ext.patches` lists them with their reasons and installs them. Each keeps
the original function's results: ``tests/test_patches.py`` and ``tests/test_action_payload.py`` run both on
the same inputs (the original is kept as ``__wrapped__``).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Dict, List, Optional

from core.payload import payload_window_start

logger = logging.getLogger(__name__)

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


def window_action_payload() -> None:
    """``RemoteAction`` sends the action server the events of the last few turns, not the whole session.

    Rasa 3.6.21 sends every event of the session (``EventVerbosity.ALL``) with every action call, and each
    user event carries its whole parse data: at turn 100 that was about 290 KB per call, serialised by Rasa
    and parsed by the action server on every call, so the cost of a message grew with the conversation.
    The payload keeps the events of :mod:`core.payload`'s window: from the visitor's third-latest message
    (or from the latest activation of each loop, if earlier) to the end. The project's actions read the
    conversation only through ``ClinicAction.payload_events`` (actions/base.py), the same window, and
    rasa_sdk's form validation reads the slot events at the end. Everything else in the payload (slots,
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
