"""Rasa's logistic-regression intent classifier, made safe for empty messages.

Rasa 3.6's ``LogisticRegressionClassifier`` raises on a message with no features (an empty or blank
text), so the visitor would get no answer at all. Here such a message gets no intent with confidence
0, which the ``FallbackClassifier`` turns into ``nlu_fallback``: the visitor is told what the assistant
can help with.
"""

from __future__ import annotations

from typing import List

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.logistic_regression_classifier import LogisticRegressionClassifier
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, INTENT_RANKING_KEY, PREDICTED_CONFIDENCE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class BlankSafeLogisticRegressionClassifier(LogisticRegressionClassifier):
    """``LogisticRegressionClassifier`` that leaves blank messages without an intent instead of failing."""

    def process(self, messages: List[Message]) -> List[Message]:
        """Classifies every message that has text; blank ones get no intent."""
        texts = [message for message in messages if (message.get(TEXT) or "").strip()]
        if texts:
            super().process(texts)
        for message in messages:
            if not (message.get(TEXT) or "").strip():
                message.set(INTENT, {INTENT_NAME_KEY: None, PREDICTED_CONFIDENCE_KEY: 0.0}, add_to_output=True)
                message.set(INTENT_RANKING_KEY, [], add_to_output=True)
        return messages
