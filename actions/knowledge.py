"""Loads and validates the knowledge files: the article, the clinic's facts and every reply.

The knowledge folder (``knowledge/`` by default) holds data, not code:

* ``clinic.yml``: name, city, phone and doctor, written once and substituted into every text;
* ``article.txt``: the clinic's article, the only source of medical information;
* ``topics.yml``: the article's topics and treatments, each answer with the article sentences it is
  based on (checked word for word against the article);
* ``replies.yml``, ``safety.yml``, ``booking.yml``: conversation, safety and booking texts.

:func:`load_knowledge` reads and checks everything once and returns an immutable :class:`Knowledge`;
any problem raises :class:`KnowledgeError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import difflib
import functools
import re
import sre_constants
import sre_parse
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml

from actions import settings
from actions.limits import bounded

# The topics, treatments and replies the assistant must be able to give. A knowledge folder missing
# any of them is refused at start-up.
REQUIRED_TOPICS = (
    "what_is_fibromyalgia", "symptoms", "causes", "who_gets_it", "related_conditions", "back_pain",
    "treatments", "combined_approach", "surgery", "surgery_candidate", "clinic", "doctor", "contact",
)
REQUIRED_THERAPIES = (
    "physical_therapy", "gentle_exercise", "medication", "antidepressants", "sleep_aids",
    "dietary_changes", "water_therapy", "biofeedback",
)
REQUIRED_REPLY_INTENTS = (
    "greet", "goodbye", "thank", "affirm", "deny", "stop", "bot_challenge", "ask_capabilities",
    "request_human", "ask_insurance", "ask_cost", "ask_hours", "medical_advice", "out_of_scope",
    "other_language",
)
BOOKING_FIELDS = ("name", "phone", "callback_time", "email", "reason", "confirmed")
OPTIONAL_BOOKING_FIELDS = ("email", "reason")
# Placeholders filled in at run time in booking texts (everything else comes from clinic.yml).
BOOKING_RUNTIME_FIELDS = ("name", "phone_display", "callback_time", "email", "reason")

# Intent and entity that ask about a treatment; the button that starts a consultation request.
TREATMENT_INTENT = "ask_treatment"
THERAPY_ENTITY = "therapy"
CONSULTATION_BUTTON = "consultation"
CONSULTATION_INTENT = "request_consultation"


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
    article_title: str

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


@dataclass(frozen=True)
class Knowledge:
    """Everything the assistant says, validated. Built by :func:`load_knowledge`."""

    clinic: Clinic
    article: str
    topics: Mapping[str, Topic]
    therapies: Mapping[str, Topic]
    replies: Mapping[str, Reply]
    fallback: Reply
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
    booking: Mapping[str, Any]
    consultation_title: str
    _synonyms: Mapping[str, str] = field(default_factory=dict, repr=False)
    answering: Optional["Answering"] = None

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
        return _button(ref, self.topics, self.therapies, self.consultation_title)

    def booking_text(self, key: str) -> str:
        """A booking text by key (``submitted``, ``cancelled``, …)."""
        return self.booking[key]

    def therapy_from_value(self, value: Optional[str]) -> Optional[Topic]:
        """The therapy an entity value names (a key, a title or a synonym), if any."""
        if not value:
            return None
        key = self._synonyms.get(_normalise(value))
        return self.therapies[key] if key else None

    def therapy_in_text(self, text: Optional[str]) -> Optional[Topic]:
        """The therapy a message mentions: the longest synonym found, else a close misspelling."""
        if not text:
            return None
        words = _normalise(bounded(text))  # bounded: this runs on the action server's one event loop
        found = [s for s in self._synonyms if s in words and re.search(rf"(?<!\w){re.escape(s)}(?!\w)", words)]
        if found:
            return self.therapies[self._synonyms[max(found, key=len)]]
        return self._therapy_by_spelling(words.split())

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


def _button(ref: str, topics: Mapping[str, Topic], therapies: Mapping[str, Topic], consultation_title: str) -> Button:
    if ref == CONSULTATION_BUTTON:
        return Button(consultation_title, f"/{CONSULTATION_INTENT}")
    if ref in therapies:
        entity = f'{{"{THERAPY_ENTITY}":"{ref}"}}'
        return Button(therapies[ref].title, f"/{TREATMENT_INTENT}{entity}")
    return Button(topics[ref].title, f"/{topics[ref].intent}")


def _normalise(text: str) -> str:
    text = text.lower().replace("’", "'").replace("‘", "'")
    text = re.sub(r"[^\w\s'-]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _normalise_quote(text: str) -> str:
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    return re.sub(r"\s+", " ", text).strip()


class _Files:
    """Reads YAML files of one folder, turning every problem into a :class:`KnowledgeError`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, name: str) -> Path:
        return self.folder / name

    def text(self, name: str) -> str:
        path = self.path(name)
        try:
            content = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KnowledgeError(path, "file not found") from None
        except (OSError, UnicodeDecodeError) as error:
            raise KnowledgeError(path, f"cannot be read ({error})") from None
        if not content.strip():
            raise KnowledgeError(path, "file is empty")
        return content

    def yaml(self, name: str) -> Dict[str, Any]:
        path = self.path(name)
        try:
            data = yaml.safe_load(self.text(name))
        except yaml.YAMLError as error:
            raise KnowledgeError(path, f"is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise KnowledgeError(path, "must be a mapping of keys to values at the top level")
        return data


def _get(data: Mapping[str, Any], key: str, path: Path, where: str = "", kind: type = str) -> Any:
    """``data[key]``, checked to be a non-empty value of ``kind``."""
    place = f"{where}.{key}" if where else key
    if not isinstance(data, Mapping) or key not in data or data[key] in (None, "", [], {}):
        raise KnowledgeError(path, f"'{place}' is missing")
    value = data[key]
    if not isinstance(value, kind):
        raise KnowledgeError(path, f"'{place}' must be a {kind.__name__}, not {type(value).__name__}")
    return value


class _Renderer:
    """Fills ``{placeholder}``s in with clinic facts, refusing unknown names."""

    def __init__(self, values: Mapping[str, str], keep: Sequence[str] = ()) -> None:
        self.values = dict(values)
        self.keep = set(keep)

    def __call__(self, text: str, path: Path, where: str) -> str:
        text = re.sub(r"\s+", " ", text).strip() if "\n" not in text.strip() else text.strip()
        for _, name, _, _ in string.Formatter().parse(text):
            if name is None or name in self.keep:
                continue
            if name not in self.values:
                raise KnowledgeError(path, f"'{where}' uses unknown placeholder {{{name}}}")
        try:
            return text.format_map(_Keep(self.values, self.keep))
        except (ValueError, IndexError) as error:
            raise KnowledgeError(path, f"'{where}' has a malformed placeholder: {error}") from None


class _Keep(dict):
    """A format map that leaves the run-time placeholders in place for a second pass."""

    def __init__(self, values: Mapping[str, str], keep: Iterable[str]) -> None:
        super().__init__(values)
        self._keep = set(keep)

    def __missing__(self, key: str) -> str:
        if key in self._keep:
            return "{" + key + "}"
        raise KeyError(key)


def _load_clinic(files: _Files) -> Clinic:
    path = files.path("clinic.yml")
    data = files.yaml("clinic.yml")
    doctor = _get(data, "medical_director", path, kind=dict)
    article = _get(data, "article", path, kind=dict)
    phone = _get(data, "phone", path)
    if len(re.sub(r"\D", "", phone)) not in (10, 11):
        raise KnowledgeError(path, f"'phone' must be a US phone number with area code, not {phone!r}")
    return Clinic(
        name=_get(data, "name", path),
        short_name=_get(data, "short_name", path),
        city=_get(data, "city", path),
        phone=phone,
        doctor_name=_get(doctor, "name", path, "medical_director"),
        doctor_title=_get(doctor, "title", path, "medical_director"),
        doctor_description=_get(doctor, "description", path, "medical_director"),
        article_title=_get(article, "title", path, "article"),
    )


def _check_sources(sources: Any, article: str, path: Path, where: str) -> Tuple[str, ...]:
    if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
        raise KnowledgeError(path, f"'{where}.sources' must list the article sentences the answer is based on")
    normalised_article = _normalise_quote(article)
    for source in sources:
        if len(source.split()) < 2 or len(source) < 8:
            raise KnowledgeError(path, f"'{where}.sources' quotes too little to check: {source!r}")
        if _normalise_quote(source) not in normalised_article:
            raise KnowledgeError(path, f"'{where}.sources' quotes text that is not in the article: {source!r}")
    return tuple(sources)


def _load_topics(files: _Files, article: str, render: _Renderer) -> Tuple[Dict[str, Topic], Dict[str, Topic]]:
    path = files.path("topics.yml")
    data = files.yaml("topics.yml")
    raw_topics = _get(data, "topics", path, kind=dict)
    raw_therapies = _get(data, "therapies", path, kind=dict)
    for required, raw, section in ((REQUIRED_TOPICS, raw_topics, "topics"), (REQUIRED_THERAPIES, raw_therapies, "therapies")):
        missing = [key for key in required if key not in raw]
        if missing:
            raise KnowledgeError(path, f"{section} missing: {', '.join(missing)}")

    topics: Dict[str, Topic] = {}
    intents: Dict[str, str] = {}
    for key, raw in raw_topics.items():
        where = f"topics.{key}"
        intent = _get(raw, "intent", path, where)
        if intent in intents:
            raise KnowledgeError(path, f"'{where}.intent' {intent} is also the intent of topic {intents[intent]}")
        intents[intent] = key
        topics[key] = Topic(
            key=key,
            intent=intent,
            title=_get(raw, "title", path, where),
            answer=render(_get(raw, "answer", path, where), path, f"{where}.answer"),
            sources=_check_sources(raw.get("sources"), article, path, where),
            related=tuple(raw.get("related") or ()),
        )
    if topics["treatments"].intent != TREATMENT_INTENT:
        raise KnowledgeError(path, f"'topics.treatments.intent' must be {TREATMENT_INTENT}")

    listed_answer = _get(data, "listed_therapy_answer", path)
    listed_sources = _check_sources(data.get("listed_therapy_sources"), article, path, "listed_therapy")
    article_words = _normalise(article)
    therapies: Dict[str, Topic] = {}
    for key, raw in raw_therapies.items():
        where = f"therapies.{key}"
        title = _get(raw, "title", path, where)
        synonyms = _get(raw, "synonyms", path, where, kind=list)
        if "answer" in raw:
            answer = render(_get(raw, "answer", path, where), path, f"{where}.answer")
            sources = _check_sources(raw.get("sources"), article, path, where)
        else:
            if _normalise(title) not in article_words:
                raise KnowledgeError(path, f"'{where}' has no answer and its title {title!r} is not in the article")
            answer = render(listed_answer.replace("{therapy}", title.lower()), path, f"{where}.answer")
            sources = listed_sources + (title,)
        therapies[key] = Topic(key=key, title=title, answer=answer, sources=sources,
                               related=tuple(raw.get("related") or ()), synonyms=tuple(map(str, synonyms)))
    return topics, therapies


def _synonym_map(therapies: Mapping[str, Topic], path: Path) -> Dict[str, str]:
    synonyms: Dict[str, str] = {}
    for key, therapy in therapies.items():
        for phrase in (key, key.replace("_", " "), therapy.title, *therapy.synonyms):
            phrase = _normalise(phrase)
            if synonyms.get(phrase, key) != key:
                raise KnowledgeError(path, f"synonym {phrase!r} names both {synonyms[phrase]} and {key}")
            synonyms[phrase] = key
    return synonyms


def _reply(raw: Any, path: Path, where: str, render: _Renderer, refs: Sequence[str]) -> Tuple[str, Tuple[str, ...]]:
    text = render(_get(raw, "text", path, where), path, f"{where}.text")
    related = tuple(raw.get("related") or ())
    _check_refs(related, refs, path, where)
    return text, related


def _check_refs(related: Iterable[str], refs: Sequence[str], path: Path, where: str) -> None:
    for ref in related:
        if ref not in refs:
            raise KnowledgeError(path, f"'{where}.related' names {ref!r}, which is not a topic, a therapy or 'consultation'")


_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT)


def _nested_repetition(items: Any, inside: bool = False) -> bool:
    """Whether a parsed pattern repeats something that itself repeats, like ``(\\w+\\s?)*``: the shape
    of catastrophic backtracking. (Not every slow pattern has it: tests/test_redos.py times them all.)"""
    for op, arg in items:
        if op in _REPEATS:
            repeats = arg[1] > 1
            if (repeats and inside) or _nested_repetition(arg[2], inside or repeats):
                return True
        elif op is sre_constants.SUBPATTERN and _nested_repetition(arg[-1], inside):
            return True
        elif op is sre_constants.BRANCH and any(_nested_repetition(branch, inside) for branch in arg[1]):
            return True
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT) and _nested_repetition(arg[1], inside):
            return True
    return False


def _compile_patterns(raw: Any, path: Path, where: str) -> Tuple[re.Pattern, ...]:
    patterns = _get(raw, "patterns", path, where, kind=list)
    compiled = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise KnowledgeError(path, f"'{where}.patterns' has an empty or non-text pattern: {pattern!r}")
        try:
            regex = re.compile(pattern, re.IGNORECASE)
        except re.error as error:
            raise KnowledgeError(path, f"'{where}.patterns' has an invalid expression {pattern!r}: {error}") from None
        if regex.search(""):
            raise KnowledgeError(path, f"'{where}.patterns' has a pattern that matches every message: {pattern!r}")
        if _nested_repetition(sre_parse.parse(pattern, re.IGNORECASE)):
            raise KnowledgeError(path, f"'{where}.patterns' has a repetition inside a repetition, which can take "
                                       f"exponential time on a visitor's message: {pattern!r}")
        compiled.append(regex)
    return tuple(compiled)


# The booking texts filled in with the visitor's details when they are said; no other text may use them.
BOOKING_RUNTIME_TEXTS = ("fields.confirmed.ask", "submitted")


def _load_booking(files: _Files, clinic_values: Mapping[str, str]) -> Dict[str, Any]:
    path = files.path("booking.yml")
    data = files.yaml("booking.yml")
    plain = _Renderer(clinic_values)
    runtime = _Renderer(clinic_values, keep=BOOKING_RUNTIME_FIELDS)

    def render(raw: Any, where: str) -> str:
        if where not in BOOKING_RUNTIME_TEXTS:
            return plain(raw, path, where)
        text = runtime(raw, path, where)
        try:  # it must fill in cleanly with any visitor's details
            text.format(**{name: "x" for name in BOOKING_RUNTIME_FIELDS})
        except (KeyError, ValueError, IndexError) as error:
            raise KnowledgeError(path, f"'{where}' cannot be filled in: {error!r}") from None
        return text

    raw_fields = _get(data, "fields", path, kind=dict)
    fields: Dict[str, Dict[str, str]] = {}
    for name in BOOKING_FIELDS:
        raw = _get(raw_fields, name, path, "fields", kind=dict)
        fields[name] = {part: render(_get(raw, part, path, f"fields.{name}"), f"fields.{name}.{part}")
                        for part in ("ask", "retry")}
    booking: Dict[str, Any] = {"fields": fields}
    for key in ("second_failure", "not_given", "which_field", "submitted", "save_failed", "cancelled",
                "invalid_request", "conversation_limit", "client_limit"):
        booking[key] = render(_get(data, key, path), key)
    buttons = _get(data, "confirm_buttons", path, kind=dict)
    booking["confirm_send"] = _get(buttons, "send", path, "confirm_buttons")
    booking["confirm_change"] = _get(buttons, "change", path, "confirm_buttons")
    titles = _get(data, "field_titles", path, kind=dict)
    booking["field_titles"] = {name: _get(titles, name, path, "field_titles") for name in BOOKING_FIELDS[:-1]}
    return booking


DOOR_REPLIES = ("too_long", "refused")


def _load_door(data: Mapping[str, Any], path: Path, render: _Renderer) -> Dict[str, str]:
    raw = _get(data, "door", path, kind=dict)
    return {key: render(_get(raw, key, path, "door"), path, f"door.{key}") for key in DOOR_REPLIES}


def load_knowledge(folder: Optional[Path] = None) -> Knowledge:
    """Reads and validates every knowledge file in ``folder``.

    Args:
        folder: the knowledge folder; by default the project's (see :mod:`actions.settings`).

    Returns:
        The validated knowledge, with the clinic's facts filled into every text.

    Raises:
        KnowledgeError: a file is missing, malformed, lacks a required topic or reply, or an answer
            quotes a sentence that is not in the article.
    """
    files = _Files(Path(folder) if folder else settings.knowledge_dir())
    clinic = _load_clinic(files)
    article_name = _get(files.yaml("clinic.yml")["article"], "file", files.path("clinic.yml"), "article")
    article = files.text(article_name)
    render = _Renderer(clinic.placeholders())
    topics, therapies = _load_topics(files, article, render)
    refs = (*topics, *therapies, CONSULTATION_BUTTON)
    topics_path = files.path("topics.yml")
    for key, topic in (*topics.items(), *therapies.items()):
        _check_refs(topic.related, refs, topics_path, key)

    replies_path = files.path("replies.yml")
    replies_data = files.yaml("replies.yml")
    raw_intents = _get(replies_data, "intents", replies_path, kind=dict)
    missing = [intent for intent in REQUIRED_REPLY_INTENTS if intent not in raw_intents]
    if missing:
        raise KnowledgeError(replies_path, f"replies missing for intents: {', '.join(missing)}")
    topic_intents = {topic.intent for topic in topics.values()}
    reply_parts: Dict[str, Tuple[str, Tuple[str, ...]]] = {}
    for intent, raw in raw_intents.items():
        if intent in topic_intents:
            raise KnowledgeError(replies_path, f"intent {intent} is already answered by an article topic")
        reply_parts[intent] = _reply(raw, replies_path, f"intents.{intent}", render, refs)
    fallback_parts = _reply(_get(replies_data, "fallback", replies_path, kind=dict), replies_path, "fallback", render, refs)
    consultation_title = _get(_get(replies_data, "buttons", replies_path, kind=dict), "consultation", replies_path, "buttons")

    safety_path = files.path("safety.yml")
    safety = files.yaml("safety.yml")
    emergency = _get(safety, "emergency", safety_path, kind=dict)
    crisis = _get(safety, "crisis", safety_path, kind=dict)
    booking = _load_booking(files, clinic.placeholders())

    def reply(parts: Tuple[str, Tuple[str, ...]]) -> Reply:
        text, related = parts
        return Reply(text, tuple(_button(ref, topics, therapies, consultation_title) for ref in related))

    knowledge = Knowledge(
        clinic=clinic,
        article=article,
        topics=topics,
        therapies=therapies,
        replies={intent: reply(parts) for intent, parts in reply_parts.items()},
        fallback=reply(fallback_parts),
        topic_footer=render(_get(replies_data, "topic_footer", replies_path), replies_path, "topic_footer"),
        error_text=render(_get(replies_data, "error", replies_path), replies_path, "error"),
        technical_problem=render(_get(replies_data, "technical_problem", replies_path), replies_path,
                                 "technical_problem"),
        disclaimer=render(_get(replies_data, "disclaimer", replies_path), replies_path, "disclaimer"),
        door=_load_door(replies_data, replies_path, render),
        emergency_text=render(_get(emergency, "text", safety_path, "emergency"), safety_path, "emergency.text"),
        crisis_text=render(_get(crisis, "text", safety_path, "crisis"), safety_path, "crisis.text"),
        emergency_patterns=_compile_patterns(emergency, safety_path, "emergency"),
        crisis_patterns=_compile_patterns(crisis, safety_path, "crisis"),
        medical_advice_patterns=_compile_patterns(_get(safety, "medical_advice", safety_path, kind=dict),
                                                  safety_path, "medical_advice"),
        booking=booking,
        consultation_title=consultation_title,
        _synonyms=_synonym_map(therapies, topics_path),
        answering=_load_answering(files, render, topics, therapies),
    )
    return knowledge


# --- How answers are shaped (issue 10): general answers before refusals, "the article doesn't say",
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

    def not_covered_aspect(self, text: str) -> Optional[Aspect]:
        """The first not-covered aspect ``text`` asks about, if any."""
        return next((aspect for aspect in self.not_covered if aspect.matches(text)), None)

    def follow_up_aspect(self, text: str) -> Optional[Aspect]:
        """The first follow-up aspect ``text`` asks about, if any."""
        return next((aspect for aspect in self.follow_ups if aspect.matches(text)), None)

    def asks_personal(self, text: str) -> bool:
        """A "should I / would it help / is it worth it" question."""
        return any(pattern.search(bounded(text)) for pattern in self.personal_patterns)

    def hopeless(self, text: str) -> bool:
        return any(pattern.search(bounded(text)) for pattern in self.hopeless_patterns)

    def asks_for_options(self, text: str) -> bool:
        return any(pattern.search(bounded(text)) for pattern in self.options_patterns)


def _load_answering(files: _Files, render: _Renderer, topics: Mapping[str, Topic],
                    therapies: Mapping[str, Topic]) -> Answering:
    path = files.path("topics.yml")
    data = files.yaml("topics.yml")
    keys = set(topics) | set(therapies)
    runtime = _Renderer(render.values, keep=("what", "title"))

    def known(key: Optional[str], where: str) -> Optional[str]:
        if key is not None and key not in keys and key != "same":
            raise KnowledgeError(path, f"'{where}' names {key!r}, which is not a topic or a therapy")
        return key

    personal = _get(data, "personal", path, kind=dict)
    quote = _get(data, "article_quote", path, kind=dict)
    raw_not_covered = _get(data, "not_covered", path, kind=dict)
    not_covered = tuple(
        Aspect(key=key, patterns=_compile_patterns(raw, path, f"not_covered.aspects.{key}"),
               what=render(_get(raw, "what", path, f"not_covered.aspects.{key}"), path, f"not_covered.aspects.{key}.what"),
               closest=known(raw.get("closest"), f"not_covered.aspects.{key}.closest"),
               general=bool(raw.get("general", False)),
               needs_context=bool(raw.get("needs_context", False)))
        for key, raw in _get(raw_not_covered, "aspects", path, "not_covered", kind=dict).items())
    raw_follow_ups = _get(data, "follow_ups", path, kind=dict)
    follow_ups = tuple(Aspect(key=key, patterns=_compile_patterns(raw, path, f"follow_ups.aspects.{key}"))
                       for key, raw in _get(raw_follow_ups, "aspects", path, "follow_ups", kind=dict).items())
    targets = {key: known(str(value), f"follow_ups.targets.{key}")
               for key, value in _get(raw_follow_ups, "targets", path, "follow_ups", kind=dict).items()}
    aspect_keys = {aspect.key for aspect in (*not_covered, *follow_ups)}
    for key in targets:
        if key not in aspect_keys:
            raise KnowledgeError(path, f"'follow_ups.targets.{key}' is not a follow-up aspect")
    covers: Dict[str, Tuple[str, ...]] = {}
    for key, raw in (*data["topics"].items(), *data["therapies"].items()):
        covered = tuple(raw.get("covers") or ())
        for aspect in covered:
            if aspect not in aspect_keys:
                raise KnowledgeError(path, f"'{key}.covers' names {aspect!r}, which is not an aspect")
        covers[key] = covered

    safety_path = files.path("safety.yml")
    hopeless = _get(files.yaml("safety.yml"), "hopeless", safety_path, kind=dict)
    return Answering(
        personal_line=render(_get(personal, "line", path, "personal"), path, "personal.line"),
        personal_patterns=_compile_patterns(personal, path, "personal"),
        quote_intro=render(_get(quote, "intro", path, "article_quote"), path, "article_quote.intro"),
        quote_outro=render(_get(quote, "outro", path, "article_quote"), path, "article_quote.outro"),
        not_covered_text=runtime(_get(raw_not_covered, "text", path, "not_covered"), path, "not_covered.text"),
        not_covered_footer=render(_get(raw_not_covered, "footer", path, "not_covered"), path, "not_covered.footer"),
        not_covered=not_covered,
        follow_ups=follow_ups,
        follow_up_targets=targets,
        covers=covers,
        hopeless_line=render(_get(hopeless, "line", safety_path, "hopeless"), safety_path, "hopeless.line"),
        hopeless_patterns=_compile_patterns(hopeless, safety_path, "hopeless"),
        options_patterns=_compile_patterns({"patterns": _get(hopeless, "asks_for_options", safety_path, "hopeless",
                                                              kind=list)}, safety_path, "hopeless.asks_for_options"),
    )


@functools.lru_cache(maxsize=1)
def get_knowledge() -> Knowledge:
    """The project's knowledge, loaded and validated once per process."""
    return load_knowledge()
