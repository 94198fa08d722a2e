"""Bounds on what one visitor can cost the assistant.

Every pattern and fuzzy match over a visitor's text sees at most :data:`MAX_TEXT_CHARS` characters:
the action server is one event loop, so the time one message takes is time every other visitor waits.
The channels already refuse longer messages (they ask the visitor to shorten them), so the cap cuts
nothing a real message holds; it is the second line of defence, and it keeps each pattern's cost
bounded even for callers that are not the channels (tests, a forged action call).
"""

from __future__ import annotations

from typing import Optional

# The channels' message limit (contracts: messages over 2,000 characters never reach the NLU).
MAX_TEXT_CHARS = 2000


def bounded(text: Optional[str], limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to ``limit`` characters ("" for None): what patterns are allowed to see."""
    return (text or "")[:limit] if isinstance(text, str) or text is None else str(text)[:limit]
