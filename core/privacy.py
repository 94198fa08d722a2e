"""Keeps visitors' text and raw conversation ids out of every log line of a process.

Installed first thing by ``python -m rasa_ext`` (the Rasa server) and ``python -m actions`` (the action
server): ``install()``. It hooks the log record factory rather than a handler, because Rasa, Sanic and
rasa-sdk add their handlers later and each their own; every record of every logger passes through
:class:`PrivacyFilter` as it is created, whatever handler writes it. The filter:

* formats the message once and replaces, in it and in the exception text:
  - the strings the door registered for the current turn (:func:`remember`: the message as sent and
    as cleaned become ``<text>``, the client's and the conversation's ids their pseudonym), in their
    plain, ``repr`` and JSON-escaped forms, and those of the last few turns (a line written by another
    task);
  - conversation-id shapes: runs of 32 or more hex digits become ``<id:xxxxxxxx>`` (a stable
    pseudonym, so lines of one conversation still go together), ``+`` and 8–15 digits (Twilio's
    senders, phone numbers) become ``<phone>``;
* renders an exception's traceback without local variables and with its message scrubbed the same
  way (``SQLAlchemy``'s ``[parameters: …]`` removed whole);
* warnings go through logging (``logging.captureWarnings``), so through the filter too: Rasa warns
  with the message, and pieces of it, when one starting with ``/`` is not a valid intent (that warning
  is replaced whole);
* in Rasa's structured (JSON) log lines, drops each traceback frame's ``locals`` (structlog's
  ``dict_tracebacks`` shows them: the tracker, the message) and blanks the values of keys that carry
  text or ids (``text``, ``message``, ``sender_id``, …) — this covers Rasa's own
  ``rest.message.received.failure``.

Standard library only: the action server imports it without Rasa.
"""

from __future__ import annotations

import collections
import contextvars
import hashlib
import json
import logging
import re
import threading
import traceback
from typing import Any, Deque, List, Optional, Tuple

TEXT = "<text>"
PHONE = "<phone>"
MIN_TURN_STRING = 4   # shorter strings ("hi", "yes") are not replaced: they would garble every line
MIN_RECENT_STRING = 8
RECENT_TURNS = 64

# Keys of Rasa's structured log events (and rasa-sdk's) whose values are visitor text or ids.
SENSITIVE_KEYS = frozenset({
    "text", "response_text", "user_text", "slot_values", "parse_data_text", "parse_data_entities",
    "prediction_events", "tracker_latest_message", "prefilled_slots", "message", "response",
    "slot_candidates", "rasa_event", "rasa_events", "tracker_states", "current_states", "old_states",
    "successes", "current_entity", "next_entity", "states", "entity", "token_text", "user_message",
    "json_message", "sender_id", "sender", "conversation_id", "recipient_id", "metadata", "tracker",
    "events", "slots", "value", "request_body", "body",
})

_HEX_ID = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{32,}(?![0-9A-Za-z])")
_PHONE = re.compile(r"\+\d{8,15}(?!\d)")
_SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\s*(\n|\(Background|$))", re.DOTALL)

_turn: contextvars.ContextVar[Tuple[Tuple[str, str], ...]] = contextvars.ContextVar("privacy_turn", default=())
_recent: Deque[Tuple[Tuple[str, str], ...]] = collections.deque(maxlen=RECENT_TURNS)
_lock = threading.Lock()


def _forms(value: str) -> List[str]:
    """The ways a string can appear in a log line: as is, repr()'d, JSON-escaped (ASCII or not)."""
    forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    return sorted(forms, key=len, reverse=True)


def remember(*texts: Any, ids: Tuple[Any, ...] = ()) -> None:
    """Registers what no log line of the current turn may contain: the visitor's ``texts`` (replaced
    by ``<text>``) and the conversation's ``ids`` (replaced by their pseudonym)."""
    # Rasa strips the text and may quote one line of it: those forms are replaced too.
    variants = {variant for value in texts if isinstance(value, str)
                for variant in (value, value.strip(), *(line.strip() for line in value.splitlines()
                                                         if len(line.strip()) >= MIN_RECENT_STRING))}
    pairs = [(form, TEXT) for value in variants if len(value) >= MIN_TURN_STRING for form in _forms(value)]
    pairs += [(form, pseudonym(value)) for value in ids if isinstance(value, str) and len(value) >= MIN_TURN_STRING
              for form in _forms(value)]
    if not pairs:
        return
    _turn.set(_turn.get() + tuple(pairs))
    recent = tuple(pair for pair in pairs if len(pair[0]) >= MIN_RECENT_STRING)
    if recent:
        with _lock:
            _recent.append(recent)


def pseudonym(value: str) -> str:
    """A stable stand-in for an id: the first 8 hex digits of its SHA-256."""
    return "<id:" + hashlib.sha256(value.encode()).hexdigest()[:8] + ">"


# Rasa messages that quote pieces of a visitor's text (not only whole lines), replaced whole.
_QUOTING = {
    # rasa/shared/core/training_data/story_reader/yaml_story_reader.py: a message starting with "/"
    "Failed to parse arguments in line": "Rasa could not read a message starting with '/' as an intent "
                                         "(it is taken as text; the warning quoted it and is not logged)",
}


def scrub(text: str) -> str:
    """``text`` with the remembered strings and id- and phone-shaped runs replaced."""
    for marker, summary in _QUOTING.items():
        if marker in text:
            return summary
    with _lock:
        recent = [pair for turn in _recent for pair in turn]
    for value, replacement in sorted({*_turn.get(), *recent}, key=lambda pair: len(pair[0]), reverse=True):
        if value in text:
            text = text.replace(value, replacement)
    text = _SQL_PARAMETERS.sub("[parameters: <hidden>]", text)
    text = _HEX_ID.sub(lambda match: pseudonym(match.group(0).lower()), text)
    return _PHONE.sub(PHONE, text)


def _scrub_value(key: Any, value: Any) -> Any:
    if key in SENSITIVE_KEYS and value not in (None, "", [], {}):
        return TEXT
    if isinstance(value, dict):
        return {k: _scrub_value(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_value(None, item) for item in value]
    if isinstance(value, str):
        return scrub(value)
    return value


def _scrub_structured(message: str) -> Optional[str]:
    """A structlog JSON line with frame locals dropped and sensitive values blanked, else None."""
    if not message.startswith("{"):
        return None
    try:
        event = json.loads(message)
    except ValueError:
        return None
    if not isinstance(event, dict) or "event" not in event:
        return None
    for exception in event.get("exception") or []:
        if isinstance(exception, dict):
            for frame in exception.get("frames") or []:
                if isinstance(frame, dict):
                    frame.pop("locals", None)
    return json.dumps(_scrub_value(None, event))


def _format_exception(exc_info: Any) -> str:
    lines = traceback.format_exception(*exc_info)  # the standard library never shows locals
    return "".join(lines).rstrip("\n")


class PrivacyFilter(logging.Filter):
    """Rewrites a record so that it holds no visitor text or raw id (see the module's docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_privacy_done", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the template, drop the arguments
            message = str(record.msg)
        record.msg, record.args = _scrub_structured(message) or scrub(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = scrub(_format_exception(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        record._privacy_done = True
        return True


_installed = False


def install() -> None:
    """Passes every log record of this process through :class:`PrivacyFilter` (once)."""
    global _installed
    if _installed:
        return
    make_record = logging.getLogRecordFactory()
    privacy = PrivacyFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        privacy.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    # Warnings (Rasa's say "Failed to parse arguments in line '<the message>'") are printed to stderr,
    # which is the same log: route them through logging, so through the filter.
    logging.captureWarnings(True)
    _installed = True


def installed() -> bool:
    return _installed


def forget_recent() -> None:
    """Clears the recent turns (tests)."""
    with _lock:
        _recent.clear()
