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


def saturating(model, scale: float = 15.0):
    """``model`` with every weight scaled up, so that its gates saturate as a trained model's do
    (an untrained one's stay near 0.5, where a saturation test compares zeros with zeros)."""
    import torch
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


def toy_trace(text: str, kind: str = "lstm", layers: int = 2, width: int = 10, seed: int = 0,
              scale: float = 1.0, **kw):
    """A trace of a random (untrained) model over ``text``, its vocabulary the text's characters;
    ``scale`` > 1 scales its weights so that its gates saturate."""
    import torch

    from lab.models import CharRNN, ModelConfig
    from lab.trace import compute_trace
    torch.manual_seed(seed)
    vocab = sorted(set(text))
    model = saturating(CharRNN(ModelConfig(kind, layers, width, len(vocab))).eval(), scale)
    return compute_trace(model, torch.tensor([vocab.index(c) for c in text]), vocab=vocab, text=text, **kw)
