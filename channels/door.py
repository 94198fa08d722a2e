"""The rules every message passes at the door of the Rasa server, whatever channel it came by.

The project's channels (:mod:`channels.rest`, :mod:`channels.socketio`) apply them before Rasa sees a
message, so that hostile input is refused or cleaned in one place:

* a conversation id must be a string of a safe form, never a client's choice of someone else's
  conversation: REST senders are 32–128 hex characters (:data:`REST_SENDER`); the widget's socket.io
  session ids are issued and signed by the server (:class:`SessionSigner`). Each channel has its own
  namespace (:func:`conversation_id`): REST ids are bare hex, socket.io conversations are stored as
  ``socketio-<hex>``, Twilio's are phone numbers, Telegram's digits, so no channel can name another's;
* the message must be a string; control characters other than newline and tab, and lone surrogates
  (which cannot be stored or logged as UTF-8), are removed (:func:`clean_text`);
* a message longer than :data:`MAX_MESSAGE_CHARS` characters is answered with a polite "please
  shorten" and never reaches the NLU (:func:`too_long`);
* whatever metadata the client sent is dropped and replaced by ``{"client": <16 hex>}``, a keyed hash
  of the client's address for the abuse limits of the actions (:func:`client_metadata`);
* request bodies over :data:`MAX_BODY_BYTES` are refused by the servers themselves (Sanic's
  ``REQUEST_MAX_SIZE``, set by ``rasa_ext/__main__.py``; socket.io's ``max_http_buffer_size``);
* what the NLU parses is :func:`core.shape.nlu_shape` of the message (``components/shape_guard.py`` applies it
  as the pipeline's first step, for every channel): no message costs the tokenizer more than an
  ordinary one of the same length.

No Rasa import here: the rules are plain functions, tested on their own (tests/test_door.py).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import time
import unicodedata
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Text

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# A message longer than this (after cleaning) is answered "please shorten" and never parsed: the NLU,
# the safety patterns and the stored event all see bounded text.
MAX_MESSAGE_CHARS = 2000
# The largest request body (and socket.io packet) the Rasa server reads. A 2,000-character message is
# at most 8 KB of UTF-8, and 24 KB as JSON \u escapes (what Python's json.dumps sends by default: an
# emoji is a surrogate pair, 12 bytes escaped), so 32 KB takes any encoding of any allowed message and
# refuses bulk.
MAX_BODY_BYTES = 32 * 1024

REST_SENDER = re.compile(r"[0-9a-fA-F]{32,128}")
SOCKETIO_PREFIX = "socketio-"
_SESSION = re.compile(r"([0-9a-f]{32})\.([0-9a-f]{32})")

# Characters removed from every message: C0/C1 controls except newline and tab, and lone surrogates.
_REMOVED_CATEGORIES = ("Cc", "Cs")
_KEPT = ("\n", "\t")


class Refused(ValueError):
    """A request the door does not let in; the message is safe to show the client (no input echoed)."""


def clean_text(text: Any) -> Text:
    """The message with control characters (except newline and tab) and lone surrogates removed.

    Raises:
        Refused: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise Refused("message must be a string")
    if text.isprintable() or all(ch in _KEPT or ch.isprintable() for ch in text):
        return text  # the common case: nothing to remove
    return "".join(ch for ch in text
                   if ch in _KEPT or unicodedata.category(ch) not in _REMOVED_CATEGORIES)


def too_long(text: Text) -> bool:
    """Whether a cleaned message is over the limit and must not reach the NLU."""
    return len(text) > MAX_MESSAGE_CHARS


def rest_sender(sender: Any) -> Text:
    """The REST conversation id for a ``sender`` field (32–128 hex characters), else :class:`Refused`.

    A missing or empty sender is refused: Rasa's own REST channel would put every such client in one
    shared conversation, ``"default"``.
    """
    if not isinstance(sender, str) or not REST_SENDER.fullmatch(sender):
        raise Refused("sender must be a string of 32 to 128 hexadecimal characters, "
                      "random and kept for the conversation")
    return sender


def conversation_id(channel: Text, client_id: Text) -> Text:
    """The tracker's conversation id for a channel's client id: each channel its own namespace."""
    if channel == "rest":
        return rest_sender(client_id)
    if channel == "socketio":
        return SOCKETIO_PREFIX + client_id
    raise ValueError(f"no namespace for channel {channel!r}")


# --- secrets ------------------------------------------------------------------------------------------

def _secret_file() -> Path:
    value = os.environ.get("CLINIC_SESSION_SECRET_FILE")
    return Path(value) if value else PROJECT_ROOT / "var" / "session_secret"


def load_secret() -> bytes:
    """The key for session ids and client hashes: ``CLINIC_SESSION_SECRET``, else a key generated once
    into ``var/session_secret`` (mode 0600; ``CLINIC_SESSION_SECRET_FILE`` names another file).

    Every Rasa server of one machine reads the same file, so an id issued by one is valid on the others;
    the first to start creates it atomically (``O_EXCL``), the others wait for its content.
    """
    value = os.environ.get("CLINIC_SESSION_SECRET")
    if value:
        if len(value) < 32:
            raise ValueError("CLINIC_SESSION_SECRET must be at least 32 characters long")
        return value.encode()
    path = _secret_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another server is writing it right now
            text = path.read_text().strip()
            if len(text) >= 32:
                return text.encode()
            time.sleep(0.1)
        raise ValueError(f"{path} holds no usable key (delete it to have a new one generated)") from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip().encode()


class SessionSigner:
    """Issues and checks the widget's session ids: ``<32 hex id>.<32 hex HMAC-SHA256 of the id>``.

    The client cannot choose its conversation: an id is accepted only if this machine's key signed it.
    The conversation stored in the tracker is ``socketio-<id>``: the signature (the bearer part) never
    reaches the database or the staff's exports.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _sign(self, ident: Text) -> Text:
        return hmac.new(self._key, b"socketio-session:" + ident.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self) -> Text:
        ident = secrets.token_hex(16)
        return f"{ident}.{self._sign(ident)}"

    def verify(self, session_id: Any) -> Optional[Text]:
        """The conversation id of a session id this server issued, else None."""
        if not isinstance(session_id, str):
            return None
        match = _SESSION.fullmatch(session_id)
        if not match or not hmac.compare_digest(match.group(2), self._sign(match.group(1))):
            return None
        return conversation_id("socketio", match.group(1))


def session_minutes(domain: Optional[Path] = None) -> float:
    """The conversation's session expiry in minutes (domain.yml ``session_config``; 60 if unset)."""
    import yaml

    path = domain or PROJECT_ROOT / "domain.yml"
    try:
        config = (yaml.safe_load(path.read_text()) or {}).get("session_config") or {}
        return float(config.get("session_expiration_time") or 60)
    except (OSError, ValueError, AttributeError):
        return 60.0


class SessionClock:
    """Which socket.io sessions have ended: unused for ``minutes`` (the conversation's own session has
    expired) or revoked ("New chat"). In this process's memory, pruned as it goes: an id this process has
    not seen (issued before a restart) is taken as live."""

    def __init__(self, minutes: float, clock=time.monotonic) -> None:
        self.seconds = minutes * 60
        self._clock = clock
        self._last: Dict[Text, float] = {}
        self._revoked: Dict[Text, float] = {}

    def seen(self, conversation: Text) -> None:
        now = self._clock()
        self._last[conversation] = now
        if len(self._last) % 1024 == 0:
            for store in (self._last, self._revoked):
                for key in [key for key, when in store.items() if now - when > max(2 * self.seconds, 86400)]:
                    del store[key]

    def end(self, conversation: Text) -> None:
        self._revoked[conversation] = self._clock()

    def ended(self, conversation: Text) -> bool:
        if conversation in self._revoked:
            return True
        last = self._last.get(conversation)
        return last is not None and self._clock() - last > self.seconds


# --- client identity ----------------------------------------------------------------------------------

def trusted_proxies() -> frozenset:
    """The peers whose ``X-Forwarded-For`` is believed (``TRUSTED_PROXIES``, comma-separated addresses;
    none by default: without a proxy in front, the header is the client's to forge)."""
    value = os.environ.get("TRUSTED_PROXIES", "")
    return frozenset(item.strip() for item in value.split(",") if item.strip())


def client_address(peer: Optional[Text], forwarded_for: Optional[Text],
                   proxies: Iterable[Text] = ()) -> Text:
    """The client's address: the TCP peer, or the last hop of ``X-Forwarded-For`` when the peer is a
    trusted proxy (the hop that proxy itself added; earlier ones are the client's to forge)."""
    peer = peer or ""
    if forwarded_for and peer in set(proxies):
        last = forwarded_for.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            pass
    return peer


def client_metadata(key: bytes, address: Text) -> Dict[Text, Text]:
    """The only metadata a message carries: a 16-hex keyed hash of the client's address."""
    return {"client": hmac.new(key, b"client:" + address.encode(), hashlib.sha256).hexdigest()[:16]}
