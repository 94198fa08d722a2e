"""The platform channels' gate (channels/platform.py, ``PlatformInput.receive``) in-process: a Twilio
channel, a stand-in for Twilio's API (tests/platforms.py), and a turn handler standing in for Rasa's
processor (the full path with the real servers is tests/test_channel_e2e.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, List

import pytest
from rasa.core.channels.channel import UserMessage

from channels.platform import Inbound
from channels.platform_store import PlatformStore
from channels.twilio import TwilioInput
from core.knowledge_loader import get_knowledge
from tests.platforms import StandIn

UNREACHABLE_DB = "postgresql://postgres@127.0.0.1:9/test?connect_timeout=2"  # nothing listens on port 9


@pytest.fixture()
def standin():
    running = StandIn()
    yield running
    running.close()


def channel(standin: StandIn, database: str, monkeypatch) -> TwilioInput:
    monkeypatch.setenv("CLINIC_SESSION_SECRET", "k" * 40)
    monkeypatch.setenv("TWILIO_API_URL", standin.env()["TWILIO_API_URL"])
    monkeypatch.setenv("CLINIC_DB_URL", database)
    twilio = TwilioInput("AC1", "token", "+13105550100", "https://clinic.example.com/webhooks/twilio/webhook")
    twilio.blueprint(lambda message: None)  # loads the knowledge, the key and the store as at start-up
    return twilio


def handler(replies: List[dict], seen: List[str]):
    async def on_new_message(message: UserMessage) -> None:
        seen.append(message.text)
        for reply in replies:
            await message.output_channel.send_response(message.sender_id, reply)
    return on_new_message


def inbound(text: str, sid: str) -> Inbound:
    return Inbound(sid, "+14245550111", ("+14245550111", "+13105550100"), text=text)


def test_with_the_database_down_a_message_is_still_answered(standin, monkeypatch, caplog):
    twilio = channel(standin, UNREACHABLE_DB, monkeypatch)
    seen: List[str] = []
    asyncio.run(twilio.receive(inbound("hello", "SM1"), handler([{"text": "Hi."}], seen)))
    assert seen == ["hello"]
    assert [call.text for call in standin.sent("twilio")] == ["Hi."]
    assert "the channel store failed (OperationalError)" in caplog.text


def test_a_failing_turn_gets_the_technical_problem_reply_and_the_options_are_remembered(standin, monkeypatch,
                                                                                        tmp_path, caplog):
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    twilio = channel(standin, database, monkeypatch)

    async def broken(message: UserMessage) -> Any:
        raise RuntimeError("the processor failed")

    asyncio.run(twilio.receive(inbound("hello there", "SM1"), broken))
    [reply] = standin.sent("twilio")
    assert reply.text == get_knowledge().technical_problem and "911" in reply.text
    # options offered in one turn are read back in the next, across channel instances (servers)
    seen: List[str] = []
    buttons = [{"text": "Pick one.", "buttons": [{"title": "Symptoms", "payload": "/ask_symptoms"}]}]
    asyncio.run(twilio.receive(inbound("what is it", "SM2"), handler(buttons, seen)))
    other = channel(standin, database, monkeypatch)
    asyncio.run(other.receive(inbound("1", "SM3"), handler([{"text": "Symptoms are…"}], seen)))
    assert seen == ["what is it", "/ask_symptoms"]
    assert PlatformStore(database).recent(twilio.conversation_id("+14245550111"), dt.timedelta(hours=1)) == 3
    assert "hello there" not in caplog.text


def test_a_failing_platform_api_is_logged_with_its_status_only(standin, monkeypatch, tmp_path, caplog):
    twilio = channel(standin, f"sqlite:///{tmp_path / 'db.sqlite'}", monkeypatch)
    standin.failing.add("twilio")
    caplog.set_level(logging.INFO)
    seen: List[str] = []
    asyncio.run(twilio.receive(inbound("my secret question", "SM1"), handler([{"text": "An answer."}], seen)))
    assert seen == ["my secret question"]
    assert "was not sent: Messages API: HTTP 500" in caplog.text
    assert "token" not in caplog.text and "my secret question" not in caplog.text


def test_a_flood_from_one_sender_gets_the_slow_down_reply_and_no_turn(standin, monkeypatch, tmp_path):
    # the fair-share limits of every channel: a burst of 3 per conversation, then one token a minute
    monkeypatch.setenv("CLINIC_RATE_PER_CONVERSATION", "1")
    monkeypatch.setenv("CLINIC_BURST_PER_CONVERSATION", "3")
    monkeypatch.setattr("channels.fair_share.TARPIT_SECONDS", 0)
    monkeypatch.setattr("channels.fair_share._shared", None)  # limits made anew from this environment
    twilio = channel(standin, f"sqlite:///{tmp_path / 'db.sqlite'}", monkeypatch)
    seen: List[str] = []
    for number in range(5):
        asyncio.run(twilio.receive(inbound(f"question {number}", f"SM{number}"), handler([{"text": "Hi."}], seen)))
    assert seen == ["question 0", "question 1", "question 2"]
    slow_down = get_knowledge().door["slow_down"]
    assert [call.text for call in standin.sent("twilio")] == ["Hi."] * 3 + [slow_down] * 2
