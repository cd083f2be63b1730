"""Sampling text from a model, character by character, and the input rules sampling shares.

:func:`check_temperature`, :func:`check_seed`, :func:`check_count` and :func:`check_integer`
are the one place for the rules of :func:`sample`, :meth:`lab.Session.sample` and
:meth:`lab.Session.intervene`; :func:`next_char_probs` is their one way to turn logits and a
temperature into probabilities.

    >>> import torch
    >>> from lab.models import CharRNN, ModelConfig
    >>> model = CharRNN(ModelConfig("lstm", 1, 8, 3)).eval()
    >>> len(sample(model, "ab\\n", 5, prime="a", seed=0))
    5
"""
from __future__ import annotations

import math

import torch

from lab.checks import is_integer, is_real
from lab.corpus import encode_chars
from lab.models import exact_float32

SEED_RANGE = (-2**63, 2**64 - 1)   # what torch.Generator.manual_seed accepts


def check_integer(value, name: str) -> int:
    """``value`` as an int when it is an integer (numpy integers too, bool not), else a TypeError naming ``name``.

    >>> import numpy as np
    >>> check_integer(np.int64(3), "top_k")
    3
    >>> try: check_integer(1.5, "top_k")
    ... except TypeError as e: print(e)
    top_k must be an integer, got float 1.5
    """
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


def check_count(n, name: str = "n") -> int:
    """How many characters to sample: an integer, 0 (no sample) or more.

    >>> check_count(0)
    0
    >>> try: check_count(-1, "sample_n")
    ... except ValueError as e: print(e)
    sample_n must be 0 (no sample) or more, got -1
    """
    n = check_integer(n, name)
    if n < 0:
        raise ValueError(f"{name} must be 0 (no sample) or more, got {n}")
    return n


def check_temperature(temperature) -> float:
    """Refuse a temperature that cannot scale logits: not a number, zero, negative, infinite or NaN.

    Returns it as a float. Any positive finite temperature samples safely (see
    :func:`next_char_probs`); a tiny one is greedy decoding.

    >>> check_temperature(0.5)
    0.5
    >>> try: check_temperature(0)
    ... except ValueError as e: print(e)
    temperature must be positive, got 0
    >>> try: check_temperature("0.5")
    ... except TypeError as e: print(e)
    temperature must be a number such as 0.8, got str '0.5'
    """
    if not is_real(temperature):
        raise TypeError(f"temperature must be a number such as 0.8, got {type(temperature).__name__} {temperature!r}")
    if math.isnan(temperature):
        raise ValueError(f"temperature must be a positive number such as 0.8, got {temperature}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    temperature = float(temperature)
    if math.isinf(temperature):
        raise ValueError("temperature must be finite, got inf: 1 samples as the model learned, "
                         "larger values flatten the distribution, smaller ones sharpen it")
    return temperature


def check_seed(seed) -> int | None:
    """A seed for :class:`torch.Generator`: None, or an integer (numpy integers too) in its range.

    >>> check_seed(None), check_seed(7)
    (None, 7)
    >>> try: check_seed(2**70)
    ... except ValueError as e: print(e)
    seed must be between -2**63 and 2**64 - 1, got 1180591620717411303424
    """
    if seed is None:
        return None
    if not is_integer(seed):
        raise TypeError(f"seed must be an integer (or None for a fresh random one), got "
                        f"{type(seed).__name__} {seed!r}")
    seed = int(seed)
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ValueError(f"seed must be between -2**63 and 2**64 - 1, got {seed}")
    return seed


def next_char_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Probabilities (float32, on the CPU) of the next character from one row of logits.

    Computed in float64 from the logits minus their maximum, so that any positive finite
    temperature is safe: the most likely character keeps weight 1 before normalising, and a
    tiny temperature puts all the mass on it (greedy decoding) instead of overflowing.

    >>> import torch
    >>> next_char_probs(torch.tensor([1.0, 3.0, 2.0]), 1e-300).tolist()
    [0.0, 1.0, 0.0]
    >>> [round(p, 3) for p in next_char_probs(torch.tensor([1.0, 3.0, 2.0]), 1.0).tolist()]
    [0.09, 0.665, 0.245]
    """
    z = logits.detach().to("cpu", torch.float64)
    z = (z - z.max()) / temperature
    return torch.softmax(z, -1).float()


@torch.no_grad()
def sample(model, vocab, n: int, prime: str = "\n", temperature: float = 1.0, seed: int | None = None) -> str:
    """``n`` characters sampled after ``prime`` (which must be in the vocabulary).

    ``temperature`` < 1 sharpens the distribution, > 1 flattens it; a tiny one is greedy.
    ``n`` = 0 gives an empty sample. ``seed`` (an integer) makes the sample repeatable.

    >>> from lab.pretrained import load_model
    >>> model, meta = load_model("war_and_peace_lstm")
    >>> sample(model, meta["vocab"], 30, prime="The ", temperature=0.5, seed=1)
    'same\\ntime for a moment. The st'
    """
    temperature = check_temperature(temperature)
    n = check_count(n, "n")
    seed = check_seed(seed)
    if not isinstance(prime, str):
        raise TypeError(f"prime must be a str, got {type(prime).__name__}")
    if not prime:
        raise ValueError("prime must hold at least one character")
    ids = encode_chars(prime, {ch: i for i, ch in enumerate(vocab)}, "the model's vocabulary (in the prime)")
    if n == 0:
        return ""
    device = model.head.weight.device
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(seed)
    else:
        gen.seed()  # a fresh generator starts from a fixed seed: without this every sample is the same
    model.eval()
    x = ids[None].to(device)
    out = []
    with exact_float32():   # on a GPU, the same probabilities as a trace's
        logits, state = model(x)
        for _ in range(n):
            nxt = int(torch.multinomial(next_char_probs(logits[0, -1], temperature), 1, generator=gen))
            out.append(vocab[nxt])
            logits, state = model(torch.tensor([[nxt]], device=device), state)
    return "".join(out)
