"""The messaging channels: scripts/credentials.py (which channels are on, from the environment) and,
with the real servers, the REST, socket.io and callback channels."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import uuid
from typing import Any, Callable, Dict, List, Optional

import aiohttp
import pytest
import requests
import socketio
import yaml

from channels.origins import parse_origins
from devtools.servers import ROOT, Visitor
from scripts import credentials
from tests.conftest import PAGE_ORIGIN
from tests.expectations import PHONE, TOPIC_PHRASES, contains_all

SECRETS = {
    "SLACK_TOKEN": "xoxb-slack-token-4c1b",
    "SLACK_SIGNING_SECRET": "slack-signing-secret-9e2f",
    "TELEGRAM_ACCESS_TOKEN": "123456:telegram-token-77aa",
    "TELEGRAM_BOT_NAME": "spine_clinic_bot",
    "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/webhooks/telegram/webhook",
    "FACEBOOK_VERIFY_TOKEN": "fb-verify-token-31d0",
    "FACEBOOK_APP_SECRET": "fb-app-secret-5a6b",
    "FACEBOOK_PAGE_ACCESS_TOKEN": "fb-page-token-8c8c",
    "TWILIO_ACCOUNT_SID": "ACtwilio-sid-0f0f",
    "TWILIO_AUTH_TOKEN": "twilio-auth-token-2b2b",
    "TWILIO_NUMBER": "+13105550100",
    "CALLBACK_URL": "http://127.0.0.1:5034/bot?token=callback-secret-6d6d",
}
OPTIONAL = ["callback", "slack", "telegram", "facebook", "twilio"]


# --- scripts/credentials.py -------------------------------------------------------------------------

def test_without_variables_only_rest_and_socketio_are_on():
    rendered = credentials.render({})
    assert rendered.on == ["rest", "socketio"]
    assert sorted(rendered.off) == sorted(OPTIONAL)
    assert rendered.off["slack"] == ["SLACK_SIGNING_SECRET", "SLACK_TOKEN"]
    assert list(rendered.channels) == ["channels.rest.RestInput", "channels.socketio.SocketIOInput"]
    assert rendered.channels["channels.socketio.SocketIOInput"]["cors_allowed_origins"] == \
        ["http://localhost:8000", "http://127.0.0.1:8000"]


def test_every_channel_is_on_when_its_variables_are_set():
    rendered = credentials.render(SECRETS)
    assert rendered.on == ["rest", "socketio"] + OPTIONAL and rendered.off == {}
    channels = rendered.channels
    assert channels["slack"] == {"slack_token": SECRETS["SLACK_TOKEN"],
                                 "slack_signing_secret": SECRETS["SLACK_SIGNING_SECRET"]}
    assert channels["facebook"]["page-access-token"] == SECRETS["FACEBOOK_PAGE_ACCESS_TOKEN"]
    assert channels["twilio"]["twilio_number"] == SECRETS["TWILIO_NUMBER"]
    assert channels["telegram"]["webhook_url"] == SECRETS["TELEGRAM_WEBHOOK_URL"]
    assert channels["channels.callback.CallbackInput"] == {"url": SECRETS["CALLBACK_URL"]}


@pytest.mark.parametrize("missing", ["SLACK_SIGNING_SECRET", "TWILIO_NUMBER", "CALLBACK_URL", "FACEBOOK_APP_SECRET"])
def test_a_channel_missing_one_variable_stays_off(missing):
    for value in (None, ""):  # unset, or set to nothing
        env = {**SECRETS}
        if value is None:
            del env[missing]
        else:
            env[missing] = value
        rendered = credentials.render(env)
        [off] = [name for name, variables in rendered.off.items() if missing in variables]
        assert off not in rendered.on and off not in rendered.channels
        assert len(rendered.on) == 2 + len(OPTIONAL) - 1


def test_web_origins_replace_the_default_and_patterns_are_refused():
    rendered = credentials.render({"WEB_ORIGINS": " https://www.example.com, https://example.com/ "})
    assert rendered.channels["channels.socketio.SocketIOInput"]["cors_allowed_origins"] == \
        ["https://www.example.com", "https://example.com"]
    for bad in ["*", "https://*.example.com", r"https://.*\.example\.com", "https://example.com/chat", "example.com"]:
        with pytest.raises(credentials.ConfigError):
            credentials.render({"WEB_ORIGINS": bad})
        with pytest.raises(ValueError):
            parse_origins([bad])
    with pytest.raises(ValueError):
        parse_origins([])


def test_the_written_file_is_private_and_loads_in_rasa(tmp_path):
    out = tmp_path / "credentials.yml"
    credentials.write(credentials.render({k: v for k, v in SECRETS.items() if not k.startswith("TELEGRAM")}), out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    from rasa.core.run import create_http_input_channels  # Rasa itself reads the file

    names = sorted(channel.name() for channel in create_http_input_channels(None, str(out)))
    assert names == ["callback", "facebook", "rest", "slack", "socketio", "twilio"]


def test_the_script_names_channels_and_missing_variables_but_prints_no_secret(tmp_path):
    out = tmp_path / "credentials.yml"
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT)}
    del env["TWILIO_AUTH_TOKEN"]
    result = subprocess.run([sys.executable, "scripts/credentials.py", "--out", str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    printed = result.stdout + result.stderr
    assert "Channels on: rest, socketio, callback, slack, telegram, facebook" in printed
    assert "twilio (not set: TWILIO_AUTH_TOKEN)" in printed
    for name, value in SECRETS.items():
        if name not in ("TWILIO_NUMBER", "TELEGRAM_BOT_NAME"):
            assert value not in printed, name
    written = yaml.safe_load(out.read_text())
    assert written["slack"]["slack_token"] == SECRETS["SLACK_TOKEN"] and "twilio" not in written


def test_the_script_refuses_a_regex_origin_and_writes_nothing(tmp_path):
    out = tmp_path / "credentials.yml"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WEB_ORIGINS": "https://.*"}
    result = subprocess.run([sys.executable, "scripts/credentials.py", "--out", str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "WEB_ORIGINS" in result.stderr
    assert not out.exists()


# --- the real servers --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def servers(shared_servers):
    return shared_servers  # callback channel to a local receiver, socket.io open to PAGE_ORIGIN (conftest.py)


@pytest.fixture(scope="module")
def receiver(shared_servers):
    return shared_servers.receiver


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


@pytest.mark.e2e
def test_a_rest_conversation(servers):
    visitor = Visitor(servers)
    assert contains_all(visitor.says("what is fibromyalgia"), TOPIC_PHRASES["what_is_fibromyalgia"])
    assert contains_all(visitor.says("what causes it"), TOPIC_PHRASES["causes"])


@pytest.mark.e2e
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


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_the_callback_channel_posts_the_replies_to_the_configured_url(servers, receiver):
    sender = uuid.uuid4().hex
    response = requests.post(f"{servers.url}/webhooks/callback/webhook",
                             json={"sender": sender, "message": "what's your phone number"}, timeout=60)
    assert response.status_code == 200 and response.text == "success"
    got = receiver.messages(lambda messages: contains_all(
        "\n".join(m["json"].get("text") or "" for m in messages), TOPIC_PHRASES["contact"]), recipient=sender)
    assert all(message["path"] == "/bot" and message["json"]["recipient_id"] == sender for message in got)
    assert PHONE in "\n".join(message["json"].get("text") or "" for message in got)
