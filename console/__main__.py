"""``python -m console``: serves the staff console on CONSOLE_HOST:CONSOLE_PORT (default 127.0.0.1:8001), with
waitress (``make run`` and ``make cluster`` start it this way)."""

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
    logging.getLogger("waitress").setLevel(logging.WARNING)  # no request lines (they carry filter texts)
    print(f"Staff console on http://{args.host}:{args.port}  (Ctrl-C stops it)", flush=True)
    # A production WSGI server (Werkzeug's is for development, and names its version in every answer);
    # ``ident`` is waitress's Server header: no name, no version.
    from waitress import serve
    serve(app, host=args.host, port=args.port, threads=8, ident="", _quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
