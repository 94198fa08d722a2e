"""Bounds on what one visitor can cost the assistant.

Every pattern and fuzzy match over a visitor's text sees at most :data:`MAX_TEXT_CHARS` characters:
the action server is one event loop, so the time one message takes is time every other visitor waits.
The channels already refuse longer messages (they ask the visitor to shorten them), so the cap cuts
nothing a real message holds; it is the second line of defence, and it keeps each pattern's cost
bounded even for callers that are not the channels (tests, a forged action call).

It also reads the abuse limits on consultation requests (:func:`consultation_limits`).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from core.store import Limits

# The channels' message limit: the door refuses longer messages, so none reaches the NLU.
MAX_TEXT_CHARS = 2000


def bounded(text: Optional[str], limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to ``limit`` characters ("" for None): what patterns are allowed to see."""
    return (text or "")[:limit] if isinstance(text, str) or text is None else str(text)[:limit]


# Consultation requests one conversation, and one client (the channel's pseudonym of its address, so
# that opening new conversations does not lift the limit), may store per window.
LIMIT_ENV = {
    "per_conversation": ("CLINIC_MAX_REQUESTS_PER_CONVERSATION", 2),
    "per_client": ("CLINIC_MAX_REQUESTS_PER_CLIENT", 5),
    "window_hours": ("CLINIC_REQUEST_LIMIT_HOURS", 24),
}


def consultation_limits() -> "Limits":
    """The abuse limits on consultation requests, from the environment (0 turns a count limit off).

    Raises:
        ValueError: a variable is not a whole number, is negative, or the window is 0.
    """
    from core.store import Limits  # here, not at the top: the store imports SQLAlchemy

    values = {}
    for key, (variable, default) in LIMIT_ENV.items():
        raw = os.environ.get(variable, "").strip()
        try:
            value = int(raw) if raw else default
        except ValueError:
            raise ValueError(f"{variable} must be a whole number, not {raw!r}") from None
        if value < 0 or (key == "window_hours" and value == 0):
            raise ValueError(f"{variable} must be {'1 or more' if key == 'window_hours' else '0 or more'}")
        values[key] = value
    return Limits(per_conversation=values["per_conversation"], per_client=values["per_client"],
                  window=dt.timedelta(hours=values["window_hours"]))
