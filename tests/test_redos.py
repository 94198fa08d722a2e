"""No visitor text can make a pattern catastrophic: every validator, extractor and safety pattern answers
100 KB of hostile text (long runs of address characters, repeated words, near-matches of each pattern)
within a small budget.

The action server is one event loop: a slow regular expression for one visitor is a frozen assistant
for every visitor. Time is measured as this process's CPU time, so that other work on the machine does
not make the test flaky; the budget is generous (a linear pattern over the capped text takes about a
millisecond), and the patterns this test caught took seconds.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Callable, Dict, List

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.answers import ActionAnswer, ActionFallback
from actions.booking import ValidateConsultationForm
from core import parsing
from core.knowledge import classify
from core.knowledge_loader import get_knowledge
from core.limits import MAX_TEXT_CHARS, bounded
from tests.conftest import make_tracker

SIZE = 100_000
BUDGET = 0.25  # seconds of CPU per call


def fill(unit: str, size: int = SIZE) -> str:
    return (unit * (size // max(len(unit), 1) + 1))[:size]


# Runs of characters that patterns over addresses, phone numbers and names consume, and repeated words.
HOSTILE: Dict[str, str] = {
    "letters": fill("a"), "address chars": fill("a.b-c_d%e+f"), "dots": fill("."), "digits": fill("1"),
    "digits and spaces": fill("1 "), "digits and dashes": fill("3-"), "at signs": fill("@"),
    "local@": fill("a@"), "a@b": fill("a@b"), "a@b.": fill("a@b."), "domain labels": "a@" + fill("b."),
    "long local part": fill("a") + "@example.com", "long domain": "a@" + fill("b") + ".com",
    "spaces": fill(" "), "newlines": fill("\n"), "tabs and spaces": fill("\t "), "name chars": fill("a-"),
    "name apostrophes": fill("a '"), "unicode letters": fill("é"), "phone openings": fill("(310"),
    "phone prefix": fill("+1 "), "phones": fill("310 555 "), "name is": fill("my name is "),
    "name is, no end": "name is " + fill("x") + "\n!", "words": fill("help me "), "no": fill("no "),
    "skip": fill("no, skip "), "yes": fill("yes "), "question": fill("what "), "therapy words": fill("physical "),
    "misspelt therapy": fill("watr therpy "), "mixed": fill("Maria maria@example.com (310) 555-0134 "),
    "distinct words": " ".join(f"w{index:x}q" for index in range(SIZE // 6)), "emoji": fill("\U0001F600"),
    "apostrophes": fill("can't "), "commas": fill(", "),
}


def pattern_words(pattern: str) -> List[str]:
    """The literal words of a safety pattern: what a near-match repeats."""
    source = re.sub(r"\\[bswdBSWD]|\(\?[:<!=]+|[{][0-9,]+[}]", " ", pattern)
    return re.findall(r"[a-z'-]{2,}", source.lower())


def near_matches() -> Dict[str, str]:
    """For each safety pattern, its words repeated, and its first word followed by long runs."""
    knowledge = get_knowledge()
    strings: Dict[str, str] = {}
    groups = (("emergency", knowledge.emergency_patterns), ("crisis", knowledge.crisis_patterns),
              ("medical_advice", knowledge.medical_advice_patterns))
    for group, patterns in groups:
        for index, pattern in enumerate(patterns):
            words = pattern_words(pattern.pattern) or ["x"]
            strings[f"{group}[{index}] words"] = fill(" ".join(words) + " ")
            strings[f"{group}[{index}] first word"] = fill(words[0] + " " + "word " * 12)
            strings[f"{group}[{index}] no last word"] = fill(" ".join(words[:-1]) + " ")
    return strings


def cpu_seconds(call: Callable[[], object]) -> float:
    start = time.process_time()
    call()
    return time.process_time() - start


VALIDATORS: Dict[str, Callable[[str], object]] = {
    "normalise_phone": parsing.normalise_phone,
    "find_email": parsing.find_email,
    "is_skip": parsing.is_skip,
    "looks_like_question": parsing.looks_like_question,
    "clean_name": parsing.clean_name,
    "free_text": parsing.free_text,
    "summary corrections": parsing.corrections,
    "says_yes": parsing.says_yes,
    "says_no": parsing.says_no,
    "field_word": parsing.field_word,
    "is_stored_name": parsing.is_stored_name,
    "therapy_in_text": lambda text: get_knowledge().therapy_in_text(text),
    "safety classify": lambda text: classify(text, get_knowledge()),
}


@pytest.mark.parametrize("validator", sorted(VALIDATORS))
def test_every_validator_is_fast_on_hostile_text(validator):
    slow = {}
    for name, text in HOSTILE.items():
        seconds = cpu_seconds(lambda: VALIDATORS[validator](text))
        if seconds > BUDGET:
            slow[name] = round(seconds, 2)
    assert not slow, f"{validator} took more than {BUDGET} s of CPU on: {slow}"


def test_every_safety_pattern_is_fast_on_its_near_matches():
    knowledge = get_knowledge()
    slow = {}
    for name, text in {**near_matches(), **HOSTILE}.items():
        seconds = cpu_seconds(lambda: classify(text, knowledge))
        if seconds > BUDGET:
            slow[name] = round(seconds, 2)
    assert not slow, f"safety patterns took more than {BUDGET} s of CPU on: {slow}"


def test_the_near_matches_really_exercise_the_patterns():
    """The generated near-matches reach into the patterns (a test of the test's data)."""
    knowledge = get_knowledge()
    for text in ("wish i was dead", "I can't feel my legs", "how many pills can I take"):
        assert classify(text, knowledge) is not None
    assert len(near_matches()) >= 3 * 40


FIELDS = ("name", "phone", "callback_time", "email", "reason", "confirmed")


@pytest.mark.parametrize("field", FIELDS)
def test_every_form_extractor_is_fast_on_hostile_text(domain, field):
    """The validation action itself, at each question of the form, as the action server runs it."""
    slow = {}
    for name, text in HOSTILE.items():
        events = [{"event": "user", "text": text}, {"event": "action", "name": "consultation_form"}]
        tracker = make_tracker("nlu_fallback", text, confidence=0.3, active_loop="consultation_form",
                               latest_action="consultation_form", events=events,
                               slots={"requested_slot": field, "name": "Maria", "phone": "+13105550134",
                                      "callback_time": "mornings", "email": "skipped", "reason": "skipped"})
        action = ValidateConsultationForm()
        seconds = cpu_seconds(lambda: asyncio.run(action.run(CollectingDispatcher(), tracker, domain)))
        if seconds > BUDGET:
            slow[name] = round(seconds, 2)
    assert not slow, f"the form's {field} extractor took more than {BUDGET} s of CPU on: {slow}"


@pytest.mark.parametrize("action", [ActionAnswer, ActionFallback])
def test_answers_that_look_for_a_treatment_are_fast_on_hostile_text(domain, action):
    slow = {}
    for name, text in HOSTILE.items():
        tracker = make_tracker("ask_treatment", text)
        seconds = cpu_seconds(lambda: asyncio.run(action().run(CollectingDispatcher(), tracker, domain)))
        if seconds > BUDGET:
            slow[name] = round(seconds, 2)
    assert not slow, f"{action.__name__} took more than {BUDGET} s of CPU on: {slow}"


def test_text_is_capped_before_any_pattern_sees_it():
    assert bounded("a" * SIZE) == "a" * MAX_TEXT_CHARS
    assert bounded(None) == "" and bounded("short") == "short"
    # An address at the very start of a huge message is still found; the cap only cuts the tail.
    assert parsing.find_email("maria@example.com " + fill("a")) == "maria@example.com"


@pytest.mark.parametrize("text, expected", [
    ("maria@example.com", "maria@example.com"), ("email:maria@example.com.", "maria@example.com"),
    ("<j.doe+clinic@mail.co.uk>", "j.doe+clinic@mail.co.uk"), ("a@b.c", None), ("a@@example.com", None),
    (("x" * 64) + "@example.com", ("x" * 64) + "@example.com"), (("x" * 65) + "@example.com", None),
    ("first a@b then maria@example.com", "maria@example.com"), ("maria@" + "b" * 64 + ".com", None),
])
def test_the_linear_email_pattern_finds_what_the_old_one_did_within_rfc_limits(text, expected):
    assert parsing.find_email(text) == expected


@pytest.mark.parametrize("pattern", [r"(\w+\s?)*help", r"\b(pain+)+\b", r"(?:a{1,5}){2,}x"])
def test_a_safety_pattern_with_a_repetition_inside_a_repetition_is_refused_at_start_up(tmp_path, pattern):
    import shutil

    import yaml

    from core.knowledge import KnowledgeError
    from core.knowledge_loader import load_knowledge
    from core.settings import knowledge_dir

    folder = tmp_path / "knowledge"
    shutil.copytree(knowledge_dir(), folder)
    safety = yaml.safe_load((folder / "safety.yml").read_text())
    safety["crisis"]["patterns"].append(pattern)
    (folder / "safety.yml").write_text(yaml.safe_dump(safety))
    with pytest.raises(KnowledgeError, match="repetition inside a repetition"):
        load_knowledge(folder)



# --- Issue 10's patterns: answer shaping, hopelessness and the language check ----------------------

def test_the_answer_shaping_patterns_are_fast_on_their_near_matches():
    from core.language import looks_non_english
    knowledge = get_knowledge()
    answering = knowledge.answering
    groups = {"not_covered": [p for a in answering.not_covered for p in a.patterns],
              "follow_ups": [p for a in answering.follow_ups for p in a.patterns],
              "personal": answering.personal_patterns, "hopeless": answering.hopeless_patterns,
              "options": answering.options_patterns}
    strings = dict(HOSTILE)
    for group, patterns in groups.items():
        for index, pattern in enumerate(patterns):
            words = pattern_words(pattern.pattern) or ["x"]
            strings[f"{group}[{index}] words"] = fill(" ".join(words) + " ")
            strings[f"{group}[{index}] first word"] = fill(words[0] + " " + "word " * 12)
    checks = {"not_covered": answering.not_covered_aspect, "follow_ups": answering.follow_up_aspect,
              "personal": answering.asks_personal, "hopeless": answering.hopeless,
              "options": answering.asks_for_options, "language": looks_non_english}
    slow = {}
    for name, text in strings.items():
        for check, call in checks.items():
            seconds = cpu_seconds(lambda: call(text))
            if seconds > BUDGET:
                slow[f"{check} on {name}"] = round(seconds, 2)
    assert not slow, f"took more than {BUDGET} s of CPU: {slow}"


@pytest.mark.parametrize("intent", ["nlu_fallback", "medical_advice", "ask_surgery", "out_of_scope"])
def test_every_answer_path_is_fast_on_hostile_text(domain, intent):
    slow = {}
    for name, text in HOSTILE.items():
        action = ActionFallback() if intent == "nlu_fallback" else ActionAnswer()
        tracker = make_tracker(intent, text)
        seconds = cpu_seconds(lambda: asyncio.run(action.run(CollectingDispatcher(), tracker, domain)))
        if seconds > BUDGET:
            slow[name] = round(seconds, 2)
    assert not slow, f"{intent} took more than {BUDGET} s of CPU on: {slow}"
