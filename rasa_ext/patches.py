"""The project's fixes inside Rasa Open Source 3.6.21, applied at start-up by ``python -m rasa_ext``.

Rasa 3.6 is the last open-source release, so its defects are fixed here rather than upstream. Each fix
is one function below, documented with the defect it fixes; :func:`apply` installs them all, once, and
refuses to install anything on another Rasa version (the patched internals may differ there). Tests in
``tests/test_patches.py`` prove that each patched function returns exactly what the original did.
"""

from __future__ import annotations

import logging
from typing import Callable, List

logger = logging.getLogger(__name__)

RASA_VERSION = "3.6.21"

_applied = False


class PatchError(RuntimeError):
    """The installed Rasa is not the version these patches were written for."""


def _check_version() -> None:
    import rasa

    if rasa.__version__ != RASA_VERSION:
        raise PatchError(f"rasa_ext.patches is written for Rasa {RASA_VERSION}, not {rasa.__version__}: "
                         f"review each patch against the new version before changing RASA_VERSION")


# Each patch is a function that installs one fix; they run in this order.
PATCHES: List[Callable[[], None]] = []


def apply() -> None:
    """Installs every patch once (a second call does nothing)."""
    global _applied
    if _applied:
        return
    _check_version()
    for patch in PATCHES:
        patch()
    _applied = True
    logger.debug("Applied %d Rasa patches", len(PATCHES))
