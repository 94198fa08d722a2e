"""What every messaging-platform channel shares (Twilio, Telegram, Messenger, Slack): one gate.

Each platform's module (:mod:`channels.twilio`, :mod:`channels.telegram`, :mod:`channels.messenger`,
:mod:`channels.slack`) checks its webhook's signature (403 otherwise: nothing stored, nothing sent), reads
the platform's message shape into an :class:`Inbound`, and hands it to :meth:`PlatformInput.receive`, the
one place every inbound platform message goes through:

1. the door's rules (:mod:`channels.door`): control characters removed, a message over 2,000 characters
   answered "please shorten" without reaching the NLU, the visitor's text and ids registered with the log
   filter (:mod:`core.privacy`), metadata replaced by a keyed hash of the sender;
2. each message answered once: the platform's delivery id is recorded in the shared database
   (:class:`channels.platform_store.PlatformStore`); a re-delivery, on whichever Rasa server, gets no turn;
3. a per-sender cap: over ``CHANNEL_SENDER_MAX_MESSAGES`` messages (default 30) within
   ``CHANNEL_SENDER_WINDOW_SECONDS`` (default 3,600), the sender gets one polite reply and then nothing,
   so that one number cannot make the clinic send unbounded SMS; an emergency or crisis message still
   gets 911/988, up to twice the cap;
4. a numbered option ("1", or the option's words) is taken as that button's payload on text-only channels;
5. the turn runs on a collecting output channel; a turn that fails or says nothing is answered with
   ``knowledge.technical_problem``; the replies are then shaped for the platform (:mod:`channels.shaping`)
   and sent with its API. A failing platform API is logged (status only, never the text); the turn is
   stored all the same.

Conversation ids are namespaced: ``<channel>:<32 hex>``, the hex a keyed hash of the platform's sender
(phone number, chat id, page-scoped id…), so no channel can name another's conversations (REST ids are
bare hex, the widget's ``socketio-<hex>``) and no phone number is stored as an id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

import aiohttp
from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from rasa.shared.exceptions import RasaException
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from sqlalchemy.exc import SQLAlchemyError

from channels import door, fair_share, shaping
from channels.platform_store import PlatformStore
from core import privacy
from core.intents import CRISIS_INTENT, EMERGENCY_INTENT
from core.knowledge import Knowledge, classify
from core.knowledge_loader import get_knowledge
from core.settings import database_url

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGES = 30
DEFAULT_WINDOW_SECONDS = 3600
API_TIMEOUT_SECONDS = 15

LIMIT_REPLY = ("You've sent a lot of messages in a short time, so I'll pause here for a while. Please call "
               "{clinic} at {phone}. In an emergency, call 911.")
UNREADABLE_REPLY = ("I can only read text messages. Please write your question, or call {clinic} at {phone}. "
                    "In an emergency, call 911.")


class PlatformError(Exception):
    """A platform's API refused or failed a call; the message holds no visitor text nor secret."""


@dataclass(frozen=True)
class Inbound:
    """One message from a platform, as its webhook gave it."""

    delivery_id: str        # the platform's id for this delivery: a re-delivery carries the same
    sender: str             # the platform's id of the sender (phone number, chat id, page-scoped id…)
    address: Any            # where the replies go (the same, or a chat/channel id)
    text: Any = None        # the visitor's text as sent (None for a button press without text)
    payload: Optional[str] = None  # a native button's payload (Telegram callback data, Messenger quick reply)


@dataclass(frozen=True)
class Limits:
    max_messages: int
    window: dt.timedelta

    @classmethod
    def from_env(cls) -> "Limits":
        def number(name: str, default: int) -> int:
            value = os.environ.get(name, "").strip()
            try:
                parsed = int(value) if value else default
            except ValueError:
                raise RasaException(f"{name} must be a whole number (got {value!r})") from None
            if parsed < 1:
                raise RasaException(f"{name} must be at least 1")
            return parsed

        return cls(number("CHANNEL_SENDER_MAX_MESSAGES", DEFAULT_MAX_MESSAGES),
                   dt.timedelta(seconds=number("CHANNEL_SENDER_WINDOW_SECONDS", DEFAULT_WINDOW_SECONDS)))


def required(credentials: Optional[Dict[Text, Any]], key: Text, variable: Text, channel: Text) -> Text:
    """A setting the channel cannot start without; its absence stops the server naming the variable."""
    value = (credentials or {}).get(key)
    if not isinstance(value, (str, int)) or not str(value).strip():
        raise RasaException(f"The {channel} channel cannot start: {variable} is not set "
                            f"(credentials key '{key}').")
    return str(value).strip()


def api_url(variable: Text, default: Text) -> Text:
    """A platform's API base URL: the environment's ``variable`` (a local stand-in), else the real one."""
    return (os.environ.get(variable) or default).rstrip("/")


def forbidden(channel: Text, why: Text) -> HTTPResponse:
    logger.warning("%s: webhook request refused (403): %s", channel, why)
    return response.text("forbidden", status=403)


def bad_request(channel: Text, why: Text) -> HTTPResponse:
    logger.info("%s: webhook request refused (400): %s", channel, why)
    return response.text(why, status=400)


def same(given: Optional[Text], expected: Text) -> bool:
    """Constant-time comparison of a header with the expected value (missing: False)."""
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


async def check(result: aiohttp.ClientResponse, what: Text) -> Dict[Text, Any]:
    """The JSON of a platform's answer; :class:`PlatformError` with the status when it failed."""
    try:
        body = await result.json(content_type=None)
    except Exception:
        body = None
    if result.status >= 300:
        raise PlatformError(f"{what}: HTTP {result.status}")
    return body if isinstance(body, dict) else {}


class PlatformInput(InputChannel):
    """A messaging platform's webhook behind the project's gate (:meth:`receive`)."""

    api_variable = ""      # the environment variable of the platform's API base URL
    api_default = ""       # the real platform's API base URL
    text_only = False      # buttons become a numbered list, and "1" chooses the first

    def __init__(self) -> None:
        self.api = api_url(self.api_variable, self.api_default)
        self.limits = Limits.from_env()
        self._store: Optional[PlatformStore] = None
        self._key = b""
        self._knowledge: Optional[Knowledge] = None
        self._session: Optional[aiohttp.ClientSession] = None
        self._session_loop: Optional[asyncio.AbstractEventLoop] = None

    # --- the subclass's part ------------------------------------------------------------------------

    async def deliver(self, session: aiohttp.ClientSession, address: Any,
                      messages: List[Dict[Text, Any]]) -> shaping.Options:
        """Sends a turn's replies with the platform's API; the options offered as a numbered list."""
        raise NotImplementedError

    def routes(self, blueprint: Any, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        """Adds the platform's webhook routes, which call :meth:`receive`."""
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------------

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        self._knowledge = get_knowledge()  # loaded at start-up: a broken knowledge folder stops the server
        self._key = door.load_secret()
        self._store = PlatformStore(database_url())
        try:
            self._store.create_tables()  # normally done by `python -m scripts.migrate`
        except SQLAlchemyError as error:  # the gate answers without the store until the database is back
            logger.error("%s: the channel tables could not be checked (%s)", self.name(), type(error).__name__)
        webhook = Blueprint(f"project_{self.name()}_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.listener("after_server_stop")
        async def close_client(*_: Any) -> None:
            await self.close()

        self.routes(webhook, on_new_message)
        return webhook

    async def close(self) -> None:
        """Closes the HTTP client to the platform's API (at server stop)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()

    @property
    def store(self) -> PlatformStore:
        assert self._store is not None, "the channel's blueprint was not created"
        return self._store

    @property
    def knowledge(self) -> Knowledge:
        assert self._knowledge is not None, "the channel's blueprint was not created"
        return self._knowledge

    def conversation_id(self, sender: Text) -> Text:
        """The tracker's id for a platform sender: ``<channel>:<32 hex>``, a keyed hash of the sender."""
        digest = hmac.new(self._key, f"{self.name()}:{sender}".encode(), hashlib.sha256).hexdigest()[:32]
        return f"{self.name()}:{digest}"

    def _clinic_text(self, template: Text) -> Text:
        clinic = self.knowledge.clinic
        return template.format(clinic=clinic.name, phone=clinic.phone)

    async def receive(self, inbound: Inbound, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        """The one gate of every inbound platform message (see the module's documentation).

        The fair-share limits every channel applies (:mod:`channels.fair_share`) come after the
        re-delivery check, so that a platform's retry costs no token."""
        conversation = self.conversation_id(inbound.sender)
        raw = inbound.text if isinstance(inbound.text, str) else ""
        text = door.clean_text(raw).strip()
        privacy.remember(raw, text, ids=(conversation, inbound.sender, str(inbound.address)))
        delivery = door.clean_text(inbound.delivery_id)  # PostgreSQL refuses NUL
        first = await self._stored(True, self.store.first_delivery, self.name(), delivery, conversation)
        if not first:
            logger.info("%s: a re-delivered message of conversation %s was ignored", self.name(), conversation)
            return
        metadata = door.client_metadata(self._key, f"{self.name()}:{inbound.sender}")
        if await fair_share.admit(metadata["client"], conversation):
            await self.send(conversation, inbound.address, [{"text": self.knowledge.door["slow_down"]}])
            return
        count = await self._stored(0, self.store.recent, conversation, self.limits.window)
        if count > self.limits.max_messages:
            await self._over_limit(inbound, conversation, text, count)
            return
        if door.too_long(text):
            await self.send(conversation, inbound.address, [{"text": self.knowledge.door["too_long"]}])
            return
        message = inbound.payload
        if message is None and self.text_only:
            message = shaping.chosen(text, await self._stored((), self.store.options, conversation))
        message = message or text
        if not message:  # a photo, a sticker, a location…
            await self.send(conversation, inbound.address, [{"text": self._clinic_text(UNREADABLE_REPLY)}])
            return
        output = CollectingOutputChannel()
        try:
            await on_new_message(UserMessage(message, output, conversation, input_channel=self.name(),
                                             metadata=metadata))
        except asyncio.CancelledError:
            logger.error("%s: handling a message of conversation %s was cancelled", self.name(), conversation)
        except Exception:
            logger.exception("%s: handling a message of conversation %s failed", self.name(), conversation)
        messages = list(output.messages)
        if not messages:
            logger.warning("%s: no reply for conversation %s; answering technical_problem", self.name(),
                           conversation)
            messages = [{"text": self.knowledge.technical_problem}]
        await self.send(conversation, inbound.address, messages)

    async def _stored(self, otherwise: Any, call: Callable[..., Any], *args: Any) -> Any:
        """A call to the store, off the event loop; ``otherwise`` when the database fails (answering a
        message twice, or past the cap, is better than not answering it at all)."""
        try:
            return await asyncio.to_thread(call, *args)
        except SQLAlchemyError as error:
            logger.error("%s: the channel store failed (%s); the message is handled without it", self.name(),
                         type(error).__name__)
            return otherwise

    async def _over_limit(self, inbound: Inbound, conversation: Text, text: Text, count: int) -> None:
        intent = classify(text, self.knowledge) if text and not door.too_long(text) else None
        if intent in (EMERGENCY_INTENT, CRISIS_INTENT) and count <= 2 * self.limits.max_messages:
            safety = self.knowledge.crisis_text if intent == CRISIS_INTENT else self.knowledge.emergency_text
            await self.send(conversation, inbound.address, [{"text": safety}])
        elif count == self.limits.max_messages + 1:
            logger.warning("%s: conversation %s is over %d messages; one notice sent, later messages ignored",
                           self.name(), conversation, self.limits.max_messages)
            await self.send(conversation, inbound.address, [{"text": self._clinic_text(LIMIT_REPLY)}])
        else:
            logger.info("%s: a message of conversation %s over the limit was ignored", self.name(), conversation)

    def _client(self) -> aiohttp.ClientSession:
        """One HTTP client per event loop (a Sanic worker's), so that connections to the platform's API
        are kept and reused rather than opened (TLS handshake included) for every reply."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=API_TIMEOUT_SECONDS))
            self._session_loop = loop
        return self._session

    async def send(self, conversation: Text, address: Any, messages: List[Dict[Text, Any]]) -> None:
        """Sends the replies; a failure is logged without text or secrets (the turn is stored anyway)."""
        choices: shaping.Options = ()
        try:
            choices = await self.deliver(self._client(), address, messages)
        except PlatformError as error:
            logger.error("%s: the reply to conversation %s was not sent: %s", self.name(), conversation, error)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            # Not the error's text: an aiohttp error quotes the URL, which may hold the bot's token.
            logger.error("%s: the reply to conversation %s was not sent: %s", self.name(), conversation,
                         type(error).__name__)
        if self.text_only:
            try:
                await asyncio.to_thread(self.store.offer, conversation, choices)
            except Exception as error:  # the reply went out; only the numbered choice is lost
                logger.error("%s: the options offered to conversation %s were not stored: %s", self.name(),
                             conversation, type(error).__name__)
