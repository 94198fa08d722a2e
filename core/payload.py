"""The payload window: the events of a conversation an action is sent, and so the only ones it may read.

Rasa sends the action server the events from the visitor's :data:`PAYLOAD_USER_MESSAGES`-th latest message
(the third-latest) to the end, or from the latest activation of each loop (the consultation form's start)
if that is earlier; a conversation with fewer messages is sent whole. The Rasa server cuts the payload
there (``rasa_ext.speed.window_action_payload``: sending a long conversation whole made every action call
cost more as the conversation grew), and the actions read the conversation only through
``actions.base.ClinicAction.payload_events``, which gives the same window. So an action that needs to
look further back fails in tests (``tests/test_action_payload.py``), not in long conversations.

Rasa's events (``type_name``, ``name``) and rasa-sdk's (dicts with ``event`` and ``name``) are both read.
"""

from __future__ import annotations

from typing import Any, Sequence

PAYLOAD_USER_MESSAGES = 3


def payload_window_start(events: Sequence[Any]) -> int:
    """The index of the first event in the window: the visitor's ``PAYLOAD_USER_MESSAGES``-th latest
    message, or the latest activation of a loop if that is earlier, or 0 (every event)."""
    users = 0
    start = len(events)
    seen_loops = set()
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        plain = isinstance(event, dict)
        kind = event.get("event") if plain else event.type_name
        if kind == "user" and users < PAYLOAD_USER_MESSAGES:
            users += 1
            start = index
        elif kind == "active_loop":
            loop = event.get("name") if plain else event.name
            if loop and loop not in seen_loops:
                seen_loops.add(loop)
                start = index
    return 0 if users < PAYLOAD_USER_MESSAGES else start
