"""Starts Rasa's own command line with the project's patches applied.

Usage: ``python -m rasa_ext run --model … --endpoints … --credentials …`` (any ``rasa`` command).
``make run``, ``make cluster`` and the tests start the Rasa server this way, so that every Rasa process
of the project runs the same patched code (:func:`rasa_ext.patches.apply`).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.umask(0o077)  # the database, logs and anything else this process writes are private
    from rasa_ext import patches

    patches.apply()
    from rasa.__main__ import main as rasa_main

    sys.argv[0] = "rasa"
    rasa_main()


if __name__ == "__main__":
    main()
