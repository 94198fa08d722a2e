"""Slack (Events API), signed as Rasa's own channel checks it, behind the project's gate
(:mod:`channels.platform`).

credentials (``credentials.optional.yml``)::

    channels.slack.SlackInput:
      slack_token: ${SLACK_TOKEN}
      slack_signing_secret: ${SLACK_SIGNING_SECRET}

``POST /webhooks/slack/webhook`` takes the Events API's requests signed ``X-Slack-Signature: v0=<HMAC-SHA256
of "v0:<X-Slack-Request-Timestamp>:<raw body>" with the signing secret>``, the timestamp within 5 minutes
(a replay later is refused), compared in constant time, as Rasa 3.6's channel does: missing, stale or wrong,
403, nothing stored, nothing sent. It answers the ``url_verification`` challenge and takes ``message`` and
``app_mention`` events from people (not bots, not edits; ``message`` only in direct messages), each
message once (its channel and ``ts``: Slack's retries, ``X-Slack-Retry-Num``, carry the same event, and a
direct message that mentions the bot comes as two events with two ``event_id``). Replies go out with ``chat.postMessage`` (``SLACK_API_URL``,
default Slack's) to the channel the message came from, buttons as one numbered list, as on SMS.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

import aiohttp
from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels import shaping
from channels.platform import Inbound, PlatformError, PlatformInput, bad_request, check, forbidden, required, same

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 300
_MENTION = re.compile(r"<@[A-Z0-9]+>\s*")


class SlackInput(PlatformInput):
    """Slack: signing secret and 5-minute window, numbered options, each event answered once."""

    api_variable = "SLACK_API_URL"
    api_default = "https://slack.com/api"
    text_only = True

    @classmethod
    def name(cls) -> Text:
        return "slack"  # the webhook URL stays /webhooks/slack/webhook

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        return cls(required(credentials, "slack_token", "SLACK_TOKEN", "Slack"),
                   required(credentials, "slack_signing_secret", "SLACK_SIGNING_SECRET", "Slack"))

    def __init__(self, slack_token: Text, slack_signing_secret: Text) -> None:
        super().__init__()
        self.slack_token = slack_token
        self.signing_secret = slack_signing_secret

    def signature(self, timestamp: Text, body: bytes) -> Text:
        base = f"v0:{timestamp}:".encode() + body
        return "v0=" + hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()

    def authentic(self, request: Request) -> bool:
        timestamp = request.headers.get("X-Slack-Request-Timestamp") or ""
        try:
            fresh = abs(time.time() - int(timestamp)) <= WINDOW_SECONDS
        except ValueError:
            return False
        return fresh and same(request.headers.get("X-Slack-Signature"), self.signature(timestamp, request.body or b""))

    def routes(self, blueprint: Any, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        @blueprint.route("/webhook", methods=["POST"])
        async def events(request: Request) -> HTTPResponse:
            if not self.authentic(request):
                return forbidden(self.name(), "missing, stale or wrong X-Slack-Signature")
            try:
                body = request.json
            except Exception:
                body = None
            if not isinstance(body, dict):
                return bad_request(self.name(), "a JSON event is expected")
            if body.get("type") == "url_verification":
                return response.json({"challenge": body.get("challenge")})
            inbound = self._inbound(body)
            if inbound is not None:
                await self.receive(inbound, on_new_message)
            return response.text("")

    @staticmethod
    def _inbound(body: Dict[Text, Any]) -> Optional[Inbound]:
        event = body.get("event")
        if body.get("type") != "event_callback" or not isinstance(event, dict) or not body.get("event_id"):
            return None
        if event.get("type") not in ("message", "app_mention") or event.get("bot_id") or event.get("subtype"):
            return None  # the bot's own messages, edits, joins…
        if event["type"] == "message" and event.get("channel_type") != "im":
            return None  # in a channel, only messages that mention the bot (app_mention) are for it
        user, channel = event.get("user"), event.get("channel")
        if not isinstance(user, str) or not isinstance(channel, str):
            return None
        text = event.get("text")
        text = _MENTION.sub("", text) if isinstance(text, str) else ""
        sender = f"{body.get('team_id') or event.get('team') or ''}:{channel}:{user}"
        # One message can come as two events (a direct message that mentions the bot: ``message`` and
        # ``app_mention``, two event ids), so the message's own id, its channel and timestamp, is the key;
        # a retry of either event carries the same.
        timestamp = event.get("ts")
        delivery = f"{channel}:{timestamp}" if isinstance(timestamp, str) and timestamp else str(body["event_id"])
        return Inbound(delivery, sender, channel, text=text)

    async def deliver(self, session: aiohttp.ClientSession, address: Any,
                      messages: List[Dict[Text, Any]]) -> shaping.Options:
        parts, choices = shaping.as_text(messages, shaping.SLACK_LIMIT)
        headers = {"Authorization": f"Bearer {self.slack_token}"}
        for part in parts:
            async with session.post(f"{self.api}/chat.postMessage", headers=headers,
                                    json={"channel": address, "text": part}) as result:
                answer = await check(result, "chat.postMessage")
            if not answer.get("ok"):
                raise PlatformError(f"chat.postMessage: {answer.get('error') or 'not ok'}")
        return choices
