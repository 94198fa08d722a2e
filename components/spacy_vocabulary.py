"""Memory that stays bounded with ever-new words: a pipeline component, right after ``SpacyNLP``, that
reloads the spaCy pipeline when its vocabulary has grown.

spaCy (3.4, the newest Rasa 3.6 allows) adds every string it meets to the pipeline's ``StringStore`` and
a ``Lexeme`` for every new word to its ``Vocab``, and never removes them: about 700 bytes per distinct
word, so a server that reads ever-new words (typos, names, pasted text, fuzzing) grew without bound
(+363 MB for 100 distinct 50 KB messages). spaCy has no way to forget strings before 3.8's
``memory_zone``, and a lexeme cannot be removed from a vocabulary.

Rasa's ``SpacyNLP`` provides one ``SpacyModel`` (a wrapper around the ``Language``) to every component
that needs it, and nothing keeps a ``Doc`` or a ``Lexeme`` after a message is parsed (the tokenizer and
featurizers copy texts and lemmas into Rasa's own tokens). So after ``SpacyNLP`` has parsed a message,
when the vocabulary holds more than ``SPACY_MAX_NEW_STRINGS`` strings (default 50,000, about 35 MB) beyond
what the pipeline had when loaded, :class:`BoundedSpacyVocabulary` replaces the ``Language`` inside that
``SpacyModel`` by a fresh one loaded the same way (``SpacyNLP.load_model``) and frees the old one at once
(``gc.collect()``). Strings are hashed, not numbered, so the fresh pipeline gives exactly the same tokens,
lemmas, entities and features. A reload takes well under a second, once per 50,000 new strings (hundreds
of messages of random words; in normal traffic, rarely). Training is unchanged (the component passes the
training data through).
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any, Dict, List, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.utils.spacy_utils import SpacyModel, SpacyNLP
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

logger = logging.getLogger(__name__)

MAX_NEW_STRINGS_VARIABLE = "SPACY_MAX_NEW_STRINGS"
DEFAULT_MAX_NEW_STRINGS = 50_000
_BASELINE = "_clinic_strings_at_load"  # attribute set on the SpacyModel: its string count when loaded


def max_new_strings() -> int:
    """How many strings the spaCy vocabulary may gain before it is reloaded (``SPACY_MAX_NEW_STRINGS``)."""
    raw = os.environ.get(MAX_NEW_STRINGS_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_MAX_NEW_STRINGS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{MAX_NEW_STRINGS_VARIABLE} must be a positive whole number, not {raw!r}")
    return int(raw)


def strings(spacy_model: Any) -> int:
    """How many strings the pipeline's vocabulary holds now."""
    return len(spacy_model.model.vocab.strings)


def bound_vocabulary(spacy_model: Any, limit: int) -> bool:
    """Reloads ``spacy_model.model`` if its vocabulary grew by more than ``limit`` strings since it was
    first seen here; returns whether it did."""
    baseline = getattr(spacy_model, _BASELINE, None)
    if baseline is None:
        setattr(spacy_model, _BASELINE, strings(spacy_model))
        return False
    grown = strings(spacy_model) - baseline
    if grown <= limit:
        return False
    spacy_model.model = SpacyNLP.load_model(spacy_model.model_name).model
    setattr(spacy_model, _BASELINE, strings(spacy_model))
    # The old pipeline is a reference cycle (Language, pipes, Vocab): without a full collection it waits
    # for one, which a process with millions of long-lived objects (TensorFlow, the model) runs rarely,
    # so several old vocabularies would be alive at once.
    gc.collect()
    logger.info("spaCy vocabulary reloaded after %d new strings (%s)", grown, MAX_NEW_STRINGS_VARIABLE)
    return True


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False,
                          model_from="SpacyNLP")
class BoundedSpacyVocabulary(GraphComponent):
    """Reloads ``SpacyNLP``'s pipeline once its vocabulary has gained ``SPACY_MAX_NEW_STRINGS`` strings."""

    @staticmethod
    def required_components() -> List[type]:
        return [SpacyNLP]

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {}

    def __init__(self, limit: int) -> None:
        self.limit = limit

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> BoundedSpacyVocabulary:
        return cls(max_new_strings())  # a bad value stops the start, naming the variable

    def process_training_data(self, training_data: TrainingData, model: SpacyModel) -> TrainingData:
        return training_data  # training is unchanged

    def process(self, messages: List[Message], model: SpacyModel) -> List[Message]:
        bound_vocabulary(model, self.limit)
        return messages
