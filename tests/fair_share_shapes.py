"""The corpus of message shapes for the cost tests (tests/test_fair_share_cost.py) and the attack
(scripts/attack.py): what a client can send that might cost the NLU more than an ordinary message."""

from __future__ import annotations

import random
import string
from typing import Dict

LENGTH = 1990  # under the door's 2,000 characters, with room for a changing suffix

# An ordinary question, the reference every shape is compared with.
ORDINARY = "how does massage therapy help my fibromyalgia back pain and is it covered "
UNICODE_SYMBOLS = "。、！？«»“”‘’–—…•·¿¡§¶†‡‰€£¥©®™°±×÷←→↑↓∞≈≠≤≥■□▲●★☆♥♦♣♠✓✔✗✘"
EMOJI = "😀😂🥲😭🙏👍🔥💯🎉❤️👨‍👩‍👧🏳️‍🌈🇺🇸"
SCRIPTS = "Привет мир مرحبا بالعالم שלום עולם 你好世界 こんにちは 안녕하세요 नमस्ते Γειά σου"


def fill(unit: str, length: int = LENGTH) -> str:
    return (unit * (length // max(len(unit), 1) + 1))[:length]


def ordinary(length: int = LENGTH) -> str:
    return fill(ORDINARY, length)


def fresh_ordinary(rng: random.Random, length: int = LENGTH) -> str:
    """An ordinary message whose words are not all repeats (a tokenizer caches the words it has seen)."""
    words = ORDINARY.split()
    text = " ".join(rng.choice(words) + "".join(rng.choice(string.ascii_lowercase) for _ in range(3))
                    for _ in range(length // 3))
    return text[:length]


def corpus(length: int = LENGTH) -> Dict[str, str]:
    """Named shapes of ``length`` characters."""
    shapes = {f"run of {char!r}": char * length for char in string.punctuation}
    shapes.update({f"run of {char!r}": char * length for char in UNICODE_SYMBOLS[::4]})
    shapes.update({
        "punctuation mix (the attack of the issue)": fill("'(?$').+%", length),
        "all punctuation": fill(string.punctuation, length),
        "unicode symbols": fill(UNICODE_SYMBOLS, length),
        "emoji": fill("😀", length),
        "emoji mix": fill(EMOJI, length),
        "emoji with spaces": fill("😀 ", length),
        "mixed scripts": fill(SCRIPTS, length),
        "mixed scripts without spaces": fill(SCRIPTS.replace(" ", ""), length),
        "mixed scripts and punctuation": fill("Привет!!!مرحبا???你好…", length),
        "tabs": "\t" * length,
        "punctuation between tabs": fill("'\t", length),
        "punctuation between newlines": fill("?\n", length),
        "punctuation between spaces": fill("' ", length),
        "one long word": "a" * length,
        "long words": fill("pneumonoultramicroscopicsilicovolcanoconiosis" * 3 + " ", length),
        "letters and apostrophes": fill("a'", length),
        "letters and quotes": fill("a\"", length),
        "digits": "7" * length,
        "digits and punctuation": fill("1.2,3-4/5", length),
        "a long address": fill("https://example.com/" + "path/" * 10 + "?q=", length),
        "many distinct words": " ".join(f"w{index:x}q" for index in range(length))[:length],
        "short punctuation words": fill("'(?$ ", length),
        "forty-character punctuation chunks": fill(fill("'(?$+%", 40) + " ", length),
    })
    return shapes


ALPHABETS = [string.punctuation, UNICODE_SYMBOLS, EMOJI, "abcxyz", "0123456789", " \t\n", SCRIPTS, "_'’-"]


def random_shape(rng: random.Random, length: int = LENGTH) -> str:
    """A random shape: runs drawn from a few random alphabets, of random lengths."""
    alphabets = rng.sample(ALPHABETS, rng.randint(1, 4))
    pieces, size = [], 0
    while size < length:
        alphabet = rng.choice(alphabets)
        run = "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 2, 5, 40, 300, length])))
        pieces.append(run)
        size += len(run)
    return "".join(pieces)[:length]
