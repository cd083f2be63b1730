"""Character-level RNN, LSTM and GRU language models (paper §3).

One-hot characters in, a softmax over the vocabulary out, 1 to 3 recurrent layers in
between, run by torch's fused (cuDNN) kernels. Gate names follow the paper: LSTM
``input``, ``forget``, ``output`` and ``candidate`` (the paper's g); GRU ``reset``,
``update`` and ``candidate``. :mod:`lab.reference` spells every cell out step by step.

    >>> import torch
    >>> cfg = ModelConfig(kind="lstm", layers=2, width=32, vocab_size=10)
    >>> model = CharRNN(cfg)
    >>> logits, state = model(torch.zeros(4, 7, dtype=torch.long))   # (batch, time)
    >>> tuple(logits.shape), count_parameters(cfg) == sum(p.numel() for p in model.parameters())
    ((4, 7, 10), True)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # weight blocks per layer in torch's fused layout
ROWS = (64, 128, 256, 512)  # Table 1: each row matches the size of a 1-layer LSTM this wide


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a model; it travels inside every checkpoint."""

    kind: str
    layers: int
    width: int
    vocab_size: int
    dropout: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        if not 1 <= self.layers <= 3:
            raise ValueError(f"layers must be 1, 2 or 3 (the paper's depths), got {self.layers}")
        if self.width < 1 or self.vocab_size < 1:
            raise ValueError(f"width and vocab_size must be positive, got {self.width}, {self.vocab_size}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Rebuild from a checkpoint's JSON; unknown keys are an error."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def count_parameters(cfg: ModelConfig) -> int:
    """Parameters of a model, from its shape alone (torch keeps two biases per gate).

    >>> count_parameters(ModelConfig("lstm", 1, 512, 82))
    1262674
    """
    g, h, v = GATES[cfg.kind], cfg.width, cfg.vocab_size
    first = g * (h * v + h * h + 2 * h)
    deeper = g * (h * h + h * h + 2 * h)
    return first + (cfg.layers - 1) * deeper + h * v + v


def width_for(kind: str, layers: int, row: int, vocab_size: int) -> int:
    """The width whose parameter count is closest to the 1-layer LSTM of a Table 1 row.

    >>> width_for("lstm", 1, 512, 82), width_for("lstm", 2, 512, 82), width_for("rnn", 1, 64, 82)
    (512, 307, 141)
    """
    if row not in ROWS:
        raise ValueError(f"row must be one of the paper's rows {ROWS}, got {row}")
    target = count_parameters(ModelConfig("lstm", 1, row, vocab_size))

    def size(w: int) -> int:
        return count_parameters(ModelConfig(kind, layers, w, vocab_size))

    lo, hi = 1, 4 * row  # size() grows with w, so bisect for the crossing
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if size(mid) < target else (lo, mid)
    return min((lo, hi), key=lambda w: abs(size(w) - target))


class CharRNN(nn.Module):
    """One-hot input -> ``layers`` fused recurrent layers -> linear -> logits.

    Dropout (``cfg.dropout``) acts between layers and before the output layer, as in
    char-rnn. The recurrent module is ``self.rnn`` (``nn.RNN`` with tanh, ``nn.LSTM``
    or ``nn.GRU``), so its weights are torch's: ``rnn.weight_ih_l{k}`` and friends.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cfg.kind]
        extra = {"nonlinearity": "tanh"} if cfg.kind == "rnn" else {}
        self.rnn = cls(cfg.vocab_size, cfg.width, cfg.layers, batch_first=True,
                       dropout=cfg.dropout if cfg.layers > 1 else 0.0, **extra)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.width, cfg.vocab_size)

    def init_uniform(self, scale: float = 0.08, generator: torch.Generator | None = None) -> None:
        """The paper's initialisation: every weight uniform in [-scale, scale]."""
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.rand(p.shape, generator=generator) * 2 * scale - scale)

    def initial_state(self, batch: int, device=None):
        """Zero state: ``h`` (layers, batch, width), and ``(h, c)`` for the LSTM."""
        h = torch.zeros(self.cfg.layers, batch, self.cfg.width, device=device, dtype=self.head.weight.dtype)
        return (h, torch.zeros_like(h)) if self.cfg.kind == "lstm" else h

    def forward(self, x: torch.Tensor, state=None):
        """``x`` (batch, time) int64 -> logits (batch, time, vocab), final state."""
        onehot = F.one_hot(x, self.cfg.vocab_size).to(self.head.weight.dtype)  # (B, T, V)
        hidden, state = self.rnn(onehot, state)                               # (B, T, H)
        return self.head(self.drop(hidden)), state


def detach_state(state):
    """Cut the graph at a batch boundary while carrying the state (truncated BPTT)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()
