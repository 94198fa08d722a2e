"""Never silent, inside the Rasa server: whatever the action server does, every visitor message gets a reply.

Rasa 3.6 treats a failed custom action as "no events": when the action server is down, hung, restarting
or answering errors, the REST channel answers ``[]`` (an emergency included), a hung server holds the turn
for minutes (aiohttp's 5-minute default), and a *new* visitor whose ``action_session_start`` failed is
left without ``SessionStarted``/``action_listen``, so RulePolicy predicts ``action_fallback`` ten times,
Rasa's circuit breaker trips, and every later turn of that conversation stays empty until the session
expires. Three fixes, each installed by one function at the end of this module (listed, with their
reasons, in :mod:`rasa_ext.patches`):

1. **Local safety and session start** (:class:`LocalActions`). ``action_safety`` and
   ``action_session_start`` run in the Rasa process itself, always, with rasa_sdk's own
   ``ActionExecutor`` over the project's own action classes (``actions.safety.ActionSafety``,
   ``actions.answers.ActionSessionStart``): they are pure functions of the knowledge files, which the
   Rasa process already loads for its NLU safety net. The call goes through the same steps as the
   remote call (``RemoteAction._action_call_format``, a JSON round trip, ``_utter_responses``,
   ``deserialise_events``; rasa_sdk's executor checks the events), so the events are exactly those
   the action server would have returned. Always local rather than "remote first, local when it
   fails": that alternative makes every emergency wait out the timeout while the action server hangs,
   and the local call is also the faster one (measured on 2 busy cores, median of 50 calls: 220 ms
   for the HTTP call, most of it Rasa's jsonschema check of the response, against 0.4 ms locally; 320
   against 11 ms after 50 turns, when the tracker's JSON round trip dominates).
2. **A call timeout** (:func:`action_timeout`): every remote call is bounded by ``ACTION_TIMEOUT``
   seconds (default 5, well under the widget's 10 s), after which it counts as failed.
3. **A reply for every failed action** (:class:`NeverSilentAction`): every action the processor runs
   is wrapped; if it raises (anything but ``ActionExecutionRejection``, which is how forms legitimately
   hand over to other policies), the turn gets ``knowledge.technical_problem`` once, and the action's
   events are those of a harmless no-op, so the dialogue state stays where it was: a form in progress
   keeps its active loop and requested slot and takes the visitor's next message as the answer once
   the action server is back. A failed session start still starts the session (Rasa's default
   ``action_session_start`` events). After one failure, later calls to the action server in the same
   turn are skipped, so a hung server costs one timeout per turn, not one per action.

None of this changes a turn in which the action server answers: the wrapped action returns the inner
action's events unchanged (tests/test_never_silent.py compares a patched and an unpatched server).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Text, Type

from rasa.core.actions.action import (
    Action,
    ActionExecutionRejection,
    ActionSessionStart,
    RemoteAction,
    create_bot_utterance,
)
from rasa.core.actions.forms import FormAction
from rasa.shared.core.constants import ACTION_SESSION_START_NAME
from rasa.shared.core.events import BotUttered, Event, UserUttered, deserialise_events
from rasa.shared.exceptions import RasaException

if TYPE_CHECKING:
    from rasa.core.channels.channel import OutputChannel
    from rasa.core.nlg import NaturalLanguageGenerator
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

logger = logging.getLogger(__name__)

ACTION_TIMEOUT_VARIABLE = "ACTION_TIMEOUT"
DEFAULT_ACTION_TIMEOUT = 5.0
# The actions the Rasa process runs itself (see the module docstring).
LOCAL_ACTION_NAMES = ("action_safety", ACTION_SESSION_START_NAME)


class ActionServerFailure(RasaException):
    """A call to the action server failed, was refused or timed out."""


def action_timeout() -> float:
    """The most seconds a call to the action server may take (``ACTION_TIMEOUT``, default 5)."""
    raw = os.environ.get(ACTION_TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_ACTION_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value <= 300:
        raise ValueError(f"{ACTION_TIMEOUT_VARIABLE} must be a number of seconds between 0 and 300, not {raw!r}")
    return value


def log_like_rasa() -> None:
    """Lets the INFO lines of the project's Rasa-side packages (this one, the NLU components) through: Rasa sets the level of its own ``rasa`` logger only (from
    ``LOG_LEVEL``, default INFO), and the root logger stays at WARNING."""
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    for package in ("rasa_ext", "components"):
        logging.getLogger(package).setLevel(level if isinstance(logging.getLevelName(level), int) else "INFO")


def technical_problem_text() -> str:
    """The reply for "the action server cannot answer", from the knowledge files."""
    from core.knowledge_loader import get_knowledge

    return get_knowledge().technical_problem


# --- 1. Local safety and session start --------------------------------------------------------------


def _default_action_classes() -> List[Type[Any]]:
    from actions.answers import ActionSessionStart as ClinicSessionStart
    from actions.safety import ActionSafety

    return [ActionSafety, ClinicSessionStart]


class LocalActions:
    """Runs some of the project's rasa_sdk actions inside the Rasa process, as the action server would."""

    def __init__(self, classes: Optional[Iterable[Type[Any]]] = None) -> None:
        from rasa_sdk.executor import ActionExecutor

        self.executor = ActionExecutor()
        for action_class in classes if classes is not None else _default_action_classes():
            self.executor.register_action(action_class)

    @property
    def names(self) -> List[str]:
        return sorted(self.executor.actions)

    def handles(self, name: Text) -> bool:
        return name in self.executor.actions

    async def run(self, action: RemoteAction, output_channel: "OutputChannel", nlg: "NaturalLanguageGenerator",
                  tracker: "DialogueStateTracker", domain: "Domain") -> List[Event]:
        """What ``action.run`` returns when the action server runs it, without the action server."""
        from rasa_sdk.interfaces import ActionExecutionRejection as SdkRejection

        # The same request body and the same JSON round trip as the HTTP call, so the action sees
        # exactly what the action server would.
        action_call = json.loads(json.dumps(action._action_call_format(tracker, domain)))
        try:
            response = await self.executor.run(action_call)
        except SdkRejection as rejection:
            raise ActionExecutionRejection(rejection.action_name, rejection.message) from None
        response = json.loads(json.dumps(response or {}))
        # Not ``_validate_action_result``: the response comes from the project's own code, whose events
        # rasa_sdk's executor has just checked, and jsonschema's check costs most of a remote call.
        bot_messages = await action._utter_responses(response.get("responses", []), output_channel, nlg, tracker)
        return [*bot_messages, *deserialise_events(response.get("events", []))]


# --- 3. A reply for every failed action -------------------------------------------------------------


def failed_this_turn(tracker: "DialogueStateTracker", text: Optional[str] = None) -> bool:
    """Whether the technical-problem reply was already given since the visitor's latest message."""
    text = text or technical_problem_text()
    for event in reversed(tracker.events):
        if isinstance(event, UserUttered):
            return False
        if isinstance(event, BotUttered) and event.text == text:
            return True
    return False


def needs_action_server(action: Action) -> bool:
    """Whether running ``action`` calls the action server (a custom action, or a form, which calls its
    validation and question actions)."""
    inner = action.action if isinstance(action, NeverSilentAction) else action
    if isinstance(inner, FormAction):
        return True
    return isinstance(inner, RemoteAction) and inner.name() not in LOCAL_ACTION_NAMES


class NeverSilentAction(Action):
    """Wraps an action so that its failure gives the visitor the technical-problem reply instead of silence.

    When the wrapped action succeeds its events are returned unchanged.
    """

    def __init__(self, action: Action) -> None:
        self.action = action

    def name(self) -> Text:
        return self.action.name()

    def event_for_successful_execution(self, prediction: Any) -> Any:
        return self.action.event_for_successful_execution(prediction)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.action, attribute)

    def __str__(self) -> Text:
        return str(self.action)

    async def run(self, output_channel: "OutputChannel", nlg: "NaturalLanguageGenerator",
                  tracker: "DialogueStateTracker", domain: "Domain") -> List[Event]:
        text = technical_problem_text()
        if needs_action_server(self.action) and failed_this_turn(tracker, text):
            # The action server already failed in this turn and the visitor was told: do not wait again.
            logger.warning("Skipped action '%s' in conversation %s: the action server failed earlier in this turn",
                           self.name(), tracker.sender_id)
            return await self._failure_events(output_channel, nlg, tracker, domain, reply=None)
        try:
            return await self.action.run(output_channel, nlg, tracker, domain)
        except ActionExecutionRejection:
            raise
        except Exception as error:  # noqa: BLE001 - whatever failed, the visitor gets a reply
            # Rasa's errors name the action and the cause; any other error's text might quote the
            # conversation (a schema error quotes the response), so only its type is logged.
            detail = f": {error}" if isinstance(error, RasaException) else ""
            logger.error("Action '%s' failed in conversation %s (%s%s); the visitor is told there is a "
                         "technical problem", self.name(), tracker.sender_id, type(error).__name__, detail)
            reply = None if failed_this_turn(tracker, text) else text
            return await self._failure_events(output_channel, nlg, tracker, domain, reply=reply)

    async def _failure_events(self, output_channel: "OutputChannel", nlg: "NaturalLanguageGenerator",
                              tracker: "DialogueStateTracker", domain: "Domain",
                              reply: Optional[str]) -> List[Event]:
        events: List[Event] = [create_bot_utterance({"text": reply})] if reply else []
        if self.name() == ACTION_SESSION_START_NAME:
            # The session must start whatever failed, or the conversation is stuck (see the docstring).
            events += await ActionSessionStart().run(output_channel, nlg, tracker, domain)
        return events


# --- 2. The call timeout ----------------------------------------------------------------------------


async def run_with_timeout(run: Any, action: RemoteAction, output_channel: "OutputChannel",
                           nlg: "NaturalLanguageGenerator", tracker: "DialogueStateTracker",
                           domain: "Domain", timeout: float) -> List[Event]:
    """``run(action, …)`` (Rasa's ``RemoteAction.run``), failing after ``timeout`` seconds."""
    try:
        return await asyncio.wait_for(run(action, output_channel, nlg, tracker, domain), timeout)
    except asyncio.TimeoutError:
        raise ActionServerFailure(f"The action server did not answer action '{action.name()}' "
                                  f"within {timeout:g} s ({ACTION_TIMEOUT_VARIABLE})") from None


def response_summary(events: Iterable[Event]) -> List[Dict[str, Any]]:
    """Events without their timestamps, for comparing two runs of the same action."""
    summary = []
    for event in events:
        data = event.as_dict()
        data.pop("timestamp", None)
        summary.append(data)
    return summary


# --- Installing the three fixes (listed, with their reasons, in rasa_ext/patches.py) ---------------------

def install_action_timeout() -> None:
    """A hung action server holds a turn for at most ``ACTION_TIMEOUT`` seconds (default 5), not minutes.

    ``RemoteAction.run`` uses aiohttp's timeout of ``DEFAULT_REQUEST_TIMEOUT`` (5 minutes); the wrapper
    raises ``ActionServerFailure`` when the call takes longer than the timeout.
    """
    from rasa.core.actions.action import RemoteAction

    log_like_rasa()
    timeout = action_timeout()  # a bad value stops the start, naming the variable
    run = RemoteAction.run

    async def run_bounded(self, output_channel, nlg, tracker, domain):  # type: ignore[no-untyped-def]
        return await run_with_timeout(run, self, output_channel, nlg, tracker, domain, timeout)

    run_bounded.__wrapped__ = run  # type: ignore[attr-defined]
    RemoteAction.run = run_bounded  # type: ignore[assignment]


def install_local_actions() -> None:
    """``action_safety`` and ``action_session_start`` run in the Rasa process, never on the action server.

    Emergencies (911), crises (988) and the session-start disclaimer must not depend on the action
    server; see :class:`LocalActions`. The knowledge files are loaded here, so a
    broken knowledge folder stops the Rasa server at start-up, as it stops the action server.
    """
    from rasa.core.actions.action import RemoteAction

    technical_problem_text()
    local = LocalActions()
    run = RemoteAction.run

    async def run_locally_or_remotely(self, output_channel, nlg, tracker, domain):  # type: ignore[no-untyped-def]
        if local.handles(self.name()):
            return await local.run(self, output_channel, nlg, tracker, domain)
        return await run(self, output_channel, nlg, tracker, domain)

    run_locally_or_remotely.__wrapped__ = run  # type: ignore[attr-defined]
    RemoteAction.run = run_locally_or_remotely  # type: ignore[assignment]


def install_never_silent_turns() -> None:
    """Every action the processor runs is wrapped in ``NeverSilentAction``: a failed action gives the
    visitor ``knowledge.technical_problem`` (once per turn) instead of silence, and a failed session
    start still starts the session, so a new visitor is not stuck behind Rasa's circuit breaker."""
    from rasa.core.processor import MessageProcessor

    run_action = MessageProcessor._run_action

    async def run_action_never_silent(self, action, tracker, output_channel, nlg, prediction):  # type: ignore[no-untyped-def]
        if not isinstance(action, NeverSilentAction):
            action = NeverSilentAction(action)
        return await run_action(self, action, tracker, output_channel, nlg, prediction)

    MessageProcessor._run_action = run_action_never_silent  # type: ignore[assignment]
