"""Starts the action server after checking the knowledge files, the database settings and its secret.

Usage: ``ACTION_SERVER_TOKEN=… python -m actions [--host HOST] [--port PORT]``. The server listens on
127.0.0.1:5055 unless told otherwise (``--host`` or ``ACTION_SERVER_HOST``).

Only the Rasa server may call it: every request but ``GET /health`` must carry the shared secret
``ACTION_SERVER_TOKEN`` in the ``X-Action-Token`` header (the endpoints files send it; without it, anyone
who can reach the port could run actions as any conversation and store requests), and ``/webhook`` takes
JSON only. rasa-sdk's own server has no authentication and its error handler sends
the request body (the whole conversation) back; :func:`build_app` builds rasa-sdk's app with
``create_app`` and adds what it lacks, rather than patching it.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import os
import sys
import traceback
from typing import Optional, Sequence

from sqlalchemy.exc import SQLAlchemyError

from core import privacy
from core.knowledge import KnowledgeError
from core.knowledge_loader import get_knowledge
from core.limits import consultation_limits
from core.settings import ConfigError, database_url
from core.store import RequestStore

logger = logging.getLogger("actions")

TOKEN_ENV = "ACTION_SERVER_TOKEN"
TOKEN_HEADER = "X-Action-Token"
MIN_TOKEN_CHARS = 16
# Paths anyone on the machine may call: the supervisor's health check.
OPEN_PATHS = frozenset({"/health"})


def read_token() -> str:
    """The shared secret from the environment, refused (:class:`ConfigError`) when missing or too short."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(f"{TOKEN_ENV} is not set (the secret the Rasa server sends as {TOKEN_HEADER}; "
                         "make run sets a random one)")
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"{TOKEN_ENV} must be at least {MIN_TOKEN_CHARS} characters "
                         "(use e.g. python -c 'import secrets; print(secrets.token_hex(32))')")
    return token


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def build_app(token: str):  # -> sanic.Sanic (imported late: rasa_sdk configures Sanic on import)
    """rasa-sdk's action server app with the project's actions, the token check, JSON only, and errors
    that never echo the request."""
    from rasa_sdk.endpoint import create_app
    from sanic import response
    from sanic.exceptions import SanicException
    from sanic.handlers import ErrorHandler

    app = create_app("actions", cors_origins="")
    expected = token.encode("utf-8")

    def authorized(request) -> bool:
        """``GET /health``, or the secret (compared in constant time)."""
        if request is None:
            return False
        if request.path in OPEN_PATHS and request.method in ("GET", "HEAD"):
            return True
        given = request.headers.get(TOKEN_HEADER, "").encode("utf-8", "replace")
        return hmac.compare_digest(given, expected)

    async def authenticate(request):
        """401 without the secret, 415 for a body that is not JSON."""
        if not authorized(request):
            return response.json({"error": "unauthorized"}, status=401)
        if request.method == "POST" and _media_type(request.headers.get("Content-Type", "")) != "application/json":
            return response.json({"error": "the body must be application/json"}, status=415)
        return None

    # First of all, before sanic-cors's own, which answers OPTIONS (200, empty) to anyone and puts itself
    # first when the server starts.
    app.request_middleware.appendleft(authenticate)

    @app.listener("before_server_start")
    async def authenticate_first(app, _loop) -> None:
        if app.request_middleware[0] is not authenticate:
            app.request_middleware.remove(authenticate)
            app.request_middleware.appendleft(authenticate)

    async def plain_error(request, exception: Exception):
        """Replaces rasa-sdk's handler, which returns ``request_body`` (the conversation) to the caller.

        Logs the route and the error's type and stack only: an error's message may quote visitor text.
        """
        path = getattr(request, "path", "?")
        if not authorized(request):  # e.g. a method no route has (routing fails before the middleware)
            return response.json({"error": "unauthorized"}, status=401)
        if isinstance(exception, SanicException):
            status = int(getattr(exception, "status_code", 500) or 500)
            if status >= 500:
                logger.error("Request to %s failed (%s)", path, type(exception).__name__)
            return response.json({"error": _status_text(status)}, status=status)
        stack = "".join(traceback.format_tb(exception.__traceback__)).rstrip()
        logger.error("Request to %s failed (%s)\n%s", path, type(exception).__name__, stack)
        return response.json({"error": "internal error"}, status=500)

    # sanic-cors wraps the error handler to answer OPTIONS itself (200, empty, whoever asks): Sanic's own
    # handler again, with this one only.
    app.error_handler = ErrorHandler()
    app.error_handler.add(Exception, plain_error)
    return app


def _status_text(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Checks the configuration, then serves the actions until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m actions", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("ACTION_SERVER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("ACTION_SERVER_PORT", "5055")))
    args = parser.parse_args(argv)
    privacy.install()  # no visitor text or raw conversation id in any log line (core/privacy.py)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        knowledge = get_knowledge()
        url = database_url()
        token = read_token()
        limits = consultation_limits()
    except (KnowledgeError, ConfigError, ValueError) as error:
        print(f"The action server cannot start: {error}", file=sys.stderr)
        return 2
    logger.info("Knowledge loaded: %d topics, %d treatments, clinic phone %s",
                len(knowledge.topics), len(knowledge.therapies), knowledge.clinic.phone)
    logger.info("Consultation requests: at most %s per conversation and %s per client in %d hours (0: no limit)",
                limits.per_conversation, limits.per_client, limits.window.total_seconds() // 3600)
    try:
        RequestStore(url).create_table()
    except SQLAlchemyError as error:
        # Answers still work; a consultation request will tell the visitor to call instead.
        logger.warning("The consultation requests table is not reachable yet: %s", error.__class__.__name__)

    from rasa_sdk import utils
    from rasa_sdk.plugin import plugin_manager

    app = build_app(token)
    plugin_manager().hook.attach_sanic_app_extensions(app=app)
    logger.info("Action server on http://%s:%d (requests need %s)", args.host, args.port, TOKEN_HEADER)
    app.run(args.host, args.port, workers=utils.number_of_sanic_workers(), access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
