"""Starts the action server after checking the knowledge files and the database settings.

Usage: ``python -m actions [--host HOST] [--port PORT]``. The server listens on 127.0.0.1:5055 unless
told otherwise (``--host`` or ``ACTION_SERVER_HOST``): it has no authentication of its own, so only
the Rasa server on the same machine should reach it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from sqlalchemy.exc import SQLAlchemyError

from actions.knowledge import KnowledgeError, get_knowledge
from actions.store import ConfigError, RequestStore, database_url

logger = logging.getLogger("actions")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Checks the configuration, then serves the actions until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m actions", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("ACTION_SERVER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("ACTION_SERVER_PORT", "5055")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        knowledge = get_knowledge()
        url = database_url()
    except (KnowledgeError, ConfigError) as error:
        print(f"The action server cannot start: {error}", file=sys.stderr)
        return 2
    logger.info("Knowledge loaded: %d topics, %d treatments, clinic phone %s",
                len(knowledge.topics), len(knowledge.therapies), knowledge.clinic.phone)
    try:
        RequestStore(url).create_table()
    except SQLAlchemyError as error:
        # Answers still work; a consultation request will tell the visitor to call instead.
        logger.warning("The consultation requests table is not reachable yet: %s", error.__class__.__name__)

    os.environ["SANIC_HOST"] = args.host
    from rasa_sdk import endpoint  # imported late: it configures logging and Sanic on import

    endpoint.run("actions", port=args.port, cors_origins="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
