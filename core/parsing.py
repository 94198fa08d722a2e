"""Reading a visitor's answers to the consultation form: plain functions of the text, no Rasa.

Phone numbers, email addresses, names, "skip", yes and no at the summary, the field a correction
names, and the free-text answers (a call-back time, a reason), each refused when it cannot be one. ``actions/booking.py`` decides when
each is asked; this module only reads what was typed.

Every pattern here is linear in the length of the text it sees, and sees at most MAX_TEXT_CHARS of it
(``bounded``): no unbounded run may be retried from every position (tests/test_redos.py).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional

from core.limits import MAX_TEXT_CHARS, bounded

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
MAX_NAME_CHARS = 80
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
# The free-text answers: no time or reason holds a run of five digits or more (a phone number, a
# postcode, a key held down), and each holds a word of two letters or more ("pm" in "3pm" counts), or,
# for a time only, a clock time ("10:30", "14.00").
_DIGIT_RUN = re.compile(r"\d{5,}")
_WORD = re.compile(r"[^\W\d_]{2,}")
_CLOCK_TIME = re.compile(r"(?<!\d)\d{1,2}[:.]\d{2}(?!\d)")
MAX_CALLBACK_TIME_CHARS = 300  # the stored column's length
MAX_REASON_CHARS = 1000  # the stored column's length; a longer reason is cut there


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


def display_phone(e164: Optional[str]) -> str:
    """``+13105550134`` as ``(310) 555-0134``; anything else (a stored value from elsewhere) as it is."""
    if e164 and len(e164) == 12 and e164.startswith("+1") and e164[1:].isdigit():
        return f"({e164[2:5]}) {e164[5:8]}-{e164[8:]}"
    return e164 or ""


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
    if not (2 <= len(name) <= MAX_NAME_CHARS) or len(name.split()) > 5 or words & _NOT_NAME_WORDS:
        return None
    if not _NAME.match(name) or looks_like_question(name):
        return None
    return name.title() if name.islower() or name.isupper() else name


def is_stored_name(value: str) -> bool:
    """Whether ``value`` is a name as :func:`clean_name` stores it: a name on a second reading, and
    name-shaped itself ("Its Bitsy" from "it's its bitsy" would not survive a second clean_name
    unchanged, but is what the form stored)."""
    return bool(clean_name(value) and _NAME.match(value) and len(value) <= MAX_NAME_CHARS)


def free_text(text: str, limit: int = 300) -> Optional[str]:
    """An answer in the visitor's own words (a call-back time, a reason), else None."""
    text = re.sub(r"\s+", " ", bounded(text).strip())
    if len(text) < 2 or text.startswith("/") or looks_like_question(text) or _NON_ANSWERS.match(text):
        return None
    return text[:limit].rstrip()  # rstrip: a second reading of the stored value gives it back unchanged


def read_callback_time(text: str) -> Optional[str]:
    """A call-back time in the visitor's words ("weekday mornings", "Tuesday after 3 pm", "10:30"), else None.

    An answer that cannot be a time is refused, so the form asks again: a phone number or an e-mail
    address (typed at the wrong question), a run of five digits or more, an answer with neither a word nor
    a clock time ("!!!"), or one longer than :data:`MAX_CALLBACK_TIME_CHARS` (no time takes that long to say,
    and a cut answer would be stored as if it were one)."""
    answer = free_text(text, limit=MAX_TEXT_CHARS)
    if answer is None or len(answer) > MAX_CALLBACK_TIME_CHARS or _contact_or_number(answer):
        return None
    return answer if _WORD.search(answer) or _CLOCK_TIME.search(answer) else None


def read_reason(text: str) -> Optional[str]:
    """What the consultation should be about, in the visitor's words (at most :data:`MAX_REASON_CHARS`
    characters), else None: a phone number, an e-mail address, a run of five digits or more, or an answer
    without a word is no reason, and the form asks again."""
    answer = free_text(text, limit=MAX_REASON_CHARS)
    if answer is None or _contact_or_number(answer) or not _WORD.search(answer):
        return None
    return answer


def _contact_or_number(text: str) -> bool:
    return bool(normalise_phone(text) or find_email(text) or _DIGIT_RUN.search(text))


def says_yes(text: str) -> bool:
    """A plain yes at the summary ("yes", "looks good", "send it")."""
    return bool(_YES.match(bounded(text)))


def says_no(text: str) -> bool:
    """A no or an objection anywhere at the summary ("no", "yes but the phone number is wrong")."""
    text = bounded(text)
    return bool(_NO.match(text) or _OBJECTION.search(text))


def corrections(text: str) -> Dict[str, Any]:
    """New values given at the summary, e.g. "no, my number is 310 555 0134"."""
    found: Dict[str, Any] = {}
    text = bounded(text)
    phone = normalise_phone(text)
    if phone:
        found["phone"] = phone
    email = find_email(text)
    if email:
        found["email"] = email
    match = _NEW_NAME.search(text)
    if match and clean_name(match.group(1)):
        found["name"] = clean_name(match.group(1))
    return found


def field_word(text: str) -> Optional[str]:
    """The field a word of ``text`` names ("phone", "number", "morning"…), if any."""
    for field, words in FIELD_WORDS.items():
        if words.search(text):
            return field
    return None
