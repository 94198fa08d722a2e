"""``python -m console``: serves the staff console on CONSOLE_HOST:CONSOLE_PORT (default 127.0.0.1:8001)."""

from __future__ import annotations

import argparse
import logging
import sys

from sqlalchemy.exc import SQLAlchemyError

from console import config
from core.settings import ConfigError


def main(argv=None) -> int:
    settings = config.settings()
    parser = argparse.ArgumentParser(prog="python -m console", description="Serve the staff console.")
    parser.add_argument("--host", default=settings["HOST"])
    parser.add_argument("--port", type=int, default=settings["PORT"])
    args = parser.parse_args(argv)
    from console import summary
    from console.app import create_app
    try:
        app = create_app()
    except (ConfigError, SQLAlchemyError) as error:
        print(f"The console cannot use its database: {error}", file=sys.stderr)
        return 2
    try:
        summary.refresh(app.extensions["console_engine"], force=True)  # the first build, before any visit
    except Exception as error:  # noqa: BLE001 - stored data never stops the console; pages retry the build
        print(f"Warning: the conversation summaries could not be built yet ({type(error).__name__}); "
              "the pages will try again.", file=sys.stderr)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings["SECURE_COOKIES"]:
        print(f"Warning: serving on {args.host} without CONSOLE_SECURE_COOKIES=1; put it behind HTTPS.",
              file=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # request lines carry filter texts: not logged
    print(f"Staff console on http://{args.host}:{args.port}  (Ctrl-C stops it)", flush=True)
    from werkzeug.serving import run_simple
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False, use_debugger=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
