"""What the console's URLs carry: conversation keys, the page to go to after signing in, page numbers and
query strings."""

from __future__ import annotations

import base64
import re
from typing import Any, Optional
from urllib.parse import urlencode, urlsplit

from flask import request

MAX_ID = 2**31 - 1  # the largest id an INTEGER column holds on PostgreSQL
KEY = re.compile(r"[A-Za-z0-9_-]+")
# "/" then URL characters; not "//" nor "/\" (another host for browsers)
NEXT = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*")


def conversation_key(sender_id: str) -> str:
    """The key of a conversation in console URLs: its id in URL-safe base64, so that no id (``../export.json``,
    ``..``, ``a/b?c#d``, control characters) can make a link resolve to another page."""
    return base64.urlsafe_b64encode(sender_id.encode("utf-8", "surrogatepass")).decode("ascii").rstrip("=")


def conversation_id(key: str) -> Optional[str]:
    """The conversation id of a URL key, or None when it is not one."""
    if not key or len(key) > 2000 or not KEY.fullmatch(key):
        return None
    try:
        return base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode("utf-8", "surrogatepass")
    except (ValueError, UnicodeDecodeError):
        return None


def safe_next(target: Optional[str]) -> str:
    """A path of this console to go to after signing in: a relative path of printable ASCII URL characters
    only (no space, control character or backslash, which browsers and ``urlsplit`` drop or turn into "/"),
    never ``//host`` nor the sign-in page; anything else goes to the conversations."""
    default = "/conversations"
    if not target or len(target) > 2000 or not NEXT.fullmatch(target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith("/login"):
        return default
    return target


def page_number() -> int:
    """The request's ``page`` argument (1 when missing or not a number)."""
    try:
        return max(1, min(int(request.args.get("page", "1")), 1_000_000))
    except ValueError:
        return 1


def query_with(**changes: Any) -> str:
    """The current query string with ``changes`` (for pagination links)."""
    args = {key: value for key, value in request.args.items()}
    args.update({key: str(value) for key, value in changes.items()})
    return "?" + urlencode({key: value for key, value in args.items() if value not in ("", None)})
