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

from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # weight blocks per layer in torch's fused layout
ROWS = (64, 128, 256, 512)  # Table 1: each row matches the size of a 1-layer LSTM this wide


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a model; it travels inside every checkpoint.

    >>> ModelConfig("lstm", layers=2, width=8, vocab_size=5)
    ModelConfig(kind='lstm', layers=2, width=8, vocab_size=5, dropout=0.0)
    >>> try: ModelConfig("transformer", 1, 8, 5)
    ... except ValueError as e: print(e)
    unknown model kind 'transformer': choose one of rnn, lstm, gru
    """

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
        """Rebuild from a checkpoint's JSON; unknown keys are an error.

        >>> ModelConfig.from_dict({"kind": "gru", "layers": 1, "width": 16, "vocab_size": 82})
        ModelConfig(kind='gru', layers=1, width=16, vocab_size=82, dropout=0.0)
        >>> try: ModelConfig.from_dict({"kind": "gru", "layers": 1, "width": 16, "vocab_size": 82, "hidden": 16})
        ... except ValueError as e: print(e)
        unknown model config keys: ['hidden']
        """
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        """The config as a JSON-able dict, as checkpoints store it (see :meth:`from_dict`).

        >>> ModelConfig("lstm", 2, 8, 5).to_dict()
        {'kind': 'lstm', 'layers': 2, 'width': 8, 'vocab_size': 5, 'dropout': 0.0}
        """
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

    >>> model = CharRNN(ModelConfig("lstm", 2, 8, 5))
    >>> model.rnn
    LSTM(5, 8, num_layers=2, batch_first=True)
    >>> tuple(model.rnn.weight_hh_l1.shape)      # 4 gate blocks of 8 rows
    (32, 8)
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
        """The paper's initialisation: every weight uniform in [-scale, scale].

        >>> import torch
        >>> model = CharRNN(ModelConfig("lstm", 1, 8, 5))
        >>> model.init_uniform(0.08, generator=torch.Generator().manual_seed(0))
        >>> w = torch.cat([p.flatten() for p in model.parameters()])
        >>> round(w.min().item(), 2), round(w.max().item(), 2)
        (-0.08, 0.08)
        """
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.rand(p.shape, generator=generator) * 2 * scale - scale)

    def initial_state(self, batch: int, device=None):
        """Zero state: ``h`` (layers, batch, width), and ``(h, c)`` for the LSTM.

        >>> h, c = CharRNN(ModelConfig("lstm", 2, 8, 5)).initial_state(3)
        >>> tuple(h.shape), tuple(c.shape), float(c.abs().sum())
        ((2, 3, 8), (2, 3, 8), 0.0)
        """
        h = torch.zeros(self.cfg.layers, batch, self.cfg.width, device=device, dtype=self.head.weight.dtype)
        return (h, torch.zeros_like(h)) if self.cfg.kind == "lstm" else h

    def forward(self, x: torch.Tensor, state=None):
        """``x`` (batch, time) int64 -> logits (batch, time, vocab), final state.

        Passing the final state back in continues the text:

        >>> import torch
        >>> _ = torch.manual_seed(0); model = CharRNN(ModelConfig("gru", 2, 8, 5)).eval()
        >>> x = torch.tensor([[0, 1, 2, 3]])
        >>> logits, h = model(x)
        >>> tuple(logits.shape), tuple(h.shape)
        ((1, 4, 5), (2, 1, 8))
        >>> _, h2 = model(x[:, :2]); rest, _ = model(x[:, 2:], h2)
        >>> torch.allclose(rest, logits[:, 2:], atol=1e-6)
        True
        """
        onehot = F.one_hot(x, self.cfg.vocab_size).to(self.head.weight.dtype)  # (B, T, V)
        hidden, state = self.rnn(onehot, state)                               # (B, T, H)
        return self.head(self.drop(hidden)), state


def detach_state(state):
    """Cut the graph at a batch boundary while carrying the state (truncated BPTT).

    >>> import torch
    >>> model = CharRNN(ModelConfig("lstm", 1, 8, 5))
    >>> _, state = model(torch.tensor([[0, 1, 2]]))
    >>> state[0].requires_grad, detach_state(state)[0].requires_grad
    (True, False)
    """
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


@contextmanager
def exact_float32():
    """cuDNN without TF32 inside the block: on a GPU its default TF32 rounds a fused RNN's
    products to 10 bits of mantissa, and then a trace, a prediction and a sample of one
    model would disagree. Nothing changes on a CPU.

    >>> with exact_float32():
    ...     torch.backends.cudnn.allow_tf32
    False
    """
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved
