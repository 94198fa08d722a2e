"""Reads the knowledge files and checks them: :func:`load_knowledge` builds :mod:`core.knowledge`'s model.

:func:`load_knowledge` calls one ``_load_*`` per file, in order; the checks they share (a key's presence
and type, placeholders, article quotes, references between topics, patterns) follow them. Every problem
is a :class:`~core.knowledge.KnowledgeError` naming the file and what is wrong.
"""

from __future__ import annotations

import functools
import re
import sre_constants
import sre_parse
import string
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, Mapping, Optional, Sequence, Set, Tuple

import yaml

from core import settings
from core.intents import FALLBACK_INTENT, SPECIAL_INTENTS, TREATMENT_INTENT
from core.knowledge import (
    BOOKING_FIELDS,
    BOOKING_RUNTIME_FIELDS,
    CONSULTATION_BUTTON,
    REQUIRED_THERAPIES,
    REQUIRED_TOPICS,
    Answering,
    Aspect,
    Booking,
    BookingField,
    Clinic,
    Knowledge,
    KnowledgeError,
    Reply,
    Topic,
    button_for,
    normalise,
)


def load_knowledge(folder: Optional[Path] = None, domain: Optional[Path] = None) -> Knowledge:
    """Reads and validates every knowledge file in ``folder``.

    Args:
        folder: the knowledge folder; by default the project's (see :mod:`core.settings`).
        domain: the Rasa domain whose every intent must be a topic's, a reply's or special
            (:mod:`core.intents`); by default the project's ``domain.yml``.

    Returns:
        The validated knowledge, with the clinic's facts filled into every text.

    Raises:
        KnowledgeError: a file is missing or malformed, an intent of the domain has no answer, or an
            answer quotes a sentence that is not in the article.
    """
    files = _Files(Path(folder) if folder else settings.knowledge_dir())
    clinic = _load_clinic(files)
    article = _load_article(files)
    render = _Renderer(clinic.placeholders())
    topics, therapies = _load_topics(files, article, render)
    _check_every_intent_answered(files, topics, Path(domain) if domain else settings.PROJECT_ROOT / "domain.yml")
    _check_related(files, topics, therapies)
    replies = _load_replies(files, render, topics, therapies)
    safety = _load_safety(files, render)
    booking = _load_booking(files, clinic.placeholders())
    return Knowledge(
        clinic=clinic,
        article=article,
        topics=topics,
        therapies=therapies,
        **replies,
        **safety,
        booking=booking,
        _synonyms=_synonym_map(therapies, files.path("topics.yml")),
        answering=_load_answering(files, render, topics, therapies, set(replies["replies"])),
    )


@functools.lru_cache(maxsize=1)
def get_knowledge() -> Knowledge:
    """The project's knowledge, loaded and validated once per process."""
    return load_knowledge()


def _load_clinic(files: _Files) -> Clinic:
    """clinic.yml: the clinic's facts."""
    path = files.path("clinic.yml")
    data = files.yaml("clinic.yml")
    doctor = _get(data, "medical_director", path, kind=dict)
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
    )


def _load_article(files: _Files) -> str:
    """The article, from the file clinic.yml names."""
    path = files.path("clinic.yml")
    article = _get(files.yaml("clinic.yml"), "article", path, kind=dict)
    return files.text(_get(article, "file", path, "article"))


def _load_topics(files: _Files, article: str, render: _Renderer) -> Tuple[Dict[str, Topic], Dict[str, Topic]]:
    """topics.yml's topics and therapies, each answer's sources checked against the article."""
    path = files.path("topics.yml")
    data = files.yaml("topics.yml")
    raw_topics = _get(data, "topics", path, kind=dict)
    raw_therapies = _get(data, "therapies", path, kind=dict)
    for required, raw, section in ((REQUIRED_TOPICS, raw_topics, "topics"),
                                   (REQUIRED_THERAPIES, raw_therapies, "therapies")):
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
            example=_get(raw, "example", path, where),
        )
    if topics["treatments"].intent != TREATMENT_INTENT:
        raise KnowledgeError(path, f"'topics.treatments.intent' must be {TREATMENT_INTENT}")

    listed_answer = _get(data, "listed_therapy_answer", path)
    listed_sources = _check_sources(data.get("listed_therapy_sources"), article, path, "listed_therapy")
    article_words = normalise(article)
    therapies: Dict[str, Topic] = {}
    for key, raw in raw_therapies.items():
        where = f"therapies.{key}"
        title = _get(raw, "title", path, where)
        synonyms = _get(raw, "synonyms", path, where, kind=list)
        if "answer" in raw:
            answer = render(_get(raw, "answer", path, where), path, f"{where}.answer")
            sources = _check_sources(raw.get("sources"), article, path, where)
        else:
            if normalise(title) not in article_words:
                raise KnowledgeError(path, f"'{where}' has no answer and its title {title!r} is not in the article")
            answer = render(listed_answer.replace("{therapy}", title.lower()), path, f"{where}.answer")
            sources = listed_sources + (title,)
        therapies[key] = Topic(key=key, title=title, answer=answer, sources=sources,
                               related=tuple(raw.get("related") or ()), synonyms=tuple(map(str, synonyms)),
                               example=_get(raw, "example", path, where))
    return topics, therapies


def _check_every_intent_answered(files: _Files, topics: Mapping[str, Topic], domain: Path) -> None:
    """Every intent of the domain is a topic's (topics.yml), a reply's (replies.yml) or special."""
    replies_path = files.path("replies.yml")
    replied = _get(files.yaml("replies.yml"), "intents", replies_path, kind=dict)
    domain_data = _Files(domain.parent).yaml(domain.name)
    intents = [next(iter(item)) if isinstance(item, dict) else str(item) for item in domain_data.get("intents") or ()]
    answered = {topic.intent for topic in topics.values()} | set(replied) | set(SPECIAL_INTENTS)
    missing = [intent for intent in intents if intent not in answered]
    if missing:
        raise KnowledgeError(files.folder, f"no topic (topics.yml) or reply (replies.yml) answers the intents of "
                                           f"{domain.name}: {', '.join(missing)}")


def _check_related(files: _Files, topics: Mapping[str, Topic], therapies: Mapping[str, Topic]) -> None:
    refs = (*topics, *therapies, CONSULTATION_BUTTON)
    for key, topic in (*topics.items(), *therapies.items()):
        _check_refs(topic.related, refs, files.path("topics.yml"), key)


def _load_replies(files: _Files, render: _Renderer, topics: Mapping[str, Topic],
                  therapies: Mapping[str, Topic]) -> Dict[str, Any]:
    """replies.yml: the conversation replies, the fallback and the fixed texts, as :class:`Knowledge`'s fields."""
    path = files.path("replies.yml")
    data = files.yaml("replies.yml")
    raw_intents = _get(data, "intents", path, kind=dict)
    topic_intents = {topic.intent for topic in topics.values()}
    for intent in raw_intents:
        if intent in topic_intents:
            raise KnowledgeError(path, f"intent {intent} is already answered by an article topic")
    refs = (*topics, *therapies, CONSULTATION_BUTTON)
    consultation_title = _get(_get(data, "buttons", path, kind=dict), "consultation", path, "buttons")

    def reply(raw: Any, where: str) -> Reply:
        text = render(_get(raw, "text", path, where), path, f"{where}.text")
        related = tuple(raw.get("related") or ())
        _check_refs(related, refs, path, where)
        return Reply(text, tuple(button_for(ref, topics, therapies, consultation_title) for ref in related))

    def text(key: str) -> str:
        return render(_get(data, key, path), path, key)

    raw_door = _get(data, "door", path, kind=dict)
    return {
        "replies": {intent: reply(raw, f"intents.{intent}") for intent, raw in raw_intents.items()},
        "fallback": reply(_get(data, "fallback", path, kind=dict), "fallback"),
        "again": reply(_get(data, "again", path, kind=dict), "again"),
        "consultation_title": consultation_title,
        "topic_footer": text("topic_footer"),
        "error_text": text("error"),
        "technical_problem": text("technical_problem"),
        "disclaimer": text("disclaimer"),
        "door": {key: render(_get(raw_door, key, path, "door"), path, f"door.{key}") for key in DOOR_REPLIES},
    }


# The channels' own replies (replies.yml ``door``).
DOOR_REPLIES = ("too_long", "refused", "slow_down")


def _load_safety(files: _Files, render: _Renderer) -> Dict[str, Any]:
    """safety.yml: the emergency and crisis replies and the safety patterns, as :class:`Knowledge`'s fields."""
    path = files.path("safety.yml")
    data = files.yaml("safety.yml")
    emergency = _get(data, "emergency", path, kind=dict)
    crisis = _get(data, "crisis", path, kind=dict)
    return {
        "emergency_text": render(_get(emergency, "text", path, "emergency"), path, "emergency.text"),
        "crisis_text": render(_get(crisis, "text", path, "crisis"), path, "crisis.text"),
        "emergency_patterns": _compile_patterns(emergency, path, "emergency"),
        "crisis_patterns": _compile_patterns(crisis, path, "crisis"),
        "medical_advice_patterns": _compile_patterns(_get(data, "medical_advice", path, kind=dict), path,
                                                     "medical_advice"),
    }


# The booking texts filled in with the visitor's details when they are said; no other text may use them.
BOOKING_RUNTIME_TEXTS = ("fields.confirmed.ask", "submitted")


def _load_booking(files: _Files, clinic_values: Mapping[str, str]) -> Booking:
    """booking.yml: the consultation form's questions, retries, summary and confirmations."""
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
    fields: Dict[str, BookingField] = {}
    for name in BOOKING_FIELDS:
        raw = _get(raw_fields, name, path, "fields", kind=dict)
        fields[name] = BookingField(ask=render(_get(raw, "ask", path, f"fields.{name}"), f"fields.{name}.ask"),
                                    retry=render(_get(raw, "retry", path, f"fields.{name}"), f"fields.{name}.retry"))
    texts = {key: render(_get(data, key, path), key)
             for key in ("second_failure", "not_given", "which_field", "submitted", "save_failed", "cancelled",
                         "invalid_request", "conversation_limit", "client_limit")}
    buttons = _get(data, "confirm_buttons", path, kind=dict)
    titles = _get(data, "field_titles", path, kind=dict)
    return Booking(
        fields=fields,
        confirm_send=_get(buttons, "send", path, "confirm_buttons"),
        confirm_change=_get(buttons, "change", path, "confirm_buttons"),
        field_titles={name: _get(titles, name, path, "field_titles") for name in BOOKING_FIELDS[:-1]},
        **texts,
    )


def _load_answering(files: _Files, render: _Renderer, topics: Mapping[str, Topic],
                    therapies: Mapping[str, Topic], replied: Set[str]) -> Answering:
    """How answers are shaped (topics.yml: personal, caregiver, article_quote, not_covered, follow_ups, covers;
    safety.yml: hopeless)."""
    path = files.path("topics.yml")
    data = files.yaml("topics.yml")
    keys = set(topics) | set(therapies)
    runtime = _Renderer(render.values, keep=("what", "title"))

    def known(key: Optional[str], where: str) -> Optional[str]:
        if key is not None and key not in keys and key != "same":
            raise KnowledgeError(path, f"'{where}' names {key!r}, which is not a topic or a therapy")
        return key

    personal = _get(data, "personal", path, kind=dict)
    caregiver = _get(data, "caregiver", path, kind=dict)
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

    conversation = _load_conversation(data, path, set(topics), replied | {topic.intent for topic in topics.values()})
    safety_path = files.path("safety.yml")
    hopeless = _get(files.yaml("safety.yml"), "hopeless", safety_path, kind=dict)
    return Answering(
        personal_line=render(_get(personal, "line", path, "personal"), path, "personal.line"),
        personal_patterns=_compile_patterns(personal, path, "personal"),
        caregiver_line=render(_get(caregiver, "line", path, "caregiver"), path, "caregiver.line"),
        caregiver_patterns=_compile_patterns(caregiver, path, "caregiver"),
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
        **conversation,
    )


def _load_conversation(data: Mapping[str, Any], path: Path, topic_keys: Set[str], intents: Set[str]) -> Dict[str, Any]:
    """topics.yml ``conversation``: subject and health words, and the topic and intent groups of
    the answer action, each group naming only known topics or intents."""
    raw = _get(data, "conversation", path, kind=dict)

    def words(key: str) -> re.Pattern:
        fragments = [str(word) for word in _get(raw, key, path, "conversation", kind=list)]
        pattern = r"\b(" + "|".join(fragments) + r")\b"
        try:
            return re.compile(pattern, re.IGNORECASE)
        except re.error as error:
            raise KnowledgeError(path, f"'conversation.{key}' is not a valid pattern: {error}") from None

    def group(key: str, known: Set[str], what: str) -> FrozenSet[str]:
        names = [str(name) for name in _get(raw, key, path, "conversation", kind=list)]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise KnowledgeError(path, f"'conversation.{key}' names {', '.join(unknown)}, which is not {what}")
        return frozenset(names)

    return {
        "subject_words": words("subject_words"),
        "health_words": words("health_words"),
        "personal_line_topics": group("personal_line_topics", topic_keys, "a topic"),
        "therapy_first_topics": group("therapy_first_topics", topic_keys, "a topic"),
        "kept_replies": group("kept_replies", intents, "an answered intent"),
        "not_topics": group("not_topics", intents | set(SPECIAL_INTENTS) | {FALLBACK_INTENT}, "an intent"),
    }


# --- Checks the loaders share ----------------------------------------------------------------------


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


def _normalise_quote(text: str) -> str:
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    return re.sub(r"\s+", " ", text).strip()


def _check_refs(related: Iterable[str], refs: Sequence[str], path: Path, where: str) -> None:
    for ref in related:
        if ref not in refs:
            raise KnowledgeError(path, f"'{where}.related' names {ref!r}, which is not a topic, a therapy or 'consultation'")


def _synonym_map(therapies: Mapping[str, Topic], path: Path) -> Dict[str, str]:
    synonyms: Dict[str, str] = {}
    for key, therapy in therapies.items():
        for phrase in (key, key.replace("_", " "), therapy.title, *therapy.synonyms):
            phrase = normalise(phrase)
            if synonyms.get(phrase, key) != key:
                raise KnowledgeError(path, f"synonym {phrase!r} names both {synonyms[phrase]} and {key}")
            synonyms[phrase] = key
    return synonyms


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
