"""Facebook Messenger, with ``X-Hub-Signature-256`` checked and behind the project's gate
(:mod:`channels.platform`).

credentials (``credentials.optional.yml``)::

    channels.messenger.MessengerInput:
      verify: ${FACEBOOK_VERIFY_TOKEN}
      secret: ${FACEBOOK_APP_SECRET}
      page-access-token: ${FACEBOOK_PAGE_ACCESS_TOKEN}

``GET /webhooks/facebook/webhook`` answers Meta's subscription check (``hub.verify_token`` compared in
constant time, ``hub.challenge`` echoed). ``POST`` takes page events signed ``X-Hub-Signature-256:
sha256=<HMAC-SHA256 of the raw body with the app secret>``, compared in constant time: missing or wrong,
403, nothing stored, nothing sent (Rasa's own channel reads only the legacy SHA-1 header, compares it with
``==`` and answers a forgery with HTTP 200). Text messages, quick-reply presses and postbacks are taken,
each ``mid`` once; echoes of the page's own messages are ignored. Replies go out through the Send API
(``FACEBOOK_API_URL``, default the Graph API) in parts of at most 2,000 characters, buttons as native
quick replies on the last part (at most 13, titles cut to 20 characters).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Text

import aiohttp
from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels import shaping
from channels.platform import Inbound, PlatformInput, bad_request, check, forbidden, required, same

MAX_QUICK_REPLIES = 13
QUICK_REPLY_TITLE = 20


class MessengerInput(PlatformInput):
    """Messenger: SHA-256 signatures, native quick replies, each message answered once."""

    api_variable = "FACEBOOK_API_URL"
    api_default = "https://graph.facebook.com/v18.0"

    @classmethod
    def name(cls) -> Text:
        return "facebook"  # the webhook URL stays /webhooks/facebook/webhook

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        return cls(required(credentials, "verify", "FACEBOOK_VERIFY_TOKEN", "Messenger"),
                   required(credentials, "secret", "FACEBOOK_APP_SECRET", "Messenger"),
                   required(credentials, "page-access-token", "FACEBOOK_PAGE_ACCESS_TOKEN", "Messenger"))

    def __init__(self, verify: Text, secret: Text, page_access_token: Text) -> None:
        super().__init__()
        self.verify = verify
        self.secret = secret
        self.page_access_token = page_access_token

    def signature(self, body: bytes) -> Text:
        return "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()

    def routes(self, blueprint: Any, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        @blueprint.route("/webhook", methods=["GET"])
        async def subscribe(request: Request) -> HTTPResponse:
            if request.args.get("hub.mode") != "subscribe" or not same(request.args.get("hub.verify_token"),
                                                                         self.verify):
                return forbidden(self.name(), "wrong hub.verify_token")
            return response.text(request.args.get("hub.challenge") or "")

        @blueprint.route("/webhook", methods=["POST"])
        async def events(request: Request) -> HTTPResponse:
            if not same(request.headers.get("X-Hub-Signature-256"), self.signature(request.body or b"")):
                return forbidden(self.name(), "missing or wrong X-Hub-Signature-256")
            try:
                body = request.json
            except Exception:
                body = None
            if not isinstance(body, dict) or body.get("object") != "page":
                return bad_request(self.name(), "a page event is expected")
            for inbound in self._inbound(body):
                await self.receive(inbound, on_new_message)
            return response.text("EVENT_RECEIVED")

    @staticmethod
    def _inbound(body: Dict[Text, Any]) -> Iterator[Inbound]:
        for entry in body.get("entry") or []:
            for event in (entry.get("messaging") or []) if isinstance(entry, dict) else []:
                if not isinstance(event, dict):
                    continue
                sender = str((event.get("sender") or {}).get("id") or "")
                message, postback = event.get("message"), event.get("postback")
                if not sender:
                    continue
                if isinstance(message, dict) and not message.get("is_echo") and message.get("mid"):
                    quick = message.get("quick_reply") if isinstance(message.get("quick_reply"), dict) else {}
                    payload = quick.get("payload") if isinstance(quick.get("payload"), str) else None
                    yield Inbound(str(message["mid"]), sender, sender, text=message.get("text"), payload=payload)
                elif isinstance(postback, dict) and isinstance(postback.get("payload"), str):
                    delivery = str(postback.get("mid") or f"{sender}:{event.get('timestamp')}")
                    yield Inbound(delivery, sender, sender, text=postback.get("title"), payload=postback["payload"])

    async def deliver(self, session: aiohttp.ClientSession, address: Any,
                      messages: List[Dict[Text, Any]]) -> shaping.Options:
        parts = shaping.split(shaping.texts(messages), shaping.MESSENGER_LIMIT)
        quick = [{"content_type": "text", "title": option.title[:QUICK_REPLY_TITLE], "payload": option.payload}
                 for option in shaping.options(messages)[:MAX_QUICK_REPLIES]]
        url = f"{self.api}/me/messages"
        for index, part in enumerate(parts):
            message: Dict[Text, Any] = {"text": part}
            if quick and index == len(parts) - 1:
                message["quick_replies"] = quick
            body = {"recipient": {"id": address}, "messaging_type": "RESPONSE", "message": message}
            async with session.post(url, params={"access_token": self.page_access_token}, json=body) as result:
                await check(result, "Send API")
        return ()
