"""Telegram bots, with a registered secret token and behind the project's gate (:mod:`channels.platform`).

credentials (``credentials.optional.yml``)::

    channels.telegram.TelegramInput:
      access_token: ${TELEGRAM_ACCESS_TOKEN}
      webhook_url: ${TELEGRAM_WEBHOOK_URL}
      secret_token: ${TELEGRAM_SECRET_TOKEN}

At start-up the channel checks the token (``getMe``) and registers ``webhook_url`` with ``setWebhook`` and
``secret_token`` (1–256 of ``A-Z a-z 0-9 _ -``); Telegram then sends it in every update's
``X-Telegram-Bot-Api-Secret-Token`` header, compared here in constant time: missing or wrong, 403, nothing
stored, nothing sent (Rasa's own channel compares ``verify`` with the bot's name, which anyone can read).
Text messages and inline-keyboard presses (``callback_query``) are taken, each ``update_id`` once. Replies
go out with ``sendMessage`` (``TELEGRAM_API_URL``, default Telegram's) in parts of at most 4,096
characters, buttons as a native inline keyboard under the last part.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

import aiohttp
import requests
from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.shared.exceptions import RasaException
from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels import shaping
from channels.platform import Inbound, PlatformInput, bad_request, check, forbidden, required, same

logger = logging.getLogger(__name__)

SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
CALLBACK_DATA_BYTES = 64  # Telegram's limit on an inline button's callback_data


class TelegramInput(PlatformInput):
    """Telegram: the registered secret token checked, native buttons, each update answered once."""

    api_variable = "TELEGRAM_API_URL"
    api_default = "https://api.telegram.org"

    @classmethod
    def name(cls) -> Text:
        return "telegram"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        secret = required(credentials, "secret_token", "TELEGRAM_SECRET_TOKEN", "Telegram")
        if not SECRET_TOKEN.fullmatch(secret):
            raise RasaException("The Telegram channel cannot start: TELEGRAM_SECRET_TOKEN must be 1 to 256 "
                                "characters among A-Z, a-z, 0-9, _ and -.")
        return cls(required(credentials, "access_token", "TELEGRAM_ACCESS_TOKEN", "Telegram"),
                   required(credentials, "webhook_url", "TELEGRAM_WEBHOOK_URL", "Telegram"), secret)

    def __init__(self, access_token: Text, webhook_url: Text, secret_token: Text) -> None:
        super().__init__()
        self.access_token = access_token
        self.webhook_url = webhook_url
        self.secret_token = secret_token

    def _method(self, method: Text) -> Text:
        return f"{self.api}/bot{self.access_token}/{method}"

    def register(self) -> None:
        """``getMe`` and ``setWebhook`` with the secret token; a failure is logged (the server still
        starts: Telegram keeps the previous registration) without the token."""
        try:
            me = requests.post(self._method("getMe"), timeout=15)
            if me.status_code >= 300:
                raise RuntimeError(f"getMe: HTTP {me.status_code}")
            registered = requests.post(self._method("setWebhook"), timeout=15, json={
                "url": self.webhook_url, "secret_token": self.secret_token,
                "allowed_updates": ["message", "callback_query"]})
            if registered.status_code >= 300 or not registered.json().get("ok"):
                raise RuntimeError(f"setWebhook: HTTP {registered.status_code}")
            logger.info("telegram: webhook registered for bot @%s", me.json().get("result", {}).get("username"))
        except (requests.RequestException, RuntimeError, ValueError) as error:
            reason = str(error) if isinstance(error, RuntimeError) else type(error).__name__
            logger.error("telegram: the webhook could not be registered (%s); updates may not arrive", reason)

    def routes(self, blueprint: Any, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        self.register()

        @blueprint.route("/webhook", methods=["POST"])
        async def update(request: Request) -> HTTPResponse:
            if not same(request.headers.get("X-Telegram-Bot-Api-Secret-Token"), self.secret_token):
                return forbidden(self.name(), "missing or wrong X-Telegram-Bot-Api-Secret-Token")
            try:
                body = request.json
            except Exception:
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("update_id"), int):
                return bad_request(self.name(), "an update with an update_id is expected")
            inbound = self._inbound(body)
            if inbound is not None:
                await self.receive(inbound, on_new_message)
            return response.json({"ok": True})

    def _inbound(self, update: Dict[Text, Any]) -> Optional[Inbound]:
        delivery = str(update["update_id"])
        message, press = update.get("message"), update.get("callback_query")
        if isinstance(message, dict) and isinstance(message.get("chat"), dict) and "id" in message["chat"]:
            chat = str(message["chat"]["id"])
            return Inbound(delivery, chat, chat, text=message.get("text"))
        if isinstance(press, dict) and isinstance(press.get("message"), dict):
            chat = str((press["message"].get("chat") or {}).get("id") or "")
            data = press.get("data")
            if chat and isinstance(data, str) and data:
                return Inbound(delivery, chat, (chat, press.get("id")), payload=data)
        return None  # an edited message, a channel post…: nothing to answer

    async def deliver(self, session: aiohttp.ClientSession, address: Any,
                      messages: List[Dict[Text, Any]]) -> shaping.Options:
        chat, press = address if isinstance(address, tuple) else (address, None)
        if press:  # stops the pressed button's spinner
            async with session.post(self._method("answerCallbackQuery"), json={"callback_query_id": press}) as result:
                await check(result, "answerCallbackQuery")
        parts = shaping.split(shaping.texts(messages), shaping.TELEGRAM_LIMIT)
        keyboard = [[{"text": option.title, "callback_data": option.payload}]
                    for option in shaping.options(messages)
                    if len(option.payload.encode()) <= CALLBACK_DATA_BYTES]
        for index, part in enumerate(parts):
            body: Dict[Text, Any] = {"chat_id": chat, "text": part}
            if keyboard and index == len(parts) - 1:
                body["reply_markup"] = {"inline_keyboard": keyboard}
            async with session.post(self._method("sendMessage"), json=body) as result:
                await check(result, "sendMessage")
        return ()
