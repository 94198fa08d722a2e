"""The project's changes inside Rasa 3.6.21 that no extension point reaches, listed in one place.

Rasa 3.6 is the last open-source release, so its defects are fixed in the project, at Rasa's extension points
first: the dialogue policy (``rasa_ext.rule_policy.WindowedRulePolicy``), the NLU components
(``components/``), the tracker and lock stores (``rasa_ext.tracker_store``, ``rasa_ext.lock_store``) and the
channels (``channels/``) are named in config.yml, endpoints.yml and credentials.yml. What remains is below:
changes of Rasa's internals (the action call, the message processor, the tracker, the events), each a
function in the module of its concern, each listed in :data:`PATCHES` with its reason.

:func:`apply` installs them all, once, at the start of every Rasa process of the project (``python -m
rasa_ext``: ``make run``, ``make cluster``, the story tests, the test servers), and refuses to install anything
on another Rasa version: the internals they replace may differ there. Each patch keeps the original as
``__wrapped__``; ``tests/test_patches.py``, ``tests/test_action_payload.py`` and ``tests/test_never_silent.py``
prove that each returns exactly what the original did, or (never silent) that it changes only failed turns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Tuple

from rasa_ext import never_silent, speed, tracker_store
from rasa_ext.version import require_rasa_version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Patch:
    """One change of a Rasa internal: the function that installs it, its concern, and why it is needed."""

    install: Callable[[], None]
    concern: str
    reason: str

    @property
    def name(self) -> str:
        return f"{self.install.__module__}.{self.install.__name__}"


NEVER_SILENT = "never silent"
DATABASES = "databases that come and go"
SPEED = "speed"

# In the order they are installed: a patch wraps the attribute as it is when it runs, so a later one may
# wrap an earlier one (the local actions run inside the timeout's wrapper).
PATCHES: Tuple[Patch, ...] = (
    Patch(never_silent.install_action_timeout, NEVER_SILENT,
          "RemoteAction.run waits up to 5 minutes (aiohttp's default) for a hung action server, holding the "
          "visitor's turn; no setting bounds it"),
    Patch(never_silent.install_local_actions, NEVER_SILENT,
          "emergencies, crises and the session start must not depend on the action server; Rasa runs every "
          "custom action remotely"),
    Patch(never_silent.install_never_silent_turns, NEVER_SILENT,
          "a failed action gives the visitor silence, and a failed session start leaves the conversation "
          "behind Rasa's circuit breaker until the session expires"),
    Patch(tracker_store.let_unavailable_through, DATABASES,
          "the Agent wraps every tracker store in FailSafeTrackerStore, which turns a database outage into a "
          "fresh conversation or a lost write instead of an error the channels can answer"),
    Patch(speed.cache_event_types, SPEED,
          "Event.resolve_by_type walks every Event subclass for every event deserialised"),
    Patch(speed.prebuild_action_response_validator, SPEED,
          "every action response is validated after checking the schema itself against the meta-schema"),
    Patch(speed.undo_without_copying, SPEED,
          "each reverted turn copies every event applied so far"),
    Patch(speed.window_action_payload, SPEED,
          "every action call sends the whole session, about 290 KB at turn 100"),
    Patch(speed.memoise_applied_events, SPEED,
          "applied_events runs from the first event several times per message"),
    Patch(speed.copy_without_replaying, SPEED,
          "DialogueStateTracker.copy replays every event, twice per message for each action"),
)

_applied = False


def apply() -> None:
    """Installs every patch once (a second call does nothing); refuses any Rasa but the one they are for.

    Raises:
        PatchError: the installed Rasa is not :data:`rasa_ext.version.RASA_VERSION`.
    """
    global _applied
    if _applied:
        return
    require_rasa_version("rasa_ext.patches")
    for patch in PATCHES:
        patch.install()
    _applied = True
    logger.debug("Applied %d Rasa patches", len(PATCHES))
