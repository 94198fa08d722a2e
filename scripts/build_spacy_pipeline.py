"""Builds the project's English spaCy pipeline, which Rasa's ``SpacyNLP`` loads by path.

No pretrained spaCy model can be downloaded here, so the pipeline is made from ``spacy.blank("en")``:
a lookup lemmatizer (tables from spacy-lookups-data) and an entity ruler that tags every name of a
treatment in ``knowledge/topics.yml`` as a ``therapy`` entity, case-insensitively.

Usage: ``python scripts/build_spacy_pipeline.py OUTPUT_DIR``
"""

from __future__ import annotations

import sys
from pathlib import Path

import spacy

from core.knowledge import THERAPY_ENTITY, KnowledgeError
from core.knowledge_loader import get_knowledge


def build(output: Path) -> int:
    """Builds the pipeline into ``output``; returns the number of entity patterns."""
    knowledge = get_knowledge()
    nlp = spacy.blank("en")
    nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    ruler = nlp.add_pipe("entity_ruler")
    nlp.initialize()  # loads the lemma tables; it would also clear the ruler, so patterns come after
    patterns = []
    for key, phrase in knowledge.synonym_patterns():
        tokens = [{"LOWER": token.lower_} for token in nlp.make_doc(phrase)]
        patterns.append({"label": THERAPY_ENTITY, "pattern": tokens, "id": key})
    ruler.add_patterns(patterns)
    nlp.meta["name"] = "clinic_en"
    nlp.meta["description"] = "Blank English pipeline with lookup lemmas and the clinic's therapy names"
    output.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output)
    return len(patterns)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        count = build(Path(sys.argv[1]))
    except KnowledgeError as error:
        print(f"Cannot build the spaCy pipeline: {error}", file=sys.stderr)
        return 2
    print(f"Built the spaCy pipeline in {sys.argv[1]} with {count} therapy patterns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
