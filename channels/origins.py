"""Exact web origins (``scheme://host[:port]``) for the socket.io channel. No Rasa import: the
credentials script (scripts/credentials.py) uses it too."""

from __future__ import annotations

import re
from typing import Any, List

ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def parse_origins(value: Any) -> List[str]:
    """The origins from a list or a comma-separated string; refuses none, wildcards and patterns."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    origins = [str(item).strip().rstrip("/") for item in items if str(item).strip()]
    if not origins:
        raise ValueError("at least one allowed origin is needed")
    bad = [origin for origin in origins if not ORIGIN.match(origin)]
    if bad:
        raise ValueError(f"origins must be exact scheme://host[:port] values (no wildcard, pattern or path), "
                         f"not {bad}")
    return origins
