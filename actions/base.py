"""What every action of the assistant shares."""

from __future__ import annotations

import abc
import logging
import sys
import traceback
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from core.knowledge import Knowledge, Reply
from core.knowledge_loader import get_knowledge
from core.limits import bounded
from core.payload import payload_window_start

logger = logging.getLogger(__name__)

EventList = List[Dict[Text, Any]]


def log_failure(log: logging.Logger, message: str, *args: Any) -> None:
    """Logs the exception being handled with ``message``: its type and stack, never its own text.

    An exception's message can quote what it failed on (a visitor's text, a slot's value), and logs
    must carry conversation ids only.
    """
    error_type, _, stack = sys.exc_info()
    name = error_type.__name__ if error_type else "error"
    log.error(f"{message} ({name})\n%s", *args, "".join(traceback.format_tb(stack)).rstrip())


def say(dispatcher: CollectingDispatcher, reply: Reply) -> None:
    """Sends ``reply`` with its quick-reply buttons."""
    buttons = [button.as_dict() for button in reply.buttons]
    dispatcher.utter_message(text=reply.text, buttons=buttons)


def latest_intent(tracker: Tracker) -> tuple[Optional[str], float]:
    """The name and confidence of the intent of the visitor's latest message."""
    intent = (tracker.latest_message or {}).get("intent") or {}
    return intent.get("name"), float(intent.get("confidence") or 0.0)


def latest_text(tracker: Tracker) -> str:
    """The visitor's latest message as typed (or the payload of the button clicked), cut to the length
    every pattern may see (:mod:`core.limits`)."""
    text = (tracker.latest_message or {}).get("text")
    return bounded(text if isinstance(text, str) else "")


def payload_events(tracker: Tracker) -> EventList:
    """The events of the conversation an action may read: those of the payload window, from the visitor's
    third-latest message to the end, or from each loop's latest activation if that is earlier (the whole
    conversation while it has fewer messages).

    The Rasa server sends an action no more than these (:mod:`core.payload`: a whole long conversation
    made every call slower), so an action that looked further back would work in short conversations and
    fail in long ones. Every action reads events through this function (``ClinicAction.payload_events``),
    never ``tracker.events``; it gives the same window whether it is sent the window or the whole session.
    ``tests/test_action_payload.py`` fails when an action reads past it."""
    events = tracker.events
    return events[payload_window_start(events):]


class ClinicAction(Action, abc.ABC):
    """An action that always answers.

    Subclasses implement :meth:`respond`. If it raises, the visitor gets an apology with the clinic's
    phone number instead of silence, and the error is logged with the conversation id (never the
    visitor's text, which may hold personal data, nor the error's message, which may quote it).

    The events it may read are :meth:`payload_events` (the payload window, stated there).
    """

    payload_events = staticmethod(payload_events)

    @property
    def knowledge(self) -> Knowledge:
        """The knowledge loaded at start-up."""
        return get_knowledge()

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        try:
            return await self.respond(dispatcher, tracker, domain)
        except Exception:  # noqa: BLE001 - the visitor must get an answer whatever failed
            log_failure(logger, "Action %s failed in conversation %s", self.name(), tracker.sender_id)
            dispatcher.messages.clear()
            dispatcher.utter_message(text=self.knowledge.error_text)
            return self.events_on_failure(tracker)

    def events_on_failure(self, tracker: Tracker) -> EventList:
        """The events to return when :meth:`respond` failed (none by default)."""
        return []

    @abc.abstractmethod
    async def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        """Sends the action's messages and returns its events."""
