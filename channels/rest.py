"""Rasa's REST channel behind the door's rules (:mod:`channels.door`), never silent.

``POST /webhooks/rest/webhook`` with ``{"sender": "<32-128 hex>", "message": "<text>"}``, as Rasa's
own :class:`~rasa.core.channels.rest.RestInput`, with these differences:

* the body must be a JSON object, ``sender`` 32–128 hex characters and ``message`` a string, else
  HTTP 400 with ``{"error": "…"}`` (Rasa's answers 500 to ``[]``, ``"x"`` or ``null``, and puts every
  client without a sender in one shared conversation, ``"default"``);
* the message is cleaned and a message over 2,000 characters is answered "please shorten" without
  reaching the NLU; the client's ``metadata`` and ``input_channel`` are ignored
  (``metadata = {"client": <hash of the address>}``, ``input_channel = "rest"``);
* if handling the message fails or produces no message, the answer is ``knowledge.technical_problem``
  (HTTP 200), never a 500 nor an empty list, and what is logged holds no visitor text;
* ``?stream=true`` is not offered: the answer is always the JSON list.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable, Dict, Text

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput as RasaRestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels import door
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


class RestInput(RasaRestInput):
    """Rasa's REST channel with the door's rules and the never-silent guard."""

    @classmethod
    def name(cls) -> Text:
        return "rest"  # same webhook path, /webhooks/rest/webhook

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        knowledge = get_knowledge()  # loaded at start-up: a broken knowledge folder stops the server
        key = door.load_secret()
        webhook = Blueprint(f"custom_webhook_{type(self).__name__}_project", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
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
            output = self.output_channel()
            if door.too_long(text):
                await self.say(output, sender, knowledge.door["too_long"])
            else:
                metadata = request_client(request, key)
                await self.handle(on_new_message, output, text, sender, metadata, knowledge.technical_problem)
            return self.answer(output)

        return webhook

    def output_channel(self) -> CollectingOutputChannel:
        """Where the turn's replies go: collected for the HTTP answer."""
        return CollectingOutputChannel()

    def answer(self, output: CollectingOutputChannel) -> HTTPResponse:
        """The HTTP answer once the turn is over: the replies, as a JSON list."""
        return response.json(output.messages)

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
