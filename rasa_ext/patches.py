"""The project's fixes inside Rasa Open Source 3.6.21, applied at start-up by ``python -m rasa_ext``.

Rasa 3.6 is the last open-source release, so its defects are fixed here rather than upstream. Each fix
is one function below, documented with the defect it fixes; :func:`apply` installs them all, once, and
refuses to install anything on another Rasa version (the patched internals may differ there). Tests in
``tests/test_patches.py`` and ``tests/test_never_silent.py`` prove that each patched function returns
exactly what the original did.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional

logger = logging.getLogger(__name__)

RASA_VERSION = "3.6.21"

_applied = False


class PatchError(RuntimeError):
    """The installed Rasa is not the version these patches were written for."""


def _check_version() -> None:
    import rasa

    if rasa.__version__ != RASA_VERSION:
        raise PatchError(f"rasa_ext.patches is written for Rasa {RASA_VERSION}, not {rasa.__version__}: "
                         f"review each patch against the new version before changing RASA_VERSION")


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
