"""The answer, fallback, session-start and safety actions, run as the action server runs them."""

from __future__ import annotations

import asyncio

import pytest
from rasa_sdk.events import ActiveLoop, SessionStarted, SlotSet

from actions.answers import ActionAnswer, ActionFallback, ActionSessionStart
from actions.knowledge import REQUIRED_REPLY_INTENTS
from actions.safety import ActionSafety

from tests.conftest import make_tracker, texts
from tests.expectations import PHONE, THERAPY_PHRASES, TOPIC_PHRASES, contains_all


def run(action, dispatcher, tracker, domain):
    return asyncio.run(action.run(dispatcher, tracker, domain))


@pytest.mark.parametrize("topic", sorted(TOPIC_PHRASES))
def test_every_article_topic_is_answered_from_the_article_with_next_steps(knowledge, dispatcher, domain, topic):
    intent = knowledge.topics[topic].intent
    run(ActionAnswer(), dispatcher, make_tracker(intent, "question"), domain)
    [message] = dispatcher.messages
    assert contains_all(message["text"], TOPIC_PHRASES[topic]), message["text"]
    assert PHONE in message["text"]
    assert message["buttons"], "a topical answer offers related topics"
    assert all(button["payload"].startswith("/") for button in message["buttons"])


@pytest.mark.parametrize("therapy", sorted(THERAPY_PHRASES))
def test_each_treatment_is_answered_when_named_by_the_entity(knowledge, dispatcher, domain, therapy):
    synonym = knowledge.therapies[therapy].synonyms[-1]
    tracker = make_tracker("ask_treatment", "does it help?", entities=[{"entity": "therapy", "value": synonym}])
    events = run(ActionAnswer(), dispatcher, tracker, domain)
    [message] = dispatcher.messages
    assert contains_all(message["text"], THERAPY_PHRASES[therapy]), message["text"]
    assert events == [SlotSet("therapy", therapy)]


def test_a_treatment_button_payload_is_answered(knowledge, dispatcher, domain):
    tracker = make_tracker("ask_treatment", '/ask_treatment{"therapy":"biofeedback"}',
                           entities=[{"entity": "therapy", "value": "biofeedback"}])
    run(ActionAnswer(), dispatcher, tracker, domain)
    assert contains_all(texts(dispatcher)[0], THERAPY_PHRASES["biofeedback"])


def test_a_misspelt_treatment_the_entity_ruler_missed_is_still_answered(dispatcher, domain):
    run(ActionAnswer(), dispatcher, make_tracker("ask_treatment", "would hydro-therapy or aquatic therapy help"), domain)
    assert contains_all(texts(dispatcher)[0], THERAPY_PHRASES["water_therapy"])


def previous_turn_about(therapy):
    return [{"event": "user", "text": "what is water therapy"}, {"event": "action", "name": "action_answer"},
            {"event": "slot", "name": "therapy", "value": therapy}, {"event": "bot", "text": "..."},
            {"event": "action", "name": "action_listen"}, {"event": "user", "text": "does it help?"}]


@pytest.mark.parametrize("text, expected", [("does it really help?", "water_therapy"),
                                            ("how does that work", "water_therapy"),
                                            ("what other treatments are there", None),
                                            ("how is it treated", None)])
def test_a_follow_up_is_about_the_treatment_just_answered(dispatcher, domain, text, expected):
    tracker = make_tracker("ask_treatment", text, events=previous_turn_about("water_therapy"))
    events = run(ActionAnswer(), dispatcher, tracker, domain)
    if expected:
        assert contains_all(texts(dispatcher)[0], THERAPY_PHRASES[expected]) and SlotSet("therapy", expected) in events
    else:
        assert contains_all(texts(dispatcher)[0], TOPIC_PHRASES["treatments"])


def test_an_older_treatment_answer_is_not_a_follow_up(dispatcher, domain):
    events = previous_turn_about("water_therapy") + [{"event": "bot", "text": "..."},
                                                     {"event": "user", "text": "does it help"}]
    run(ActionAnswer(), dispatcher, make_tracker("ask_treatment", "does it help", events=events), domain)
    assert contains_all(texts(dispatcher)[0], TOPIC_PHRASES["treatments"])


def test_a_treatment_question_naming_none_gets_the_overview_with_treatment_buttons(knowledge, dispatcher, domain):
    events = run(ActionAnswer(), dispatcher, make_tracker("ask_treatment", "how is it treated"), domain)
    [message] = dispatcher.messages
    assert contains_all(message["text"], TOPIC_PHRASES["treatments"])
    titles = [button["title"] for button in message["buttons"]]
    assert "Physical therapy" in titles and "Water therapy" in titles
    assert events == []


@pytest.mark.parametrize("intent", REQUIRED_REPLY_INTENTS)
def test_conversation_intents_get_their_reply(knowledge, dispatcher, domain, intent):
    run(ActionAnswer(), dispatcher, make_tracker(intent, "..."), domain)
    assert texts(dispatcher) == [knowledge.replies[intent].text]


@pytest.mark.parametrize("intent", ["medical_advice", "request_human", "ask_insurance", "ask_cost", "ask_hours",
                                    "bot_challenge", "out_of_scope"])
def test_what_the_assistant_cannot_do_is_said_honestly_with_the_phone(dispatcher, domain, intent):
    run(ActionAnswer(), dispatcher, make_tracker(intent, "..."), domain)
    assert PHONE in texts(dispatcher)[0]


def test_medical_advice_is_refused_never_answered(dispatcher, domain):
    run(ActionAnswer(), dispatcher, make_tracker("medical_advice", "can I stop my meds"), domain)
    assert "can't give medical advice" in texts(dispatcher)[0]


def test_an_unknown_intent_gets_the_fallback(knowledge, dispatcher, domain):
    run(ActionAnswer(), dispatcher, make_tracker("nlu_fallback", "blorp"), domain)
    assert texts(dispatcher) == [knowledge.fallback.text]


def test_the_fallback_says_what_it_can_do_and_gives_the_phone(dispatcher, domain):
    run(ActionFallback(), dispatcher, make_tracker("nlu_fallback", "asdf"), domain)
    [message] = dispatcher.messages
    assert PHONE in message["text"] and "fibromyalgia" in message["text"]
    assert {"title": "Request a consultation", "payload": "/request_consultation"} in message["buttons"]


def test_an_unclear_message_naming_a_treatment_gets_that_treatment(dispatcher, domain):
    events = run(ActionFallback(), dispatcher, make_tracker("nlu_fallback", "swimming??"), domain)
    assert contains_all(texts(dispatcher)[0], THERAPY_PHRASES["gentle_exercise"])
    assert events == [SlotSet("therapy", "gentle_exercise")]


def test_a_conversation_starts_with_the_disclaimer_once(knowledge, dispatcher, domain):
    events = run(ActionSessionStart(), dispatcher, make_tracker(), domain)
    assert texts(dispatcher) == [knowledge.disclaimer]
    assert "not a doctor" in knowledge.disclaimer
    assert events[0] == SessionStarted() and events[-1]["name"] == "action_listen"


@pytest.mark.parametrize("intent, must", [("emergency", ["911", "emergency room"]), ("crisis", ["988", "911"])])
def test_safety_routes_and_ends_any_form(dispatcher, domain, intent, must):
    tracker = make_tracker(intent, "...", active_loop="consultation_form", slots={"requested_slot": "phone"})
    events = run(ActionSafety(), dispatcher, tracker, domain)
    assert contains_all(texts(dispatcher)[0], must)
    assert ActiveLoop(None) in events and SlotSet("requested_slot", None) in events
    assert SlotSet("name", None) in events and SlotSet("booking_changing", None) in events


def test_a_failing_action_apologises_with_the_phone_instead_of_going_silent(monkeypatch, dispatcher, domain):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("actions.answers.therapy_asked", broken)
    events = run(ActionAnswer(), dispatcher, make_tracker("ask_treatment", "PT?"), domain)
    assert events == []
    [text] = texts(dispatcher)
    assert "went wrong" in text and PHONE in text and "boom" not in text


def test_a_failure_is_logged_with_the_conversation_id_but_never_the_errors_text(monkeypatch, dispatcher, domain,
                                                                                 caplog):
    """An exception's message can quote the visitor's text; the log keeps its type and stack only."""
    def broken(knowledge, tracker):
        raise ValueError(f"could not read {tracker.latest_message['text']!r}")

    monkeypatch.setattr("actions.answers.therapy_asked", broken)
    tracker = make_tracker("ask_treatment", "my name is Maria Lopez, 310 555 0134", sender_id="conv-log-1")
    run(ActionAnswer(), dispatcher, tracker, domain)
    assert "Action action_answer failed in conversation conv-log-1 (ValueError)" in caplog.text
    assert "therapy_asked" in caplog.text or "answers.py" in caplog.text  # the stack is kept
    assert "Maria" not in caplog.text and "0134" not in caplog.text
