"""An NLU component that routes emergency, crisis and medical-advice messages whatever the classifier
predicted, and messages in another language.

It runs after the intent classifier and before the ``FallbackClassifier``. When a message matches a
pattern of ``knowledge/safety.yml`` the intent becomes ``crisis`` or ``emergency`` (checked first),
``other_language`` (``core/language.py``), or ``medical_advice``, with confidence 1.0, so their
rules answer it at any point of the conversation. The patterns are read from the knowledge files when
the model is loaded. It imports no action (rasa_sdk): the patterns' matcher is
``core/intents.py``, beside the knowledge it reads.

One refinement, for hopelessness: when the *classifier* (no crisis pattern) took a message for a
crisis, but it matches a ``hopeless`` pattern and asks for options ("nothing has worked, what's
left?"), the message gets its best non-safety intent, so that the question is answered; the answer
action adds the gentle 988 line. Explicit statements ("I want to end my life") match crisis patterns
and keep the crisis reply.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, INTENT_RANKING_KEY, PREDICTED_CONFIDENCE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from core.intents import CRISIS_INTENT, OTHER_LANGUAGE_INTENT, SAFETY_INTENTS
from core.knowledge import Knowledge, classify
from core.knowledge_loader import get_knowledge
from core.language import looks_non_english
from core.limits import bounded

SAFETY_NET_KEY = "safety_net"
HOPELESS_KEY = "hopeless"
# A classifier's crisis or emergency this sure is kept even when a medical-advice pattern matches ("should
# I take all my pills tonight"); a less sure one (which the FallbackClassifier would drop anyway) is not.
KEEP_SAFETY_CONFIDENCE = 0.5
# The classifier's other guesses stay in the ranking below an override, scaled by this factor: the
# FallbackClassifier after this component calls a prediction ambiguous when the next one is within 0.1 of
# it, so a pattern's 1.0 above the classifier's 0.98 for another intent would become the fallback and the
# emergency would get no 911 reply.
OVERRIDDEN_SCALE = 0.5


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False)
class SafetyNet(GraphComponent, IntentClassifier):
    """Overrides the intent of messages that match a safety pattern."""

    def __init__(self, knowledge: Knowledge) -> None:
        self.knowledge = knowledge

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "SafetyNet":
        """Creates the component with the project's safety patterns."""
        return cls(get_knowledge())

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Nothing to learn."""
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        """Sets the safety intent on every message that matches a pattern."""
        for message in messages:
            text = bounded(message.get(TEXT) if isinstance(message.get(TEXT), str) else "")
            predicted = message.get(INTENT) or {}
            override = self._override(text, predicted.get(INTENT_NAME_KEY),
                                      float(predicted.get(PREDICTED_CONFIDENCE_KEY) or 0.0))
            if override is not None:
                ranking = [{**entry, PREDICTED_CONFIDENCE_KEY: float(entry.get(PREDICTED_CONFIDENCE_KEY) or 0.0)
                            * OVERRIDDEN_SCALE}
                           for entry in message.get(INTENT_RANKING_KEY) or []
                           if entry.get(INTENT_NAME_KEY) != override]
                intent = {INTENT_NAME_KEY: override, PREDICTED_CONFIDENCE_KEY: 1.0}
                message.set(INTENT, intent, add_to_output=True)
                message.set(INTENT_RANKING_KEY, [intent, *ranking], add_to_output=True)
                message.set(SAFETY_NET_KEY, override, add_to_output=True)
            elif self._hopeless_question(text, message):
                ranking = [entry for entry in message.get(INTENT_RANKING_KEY) or []
                           if entry.get(INTENT_NAME_KEY) not in SAFETY_INTENTS]
                if ranking:
                    message.set(INTENT, dict(ranking[0]), add_to_output=True)
                    message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
                message.set(HOPELESS_KEY, True, add_to_output=True)
        return messages

    def _override(self, text: str, predicted: Optional[str] = None, confidence: float = 0.0) -> Optional[str]:
        if not text:
            return None
        routed = classify(text, self.knowledge)
        if routed in SAFETY_INTENTS:
            return routed
        if looks_non_english(text):
            return OTHER_LANGUAGE_INTENT
        if routed is not None and predicted in SAFETY_INTENTS and confidence >= KEEP_SAFETY_CONFIDENCE:
            return None  # a medical-advice pattern never turns the classifier's crisis into a refusal
        return routed

    def _hopeless_question(self, text: str, message: Message) -> bool:
        """The classifier's crisis for a hopeless question that states no crisis (see the docstring)."""
        predicted = (message.get(INTENT) or {}).get(INTENT_NAME_KEY)
        answering = self.knowledge.answering
        return (predicted == CRISIS_INTENT and answering is not None and answering.hopeless(text)
                and answering.asks_for_options(text))
