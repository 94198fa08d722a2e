"""The article as the last resort: its sentences, searched with TF-IDF (scikit-learn, which Rasa
already installs).

When the classifier is unsure and nothing else applies, :meth:`ArticleIndex.best` finds the article
sentence most similar to the message. Above :data:`THRESHOLD` the assistant quotes it verbatim ("The
article says: “…”"); below it, the fallback. Only whole sentences of the article are ever returned,
so nothing is generated. Headings and the one-line list items (the treatment names, which the
therapy entity already answers) are not indexed.

The threshold is calibrated on the training data (``make calibrate-retrieval``, i.e.
``python -m tests.calibrate_retrieval``): a quote for an article question counts as right when it is
one of the sentences its topic's answer is based on, and every quote for a non-article message
(greetings, prices, off-topic…) counts as wrong. A sentence must also share two content words with the
message (one rare shared word, "options" or "call", was most of the wrong quotes). Precision is about
0.6 at every threshold up to 0.4 (most "wrong" quotes are the neighbouring sentence on the same
subject); 0.35 quotes 13 % of article questions and 16 of 927 non-article messages, 0.45 halves both.
Retrieval only runs on messages the classifier was unsure of, after every other check.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import linear_kernel

from core.knowledge_loader import get_knowledge

THRESHOLD = 0.35
MIN_SHARED = 2
_SUFFIXES = ("ations", "ation", "ments", "ment", "ings", "ing", "ies", "ied", "ed", "es", "s", "ly")
_SPLIT = re.compile(r"(?<!\bDr\.)(?<=[.!?])\s+")


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _analyse(text: str) -> List[str]:
    words = re.findall(r"[a-z]+", text.lower().replace("’", "'").replace("fibro ", "fibromyalgia "))
    return [_stem(word) for word in words if word not in _STOP and len(word) > 2]


_STOP = frozenset("""
    the and for with that this are was were have has had you your its it's can could would should will
    what which who whom how why when where does did doing done any some from into about there their them
    they then than also been being more most such other not but very just really like get got make made
    tell know want need please thanks thank hello there here help helps fibromyalgia fibro disease
    condition patients patient individuals people someone many out exactly information additional request
    person call order best find few real today reach specific way ways lot thing things over alright
""".split())


def article_sentences(article: str) -> List[str]:
    """The article's sentences, verbatim, without headings, one-line list items and the sentence that
    only introduces the list."""
    sentences = []
    for paragraph in article.splitlines():
        paragraph = paragraph.strip()
        if len(paragraph.split()) < 6 or paragraph.startswith("•"):
            continue
        sentences.extend(part.strip() for part in _SPLIT.split(paragraph)
                         if len(part.split()) >= 6 and not part.rstrip().endswith(":"))
    return sentences


@dataclass(frozen=True)
class Match:
    score: float
    sentence: str


class ArticleIndex:
    """TF-IDF over the article's sentences."""

    def __init__(self, article: str) -> None:
        self.sentences = article_sentences(article)
        self.vectorizer = TfidfVectorizer(analyzer=_analyse, sublinear_tf=True)
        self.matrix = self.vectorizer.fit_transform(self.sentences)
        self.terms = [set(_analyse(sentence)) for sentence in self.sentences]

    def best(self, text: str) -> Optional[Match]:
        """The sentence most similar to ``text`` and its cosine similarity (None: no shared word)."""
        ranked = self.ranked(text)
        return Match(*ranked[0]) if ranked and ranked[0][0] > 0 else None

    def quote(self, text: str, threshold: float = THRESHOLD) -> Optional[Match]:
        """The sentence to quote for ``text``, if it is similar enough."""
        match = self.best(text)
        return match if match and match.score >= threshold else None

    def ranked(self, text: str) -> List[Tuple[float, str]]:
        """Every sentence with its similarity, best first. A sentence sharing fewer than
        :data:`MIN_SHARED` words with ``text`` scores 0: one shared word ("call", "options") is
        not a match, however rare the word."""
        words = set(_analyse(text))
        if not words:
            return []
        scores = linear_kernel(self.vectorizer.transform([text]), self.matrix)[0]
        scored = [(float(score) if len(words & terms) >= MIN_SHARED else 0.0, sentence)
                  for score, terms, sentence in zip(scores, self.terms, self.sentences)]
        return sorted(scored, key=lambda pair: -pair[0])


@functools.lru_cache(maxsize=1)
def article_index() -> ArticleIndex:
    """The index of the project's article, built once per process."""
    return ArticleIndex(get_knowledge().article)
