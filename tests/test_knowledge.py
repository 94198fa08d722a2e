"""The knowledge loader: the real files are complete and correct; broken files are refused clearly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.knowledge import (
    REQUIRED_THERAPIES,
    REQUIRED_TOPICS,
    KnowledgeError,
)
from core.knowledge_loader import load_knowledge
from tests.conftest import ROOT

SOURCE_ARTICLE = ROOT.parent / "shared" / "source" / "fibromyalgia-treatments-for-back-pain.txt"


@pytest.fixture()
def knowledge_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "knowledge"
    shutil.copytree(ROOT / "knowledge", folder)
    return folder


def edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def test_every_required_topic_and_therapy_is_there(knowledge):
    assert set(REQUIRED_TOPICS) <= set(knowledge.topics)
    assert set(REQUIRED_THERAPIES) <= set(knowledge.therapies)


@pytest.mark.skipif(not SOURCE_ARTICLE.exists(), reason="the shared source folder is not beside the repository")
def test_the_shipped_article_is_the_clinics_article(knowledge):
    assert knowledge.article.strip() == SOURCE_ARTICLE.read_text(encoding="utf-8").strip()


def test_every_answer_names_its_article_sources(knowledge):
    for topic in (*knowledge.topics.values(), *knowledge.therapies.values()):
        assert topic.sources, topic.key
        assert topic.answer and "{" not in topic.answer, topic.key


def test_clinic_facts_are_substituted_everywhere(knowledge):
    clinic = knowledge.clinic
    assert clinic.phone == "(310) 828-7757"
    assert clinic.phone_digits == "3108287757"
    assert "Santa Monica" in knowledge.topics["clinic"].answer
    assert "Dr. Hyun Bae" in knowledge.topics["doctor"].answer
    assert clinic.phone in knowledge.answer(knowledge.topics["symptoms"]).text
    assert clinic.phone in knowledge.booking.cancelled


def test_changing_the_phone_in_clinic_yml_changes_every_answer(knowledge_copy):
    edit_yaml(knowledge_copy / "clinic.yml", lambda data: data.update(phone="(310) 555-0199"))
    changed = load_knowledge(knowledge_copy)
    every_text = [changed.answer(t).text for t in (*changed.topics.values(), *changed.therapies.values())]
    every_text += [reply.text for reply in changed.replies.values()]
    every_text += [changed.fallback.text, changed.error_text, changed.booking.cancelled,
                   changed.booking.save_failed, changed.booking.submitted]
    assert not any("828-7757" in text for text in every_text)
    assert all("(310) 555-0199" in changed.answer(t).text for t in changed.topics.values())
    assert "(310) 555-0199" in changed.topics["contact"].answer


@pytest.mark.parametrize("file, change, problem", [
    ("topics.yml", lambda d: d["topics"].pop("treatments"), r"topics missing: treatments"),
    ("topics.yml", lambda d: d["therapies"].pop("biofeedback"), r"therapies missing: biofeedback"),
    ("topics.yml", lambda d: d["topics"]["causes"].update(sources=["Fibromyalgia is caused by gluten."]),
     r"not in the article"),
    ("topics.yml", lambda d: d["topics"]["causes"].update(answer="Call {fax}."), r"unknown placeholder \{fax\}"),
    ("topics.yml", lambda d: d["topics"]["causes"].pop("answer"), r"'topics.causes.answer' is missing"),
    ("topics.yml", lambda d: d["topics"]["causes"].update(related=["astrology"]), r"names 'astrology'"),
    ("topics.yml", lambda d: d["therapies"]["biofeedback"].update(synonyms=["PT"]), r"synonym 'pt' names both"),
    ("clinic.yml", lambda d: d.update(phone="call us"), r"'phone' must be a US phone number"),
    ("clinic.yml", lambda d: d["medical_director"].pop("name"), r"'medical_director.name' is missing"),
    ("safety.yml", lambda d: d["crisis"].update(patterns=["(unclosed"]), r"invalid expression"),
    ("booking.yml", lambda d: d["fields"].pop("phone"), r"'fields.phone' is missing"),
    ("booking.yml", lambda d: d.update(save_failed="Sorry {name}, call us."), r"unknown placeholder \{name\}"),
    ("booking.yml", lambda d: d.update(submitted="Thanks {{ {name}"), r"'submitted' cannot be filled in"),
    ("safety.yml", lambda d: d["emergency"]["patterns"].append(None), r"empty or non-text pattern"),
    ("safety.yml", lambda d: d["emergency"]["patterns"].append("(fall)?"), r"matches every message"),
    ("topics.yml", lambda d: d["topics"]["causes"].update(sources=[""]), r"quotes too little"),
    ("topics.yml", lambda d: d["topics"]["causes"].pop("example"), r"'topics.causes.example' is missing"),
    ("topics.yml", lambda d: d["therapies"]["biofeedback"].pop("example"), r"'therapies.biofeedback.example' is missing"),
    ("topics.yml", lambda d: d["conversation"]["personal_line_topics"].append("astrology"),
     r"'conversation.personal_line_topics' names astrology, which is not a topic"),
    ("topics.yml", lambda d: d["conversation"]["therapy_first_topics"].append("biofeedback"),
     r"'conversation.therapy_first_topics' names biofeedback, which is not a topic"),
    ("topics.yml", lambda d: d["conversation"]["kept_replies"].append("ask_weather"),
     r"'conversation.kept_replies' names ask_weather, which is not an answered intent"),
    ("topics.yml", lambda d: d["conversation"]["not_topics"].append("chitchat"),
     r"'conversation.not_topics' names chitchat, which is not an intent"),
    ("topics.yml", lambda d: d["conversation"]["subject_words"].append("(unclosed"), r"'conversation.subject_words'"),
    ("topics.yml", lambda d: d["conversation"].pop("health_words"), r"'conversation.health_words' is missing"),
])
def test_a_broken_knowledge_file_is_refused_with_its_name_and_problem(knowledge_copy, file, change, problem):
    edit_yaml(knowledge_copy / file, change)
    with pytest.raises(KnowledgeError) as raised:
        load_knowledge(knowledge_copy)
    assert raised.value.path == knowledge_copy / file
    assert re.search(problem, str(raised.value)), str(raised.value)


@pytest.mark.parametrize("file, change, intent", [
    ("topics.yml", lambda d: d["topics"].pop("surgery"), "ask_surgery"),
    ("topics.yml", lambda d: d["topics"]["doctor"].update(intent="ask_medical_director"), "ask_doctor"),
    ("replies.yml", lambda d: d["intents"].pop("greet"), "greet"),
])
def test_an_intent_of_the_domain_without_a_topic_or_reply_is_refused(knowledge_copy, file, change, intent):
    edit_yaml(knowledge_copy / file, change)
    with pytest.raises(KnowledgeError) as raised:
        load_knowledge(knowledge_copy)
    assert raised.value.path == knowledge_copy
    assert raised.value.problem == ("no topic (topics.yml) or reply (replies.yml) answers the intents of domain.yml: "
                                    + intent)


def test_invalid_yaml_and_missing_files_are_refused(knowledge_copy):
    (knowledge_copy / "replies.yml").write_text("intents: [unclosed\n")
    with pytest.raises(KnowledgeError, match=r"replies.yml: is not valid YAML"):
        load_knowledge(knowledge_copy)
    (knowledge_copy / "article.txt").unlink()
    with pytest.raises(KnowledgeError, match=r"article.txt: file not found"):
        load_knowledge(knowledge_copy)


@pytest.mark.parametrize("value, key", [
    ("PT", "physical_therapy"), ("physio", "physical_therapy"), ("physical_therapy", "physical_therapy"),
    ("Hydrotherapy", "water_therapy"), ("aquatic therapy", "water_therapy"), ("Sleeping Pills", "sleep_aids"),
    ("SSRIs", "antidepressants"), ("anti-depressant medications", "antidepressants"), ("diet", "dietary_changes"),
    ("swimming", "gentle_exercise"), ("bio-feedback", "biofeedback"), ("painkillers", "medication"),
])
def test_therapy_names_and_synonyms_resolve(knowledge, value, key):
    assert knowledge.therapy_from_value(value).key == key


@pytest.mark.parametrize("text, key", [
    ("can phisical therapy help my back", "physical_therapy"),
    ("what is hydro therapy like", "water_therapy"),
    ("tell me about biofedback", "biofeedback"),
    ("does swiming help fibro", "gentle_exercise"),
    ("are anti depressants used", "antidepressants"),
    ("is water therapy better than walking", "water_therapy"),
])
def test_therapies_are_found_in_text_even_misspelt(knowledge, text, key):
    assert knowledge.therapy_in_text(text).key == key


@pytest.mark.parametrize("text", ["how is fibromyalgia treated", "what are my options", "surgery?"])
def test_no_therapy_is_invented(knowledge, text):
    assert knowledge.therapy_in_text(text) is None


@pytest.mark.e2e  # starts the action server (which must refuse)
def test_the_action_server_refuses_to_start_on_broken_knowledge(knowledge_copy):
    edit_yaml(knowledge_copy / "topics.yml", lambda d: d["topics"].pop("doctor"))
    env = {**os.environ, "CLINIC_KNOWLEDGE_DIR": str(knowledge_copy), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "actions", "--port", "0"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "answers the intents of domain.yml: ask_doctor" in result.stderr
    assert "Traceback" not in result.stderr


# --- Issue 10: how answers are shaped ---------------------------------------------------------------

@pytest.mark.parametrize("change, problem", [
    (lambda d: d.pop("not_covered"), "'not_covered' is missing"),
    (lambda d: d["not_covered"]["aspects"]["cure"].update(closest="miracles"), "not a topic or a therapy"),
    (lambda d: d["not_covered"]["aspects"]["cure"].update(patterns=["(unclosed"]), "invalid expression"),
    (lambda d: d["not_covered"]["aspects"]["cure"].update(patterns=[".*"]), "matches every message"),
    (lambda d: d["not_covered"].update(text="The article doesn't cover {nonsense}."), "unknown placeholder"),
    (lambda d: d["follow_ups"]["targets"].update(treat="nowhere"), "not a topic or a therapy"),
    (lambda d: d["therapies"]["gentle_exercise"].update(covers=["flying"]), "not an aspect"),
    (lambda d: d["personal"].pop("line"), "'personal.line' is missing"),
])
def test_broken_answer_shaping_is_refused_with_its_problem(knowledge_copy, change, problem):
    path = knowledge_copy / "topics.yml"
    edit_yaml(path, change)
    with pytest.raises(KnowledgeError) as error:
        load_knowledge(knowledge_copy)
    assert error.value.path == path and problem in error.value.problem


def test_a_missing_hopeless_section_is_refused(knowledge_copy):
    path = knowledge_copy / "safety.yml"
    edit_yaml(path, lambda d: d.pop("hopeless"))
    with pytest.raises(KnowledgeError, match="'hopeless' is missing"):
        load_knowledge(knowledge_copy)


def test_the_new_texts_give_no_medical_fact_and_name_the_phone(knowledge):
    answering = knowledge.answering
    for text in (answering.personal_line, answering.quote_outro, answering.not_covered_footer):
        assert knowledge.clinic.phone in text
    assert "988" in answering.hopeless_line
    assert {aspect.key for aspect in answering.not_covered} >= {"contagious", "cure", "success", "side_effects",
                                                                 "duration"}


def test_the_conversation_words_are_whole_words_in_any_case(knowledge):
    answering = knowledge.answering
    assert answering.subject_words.search("And the FIBRO?") and not answering.subject_words.search("fmri backing")
    assert answering.health_words.search("does it make me feel   better") and not answering.health_words.search("sorely")
    assert answering.personal_line_topics <= set(knowledge.topics)
    assert answering.therapy_first_topics <= set(knowledge.topics)



def test_the_expected_phrases_name_only_known_topics(knowledge):
    """The topic tests enumerate knowledge.topics and .therapies (each with its `example`); the extra
    phrases of tests/expectations.py must not name a topic that no longer exists."""
    from tests.expectations import THERAPY_PHRASES, TOPIC_PHRASES

    assert set(TOPIC_PHRASES) <= set(knowledge.topics)
    assert set(THERAPY_PHRASES) <= set(knowledge.therapies)
    assert all(topic.example for topic in (*knowledge.topics.values(), *knowledge.therapies.values()))
