"""Toy texts for tests: word salad with some structure (brackets, quotes, lines)."""
from __future__ import annotations

import random

WORDS = ("the quick brown fox jumps over a lazy dog while rain falls ( softly ) on "
         "\"quiet\" hills , and ; we count 1 2 3 .").split()


def toy_text(n: int, seed: int = 0, words=WORDS) -> str:
    """Exactly ``n`` characters of random ``words``, about one line break in ten."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n:
        word = rng.choice(words) + ("\n" if rng.random() < 0.1 else " ")
        parts.append(word)
        size += len(word)
    return "".join(parts)[:n]
