"""Replies shaped for the platforms (channels/shaping.py) and the channels' start-up checks, without
servers."""

from __future__ import annotations

import pytest
from rasa.shared.exceptions import RasaException

from channels import shaping
from channels.messenger import MessengerInput
from channels.shaping import Option
from channels.slack import SlackInput
from channels.telegram import TelegramInput
from channels.twilio import TwilioInput

BUTTONS = [{"title": "Physical therapy", "payload": "/ask_physical_therapy"},
           {"title": "Massage", "payload": "/ask_massage"},
           {"title": "Request a consultation", "payload": "/request_consultation"}]


@pytest.mark.parametrize("limit", [shaping.TWILIO_LIMIT, shaping.MESSENGER_LIMIT, shaping.TELEGRAM_LIMIT, 120])
def test_long_answers_split_at_sentence_boundaries_into_as_few_parts_as_fit(limit):
    sentences = [f"Sentence number {index} says something about fibromyalgia treatment." for index in range(200)]
    text = " ".join(sentences)
    parts = shaping.split(text, limit)
    assert all(len(part) <= limit for part in parts)
    assert " ".join(parts) == text  # nothing lost or added
    assert all(part.endswith(".") for part in parts)  # every cut at the end of a sentence
    # greedy: no two neighbours would fit together
    assert all(len(a) + 1 + len(b) > limit for a, b in zip(parts, parts[1:]))


def test_a_short_answer_is_one_part_and_a_sentence_over_the_limit_is_cut_at_spaces():
    assert shaping.split("  Hello there.  ", 1600) == ["Hello there."]
    assert shaping.split("", 1600) == []
    word_soup = " ".join(["fibromyalgia"] * 300)  # one "sentence" of 3,899 characters
    parts = shaping.split(word_soup, 1600)
    assert len(parts) == 3 and all(len(part) <= 1600 for part in parts)
    assert " ".join(parts) == word_soup
    assert shaping.split("x" * 3500, 1600) == ["x" * 1600, "x" * 1600, "x" * 300]


def test_buttons_become_one_numbered_sentence_inside_the_same_message():
    messages = [{"text": "Hello."}, {"text": "Fibromyalgia is…", "buttons": BUTTONS}]
    parts, choices = shaping.as_text(messages, shaping.TWILIO_LIMIT)
    assert parts == ["Hello.\n\nFibromyalgia is…\n\nReply 1 for Physical therapy, 2 for Massage or "
                     "3 for Request a consultation."]
    assert choices == tuple(Option(**button) for button in BUTTONS)
    assert shaping.numbered(choices[:1]) == "Reply 1 for Physical therapy."
    assert shaping.as_text([{"text": "No buttons."}], 1600) == (["No buttons."], ())
    # an answer over the limit: the options come with its last part
    long = [{"text": "A sentence about pain. " * 100, "buttons": BUTTONS}]
    parts, _ = shaping.as_text(long, shaping.TWILIO_LIMIT)
    assert len(parts) == 2 and "Reply 1 for" in parts[-1] and "Reply" not in parts[0]


@pytest.mark.parametrize("reply, payload", [
    ("1", "/ask_physical_therapy"), (" 2 ", "/ask_massage"), ("3.", "/request_consultation"), ("#1", "/ask_physical_therapy"),
    ("massage", "/ask_massage"), ("Request a consultation!", "/request_consultation"),
    ("4", None), ("0", None), ("1 please book", None), ("physical", None), ("", None),
])
def test_the_visitors_number_or_words_choose_an_option(reply, payload):
    assert shaping.chosen(reply, tuple(Option(**button) for button in BUTTONS)) == payload
    assert shaping.chosen(reply, ()) is None


@pytest.mark.parametrize("channel, credentials, variable", [
    (TwilioInput, {"account_sid": "AC1", "auth_token": "t", "twilio_number": "+1"}, "TWILIO_WEBHOOK_URL"),
    (TwilioInput, {"account_sid": "AC1", "twilio_number": "+1", "webhook_url": "https://x"}, "TWILIO_AUTH_TOKEN"),
    (TelegramInput, {"access_token": "1:a", "webhook_url": "https://x"}, "TELEGRAM_SECRET_TOKEN"),
    (TelegramInput, {"access_token": "1:a", "webhook_url": "https://x", "secret_token": "has space"},
     "TELEGRAM_SECRET_TOKEN"),
    (MessengerInput, {"verify": "v", "page-access-token": "p", "secret": ""}, "FACEBOOK_APP_SECRET"),
    (SlackInput, {"slack_token": "xoxb"}, "SLACK_SIGNING_SECRET"),
])
def test_a_channel_without_its_secret_does_not_start_and_names_the_variable(channel, credentials, variable):
    with pytest.raises(RasaException, match=variable):
        channel.from_credentials(credentials)


def test_api_base_urls_default_to_the_real_platforms(monkeypatch):
    for name in ("TWILIO_API_URL", "TELEGRAM_API_URL", "FACEBOOK_API_URL", "SLACK_API_URL"):
        monkeypatch.delenv(name, raising=False)
    assert TwilioInput("AC1", "t", "+1", "https://x").api == "https://api.twilio.com"
    assert TelegramInput("1:a", "https://x", "s").api == "https://api.telegram.org"
    assert MessengerInput("v", "s", "p").api.startswith("https://graph.facebook.com/")
    assert SlackInput("xoxb", "s").api == "https://slack.com/api"
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/slack/")
    assert SlackInput("xoxb", "s").api == "http://127.0.0.1:9/slack"


def test_the_sender_cap_is_configurable_and_checked(monkeypatch):
    monkeypatch.setenv("CHANNEL_SENDER_MAX_MESSAGES", "5")
    monkeypatch.setenv("CHANNEL_SENDER_WINDOW_SECONDS", "60")
    channel = SlackInput("xoxb", "s")
    assert channel.limits.max_messages == 5 and channel.limits.window.total_seconds() == 60
    monkeypatch.setenv("CHANNEL_SENDER_MAX_MESSAGES", "many")
    with pytest.raises(RasaException, match="CHANNEL_SENDER_MAX_MESSAGES"):
        SlackInput("xoxb", "s")
