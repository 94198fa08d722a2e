"""Consultation requests: the ``consultation_form``'s questions, validation and submission.

The form asks, in order, for a name, a phone number, a call-back time, an email and what the visit is
about (the last two optional), then shows a summary to confirm. Its slots use custom mappings: this
module's validation action reads each answer. When the answer is not for the form (an article
question, cancel, an emergency) the validation action extracts nothing, the form is rejected, a rule
answers, and the form resumes with the same question.
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

from actions.base import ClinicAction, EventList, latest_intent, latest_text, log_failure, say
from actions.intents import SAFETY_INTENTS
from actions.knowledge import BOOKING_FIELDS, OPTIONAL_BOOKING_FIELDS, Button, Knowledge, Reply, get_knowledge
from actions.limits import bounded, consultation_limits
from actions.store import CLIENT_LIMIT, CONVERSATION_LIMIT, DUPLICATE, ConsultationRequest, RequestStore, database_url

logger = logging.getLogger(__name__)

FORM = "consultation_form"
FIELD_ENTITY = "booking_field"
SKIPPED = "skipped"
FAILURES_SLOT = "booking_failures"
CHANGING_SLOT = "booking_changing"
STOP_INTENT = "stop"
# Intents a rule answers in the middle of the form (data/rules.yml, "... during the form").
ANSWERED_IN_FORM = (
    "ask_what_is_fibromyalgia", "ask_symptoms", "ask_causes", "ask_who_gets_it", "ask_related_conditions",
    "ask_back_pain", "ask_treatment", "ask_combined_approach", "ask_surgery", "ask_surgery_candidate",
    "ask_clinic", "ask_doctor", "ask_contact", "bot_challenge", "ask_capabilities", "request_human",
    "ask_insurance", "ask_cost", "ask_hours", "medical_advice",
)
# How sure the classifier must be before "stop" ends the form even though the text could be an
# answer ("never mind" looks like a name), and before a question that is not an answer is handed to
# its rule. Emergency and crisis always end the form.
STOP_CONFIDENCE = 0.5
INTERRUPT_CONFIDENCE = 0.4

# --- Validators: plain functions of the visitor's text ---------------------------------------------

# Every pattern here is linear in the length of the text it sees, and sees at most MAX_TEXT_CHARS of it
# (``bounded``): no unbounded run may be retried from every position (tests/test_redos.py).
_PHONE = re.compile(r"(?<![\d+])(\+?1[\s.-]{0,3})?\(?(\d{3})\)?[\s.-]{0,3}(\d{3})[\s.-]{0,3}(\d{4})(?!\d)")
# An address starts where a run of address characters starts (the look-behind), so a long run without
# "@" is read once, not once per starting position; parts are bounded as RFC 5321 bounds them (a local
# part of 64 characters, labels of 63).
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}"
                    r"\.[A-Za-z]{2,63}")
_NAME_PREFIX = re.compile(
    r"^(?:(?:hi|hello|hey|yes|ok|okay|sure)[,!.\s]+)?(?:my\s+name\s+is|my\s+name's|name\s+is|name's|"
    r"i\s+am|i'm|im|it\s+is|it's|its|this\s+is|call\s+me|the\s+name\s+is)\s+", re.IGNORECASE)
_NAME = re.compile(r"^[^\W\d_]+(?:[ '.-]+[^\W\d_]+)*\.?$")
# Words no name contains: an answer with one of them is something else ("never mind", "the name is wrong").
_NOT_NAME_WORDS = {
    "hi", "hello", "hey", "yes", "no", "not", "ok", "okay", "sure", "thanks", "thank", "please", "help", "stop",
    "cancel", "mind", "what", "why", "how", "who", "when", "where", "which", "nope", "yeah", "yep", "idk", "skip",
    "none", "fibromyalgia", "fibro", "pain", "back", "book", "booking", "appointment", "consultation", "want",
    "need", "rather", "telling", "tell", "know", "wrong", "incorrect", "right", "correct", "misspelled",
    "misspelt", "spelled", "spelt", "typo", "mistake", "changed", "change", "later", "anonymous",
}
# A whole message that declines an optional question ("skip", "no thanks", "I don't have one").
_SKIP = re.compile(
    r"^((no|nope|nah|ok|okay)[\s,]+)?(skip( it| this| that)?|no|nope|nah|none|n/?a|pass|nothing|not now|"
    r"no thanks?|no thank you|(i'?d )?rather not( say)?|prefer not( to say)?|(i )?don'?t have (one|an? e-?mail"
    r"( address)?)|no e-?mail( address)?|not (needed|necessary))([\s,]+(please|thanks?|thank you))?[\s.!,]*$",
    re.IGNORECASE)
# Messages that answer no question of the form (a call-back time cannot be "ok").
_NON_ANSWERS = re.compile(r"^(yes|yeah|yep|no|nope|ok|okay|sure|thanks?|thank you|idk|i don'?t know|skip|"
                          r"cancel|stop|hi|hello|hey|what|huh|\?+)[\s.!,]*$", re.IGNORECASE)
# Plain yes and no at the summary, for when the classifier did not read them as affirm or deny.
_YES = re.compile(r"^(yes|yeah|yep|yup|sure|correct|right|ok|okay|perfect|confirm(ed)?|send( it)?|"
                  r"looks (good|right|fine)|all (good|correct)|that'?s (right|correct|fine))\b", re.IGNORECASE)
_NO = re.compile(r"^(no|nope|nah|wrong|incorrect|not (right|correct)|change)\b", re.IGNORECASE)
# An objection anywhere in the message: "yes but the phone number is wrong".
_OBJECTION = re.compile(r"\b(wrong|incorrect|not (right|correct)|mistake|typo|misspel\w*|change|fix|but|except)\b",
                        re.IGNORECASE)
_QUESTION_START = re.compile(
    r"^(what|how|why|who|whom|whose|when|where|which|is|are|does|do|did|can|could|should|would|will|"
    r"may|tell me|explain)\b", re.IGNORECASE)
# Words that name a field when the visitor wants to change it at the summary.
FIELD_WORDS = {
    "phone": re.compile(r"\b(phone|number|cell|mobile)\b", re.IGNORECASE),
    "email": re.compile(r"\b(e-?mail|address)\b", re.IGNORECASE),
    "name": re.compile(r"\bname\b", re.IGNORECASE),
    "callback_time": re.compile(r"\b(time|when|call ?back|day|morning|afternoon|evening)\b", re.IGNORECASE),
    "reason": re.compile(r"\b(reason|about|topic|visit)\b", re.IGNORECASE),
}
_NEW_NAME = re.compile(r"\bname\s+is\s+(.+)$", re.IGNORECASE)


def normalise_phone(text: str) -> Optional[str]:
    """The first US phone number in ``text`` in E.164 form (``+13105550134``), else None.

    Accepts (310) 555-0134, 310.555.0134, 310-555-0134, 3105550134, +1 310 555 0134 and the like.
    Area codes and exchanges cannot start with 0 or 1.
    """
    for match in _PHONE.finditer(bounded(text)):
        area, exchange, line = match.group(2), match.group(3), match.group(4)
        if area[0] in "01" or exchange[0] in "01":
            continue
        return f"+1{area}{exchange}{line}"
    return None


def display_phone(e164: str) -> str:
    """``+13105550134`` as ``(310) 555-0134``."""
    digits = re.sub(r"\D", "", e164)[-10:]
    return f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"


def find_email(text: str) -> Optional[str]:
    """The first email address in ``text``, lower-cased, else None."""
    match = _EMAIL.search(bounded(text))
    if not match or len(match.group(0)) > 254:  # longer addresses do not exist (RFC 5321)
        return None
    return match.group(0).lower()


def is_skip(text: str) -> bool:
    """Whether the visitor declines an optional question ("skip", "no thanks", "I don't have one")."""
    return bool(_SKIP.match(bounded(text).strip()))


def looks_like_question(text: str) -> bool:
    """Whether ``text`` reads as a question rather than an answer."""
    text = bounded(text).strip()
    return "?" in text or bool(_QUESTION_START.match(text))


def clean_name(text: str) -> Optional[str]:
    """The person's name in an answer like "I'm Maria Lopez", else None."""
    name = _NAME_PREFIX.sub("", bounded(text).strip()).strip(" .,!")
    words = set(re.findall(r"[^\W\d_]+", name.lower()))
    if not (2 <= len(name) <= 80) or len(name.split()) > 5 or words & _NOT_NAME_WORDS:
        return None
    if not _NAME.match(name) or looks_like_question(name):
        return None
    return name.title() if name.islower() or name.isupper() else name


def free_text(text: str, limit: int = 300) -> Optional[str]:
    """An answer in the visitor's own words (a call-back time, a reason), else None."""
    text = re.sub(r"\s+", " ", bounded(text).strip())
    if len(text) < 2 or text.startswith("/") or looks_like_question(text) or _NON_ANSWERS.match(text):
        return None
    return text[:limit].rstrip()  # rstrip: a second reading of the stored value gives it back unchanged


def request_key(conversation_id: str, form_started_at: Any) -> str:
    """Identifies one request: the conversation and the moment its form started."""
    return hashlib.sha256(f"{conversation_id}|{form_started_at}".encode()).hexdigest()


def answers_latest_message(tracker: Tracker) -> bool:
    """Whether the form runs on the visitor's latest message, not on its way back from a rule.

    Rasa runs the validation action with the form's own execution appended to the events, so
    ``latest_action_name`` is always the form: look for another action since the last message.
    """
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return True
        if event.get("event") == "action" and event.get("name") not in (FORM, "action_listen"):
            return False
    return False


def form_started_at(tracker: Tracker) -> Any:
    """The timestamp of the latest activation of the consultation form."""
    for event in reversed(tracker.events):
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


class ConsultationFormValidation(FormValidationAction, abc.ABC):
    """Reads the answer to the question the form asked, or steps aside for a rule.

    Each ``extract_<field>`` runs only for the field just asked, on a new message. It returns:

    * nothing when the message is not an answer (an emergency, cancel, or a question a rule
      answers): the form is rejected and the rule runs;
    * the parsed value when the message is a valid answer;
    * ``None`` for the field with the retry text when it is not, plus the phone number on the second
      failure in a row.
    """

    @abc.abstractmethod
    def name(self) -> Text:
        """The validation action's name, ``validate_<form>``."""

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
        if intent in (*ANSWERED_IN_FORM, STOP_INTENT) and confidence >= INTERRUPT_CONFIDENCE:
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
        text = booking["fields"][field]["retry"]
        if failures >= 2:
            text = f"{text}\n\n{booking['second_failure']}"
        dispatcher.utter_message(text=text)
        return {field: None, FAILURES_SLOT: failures}


class ValidateConsultationForm(ConsultationFormValidation):
    """Validation of the ``consultation_form``."""

    def name(self) -> Text:
        return f"validate_{FORM}"

    def extract_name(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        return self._read("name", dispatcher, tracker, clean_name)

    def extract_phone(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        return self._read("phone", dispatcher, tracker, normalise_phone)

    def extract_callback_time(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        return self._read("callback_time", dispatcher, tracker, free_text)

    def extract_email(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        return self._read("email", dispatcher, tracker, lambda text: SKIPPED if is_skip(text) else find_email(text))

    def extract_reason(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        return self._read("reason", dispatcher, tracker,
                          lambda text: SKIPPED if is_skip(text) else free_text(text, limit=1000))

    def extract_confirmed(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        if tracker.get_slot("requested_slot") != "confirmed" or not answers_latest_message(tracker):
            return {}
        if self._ends_form(tracker):
            return {}
        intent, _ = latest_intent(tracker)
        text = latest_text(tracker).strip()
        corrections = self._corrections(text)
        if corrections:
            return {**corrections, "confirmed": None, CHANGING_SLOT: False, FAILURES_SLOT: 0}
        changing = bool(tracker.get_slot(CHANGING_SLOT))
        says_no = (intent == "deny" and not _YES.match(text)) or bool(_NO.match(text) or _OBJECTION.search(text))
        says_yes = not says_no and (intent == "affirm" or bool(_YES.match(text)))
        field = self._field_named(tracker, text, looking_for_field=changing or says_no)
        if field:
            # Clearing the field makes the form ask for it again, then show the summary again.
            return {field: None, "confirmed": None, CHANGING_SLOT: False, FAILURES_SLOT: 0}
        if says_yes:
            # "Yes" at the summary sends; at "which detail?" it goes back to the summary.
            return {"confirmed": None if changing else True, CHANGING_SLOT: False, FAILURES_SLOT: 0}
        if says_no:
            return {"confirmed": None, CHANGING_SLOT: True}
        return self._failed("confirmed", dispatcher, tracker)

    @staticmethod
    def _corrections(text: str) -> Dict[Text, Any]:
        """New values given at the summary, e.g. "no, my number is 310 555 0134"."""
        corrections: Dict[Text, Any] = {}
        text = bounded(text)
        phone = normalise_phone(text)
        if phone:
            corrections["phone"] = phone
        email = find_email(text)
        if email:
            corrections["email"] = email
        match = _NEW_NAME.search(text)
        if match and clean_name(match.group(1)):
            corrections["name"] = clean_name(match.group(1))
        return corrections

    @staticmethod
    def _field_named(tracker: Tracker, text: str, looking_for_field: bool) -> Optional[str]:
        """The field the visitor wants to change: a button's entity, else a word like "phone" when
        the visitor is choosing a field or objecting to the summary."""
        for value in tracker.get_latest_entity_values(FIELD_ENTITY):
            if value in BOOKING_FIELDS[:-1]:
                return value
        if not looking_for_field:
            return None
        for field, words in FIELD_WORDS.items():
            if words.search(text):
                return field
        return None


class AskForField(ClinicAction, abc.ABC):
    """Asks the form's question for one field (Rasa calls ``action_ask_<field>``)."""

    @property
    @abc.abstractmethod
    def field(self) -> str:
        """The field asked for."""

    def name(self) -> Text:
        return f"action_ask_{self.field}"

    async def respond(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> EventList:
        dispatcher.utter_message(text=self.knowledge.booking["fields"][self.field]["ask"])
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
    not_given = knowledge.booking["not_given"]
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
                            for field, title in booking["field_titles"].items())
            say(dispatcher, Reply(booking["which_field"], buttons))
            return []
        text = booking["fields"]["confirmed"]["ask"].format(**summary_values(tracker, self.knowledge))
        say(dispatcher, Reply(text, (Button(booking["confirm_send"], "/affirm"),
                                     Button(booking["confirm_change"], "/deny"))))
        return []


_CLIENT = re.compile(r"[0-9a-f]{16}")


def client_of(tracker: Tracker) -> Optional[str]:
    """The channel's pseudonymous client id of the latest message (contracts #4), if well-formed."""
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
    # A stored name is name-shaped itself ("Its Bitsy" from "it's its bitsy" would not survive a second
    # clean_name unchanged, but is what the form stored).
    "name": lambda value: value if clean_name(value) and _NAME.match(value) and len(value) <= 80 else None,
    "phone": _same_text(normalise_phone),
    "callback_time": _same_text(free_text),
    "email": _optional(_same_text(find_email)),
    "reason": _optional(_same_text(lambda text: free_text(text, limit=1000))),
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
            dispatcher.utter_message(text=booking["invalid_request"])
            return reset_booking()
        confirmation = booking["submitted"].format(**summary_values(tracker, self.knowledge))
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
            dispatcher.utter_message(text=booking["save_failed"])
            return reset_booking()
        if outcome in (CONVERSATION_LIMIT, CLIENT_LIMIT):
            logger.warning("Consultation request of conversation %s refused: %s", tracker.sender_id,
                           outcome.replace("_", " "))
            dispatcher.utter_message(text=booking[outcome])
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
        dispatcher.utter_message(text=self.knowledge.booking["cancelled"])
        return end_booking()
