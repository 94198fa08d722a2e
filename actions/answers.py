"""Answers from the article, conversation replies, the fallback and the start of a conversation.

How a message is answered (:func:`compose`), in order:

1. Conversation intents (greetings, prices, another language…) get their reply from ``replies.yml``.
2. A request for personal medical advice that a safety pattern caught (doses, stopping a medicine,
   "do I have…", "is it safe for me…") is refused. When only the classifier thought so, a general
   "should I / would X help" question about a treatment gets the article's general answer instead.
3. A question the article does not answer (a cure, contagion, side effects, success rates, how long…:
   ``not_covered`` in ``topics.yml``) gets "the article doesn't cover …", the closest thing it does
   say, and the phone, unless the topic asked about ``covers`` it.
4. A short follow-up ("and what causes that?", "does it hurt?") right after a topic's answer is
   about that topic (the ``topic`` slot of the previous turn).
5. The topic of the intent, or the treatment named.
6. When the classifier was unsure: a named treatment, then hopelessness (the combined approach),
   then the article's own sentence above the retrieval threshold (``retrieval.py``), else the
   fallback.

"Should I…" questions get the personal line instead of the usual footer; a message that sounds
hopeless gets the gentle 988 line after the answer, never instead of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Tracker
from rasa_sdk.events import ActionExecuted, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.base import ClinicAction, EventList, latest_intent, latest_text, payload_events, say
from actions.retrieval import article_index
from core.intents import FALLBACK_INTENT, FRUSTRATION_INTENT, MEDICAL_ADVICE_INTENT, TREATMENT_INTENT
from core.knowledge import THERAPY_ENTITY, Aspect, Knowledge, Reply, Topic, classify

THERAPY_SLOT = "therapy"
TOPIC_SLOT = "topic"
# Intents whose answer may be reshaped by what the message asks (the rest are conversation replies).
OUT_OF_SCOPE_INTENT = "out_of_scope"
# "Does it help?" right after a treatment's answer is about that treatment; "what else is there?" is not.
_REFERS_BACK = re.compile(r"\b(it|that|this|them|those|these|they|its|it's)\b", re.IGNORECASE)
_CONTINUES = re.compile(r"^\s*(and|so|but|also|ok|okay|then|what about|how about)\b", re.IGNORECASE)
_ASKS_FOR_OVERVIEW = re.compile(r"\b(options?|treatments|therap(y|ies)|ways?|else|other|others|all|list|treat(ed)?|cure)\b",
                                re.IGNORECASE)
_SURGERY = re.compile(r"\b(surgery|surgeries|operation|operate|operated|decompression)\b", re.IGNORECASE)
FOLLOW_UP_MAX_WORDS = 12
# The subject and health words, and the topic and intent groups that shape answers (which topics get
# the personal line, which a named treatment wins over, which replies a follow-up keeps) are data:
# topics.yml ``conversation`` (``Knowledge.answering``).
_COMBINES = re.compile(r"\b(combin\w*|together|mix\w*|along|both|several|multiple|and)\b", re.IGNORECASE)
# "Do they give you painkillers for fibro back pain?" is about painkillers, though the classifier heard a
# back-pain question; "I'm on pain meds and my back still hurts, what else?" asks for something else.
_ASKS_FOR_OTHERS = re.compile(r"\b(else|other|others|besides|instead|without|except|apart\s+from|beyond|alternatives?|"
                              r"still|even\s+(with|after|though|on)|despite|tried|not\s+(help|work)\w*|"
                              r"(doesn'?t|don'?t|didn'?t|isn'?t|aren'?t|wasn'?t|won'?t)\b|nothing|no\s+longer|anymore|stopped)",
                              re.IGNORECASE)

# A long message that tells the visitor's story and then asks what treatments there are ("...my GP just
# says rest. What treatments do you have for this?") asks a general question, though the classifier,
# hearing "I" and "my" many times over, took it for a request for personal advice. The medical-advice
# patterns (doses, stopping a medicine, "do I have…") still refuse first.
STORY_MIN_WORDS = 20
_ASKS_FOR_TREATMENTS = re.compile(
    r"\bwhat\s+(kinds?\s+of\s+|types?\s+of\s+|sorts?\s+of\s+|other\s+)?(treatments?|therap(y|ies)|options|choices)\b"
    r"(?![\w\s]{0,12}\b(should|would|could)\s+i\b)"
    r"|\bwhat\s+(helps|can\s+help|could\s+help|works|can\s+be\s+done|do\s+people\s+do|do\s+you\s+(offer|have|do))\b"
    r"|\bhow\s+(do|can|does|is|are)\s+(people|you|anyone|someone|others|fibro\w*|it|this|back\s+pain)\s+"
    r"(treat|manag|handl|deal|get\s+relief|be\s+treated|be\s+managed)"
    r"|\b(is|are)\s+there\s+(any\s+)?(treatments?|therap(y|ies)|options|anything\s+that\s+(helps|works))\b",
    re.IGNORECASE)


def tells_a_story_and_asks_for_treatments(text: str) -> bool:
    """A long message asking what treatments there are (see ``STORY_MIN_WORDS``)."""
    return len(text.split()) >= STORY_MIN_WORDS and bool(_ASKS_FOR_TREATMENTS.search(text))


@dataclass
class Answer:
    """What :func:`compose` decided: the messages and the events."""

    replies: List[Reply] = field(default_factory=list)
    events: EventList = field(default_factory=list)
    kind: str = ""


def therapy_named(knowledge: Knowledge, tracker: Tracker) -> Optional[Topic]:
    """The treatment the latest message names: its entity, else a mention (or misspelling) in its text."""
    for value in tracker.get_latest_entity_values(THERAPY_ENTITY):
        therapy = knowledge.therapy_from_value(value)
        if therapy:
            return therapy
    return knowledge.therapy_in_text(latest_text(tracker))


def therapies_named(knowledge: Knowledge, tracker: Tracker) -> List[Topic]:
    """Every distinct treatment the latest message's entities name, in order."""
    found: List[Topic] = []
    for value in tracker.get_latest_entity_values(THERAPY_ENTITY):
        therapy = knowledge.therapy_from_value(value)
        if therapy is not None and therapy not in found:
            found.append(therapy)
    return found


def asks_about_one_therapy(knowledge: Knowledge, tracker: Tracker, text: str) -> bool:
    """The message names one treatment and asks about it, not about combining it or something else."""
    return (len(therapies_named(knowledge, tracker)) == 1 and not _COMBINES.search(text)
            and not _ASKS_FOR_OTHERS.search(text))


def therapy_asked(knowledge: Knowledge, tracker: Tracker) -> Optional[Topic]:
    """The treatment a treatment question is about: the one it names, or, for a follow-up such as
    "does it help?", the treatment the previous answer was about."""
    therapy = therapy_named(knowledge, tracker)
    text = latest_text(tracker)
    if therapy is None and _REFERS_BACK.search(text) and not _ASKS_FOR_OVERVIEW.search(text):
        therapy = knowledge.therapy_from_value(previous_answer_therapy(tracker))
    return therapy


def _previous_slot(tracker: Tracker, name: str) -> Optional[str]:
    """The value the assistant's previous turn gave slot ``name``, if it set it."""
    users_seen = 0
    for event in reversed(payload_events(tracker)):
        if event.get("event") == "user":
            users_seen += 1
            if users_seen == 2:
                return None
        elif users_seen == 1 and event.get("event") == "slot" and event.get("name") == name:
            return event.get("value")
    return None


def previous_answer_therapy(tracker: Tracker) -> Optional[str]:
    """The treatment the assistant's previous turn answered about, if it was one."""
    return _previous_slot(tracker, THERAPY_SLOT)


def previous_answer_topic(knowledge: Knowledge, tracker: Tracker) -> Optional[Topic]:
    """The topic or treatment the assistant's previous turn answered about, if any."""
    key = _previous_slot(tracker, TOPIC_SLOT) or _previous_slot(tracker, THERAPY_SLOT)
    return _by_key(knowledge, key)


def _by_key(knowledge: Knowledge, key: Optional[str]) -> Optional[Topic]:
    if not key:
        return None
    return knowledge.topics.get(key) or knowledge.therapies.get(key) or knowledge.therapy_from_value(key)


def is_follow_up(knowledge: Knowledge, text: str) -> bool:
    """A short message that leans on the previous answer: it refers back ("does it hurt?"), goes on
    ("and what causes that?") or names no subject of its own ("how long is the recovery?")."""
    words = text.split()
    return 0 < len(words) <= FOLLOW_UP_MAX_WORDS and bool(
        _REFERS_BACK.search(text) or _CONTINUES.search(text) or not knowledge.answering.subject_words.search(text))


def _slots(topic: Topic, knowledge: Knowledge) -> EventList:
    events: EventList = [SlotSet(TOPIC_SLOT, topic.key)]
    if topic.key in knowledge.therapies:
        events.insert(0, SlotSet(THERAPY_SLOT, topic.key))
    return events


def topic_answer(knowledge: Knowledge, topic: Topic, personal: bool = False) -> Answer:
    """A topic's answer; with ``personal``, the line that the personal decision is for the clinic."""
    reply = knowledge.answer(topic)
    if personal and (topic.key in knowledge.therapies or topic.key in knowledge.answering.personal_line_topics):
        answering = knowledge.answering
        reply = Reply(f"{topic.answer}\n\n{answering.personal_line}", reply.buttons)
        return Answer([reply], _slots(topic, knowledge), f"general:{topic.key}")
    return Answer([reply], _slots(topic, knowledge), f"topic:{topic.key}")


def not_covered_answer(knowledge: Knowledge, aspect: Aspect, closest: Topic) -> Answer:
    """The article doesn't cover ``aspect``; here is the closest thing it says, and the phone."""
    answering = knowledge.answering
    intro = answering.not_covered_text.format(what=aspect.what or "that", title=closest.title)
    text = f"{intro}\n\n{closest.answer}\n\n{answering.not_covered_footer}"
    return Answer([Reply(text, knowledge.buttons(closest.related))], _slots(closest, knowledge),
                  f"not_covered:{aspect.key}")


def quote_answer(knowledge: Knowledge, text: str) -> Optional[Answer]:
    """The article's own sentence, verbatim, when it is similar enough to ``text``."""
    match = article_index().quote(text)
    if match is None:
        return None
    answering = knowledge.answering
    reply = Reply(f"{answering.quote_intro} \u201c{match.sentence}\u201d\n\n{answering.quote_outro}",
                  knowledge.buttons(("treatments", "consultation")))
    return Answer([reply], [], "quote")


def _previous_bot_texts(tracker: Tracker) -> List[str]:
    """What the assistant said in answer to the visitor's previous message."""
    texts: List[str] = []
    users_seen = 0
    for event in reversed(payload_events(tracker)):
        if event.get("event") == "user":
            users_seen += 1
            if users_seen == 2:
                break
        elif users_seen == 1 and event.get("event") == "bot" and event.get("text"):
            texts.append(" ".join(str(event["text"]).split()))
    return texts


def not_understood_answer(knowledge: Knowledge, tracker: Tracker, reply: Reply, kind: str) -> Answer:
    """The fallback or the frustration reply; ``again`` (the phone first) if the previous answer was
    one of them: a visitor is never sent round the same loop twice."""
    said = set(_previous_bot_texts(tracker))
    loop = (knowledge.fallback, knowledge.again, knowledge.replies.get(FRUSTRATION_INTENT))
    if any(earlier is not None and " ".join(earlier.text.split()) in said for earlier in loop):
        return Answer([knowledge.again], [], "again")
    return Answer([reply], [], kind)


# Below this confidence the classifier's second thought is noise: the treatments overview is the answer.
RANKED_TOPIC_MIN_CONFIDENCE = 0.1


def ranked_topic(knowledge: Knowledge, tracker: Tracker) -> Topic:
    """The topic of the best-ranked intent that has one (the classifier's second thought when its
    first was a request for medical advice), else the treatments overview."""
    for ranked in (tracker.latest_message or {}).get("intent_ranking") or ():
        topic = knowledge.topic_for_intent(str((ranked or {}).get("name") or ""))
        if topic is not None:
            confident = float((ranked or {}).get("confidence") or 0.0) >= RANKED_TOPIC_MIN_CONFIDENCE
            return topic if confident else knowledge.topics["treatments"]
    return knowledge.topics["treatments"]


# A message the classifier was unsure of only because two intents came close ("what are my options"
# between back pain and treatments) is answered with the first one's topic when it was this likely.
FALLBACK_TOPIC_MIN_CONFIDENCE = 0.35


def fallback_topic(knowledge: Knowledge, tracker: Tracker) -> Optional[Topic]:
    """The topic of the classifier's best intent under the fallback, if it was likely enough."""
    for ranked in (tracker.latest_message or {}).get("intent_ranking") or ():
        name = str((ranked or {}).get("name") or "")
        if name == FALLBACK_INTENT:
            continue
        if float((ranked or {}).get("confidence") or 0.0) < FALLBACK_TOPIC_MIN_CONFIDENCE:
            return None
        return knowledge.topic_for_intent(name)
    return None


def for_the_person_helping(knowledge: Knowledge, answer: Answer) -> Answer:
    """A topic's answer for someone asking for another person: the caregiver line instead of the
    footer or the personal line."""
    key = answer.kind.split(":", 1)[1]
    topic = _by_key(knowledge, key)
    if topic is None or not answer.replies:
        return answer
    reply = Reply(f"{topic.answer}\n\n{knowledge.answering.caregiver_line}", answer.replies[0].buttons)
    return Answer([reply, *answer.replies[1:]], answer.events, f"caregiver:{key}")


def _subject(knowledge: Knowledge, intent: Optional[str], therapy: Optional[Topic],
             context: Optional[Topic]) -> Optional[Topic]:
    """What the message is about: the treatment it names, the previous answer's topic for a
    follow-up, else its intent's topic."""
    if therapy is not None:
        return therapy
    if context is not None:
        return context
    return knowledge.topic_for_intent(intent or "")


def _closest(knowledge: Knowledge, aspect: Aspect, therapy: Optional[Topic], subject: Optional[Topic]) -> Topic:
    if therapy is not None:
        return therapy
    if aspect.closest:
        return _by_key(knowledge, aspect.closest) or knowledge.topics["treatments"]
    return subject or knowledge.topics["treatments"]


def compose(knowledge: Knowledge, tracker: Tracker, intent: Optional[str]) -> Answer:
    """Decides how to answer the latest message (see the module docstring); a topic's answer to
    someone asking for another person ends with the line for the person helping."""
    answer = _compose(knowledge, tracker, intent)
    if answer.kind.startswith(("topic:", "general:")) and knowledge.answering.for_someone_else(latest_text(tracker)):
        return for_the_person_helping(knowledge, answer)
    return answer


def _compose(knowledge: Knowledge, tracker: Tracker, intent: Optional[str]) -> Answer:
    text = latest_text(tracker)
    answering = knowledge.answering
    topic = knowledge.topic_for_intent(intent or "")
    therapy = therapy_named(knowledge, tracker)
    previous = previous_answer_topic(knowledge, tracker)
    context = previous if previous is not None and therapy is None and is_follow_up(knowledge, text) else None
    aspect = answering.not_covered_aspect(text)
    # "What's the weather like?" after an answer is off-topic, not a follow-up; "how many times a week
    # would I have to go?" asks what the article doesn't say about the treatment just answered (an aspect
    # of a treatment, not a `general` one such as the weather).
    if intent == OUT_OF_SCOPE_INTENT and not (_REFERS_BACK.search(text) or _CONTINUES.search(text)
                                              or answering.health_words.search(text) or (aspect is not None and not aspect.general)):
        context = None
    follow_up = answering.follow_up_aspect(text) if context is not None else None

    # "How long?" or "kids?" alone is a question about the article only in a message about a topic,
    # a treatment or health ("how long is the drive?" is not).
    if aspect is not None and aspect.needs_context and topic is None and therapy is None and context is None \
            and not answering.health_words.search(text):
        aspect = None
    reshaped = topic is not None or intent in (MEDICAL_ADVICE_INTENT, OUT_OF_SCOPE_INTENT, FALLBACK_INTENT, None)
    # A follow-up, or a question the article doesn't answer, that the classifier took for small talk
    # ("how long does that take?" is not a goodbye; "what about CBD oil?" is not a capabilities question).
    if not reshaped and (aspect or (context and follow_up)) and intent not in answering.kept_replies:
        reshaped = True
    if not reshaped:
        if intent == FRUSTRATION_INTENT:
            return not_understood_answer(knowledge, tracker, knowledge.replies[intent], f"reply:{intent}")
        return Answer([knowledge.replies.get(intent or "", knowledge.fallback)], [], f"reply:{intent}")
    personal = answering.asks_personal(text)

    if intent in (FALLBACK_INTENT, None) and classify(text, knowledge) == MEDICAL_ADVICE_INTENT:
        return Answer([knowledge.replies[MEDICAL_ADVICE_INTENT]], [], "refusal")
    if intent == MEDICAL_ADVICE_INTENT:
        general = therapy or (knowledge.topics["surgery_candidate"] if _SURGERY.search(text) else None)
        if classify(text, knowledge) == MEDICAL_ADVICE_INTENT:
            return Answer([knowledge.replies[MEDICAL_ADVICE_INTENT]], [], "refusal")
        # No safety pattern caught a personal specific (a dose, changing or combining one's own
        # medicines, "do I have…"): a question about a named treatment, or asked for someone else, is
        # a general question, answered with the line that the personal decision is the doctor's.
        if general is not None and (personal or aspect is None):
            return topic_answer(knowledge, general, personal=True)
        if tells_a_story_and_asks_for_treatments(text):
            return topic_answer(knowledge, knowledge.topics["treatments"], personal=True)
        if answering.for_someone_else(text) or answering.asks_for_options(text):
            return topic_answer(knowledge, ranked_topic(knowledge, tracker), personal=True)
        if aspect is None or not aspect.general:
            return Answer([knowledge.replies[MEDICAL_ADVICE_INTENT]], [], "refusal")

    if aspect is not None:
        closest = _closest(knowledge, aspect, therapy, _subject(knowledge, intent, therapy, context))
        if aspect.key in answering.covers.get(closest.key, ()):
            return topic_answer(knowledge, closest, personal)
        return not_covered_answer(knowledge, aspect, closest)

    if follow_up is not None and context is not None:
        target = answering.follow_up_targets.get(follow_up.key)
        resolved = context if target == "same" else _by_key(knowledge, target)
        if resolved is not None:
            return topic_answer(knowledge, resolved, personal)

    if intent == TREATMENT_INTENT:
        return topic_answer(knowledge, therapy_asked(knowledge, tracker) or topic, personal)
    # "What's there besides painkillers?" when the classifier was unsure asks for the other treatments.
    if intent == FALLBACK_INTENT and topic is None and therapy is not None and _ASKS_FOR_OTHERS.search(text):
        return topic_answer(knowledge, knowledge.topics["combined_approach"], personal)
    if therapy is not None and (topic is None or (topic.key in answering.therapy_first_topics and (
            (personal and not _COMBINES.search(text)) or asks_about_one_therapy(knowledge, tracker, text)))):
        return topic_answer(knowledge, therapy, personal)
    if topic is not None:
        return topic_answer(knowledge, topic, personal)
    if answering.for_someone_else(text) and answering.health_words.search(text):
        return topic_answer(knowledge, ranked_topic(knowledge, tracker), personal)
    if intent == OUT_OF_SCOPE_INTENT:
        return Answer([knowledge.replies[OUT_OF_SCOPE_INTENT]], [], "reply:out_of_scope")
    if answering.hopeless(text):
        return topic_answer(knowledge, knowledge.topics["combined_approach"])
    unsure_between = fallback_topic(knowledge, tracker) if intent == FALLBACK_INTENT else None
    if unsure_between is not None:
        return topic_answer(knowledge, unsure_between, personal)
    return quote_answer(knowledge, text) or not_understood_answer(knowledge, tracker, knowledge.fallback, "fallback")


def send(dispatcher: CollectingDispatcher, knowledge: Knowledge, tracker: Tracker, answer: Answer) -> EventList:
    """Says ``answer``, then the gentle 988 line if the message sounds hopeless."""
    for reply in answer.replies:
        say(dispatcher, reply)
    if knowledge.answering.hopeless(latest_text(tracker)):
        say(dispatcher, Reply(knowledge.answering.hopeless_line))
    return answer.events


class ActionAnswer(ClinicAction):
    """Answers the latest message's intent from the knowledge files (see :func:`compose`)."""

    def name(self) -> Text:
        return "action_answer"

    async def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        intent, _ = latest_intent(tracker)
        return send(dispatcher, self.knowledge, tracker, compose(self.knowledge, tracker, intent))


class ActionFallback(ClinicAction):
    """Answers a message the classifier was unsure of: a named treatment, a question the article
    doesn't answer, a follow-up, the article's own sentence, else what the assistant can help with."""

    def name(self) -> Text:
        return "action_fallback"

    async def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        return send(dispatcher, self.knowledge, tracker, compose(self.knowledge, tracker, FALLBACK_INTENT))


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
