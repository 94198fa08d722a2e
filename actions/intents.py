"""The intents the code names, which intents are answered how, and the keyword safety net.

Every intent of the domain is answered one of two ways (:func:`actions.knowledge_loader.load_knowledge`
refuses a knowledge folder that leaves one out, and ``tests/test_consistency.py`` checks the rules):

* an article topic's intent (``intent`` in ``knowledge/topics.yml``) or a conversation intent
  (``intents`` in ``knowledge/replies.yml``): ``action_answer`` answers it (``Knowledge.answered_intents``);
* one of the :data:`SPECIAL_INTENTS`, which have rules and actions of their own.

During a consultation request a rule answers every topic and reply intent and the form goes on
(:func:`answered_in_form`), except the intents the form reads itself (:data:`READ_BY_THE_FORM`).
No other code lists intents, so a new topic needs no code; only the two answer rules of
``data/rules.yml`` name it, as Rasa requires.

:func:`classify` is the keyword safety net: the intent a safety pattern of ``knowledge/safety.yml``
gives a message. The NLU pipeline runs it on every message (``components/safety_net.py``) and the
answers use it (``actions/answers.py``); this module needs neither rasa_sdk nor Rasa.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, FrozenSet, Optional

from actions.limits import bounded

if TYPE_CHECKING:
    from actions.knowledge import Knowledge

EMERGENCY_INTENT = "emergency"
CRISIS_INTENT = "crisis"
MEDICAL_ADVICE_INTENT = "medical_advice"
SAFETY_INTENTS = (EMERGENCY_INTENT, CRISIS_INTENT)
OTHER_LANGUAGE_INTENT = "other_language"
CONSULTATION_INTENT = "request_consultation"
INFORM_INTENT = "inform"
STOP_INTENT = "stop"
TREATMENT_INTENT = "ask_treatment"
# Rasa's intent for a message the classifier was unsure of (FallbackClassifier).
FALLBACK_INTENT = "nlu_fallback"
# "This is useless", "you didn't understand me": answered with an apology, or the phone if it comes again.
FRUSTRATION_INTENT = "frustration"

# Intents with a rule and an action of their own (data/rules.yml), answered by no knowledge text.
SPECIAL_INTENTS = (*SAFETY_INTENTS, CONSULTATION_INTENT, INFORM_INTENT)
# Conversation intents the consultation form reads as an answer (a bad name, yes or no at the summary,
# cancel) instead of stepping aside for a rule.
READ_BY_THE_FORM = ("greet", "goodbye", "thank", "affirm", "deny", STOP_INTENT, "out_of_scope",
                    OTHER_LANGUAGE_INTENT)


def answered_in_form(knowledge: "Knowledge") -> FrozenSet[str]:
    """The intents a rule answers in the middle of a consultation request (data/rules.yml, "Answer a
    question during a consultation request"): every topic and reply intent the form does not read."""
    return knowledge.answered_intents - frozenset(READ_BY_THE_FORM)


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
