"""SMS and WhatsApp through Twilio, signed and behind the project's gate (:mod:`channels.platform`).

credentials (``credentials.optional.yml``)::

    channels.twilio.TwilioInput:
      account_sid: ${TWILIO_ACCOUNT_SID}
      auth_token: ${TWILIO_AUTH_TOKEN}
      twilio_number: ${TWILIO_NUMBER}
      webhook_url: ${TWILIO_WEBHOOK_URL}

``POST /webhooks/twilio/webhook`` takes Twilio's "A message comes in" request (form fields ``MessageSid``,
``From``, ``To``, ``Body``…). Its ``X-Twilio-Signature`` is checked with the ``twilio`` package's
``RequestValidator`` (HMAC-SHA1 with the auth token over the URL and the sorted form fields, compared in
constant time) against ``webhook_url``, the public URL Twilio was given: behind nginx or a load balancer
the URL the Rasa server sees is not the one Twilio signed. A missing or wrong signature: 403, nothing
stored, nothing sent (Rasa's own channel never reads the header). The answer to Twilio is an empty TwiML
``<Response/>``; the replies go out through the Messages API (``TWILIO_API_URL``, default Twilio's), from
the number the visitor wrote to (``To``, which carries ``whatsapp:`` for WhatsApp), in parts of at most
1,600 characters, buttons as one numbered list ("Reply 1 for …") whose numbers the next message may use.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, List, Optional, Text
from urllib.parse import parse_qs

import aiohttp
from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import response
from sanic.request import Request, RequestParameters
from sanic.response import HTTPResponse
from twilio.request_validator import RequestValidator

from channels import shaping
from channels.platform import Inbound, PlatformInput, bad_request, check, forbidden, required

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def fields(request: Request) -> RequestParameters:
    """The request's form fields, empty ones included: Twilio signs ``Body=`` of a photo-only message,
    and Sanic's ``request.form`` drops blank values (the signature would never match)."""
    if not (request.content_type or "").startswith("application/x-www-form-urlencoded"):
        return RequestParameters()
    try:
        return RequestParameters(parse_qs((request.body or b"").decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return RequestParameters()


class TwilioInput(PlatformInput):
    """Twilio SMS and WhatsApp: signed requests only, numbered options, each message answered once."""

    api_variable = "TWILIO_API_URL"
    api_default = "https://api.twilio.com"
    text_only = True

    @classmethod
    def name(cls) -> Text:
        return "twilio"  # the webhook URL stays /webhooks/twilio/webhook

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        return cls(required(credentials, "account_sid", "TWILIO_ACCOUNT_SID", "Twilio"),
                   required(credentials, "auth_token", "TWILIO_AUTH_TOKEN", "Twilio"),
                   required(credentials, "twilio_number", "TWILIO_NUMBER", "Twilio"),
                   required(credentials, "webhook_url", "TWILIO_WEBHOOK_URL", "Twilio"))

    def __init__(self, account_sid: Text, auth_token: Text, twilio_number: Text, webhook_url: Text) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.twilio_number = twilio_number
        self.webhook_url = webhook_url
        self.validator = RequestValidator(auth_token)

    def routes(self, blueprint: Any, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        @blueprint.route("/webhook", methods=["POST"])
        async def message(request: Request) -> HTTPResponse:
            signature = request.headers.get("X-Twilio-Signature")
            form = fields(request)
            if not signature or not self.validator.validate(self.webhook_url, form, signature):
                return forbidden(self.name(), "missing or wrong X-Twilio-Signature")
            sid, sender = form.get("MessageSid") or form.get("SmsSid"), form.get("From")
            if not sid or not sender:
                return bad_request(self.name(), "MessageSid and From are required")
            inbound = Inbound(delivery_id=sid, sender=sender, address=(sender, form.get("To") or ""),
                              text=form.get("Body") or "")
            await self.receive(inbound, on_new_message)
            return response.text(EMPTY_TWIML, content_type="text/xml")

    def _from_number(self, visitor: Text, clinic: Text) -> Text:
        """The number replies come from: the one the visitor wrote to, else the configured one (with
        ``whatsapp:`` when the visitor wrote on WhatsApp)."""
        if clinic:
            return clinic
        prefix = "whatsapp:" if visitor.startswith("whatsapp:") else ""
        return prefix + self.twilio_number

    async def deliver(self, session: aiohttp.ClientSession, address: Any,
                      messages: List[Dict[Text, Any]]) -> shaping.Options:
        visitor, clinic = address
        parts, choices = shaping.as_text(messages, shaping.TWILIO_LIMIT)
        url = f"{self.api}/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        auth = aiohttp.BasicAuth(self.account_sid, self.auth_token)
        for part in parts:
            data = {"From": self._from_number(visitor, clinic), "To": visitor, "Body": part}
            async with session.post(url, data=data, auth=auth) as result:
                await check(result, "Messages API")
        return choices
