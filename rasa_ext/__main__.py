"""Starts Rasa's own command line with the project's patches applied.

Usage: ``python -m rasa_ext run --model … --endpoints … --credentials …`` (any ``rasa`` command).
``make run``, ``make cluster`` and the tests start the Rasa server this way, so that every Rasa process
of the project runs the same patched code (:func:`rasa_ext.patches.apply`).

Before Rasa starts, it also installs the log privacy filter (:mod:`core.privacy`: no visitor text
or raw conversation id in any log line) and sets Sanic's limits through its ``SANIC_`` environment
settings, which Sanic reads when Rasa creates the app: request bodies and WebSocket frames over 16 KB
are refused (Sanic's defaults are 100 MB and 1 MB), and Sanic's own error pages are JSON.

JAX is never imported: Rasa imports TensorFlow (its featurizers and training callbacks import it at module
level), and TensorFlow 2.12 imports JAX only for TFLite's converter, inside ``try/except ImportError``
(``tensorflow/lite/python/util.py``). Marking ``jax`` as absent (``sys.modules["jax"] = None``) makes that
import fail as if JAX were not installed, which saves about 65 MB of the Rasa server's memory and part of
its start-up; nothing the server runs uses JAX (tests/test_memory.py checks the running server).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    sys.modules.setdefault("jax", None)  # type: ignore[arg-type]  (see above)
    os.umask(0o077)  # the database, logs and anything else this process writes are private
    from channels import door
    from core import privacy

    privacy.install()
    os.environ["SANIC_REQUEST_MAX_SIZE"] = str(door.MAX_BODY_BYTES)
    os.environ["SANIC_WEBSOCKET_MAX_SIZE"] = str(door.MAX_BODY_BYTES)
    os.environ.setdefault("SANIC_FALLBACK_ERROR_FORMAT", "json")
    from rasa_ext import patches

    patches.apply()
    from rasa.__main__ import main as rasa_main

    sys.argv[0] = "rasa"
    rasa_main()


if __name__ == "__main__":
    main()
