"""Starts Rasa's own command line with the project's patches applied.

Usage: ``python -m rasa_ext run --model … --endpoints … --credentials …`` (any ``rasa`` command).
``make run``, ``make cluster`` and the tests start the Rasa server this way, so that every Rasa process
of the project runs the same patched code (:func:`rasa_ext.patches.apply`).

Before Rasa starts, it also installs the log privacy filter (:mod:`core.privacy`: no visitor text
or raw conversation id in any log line) and sets Sanic's limits through its ``SANIC_`` environment
settings, which Sanic reads when Rasa creates the app: request bodies and WebSocket frames over 32 KB
are refused (Sanic's defaults are 100 MB and 1 MB), and Sanic's own error pages are JSON. The fair-share
limits (:mod:`channels.fair_share`) are checked, and put in the endpoints' Redis lock store when there is
one (``CLINIC_RATE_LIMIT_REDIS``), so that the servers sharing their locks share their limits.

JAX is never imported: Rasa imports TensorFlow (its featurizers and training callbacks import it at module
level), and TensorFlow 2.12 imports JAX only for TFLite's converter, inside ``try/except ImportError``
(``tensorflow/lite/python/util.py``). Marking ``jax`` as absent (``sys.modules["jax"] = None``) makes that
import fail as if JAX were not installed, which saves about 65 MB of the Rasa server's memory and part of
its start-up; nothing the server runs uses JAX (tests/test_memory.py checks the running server).
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional


def lock_store_redis(argv: List[str]) -> Optional[str]:
    """The Redis URL of the endpoints' Redis lock store (``--endpoints FILE``), for the fair-share buckets:
    servers that share their locks share their limits too. None without one."""
    import yaml

    path = next((argv[index + 1] for index, arg in enumerate(argv[:-1]) if arg == "--endpoints"), None)
    if path is None or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        lock_store = (yaml.safe_load(os.path.expandvars(handle.read())) or {}).get("lock_store") or {}
    if "redis" not in str(lock_store.get("type", "")).lower():
        return None
    password = lock_store.get("password")
    auth = f":{password}@" if password else ""
    return f"redis://{auth}{lock_store.get('url') or 'localhost'}:{lock_store.get('port') or 6379}/" \
           f"{lock_store.get('db') or 0}"


def root_route_without_version() -> None:
    """Rasa's ``GET /`` (the health check) answers "Hello from Rasa: 3.6.21": a version tells an attacker
    which published defects to try. It answers ``ok``; ``rasa.server.add_root_route`` is the function
    both Rasa apps (with and without the HTTP API) call to add it."""
    from rasa import server
    from sanic import response

    def add_root_route(app) -> None:
        @app.get("/")
        async def hello(_request):
            return response.text("ok")

    server.add_root_route = add_root_route


def main() -> None:
    sys.modules.setdefault("jax", None)  # type: ignore[arg-type]  (see above)
    os.umask(0o077)  # the database, logs and anything else this process writes are private
    from channels import door, fair_share
    from core import privacy

    privacy.install()
    try:
        fair_share.rates_from_env()  # a wrong limit stops the server now, not at the first message
    except ValueError as error:
        sys.exit(f"rasa_ext: {error}")
    if not os.environ.get(fair_share.REDIS_ENV):
        url = lock_store_redis(sys.argv)
        if url:
            os.environ[fair_share.REDIS_ENV] = url
    os.environ["SANIC_REQUEST_MAX_SIZE"] = str(door.MAX_BODY_BYTES)
    os.environ["SANIC_WEBSOCKET_MAX_SIZE"] = str(door.MAX_BODY_BYTES)
    os.environ.setdefault("SANIC_FALLBACK_ERROR_FORMAT", "json")
    from rasa_ext import patches

    patches.apply()
    root_route_without_version()
    from rasa.__main__ import main as rasa_main

    sys.argv[0] = "rasa"
    rasa_main()


if __name__ == "__main__":
    main()
