"""The language check and the safety net's decisions on the classifier's output (issue 10): another
language gets its own intent, hopeless questions are answered, explicit crises are not softened."""

from __future__ import annotations

import pytest
import yaml
from rasa.nlu.classifiers.fallback_classifier import FallbackClassifier
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from components.safety_net import SafetyNet
from core.language import looks_non_english
from tests.conftest import ROOT

OTHER = ["Me duele muchísimo la espalda desde el lunes", "¿Tienen citas los sábados?",
         "Ma mère a la fibromyalgie, pouvez-vous l'aider ?", "Preciso de ajuda com a minha dor",
         "Mein Rücken tut seit Wochen weh", "腰痛怎么治疗", "Болит поясница, помогите", "등이 아파요"]
ENGLISH = ["Is fibromyalgia the same as lupus?", "hola! what is fibro", "I live in Los Angeles, is the clinic far",
           "my ma has fibro, que sera sera", "the pain is muy bad lol", "PT or pool therapy, which one",
           "does the Spine Institute take new patients", "ok", "???", ""]


@pytest.mark.parametrize("text", OTHER)
def test_other_languages_are_recognised(text):
    assert looks_non_english(text)


@pytest.mark.parametrize("text", ENGLISH)
def test_english_with_a_foreign_word_is_english(text):
    assert not looks_non_english(text)


def test_no_probe_message_in_english_is_taken_for_another_language():
    cases = yaml.safe_load((ROOT / "tests" / "data" / "answer_probe.yml").read_text())["cases"]
    for case in cases:
        for text in [case["say"]] if isinstance(case["say"], str) else case["say"]:
            assert looks_non_english(text) == ("non_english" in case["expect"]), text


def classified(knowledge, text, intent, ranking=(), confidence=0.7):
    message = Message(data={TEXT: text})
    message.set(INTENT, {"name": intent, "confidence": confidence})
    message.set(INTENT_RANKING_KEY, [{"name": intent, "confidence": confidence}, *ranking])
    SafetyNet(knowledge).process([message])
    return message


def test_another_language_gets_its_intent_whatever_the_classifier_said(knowledge):
    assert classified(knowledge, "necesito una cita con el doctor", "request_consultation").get(INTENT)["name"] == \
        "other_language"


def test_an_english_crisis_pattern_wins_over_the_language_check(knowledge):
    assert classified(knowledge, "quiero morir, I want to kill myself", "greet").get(INTENT)["name"] == "crisis"


def test_a_hopeless_question_the_classifier_took_for_a_crisis_gets_its_best_other_intent(knowledge):
    message = classified(knowledge, "been living with fibro for years and nothing has worked, what's left?", "crisis",
                         [{"name": "ask_combined_approach", "confidence": 0.2}])
    assert message.get(INTENT)["name"] == "ask_combined_approach" and message.get("hopeless") is True


@pytest.mark.parametrize("text", ["nothing has worked and I want to end my life, what's left",
                                  "I feel hopeless and I don't want to be alive anymore",
                                  "nothing helps, I feel hopeless"])  # no question: the classifier's crisis stands
def test_explicit_or_unasked_hopelessness_keeps_the_crisis_reply(knowledge, text):
    message = classified(knowledge, text, "crisis", [{"name": "ask_combined_approach", "confidence": 0.2}])
    assert message.get(INTENT)["name"] == "crisis"


def test_a_medical_advice_pattern_never_turns_the_classifiers_crisis_into_a_refusal(knowledge):
    message = classified(knowledge, "should I take all my cymbalta at once tonight", "crisis")
    assert message.get(INTENT)["name"] == "crisis"


def test_an_unsure_crisis_guess_on_a_medical_advice_question_is_refused_not_dropped(knowledge):
    message = classified(knowledge, "would it hurt to take an extra pill", "crisis", confidence=0.36)
    assert message.get(INTENT)["name"] == "medical_advice"


@pytest.mark.parametrize("text, intent", [
    ("slipped on the stairs and landed on my back, now the pain is so bad i cant walk", "emergency"),
    ("my back aches and I want to kill myself", "crisis"),
    ("necesito una cita con el doctor", "other_language"),
])
def test_an_override_over_a_confident_classifier_is_not_made_ambiguous_for_the_fallback(knowledge, text, intent):
    """The FallbackClassifier runs after the safety net with the project's thresholds (config.yml): a
    classifier 0.98 sure of another intent must not turn the pattern's 1.0 into the fallback."""
    config = next(step for step in yaml.safe_load((ROOT / "config.yml").read_text())["pipeline"]
                  if step["name"] == "FallbackClassifier")
    fallback = FallbackClassifier({**FallbackClassifier.get_default_config(),
                                   **{key: value for key, value in config.items() if key != "name"}})
    message = classified(knowledge, text, "ask_back_pain", [{"name": intent, "confidence": 0.01}], confidence=0.98)
    fallback.process([message])
    assert message.get(INTENT)["name"] == intent
    assert [entry["name"] for entry in message.get(INTENT_RANKING_KEY)][:2] == [intent, "ask_back_pain"]
