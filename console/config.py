"""The console's settings, from the environment.

CONSOLE_HOST / CONSOLE_PORT: where ``python -m console`` listens (default 127.0.0.1:8001).
CONSOLE_SECRET_KEY: signs the session cookie. When unset, a random key is generated once and kept in
    ``var/console_secret_key`` (mode 0600, git-ignored; CONSOLE_SECRET_KEY_FILE names another file).
CONSOLE_SECURE_COOKIES: "1" to send cookies over HTTPS only (set it when the console is behind HTTPS).
CONSOLE_SESSION_IDLE_MINUTES (30) / CONSOLE_SESSION_MAX_HOURS (12): a session ends after this long idle, or
    this long after signing in.
CONSOLE_MAX_FAILED_LOGINS (5) / CONSOLE_LOCK_MINUTES (15): that many wrong passwords in a row lock the account
    for that long.
CONSOLE_IP_MAX_FAILED_LOGINS (20) / CONSOLE_IP_WINDOW_MINUTES (15): that many failed sign-ins (any account,
    known or not) from one client address within that window, and the address is refused (HTTP 429) until
    the window has passed; 0 turns the per-address throttle off.
CLINIC_DB_URL, or the endpoints file's tracker store: the database (as for the assistant).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Dict

from core.settings import PROJECT_ROOT


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {value!r}") from None


def secret_key_file() -> Path:
    value = os.environ.get("CONSOLE_SECRET_KEY_FILE")
    return Path(value) if value else PROJECT_ROOT / "var" / "console_secret_key"


def secret_key() -> str:
    """CONSOLE_SECRET_KEY, else the key kept in the key file, created (0600) on first use."""
    key = os.environ.get("CONSOLE_SECRET_KEY")
    if key:
        if len(key) < 32:
            raise SystemExit("CONSOLE_SECRET_KEY must be at least 32 characters long")
        return key
    path = secret_key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # created meanwhile by another process
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    if path.stat().st_mode & 0o077:
        raise SystemExit(f"{path} must be readable by its owner only: chmod 600 {path}")
    key = path.read_text().strip()
    if len(key) < 32:
        raise SystemExit(f"{path} holds a key shorter than 32 characters: delete it to generate a new one")
    return key


def settings() -> Dict[str, Any]:
    return {
        "HOST": os.environ.get("CONSOLE_HOST", "127.0.0.1"),
        "PORT": _int("CONSOLE_PORT", 8001),
        "SECURE_COOKIES": os.environ.get("CONSOLE_SECURE_COOKIES", "") in ("1", "true", "yes"),
        "IDLE_SECONDS": 60 * _int("CONSOLE_SESSION_IDLE_MINUTES", 30),
        "MAX_SESSION_SECONDS": 3600 * _int("CONSOLE_SESSION_MAX_HOURS", 12),
        "MAX_FAILED_LOGINS": _int("CONSOLE_MAX_FAILED_LOGINS", 5),
        "LOCK_SECONDS": 60 * _int("CONSOLE_LOCK_MINUTES", 15),
        "IP_MAX_FAILED_LOGINS": _int("CONSOLE_IP_MAX_FAILED_LOGINS", 20),
        "IP_WINDOW_SECONDS": 60 * _int("CONSOLE_IP_WINDOW_MINUTES", 15),
    }
