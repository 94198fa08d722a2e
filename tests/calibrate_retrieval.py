"""Calibrates the retrieval threshold of actions/retrieval.py on the training data.

    python -m tests.calibrate_retrieval

Positives are the training examples of article topics: a quote is right when it is one of the
sentences the topic's answer is based on (its `sources`; for treatment questions, those of any
treatment). Every example of a non-article intent (greetings, prices, off-topic…) that would get a
quote counts as a wrong quote. For each threshold it prints the precision of the quotes and the share
of article questions that would get a right one.
"""

from __future__ import annotations

import yaml

from actions.retrieval import THRESHOLD, ArticleIndex
from core.knowledge import TREATMENT_INTENT
from core.knowledge_loader import get_knowledge
from tests.conftest import ROOT

NOT_ARTICLE = {"greet", "goodbye", "thank", "affirm", "deny", "stop", "bot_challenge", "ask_capabilities",
               "request_human", "ask_insurance", "ask_cost", "ask_hours", "out_of_scope", "inform",
               "request_consultation"}


def main() -> None:
    knowledge = get_knowledge()
    index = ArticleIndex(knowledge.article)
    treatment_sources = [s for t in (knowledge.topics["treatments"], *knowledge.therapies.values()) for s in t.sources]
    rows = []
    for item in yaml.safe_load((ROOT / "data" / "nlu.yml").read_text())["nlu"]:
        intent = item["intent"]
        topic = knowledge.topic_for_intent(intent)
        if intent not in NOT_ARTICLE and topic is None:
            continue  # safety, medical advice: never reach retrieval
        sources = treatment_sources if intent == TREATMENT_INTENT else (topic.sources if topic else [])
        for line in item["examples"].splitlines():
            text = line[2:].strip() if line.startswith("- ") else ""
            match = index.best(text) if text else None
            if match is None:
                rows.append((0.0, intent in NOT_ARTICLE, False))
                continue
            right = any(" ".join(s.split()) in match.sentence or match.sentence in s for s in sources)
            rows.append((match.score, intent in NOT_ARTICLE, right))
    positives = sum(1 for _, negative, _ in rows if not negative)
    print(f"{positives} article questions, {len(rows) - positives} non-article messages")
    print("threshold  quotes  precision  right/article-questions  non-article quoted")
    for threshold in [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6]:
        above = [row for row in rows if row[0] >= threshold]
        right = sum(1 for _, negative, ok in above if ok and not negative)
        wrong_negative = sum(1 for _, negative, _ in above if negative)
        precision = right / len(above) if above else 0.0
        mark = "  <- actions/retrieval.py" if abs(threshold - THRESHOLD) < 1e-9 else ""
        print(f"{threshold:9.2f}  {len(above):6d}  {precision:9.2f}  {right / positives:23.2f}  {wrong_negative:18d}{mark}")


if __name__ == "__main__":
    main()
