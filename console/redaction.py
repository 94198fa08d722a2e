"""The redacted export's rules: phone numbers, email addresses and conversation ids taken out.

Every pattern here runs in time linear in its input, and sees at most :data:`MAX_TEXT` characters (the rest
of a longer text is dropped, and says so): a visitor's message is hostile input, and a pattern that
backtracks (a run of address characters without "@" used to take 16 s for 80,000 characters) would stall
the export for every staff member. Each pattern starts only where a run of its characters starts
(a look-behind that fails at once inside the run), and every repetition inside it is unambiguous or bounded.

Caught: numbers of 7 or more digits whatever the separators (``310-555-0134``, ``(310) 555 0134``,
``310/555/0134``, ``+1.310.555.0134``, glued to words: ``cell3105550134``), the same spelled out or mixed
(``three one zero five five five zero one three four``, ``310 five five five 0134``), addresses
(``maria@example.com``, ``user@localhost``, ``name at gmail dot com``, ``name (at) gmail (dot) com``).
Redaction errs on the side of removing: "one, two, three, four, five, six, seven" goes too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Match, Optional

MAX_TEXT = 20_000  # characters of one message redacted; the rest is dropped

# Address characters before the "@" (any letters, so that "josé@…" goes whole).
_LOCAL = r"[\w.%+\-]"
EMAIL = re.compile(
    rf"(?<!{_LOCAL}){_LOCAL}+(?:\s+dot\s+{_LOCAL}+)*"
    # "@", or "at" spelled out (then at least one spelled or written dot must follow, so that
    # "look at this" stays)
    r"(?:\s*@\s*[\w\-]+(?:(?:\.|\s+dot\s+|\s*[(\[]dot[)\]]\s*)[\w\-]+)*"
    r"|(?:\s+at\s+|\s*[(\[]at[)\]]\s*)[\w\-]+(?:(?:\.|\s+dot\s+|\s*[(\[]dot[)\]]\s*)[\w\-]+)+)",
    re.IGNORECASE)

# 7 or more digits, with at most 3 separators between two digits. Only digits around it end a number, so that
# numbers glued to words are caught too.
PHONE = re.compile(r"(?<![\d+(])\+?\(?\d(?:[\s().\-/]{0,3}\d){6,}")

_WORD_DIGITS = {"zero": 1, "oh": 1, "o": 1, "one": 1, "two": 1, "three": 1, "four": 1, "five": 1, "six": 1,
                "seven": 1, "eight": 1, "nine": 1, "double": 0, "triple": 0}
_TOKEN = r"(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine|double|triple|\d{1,4})"
# Three or more number words or short digit groups in a row; kept when they hold fewer than 7 digits.
SPELLED = re.compile(rf"(?<![\w+]){_TOKEN}(?:[\s,.\-/]{{1,3}}{_TOKEN}){{2,}}(?!\w)", re.IGNORECASE)


def _digits(match: Match[str]) -> str:
    count = 0
    for token in re.split(r"[\s,.\-/]+", match.group(0).lower()):
        count += len(token) if token.isdigit() else _WORD_DIGITS.get(token, 0)
    return "[phone]" if count >= 7 else match.group(0)


def redact(text: Optional[str]) -> Optional[str]:
    """``text`` without phone numbers and email addresses (at most MAX_TEXT characters of it)."""
    if not text:
        return text
    dropped = len(text) - MAX_TEXT
    if dropped > 0:
        text = text[:MAX_TEXT]
    text = PHONE.sub("[phone]", SPELLED.sub(_digits, EMAIL.sub("[email]", text)))
    if dropped > 0:
        text += f" [{dropped} more characters not exported]"
    return text


def conversation_key(conversation_id: str, secret: str) -> str:
    """A conversation id as the redacted export shows it: the same id always gives the same key (rows of one
    conversation stay together, across exports too), but the id (on SMS, the visitor's phone number) cannot be
    recovered or guessed from it without the console's secret key."""
    digest = hmac.new(secret.encode("utf-8"), conversation_id.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return "conv-" + digest.hexdigest()[:24]
