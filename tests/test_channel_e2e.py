"""Every channel end to end, on one pair of real Rasa and action servers started once for the module with
every channel on: REST, the widget's socket.io and the callback channel (posting to a local receiver),
and the messaging platforms: requests in each platform's documented shape and signed as it signs them,
and a local stand-in for each platform's API (tests/platforms.py) recording what the assistant sends."""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import random
import re
import sqlite3
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

import aiohttp
import pytest
import requests
import socketio

from channels import door
from devtools.servers import Receiver, Servers, Visitor
from scripts import credentials
from tests import platforms
from tests.expectations import PHONE, TOPIC_PHRASES, contains_all
from tests.platforms import StandIn

pytestmark = pytest.mark.e2e

PAGE_ORIGIN = "http://localhost:8000"

TWILIO_WEBHOOK_URL = "https://clinic.example.com/webhooks/twilio/webhook"  # the public URL, not the local one
SECRETS = {
    "SLACK_TOKEN": "xoxb-slack-token-4c1b",
    "SLACK_SIGNING_SECRET": "slack-signing-secret-9e2f",
    "TELEGRAM_ACCESS_TOKEN": "123456:telegram-token-77aa",
    "TELEGRAM_WEBHOOK_URL": "https://clinic.example.com/webhooks/telegram/webhook",
    "TELEGRAM_SECRET_TOKEN": "telegram-secret_0123",
    "FACEBOOK_VERIFY_TOKEN": "fb-verify-token-31d0",
    "FACEBOOK_APP_SECRET": "fb-app-secret-5a6b",
    "FACEBOOK_PAGE_ACCESS_TOKEN": "fb-page-token-8c8c",
    "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
    "TWILIO_AUTH_TOKEN": "twilio-auth-token-2b2b",
    "TWILIO_NUMBER": "+13105550100",
    "TWILIO_WEBHOOK_URL": TWILIO_WEBHOOK_URL,
}
CAP = 12  # CHANNEL_SENDER_MAX_MESSAGES for these servers
EMERGENCY = "my legs went numb and I can't feel my groin"
BIG = "x" * (door.MAX_BODY_BYTES + 1)  # over the servers' body limit, however the platform wraps it
_ids = itertools.count(random.randrange(10**6, 10**7))


@pytest.fixture(scope="module")
def receiver():
    running = Receiver()
    yield running
    running.close()


@pytest.fixture(scope="module")
def standin():
    running = StandIn()
    yield running
    running.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, standin, receiver):
    folder = tmp_path_factory.mktemp("platforms")
    path = folder / "credentials.yml"
    rendered = credentials.render({**SECRETS, "CALLBACK_URL": receiver.url, "WEB_ORIGINS": PAGE_ORIGIN})
    assert rendered.on == ["rest", "socketio", "callback", "slack", "telegram", "messenger", "twilio"], \
        rendered.summary()
    credentials.write(rendered, path)
    running = Servers(folder, credentials=path,
                      env={**standin.env(), "CHANNEL_SENDER_MAX_MESSAGES": str(CAP)}).start()
    yield running
    running.stop()


def query(servers: Servers, sql: str, *args: Any) -> List[Tuple]:
    with sqlite3.connect(servers.db) as connection:
        return connection.execute(sql, args).fetchall()


def stored(servers: Servers) -> Tuple[int, int, int]:
    """How many events, delivery ids and consultation requests the database holds."""
    return tuple(query(servers, f"select count(*) from {table}")[0][0]  # type: ignore[return-value]
                 for table in ("events", "channel_deliveries", "consultation_requests"))


def number() -> str:
    return "+1424555" + f"{random.randrange(10**4):04d}"


# --- REST, socket.io, callback ---------------------------------------------------------------------------

async def hang_up(client: socketio.AsyncClient) -> None:
    """Disconnects without waiting for the pending long-poll to end (up to the 25 s ping interval)."""
    await client.eio.disconnect(abort=True)


class SocketVisitor:
    """A visitor on the socket.io channel with python-socketio's client, as the widget does it
    (contracts #3): ``session_request`` with the stored session id (or None), then every message with
    the id the server confirmed.

    The client uses the polling transport: python-engineio's async WebSocket transport needs
    aiohttp >= 3.10 (``aiohttp.ClientWSTimeout``) and Rasa 3.6 pins aiohttp 3.9. The browser tests
    (test_web.py) use WebSocket.
    """

    def __init__(self, url: str, session_id: Optional[str] = None, **connect: Any) -> None:
        self.url, self.asked, self.connect_options = url, session_id, connect
        self.session_id = ""
        self.client = socketio.AsyncClient(reconnection=False)
        self.messages: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
        self.confirmed: "asyncio.Queue[str]" = asyncio.Queue()
        self.client.on("bot_uttered", self.messages.put)
        self.client.on("session_confirm", self.confirmed.put)

    async def __aenter__(self) -> "SocketVisitor":
        await self.client.connect(self.url, wait_timeout=10, transports=["polling"], **self.connect_options)
        await self.client.emit("session_request", {"session_id": self.asked})
        self.session_id = await asyncio.wait_for(self.confirmed.get(), 10)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await hang_up(self.client)

    async def say(self, text: Any, until: Callable[[str], bool], session_id: Any = None) -> List[Dict[str, Any]]:
        """Sends ``text``; the bot's messages until their joined texts satisfy ``until``."""
        await self.client.emit("user_uttered", {"message": text, "session_id": session_id or self.session_id})
        got: List[Dict[str, Any]] = []
        while not until("\n".join(message.get("text") or "" for message in got)):
            got.append(await asyncio.wait_for(self.messages.get(), 60))
        return got


def test_a_rest_conversation(servers):
    visitor = Visitor(servers)
    assert contains_all(visitor.says("what is fibromyalgia"), TOPIC_PHRASES["what_is_fibromyalgia"])
    assert contains_all(visitor.says("what causes it"), TOPIC_PHRASES["causes"])


def test_a_socketio_conversation_continues_after_a_reconnect(servers):
    async def conversation() -> None:
        async with SocketVisitor(servers.url, None) as visitor:
            session_id = visitor.session_id
            answer = await visitor.say("what is fibromyalgia",
                                       lambda text: contains_all(text, TOPIC_PHRASES["what_is_fibromyalgia"]))
            await asyncio.sleep(1)  # the quick replies come with the answer's last part
            while not visitor.messages.empty():
                answer.append(visitor.messages.get_nowait())
            titles = [reply["title"] for message in answer for reply in message.get("quick_replies", [])]
            assert "Symptoms" in titles
            await visitor.say("I'd like to book a consultation", lambda text: "name" in text)
        # a new connection with the same session id: the form goes on where it was
        async with SocketVisitor(servers.url, session_id) as visitor:
            assert visitor.session_id == session_id  # the server's own id is confirmed as it is
            await visitor.say("Maria Lopez", lambda text: "phone number" in text)
        # another session id is another conversation: the same answer is not taken as a name
        async with SocketVisitor(servers.url, None) as stranger:
            assert stranger.session_id != session_id
            reply = await stranger.say("Maria Lopez", lambda text: bool(text))
            assert "phone number" not in "\n".join(message.get("text") or "" for message in reply)

    asyncio.run(conversation())


def test_socketio_accepts_only_the_configured_web_origins(servers):
    async def polling(origin: str) -> bool:
        client = socketio.AsyncClient(reconnection=False)
        try:
            await client.connect(servers.url, headers={"Origin": origin}, transports=["polling"], wait_timeout=10)
        except socketio.exceptions.ConnectionError:
            return False
        await hang_up(client)
        return True

    async def websocket(origin: str) -> bool:
        url = servers.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url, headers={"Origin": origin}, timeout=10) as ws:
                    opening = await ws.receive(timeout=10)  # engine.io "open" packet
                    return opening.type == aiohttp.WSMsgType.TEXT and opening.data.startswith("0{")
            except aiohttp.WSServerHandshakeError as error:
                assert error.status == 400
                return False

    async def check() -> None:
        for connect in (polling, websocket):
            assert await connect(PAGE_ORIGIN), connect.__name__
            assert not await connect("http://evil.example"), connect.__name__
            assert not await connect("http://localhost:8000.evil.example"), connect.__name__
            assert not await connect("http://127.0.0.1:8001"), connect.__name__

    asyncio.run(check())
    response = requests.get(f"{servers.url}/socket.io/?EIO=4&transport=polling",
                            headers={"Origin": PAGE_ORIGIN}, timeout=10)
    assert response.ok and response.headers.get("Access-Control-Allow-Origin") == PAGE_ORIGIN
    refused = requests.get(f"{servers.url}/socket.io/?EIO=4&transport=polling",
                           headers={"Origin": "http://evil.example"}, timeout=10)
    assert refused.status_code == 400 and "Access-Control-Allow-Origin" not in refused.headers


def test_the_callback_channel_posts_the_replies_to_the_configured_url(servers, receiver):
    sender = uuid.uuid4().hex
    response = requests.post(f"{servers.url}/webhooks/callback/webhook",
                             json={"sender": sender, "message": "what's your phone number"}, timeout=60)
    assert response.status_code == 200 and response.text == "success"
    got = receiver.messages(lambda messages: contains_all(
        "\n".join(m["json"].get("text") or "" for m in messages), TOPIC_PHRASES["contact"]))
    assert all(message["path"] == "/bot" and message["json"]["recipient_id"] == sender for message in got)
    assert PHONE in "\n".join(message["json"].get("text") or "" for message in got)


# --- one visitor per platform, posting as the platform posts ---------------------------------------

class Sms:
    """A visitor texting the clinic's Twilio number (``whatsapp=True``: on WhatsApp through Twilio)."""

    platform = "twilio"

    def __init__(self, servers: Servers, standin: StandIn, whatsapp: bool = False) -> None:
        self.servers, self.standin = servers, standin
        self.sender = ("whatsapp:" if whatsapp else "") + number()

    def form(self, text: str, sid: Optional[str] = None) -> Dict[str, str]:
        return platforms.twilio_form(self.sender, text, sid or "SM" + uuid.uuid4().hex)

    def post(self, form: Dict[str, str], signature: Optional[str] = "sign", data: Any = None) -> requests.Response:
        headers = {}
        if signature == "sign":
            signature = platforms.twilio_signature(SECRETS["TWILIO_AUTH_TOKEN"], TWILIO_WEBHOOK_URL, form)
        if signature:
            headers["X-Twilio-Signature"] = signature
        return requests.post(f"{self.servers.url}/webhooks/twilio/webhook", data=data or form, headers=headers,
                             timeout=60)

    def send(self, text: str, **options: Any) -> requests.Response:
        return self.post(self.form(text), **options)


class Telegram:
    platform = "telegram"

    def __init__(self, servers: Servers, standin: StandIn) -> None:
        self.servers, self.standin = servers, standin
        self.chat = random.randrange(10**8, 10**9)

    def post(self, update: Dict[str, Any], secret: Optional[str] = SECRETS["TELEGRAM_SECRET_TOKEN"],
             data: Optional[bytes] = None) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        return requests.post(f"{self.servers.url}/webhooks/telegram/webhook", headers=headers, timeout=60,
                             data=data if data is not None else json.dumps(update))

    def update(self, text: str) -> Dict[str, Any]:
        return platforms.telegram_update(next(_ids), self.chat, text)

    def send(self, text: str, **options: Any) -> requests.Response:
        return self.post(self.update(text), **options)


class Messenger:
    platform = "graph"

    def __init__(self, servers: Servers, standin: StandIn) -> None:
        self.servers, self.standin = servers, standin
        self.psid = str(random.randrange(10**15, 10**16))

    def event(self, text: str, quick_reply: Optional[str] = None) -> Dict[str, Any]:
        return platforms.messenger_event(self.psid, "m_" + uuid.uuid4().hex, text, quick_reply)

    def post(self, event: Dict[str, Any], signature: Optional[str] = "sign", data: Optional[bytes] = None,
             ) -> requests.Response:
        body = json.dumps(event).encode()
        headers = {"Content-Type": "application/json"}
        if signature == "sign":
            signature = platforms.hub_signature(SECRETS["FACEBOOK_APP_SECRET"], body)
        if signature:
            headers["X-Hub-Signature-256"] = signature
        return requests.post(f"{self.servers.url}/webhooks/facebook/webhook", headers=headers, timeout=60,
                             data=data if data is not None else body)

    def send(self, text: str, **options: Any) -> requests.Response:
        return self.post(self.event(text), **options)


class Slack:
    platform = "slack"

    def __init__(self, servers: Servers, standin: StandIn) -> None:
        self.servers, self.standin = servers, standin
        self.user, self.channel = "U" + uuid.uuid4().hex[:8].upper(), "D" + uuid.uuid4().hex[:8].upper()

    def event(self, text: str) -> Dict[str, Any]:
        return platforms.slack_event("Ev" + uuid.uuid4().hex[:10].upper(), self.user, self.channel, text)

    def post(self, event: Dict[str, Any], signature: Optional[str] = "sign", data: Optional[bytes] = None,
             timestamp: Optional[int] = None, headers: Optional[Dict[str, str]] = None) -> requests.Response:
        body = json.dumps(event).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
        if signature == "sign":
            sent.update(platforms.slack_headers(SECRETS["SLACK_SIGNING_SECRET"], body, timestamp))
        elif signature:
            sent.update({"X-Slack-Request-Timestamp": str(timestamp or 0), "X-Slack-Signature": signature})
        return requests.post(f"{self.servers.url}/webhooks/slack/webhook", headers=sent, timeout=60,
                             data=data if data is not None else body)

    def send(self, text: str, **options: Any) -> requests.Response:
        return self.post(self.event(text), **options)


VISITORS: Dict[str, Callable[..., Any]] = {"sms": Sms, "whatsapp": lambda *a: Sms(*a, whatsapp=True),
                                           "telegram": Telegram, "messenger": Messenger, "slack": Slack}


def says(visitor: Any, text: str) -> Tuple[str, List[platforms.Call]]:
    """Sends ``text`` as the visitor; everything the assistant sent back, joined, and the calls."""
    mark = visitor.standin.mark()
    response = visitor.send(text)
    assert response.status_code == 200, response.text
    calls = visitor.standin.sent(visitor.platform, mark)
    return "\n".join(call.text for call in calls), calls


def first_option(text: str) -> str:
    match = re.search(r"Reply 1 for (.+?)(?:,| or |\.$)", text)
    assert match, text
    return match.group(1)


# --- questions and answers ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sms", "whatsapp"])
def test_an_sms_question_gets_its_answer_with_numbered_options_and_1_chooses_the_first(servers, standin, kind):
    visitor = VISITORS[kind](servers, standin)
    answer, calls = says(visitor, "what is fibromyalgia")
    assert contains_all(answer, TOPIC_PHRASES["what_is_fibromyalgia"]) and PHONE in answer
    assert len(calls) == 1, [call.text for call in calls]  # answer and options in one message
    assert "Reply 1 for " in answer and "(/" not in answer and "/ask" not in answer
    [call] = calls
    assert call.form["To"] == visitor.sender
    assert call.form["From"] == ("whatsapp:+13105550100" if kind == "whatsapp" else "+13105550100")
    assert call.path == f"/twilio/2010-04-01/Accounts/{SECRETS['TWILIO_ACCOUNT_SID']}/Messages.json"
    title = first_option(answer)
    # the same button on the REST channel: its payload's answer is what "1" must give
    rest = Visitor(servers)
    buttons = [b for message in rest.say("what is fibromyalgia") for b in message.get("buttons", [])]
    [button] = [b for b in buttons if b["title"] == title]
    expected = rest.says(button["payload"]).split("\n")[0][:60]
    chosen, _ = says(visitor, "1")
    assert expected and expected in chosen, (title, chosen)
    # the option's words work as well as its number
    words_visitor = VISITORS[kind](servers, standin)
    says(words_visitor, "what is fibromyalgia")
    by_words, _ = says(words_visitor, title.lower())
    assert expected in by_words


def test_a_booking_over_sms_completes_and_stores_one_request(servers, standin):
    visitor = Sms(servers, standin)
    assert "name" in says(visitor, "I'd like to book a consultation")[0]
    assert "phone number" in says(visitor, "Dana Whitfield")[0]
    assert "good time" in says(visitor, "(310) 555-0134")[0]
    assert "email" in says(visitor, "weekday mornings")[0]
    assert "about" in says(visitor, "skip")[0]
    summary = says(visitor, "back pain from fibromyalgia")[0]
    assert "Dana Whitfield" in summary and "Reply 1 for " in summary
    form = visitor.form("yes")
    response = visitor.post(form)
    assert response.status_code == 200
    rows = query(servers, "select conversation_id, phone from consultation_requests where name = ?", "Dana Whitfield")
    assert len(rows) == 1 and rows[0][1] == "+13105550134"
    assert re.fullmatch(r"twilio:[0-9a-f]{32}", rows[0][0])
    mark = standin.mark()
    assert visitor.post(form).status_code == 200  # Twilio re-delivers the "yes"
    assert standin.sent("twilio", mark) == []
    assert len(query(servers, "select id from consultation_requests where name = ?", "Dana Whitfield")) == 1


@pytest.mark.parametrize("kind", sorted(VISITORS))
def test_an_emergency_gets_911_on_every_channel(servers, standin, kind):
    visitor = VISITORS[kind](servers, standin)
    answer, calls = says(visitor, EMERGENCY)
    assert "911" in answer and calls


def test_telegram_gets_native_buttons_that_work(servers, standin):
    visitor = Telegram(servers, standin)
    answer, calls = says(visitor, "what is fibromyalgia")
    assert contains_all(answer, TOPIC_PHRASES["what_is_fibromyalgia"])
    keyboard = calls[-1].json["reply_markup"]["inline_keyboard"]
    assert all(call.json["chat_id"] == str(visitor.chat) for call in calls)
    symptoms = next(row[0] for row in keyboard if row[0]["text"] == "Symptoms")
    mark = standin.mark()
    assert visitor.post(platforms.telegram_press(next(_ids), visitor.chat, symptoms["callback_data"])).ok
    sent = standin.sent("telegram", mark)
    assert contains_all("\n".join(call.text for call in sent), TOPIC_PHRASES["symptoms"])
    assert any(call.path.endswith("/answerCallbackQuery") for call in standin.calls[mark:])
    setup = [call.path for call in standin.calls if call.platform == "telegram"]
    assert f"/telegram/bot{SECRETS['TELEGRAM_ACCESS_TOKEN']}/getMe" in setup
    [registration] = [call for call in standin.calls if call.path.endswith("/setWebhook")]
    assert registration.json["url"] == SECRETS["TELEGRAM_WEBHOOK_URL"]
    assert registration.json["secret_token"] == SECRETS["TELEGRAM_SECRET_TOKEN"]


def test_messenger_gets_native_quick_replies_that_work(servers, standin):
    visitor = Messenger(servers, standin)
    answer, calls = says(visitor, "what is fibromyalgia")
    assert contains_all(answer, TOPIC_PHRASES["what_is_fibromyalgia"])
    assert all(call.query["access_token"] == [SECRETS["FACEBOOK_PAGE_ACCESS_TOKEN"]] for call in calls)
    assert all(call.json["recipient"] == {"id": visitor.psid} for call in calls)
    quick = calls[-1].json["message"]["quick_replies"]
    assert all(len(reply["title"]) <= 20 for reply in quick)
    symptoms = next(reply for reply in quick if reply["title"] == "Symptoms")
    mark = standin.mark()
    assert visitor.post(visitor.event("Symptoms", quick_reply=symptoms["payload"])).ok
    sent = "\n".join(call.text for call in standin.sent("graph", mark))
    assert contains_all(sent, TOPIC_PHRASES["symptoms"])
    # Meta's subscription check
    ok = requests.get(f"{servers.url}/webhooks/facebook/webhook", timeout=30, params={
        "hub.mode": "subscribe", "hub.verify_token": SECRETS["FACEBOOK_VERIFY_TOKEN"], "hub.challenge": "c4"})
    assert ok.status_code == 200 and ok.text == "c4"
    wrong = requests.get(f"{servers.url}/webhooks/facebook/webhook", timeout=30, params={
        "hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "c4"})
    assert wrong.status_code == 403


def test_slack_answers_with_numbered_options_and_the_url_check(servers, standin):
    visitor = Slack(servers, standin)
    answer, calls = says(visitor, "<@UBOT1> what is fibromyalgia")
    assert contains_all(answer, TOPIC_PHRASES["what_is_fibromyalgia"]) and "Reply 1 for " in answer
    assert all(call.json["channel"] == visitor.channel for call in calls)
    assert all(call.headers["Authorization"] == f"Bearer {SECRETS['SLACK_TOKEN']}" for call in calls)
    challenge = visitor.post({"token": "t", "challenge": "ch-7", "type": "url_verification"})
    assert challenge.json() == {"challenge": "ch-7"}
    mark = standin.mark()
    mention = visitor.event("<@UBOT1> what causes fibromyalgia")
    twin = json.loads(json.dumps(mention))  # the same message, delivered again as an app_mention event
    twin["event_id"], twin["event"]["type"] = "Ev" + uuid.uuid4().hex[:10].upper(), "app_mention"
    assert visitor.post(mention).ok and visitor.post(twin).ok
    assert contains_all("\n".join(call.text for call in standin.sent("slack", mark)), TOPIC_PHRASES["causes"])
    assert len(standin.sent("slack", mark)) == 1
    channel_message = visitor.event("a message in a channel, not for the bot")
    channel_message["event"]["channel_type"] = "channel"
    mark = standin.mark()
    assert visitor.post(channel_message).ok and standin.sent("slack", mark) == []
    bot = visitor.event("an echo of the bot's own message")
    bot["event"]["bot_id"] = "B1"
    assert visitor.post(bot).ok and standin.sent("slack", mark) == []


# --- refused requests: nothing stored, nothing sent -----------------------------------------------------

def _forgeries(visitor: Any) -> List[Tuple[str, Callable[[], requests.Response]]]:
    text = "book a consultation for Ana"
    if isinstance(visitor, Sms):
        form = visitor.form(text)
        changed = {**form, "Body": "cancel my appointment"}
        wrong_url = platforms.twilio_signature(SECRETS["TWILIO_AUTH_TOKEN"], visitor.servers.url, form)
        return [("unsigned", lambda: visitor.post(form, signature=None)),
                ("wrongly signed", lambda: visitor.post(form, signature="bm90IGEgc2lnbmF0dXJl")),
                ("signed for the local URL", lambda: visitor.post(form, signature=wrong_url)),
                ("replayed with a changed body", lambda: visitor.post(
                    changed, signature=platforms.twilio_signature(SECRETS["TWILIO_AUTH_TOKEN"], TWILIO_WEBHOOK_URL,
                                                                  form)))]
    if isinstance(visitor, Telegram):
        update = visitor.update(text)
        return [("unsigned", lambda: visitor.post(update, secret=None)),
                ("wrong secret", lambda: visitor.post(update, secret="telegram-secret_0124")),
                ("the bot's name as secret", lambda: visitor.post(update, secret="spine_clinic_bot"))]
    if isinstance(visitor, Messenger):
        event = visitor.event(text)
        body = json.dumps(event).encode()
        signed = platforms.hub_signature(SECRETS["FACEBOOK_APP_SECRET"], body)
        sha1 = "sha1=" + hmac.new(SECRETS["FACEBOOK_APP_SECRET"].encode(), body, "sha1").hexdigest()
        return [("unsigned", lambda: visitor.post(event, signature=None)),
                ("wrongly signed", lambda: visitor.post(event, signature=platforms.hub_signature("guess", body))),
                ("legacy SHA-1 only", lambda: visitor.post(event, signature=sha1)),
                ("replayed with a changed body", lambda: visitor.post(
                    event, signature=signed, data=body.replace(b"book a", b"cancel")))]
    event = visitor.event(text)
    body = json.dumps(event).encode()
    headers = platforms.slack_headers(SECRETS["SLACK_SIGNING_SECRET"], body)
    return [("unsigned", lambda: visitor.post(event, signature=None)),
            ("wrongly signed", lambda: visitor.post(event, signature="v0=" + "0" * 64, timestamp=int(headers[
                "X-Slack-Request-Timestamp"]))),
            ("six minutes old", lambda: visitor.post(event, timestamp=int(headers["X-Slack-Request-Timestamp"]) - 360)),
            ("replayed with a changed body", lambda: visitor.post(
                event, data=body.replace(b"book a", b"cancel"), signature=None, headers=headers))]


@pytest.mark.parametrize("kind", ["sms", "telegram", "messenger", "slack"])
def test_unsigned_wrongly_signed_and_altered_requests_get_403_and_cost_nothing(servers, standin, kind):
    visitor = VISITORS[kind](servers, standin)
    before, mark = stored(servers), standin.mark()
    for what, send in _forgeries(visitor):
        response = send()
        assert response.status_code == 403, (what, response.status_code, response.text)
    assert stored(servers) == before
    assert standin.calls[mark:] == []
    assert "refused (403)" in servers.log("rasa")


@pytest.mark.parametrize("kind", ["sms", "telegram", "messenger", "slack"])
def test_an_oversized_request_gets_413_and_costs_nothing(servers, standin, kind):
    visitor = VISITORS[kind](servers, standin)
    before, mark = stored(servers), standin.mark()
    response = visitor.send(BIG)  # signed as the platform signs it
    assert response.status_code == 413
    assert stored(servers) == before and standin.calls[mark:] == []


@pytest.mark.parametrize("kind", ["sms", "telegram", "messenger", "slack"])
def test_a_redelivered_message_gets_one_turn(servers, standin, kind):
    visitor = VISITORS[kind](servers, standin)
    if isinstance(visitor, Sms):
        message, post = visitor.form("what causes fibromyalgia"), visitor.post
    elif isinstance(visitor, Telegram):
        message, post = visitor.update("what causes fibromyalgia"), visitor.post
    else:
        message, post = visitor.event("what causes fibromyalgia"), visitor.post
    mark = standin.mark()
    assert post(message).status_code == 200
    first = standin.sent(visitor.platform, mark)
    assert contains_all("\n".join(call.text for call in first), TOPIC_PHRASES["causes"])
    events = stored(servers)[0]
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    again = post(message, headers=retry) if isinstance(visitor, Slack) else post(message)
    assert again.status_code == 200
    assert standin.sent(visitor.platform, mark) == first and stored(servers)[0] == events


# --- faults and limits ------------------------------------------------------------------------------------

def test_a_failing_platform_api_is_logged_without_text_and_the_next_message_is_answered(servers, standin):
    visitor = Telegram(servers, standin)
    marker = "quokka-" + uuid.uuid4().hex[:6]
    standin.failing.add("telegram")
    try:
        response = visitor.send(f"what is fibromyalgia {marker}")
    finally:
        standin.failing.discard("telegram")
    assert response.status_code == 200
    log = servers.log("rasa")
    assert "sendMessage: HTTP 500" in log and marker not in log
    assert SECRETS["TELEGRAM_ACCESS_TOKEN"] not in log
    [[count]] = query(servers, "select count(*) from events where type_name = 'user' and data like ?", f"%{marker}%")
    assert count == 1  # the turn is stored
    answer, _ = says(visitor, "what causes fibromyalgia")
    assert contains_all(answer, TOPIC_PHRASES["causes"])


def test_one_sender_cannot_make_the_clinic_send_unbounded_sms(servers, standin):
    visitor = Sms(servers, standin)
    mark = standin.mark()
    for _ in range(CAP):
        assert visitor.send("hello").status_code == 200
    answered = len(standin.sent("twilio", mark))
    notice, calls = says(visitor, "hello")
    assert len(calls) == 1 and "a lot of messages" in notice and PHONE in notice
    for _ in range(3):
        assert says(visitor, "hello") == ("", [])  # no outbound flood
    emergency, _ = says(visitor, EMERGENCY)  # an emergency is still answered
    assert "911" in emergency
    assert answered >= CAP
    other = Sms(servers, standin)  # another sender is not affected
    assert says(other, "hello")[1]


def test_conversation_ids_are_namespaced_per_channel_and_hold_no_phone_number(servers, standin):
    sms = Sms(servers, standin)
    says(sms, "hello")
    senders = {row[0] for row in query(servers, "select distinct sender_id from events")}
    platform_ids = {sender for sender in senders if ":" in sender}
    assert platform_ids and all(re.fullmatch(r"(twilio|telegram|facebook|slack):[0-9a-f]{32}", sender)
                                for sender in platform_ids)
    assert not any(sms.sender[1:] in sender for sender in senders)


def test_a_message_over_2000_characters_is_answered_please_shorten_and_a_photo_gets_a_polite_reply(servers, standin):
    visitor = Telegram(servers, standin)
    marker = "wombat" + uuid.uuid4().hex[:6]
    answer, calls = says(visitor, (marker + " I have pain. ") * 150)  # about 3,000 characters
    assert len(calls) == 1 and "too long" in answer and PHONE in answer
    [[count]] = query(servers, "select count(*) from events where data like ?", f"%{marker}%")
    assert count == 0  # never reached the NLU nor the conversation
    sms = Sms(servers, standin)
    photo = {**sms.form(""), "NumMedia": "1", "MediaUrl0": "https://api.twilio.com/media/1",
             "MediaContentType0": "image/jpeg"}
    mark = standin.mark()
    assert sms.post(photo).status_code == 200
    [reply] = standin.sent("twilio", mark)
    assert "only read text" in reply.text and "911" in reply.text
