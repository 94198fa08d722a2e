"""The NLU pipeline's first step: the text the pipeline parses is :func:`core.shape.nlu_shape` of the
message, so that no message, whatever channel brought it, costs the NLU more than an ordinary message of
the same length.

spaCy's tokenizer is quadratic in the length of a space-free run of punctuation or symbols (2,000 quotes
or emoji: about 2 s of the Rasa server's only event loop, during which every other visitor waits). The
shape cuts such runs to three characters and splits space-free chunks over 40 characters; ordinary text
is unchanged, and every word stays, so the safety patterns (``components/safety_net.py``) still see them.

Only what the pipeline parses changes: the conversation stores, and the actions read, the message as the
visitor wrote it (Rasa's ``UserUttered`` takes the channel's text, not the parsed one). Training examples
get the same shape, so training and parsing see the same text.
"""

from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from core.shape import nlu_shape


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False)
class ShapeGuard(GraphComponent):
    """Gives every message's text the shape of :func:`core.shape.nlu_shape` (before ``SpacyNLP``)."""

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "ShapeGuard":
        return cls()

    @staticmethod
    def _shape(message: Message) -> None:
        text = message.get(TEXT)
        if isinstance(text, str):
            shaped = nlu_shape(text)
            if shaped != text:
                message.set(TEXT, shaped)

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            self._shape(message)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        for example in training_data.training_examples:
            self._shape(example)
        return training_data
