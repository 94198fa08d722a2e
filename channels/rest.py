"""Rasa's REST channel behind the door's rules (:mod:`channels.door`), never silent.

``POST /webhooks/rest/webhook`` with ``{"sender": "<32-128 hex>", "message": "<text>"}``, as Rasa's
own :class:`~rasa.core.channels.rest.RestInput`, with these differences:

* only what a browser cannot send across sites without asking is read: the ``Content-Type`` must be
  ``application/json`` (else HTTP 415) and a request with an ``Origin`` header must come from one of
  the channel's ``cors_allowed_origins`` (credentials; none by default, else HTTP 403), so that a page
  on another web site cannot post as its visitors (a ``text/plain`` POST needs no CORS preflight);
* the body must be a JSON object, ``sender`` 32–128 hex characters and ``message`` a string, else
  HTTP 400 with ``{"error": "…"}`` (Rasa's answers 500 to ``[]``, ``"x"`` or ``null``, and puts every
  client without a sender in one shared conversation, ``"default"``);
* the message is cleaned and a message over 2,000 characters is answered "please shorten" without
  reaching the NLU; the client's ``metadata`` and ``input_channel`` are ignored
  (``metadata = {"client": <hash of the address>}``, ``input_channel = "rest"``);
* if handling the message fails or produces no message, the answer is ``knowledge.technical_problem``
  (HTTP 200), never a 500 nor an empty list, and what is logged holds no visitor text;
* each client address and each conversation has a fair share of the server (:mod:`channels.fair_share`):
  a message over it is not handled and gets HTTP 429 with ``Retry-After`` and the ``door.slow_down``
  reply as the usual JSON list;
* ``?stream=true`` is not offered: the answer is always the JSON list.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from rasa.core.channels.rest import RestInput as RasaRestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels import door, fair_share, origins
from core import privacy
from core.knowledge_loader import get_knowledge

logger = logging.getLogger(__name__)


def error(status: int, problem: Text) -> HTTPResponse:
    return response.json({"error": problem}, status=status)


def request_client(request: Request, key: bytes) -> Dict[Text, Text]:
    """The message's metadata: the client's hashed address (see :func:`channels.door.client_metadata`)."""
    forwarded = ",".join(request.headers.getall("x-forwarded-for", []))
    address = door.client_address(request.ip, forwarded, door.trusted_proxies())
    return door.client_metadata(key, address)


def cross_site(request: Request, allowed: List[Text]) -> Optional[HTTPResponse]:
    """The refusal of a request a browser could have sent from another site, else None."""
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return error(415, "the Content-Type must be application/json")
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") not in allowed:
        return error(403, "requests from web pages of other sites are not accepted")
    return None


def retry_after(wait: float) -> Dict[Text, Text]:
    """The ``Retry-After`` header for a wait in seconds (whole seconds, at least 1)."""
    return {"Retry-After": str(max(1, int(wait + 0.999)))}


class RestInput(RasaRestInput):
    """Rasa's REST channel with the door's rules and the never-silent guard."""

    @classmethod
    def name(cls) -> Text:
        return "rest"  # same webhook path, /webhooks/rest/webhook

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        credentials = dict(credentials or {})
        allowed = credentials.pop("cors_allowed_origins", None)
        channel = cls._from_credentials(credentials)
        channel.allowed_origins = origins.parse_origins(allowed) if allowed else []
        return channel

    @classmethod
    def _from_credentials(cls, credentials: Dict[Text, Any]) -> InputChannel:
        return cls()

    allowed_origins: List[Text] = []

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        knowledge = get_knowledge()  # loaded at start-up: a broken knowledge folder stops the server
        key = door.load_secret()
        webhook = Blueprint(f"custom_webhook_{type(self).__name__}_project", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            refused = cross_site(request, self.allowed_origins)
            if refused is not None:
                return refused
            try:
                body = json.loads(request.body or b"")
            except Exception:  # not JSON, not UTF-8, too deeply nested, a 5,000-digit number…
                return error(400, "the body must be a JSON object")
            if not isinstance(body, dict):
                return error(400, "the body must be a JSON object")
            try:
                sender = door.rest_sender(body.get("sender"))
                text = door.clean_text(body.get("message"))
            except door.Refused as refused:
                return error(400, str(refused))
            privacy.remember(body.get("message"), text, ids=(sender,))
            metadata = request_client(request, key)
            wait = await fair_share.admit(metadata["client"], sender)
            if wait:
                return self.slow_down(sender, knowledge.door["slow_down"], wait)
            output = self.output_channel()
            if door.too_long(text):
                await self.say(output, sender, knowledge.door["too_long"])
            else:
                await self.handle(on_new_message, output, text, sender, metadata, knowledge.technical_problem)
            return self.answer(output)

        return webhook

    def output_channel(self) -> CollectingOutputChannel:
        """Where the turn's replies go: collected for the HTTP answer."""
        return CollectingOutputChannel()

    def answer(self, output: CollectingOutputChannel) -> HTTPResponse:
        """The HTTP answer once the turn is over: the replies, as a JSON list."""
        return response.json(output.messages)

    def slow_down(self, sender: Text, text: Text, wait: float) -> HTTPResponse:
        """The answer to a message over the client's fair share: 429, the reply and when to retry."""
        return response.json([{"recipient_id": sender, "text": text}], status=429, headers=retry_after(wait))

    async def say(self, output: CollectingOutputChannel, sender: Text, text: Text) -> None:
        try:
            await output.send_text_message(sender, text)
        except Exception:  # e.g. the callback channel's receiver is down: nothing more can be done
            logger.exception("%s: a reply to conversation %s could not be sent", self.name(), sender)

    async def handle(self, on_new_message: Callable[[UserMessage], Awaitable[Any]], output: CollectingOutputChannel,
                     text: Text, sender: Text, metadata: Dict[Text, Any], technical_problem: Text) -> None:
        """Runs one turn; says ``technical_problem`` when it fails or nothing was said."""
        try:
            await on_new_message(UserMessage(text, output, sender, input_channel=self.name(), metadata=metadata))
        except asyncio.CancelledError:
            logger.error("%s: handling a message of conversation %s was cancelled", self.name(), sender)
        except Exception:
            logger.exception("%s: handling a message of conversation %s failed", self.name(), sender)
        if not output.messages:
            logger.warning("%s: no reply for conversation %s; answering technical_problem", self.name(), sender)
            await self.say(output, sender, technical_problem)
