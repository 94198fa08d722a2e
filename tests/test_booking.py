"""The consultation form: the answers' parsers (core/parsing.py), the validation action's decisions, the
summary, submission."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import booking
from actions.booking import (
    ActionAskConfirmed,
    ActionCancelConsultation,
    ActionSubmitConsultation,
    ValidateConsultationForm,
)
from core.knowledge import answered_in_form
from core.parsing import clean_name, display_phone, find_email, free_text, is_skip, normalise_phone
from core.store import RequestStore
from tests.conftest import make_tracker, run, texts
from tests.expectations import PHONE

FORM = "consultation_form"


@pytest.mark.parametrize("text, expected", [
    ("(310) 555-0134", "+13105550134"), ("310.555.0134", "+13105550134"), ("+1 310 555 0134", "+13105550134"),
    ("3105550134", "+13105550134"), ("1-310-555-0134", "+13105550134"), ("my cell is 310 555 0134 thanks", "+13105550134"),
    ("(424)555-9876", "+14245559876"),
])
def test_us_phone_numbers_are_accepted_and_normalised(text, expected):
    assert normalise_phone(text) == expected
    assert display_phone(expected) == f"({expected[2:5]}) {expected[5:8]}-{expected[8:]}"


@pytest.mark.parametrize("text", ["555-0134", "12345", "call me", "(010) 555-0134", "310 055 0134", "310555013",
                                  "31055501345", "+44 20 7946 0958", ""])
def test_other_numbers_are_refused(text):
    assert normalise_phone(text) is None


@pytest.mark.parametrize("text, expected", [("Maria@Example.com", "maria@example.com"),
                                            ("it's j.doe+clinic@mail.co.uk", "j.doe+clinic@mail.co.uk"),
                                            ("no email", None), ("maria@example", None)])
def test_emails(text, expected):
    assert find_email(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Maria Lopez", "Maria Lopez"), ("my name is maria lopez", "Maria Lopez"), ("I'm José", "José"),
    ("Mary-Ann O'Neil", "Mary-Ann O'Neil"), ("it's Dr. Smith", "Dr. Smith"),
    ("hi", None), ("what is fibromyalgia", None), ("does PT help?", None), ("12345", None),
    ("I have been in pain for years and I want to know more", None), ("never mind", None),
    ("I'd rather not say", None), ("I want to book", None), ("the name is wrong", None),
])
def test_names(text, expected):
    assert clean_name(text) == expected


@pytest.mark.parametrize("text, skip", [("skip", True), ("no thanks", True), ("none", True), ("N/A", True),
                                        ("I'd rather not", True), ("no email", True), ("I don't have one", True),
                                        ("nope, skip it", True), ("skip please", True), ("back pain", False),
                                        ("No energy, pain everywhere", False), ("Nothing helps my back", False),
                                        ("None of the meds work", False), ("no: maria@example.com", False)])
def test_optional_questions_can_be_skipped(text, skip):
    assert is_skip(text) is skip


def test_free_text_answers_are_kept_but_questions_and_non_answers_are_not():
    assert free_text("  weekday   mornings ") == "weekday mornings"
    assert free_text("no pain in the mornings") == "no pain in the mornings"
    for text in ("what is water therapy?", "x", "yes", "ok", "thanks", "idk", "no"):
        assert free_text(text) is None, text


def test_an_email_longer_than_possible_is_refused():
    assert find_email(("a" * 250) + "@example.com") is None


def form_tracker(requested, text, intent="nlu_fallback", confidence=0.9, slots=None, after=(), **kwargs):
    """The tracker the validation action gets: Rasa appends the form's own execution to the events."""
    events = [{"event": "user", "text": text}, *({"event": "action", "name": name} for name in after),
              {"event": "action", "name": FORM}]
    return make_tracker(intent, text, confidence=confidence, active_loop=FORM, latest_action=FORM,
                        slots={"requested_slot": requested, **(slots or {})}, events=events, **kwargs)


def test_a_valid_answer_fills_the_requested_field(dispatcher, domain):
    events = run(ValidateConsultationForm(), dispatcher, form_tracker("phone", "310.555.0134"), domain)
    assert SlotSet("phone", "+13105550134") in events
    assert dispatcher.messages == []


@pytest.mark.parametrize("intent, text", [("ask_treatment", "what is water therapy?"),
                                          ("medical_advice", "how much ibuprofen can I take?"),
                                          ("stop", "cancel"), ("emergency", "I can't feel my legs"),
                                          ("crisis", "I want to die")])
def test_a_message_that_is_not_an_answer_is_left_to_the_rules(dispatcher, domain, intent, text):
    events = run(ValidateConsultationForm(), dispatcher, form_tracker("phone", text, intent=intent), domain)
    assert events == []  # nothing extracted: the form is rejected and the intent's rule runs
    assert dispatcher.messages == []


def test_an_emergency_wins_even_when_the_text_could_be_an_answer(dispatcher, domain):
    tracker = form_tracker("reason", "I lost control of my bladder", intent="emergency", confidence=1.0)
    assert run(ValidateConsultationForm(), dispatcher, tracker, domain) == []


def test_a_bad_answer_is_asked_again_and_the_second_failure_offers_the_phone(knowledge, dispatcher, domain):
    events = run(ValidateConsultationForm(), dispatcher, form_tracker("phone", "555"), domain)
    assert SlotSet("phone", None) in events and SlotSet("booking_failures", 1) in events
    assert texts(dispatcher) == [knowledge.booking.fields["phone"].retry]
    dispatcher.messages.clear()
    events = run(ValidateConsultationForm(), dispatcher,
                 form_tracker("phone", "five five five", slots={"booking_failures": 1}), domain)
    assert SlotSet("booking_failures", 2) in events
    [text] = texts(dispatcher)
    assert "US phone number" in text and PHONE in text and "cancel" in text


NOT_A_TIME = ["5" * 2000, "310-555-0134", "(424) 555 9876 is best", "maria@example.com", "12345678", "!!!",
              "Tuesday " * 40]


@pytest.mark.parametrize("text", NOT_A_TIME, ids=lambda text: text[:24])
def test_a_call_back_time_that_cannot_be_a_time_is_asked_again(knowledge, dispatcher, domain, text):
    events = run(ValidateConsultationForm(), dispatcher, form_tracker("callback_time", text), domain)
    assert SlotSet("callback_time", None) in events and SlotSet("booking_failures", 1) in events
    assert texts(dispatcher) == [knowledge.booking.fields["callback_time"].retry]


@pytest.mark.parametrize("text, expected", [
    ("weekday mornings", "weekday mornings"), ("  Tuesday   after 3 pm ", "Tuesday after 3 pm"),
    ("10:30", "10:30"), ("after 5", "after 5"), ("anytime", "anytime"), ("9-5 on weekdays", "9-5 on weekdays"),
    ("Mon or Wed 14.00-16.30", "Mon or Wed 14.00-16.30"),
])
def test_a_call_back_time_is_kept_in_the_visitors_words(dispatcher, domain, text, expected):
    events = run(ValidateConsultationForm(), dispatcher, form_tracker("callback_time", text), domain)
    assert SlotSet("callback_time", expected) in events
    assert dispatcher.messages == []


@pytest.mark.parametrize("text", ["5" * 2000, "310-555-0134", "maria@example.com", "12345678", "!!!"],
                         ids=lambda text: text[:24])
def test_a_reason_that_is_a_number_or_an_address_is_asked_again(knowledge, dispatcher, domain, text):
    events = run(ValidateConsultationForm(), dispatcher, form_tracker("reason", text), domain)
    assert SlotSet("reason", None) in events and SlotSet("booking_failures", 1) in events
    assert texts(dispatcher) == [knowledge.booking.fields["reason"].retry]


@pytest.mark.parametrize("text", ["back pain", "pain for 10 years, nothing helps", "water therapy"])
def test_a_reason_in_words_is_kept(dispatcher, domain, text):
    events = run(ValidateConsultationForm(), dispatcher, form_tracker("reason", text), domain)
    assert SlotSet("reason", text) in events


def test_nothing_is_read_when_the_form_resumes_after_an_answer(dispatcher, domain):
    tracker = form_tracker("phone", "3105550134", intent="ask_contact", after=["action_answer"])
    assert run(ValidateConsultationForm(), dispatcher, tracker, domain) == []


FILLED = {"name": "Maria Lopez", "phone": "+13105550134", "callback_time": "weekday mornings",
          "email": "skipped", "reason": "back pain"}


def test_the_summary_shows_every_detail_and_asks_to_confirm(dispatcher, domain):
    run(ActionAskConfirmed(), dispatcher, make_tracker(slots=FILLED), domain)
    [message] = dispatcher.messages
    for part in ("Maria Lopez", "(310) 555-0134", "weekday mornings", "(not given)", "back pain"):
        assert part in message["text"]
    assert [b["payload"] for b in message["buttons"]] == ["/affirm", "/deny"]


def confirm(text, intent, slots=None, entities=()):
    return form_tracker("confirmed", text, intent=intent, slots={**FILLED, **(slots or {})}, entities=entities)


@pytest.mark.parametrize("text, intent", [("yes", "affirm"), ("looks good", "nlu_fallback"), ("send it", "inform")])
def test_yes_at_the_summary_confirms(dispatcher, domain, text, intent):
    events = run(ValidateConsultationForm(), dispatcher, confirm(text, intent), domain)
    assert SlotSet("confirmed", True) in events


def test_an_unclear_answer_at_the_summary_is_asked_again(knowledge, dispatcher, domain):
    events = run(ValidateConsultationForm(), dispatcher, confirm("hmm maybe later", "nlu_fallback"), domain)
    assert SlotSet("confirmed", None) in events
    assert texts(dispatcher) == [knowledge.booking.fields["confirmed"].retry]


def test_a_correction_at_the_summary_replaces_the_value_and_shows_the_summary_again(dispatcher, domain):
    events = run(ValidateConsultationForm(), dispatcher, confirm("no, my number is (424) 555-9876", "deny"), domain)
    assert SlotSet("phone", "+14245559876") in events and SlotSet("confirmed", None) in events
    events = run(ValidateConsultationForm(), dispatcher, confirm("actually my name is Ana Ruiz", "deny"), domain)
    assert SlotSet("name", "Ana Ruiz") in events


def test_no_at_the_summary_asks_which_detail_then_asks_for_it_again(dispatcher, domain):
    events = run(ValidateConsultationForm(), dispatcher, confirm("no", "deny"), domain)
    assert SlotSet("booking_changing", True) in events and SlotSet("confirmed", None) in events
    run(ActionAskConfirmed(), dispatcher, make_tracker(slots={**FILLED, "booking_changing": True}), domain)
    [message] = dispatcher.messages
    assert '/deny{"booking_field":"callback_time"}' in [b["payload"] for b in message["buttons"]]
    tracker = confirm("/deny", "deny", slots={"booking_changing": True},
                      entities=[{"entity": "booking_field", "value": "callback_time"}])
    events = run(ValidateConsultationForm(), dispatcher, tracker, domain)
    assert SlotSet("callback_time", None) in events and SlotSet("booking_changing", False) in events


def test_a_typed_change_request_clears_that_detail(dispatcher, domain):
    events = run(ValidateConsultationForm(), dispatcher, confirm("I need to change the email", "deny"), domain)
    assert SlotSet("email", None) in events
    events = run(ValidateConsultationForm(), dispatcher, confirm("no, the name is wrong", "deny"), domain)
    assert SlotSet("name", None) in events


@pytest.mark.parametrize("text, intent, field", [("yes but the phone number is wrong", "affirm", "phone"),
                                                 ("looks good except the time", "affirm", None)])
def test_an_objection_wins_over_yes(dispatcher, domain, text, intent, field):
    events = run(ValidateConsultationForm(), dispatcher, confirm(text, intent), domain)
    assert SlotSet("confirmed", True) not in events
    if field:
        assert SlotSet(field, None) in events


@pytest.mark.parametrize("text, intent", [("perfect, thanks for your time", "thank"),
                                          ("all good, any day works", "inform")])
def test_field_words_in_a_yes_do_not_clear_a_detail(dispatcher, domain, text, intent):
    events = run(ValidateConsultationForm(), dispatcher, confirm(text, intent), domain)
    assert SlotSet("confirmed", True) in events
    assert SlotSet("callback_time", None) not in events


@pytest.fixture()
def sqlite_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'conversations.db'}"
    monkeypatch.setenv("CLINIC_DB_URL", url)
    monkeypatch.setattr(ActionSubmitConsultation, "_store", None)
    return url


def submitted(events_at=1700000000.0, sender="conv-1"):
    events = [{"event": "active_loop", "name": FORM, "timestamp": events_at}]
    return make_tracker("affirm", "yes", slots={**FILLED, "confirmed": True}, events=events, sender_id=sender)


def test_a_confirmed_request_is_stored_once_and_confirmed_to_the_visitor(sqlite_url, dispatcher, domain):
    events = run(ActionSubmitConsultation(), dispatcher, submitted(), domain)
    run(ActionSubmitConsultation(), dispatcher, submitted(), domain)  # confirmed twice
    rows = RequestStore(sqlite_url).find("conv-1")
    assert len(rows) == 1
    row = rows[0]
    assert (row["name"], row["phone"], row["email"], row["reason"], row["status"]) == \
        ("Maria Lopez", "+13105550134", None, "back pain", "new")
    assert row["created_at"] is not None
    text = texts(dispatcher)[0]
    assert "Maria Lopez" in text and "(310) 555-0134" in text and PHONE in text
    assert SlotSet("phone", None) in events  # ready for another request


def test_a_second_request_in_the_same_conversation_is_a_new_row(sqlite_url, dispatcher, domain):
    run(ActionSubmitConsultation(), dispatcher, submitted(1.0), domain)
    run(ActionSubmitConsultation(), dispatcher, submitted(2.0), domain)
    assert len(RequestStore(sqlite_url).find("conv-1")) == 2


def test_a_failed_write_tells_the_visitor_to_call_and_is_logged(tmp_path, monkeypatch, dispatcher, domain, caplog):
    monkeypatch.setenv("CLINIC_DB_URL", f"sqlite:///{tmp_path / 'missing-folder' / 'x.db'}")
    monkeypatch.setattr(ActionSubmitConsultation, "_store", None)
    run(ActionSubmitConsultation(), dispatcher, submitted(), domain)
    [text] = texts(dispatcher)
    assert "couldn't save" in text and PHONE in text
    assert "Could not save the consultation request of conversation conv-1" in caplog.text
    assert "Maria" not in caplog.text and "3105550134" not in caplog.text


def test_cancel_ends_the_form_saves_nothing_and_offers_the_phone(sqlite_url, dispatcher, domain):
    tracker = form_tracker("phone", "never mind", intent="stop", slots={"name": "Maria"})
    events = run(ActionCancelConsultation(), dispatcher, tracker, domain)
    assert ActiveLoop(None) in events and SlotSet("name", None) in events
    assert PHONE in texts(dispatcher)[0]
    engine = sa.create_engine(sqlite_url)
    assert not sa.inspect(engine).has_table("consultation_requests")


def test_interrupting_intents_match_the_rules(knowledge, domain):
    """Every intent the form steps aside for has a rule answering it during the form."""
    import yaml

    from tests.conftest import ROOT, step_intents
    rules = yaml.safe_load((ROOT / "data" / "rules.yml").read_text())["rules"]
    in_form = set().union(*(step_intents(rule["steps"][0]) for rule in rules
                            if rule.get("condition") == [{"active_loop": FORM}]
                            and rule["steps"][1].get("action") == "action_answer"))
    assert in_form == answered_in_form(knowledge)


def test_a_submission_that_fails_unexpectedly_still_clears_the_request(monkeypatch, sqlite_url, dispatcher, domain):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(booking, "summary_values", broken)
    events = run(ActionSubmitConsultation(), dispatcher, submitted(), domain)
    assert SlotSet("confirmed", None) in events and SlotSet("name", None) in events
    assert PHONE in texts(dispatcher)[0]
    assert not sa.inspect(sa.create_engine(sqlite_url)).has_table("consultation_requests")  # nothing was written


# --- Submission: every slot checked again, and abuse limits ----------------------------------------------

@pytest.mark.parametrize("forged", [
    {"name": "<script>alert(1)</script>"}, {"name": "=cmd|' /C calc'!A0"}, {"phone": "=+13105550134"},
    {"phone": "+13105550134 "}, {"phone": "+10105550134"}, {"callback_time": "?"}, {"callback_time": 7},
    {"email": "maria@example"}, {"email": "MARIA@example.com"}, {"reason": "/restart"}, {"confirmed": "true"},
    {"confirmed": None},
])
def test_a_request_the_form_would_not_have_accepted_is_not_stored(sqlite_url, dispatcher, domain, forged, caplog):
    tracker = submitted()
    tracker.slots.update(forged)
    events = run(ActionSubmitConsultation(), dispatcher, tracker, domain)
    [text] = texts(dispatcher)
    assert "couldn't send your request" in text and PHONE in text
    assert SlotSet("name", None) in events
    engine = sa.create_engine(sqlite_url)
    assert not sa.inspect(engine).has_table("consultation_requests") or RequestStore(sqlite_url).find("conv-1") == []
    assert "refused: invalid" in caplog.text and "conv-1" in caplog.text
    assert all(str(value) not in caplog.text for value in forged.values() if value not in (None, 7))


def test_every_value_the_form_gives_passes_the_second_check(sqlite_url, dispatcher, domain):
    slots = {"name": clean_name("it's Dr. mary-ann o'neil"), "phone": normalise_phone("(424) 555-9876"),
             "callback_time": free_text("  Tuesday   after 3 pm "), "email": find_email("Me: J.Doe+x@Mail.co.uk"),
             "reason": free_text("back pain " * 150, limit=1000), "confirmed": True}
    tracker = submitted()
    tracker.slots.update(slots)
    run(ActionSubmitConsultation(), dispatcher, tracker, domain)
    assert "has been sent" in texts(dispatcher)[0]
    [row] = RequestStore(sqlite_url).find("conv-1")
    assert row["name"] == slots["name"] and row["reason"] == slots["reason"]


def with_client(tracker, client):
    tracker.latest_message["metadata"] = {"client": client}
    return tracker


def test_a_conversation_stores_at_most_its_limit_then_gets_a_polite_reply(sqlite_url, knowledge, domain, monkeypatch,
                                                                          caplog):
    monkeypatch.setenv("CLINIC_MAX_REQUESTS_PER_CONVERSATION", "2")
    replies = []
    for started in (1.0, 2.0, 3.0):
        dispatcher = CollectingDispatcher()
        events = run(ActionSubmitConsultation(), dispatcher, submitted(started), domain)
        replies.append(texts(dispatcher)[0])
    assert len(RequestStore(sqlite_url).find("conv-1")) == 2
    assert "has been sent" in replies[1]
    assert replies[2] == knowledge.booking.conversation_limit and PHONE in replies[2]
    assert SlotSet("name", None) in events
    assert "conversation conv-1 refused: conversation limit" in caplog.text and "Maria" not in caplog.text


def test_a_client_stores_at_most_its_limit_across_conversations(sqlite_url, knowledge, domain, monkeypatch):
    monkeypatch.setenv("CLINIC_MAX_REQUESTS_PER_CLIENT", "2")
    replies = []
    for sender in ("conv-a", "conv-b", "conv-c"):
        dispatcher = CollectingDispatcher()
        run(ActionSubmitConsultation(), dispatcher, with_client(submitted(sender=sender), "a1b2c3d4e5f60718"), domain)
        replies.append(texts(dispatcher)[0])
    assert replies[2] == knowledge.booking.client_limit and PHONE in replies[2]
    assert RequestStore(sqlite_url).find("conv-c") == []
    # Another client, and a visitor without a (well-formed) client, are not affected.
    for sender, client in (("conv-d", "0000000000000000"), ("conv-e", None), ("conv-f", "not-a-client-id!")):
        dispatcher = CollectingDispatcher()
        tracker = with_client(submitted(sender=sender), client) if client else submitted(sender=sender)
        run(ActionSubmitConsultation(), dispatcher, tracker, domain)
        assert "has been sent" in texts(dispatcher)[0], sender
    assert RequestStore(sqlite_url).find("conv-f")[0]["client"] is None


@pytest.mark.parametrize("variable, value", [("CLINIC_MAX_REQUESTS_PER_CONVERSATION", "two"),
                                             ("CLINIC_MAX_REQUESTS_PER_CLIENT", "-1"),
                                             ("CLINIC_REQUEST_LIMIT_HOURS", "0")])
def test_bad_limit_settings_are_refused_by_name(monkeypatch, variable, value):
    from core.limits import consultation_limits

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        consultation_limits()


def test_limit_settings_come_from_the_environment(monkeypatch):
    from core.limits import consultation_limits

    assert (consultation_limits().per_conversation, consultation_limits().per_client) == (2, 5)
    monkeypatch.setenv("CLINIC_MAX_REQUESTS_PER_CONVERSATION", "0")
    monkeypatch.setenv("CLINIC_MAX_REQUESTS_PER_CLIENT", "9")
    monkeypatch.setenv("CLINIC_REQUEST_LIMIT_HOURS", "2")
    limits = consultation_limits()
    assert (limits.per_conversation, limits.per_client, limits.window.total_seconds()) == (0, 9, 7200)


def test_the_form_validation_answers_even_when_reading_an_answer_fails(monkeypatch, dispatcher, domain, caplog):
    def broken(text):
        raise RuntimeError(text)

    monkeypatch.setattr(booking, "normalise_phone", broken)
    tracker = form_tracker("phone", "my number is 310 555 0134", sender_id="conv-broken")
    events = run(ValidateConsultationForm(), dispatcher, tracker, domain)
    assert events == []  # the form asks the same question again
    [text] = texts(dispatcher)
    assert "went wrong" in text and PHONE in text
    assert "conv-broken (RuntimeError)" in caplog.text and "0134" not in caplog.text
