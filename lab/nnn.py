"""n-NN baselines (paper §4.3): one tanh hidden layer over the last n one-hot characters.

The model reads the n characters before position t as n one-hot vectors side by side
(an n x V input), applies one tanh hidden layer of ``hidden`` units and a softmax over
the next character. A one-hot input times a matrix is a row lookup, so the first layer
is the sum of n position-specific rows of its weight (plus a bias): exactly the dense
layer over the concatenated one-hot vectors, without materialising them.

Training follows the paper's protocol as far as it carries over (there is no state to
carry): RMSProp with lr 2e-3, minibatches of 10,000 characters by default (the RNNs'
100 x 100), uniform +-0.08 initialisation, gradient clip 5, lr x 0.95 per epoch after
epoch 10, and the epoch with the best validation loss is kept. The hidden size is chosen
on validation (:func:`select_hidden`). The paper gives no batch size for its n-NNs: the
committed Table 2 (``scripts/nnn_table2.py``) used minibatches of 1,000, which learn more
in the 10 epochs a CPU allowed.

    >>> import torch
    >>> ids = torch.tensor([0, 1, 2] * 400)                       # "abcabc...": 2 characters tell all
    >>> model, log = fit(NNNConfig(n=2, hidden=16, epochs=30, batch=200, lr=1e-2), ids[:900], ids[900:])
    >>> log[-1]["val_loss"] < 0.05
    True
    >>> round(float(char_probs(model, ids, 900, 903).min()), 2)
    1.0
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lab.checks import is_integer


@dataclass(frozen=True)
class NNNConfig:
    """An n-NN and how to train it: the paper's optimiser settings (RMSProp, learning rate 2e-3
    decayed by 0.95 each epoch after the 10th, clipping at 5, init in +-0.08) on minibatches of 10,000
    windows; ``epochs`` and the early stop after ``patience`` epochs without a better
    validation loss are ours (the paper gives none for its n-NNs).

    >>> cfg = NNNConfig(n=3, hidden=128)
    >>> cfg.lr, cfg.batch, cfg.epochs, cfg.patience
    (0.002, 10000, 20, 2)
    """

    n: int
    hidden: int
    epochs: int = 20
    batch: int = 10_000
    lr: float = 2e-3
    lr_decay: float = 0.95
    decay_after: int = 10
    rmsprop_alpha: float = 0.95
    init_scale: float = 0.08
    grad_clip: float = 5.0
    seed: int = 0
    patience: int = 2          # stop after this many epochs without a better validation loss

    def __post_init__(self):
        for name in ("n", "hidden", "batch", "epochs", "decay_after", "seed", "patience"):
            value = getattr(self, name)
            if not is_integer(value):
                raise TypeError(f"{name} must be a whole number, got {value!r}")
        if self.n < 1:
            raise ValueError(f"n is the number of context characters, at least 1; got {self.n}")
        if self.hidden < 1 or self.batch < 1 or self.epochs < 1:
            raise ValueError("hidden, batch and epochs must be positive")


class NNN(nn.Module):
    """tanh(W [onehot(x_{t-n}); ...; onehot(x_{t-1})] + b) -> softmax over the next character.

    >>> model = NNN(n=3, vocab_size=5, hidden=8)
    >>> tuple(model.inp.weight.shape)           # W transposed: one row per (position, character)
    (15, 8)
    """

    def __init__(self, n: int, vocab_size: int, hidden: int):
        super().__init__()
        self.n, self.vocab_size, self.hidden = n, vocab_size, hidden
        self.inp = nn.Embedding(n * vocab_size, hidden)   # row (i * V + c): character c at position i
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.out = nn.Linear(hidden, vocab_size)
        self.register_buffer("offsets", torch.arange(n) * vocab_size, persistent=False)

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) for contexts ``ctx`` (B, n) of character ids, oldest first.

        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model = NNN(n=2, vocab_size=5, hidden=8)
        >>> model(torch.tensor([[0, 1], [4, 4], [2, 3]])).shape      # three contexts of 2 characters
        torch.Size([3, 5])
        """
        return self.out(torch.tanh(self.inp(ctx + self.offsets).sum(1) + self.bias))


def contexts(ids: torch.Tensor, n: int, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The n characters before each position in [start, end) of ``ids``, and the characters there.

    Positions with fewer than n characters before them (start < n) are left out.

    >>> ctx, y = contexts(torch.tensor([5, 6, 7, 8]), 2, 0, 4)
    >>> ctx.tolist(), y.tolist()
    ([[5, 6], [6, 7]], [7, 8])
    """
    if end > len(ids):
        raise ValueError(f"end {end} is past the text's {len(ids)} characters")
    start = max(start, n)
    if end <= start:
        raise ValueError(f"no position in [{start}, {end}) has {n} characters before it")
    windows = ids[start - n:end].unfold(0, n + 1, 1)
    return windows[:, :n], windows[:, n]


@torch.no_grad()
def char_probs(model: NNN, ids: torch.Tensor, start: int, end: int, batch: int = 65_536) -> torch.Tensor:
    """Probability the model gives to each actual character in [start, end) of ``ids`` (start >= n).

    >>> import torch
    >>> ids = torch.tensor([0, 1, 2, 1] * 100)            # "abcbabcb...": after "b" comes "a" or "c"
    >>> model, log = fit(NNNConfig(n=1, hidden=8, epochs=20, batch=50, lr=1e-2), ids[:300], ids[300:])
    >>> [round(p, 1) for p in char_probs(model, ids, 300, 304).tolist()]   # "a", "b", "c", "b"
    [0.5, 1.0, 0.5, 1.0]
    """
    model.eval()
    ctx, y = contexts(ids, model.n, start, end)
    out = []
    for a in range(0, len(y), batch):
        logp = torch.log_softmax(model(ctx[a:a + batch]), -1)
        out.append(logp.gather(1, y[a:a + batch, None])[:, 0].exp())
    return torch.cat(out)


@torch.no_grad()
def loss(model: NNN, ids: torch.Tensor, start: int, end: int) -> float:
    """Mean cross-entropy (nats per character) on [start, end) of ``ids``.

    >>> import torch
    >>> ids = torch.tensor([0, 1, 2, 1] * 100)            # "abcbabcb...": after "b" comes "a" or "c"
    >>> model, log = fit(NNNConfig(n=1, hidden=8, epochs=20, batch=50, lr=1e-2), ids[:300], ids[300:])
    >>> round(loss(model, ids, 300, 400), 2)                # the best possible: ln(2) / 2 = 0.35
    0.35
    """
    return float(-char_probs(model, ids, start, end).log().mean())


def fit(cfg: NNNConfig, train_ids: torch.Tensor, val_ids: torch.Tensor, vocab_size: int | None = None,
        context: torch.Tensor | None = None, max_seconds: float | None = None,
        progress: bool = False) -> tuple[NNN, list[dict]]:
    """Train an n-NN on ``train_ids``, keep the epoch best on ``val_ids``; returns (model, log).

    ``context`` is the text just before ``val_ids`` (by default the end of ``train_ids``),
    so that every validation character has its n characters of context.

    >>> import torch
    >>> ids = torch.tensor([0, 1, 2, 1] * 100)            # "abcbabcb...": after "b" comes "a" or "c"
    >>> model, log = fit(NNNConfig(n=1, hidden=8, epochs=20, batch=50, lr=1e-2), ids[:300], ids[300:])
    >>> len(log), round(log[0]["val_loss"], 2), round(log[-1]["val_loss"], 2)
    (20, 0.83, 0.35)
    >>> sorted(log[-1])
    ['epoch', 'lr', 'seconds', 'train_loss', 'val_loss']
    """
    for name, ids in (("train_ids", train_ids), ("val_ids", val_ids)):
        if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.dtype.is_floating_point:
            raise TypeError(f"{name} must be a 1-D tensor of character ids (e.g. corpus.split_ids('train')), "
                            f"got {type(ids).__name__}")
        if len(ids) == 0:
            raise ValueError(f"{name} is empty: an n-NN needs text to train and validate on")
    if len(train_ids) <= cfg.n:
        raise ValueError(f"train_ids has {len(train_ids)} characters: an n-NN with n = {cfg.n} needs more than n")
    vocab_size = vocab_size or int(max(train_ids.max(), val_ids.max())) + 1
    top = int(max(train_ids.max(), val_ids.max()))
    if top >= vocab_size or int(min(train_ids.min(), val_ids.min())) < 0:
        raise ValueError(f"character ids must lie in 0..{vocab_size - 1} (vocab_size {vocab_size}); the ids go up "
                         f"to {top}: give the corpus's vocabulary size")
    torch.manual_seed(cfg.seed)
    model = NNN(cfg.n, vocab_size, cfg.hidden)
    for p in model.parameters():
        nn.init.uniform_(p, -cfg.init_scale, cfg.init_scale)
    opt = torch.optim.RMSprop(model.parameters(), lr=cfg.lr, alpha=cfg.rmsprop_alpha)
    before = (train_ids if context is None else context)[-cfg.n:]
    val_all = torch.cat([before, val_ids])
    x, y = contexts(train_ids, cfg.n, 0, len(train_ids))
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, log, t0, stale = math.inf, None, [], time.perf_counter(), 0
    for epoch in range(1, cfg.epochs + 1):
        lr = cfg.lr * cfg.lr_decay ** max(0, epoch - cfg.decay_after)
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        order = torch.randperm(len(y), generator=gen)
        total = 0.0
        for a in range(0, len(y), cfg.batch):
            idx = order[a:a + cfg.batch]
            batch_loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            for p in model.parameters():
                p.grad.clamp_(-cfg.grad_clip, cfg.grad_clip)
            opt.step()
            total += float(batch_loss.detach()) * len(idx)
        val = loss(model, val_all, len(before), len(val_all))
        log.append({"epoch": epoch, "lr": lr, "train_loss": total / len(y), "val_loss": val,
                    "seconds": time.perf_counter() - t0})
        if progress:
            print(f"  n={cfg.n} hidden={cfg.hidden} epoch {epoch}: train {total / len(y):.4f} val {val:.4f}")
        if val < best:
            best, stale = val, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if not np.isfinite(val) or stale >= cfg.patience:
            break
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
    if best_state is None:   # the first epoch already diverged: there is nothing to keep
        raise ValueError(f"the {cfg.n}-NN diverged: validation loss {log[0]['val_loss']} after epoch 1 at "
                         f"lr {cfg.lr:g}; train again with a smaller lr")
    model.load_state_dict(best_state)
    return model.eval(), log


def select_hidden(n: int, sizes, corpus, test: bool = True, max_seconds: float | None = None,
                  progress: bool = False, **cfg) -> tuple[NNN, list[dict]]:
    """Train an n-NN of each hidden size on ``corpus`` and keep the best on validation.

    Returns (best model, one row per size: n, hidden, epochs, val_loss, test_loss of the
    chosen one only, seconds, chosen).

        >>> from lab.corpus import Corpus
        >>> corpus = Corpus.from_text("toy", "abcb" * 150)
        >>> model, rows = select_hidden(1, [2, 8], corpus, epochs=3, batch=100, lr=1e-2)
        >>> [(r["hidden"], round(r["val_loss"], 2), r["chosen"]) for r in rows]
        [(2, 0.78, False), (8, 0.52, True)]
        >>> model.hidden
        8

    On the paper's corpus:

        >>> from lab.corpus import load_corpus                                   # doctest: +SKIP
        >>> model, rows = select_hidden(3, [128, 512], load_corpus("war_and_peace"))  # doctest: +SKIP
    """
    sizes = list(sizes)
    if not sizes:
        raise ValueError("give at least one hidden size to try, e.g. [128, 512]")
    train, val = corpus.split_ids("train"), corpus.split_ids("val")
    rows, best = [], None
    for hidden in sizes:
        model, log = fit(NNNConfig(n=n, hidden=hidden, **cfg), train, val, len(corpus.vocab),
                         max_seconds=max_seconds, progress=progress)
        val_loss = min(r["val_loss"] for r in log)
        rows.append({"n": n, "hidden": hidden, "epochs": len(log), "val_loss": val_loss,
                     "seconds": round(log[-1]["seconds"], 1), "test_loss": float("nan"), "chosen": False})
        if best is None or val_loss < best[0]:
            best = (val_loss, model, rows[-1])
    _, model, row = best
    row["chosen"] = True
    if test:
        val_end = torch.cat([val[-n:], corpus.split_ids("test")])
        row["test_loss"] = loss(model, val_end, n, len(val_end))
    return model, rows
