"""The domain, the training data, the rules, the knowledge and the actions agree with each other."""

from __future__ import annotations

import yaml
from rasa_sdk.executor import ActionExecutor

from core.intents import READ_BY_THE_FORM, SPECIAL_INTENTS
from core.knowledge import BOOKING_FIELDS, answered_in_form
from tests.conftest import ROOT, step_intents


def load(name):
    return yaml.safe_load((ROOT / name).read_text())


def rule_intents(rule):
    return set().union(*(step_intents(step) for step in rule["steps"]))


def test_every_domain_intent_has_training_examples_and_vice_versa(domain):
    trained = {item["intent"] for item in load("data/nlu.yml")["nlu"] if "intent" in item}
    assert trained == set(domain["intents"])


def test_every_intent_has_a_rule(domain):
    ruled = set().union(*(rule_intents(rule) for rule in load("data/rules.yml")["rules"]))
    assert set(domain["intents"]) <= ruled


def test_every_domain_intent_has_a_topic_a_reply_or_is_special_and_nothing_else(knowledge, domain):
    assert set(domain["intents"]) == knowledge.answered_intents | set(SPECIAL_INTENTS)
    assert not knowledge.answered_intents & set(SPECIAL_INTENTS)
    assert set(READ_BY_THE_FORM) <= knowledge.answered_intents


def test_action_answer_has_a_rule_for_every_topic_and_reply_intent_and_only_those(knowledge):
    rules = load("data/rules.yml")["rules"]
    answering = [rule for rule in rules if not rule.get("condition")
                 and any(step.get("action") == "action_answer" for step in rule["steps"])]
    assert set().union(*(rule_intents(rule) for rule in answering)) == knowledge.answered_intents
    in_form = [rule for rule in rules if rule.get("condition")
               and any(step.get("action") == "action_answer" for step in rule["steps"])]
    assert set().union(*(rule_intents(rule) for rule in in_form)) == answered_in_form(knowledge)


def test_the_form_asks_the_fields_the_actions_read_in_their_order(domain):
    assert tuple(domain["forms"]["consultation_form"]["required_slots"]) == BOOKING_FIELDS


def test_every_domain_action_is_served_by_the_action_server(domain):
    executor = ActionExecutor()
    executor.register_package("actions")
    assert set(domain["actions"]) <= set(executor.actions)


def test_the_domain_holds_no_answer_texts(domain):
    assert not domain.get("responses")


def test_no_training_example_contradicts_the_safety_net(knowledge):
    """The safety patterns override the classifier: a training example they would move to another
    intent is mislabelled (or a pattern is too broad)."""
    from core.knowledge import classify
    contradictions = []
    for item in load("data/nlu.yml")["nlu"]:
        for line in item["examples"].splitlines():
            text = line[2:].strip() if line.startswith("- ") else ""
            routed = classify(text, knowledge) if text else None
            if routed and routed != item["intent"]:
                contradictions.append((item["intent"], routed, text))
    assert contradictions == []


def test_the_language_check_agrees_with_the_training_data():
    """Every other_language example is recognised as not English, and no English example is
    (the false positives of core/language.py on the whole training set: none)."""
    from core.language import looks_non_english
    wrong = []
    for item in load("data/nlu.yml")["nlu"]:
        for line in item["examples"].splitlines():
            text = line[2:].strip() if line.startswith("- ") else ""
            if text and looks_non_english(text) != (item["intent"] == "other_language"):
                wrong.append((item["intent"], text))
    assert wrong == []
