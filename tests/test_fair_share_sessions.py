"""socket.io sessions that end: one socket per session (a second socket presenting a live session id
takes it over; the first is disconnected and hears nothing more), and "New chat" revokes the old id."""

from __future__ import annotations

import asyncio

import pytest

from tests.test_door import Socket

pytestmark = pytest.mark.e2e


def test_a_second_socket_with_a_live_session_id_takes_it_over_never_both_listening(shared_servers):
    async def check() -> None:
        async with Socket(shared_servers.url) as victim, Socket(shared_servers.url) as thief:
            session = await victim.session({"session_id": None})
            await victim.client.emit("user_uttered", {"message": "hello", "session_id": session})
            assert await victim.reply()
            while not await victim.silent(1.5):  # the rest of the first answer (greeting, disclaimer…)
                pass
            assert await thief.session({"session_id": session}) == session  # the id is still valid…
            await thief.client.emit("user_uttered", {"message": "what is fibromyalgia?", "session_id": session})
            assert await thief.reply()
            assert await victim.silent(3)  # …but only one socket listens: the first was let go
            await asyncio.sleep(0.5)
            assert not victim.client.connected

    asyncio.run(check())


def test_new_chat_revokes_the_old_session_id(shared_servers):
    async def check() -> None:
        async with Socket(shared_servers.url) as visitor:
            old = await visitor.session({"session_id": None})
            await visitor.client.emit("user_uttered", {"message": "hello", "session_id": old})
            assert await visitor.reply()
            await visitor.client.emit("session_end", {"session_id": old})  # the widget's "New chat"
            new = await visitor.session({"session_id": None})
            assert new != old
        async with Socket(shared_servers.url) as replay:
            assert await replay.session({"session_id": old}) != old  # revoked: a new one is issued

    asyncio.run(check())
