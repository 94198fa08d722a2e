"""The intents the code names, and the keyword safety net.

:func:`classify` is the keyword safety net: the intent a safety pattern of ``knowledge/safety.yml``
gives a message. The NLU pipeline runs it on every message (``components/safety_net.py``) and the answers use
it (``actions/answers.py``); this module needs neither rasa_sdk nor Rasa.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from actions.limits import bounded

if TYPE_CHECKING:
    from actions.knowledge import Knowledge

EMERGENCY_INTENT = "emergency"
CRISIS_INTENT = "crisis"
MEDICAL_ADVICE_INTENT = "medical_advice"
SAFETY_INTENTS = (EMERGENCY_INTENT, CRISIS_INTENT)
OTHER_LANGUAGE_INTENT = "other_language"


def classify(text: str, knowledge: "Knowledge") -> Optional[str]:
    """The intent a safety pattern gives ``text``: ``crisis``, ``emergency`` or ``medical_advice``,
    checked in that order; None if no pattern matches.

    The patterns see at most :data:`~actions.limits.MAX_TEXT_CHARS` characters, the channels' own
    message limit, so no message is cut and none can make them slow (tests/test_redos.py)."""
    text = bounded(text)
    for intent, patterns in ((CRISIS_INTENT, knowledge.crisis_patterns),
                             (EMERGENCY_INTENT, knowledge.emergency_patterns),
                             (MEDICAL_ADVICE_INTENT, knowledge.medical_advice_patterns)):
        if any(pattern.search(text) for pattern in patterns):
            return intent
    return None
