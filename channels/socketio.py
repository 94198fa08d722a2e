"""Rasa's socket.io channel with an exact list of the web pages allowed to connect.

Rasa 3.6 creates its socket.io server with ``cors_allowed_origins=[]``, which in python-engineio means
"no origin check at all": any web site could open a socket to the assistant from its visitors'
browsers (browsers do not apply CORS to WebSockets). This channel is Rasa's own
:class:`~rasa.core.channels.socketio.SocketIOInput` with the origin check switched back on: a
connection whose ``Origin`` header is not exactly one of ``cors_allowed_origins`` is refused (HTTP
400) for both transports, polling and WebSocket. Clients that send no ``Origin`` (servers, the
python-socketio client) are not affected.

credentials.yml::

    channels.socketio.SocketIOInput:
      session_persistence: true
      cors_allowed_origins: ["https://www.example.com"]

Origins are exact ``scheme://host[:port]`` strings: no wildcard, no pattern, no path.

It also fixes ``session_request`` with ``session_persistence``: Rasa 3.6 calls
``AsyncServer.enter_room`` without ``await``, which since python-socketio 5.10 is a coroutine, so the
client never joined its session's room and never received the bot's replies (Rasa only logs
"coroutine 'AsyncServer.enter_room' was never awaited").
"""

from __future__ import annotations

import inspect
import logging
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.core.channels.socketio import SocketIOInput as RasaSocketIOInput
from rasa.shared.exceptions import RasaException
from sanic import Blueprint

from channels import origins

logger = logging.getLogger(__name__)


def parse_origins(value: Any) -> List[str]:
    try:
        return origins.parse_origins(value)
    except ValueError as error:
        raise RasaException(f"socket.io channel, cors_allowed_origins: {error}") from error


class SocketIOInput(RasaSocketIOInput):
    """Rasa's socket.io channel, accepting browser connections only from the configured origins."""

    @classmethod
    def name(cls) -> Text:
        return "socketio"  # same webhook path and output channel name as Rasa's

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        credentials = dict(credentials or {})
        origins = parse_origins(credentials.pop("cors_allowed_origins", None))
        channel = super().from_credentials(credentials)
        channel.allowed_origins = origins
        return channel

    allowed_origins: List[str] = []

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        blueprint = super().blueprint(on_new_message)
        sio = self.sio
        # python-engineio reads this on every request; a non-empty list turns the check on.
        sio.eio.cors_allowed_origins = parse_origins(self.allowed_origins)

        async def session_request(sid: Text, data: Optional[Dict]) -> None:
            # Rasa's handler, with the room entered for real (replaces the one Rasa registered).
            data = data if isinstance(data, dict) else {}
            if not data.get("session_id"):
                data["session_id"] = uuid.uuid4().hex
            if self.session_persistence:
                entered = sio.enter_room(sid, data["session_id"], namespace=self.namespace)
                if inspect.isawaitable(entered):
                    await entered
            await sio.emit("session_confirm", data["session_id"], room=sid, namespace=self.namespace)
            logger.debug(f"User {sid} joined their session's room.")

        sio.on("session_request", session_request, namespace=self.namespace)
        return blueprint
