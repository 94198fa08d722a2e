"""Rasa's callback channel behind the same door as the REST channel (:mod:`channels.rest`).

``POST /webhooks/callback/webhook`` with ``{"sender", "message"}``; the replies are POSTed to the
configured ``url``. Rasa's own :class:`~rasa.core.channels.callback.CallbackInput` is a REST channel with
the same defects (a missing sender is the shared conversation ``"default"``, a body that is not an
object or a failing turn is a 500) and no guard at all around the turn. This one applies the project's
REST rules (JSON only and no foreign ``Origin``, 400 with a JSON error, cleaned and bounded text, replaced
metadata, the fair-share limits) and sends the
technical-problem reply to the callback URL when a turn fails or says nothing; it answers ``success``
as Rasa's does.
"""

from __future__ import annotations

from typing import Any, Dict, Text

from rasa.core.channels.callback import CallbackOutput
from rasa.core.channels.channel import CollectingOutputChannel, InputChannel
from rasa.utils.endpoints import EndpointConfig
from sanic import response
from sanic.response import HTTPResponse

from channels.rest import RestInput, retry_after


class CallbackInput(RestInput):
    """Rasa's callback channel with the door's rules and the never-silent guard."""

    @classmethod
    def name(cls) -> Text:
        return "callback"  # same webhook path, /webhooks/callback/webhook

    @classmethod
    def _from_credentials(cls, credentials: Dict[Text, Any]) -> InputChannel:
        return cls(EndpointConfig.from_dict(credentials))

    def __init__(self, endpoint: EndpointConfig) -> None:
        self.callback_endpoint = endpoint

    def get_output_channel(self) -> CollectingOutputChannel:
        return CallbackOutput(self.callback_endpoint)

    def output_channel(self) -> CollectingOutputChannel:
        return CallbackOutput(self.callback_endpoint)

    def answer(self, output: CollectingOutputChannel) -> HTTPResponse:
        return response.text("success")

    def slow_down(self, sender: Text, text: Text, wait: float) -> HTTPResponse:
        # Nothing is posted to the callback URL: the integrator's client sees the 429 and retries.
        return response.json({"error": text}, status=429, headers=retry_after(wait))
