"""Where the project's files are, and the settings that come from the environment.

Every path is resolved from this module's location, never from the working directory, so the action
server, the command-line tools and the tests all read the same files wherever they are started.

Environment variables:
    CLINIC_KNOWLEDGE_DIR: the knowledge folder (default: ``knowledge/`` in the project).
    CLINIC_ENDPOINTS: the Rasa endpoints file whose ``tracker_store`` names the database that also holds
        consultation requests (default: ``RASA_ENDPOINTS``, the Rasa server's, else ``endpoints.yml`` in the
        project).
    CLINIC_DB_URL: a SQLAlchemy URL that overrides the database taken from the endpoints file.

The database (:func:`database_url`) is the one the endpoints file's ``tracker_store`` names (SQLite by
default, PostgreSQL when configured), or ``CLINIC_DB_URL`` when set: conversations, consultation requests and
the staff console's tables are all in it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml
from sqlalchemy.engine import URL

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _path_from_env(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    if not value:
        return default
    path = Path(value)
    return path if path.is_absolute() else PROJECT_ROOT / path


def knowledge_dir() -> Path:
    """The folder holding the article and the clinic's facts."""
    return _path_from_env("CLINIC_KNOWLEDGE_DIR", PROJECT_ROOT / "knowledge")


def endpoints_file() -> Path:
    """The Rasa endpoints file the assistant runs with: by default the Rasa server's, so that requests and
    conversations are in one database."""
    return _path_from_env("CLINIC_ENDPOINTS", _path_from_env("RASA_ENDPOINTS", PROJECT_ROOT / "endpoints.yml"))


class ConfigError(Exception):
    """The database settings cannot be used."""


_ENV = re.compile(r"\$\{([^}:]+)\}")


def _substitute_env(value: Any, path: Path) -> Any:
    if isinstance(value, str):
        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            return os.environ[name]
        return _ENV.sub(replace, value)
    if isinstance(value, dict):
        return {key: _substitute_env(item, path) for key, item in value.items()}
    return value


def url_from_tracker_store(config: Mapping[str, Any], base: Path) -> URL:
    """The SQLAlchemy URL of a Rasa ``SQL`` tracker-store configuration.

    Args:
        config: the ``tracker_store`` section of an endpoints file.
        base: the folder a relative SQLite path is relative to (where Rasa runs).
    """
    kind = str(config.get("type", ""))
    if kind.upper() != "SQL" and not kind.startswith("rasa_ext.tracker_store."):  # Rasa's or the project's
        raise ConfigError("the tracker store must be of type SQL to hold consultation requests")
    dialect = str(config.get("dialect") or "sqlite")
    database = str(config.get("db") or "rasa.db")
    if dialect == "sqlite":
        path = Path(database)
        return URL.create("sqlite", database=str(path if path.is_absolute() else base / path))
    port = config.get("port")
    return URL.create(
        dialect,
        username=config.get("username"),
        password=config.get("password"),
        host=config.get("url"),
        port=int(port) if port else None,
        database=database,
        query=config.get("query") or {},
    )


def database_url() -> URL | str:
    """The assistant's database: ``CLINIC_DB_URL``, else the endpoints' tracker store."""
    override = os.environ.get("CLINIC_DB_URL")
    if override:
        return override
    path = endpoints_file()
    try:
        endpoints = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot be read ({error})") from None
    tracker_store = endpoints.get("tracker_store")
    if not isinstance(tracker_store, dict):
        raise ConfigError(f"{path}: no tracker_store section")
    return url_from_tracker_store(_substitute_env(tracker_store, path), PROJECT_ROOT)
