"""Local stand-ins for the messaging platforms, and requests signed as each platform signs them.

:class:`StandIn` is one HTTP server on 127.0.0.1 that answers, under one prefix per platform, the API
calls the channels make (Twilio's Messages API, Telegram's getMe / setWebhook / sendMessage /
answerCallbackQuery, the Graph API's ``me/messages``, Slack's ``chat.postMessage``) and records each
call; :attr:`StandIn.failing` makes a platform answer HTTP 500. The signers below compute each platform's
signature from its documentation, independently of the code under test (Twilio's with the standard
library, not the ``twilio`` package the channel uses).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Mapping, Optional, Set

PLATFORMS = ("twilio", "telegram", "graph", "slack")


@dataclass
class Call:
    platform: str
    path: str
    query: Dict[str, List[str]]
    headers: Dict[str, str]
    form: Dict[str, str] = field(default_factory=dict)
    json: Any = None

    @property
    def text(self) -> str:
        """The message text the assistant sent in this call (empty for other calls)."""
        if self.form:
            return self.form.get("Body", "")
        if isinstance(self.json, dict):
            message = self.json.get("message")
            return (message.get("text") if isinstance(message, dict) else self.json.get("text")) or ""
        return ""


class StandIn:
    """The four platforms' APIs on one local port, recording what the assistant sends."""

    def __init__(self) -> None:
        self.calls: List[Call] = []
        self.failing: Set[str] = set()
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                parsed = urllib.parse.urlparse(self.path)
                platform = parsed.path.strip("/").split("/")[0]
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                call = Call(platform, parsed.path, urllib.parse.parse_qs(parsed.query), dict(self.headers))
                if "json" in (self.headers.get("Content-Type") or ""):
                    call.json = json.loads(body or b"null")
                else:
                    call.form = dict(urllib.parse.parse_qsl(body.decode()))
                with stand_in.lock:
                    stand_in.calls.append(call)
                    failing = platform in stand_in.failing
                status, answer = (500, {"error": "stand-in failure"}) if failing else stand_in.answer(call)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def answer(call: Call) -> tuple:
        if call.platform == "twilio":
            return 201, {"sid": "SM" + "0" * 32, "status": "queued"}
        if call.platform == "telegram":
            if call.path.endswith("/getMe"):
                return 200, {"ok": True, "result": {"id": 1, "is_bot": True, "username": "spine_clinic_bot"}}
            return 200, {"ok": True, "result": True}
        if call.platform == "graph":
            return 200, {"recipient_id": "1", "message_id": "m_0"}
        return 200, {"ok": True, "channel": "C1", "ts": "1.0"}

    def env(self) -> Dict[str, str]:
        """The channels' API base URLs pointing here."""
        return {"TWILIO_API_URL": f"{self.base}/twilio", "TELEGRAM_API_URL": f"{self.base}/telegram",
                "FACEBOOK_API_URL": f"{self.base}/graph/v18.0", "SLACK_API_URL": f"{self.base}/slack/api"}

    def sent(self, platform: str, since: int = 0) -> List[Call]:
        """The message-sending calls made to ``platform`` (not getMe, setWebhook…), from call ``since``."""
        with self.lock:
            calls = self.calls[since:]
        kinds = ("/Messages.json", "/sendMessage", "/me/messages", "/chat.postMessage")
        return [call for call in calls if call.platform == platform and call.path.endswith(kinds)]

    def mark(self) -> int:
        with self.lock:
            return len(self.calls)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- signing as the platforms sign -----------------------------------------------------------------

def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio: base64(HMAC-SHA1(auth token, URL + each POST parameter's name and value, sorted by name))."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def hub_signature(app_secret: str, body: bytes) -> str:
    """Meta: ``sha256=`` + hex HMAC-SHA256 of the raw body with the app secret."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def slack_headers(signing_secret: str, body: bytes, timestamp: Optional[int] = None) -> Dict[str, str]:
    """Slack: ``v0=`` + hex HMAC-SHA256 of ``v0:<timestamp>:<body>`` with the signing secret."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(signing_secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=" + signature,
            "Content-Type": "application/json"}


# --- the platforms' documented message shapes -------------------------------------------------------

def twilio_form(sender: str, body: str, sid: str, to: str = "+13105550100") -> Dict[str, str]:
    """An incoming message as Twilio posts it (application/x-www-form-urlencoded)."""
    if sender.startswith("whatsapp:") and not to.startswith("whatsapp:"):
        to = "whatsapp:" + to
    return {"ToCountry": "US", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid, "SmsStatus": "received",
            "Body": body, "To": to, "NumSegments": "1", "MessageSid": sid, "AccountSid": "AC" + "1" * 32,
            "From": sender, "ApiVersion": "2010-04-01"}


def telegram_update(update_id: int, chat_id: int, text: str) -> Dict[str, Any]:
    """An Update with a text Message, as Telegram posts it to a webhook."""
    person = {"id": chat_id, "is_bot": False, "first_name": "Ana", "language_code": "en"}
    return {"update_id": update_id, "message": {"message_id": update_id % 100000, "from": person,
                                                "chat": {"id": chat_id, "first_name": "Ana", "type": "private"},
                                                "date": int(time.time()), "text": text}}


def telegram_press(update_id: int, chat_id: int, data: str) -> Dict[str, Any]:
    """An Update with a CallbackQuery: an inline-keyboard button pressed."""
    person = {"id": chat_id, "is_bot": False, "first_name": "Ana"}
    return {"update_id": update_id, "callback_query": {
        "id": str(update_id * 7), "from": person, "chat_instance": "42", "data": data,
        "message": {"message_id": 5, "chat": {"id": chat_id, "type": "private"}, "date": int(time.time()),
                    "text": "…"}}}


def messenger_event(psid: str, mid: str, text: str, quick_reply: Optional[str] = None) -> Dict[str, Any]:
    """A page ``messages`` event as the Messenger Platform posts it."""
    message: Dict[str, Any] = {"mid": mid, "text": text}
    if quick_reply:
        message["quick_reply"] = {"payload": quick_reply}
    now = int(time.time() * 1000)
    return {"object": "page", "entry": [{"id": "PAGE1", "time": now, "messaging": [
        {"sender": {"id": psid}, "recipient": {"id": "PAGE1"}, "timestamp": now, "message": message}]}]}


def slack_event(event_id: str, user: str, channel: str, text: str) -> Dict[str, Any]:
    """An Events API ``event_callback`` with a direct ``message`` event."""
    return {"token": "legacy", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
            "event_id": event_id, "event_time": int(time.time()), "event": {
                "type": "message", "channel": channel, "user": user, "text": text, "ts": f"{time.time():.6f}",
                "channel_type": "im", "event_ts": f"{time.time():.6f}"}}
