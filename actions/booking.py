"""Consultation requests: the ``consultation_form``'s questions, validation and submission.

The form asks, in order, for a name, a phone number, a call-back time, an email and what the visit is
about (the last two optional), then shows a summary to confirm. Its slots use custom mappings: this
module's validation action reads each answer with the text functions of ``core/parsing.py``. When
the answer is not for the form (an article question, cancel, an emergency) the validation action
extracts nothing, the form is rejected, a rule answers, and the form resumes with the same question.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import re
from typing import Any, Callable, Dict, List, Optional, Text

from rasa_sdk import Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction

from actions.base import ClinicAction, EventList, latest_intent, latest_text, log_failure, payload_events, say
from core.intents import SAFETY_INTENTS, STOP_INTENT
from core.knowledge import BOOKING_FIELDS, OPTIONAL_BOOKING_FIELDS, Button, Knowledge, Reply, answered_in_form
from core.knowledge_loader import get_knowledge
from core.limits import consultation_limits
from core.parsing import (
    clean_name,
    corrections,
    display_phone,
    field_word,
    find_email,
    is_skip,
    is_stored_name,
    normalise_phone,
    read_callback_time,
    read_reason,
    says_no,
    says_yes,
)
from core.settings import database_url
from core.store import CLIENT_LIMIT, CONVERSATION_LIMIT, DUPLICATE, ConsultationRequest, RequestStore

logger = logging.getLogger(__name__)

FORM = "consultation_form"
FIELD_ENTITY = "booking_field"
SKIPPED = "skipped"
FAILURES_SLOT = "booking_failures"
CHANGING_SLOT = "booking_changing"
# How sure the classifier must be before "stop" ends the form even though the text could be an
# answer ("never mind" looks like a name), and before a question that is not an answer is handed to
# its rule. Emergency and crisis always end the form.
STOP_CONFIDENCE = 0.5
INTERRUPT_CONFIDENCE = 0.4


def request_key(conversation_id: str, form_started_at: Any) -> str:
    """Identifies one request: the conversation and the moment its form started."""
    return hashlib.sha256(f"{conversation_id}|{form_started_at}".encode()).hexdigest()


def answers_latest_message(tracker: Tracker) -> bool:
    """Whether the form runs on the visitor's latest message, not on its way back from a rule.

    Rasa runs the validation action with the form's own execution appended to the events, so
    ``latest_action_name`` is always the form: look for another action since the last message.
    """
    for event in reversed(payload_events(tracker)):
        if event.get("event") == "user":
            return True
        if event.get("event") == "action" and event.get("name") not in (FORM, "action_listen"):
            return False
    return False


def form_started_at(tracker: Tracker) -> Any:
    """The timestamp of the latest activation of the consultation form."""
    for event in reversed(payload_events(tracker)):
        if event.get("event") == "active_loop" and event.get("name") == FORM:
            return event.get("timestamp")
    return None


def reset_booking() -> List[EventType]:
    """Events that clear every detail of a consultation request, so the next one starts afresh."""
    return [SlotSet(slot, None) for slot in (*BOOKING_FIELDS, FAILURES_SLOT, CHANGING_SLOT)]


def end_booking() -> List[EventType]:
    """Events that end a consultation request in progress (cancel, emergency, crisis) and drop it."""
    return [ActiveLoop(None), SlotSet("requested_slot", None), *reset_booking()]


# --- The form -------------------------------------------------------------------------------------

Parser = Callable[[str], Optional[Any]]


class ValidateConsultationForm(FormValidationAction):
    """Reads the answer to the question the form asked, or steps aside for a rule.

    Each ``extract_<field>`` runs only for the field just asked, on a new message. It returns:

    * nothing when the message is not an answer (an emergency, cancel, or a question a rule
      answers): the form is rejected and the rule runs;
    * the parsed value when the message is a valid answer;
    * ``None`` for the field with the retry text when it is not, plus the phone number on the second
      failure in a row.
    """

    def name(self) -> Text:
        return f"validate_{FORM}"

    @property
    def knowledge(self) -> Knowledge:
        return get_knowledge()

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[EventType]:
        """Like every action (``ClinicAction``), answers even when reading the answer fails: an apology
        with the phone number, and the form asks the same question again."""
        try:
            return await super().run(dispatcher, tracker, domain)
        except Exception:  # noqa: BLE001 - the visitor must get an answer whatever failed
            log_failure(logger, "Action %s failed in conversation %s", self.name(), tracker.sender_id)
            dispatcher.messages.clear()
            dispatcher.utter_message(text=self.knowledge.error_text)
            return []

    async def get_validation_events(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                    domain: Dict[Text, Any]) -> List[EventType]:
        # Extraction already validated every value; there is no second pass.
        return [SlotSet(slot, value) for slot, value in tracker.slots_to_validate().items()]

    def _read(self, field: str, dispatcher: CollectingDispatcher, tracker: Tracker,
              parse: Parser) -> Dict[Text, Any]:
        if tracker.get_slot("requested_slot") != field or not answers_latest_message(tracker):
            return {}
        if self._ends_form(tracker):
            return {}
        value = parse(latest_text(tracker))
        if value is not None:
            return {field: value, FAILURES_SLOT: 0}
        intent, confidence = latest_intent(tracker)
        # A question a rule answers during the form (core/intents.py), or cancel.
        interrupts = intent == STOP_INTENT or intent in answered_in_form(self.knowledge)
        if interrupts and confidence >= INTERRUPT_CONFIDENCE:
            return {}
        return self._failed(field, dispatcher, tracker)

    @staticmethod
    def _ends_form(tracker: Tracker) -> bool:
        """Whether the message is an emergency, a crisis or a clear "stop", which rules handle."""
        intent, confidence = latest_intent(tracker)
        return intent in SAFETY_INTENTS or (intent == STOP_INTENT and confidence >= STOP_CONFIDENCE)

    def _failed(self, field: str, dispatcher: CollectingDispatcher, tracker: Tracker) -> Dict[Text, Any]:
        failures = int(tracker.get_slot(FAILURES_SLOT) or 0) + 1
        booking = self.knowledge.booking
        text = booking.fields[field].retry
        if failures >= 2:
            text = f"{text}\n\n{booking.second_failure}"
        dispatcher.utter_message(text=text)
        return {field: None, FAILURES_SLOT: failures}

    def extract_name(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        return self._read("name", dispatcher, tracker, clean_name)

    def extract_phone(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        return self._read("phone", dispatcher, tracker, normalise_phone)

    def extract_callback_time(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        return self._read("callback_time", dispatcher, tracker, read_callback_time)

    def extract_email(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        return self._read("email", dispatcher, tracker, lambda text: SKIPPED if is_skip(text) else find_email(text))

    def extract_reason(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        return self._read("reason", dispatcher, tracker,
                          lambda text: SKIPPED if is_skip(text) else read_reason(text))

    def extract_confirmed(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        if tracker.get_slot("requested_slot") != "confirmed" or not answers_latest_message(tracker):
            return {}
        if self._ends_form(tracker):
            return {}
        intent, _ = latest_intent(tracker)
        text = latest_text(tracker).strip()
        new_values = corrections(text)
        if new_values:
            return {**new_values, "confirmed": None, CHANGING_SLOT: False, FAILURES_SLOT: 0}
        changing = bool(tracker.get_slot(CHANGING_SLOT))
        no = (intent == "deny" and not says_yes(text)) or says_no(text)
        yes = not no and (intent == "affirm" or says_yes(text))
        field = self._field_named(tracker, text, looking_for_field=changing or no)
        if field:
            # Clearing the field makes the form ask for it again, then show the summary again.
            return {field: None, "confirmed": None, CHANGING_SLOT: False, FAILURES_SLOT: 0}
        if yes:
            # "Yes" at the summary sends; at "which detail?" it goes back to the summary.
            return {"confirmed": None if changing else True, CHANGING_SLOT: False, FAILURES_SLOT: 0}
        if no:
            return {"confirmed": None, CHANGING_SLOT: True}
        return self._failed("confirmed", dispatcher, tracker)

    @staticmethod
    def _field_named(tracker: Tracker, text: str, looking_for_field: bool) -> Optional[str]:
        """The field the visitor wants to change: a button's entity, else a word like "phone" when
        the visitor is choosing a field or objecting to the summary."""
        for value in tracker.get_latest_entity_values(FIELD_ENTITY):
            if value in BOOKING_FIELDS[:-1]:
                return value
        return field_word(text) if looking_for_field else None


class AskForField(ClinicAction, abc.ABC):
    """Asks the form's question for one field (Rasa calls ``action_ask_<field>``)."""

    @property
    @abc.abstractmethod
    def field(self) -> str:
        """The field asked for."""

    def name(self) -> Text:
        return f"action_ask_{self.field}"

    async def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        dispatcher.utter_message(text=self.knowledge.booking.fields[self.field].ask)
        return []


class ActionAskName(AskForField):
    field = "name"


class ActionAskPhone(AskForField):
    field = "phone"


class ActionAskCallbackTime(AskForField):
    field = "callback_time"


class ActionAskEmail(AskForField):
    field = "email"


class ActionAskReason(AskForField):
    field = "reason"


def summary_values(tracker: Tracker, knowledge: Knowledge) -> Dict[str, str]:
    """The request's fields as shown to the visitor."""
    not_given = knowledge.booking.not_given
    values = {}
    for field in ("name", "callback_time", "email", "reason"):
        value = tracker.get_slot(field)
        values[field] = not_given if value in (None, "", SKIPPED) else str(value)
    phone = tracker.get_slot("phone")
    values["phone_display"] = display_phone(phone) if phone else not_given
    return values


class ActionAskConfirmed(ClinicAction):
    """Shows the summary with "send" and "change" buttons, or asks which detail to change."""

    def name(self) -> Text:
        return "action_ask_confirmed"

    async def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        booking = self.knowledge.booking
        if tracker.get_slot(CHANGING_SLOT):
            buttons = tuple(Button(title, f'/deny{{"{FIELD_ENTITY}":"{field}"}}')
                            for field, title in booking.field_titles.items())
            say(dispatcher, Reply(booking.which_field, buttons))
            return []
        text = booking.fields["confirmed"].ask.format(**summary_values(tracker, self.knowledge))
        say(dispatcher, Reply(text, (Button(booking.confirm_send, "/affirm"),
                                     Button(booking.confirm_change, "/deny"))))
        return []


_CLIENT = re.compile(r"[0-9a-f]{16}")


def client_of(tracker: Tracker) -> Optional[str]:
    """The channel's pseudonymous client id of the latest message (an HMAC of the address, never the
    address), if well-formed."""
    metadata = (tracker.latest_message or {}).get("metadata")
    client = metadata.get("client") if isinstance(metadata, dict) else None
    return client if isinstance(client, str) and _CLIENT.fullmatch(client) else None


def _same_text(parse: Parser) -> Parser:
    """A validator that accepts a stored value only when parsing gives it back unchanged."""
    return lambda value: value if parse(value) == value else None


def _optional(parse: Parser) -> Parser:
    return lambda value: SKIPPED if value == SKIPPED else parse(value)


# Each slot of a request as the form's own validators would have read it. A request that reaches the
# submission with any other value did not come through the form (a forged action call, a tampered
# tracker) and is not stored.
REVALIDATE: Dict[str, Parser] = {
    "name": lambda value: value if is_stored_name(value) else None,
    "phone": _same_text(normalise_phone),
    "callback_time": _same_text(read_callback_time),
    "email": _optional(_same_text(find_email)),
    "reason": _optional(_same_text(read_reason)),
}


def invalid_fields(tracker: Tracker) -> List[str]:
    """The request's fields whose slot value the form's validators would not have given (names only)."""
    invalid = []
    for field, parse in REVALIDATE.items():
        value = tracker.get_slot(field)
        if field in OPTIONAL_BOOKING_FIELDS and value is None:
            continue
        if not isinstance(value, str) or parse(value) is None:
            invalid.append(field)
    return invalid


class ActionSubmitConsultation(ClinicAction):
    """Checks the confirmed request again, stores it once within the abuse limits, and tells the visitor
    what happens next (or to call)."""

    _store: Optional[RequestStore] = None

    def name(self) -> Text:
        return "action_submit_consultation"

    @classmethod
    def store(cls) -> RequestStore:
        """The request store, created on first use."""
        if cls._store is None:
            store = RequestStore(database_url())
            store.create_table()
            cls._store = store
        return cls._store

    def events_on_failure(self, tracker: Tracker) -> EventList:
        return reset_booking()

    async def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        booking = self.knowledge.booking
        # The form ends only with "confirmed" True: anything else did not come through it either.
        invalid = invalid_fields(tracker) + ([] if tracker.get_slot("confirmed") is True else ["confirmed"])
        if invalid:
            logger.warning("Consultation request of conversation %s refused: invalid %s", tracker.sender_id,
                           ", ".join(invalid))
            dispatcher.utter_message(text=booking.invalid_request)
            return reset_booking()
        confirmation = booking.submitted.format(**summary_values(tracker, self.knowledge))
        optional = {field: None if tracker.get_slot(field) in (None, SKIPPED) else tracker.get_slot(field)
                    for field in OPTIONAL_BOOKING_FIELDS}
        request = ConsultationRequest(
            request_key=request_key(tracker.sender_id, form_started_at(tracker)),
            conversation_id=tracker.sender_id,
            name=tracker.get_slot("name"),
            phone=tracker.get_slot("phone"),
            callback_time=tracker.get_slot("callback_time"),
            client=client_of(tracker),
            **optional,
        )
        try:
            outcome = self.store().submit(request, consultation_limits())
        except Exception:  # noqa: BLE001 - any database failure: the visitor must call instead
            log_failure(logger, "Could not save the consultation request of conversation %s", tracker.sender_id)
            dispatcher.utter_message(text=booking.save_failed)
            return reset_booking()
        if outcome in (CONVERSATION_LIMIT, CLIENT_LIMIT):
            logger.warning("Consultation request of conversation %s refused: %s", tracker.sender_id,
                           outcome.replace("_", " "))
            dispatcher.utter_message(text=booking.conversation_limit if outcome == CONVERSATION_LIMIT
                                     else booking.client_limit)
            return reset_booking()
        if outcome == DUPLICATE:
            logger.info("Consultation request of conversation %s was already stored", tracker.sender_id)
        dispatcher.utter_message(text=confirmation)
        return reset_booking()


class ActionCancelConsultation(ClinicAction):
    """Ends the form without saving anything and offers the phone number."""

    def name(self) -> Text:
        return "action_cancel_consultation"

    def events_on_failure(self, tracker: Tracker) -> EventList:
        return end_booking()

    async def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        dispatcher.utter_message(text=self.knowledge.booking.cancelled)
        return end_booking()
