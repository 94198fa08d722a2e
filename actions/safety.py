"""Emergency and crisis routing, which takes priority over everything else.

:func:`classify` is the keyword safety net (patterns from ``knowledge/safety.yml``); the NLU pipeline
runs it on every message (``components/safety_net.py``) so that a red flag is routed, and a request for
medical advice refused, even when the trained classifier misses it. :class:`ActionSafety` gives the reply and ends any form in progress.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Text

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.base import ClinicAction, EventList, latest_intent, say
from actions.knowledge import Knowledge, Reply
from actions.limits import bounded
from actions.slots import end_booking

EMERGENCY_INTENT = "emergency"
CRISIS_INTENT = "crisis"
MEDICAL_ADVICE_INTENT = "medical_advice"
SAFETY_INTENTS = (EMERGENCY_INTENT, CRISIS_INTENT)


def classify(text: str, knowledge: Knowledge) -> Optional[str]:
    """The intent a safety pattern gives ``text``: ``crisis``, ``emergency`` or ``medical_advice``,
    checked in that order; None if no pattern matches.

    The patterns see at most :data:`~actions.limits.MAX_TEXT_CHARS` characters, the channels' own
    message limit, so no message is cut and none can make them slow (tests/test_redos.py)."""
    text = bounded(text)
    for intent, patterns in ((CRISIS_INTENT, knowledge.crisis_patterns),
                             (EMERGENCY_INTENT, knowledge.emergency_patterns),
                             (MEDICAL_ADVICE_INTENT, knowledge.medical_advice_patterns)):
        if any(pattern.search(text) for pattern in patterns):
            return intent
    return None


class ActionSafety(ClinicAction):
    """Routes an emergency to 911 and a crisis to 988 and 911, ending any form in progress.

    If anything fails, the base class's apology is said instead; it names 911 too (replies.yml).
    """

    def name(self) -> Text:
        return "action_safety"

    async def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        intent, _ = latest_intent(tracker)
        text = self.knowledge.crisis_text if intent == CRISIS_INTENT else self.knowledge.emergency_text
        say(dispatcher, Reply(text))
        return self.events_on_failure(tracker)

    def events_on_failure(self, tracker: Tracker) -> EventList:
        # Whatever was in progress (a consultation request) ends here, and its details are dropped.
        return end_booking()
