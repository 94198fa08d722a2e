"""Which channels scripts/credentials.py turns on, from the environment, and the callback receiver the
end-to-end tests use (every channel with the real servers: tests/test_channel_e2e.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import yaml

from channels.origins import parse_origins
from devtools.servers import ROOT
from scripts import credentials

SECRETS = {
    "SLACK_TOKEN": "xoxb-slack-token-4c1b",
    "SLACK_SIGNING_SECRET": "slack-signing-secret-9e2f",
    "TELEGRAM_ACCESS_TOKEN": "123456:telegram-token-77aa",
    "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/webhooks/telegram/webhook",
    "TELEGRAM_SECRET_TOKEN": "telegram-secret_0123",
    "FACEBOOK_VERIFY_TOKEN": "fb-verify-token-31d0",
    "FACEBOOK_APP_SECRET": "fb-app-secret-5a6b",
    "FACEBOOK_PAGE_ACCESS_TOKEN": "fb-page-token-8c8c",
    "TWILIO_ACCOUNT_SID": "ACtwilio-sid-0f0f",
    "TWILIO_AUTH_TOKEN": "twilio-auth-token-2b2b",
    "TWILIO_NUMBER": "+13105550100",
    "TWILIO_WEBHOOK_URL": "https://bot.example.com/webhooks/twilio/webhook",
    "CALLBACK_URL": "http://127.0.0.1:5034/bot?token=callback-secret-6d6d",
}
OPTIONAL = ["callback", "slack", "telegram", "messenger", "twilio"]
PLATFORMS = {"slack": "channels.slack.SlackInput", "telegram": "channels.telegram.TelegramInput",
             "messenger": "channels.messenger.MessengerInput", "twilio": "channels.twilio.TwilioInput"}


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
    assert channels[PLATFORMS["slack"]] == {"slack_token": SECRETS["SLACK_TOKEN"],
                                            "slack_signing_secret": SECRETS["SLACK_SIGNING_SECRET"]}
    assert channels[PLATFORMS["messenger"]]["page-access-token"] == SECRETS["FACEBOOK_PAGE_ACCESS_TOKEN"]
    assert channels[PLATFORMS["twilio"]]["twilio_number"] == SECRETS["TWILIO_NUMBER"]
    assert channels[PLATFORMS["twilio"]]["webhook_url"] == SECRETS["TWILIO_WEBHOOK_URL"]
    assert channels[PLATFORMS["telegram"]]["webhook_url"] == SECRETS["TELEGRAM_WEBHOOK_URL"]
    assert channels[PLATFORMS["telegram"]]["secret_token"] == SECRETS["TELEGRAM_SECRET_TOKEN"]
    assert not any(name in channels for name in ("slack", "telegram", "facebook", "twilio"))  # Rasa's own: off
    assert channels["channels.callback.CallbackInput"] == {"url": SECRETS["CALLBACK_URL"]}


@pytest.mark.parametrize("missing", ["SLACK_SIGNING_SECRET", "TWILIO_NUMBER", "TWILIO_WEBHOOK_URL", "CALLBACK_URL",
                                     "FACEBOOK_APP_SECRET", "TELEGRAM_SECRET_TOKEN"])
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
    classes = {type(channel).__module__ for channel in create_http_input_channels(None, str(out))}
    assert {"channels.slack", "channels.messenger", "channels.twilio"} <= classes


def test_the_script_names_channels_and_missing_variables_but_prints_no_secret(tmp_path):
    out = tmp_path / "credentials.yml"
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT)}
    del env["TWILIO_AUTH_TOKEN"]
    result = subprocess.run([sys.executable, "scripts/credentials.py", "--out", str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    printed = result.stdout + result.stderr
    assert "Channels on: rest, socketio, callback, slack, telegram, messenger" in printed
    assert "twilio (not set: TWILIO_AUTH_TOKEN)" in printed
    for name, value in SECRETS.items():
        if name not in ("TWILIO_NUMBER",):
            assert value not in printed, name
    written = yaml.safe_load(out.read_text())
    assert written[PLATFORMS["slack"]]["slack_token"] == SECRETS["SLACK_TOKEN"] and PLATFORMS["twilio"] not in written


def test_the_script_refuses_a_regex_origin_and_writes_nothing(tmp_path):
    out = tmp_path / "credentials.yml"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WEB_ORIGINS": "https://.*"}
    result = subprocess.run([sys.executable, "scripts/credentials.py", "--out", str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "WEB_ORIGINS" in result.stderr
    assert not out.exists()
