"""Rasa's socket.io channel with exact allowed origins, server-signed sessions and the door's rules.

Rasa 3.6 creates its socket.io server with ``cors_allowed_origins=[]``, which in python-engineio means
"no origin check at all": any web site could open a socket to the assistant from its visitors'
browsers (browsers do not apply CORS to WebSockets). This channel is Rasa's own
:class:`~rasa.core.channels.socketio.SocketIOInput` with the origin check switched back on: a
connection whose ``Origin`` header is not exactly one of ``cors_allowed_origins`` is refused (HTTP
400) for both transports, polling and WebSocket. Clients that send no ``Origin`` (servers, the
python-socketio client) are not affected.

credentials.yml::

    channels.socketio.SocketIOInput:
      cors_allowed_origins: ["https://www.example.com"]

Origins are exact ``scheme://host[:port]`` strings: no wildcard, no pattern, no path.

Sessions, issued by the server. Rasa's channel takes the client's ``session_id`` as the conversation id, so a
client could pick any conversation (another visitor's, another channel's). Here the server issues
them: ``session_request {session_id: <stored id or null>}`` is answered ``session_confirm <id>``, the
same id if this machine's key signed it (:class:`channels.door.SessionSigner`), else a new one; the
socket joins that session's room (the conversation ``socketio-<id>``). A ``user_uttered {message,
session_id}`` is taken only for the session this socket joined; anything else (no session, another
session, a session id or message that is not a string) gets the ``door.refused`` reply on this socket
alone. Sessions always persist (``session_persistence`` is implied), but end: an id unused for the
conversation's session expiry (domain.yml ``session_expiration_time``) or revoked by the widget's "New
chat" (``session_end {session_id}``) is replaced by a new one, and a socket that presents a session id
another socket listens to takes the session over (the other is disconnected: one socket per session).
What ended is remembered by each Rasa process (:class:`channels.door.SessionClock`). This also fixes Rasa 3.6's
``session_request``, which calls the async ``enter_room`` without ``await`` (python-socketio >= 5.10),
so that the client never joined its room and never received a reply.

The door's rules (:mod:`channels.door`) apply: control characters removed, a message over 2,000
characters answered "please shorten" without reaching the NLU, client metadata replaced by the hashed
client address, packets over 32 KB refused (``max_http_buffer_size``), a message over the client's or the
conversation's fair share (:mod:`channels.fair_share`) answered ``door.slow_down`` on this socket and not
handled. If handling a message raises or produces no message, the session gets ``knowledge.technical_problem``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.core.channels.socketio import SocketIOInput as RasaSocketIOInput
from rasa.core.channels.socketio import SocketIOOutput
from rasa.shared.exceptions import RasaException
from sanic import Blueprint

from channels import door, fair_share, origins
from core import privacy
from core.knowledge_loader import get_knowledge

logger = logging.getLogger(__name__)


def parse_origins(value: Any) -> List[str]:
    try:
        return origins.parse_origins(value)
    except ValueError as error:
        raise RasaException(f"socket.io channel, cors_allowed_origins: {error}") from error


class CountingOutput(SocketIOOutput):
    """Rasa's socket.io output, counting what it sends (a turn that sent nothing is answered)."""

    sent = 0

    async def _send_message(self, socket_id: Text, response: Any) -> None:
        self.sent += 1
        await super()._send_message(socket_id, response)

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        self.sent += 1
        await super().send_custom_json(recipient_id, json_message, **kwargs)


class SocketIOInput(RasaSocketIOInput):
    """Rasa's socket.io channel: exact origins, signed sessions, the door's rules, never silent."""

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
        knowledge = get_knowledge()  # loaded at start-up: a broken knowledge folder stops the server
        key = door.load_secret()
        signer = door.SessionSigner(key)
        sessions = door.SessionClock(door.session_minutes())
        blueprint = super().blueprint(on_new_message)
        sio = self.sio
        namespace = self.namespace or "/"
        # python-engineio reads these on every request; a non-empty list turns the origin check on.
        sio.eio.cors_allowed_origins = parse_origins(self.allowed_origins)
        sio.eio.max_http_buffer_size = door.MAX_BODY_BYTES
        rasa_connect = sio.handlers[namespace]["connect"]

        async def say(room: Text, text: Text) -> None:
            await sio.emit(self.bot_message_evt, {"text": text}, room=room, namespace=namespace)

        async def connect(sid: Text, environ: Dict, auth: Optional[Dict] = None) -> Optional[bool]:
            if await rasa_connect(sid, environ, auth) is False:  # Rasa's JWT check, when configured
                return False
            request = environ.get("sanic.request")
            address = door.client_address(getattr(request, "ip", None), environ.get("HTTP_X_FORWARDED_FOR"),
                                          door.trusted_proxies())
            await sio.save_session(sid, {"client": door.client_metadata(key, address)}, namespace=namespace)
            return True

        async def session_request(sid: Text, data: Any = None, *_: Any) -> None:
            session_id = data.get("session_id") if isinstance(data, dict) else None
            conversation = signer.verify(session_id)
            if conversation is None or sessions.ended(conversation):
                session_id = signer.issue()
                conversation = signer.verify(session_id)
            sessions.seen(conversation)
            # One socket per session: another socket listening to it is let go (never both listening).
            for other, _ in list(sio.manager.get_participants(namespace, conversation)):
                if other != sid:
                    await sio.leave_room(other, conversation, namespace=namespace)
                    await sio.disconnect(other, namespace=namespace)
            session = await self._session(sid)
            previous = session.get("conversation")
            if previous and previous != conversation:
                await sio.leave_room(sid, previous, namespace=namespace)
            session["conversation"] = conversation
            await sio.save_session(sid, session, namespace=namespace)
            await sio.enter_room(sid, conversation, namespace=namespace)
            await sio.emit("session_confirm", session_id, room=sid, namespace=namespace)

        async def session_end(sid: Text, data: Any = None, *_: Any) -> None:
            """The widget's "New chat": this socket's session id is revoked."""
            session = await self._session(sid)
            conversation = session.get("conversation")
            if conversation and isinstance(data, dict) and signer.verify(data.get("session_id")) == conversation:
                sessions.end(conversation)
                await sio.leave_room(sid, conversation, namespace=namespace)
                session["conversation"] = None
                await sio.save_session(sid, session, namespace=namespace)

        async def handle_message(sid: Text, data: Any = None, *_: Any) -> None:
            session = await self._session(sid)
            conversation = session.get("conversation")
            try:
                if not isinstance(data, dict):
                    raise door.Refused("the message must be an object {message, session_id}")
                if conversation is None or signer.verify(data.get("session_id")) != conversation:
                    raise door.Refused("not this socket's session")
                text = door.clean_text(data.get("message"))
            except door.Refused as refused:
                logger.info("socket.io: message refused (%s)", refused)
                await say(sid, knowledge.door["refused"])
                return
            privacy.remember(data.get("message"), text, ids=(data.get("session_id"), conversation))
            sessions.seen(conversation)
            if await fair_share.admit((session.get("client") or {}).get("client", sid), conversation):
                await say(sid, knowledge.door["slow_down"])  # this socket only, not the handled turn's room
                return
            if door.too_long(text):
                await say(conversation, knowledge.door["too_long"])
                return
            output = CountingOutput(sio, self.bot_message_evt)
            try:
                await on_new_message(UserMessage(text, output, conversation, input_channel=self.name(),
                                                 metadata=session.get("client")))
            except asyncio.CancelledError:
                logger.error("socket.io: handling a message of conversation %s was cancelled", conversation)
            except Exception:
                logger.exception("socket.io: handling a message of conversation %s failed", conversation)
            if not output.sent:
                logger.warning("socket.io: no reply for conversation %s; answering technical_problem",
                               conversation)
                await say(conversation, knowledge.technical_problem)

        # Replace the handlers Rasa registered.
        sio.on("connect", connect, namespace=namespace)
        sio.on("session_request", session_request, namespace=namespace)
        sio.on("session_end", session_end, namespace=namespace)
        sio.on(self.user_message_evt, handle_message, namespace=namespace)
        return blueprint

    async def _session(self, sid: Text) -> Dict[Text, Any]:
        try:
            return dict(await self.sio.get_session(sid, namespace=self.namespace or "/"))
        except KeyError:  # the socket has gone
            return {}
