"""Replies shaped for messaging platforms: split at sentence boundaries, buttons as a numbered list.

Rasa-free: plain functions on the messages a turn produced (``{"text": …, "buttons": [{title,
payload}]}``, as Rasa's ``CollectingOutputChannel`` collects them), tested on their own
(tests/test_channel_shaping.py).

* :func:`split` cuts a text into as few parts as fit a platform's limit, at sentence boundaries
  (then at spaces, then anywhere, for a sentence longer than the limit);
* :func:`numbered` turns buttons into one sentence inside the same message, "Reply 1 for Physical
  therapy, 2 for Massage or 3 for Request a consultation.", for text-only channels (SMS, WhatsApp);
* :func:`chosen` reads the visitor's next message as one of those options: its number or its words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

# Platforms' limits on one message's text, in characters.
TWILIO_LIMIT = 1600     # SMS and WhatsApp through Twilio's Messages API
TELEGRAM_LIMIT = 4096   # sendMessage
MESSENGER_LIMIT = 2000  # the Send API's message.text
SLACK_LIMIT = 4000      # chat.postMessage's recommended text length

_SENTENCE_END = re.compile(r"(?<=[.!?…:;])\s+|\n\s*")
_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"\s*#?(\d{1,2})\s*[.)]?\s*")


@dataclass(frozen=True)
class Option:
    """A button: what the visitor reads and what the assistant takes when it is chosen."""

    title: str
    payload: str


Options = Tuple[Option, ...]


def _pieces(text: str, pattern: re.Pattern) -> List[str]:
    """``text`` cut after each match of ``pattern``, every piece keeping its trailing separator."""
    pieces, start = [], 0
    for match in pattern.finditer(text):
        if match.end() > start:
            pieces.append(text[start:match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _pack(pieces: Iterable[str], limit: int) -> List[str]:
    parts: List[str] = []
    current = ""
    for piece in pieces:
        if len((current + piece).rstrip()) <= limit:
            current += piece
            continue
        if current.strip():
            parts.append(current.strip())
        current = piece
        while len(current.rstrip()) > limit:  # one piece longer than the limit: cut it anywhere
            parts.append(current[:limit].strip())
            current = current[limit:]
    if current.strip():
        parts.append(current.strip())
    return parts


def split(text: str, limit: int) -> List[str]:
    """``text`` in as few parts of at most ``limit`` characters as sentence boundaries allow."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    pieces: List[str] = []
    for sentence in _pieces(text, _SENTENCE_END):
        pieces.extend(_pieces(sentence, _SPACE) if len(sentence.rstrip()) > limit else [sentence])
    return _pack(pieces, limit)


def options(messages: Sequence[Dict[str, Any]]) -> Options:
    """The buttons (or quick replies) of a turn's messages, in order, each title once."""
    found: List[Option] = []
    for message in messages:
        for button in list(message.get("buttons") or []) + list(message.get("quick_replies") or []):
            if not isinstance(button, dict):
                continue
            title, payload = str(button.get("title") or "").strip(), str(button.get("payload") or "").strip()
            if title and payload and all(option.title != title for option in found):
                found.append(Option(title, payload))
    return tuple(found)


def texts(messages: Sequence[Dict[str, Any]]) -> str:
    """The texts of a turn's messages as one text, a blank line between them."""
    return "\n\n".join(str(message["text"]).strip() for message in messages
                       if isinstance(message.get("text"), str) and message["text"].strip())


def numbered(choices: Options) -> str:
    """The options as one sentence: "Reply 1 for A, 2 for B or 3 for C."; empty without options."""
    items = [f"{index} for {option.title}" for index, option in enumerate(choices, 1)]
    if not items:
        return ""
    listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
    return f"Reply {listed}."


def as_text(messages: Sequence[Dict[str, Any]], limit: int) -> Tuple[List[str], Options]:
    """A turn's replies for a text-only channel: its parts (the numbered options inside the last) and
    the options to remember for the visitor's next message."""
    choices = options(messages)
    body = texts(messages)
    listed = numbered(choices)
    whole = f"{body}\n\n{listed}" if body and listed else body or listed
    return split(whole, limit), choices


def chosen(text: str, choices: Options) -> Optional[str]:
    """The payload of the option the visitor's message names (its number or its words), else None."""
    if not choices:
        return None
    number = _NUMBER.fullmatch(text)
    if number:
        index = int(number.group(1))
        return choices[index - 1].payload if 1 <= index <= len(choices) else None
    words = _SPACE.sub(" ", text).strip().rstrip(".!").casefold()
    for option in choices:
        if words == option.title.casefold():
            return option.payload
    return None
