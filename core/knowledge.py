"""The assistant's knowledge as checked data: everything it says, typed.

The knowledge folder (``knowledge/`` by default) holds data, not code:

* ``clinic.yml``: name, city, phone and doctor, written once and substituted into every text;
* ``article.txt``: the clinic's article, the only source of medical information;
* ``topics.yml``: the article's topics and treatments, each answer with the article sentences it is
  based on (checked word for word against the article);
* ``replies.yml``, ``safety.yml``, ``booking.yml``: conversation, safety and booking texts.

:func:`core.knowledge_loader.load_knowledge` reads and checks everything once and returns an immutable
:class:`Knowledge`; any problem raises :class:`KnowledgeError` naming the file and what is wrong with it.
:func:`core.knowledge_loader.get_knowledge` is the project's knowledge, loaded once per process.

:func:`classify` is the keyword safety net: the intent a safety pattern gives a message. The NLU
pipeline runs it on every message (``components/safety_net.py``) and the answers use it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

from core.intents import (
    CONSULTATION_INTENT,
    CRISIS_INTENT,
    EMERGENCY_INTENT,
    MEDICAL_ADVICE_INTENT,
    READ_BY_THE_FORM,
    TREATMENT_INTENT,
)
from core.limits import bounded

# What the knowledge must hold besides an answer for every intent of the domain (the loader checks
# that): the topics the code looks up by name (actions/answers.py), and the treatments.
REQUIRED_TOPICS = ("treatments", "combined_approach", "surgery_candidate")
REQUIRED_THERAPIES = (
    "physical_therapy", "gentle_exercise", "medication", "antidepressants", "sleep_aids",
    "dietary_changes", "water_therapy", "biofeedback",
)
# The consultation form's fields, in the order it asks them (domain.yml's required_slots,
# tests/test_consistency.py), and those a visitor may skip.
BOOKING_FIELDS = ("name", "phone", "callback_time", "email", "reason", "confirmed")
OPTIONAL_BOOKING_FIELDS = ("email", "reason")
# Placeholders filled in at run time in booking texts (everything else comes from clinic.yml).
BOOKING_RUNTIME_FIELDS = ("name", "phone_display", "callback_time", "email", "reason")

# The entity that names a treatment; the button that starts a consultation request.
THERAPY_ENTITY = "therapy"
SPELLING_WORDS = 60  # how many words of a message are checked for a misspelt therapy name
CONSULTATION_BUTTON = "consultation"


class KnowledgeError(Exception):
    """A knowledge file is missing, malformed or inconsistent."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class Button:
    """A quick reply: what the visitor sees and what is sent back when it is clicked."""

    title: str
    payload: str

    def as_dict(self) -> Dict[str, str]:
        """The button as rasa_sdk's dispatcher expects it."""
        return {"title": self.title, "payload": self.payload}


@dataclass(frozen=True)
class Reply:
    """A message: its text (clinic facts already filled in) and its quick replies."""

    text: str
    buttons: Tuple[Button, ...] = ()


@dataclass(frozen=True)
class Clinic:
    """The clinic's facts from ``clinic.yml``."""

    name: str
    short_name: str
    city: str
    phone: str
    doctor_name: str
    doctor_title: str
    doctor_description: str

    @property
    def phone_digits(self) -> str:
        """The phone number as digits only, e.g. for a ``tel:`` link."""
        return re.sub(r"\D", "", self.phone)

    def placeholders(self) -> Dict[str, str]:
        """The values that ``{placeholder}`` names in the knowledge texts stand for."""
        return {
            "clinic_name": self.name,
            "clinic_short": self.short_name,
            "city": self.city,
            "phone": self.phone,
            "doctor_name": self.doctor_name,
            "doctor_title": self.doctor_title,
            "doctor_description": self.doctor_description,
        }


@dataclass(frozen=True)
class Topic:
    """An article topic or a treatment, with its answer and the article sentences behind it."""

    key: str
    title: str
    answer: str
    sources: Tuple[str, ...]
    related: Tuple[str, ...]
    intent: Optional[str] = None
    synonyms: Tuple[str, ...] = ()
    example: str = ""  # a visitor's question this answer must answer (the tests ask it)


@dataclass(frozen=True)
class BookingField:
    """One question of the consultation form: how it is asked, and asked again after an unusable answer."""

    ask: str
    retry: str


@dataclass(frozen=True)
class Booking:
    """The consultation form's texts from ``booking.yml``. ``fields.confirmed.ask`` (the summary) and
    ``submitted`` keep the visitor's details as placeholders (:data:`BOOKING_RUNTIME_FIELDS`)."""

    fields: Mapping[str, BookingField]  # every field of BOOKING_FIELDS
    field_titles: Mapping[str, str]  # the "which detail?" buttons: every field but ``confirmed``
    confirm_send: str
    confirm_change: str
    which_field: str
    second_failure: str
    not_given: str
    submitted: str
    save_failed: str
    cancelled: str
    invalid_request: str
    conversation_limit: str
    client_limit: str


@dataclass(frozen=True)
class Knowledge:
    """Everything the assistant says, validated. Built by :func:`core.knowledge_loader.load_knowledge`."""

    clinic: Clinic
    article: str
    topics: Mapping[str, Topic]
    therapies: Mapping[str, Topic]
    replies: Mapping[str, Reply]
    fallback: Reply
    again: Reply  # instead of the fallback or the frustration reply said just before: the phone first
    topic_footer: str
    error_text: str
    technical_problem: str
    disclaimer: str
    door: Mapping[str, str]  # the channels' own replies (replies.yml `door`: too_long, refused)
    emergency_text: str
    crisis_text: str
    emergency_patterns: Tuple[re.Pattern, ...]
    crisis_patterns: Tuple[re.Pattern, ...]
    medical_advice_patterns: Tuple[re.Pattern, ...]
    booking: Booking
    consultation_title: str
    _synonyms: Mapping[str, str] = field(default_factory=dict, repr=False)
    answering: Optional["Answering"] = None

    @property
    def answered_intents(self) -> FrozenSet[str]:
        """The intents ``action_answer`` answers: every topic's and every conversation reply's."""
        return frozenset(topic.intent for topic in self.topics.values() if topic.intent) | frozenset(self.replies)

    def topic_for_intent(self, intent: str) -> Optional[Topic]:
        """The article topic that answers ``intent``, if any."""
        for topic in self.topics.values():
            if topic.intent == intent:
                return topic
        return None

    def answer(self, topic: Topic) -> Reply:
        """The message answering ``topic``: its text, the next step and related-topic buttons."""
        text = f"{topic.answer}\n\n{self.topic_footer}"
        return Reply(text=text, buttons=self.buttons(topic.related))

    def buttons(self, refs: Iterable[str]) -> Tuple[Button, ...]:
        """Quick replies for topic or therapy keys (or ``consultation``)."""
        return tuple(self.button(ref) for ref in refs)

    def button(self, ref: str) -> Button:
        """The quick reply that asks about ``ref``."""
        return button_for(ref, self.topics, self.therapies, self.consultation_title)

    def therapy_from_value(self, value: Optional[str]) -> Optional[Topic]:
        """The therapy an entity value names (a key, a title or a synonym), if any."""
        if not value:
            return None
        key = self._synonyms.get(normalise(value))
        return self.therapies[key] if key else None

    def therapy_in_text(self, text: Optional[str]) -> Optional[Topic]:
        """The therapy a message mentions: the longest synonym found, else a close misspelling."""
        if not text:
            return None
        words = normalise(bounded(text))  # bounded: this runs on the action server's one event loop
        found = [s for s in self._synonyms if s in words and re.search(rf"(?<!\w){re.escape(s)}(?!\w)", words)]
        if found:
            return self.therapies[self._synonyms[max(found, key=len)]]
        # Misspellings are looked for in the first SPELLING_WORDS words only: each word costs difflib work, and
        # 2,000 characters of distinct words took 0.3 s of the event loop's CPU per look (tests/test_redos.py).
        return self._therapy_by_spelling(words.split()[:SPELLING_WORDS])

    def _therapy_by_spelling(self, words: Sequence[str]) -> Optional[Topic]:
        long_synonyms = [s for s in self._synonyms if len(s) >= 6]
        best: Tuple[float, Optional[str]] = (0.0, None)
        seen = set()  # each distinct chunk is compared once: repeated words cost nothing
        for size in (1, 2, 3):
            for start in range(len(words) - size + 1):
                chunk = " ".join(words[start:start + size])
                if len(chunk) < 6 or chunk in seen:
                    continue
                seen.add(chunk)
                for match in difflib.get_close_matches(chunk, long_synonyms, n=1, cutoff=0.84):
                    ratio = difflib.SequenceMatcher(None, chunk, match).ratio()
                    if ratio > best[0]:
                        best = (ratio, match)
        return self.therapies[self._synonyms[best[1]]] if best[1] else None

    def synonym_patterns(self) -> List[Tuple[str, str]]:
        """Every (therapy key, phrase) pair that names a therapy, for the entity ruler."""
        return sorted((key, phrase) for phrase, key in self._synonyms.items())


def button_for(ref: str, topics: Mapping[str, Topic], therapies: Mapping[str, Topic],
               consultation_title: str) -> Button:
    """The quick reply that asks about a topic or therapy key, or ``consultation``."""
    if ref == CONSULTATION_BUTTON:
        return Button(consultation_title, f"/{CONSULTATION_INTENT}")
    if ref in therapies:
        entity = f'{{"{THERAPY_ENTITY}":"{ref}"}}'
        return Button(therapies[ref].title, f"/{TREATMENT_INTENT}{entity}")
    return Button(topics[ref].title, f"/{topics[ref].intent}")


def normalise(text: str) -> str:
    """``text`` as treatment names are compared: lower case, plain quotes, no punctuation."""
    text = text.lower().replace("’", "'").replace("‘", "'")
    text = re.sub(r"[^\w\s'-]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


# --- How answers are shaped for people in pain: general answers before refusals, "the article doesn't say",
# follow-ups, hopelessness, verbatim quotes. Texts from topics.yml and safety.yml.


@dataclass(frozen=True)
class Aspect:
    """A kind of question (a cure, side effects, "does it hurt?"...), found by its patterns.

    A not-covered aspect is one the article never answers: ``what`` names it in the reply and
    ``closest`` is the topic whose answer is offered instead (None: the topic the question is about).
    A follow-up aspect sends a short follow-up to another topic (``follow_ups.defaults``).
    """

    key: str
    patterns: Tuple[re.Pattern, ...]
    what: str = ""
    closest: Optional[str] = None
    general: bool = False
    needs_context: bool = False

    def matches(self, text: str) -> bool:
        text = bounded(text)
        return any(pattern.search(text) for pattern in self.patterns)


@dataclass(frozen=True)
class Answering:
    """The texts and patterns that shape answers around the article's topics."""

    personal_line: str
    personal_patterns: Tuple[re.Pattern, ...]
    quote_intro: str
    quote_outro: str
    not_covered_text: str
    not_covered_footer: str
    not_covered: Tuple[Aspect, ...]
    follow_ups: Tuple[Aspect, ...]
    follow_up_targets: Mapping[str, str]
    covers: Mapping[str, Tuple[str, ...]]
    hopeless_line: str
    hopeless_patterns: Tuple[re.Pattern, ...]
    options_patterns: Tuple[re.Pattern, ...]
    # topics.yml ``conversation``: what gives a message a subject of its own or makes it a health
    # question, and the groups of topics and intents the answer action treats apart.
    subject_words: re.Pattern = re.compile(r"(?!)")
    health_words: re.Pattern = re.compile(r"(?!)")
    personal_line_topics: FrozenSet[str] = frozenset()
    therapy_first_topics: FrozenSet[str] = frozenset()
    kept_replies: FrozenSet[str] = frozenset()
    not_topics: FrozenSet[str] = frozenset()
    # topics.yml ``caregiver``: a message asking for another person, and the line said to the person helping.
    caregiver_line: str = ""
    caregiver_patterns: Tuple[re.Pattern, ...] = ()

    def not_covered_aspect(self, text: str) -> Optional[Aspect]:
        """The first not-covered aspect ``text`` asks about, if any."""
        return next((aspect for aspect in self.not_covered if aspect.matches(text)), None)

    def follow_up_aspect(self, text: str) -> Optional[Aspect]:
        """The first follow-up aspect ``text`` asks about, if any."""
        return next((aspect for aspect in self.follow_ups if aspect.matches(text)), None)

    def asks_personal(self, text: str) -> bool:
        """A "should I / would it help / is it worth it" question."""
        return any(pattern.search(bounded(text)) for pattern in self.personal_patterns)

    def for_someone_else(self, text: str) -> bool:
        """The visitor asks for someone they help ("my sister has fibromyalgia…")."""
        return any(pattern.search(bounded(text)) for pattern in self.caregiver_patterns)

    def hopeless(self, text: str) -> bool:
        return any(pattern.search(bounded(text)) for pattern in self.hopeless_patterns)

    def asks_for_options(self, text: str) -> bool:
        return any(pattern.search(bounded(text)) for pattern in self.options_patterns)


def answered_in_form(knowledge: Knowledge) -> FrozenSet[str]:
    """The intents a rule answers in the middle of a consultation request (data/rules.yml, "Answer a
    question during a consultation request"): every topic and reply intent the form does not read."""
    return knowledge.answered_intents - frozenset(READ_BY_THE_FORM)


def classify(text: str, knowledge: Knowledge) -> Optional[str]:
    """The intent a safety pattern gives ``text``: ``crisis``, ``emergency`` or ``medical_advice``,
    checked in that order; None if no pattern matches.

    The patterns see at most :data:`~core.limits.MAX_TEXT_CHARS` characters, the channels' own
    message limit, so no message is cut and none can make them slow (tests/test_redos.py)."""
    text = bounded(text)
    for intent, patterns in ((CRISIS_INTENT, knowledge.crisis_patterns),
                             (EMERGENCY_INTENT, knowledge.emergency_patterns),
                             (MEDICAL_ADVICE_INTENT, knowledge.medical_advice_patterns)):
        if any(pattern.search(text) for pattern in patterns):
            return intent
    return None
