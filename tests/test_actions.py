"""The answer, fallback, session-start and safety actions, run as the action server runs them."""

from __future__ import annotations

import pytest
from rasa_sdk.events import ActiveLoop, SessionStarted, SlotSet

from actions.answers import ActionAnswer, ActionFallback, ActionSessionStart
from actions.safety import ActionSafety
from core.knowledge_loader import get_knowledge
from tests.conftest import make_tracker, run, texts
from tests.expectations import PHONE, THERAPY_PHRASES, TOPIC_PHRASES, contains_all


@pytest.mark.parametrize("topic", sorted(get_knowledge().topics))
def test_every_article_topic_is_answered_from_the_article_with_next_steps(knowledge, dispatcher, domain, topic):
    intent = knowledge.topics[topic].intent
    run(ActionAnswer(), dispatcher, make_tracker(intent, "question"), domain)
    [message] = dispatcher.messages
    assert knowledge.topics[topic].answer in message["text"]
    assert contains_all(message["text"], TOPIC_PHRASES.get(topic, ())), message["text"]
    assert PHONE in message["text"]
    assert message["buttons"], "a topical answer offers related topics"
    assert all(button["payload"].startswith("/") for button in message["buttons"])


@pytest.mark.parametrize("therapy", sorted(get_knowledge().therapies))
def test_each_treatment_is_answered_when_named_by_the_entity(knowledge, dispatcher, domain, therapy):
    synonym = knowledge.therapies[therapy].synonyms[-1]
    tracker = make_tracker("ask_treatment", "does it help?", entities=[{"entity": "therapy", "value": synonym}])
    events = run(ActionAnswer(), dispatcher, tracker, domain)
    [message] = dispatcher.messages
    assert knowledge.therapies[therapy].answer in message["text"]
    assert contains_all(message["text"], THERAPY_PHRASES.get(therapy, ())), message["text"]
    assert events == [SlotSet("therapy", therapy), SlotSet("topic", therapy)]


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
    assert events == [SlotSet("topic", "treatments")]


@pytest.mark.parametrize("intent", sorted(get_knowledge().replies))
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
    assert events == [SlotSet("therapy", "gentle_exercise"), SlotSet("topic", "gentle_exercise")]


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


# --- Issue 10: answers for people in pain ------------------------------------------------------------

def after(topic_key, text, intent="nlu_fallback"):
    """A tracker whose previous answer was about ``topic_key`` (its `topic` slot), then ``text``."""
    events = [{"event": "user", "text": "first question"}, {"event": "action", "name": "action_answer"},
              {"event": "slot", "name": "topic", "value": topic_key}, {"event": "bot", "text": "..."},
              {"event": "action", "name": "action_listen"}, {"event": "user", "text": text}]
    return make_tracker(intent, text, events=events)


def test_a_should_i_question_gets_the_general_answer_and_the_personal_line(knowledge, dispatcher, domain):
    run(ActionAnswer(), dispatcher, make_tracker("ask_treatment", "should I start exercising even though it hurts?"), domain)
    [text] = texts(dispatcher)
    assert contains_all(text, THERAPY_PHRASES["gentle_exercise"]) and knowledge.answering.personal_line in text
    assert "can't give medical advice" not in text and PHONE in text


def test_a_should_i_question_the_classifier_took_for_medical_advice_is_answered_generally(knowledge, dispatcher, domain):
    run(ActionAnswer(), dispatcher, make_tracker("medical_advice", "should I be eating differently?"), domain)
    [text] = texts(dispatcher)
    assert contains_all(text, THERAPY_PHRASES["dietary_changes"]) and knowledge.answering.personal_line in text


@pytest.mark.parametrize("text", ["should I double my pain meds tonight", "can I stop my cymbalta",
                                  "how much gabapentin should I take", "is it safe for me to swim with a bad disc"])
def test_personal_specifics_are_refused_even_when_a_treatment_is_named(dispatcher, domain, text):
    run(ActionAnswer(), dispatcher, make_tracker("medical_advice", text), domain)
    assert "can't give medical advice" in texts(dispatcher)[0]


def test_medical_advice_without_a_general_question_stays_refused(dispatcher, domain):
    run(ActionAnswer(), dispatcher, make_tracker("medical_advice", "what's wrong with my hip"), domain)
    assert "can't give medical advice" in texts(dispatcher)[0]


@pytest.mark.parametrize("intent, text, closest", [
    ("ask_causes", "can I catch fibromyalgia from someone?", "causes"),
    ("ask_treatment", "will I ever get rid of fibromyalgia completely?", "back_pain"),
    ("ask_surgery", "how often does decompression surgery work?", "surgery"),
    ("ask_treatment", "what are the side effects of antidepressants", "antidepressants"),
    ("medical_advice", "is fibromyalgia contagious", "causes"),
    ("ask_treatment", "do sleep aids leave you feeling spaced out", "sleep_aids"),
    ("nlu_fallback", "would fibromyalgia be visible on an x-ray", "what_is_fibromyalgia"),
])
def test_what_the_article_does_not_say_is_said_honestly_with_the_closest_and_the_phone(
        knowledge, dispatcher, domain, intent, text, closest):
    events = run(ActionAnswer(), dispatcher, make_tracker(intent, text), domain)
    [message] = dispatcher.messages
    closest_topic = knowledge.topics.get(closest) or knowledge.therapies[closest]
    assert message["text"].startswith("The article doesn't cover")
    assert closest_topic.answer in message["text"] and PHONE in message["text"]
    assert SlotSet("topic", closest) in events


def test_an_off_topic_message_is_not_taken_for_a_question_the_article_does_not_answer(knowledge, dispatcher, domain):
    run(ActionAnswer(), dispatcher, make_tracker("out_of_scope", "what's the weather like tomorrow"), domain)
    assert texts(dispatcher) == [knowledge.replies["out_of_scope"].text]


@pytest.mark.parametrize("previous, text, expected", [
    ("what_is_fibromyalgia", "so how do you treat it?", "treatments"),
    ("symptoms", "and what causes that?", "causes"),
    ("causes", "who gets it?", "who_gets_it"),
    ("surgery", "who decides if I need it?", "surgery_candidate"),
    ("gentle_exercise", "does it hurt?", "gentle_exercise"),        # the article says movement can be painful
    ("combined_approach", "how long does that take?", "combined_approach"),  # "may take time"
    ("water_therapy", "does it really help?", "water_therapy"),
    ("related_conditions", "ok so what can they do for that", "treatments"),
    ("gentle_exercise", "but won't that make my back worse", "gentle_exercise"),  # "difficult and painful"
    ("biofeedback", "is it actually any good", "biofeedback"),
])
def test_a_follow_up_is_answered_about_the_topic_just_discussed(knowledge, dispatcher, domain, previous, text, expected):
    run(ActionAnswer(), dispatcher, after(previous, text), domain)
    answer = (knowledge.topics.get(expected) or knowledge.therapies[expected]).answer
    assert answer in texts(dispatcher)[0] and not texts(dispatcher)[0].startswith("The article doesn't")


@pytest.mark.parametrize("previous, text", [("physical_therapy", "does it hurt?"),
                                            ("water_therapy", "can I do it at home?"),
                                            ("biofeedback", "how long does it take?"),
                                            ("surgery", "is it risky?"),
                                            ("biofeedback", "does that one hurt"),
                                            ("water_therapy", "will that make the pain worse")])
def test_a_follow_up_the_article_does_not_answer_says_so_about_that_topic(knowledge, dispatcher, domain, previous, text):
    run(ActionAnswer(), dispatcher, after(previous, text, intent="goodbye"), domain)
    [message] = texts(dispatcher)
    topic = knowledge.topics.get(previous) or knowledge.therapies[previous]
    assert message.startswith("The article doesn't cover") and topic.answer in message


def test_a_price_question_after_a_treatment_is_still_about_prices(knowledge, dispatcher, domain):
    run(ActionAnswer(), dispatcher, after("water_therapy", "how much does it cost?", intent="ask_cost"), domain)
    assert texts(dispatcher) == [knowledge.replies["ask_cost"].text]


def test_hopelessness_gets_the_answer_then_one_gentle_line_never_instead(knowledge, dispatcher, domain):
    text = "been living with fibro for years and nothing has worked, what's left?"
    run(ActionAnswer(), dispatcher, make_tracker("ask_combined_approach", text), domain)
    answer, line = texts(dispatcher)
    assert knowledge.topics["combined_approach"].answer in answer and "decompression spine surgery" in answer
    assert line == knowledge.answering.hopeless_line and "988" in line
    assert knowledge.crisis_text not in answer


def test_an_ordinary_question_gets_no_988_line(dispatcher, domain):
    run(ActionAnswer(), dispatcher, make_tracker("ask_treatment", "what is the point of biofeedback"), domain)
    assert len(texts(dispatcher)) == 1 and "988" not in texts(dispatcher)[0]


def test_an_unclear_hopeless_message_gets_the_combined_approach_and_the_line(knowledge, dispatcher, domain):
    run(ActionFallback(), dispatcher, make_tracker("nlu_fallback", "I've tried everything, losing hope here"), domain)
    answer, line = texts(dispatcher)
    assert knowledge.topics["combined_approach"].answer in answer and line == knowledge.answering.hopeless_line


def test_an_unclear_message_close_to_an_article_sentence_gets_that_sentence_verbatim(knowledge, dispatcher, domain):
    text = "blood flow in the lumbar region"
    run(ActionFallback(), dispatcher, make_tracker("nlu_fallback", text), domain)
    [message] = texts(dispatcher)
    quoted = message.split("\u201c")[1].split("\u201d")[0]
    assert message.startswith("The article says: \u201c") and quoted in knowledge.article and "lumbar region" in quoted
    assert PHONE in message


def test_an_unclear_message_far_from_the_article_gets_the_fallback(knowledge, dispatcher, domain):
    run(ActionFallback(), dispatcher, make_tracker("nlu_fallback", "purple lamp on tuesdays"), domain)
    assert texts(dispatcher) == [knowledge.fallback.text]


def test_another_language_gets_the_english_only_reply_with_the_phone(knowledge, dispatcher, domain):
    run(ActionAnswer(), dispatcher, make_tracker("other_language", "me duele la espalda"), domain)
    [text] = texts(dispatcher)
    assert "only understand English" in text and PHONE in text and "911" in text


def test_an_unclear_message_matching_a_medical_advice_pattern_is_refused(dispatcher, domain):
    run(ActionFallback(), dispatcher, make_tracker("nlu_fallback", "would it hurt to take an extra pill"), domain)
    assert "can't give medical advice" in texts(dispatcher)[0]


def test_an_off_topic_message_after_an_answer_is_not_a_follow_up(knowledge, dispatcher, domain):
    run(ActionAnswer(), dispatcher, after("water_therapy", "what's the weather like tomorrow", "out_of_scope"), domain)
    assert texts(dispatcher) == [knowledge.replies["out_of_scope"].text]


def test_a_follow_up_naming_no_subject_is_about_the_previous_topic(knowledge, dispatcher, domain):
    run(ActionAnswer(), dispatcher, after("surgery", "how long is the recovery?", "out_of_scope"), domain)
    assert "doesn't cover" in texts(dispatcher)[0] and knowledge.topics["surgery"].answer in texts(dispatcher)[0]


def test_a_question_the_article_does_not_answer_after_an_answer_is_a_follow_up_even_off_topic(knowledge, dispatcher,
                                                                                                domain):
    text = "and how often per week would someone need to go"
    run(ActionAnswer(), dispatcher, after("physical_therapy", text, "out_of_scope"), domain)
    [message] = texts(dispatcher)
    assert message.startswith("The article doesn't cover") and knowledge.therapies["physical_therapy"].answer in message


def test_being_on_medication_for_ages_is_not_a_question_about_a_cure(knowledge, dispatcher, domain):
    text = "my mum has taken meds forever for her fibro, is there anything apart from pills"
    run(ActionAnswer(), dispatcher, make_tracker("ask_combined_approach", text), domain)
    assert texts(dispatcher)[0].startswith(knowledge.topics["combined_approach"].answer[:60])
    assert knowledge.answering.not_covered_aspect("will I have fibro forever").key == "cure"


@pytest.mark.parametrize("intent, text, entity, expected", [
    ("ask_back_pain", "are painkillers used for a fibro back", "painkillers", "medication"),
    ("ask_treatment", "does biofeedback do much for back pain", "biofeedback", "biofeedback"),
    ("ask_back_pain", "i take painkillers and my back still hurts, what else", "painkillers", "back_pain"),
    ("ask_back_pain", "can walking and physio both help my back", "walking", "back_pain"),
])
def test_a_back_pain_question_naming_one_treatment_is_about_that_treatment(knowledge, dispatcher, domain, intent,
                                                                          text, entity, expected):
    tracker = make_tracker(intent, text, entities=[{"entity": "therapy", "value": entity}])
    run(ActionAnswer(), dispatcher, tracker, domain)
    answer = (knowledge.topics.get(expected) or knowledge.therapies[expected]).answer
    assert answer in texts(dispatcher)[0]


STORY = ("I'm 61 and had fibro for a long time, my back got worse this year after I moved house and my "
         "family doctor only tells me to rest. ")


def test_a_long_story_asking_what_treatments_there_are_gets_the_general_answer(knowledge, dispatcher, domain):
    run(ActionAnswer(), dispatcher, make_tracker("medical_advice", STORY + "what treatments are there"), domain)
    [text] = texts(dispatcher)
    assert knowledge.topics["treatments"].answer in text and knowledge.answering.personal_line in text


@pytest.mark.parametrize("question", ["what treatment should I get", "how much tramadol should I take",
                                      "what is wrong with me"])
def test_a_long_story_asking_for_personal_advice_stays_refused(dispatcher, domain, question):
    run(ActionAnswer(), dispatcher, make_tracker("medical_advice", STORY + question), domain)
    assert "can't give medical advice" in texts(dispatcher)[0]


def bot_said(text):
    """The events of a previous turn whose answer was ``text``."""
    return [{"event": "user", "text": "earlier"}, {"event": "action", "name": "action_answer"},
            {"event": "bot", "text": text}, {"event": "action", "name": "action_listen"},
            {"event": "user", "text": "now"}]


def test_frustration_gets_an_apology_an_invitation_the_phone_and_the_form(knowledge, dispatcher, domain):
    run(ActionAnswer(), dispatcher, make_tracker("frustration", "this is useless"), domain)
    [message] = dispatcher.messages
    assert message["text"] == knowledge.replies["frustration"].text
    assert "sorry" in message["text"].lower() and "another way" in message["text"] and PHONE in message["text"]
    assert "/request_consultation" in [button["payload"] for button in message["buttons"]]


@pytest.mark.parametrize("previous", ["fallback", "frustration", "again"])
def test_frustration_after_a_miss_offers_the_phone_first(knowledge, dispatcher, domain, previous):
    said = {"fallback": knowledge.fallback, "frustration": knowledge.replies["frustration"],
            "again": knowledge.again}[previous].text
    run(ActionAnswer(), dispatcher, make_tracker("frustration", "still useless", events=bot_said(said)), domain)
    assert texts(dispatcher) == [knowledge.again.text] and PHONE in knowledge.again.text


def test_a_second_fallback_offers_the_phone_first(knowledge, dispatcher, domain):
    run(ActionFallback(), dispatcher, make_tracker("nlu_fallback", "zzkv plemf", events=bot_said(knowledge.fallback.text)),
        domain)
    assert texts(dispatcher) == [knowledge.again.text]


def test_a_fallback_after_an_answer_is_the_usual_fallback(knowledge, dispatcher, domain):
    events = bot_said(knowledge.answer(knowledge.topics["symptoms"]).text)
    run(ActionFallback(), dispatcher, make_tracker("nlu_fallback", "zzkv plemf", events=events), domain)
    assert texts(dispatcher) == [knowledge.fallback.text]


@pytest.mark.parametrize("intent, text, expected", [
    ("ask_treatment", "my husband has fibro, what treatments are there", "treatments"),
    ("ask_what_is_fibromyalgia", "my daughter was diagnosed with fibromyalgia, what is it", "what_is_fibromyalgia"),
    ("ask_back_pain", "i look after my mum, her back hurts from fibro", "back_pain"),
])
def test_a_caregiver_gets_the_topic_with_the_line_for_the_person_helping(knowledge, dispatcher, domain, intent, text,
                                                                         expected):
    run(ActionAnswer(), dispatcher, make_tracker(intent, text), domain)
    [message] = dispatcher.messages
    assert message["text"] == f"{knowledge.topics[expected].answer}\n\n{knowledge.answering.caregiver_line}"


def test_a_caregiver_the_classifier_took_for_medical_advice_gets_its_next_topic(knowledge, dispatcher, domain):
    tracker = make_tracker("medical_advice", "my sister has fibromyalgia, how can I help her")
    tracker.latest_message["intent_ranking"] = [{"name": "medical_advice", "confidence": 0.5},
                                                {"name": "ask_combined_approach", "confidence": 0.2}]
    run(ActionAnswer(), dispatcher, tracker, domain)
    [text] = texts(dispatcher)
    assert knowledge.topics["combined_approach"].answer in text and knowledge.answering.caregiver_line in text


@pytest.mark.parametrize("text", ["my mom is on lyrica, can she take more tonight", "what dose should my husband take",
                                  "does my son have fibromyalgia", "can my wife take her cymbalta with tramadol"])
def test_a_caregivers_personal_specifics_are_refused(dispatcher, domain, text):
    run(ActionAnswer(), dispatcher, make_tracker("medical_advice", text), domain)
    assert "can't give medical advice" in texts(dispatcher)[0]


@pytest.mark.parametrize("text, therapy", [
    ("is it ok to take antidepressants for fibro back pain", "antidepressants"),
    ("are painkillers alright for fibromyalgia", "medication"),
    ("can people with fibromyalgia use sleep aids", "sleep_aids"),
])
def test_a_general_medicine_question_gets_the_article_and_the_personal_line(knowledge, dispatcher, domain, text, therapy):
    run(ActionAnswer(), dispatcher, make_tracker("medical_advice", text), domain)
    [message] = dispatcher.messages
    assert message["text"] == f"{knowledge.therapies[therapy].answer}\n\n{knowledge.answering.personal_line}"


def test_a_caregiver_with_no_likely_topic_gets_the_treatments_overview(knowledge, dispatcher, domain):
    tracker = make_tracker("medical_advice", "my sister was diagnosed last month and I'd love to support her")
    tracker.latest_message["intent_ranking"] = [{"name": "medical_advice", "confidence": 0.99},
                                                {"name": "ask_related_conditions", "confidence": 0.004}]
    run(ActionAnswer(), dispatcher, tracker, domain)
    [text] = texts(dispatcher)
    assert knowledge.topics["treatments"].answer in text and knowledge.answering.caregiver_line in text


def test_a_question_the_article_does_not_answer_about_a_treatment_says_so(knowledge, dispatcher, domain):
    run(ActionAnswer(), dispatcher, make_tracker("medical_advice", "do antidepressants make you gain weight"), domain)
    [text] = texts(dispatcher)
    assert "doesn't cover" in text and knowledge.therapies["antidepressants"].answer in text


def ranked(tracker, *intents):
    tracker.latest_message["intent_ranking"] = [{"name": name, "confidence": confidence} for name, confidence in intents]
    return tracker


def test_a_fallback_between_two_likely_topics_gets_the_first(knowledge, dispatcher, domain):
    tracker = ranked(make_tracker("nlu_fallback", "back pain all day from fibro. options?", confidence=0.4),
                     ("nlu_fallback", 0.4), ("ask_back_pain", 0.45), ("ask_treatment", 0.42))
    run(ActionFallback(), dispatcher, tracker, domain)
    assert knowledge.topics["back_pain"].answer in texts(dispatcher)[0]


def test_a_fallback_with_no_likely_topic_is_the_fallback(knowledge, dispatcher, domain):
    tracker = ranked(make_tracker("nlu_fallback", "zzkv plemf", confidence=0.4),
                     ("nlu_fallback", 0.4), ("ask_back_pain", 0.2), ("ask_treatment", 0.1))
    run(ActionFallback(), dispatcher, tracker, domain)
    assert texts(dispatcher) == [knowledge.fallback.text]


def test_an_unsure_question_for_others_besides_a_treatment_gets_the_combined_approach(knowledge, dispatcher, domain):
    run(ActionFallback(), dispatcher, make_tracker("nlu_fallback", "anything besides painkillers for fibro?"), domain)
    assert knowledge.topics["combined_approach"].answer in texts(dispatcher)[0]


def test_a_medical_advice_guess_asking_for_options_gets_the_next_topic(knowledge, dispatcher, domain):
    tracker = ranked(make_tracker("medical_advice", "at the end of my rope with this back pain, what do you offer"),
                     ("medical_advice", 0.57), ("ask_back_pain", 0.3))
    run(ActionAnswer(), dispatcher, tracker, domain)
    text = texts(dispatcher)[0]
    assert knowledge.topics["back_pain"].answer in text and "can't give medical advice" not in text
