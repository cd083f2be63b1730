"""Sampling text from a model, character by character.

    >>> import torch
    >>> from lab.models import CharRNN, ModelConfig
    >>> model = CharRNN(ModelConfig("lstm", 1, 8, 3)).eval()
    >>> len(sample(model, "ab\\n", 5, prime="a", seed=0))
    5
"""
from __future__ import annotations

import torch

from lab.corpus import encode_chars


def check_temperature(temperature: float) -> None:
    """Refuse a temperature that cannot scale logits: zero, negative or NaN.

    >>> try: check_temperature(0)
    ... except ValueError as e: print(e)
    temperature must be positive, got 0
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


@torch.no_grad()
def sample(model, vocab, n: int, prime: str = "\n", temperature: float = 1.0, seed: int | None = None) -> str:
    """``n`` characters sampled after ``prime`` (which must be in the vocabulary).

    ``temperature`` < 1 sharpens the distribution, > 1 flattens it.

    >>> from lab.pretrained import load_model
    >>> model, meta = load_model("war_and_peace_lstm")
    >>> sample(model, meta["vocab"], 30, prime="The ", temperature=0.5, seed=1)
    'same\\ntime for a moment. The st'
    """
    check_temperature(temperature)
    if not prime:
        raise ValueError("prime must hold at least one character")
    ids = encode_chars(prime, {ch: i for i, ch in enumerate(vocab)}, "the model's vocabulary (in the prime)")
    device = model.head.weight.device
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(seed)
    else:
        gen.seed()  # a fresh generator starts from a fixed seed: without this every sample is the same
    model.eval()
    x = ids[None].to(device)
    logits, state = model(x)
    out = []
    for _ in range(n):
        probs = torch.softmax(logits[0, -1].float().cpu() / temperature, dim=-1)
        nxt = int(torch.multinomial(probs, 1, generator=gen))
        out.append(vocab[nxt])
        logits, state = model(torch.tensor([[nxt]], device=device), state)
    return "".join(out)
