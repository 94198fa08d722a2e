"""Answers from the article, conversation replies, the fallback and the start of a conversation."""

from __future__ import annotations

import re
from typing import Any, Dict, Optional, Text

from rasa_sdk import Tracker
from rasa_sdk.events import ActionExecuted, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.base import ClinicAction, EventList, latest_intent, latest_text, say
from actions.knowledge import THERAPY_ENTITY, TREATMENT_INTENT, Knowledge, Reply, Topic

THERAPY_SLOT = "therapy"
# "Does it help?" right after a treatment's answer is about that treatment; "what else is there?" is not.
_REFERS_BACK = re.compile(r"\b(it|that|this|them|those|these)\b", re.IGNORECASE)
_ASKS_FOR_OVERVIEW = re.compile(r"\b(options?|treatments|therap(y|ies)|ways?|else|other|others|all|list|treat(ed)?|cure)\b",
                                re.IGNORECASE)


def therapy_named(knowledge: Knowledge, tracker: Tracker) -> Optional[Topic]:
    """The treatment the latest message names: its entity, else a mention (or misspelling) in its text."""
    for value in tracker.get_latest_entity_values(THERAPY_ENTITY):
        therapy = knowledge.therapy_from_value(value)
        if therapy:
            return therapy
    return knowledge.therapy_in_text(latest_text(tracker))


def therapy_asked(knowledge: Knowledge, tracker: Tracker) -> Optional[Topic]:
    """The treatment a treatment question is about: the one it names, or, for a follow-up such as
    "does it help?", the treatment the previous answer was about."""
    therapy = therapy_named(knowledge, tracker)
    text = latest_text(tracker)
    if therapy is None and _REFERS_BACK.search(text) and not _ASKS_FOR_OVERVIEW.search(text):
        therapy = knowledge.therapy_from_value(previous_answer_therapy(tracker))
    return therapy


def previous_answer_therapy(tracker: Tracker) -> Optional[str]:
    """The treatment the assistant's previous turn answered about, if it was one."""
    users_seen = 0
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            users_seen += 1
            if users_seen == 2:
                return None
        elif users_seen == 1 and event.get("event") == "slot" and event.get("name") == THERAPY_SLOT:
            return event.get("value")
    return None


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
    """Says what the assistant can help with and offers the phone number.

    A message the classifier was unsure of that names one of the article's treatments ("swimming?")
    gets that treatment's answer instead.
    """

    def name(self) -> Text:
        return "action_fallback"

    async def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        therapy = therapy_named(self.knowledge, tracker)
        if therapy is not None:
            say(dispatcher, self.knowledge.answer(therapy))
            return [SlotSet(THERAPY_SLOT, therapy.key)]
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
