"""Stored text made safe to show, store again and export.

Rasa stores whatever a channel passed on: a visitor's message (or a sender id) may hold NUL and other
control characters, or a lone surrogate (JSON ``"\\ud800"``). Such text breaks the CSV writer ("need to escape"),
PostgreSQL (which refuses NUL in text), and the UTF-8 encoding of a page or an export. Every text the console
reads from Rasa's events goes through :func:`clean` before it is summarised, shown or exported.
"""

from __future__ import annotations

import re
from typing import Any, Optional

# C0 controls except tab and newline, DEL and C1 controls: removed. Lone surrogates: replaced.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean(value: Any) -> str:
    """``value`` as text without control characters (newline and tab kept; carriage returns removed, so
    that a line break is always one newline) and with U+FFFD for lone surrogates."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # the common case, checked in C
        return text
    return SURROGATE.sub("\ufffd", CONTROL.sub("", text))


def clean_optional(value: Any) -> Optional[str]:
    return None if value is None else clean(value)
