"""Emergency and crisis routing, which takes priority over everything else.

The NLU pipeline routes red flags whatever the classifier said (``components/safety_net.py`` with the
patterns of :func:`core.intents.classify`); :class:`ActionSafety` gives the reply and ends any form
in progress.
"""

from __future__ import annotations

from typing import Any, Dict, Text

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.base import ClinicAction, EventList, latest_intent, say
from actions.booking import end_booking
from core.intents import CRISIS_INTENT
from core.knowledge import Reply


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
