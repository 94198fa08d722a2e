"""An NLU component that routes emergency, crisis and medical-advice messages whatever the classifier
predicted.

It runs after the intent classifier and before the ``FallbackClassifier``. When a message matches a
pattern of ``knowledge/safety.yml`` the intent becomes ``crisis``, ``emergency`` or ``medical_advice``
with confidence 1.0, so their rules answer it at any point of the conversation. The patterns are read from the
knowledge files when the model is loaded.
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

from actions.knowledge import Knowledge, get_knowledge
from actions.safety import classify

SAFETY_NET_KEY = "safety_net"


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
            override = self._override(message.get(TEXT))
            if override is None:
                continue
            ranking = [entry for entry in message.get(INTENT_RANKING_KEY) or []
                       if entry.get(INTENT_NAME_KEY) != override]
            intent = {INTENT_NAME_KEY: override, PREDICTED_CONFIDENCE_KEY: 1.0}
            message.set(INTENT, intent, add_to_output=True)
            message.set(INTENT_RANKING_KEY, [intent, *ranking], add_to_output=True)
            message.set(SAFETY_NET_KEY, override, add_to_output=True)
        return messages

    def _override(self, text: Optional[str]) -> Optional[str]:
        if not text:
            return None
        return classify(text, self.knowledge)
