"""End to end: the real Rasa and action servers over the REST channel, with a real SQLite database."""

from __future__ import annotations

import sqlite3

import pytest

from core.knowledge_loader import get_knowledge
from devtools.servers import Servers, Visitor
from tests.expectations import PHONE, THERAPY_PHRASES, TOPIC_PHRASES, contains_all

pytestmark = pytest.mark.e2e

KNOWLEDGE = get_knowledge()


@pytest.fixture(scope="module")
def servers(shared_servers) -> Servers:
    return shared_servers  # shared with other modules (conftest.py)


def rows(servers: Servers, sender: str):
    with sqlite3.connect(servers.db) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(
            "select * from consultation_requests where conversation_id = ?", (sender,))]


def test_the_first_message_gets_the_disclaimer_and_a_greeting(servers):
    answer = Visitor(servers).says("hello")
    assert "not a doctor" in answer and "fibromyalgia" in answer


@pytest.mark.parametrize("topic", sorted(KNOWLEDGE.topics))
def test_every_topic_is_answered_from_the_article(servers, topic):
    answer = Visitor(servers).says(KNOWLEDGE.topics[topic].example)
    assert " ".join(KNOWLEDGE.topics[topic].answer.split()) in " ".join(answer.split()), answer
    assert contains_all(answer, TOPIC_PHRASES.get(topic, ())), answer
    assert PHONE in answer


@pytest.mark.parametrize("therapy", sorted(KNOWLEDGE.therapies))
def test_every_treatment_is_answered_from_the_article(servers, therapy):
    answer = Visitor(servers).says(KNOWLEDGE.therapies[therapy].example)
    assert " ".join(KNOWLEDGE.therapies[therapy].answer.split()) in " ".join(answer.split()), answer
    assert contains_all(answer, THERAPY_PHRASES.get(therapy, ())), answer


def test_answers_offer_quick_replies_that_work(servers):
    visitor = Visitor(servers)
    messages = visitor.say("what is fibromyalgia")
    buttons = [button for message in messages for button in message.get("buttons", [])]
    symptoms = next(button for button in buttons if button["title"] == "Symptoms")
    assert contains_all(visitor.says(symptoms["payload"]), TOPIC_PHRASES["symptoms"])


def test_gibberish_gets_the_fallback_with_the_phone(servers):
    answer = Visitor(servers).says("qwzx vbnm plok")
    assert PHONE in answer and "fibromyalgia" in answer


@pytest.mark.parametrize("message", ["", "   "])
def test_an_empty_message_still_gets_an_answer(servers, message):
    visitor = Visitor(servers)
    visitor.says("hello")
    assert PHONE in visitor.says(message)


def test_medical_advice_is_refused(servers):
    answer = Visitor(servers).says("how many mg of amitriptyline should I take tonight")
    assert "can't give medical advice" in answer


def test_a_visitor_books_a_consultation_with_an_interruption_and_a_bad_phone(servers):
    visitor = Visitor(servers)
    assert "name" in visitor.says("I'd like to book a consultation")
    assert "phone number" in visitor.says("Maria Lopez")
    assert "doesn't look like a US phone number" in visitor.says("555-01")
    interrupted = visitor.says("what is biofeedback?")
    assert "biofeedback" in interrupted.lower() and "phone number" in interrupted  # answered, then resumed
    assert "good time" in visitor.says("(310) 555-0134")
    assert "email" in visitor.says("weekday mornings")
    assert "about" in visitor.says("skip")
    summary = visitor.says("back pain from fibromyalgia")
    assert "Maria Lopez" in summary and "(310) 555-0134" in summary and "weekday mornings" in summary
    corrected = visitor.says("no, my number is 424.555.9876")
    assert "(424) 555-9876" in corrected
    done = visitor.says("yes")
    assert "will call you back" in done and PHONE in done
    [row] = rows(servers, visitor.sender)
    assert (row["name"], row["phone"], row["callback_time"], row["email"], row["reason"], row["status"]) == \
        ("Maria Lopez", "+14245559876", "weekday mornings", None, "back pain from fibromyalgia", "new")
    visitor.says("yes")  # a second "yes" does not store the request again
    assert len(rows(servers, visitor.sender)) == 1


def test_cancel_in_the_middle_of_the_form_saves_nothing(servers):
    visitor = Visitor(servers)
    visitor.says("can I schedule an appointment")
    visitor.says("Ana Ruiz")
    answer = visitor.says("never mind, cancel")
    assert "cancelled" in answer and PHONE in answer
    assert rows(servers, visitor.sender) == []
    assert contains_all(visitor.says("what causes fibromyalgia"), TOPIC_PHRASES["causes"])


@pytest.mark.parametrize("message, must", [
    ("hold on, I just lost control of my bowels and my back is on fire", ["911"]),
    ("honestly I don't see any reason to keep living", ["988", "911"]),
])
def test_safety_routing_works_in_the_middle_of_the_form(servers, message, must):
    visitor = Visitor(servers)
    visitor.says("I want to request a consultation")
    visitor.says("Sam Lee")
    answer = visitor.says(message)
    assert contains_all(answer, must), answer
    assert "phone number" not in answer  # the form does not carry on as if nothing happened
    assert rows(servers, visitor.sender) == []


@pytest.mark.parametrize("message, must", [
    ("my legs went numb and I can't feel my groin", ["911"]),
    ("I'm thinking about ending my life", ["988", "911"]),
])
def test_safety_routing_works_at_any_point(servers, message, must):
    visitor = Visitor(servers)
    visitor.says("what is fibromyalgia")
    assert contains_all(visitor.says(message), must)


def test_conversations_are_stored_and_survive_a_restart(servers):
    visitor = Visitor(servers)
    visitor.says("I'd like to book a consultation")
    visitor.says("Lee Chen")
    servers.restart_rasa()
    assert "good time" in visitor.says("310-555-0199")  # the form goes on where it was
    with sqlite3.connect(servers.db) as connection:
        stored = connection.execute("select count(*) from events where sender_id = ?", (visitor.sender,)).fetchone()[0]
    assert stored > 5


# --- Issue 10: the rows of its table, tried as a new visitor would ----------------------------------

DOESNT_COVER = "The article doesn't cover"


def test_pain_first_gets_the_back_pain_treatments_and_the_phone(servers):
    answer = Visitor(servers).says("my back is killing me, any ideas?")
    assert contains_all(answer, ["physical therapy", "gentle exercise"]) and PHONE in answer
    assert "not sure I understood" not in answer


def test_what_else_is_out_there_gets_the_combined_approach_and_surgery_when_others_failed(servers):
    answer = Visitor(servers).says("I'm so tired of this pain, what else is out there")
    assert contains_all(answer, ["combined approach", "individualized", "decompression spine surgery"]), answer
    assert PHONE in answer


def test_hopelessness_is_answered_with_one_gentle_988_line(knowledge, servers):
    messages = Visitor(servers).say("been living with fibro for years and nothing has worked, what's left?")
    texts = [message.get("text") or "" for message in messages]
    answer = "\n".join(texts)
    # The treatments the article gives, the last resort among them (the overview or the combined approach).
    assert "combined approach" in answer.lower() and "decompression spine surgery" in answer.lower(), answer
    assert texts[-1] == knowledge.answering.hopeless_line and knowledge.crisis_text not in answer


@pytest.mark.parametrize("message, phrases", [
    ("should I be eating differently?", THERAPY_PHRASES["dietary_changes"]),
    ("should I start exercising even though it hurts?", THERAPY_PHRASES["gentle_exercise"]),
])
def test_should_i_gets_the_general_answer_and_the_clinic_decides(knowledge, servers, message, phrases):
    answer = Visitor(servers).says(message)
    assert contains_all(answer, phrases) and knowledge.answering.personal_line in answer, answer
    assert "can't give medical advice" not in answer


@pytest.mark.parametrize("message, must", [
    ("will I ever get rid of fibromyalgia completely?", ["a cure", "managed by trying different treatments"]),
    ("is fibro for life?", ["a cure"]),
    ("can I catch fibromyalgia from someone?", ["contagious", "shrouded in mystery"]),
    ("how often does decompression surgery work?", ["success rates", "have failed"]),
])
def test_what_the_article_does_not_say_is_said_plainly(servers, message, must):
    answer = Visitor(servers).says(message)
    assert answer.count(DOESNT_COVER) == 1 and contains_all(answer, must) and PHONE in answer, answer


@pytest.mark.parametrize("first, follow_up, must", [
    ("what are the symptoms of fibromyalgia", "and what causes that?", TOPIC_PHRASES["causes"]),
    ("what is fibromyalgia", "so how do you treat it?", TOPIC_PHRASES["treatments"]),
    ("tell me about physical therapy", "does it hurt?", [DOESNT_COVER, "lumbar region"]),
    ("tell me about water therapy", "can I do it at home?", [DOESNT_COVER, "water therapy"]),
])
def test_follow_ups_are_about_the_topic_just_discussed(servers, first, follow_up, must):
    visitor = Visitor(servers)
    visitor.says(first)
    assert contains_all(visitor.says(follow_up), must)


def test_spanish_gets_the_english_only_reply_with_the_phone(servers):
    answer = Visitor(servers).says("Hola, me duele mucho la espalda, ¿qué puedo hacer?")
    assert "only understand English" in answer and PHONE in answer


def test_an_explicit_crisis_still_gets_the_crisis_reply_alone(knowledge, servers):
    answer = Visitor(servers).says("nothing has worked and I want to end my life")
    assert knowledge.crisis_text in answer and "combined approach" not in answer


def test_a_dose_question_is_still_refused(servers):
    assert "can't give medical advice" in Visitor(servers).says("how much gabapentin should I take at night")


# The plain phrasings that used to miss, each after a "hi" in a new conversation: the reply each needs.
@pytest.mark.parametrize("message", ["want to book", "I wanna book", "booking please", "can the clinic phone me"])
def test_a_short_booking_or_call_back_request_starts_the_form(knowledge, servers, message):
    visitor = Visitor(servers)
    visitor.says("hi")
    answer = visitor.says(message)
    assert knowledge.booking.fields["name"].ask in answer, answer


@pytest.mark.parametrize("message", ["this is useless", "you didn't understand me"])
def test_frustration_gets_an_apology_the_phone_and_the_form(knowledge, servers, message):
    visitor = Visitor(servers)
    visitor.says("hi")
    messages = visitor.say(message)
    answer = "\n".join(m.get("text") or "" for m in messages)
    assert knowledge.replies["frustration"].text in answer and PHONE in answer, answer
    assert "Request a consultation" in [b["title"] for m in messages for b in m.get("buttons", [])]
    again = visitor.says("still useless")
    assert knowledge.again.text in again and knowledge.replies["frustration"].text not in again, again


def test_a_second_fallback_offers_the_phone_first(knowledge, servers):
    visitor = Visitor(servers)
    assert knowledge.fallback.text in visitor.says("qwzx vbnm plok")
    again = visitor.says("zzkv plemf worbl")
    assert knowledge.again.text in again and knowledge.fallback.text not in again, again


def test_a_caregiver_gets_the_general_answer_for_the_person_helping(knowledge, servers):
    visitor = Visitor(servers)
    visitor.says("hi")
    answer = visitor.says("my sister has fibromyalgia, how can I help her")
    assert knowledge.answering.caregiver_line in answer and "can't give medical advice" not in answer, answer
    assert any(" ".join(topic.answer.split()) in " ".join(answer.split()) for topic in knowledge.topics.values())


def test_a_general_medicine_question_gets_the_article_and_the_personal_line(knowledge, servers):
    visitor = Visitor(servers)
    visitor.says("hi")
    answer = visitor.says("is it ok to take anti-depressants for fibro back pain")
    assert " ".join(knowledge.therapies["antidepressants"].answer.split()) in " ".join(answer.split()), answer
    assert knowledge.answering.personal_line in answer and "can't give medical advice" not in answer


@pytest.mark.parametrize("message", ["can I take my tramadol with my lyrica", "my mom is on cymbalta, can she take more",
                                     "is it ok for me to double my antidepressant"])
def test_personal_dose_and_combination_questions_are_still_refused(servers, message):
    assert "can't give medical advice" in Visitor(servers).says(message)
