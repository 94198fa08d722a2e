"""What the NLU parses of a visitor's message: the same words, without the shapes that make spaCy's
tokenizer superlinear. Rasa-free, so that the NLU component applying it (``components/shape_guard.py``)
and the channels depend on the core, not on each other."""

from __future__ import annotations

import re
from typing import List, Text

# spaCy's tokenizer strips prefixes and suffixes from a space-free chunk one character at a time, and
# each step searches the whole rest of the chunk: a chunk of n punctuation marks or symbols costs O(n²)
# (2,000 quotes: about 2 s; an ordinary 2,000-character question: under 1 ms). What the NLU parses
# therefore has no run of more than MAX_SYMBOL_RUN such characters and no chunk longer than
# MAX_CHUNK_CHARS; words, spaces and short punctuation ("...", "?!", "e.r.", "9-1-1") are kept as they
# are, so ordinary messages are unchanged and the safety patterns see every word.
MAX_SYMBOL_RUN = 3
MAX_CHUNK_CHARS = 40
_SYMBOL_RUN = re.compile(r"(?:[^\w\s]|_){%d,}" % (MAX_SYMBOL_RUN + 1))
_LONG_CHUNK = re.compile(r"\S{%d,}" % (MAX_CHUNK_CHARS + 1))
# an apostrophe or a hyphen inside a word ("can't", "t-boned") is kept: the safety patterns read them
_SYMBOL = re.compile(r"(?:[^\w\s'’-]|_|(?<![^\W_])['’-]|['’-](?![^\W_]))+")
_PIECE = re.compile(r"\S{1,%d}" % MAX_CHUNK_CHARS)


def _pieces(word: Text) -> List[Text]:
    """A word of at most MAX_CHUNK_CHARS characters as it is; a longer one cut at its hyphens, greedily,
    and what is still too long (a 2,000-letter "word") into pieces."""
    if len(word) <= MAX_CHUNK_CHARS:
        return [word]
    pieces: List[Text] = []
    for part in word.split("-"):
        if pieces and len(pieces[-1]) + 1 + len(part) <= MAX_CHUNK_CHARS:
            pieces[-1] += "-" + part
        else:
            pieces += _PIECE.findall(part)
    return pieces


def _split_chunk(match: "re.Match[str]") -> Text:
    # Punctuation inside a long chunk separates its words ("help!I/can't/breathe…" → "help I can't
    # breathe…"); what is still too long is cut (:func:`_pieces`).
    words = _SYMBOL.sub(" ", match.group(0))
    return " ".join(piece for word in words.split() for piece in _pieces(word))


def nlu_shape(text: Text) -> Text:
    """``text`` as the NLU parses it: runs of punctuation and symbols cut to :data:`MAX_SYMBOL_RUN`
    characters, and space-free chunks over :data:`MAX_CHUNK_CHARS` characters split at their
    punctuation, then into pieces. Linear in the length; ordinary text is returned unchanged."""
    if len(text) <= MAX_SYMBOL_RUN:
        return text
    shaped = _SYMBOL_RUN.sub(lambda run: run.group(0)[:MAX_SYMBOL_RUN], text)
    return _LONG_CHUNK.sub(_split_chunk, shaped)
