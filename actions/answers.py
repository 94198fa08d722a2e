"""Answers from the article, conversation replies, the fallback and the start of a conversation."""

from __future__ import annotations

from typing import Any, Dict, Text

from rasa_sdk import Tracker
from rasa_sdk.events import ActionExecuted, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.base import ClinicAction, EventList, latest_intent, latest_text, say
from actions.knowledge import THERAPY_ENTITY, TREATMENT_INTENT, Knowledge, Reply, Topic

THERAPY_SLOT = "therapy"


def therapy_asked(knowledge: Knowledge, tracker: Tracker) -> Topic | None:
    """The treatment the latest message asks about: its entity, else a mention in its text."""
    for value in tracker.get_latest_entity_values(THERAPY_ENTITY):
        therapy = knowledge.therapy_from_value(value)
        if therapy:
            return therapy
    return knowledge.therapy_in_text(latest_text(tracker))


class ActionAnswer(ClinicAction):
    """Answers the latest message's intent from the knowledge files.

    An article topic gets its answer, the next step and related-topic buttons; a treatment question
    gets that treatment's answer, or the overview when no treatment is named; every other intent gets
    its reply from ``replies.yml``; anything else gets the fallback.
    """

    def name(self) -> Text:
        return "action_answer"

    async def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        knowledge = self.knowledge
        intent, _ = latest_intent(tracker)
        topic = knowledge.topic_for_intent(intent or "")
        if topic is not None:
            events: EventList = []
            if intent == TREATMENT_INTENT:
                therapy = therapy_asked(knowledge, tracker)
                if therapy is not None:
                    topic = therapy
                    events.append(SlotSet(THERAPY_SLOT, therapy.key))
            say(dispatcher, knowledge.answer(topic))
            return events
        say(dispatcher, knowledge.replies.get(intent or "", knowledge.fallback))
        return []


class ActionFallback(ClinicAction):
    """Says what the assistant can help with and offers the phone number."""

    def name(self) -> Text:
        return "action_fallback"

    async def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        say(dispatcher, self.knowledge.fallback)
        return []


class ActionSessionStart(ClinicAction):
    """Starts every conversation (session) with the one-line disclaimer.

    Nothing is carried over from an earlier session: a half-finished consultation request is not
    resumed an hour later with someone else's details.
    """

    def name(self) -> Text:
        return "action_session_start"

    async def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        say(dispatcher, Reply(self.knowledge.disclaimer))
        return [SessionStarted(), ActionExecuted("action_listen")]
