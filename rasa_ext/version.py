"""The one Rasa version the project's changes inside Rasa are written for, and the check that refuses any other.

A patch of Rasa's internals (:mod:`rasa_ext.patches`) or a subclass that relies on them is reviewed against
one release: another release may have changed what it replaces, so it must not run there unread.
"""

from __future__ import annotations

RASA_VERSION = "3.6.21"


class PatchError(RuntimeError):
    """The installed Rasa is not the version these patches were written for."""


def require_rasa_version(what: str, installed: str | None = None) -> None:
    """Raises :class:`PatchError` unless the installed Rasa (or ``installed``) is :data:`RASA_VERSION`.

    ``what`` names the code that depends on the version, for the message."""
    if installed is None:
        import rasa

        installed = rasa.__version__
    if installed != RASA_VERSION:
        raise PatchError(f"{what} is written for Rasa {RASA_VERSION}, not {installed}: "
                         f"review it against the new version before changing RASA_VERSION")
