"""Where the project's files are, and the settings that come from the environment.

Every path is resolved from this module's location, never from the working directory, so the action
server, the command-line tools and the tests all read the same files wherever they are started.

Environment variables:
    CLINIC_KNOWLEDGE_DIR: the knowledge folder (default: ``knowledge/`` in the project).
    CLINIC_ENDPOINTS: the Rasa endpoints file whose ``tracker_store`` names the database that also holds
        consultation requests (default: ``RASA_ENDPOINTS``, the Rasa server's, else ``endpoints.yml`` in the
        project).
    CLINIC_DB_URL: a SQLAlchemy URL that overrides the database taken from the endpoints file.
"""

from __future__ import annotations

import os
from pathlib import Path

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
