"""Memory stays bounded with ever-new words (components/spacy_vocabulary.py): spaCy's vocabulary is reloaded once
it has grown, and the reloaded pipeline parses exactly as before. The 20,000-message soak is
``make soak-memory``; these are its short real versions. The Rasa server does not load JAX."""

from __future__ import annotations

import asyncio
import random
import re
import string
from pathlib import Path
from typing import Any, Dict, List

import pytest
import requests

from devtools.servers import MODEL, Servers, Visitor

KNOWN = ["does water therapy help with fibro back pain?", "Chest pain and I can't breathe",
         "I'd like to book a consultation", "what is biofeedback", "hello"]
LIMIT = 2_000


def new_words(rnd: random.Random, count: int) -> str:
    return " ".join("".join(rnd.choices(string.ascii_lowercase, k=8)) for _ in range(count))


def spacy_models(agent: Any) -> List[Any]:
    """The SpacyModel the loaded model's graph hands to its spaCy components (the output of the
    ``provide_SpacyNLP…`` node; the ``run_SpacyNLP…`` node loads one of its own it never uses)."""
    from rasa.nlu.utils.spacy_utils import SpacyNLP

    nodes = agent.processor.graph_runner._instantiated_nodes.items()
    models = [node._component._model for name, node in nodes
              if name.startswith("provide_") and isinstance(node._component, SpacyNLP)]
    assert len(models) == 1
    return models


@pytest.mark.model
def test_vocabulary_is_reloaded_and_parses_the_same(monkeypatch) -> None:
    from rasa.core.agent import Agent

    monkeypatch.setenv("SPACY_MAX_NEW_STRINGS", str(LIMIT))  # read when the model's component is created
    agent = Agent.load(str(MODEL))
    rnd = random.Random(8)

    async def parse_all(texts: List[str]) -> List[Dict[str, Any]]:
        return [await agent.parse_message(text) for text in texts]

    before = asyncio.run(parse_all(KNOWN))
    languages = {id(model.model) for model in spacy_models(agent)}
    baseline = max(len(model.model.vocab.strings) for model in spacy_models(agent))
    largest = 0
    for _ in range(100):
        asyncio.run(parse_all([new_words(rnd, 40)]))
        largest = max(largest, *(len(model.model.vocab.strings) for model in spacy_models(agent)))
    after = asyncio.run(parse_all(KNOWN))

    assert not languages & {id(model.model) for model in spacy_models(agent)}, "never reloaded"
    assert largest <= baseline + LIMIT + 200  # 4,000 new words seen; at most one message over the limit
    assert after == before


@pytest.mark.e2e
def test_real_server_reloads_its_vocabulary_and_keeps_answering(tmp_path) -> None:
    """A real Rasa server reading 6,000 new words with a 2,000-string limit reloads its pipeline and
    answers every message."""
    servers = Servers(tmp_path, env={"SPACY_MAX_NEW_STRINGS": str(LIMIT)}).start()
    try:
        rnd = random.Random(9)
        visitor = Visitor(servers)
        for number in range(60):
            if number % 20 == 0:
                visitor = Visitor(servers)
            assert visitor.say(new_words(rnd, 100)), "a message got no reply"
        assert "symptoms" in visitor.says("what are the symptoms of fibromyalgia")
        assert requests.get(servers.url + "/", timeout=5).ok
        # TensorFlow is loaded (Rasa imports it), JAX is not (rasa_ext/__main__.py).
        maps = Path(f"/proc/{servers.processes['rasa'].pid}/maps").read_text()
        assert "libtensorflow_framework" in maps and "/jaxlib/" not in maps
    finally:
        servers.stop()
    reloads = re.findall(r"spaCy vocabulary reloaded after \d+ new strings", servers.log("rasa"))
    assert len(reloads) >= 2
