"""The intents the code names, and which intents are answered how: constants only, so every module can
import them.

Every intent of the domain is answered one of two ways (:func:`core.knowledge_loader.load_knowledge`
refuses a knowledge folder that leaves one out, and ``tests/test_consistency.py`` checks the rules):

* an article topic's intent (``intent`` in ``knowledge/topics.yml``) or a conversation intent
  (``intents`` in ``knowledge/replies.yml``): ``action_answer`` answers it (``Knowledge.answered_intents``);
* one of the :data:`SPECIAL_INTENTS`, which have rules and actions of their own.

During a consultation request a rule answers every topic and reply intent and the form goes on
(:func:`core.knowledge.answered_in_form`), except the intents the form reads itself (:data:`READ_BY_THE_FORM`).
No other code lists intents, so a new topic needs no code; only the two answer rules of
``data/rules.yml`` name it, as Rasa requires.

The keyword safety net, :func:`core.knowledge.classify`, gives a message the intent of the safety
pattern of ``knowledge/safety.yml`` it matches.
"""

from __future__ import annotations

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

