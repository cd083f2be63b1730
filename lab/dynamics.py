"""Training dynamics (paper §4.3): how like a 1-NN, 2-NN, ... is the LSTM as it learns?

For weights saved during training (``TrainConfig.snapshot_every``, files
``RUN_DIR/snapshots/step-*.safetensors``) and a set of n-NN baselines (:mod:`lab.nnn`),
the mean symmetric KL divergence between the LSTM's and each n-NN's next-character
distributions over one text: the paper's picture is an LSTM that first behaves like the
1-NN, then moves on to longer contexts.

    >>> import torch
    >>> p = torch.tensor([[0.5, 0.5], [0.9, 0.1]]).log()
    >>> round(float(symmetric_kl(p, p)), 6), round(float(symmetric_kl(p, p.flip(1))), 3)
    (0.0, 1.758)
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import torch

from lab.checkpoint import load_checkpoint
from lab.models import CharRNN, ModelConfig
from lab.nnn import NNN, contexts

_STEP = re.compile(r"step-(\d+)\.safetensors$")


def symmetric_kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(p || q) + KL(q || p), for log-probabilities (N, V).

    >>> p, q = torch.tensor([[0.5, 0.5]]).log(), torch.tensor([[0.9, 0.1]]).log()
    >>> round(float(symmetric_kl(p, q)), 3), round(float(symmetric_kl(q, p)), 3)
    (0.879, 0.879)
    """
    if logp.shape != logq.shape:
        raise ValueError(f"the distributions differ in shape: {tuple(logp.shape)} vs {tuple(logq.shape)}")
    return ((logp.exp() - logq.exp()) * (logp - logq)).sum(-1).mean()


def snapshots(run_dir) -> list[tuple[int, Path]]:
    """(step, path) of every snapshot a run kept, in order of step.

    >>> import tempfile
    >>> from lab.checkpoint import save_checkpoint
    >>> run = Path(tempfile.mkdtemp())
    >>> for step in (100, 20):
    ...     save_checkpoint(run / "snapshots" / f"step-{step:07d}.safetensors", {"w": torch.zeros(1)}, {})
    >>> [(step, path.name) for step, path in snapshots(run)]
    [(20, 'step-0000020.safetensors'), (100, 'step-0000100.safetensors')]
    """
    folder = Path(run_dir) / "snapshots"
    found = sorted((int(m.group(1)), p) for p in folder.glob("step-*.safetensors") if (m := _STEP.search(p.name)))
    if not found:
        raise FileNotFoundError(f"no snapshots in {folder}: train with --snapshot-every N to keep them")
    return found


@torch.no_grad()
def lstm_log_probs(model: CharRNN, ids: torch.Tensor) -> torch.Tensor:
    """log P(next character) after each of ``ids`` (one stream from a zero state): (T, V).

    >>> _ = torch.manual_seed(0)
    >>> logp = lstm_log_probs(CharRNN(ModelConfig("lstm", 1, 8, 5)), torch.tensor([0, 1, 2, 3, 4, 0]))
    >>> tuple(logp.shape), logp.exp().sum(-1).round(decimals=4).tolist()
    ((6, 5), [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    """
    model.eval()
    logits, _ = model(ids[None])
    return torch.log_softmax(logits[0].float(), -1)


@torch.no_grad()
def nnn_log_probs(model: NNN, ids: torch.Tensor) -> torch.Tensor:
    """log P(next character) after each of ``ids`` from position n - 1 on: (T - n + 1, V).

    >>> _ = torch.manual_seed(0)
    >>> logq = nnn_log_probs(NNN(2, 5, 8), torch.tensor([0, 1, 2, 3, 4, 0]))   # a 2-NN, 5 characters
    >>> tuple(logq.shape), logq.exp().sum(-1).round(decimals=4).tolist()
    ((5, 5), [1.0, 1.0, 1.0, 1.0, 1.0])
    """
    model.eval()
    padded = torch.cat([ids, ids[-1:]])                   # a dummy target for the last position
    ctx, _ = contexts(padded, model.n, model.n, len(padded))
    return torch.log_softmax(model(ctx), -1)


def similarity_over_training(run_dir, nnns: dict[int, NNN], ids: torch.Tensor, skip: int = 100) -> pd.DataFrame:
    """Symmetric KL between every snapshot of a run and every n-NN, over ``ids``.

    The first ``skip`` predictions (and those without n characters of context) are left
    out, so every model predicts the same characters from a warmed-up state. One row per
    (step, n): step, n, kl.

    >>> import tempfile
    >>> from lab.checkpoint import save_checkpoint
    >>> _ = torch.manual_seed(0)
    >>> cfg, run = ModelConfig("lstm", 1, 8, 5), Path(tempfile.mkdtemp())
    >>> for step in (20, 100):
    ...     save_checkpoint(run / "snapshots" / f"step-{step:07d}.safetensors", CharRNN(cfg).state_dict(),
    ...                     {"model_config": cfg.to_dict()})
    >>> df = similarity_over_training(run, {1: NNN(1, 5, 8), 2: NNN(2, 5, 8)}, torch.randint(0, 5, (40,)), skip=10)
    >>> df.round(3)
       step  n     kl
    0    20  1  0.126
    1    20  2  0.163
    2   100  1  0.110
    3   100  2  0.175
    """
    if not nnns:
        raise ValueError("give at least one n-NN: {n: model}")
    if skip < max(nnns) - 1 or skip >= len(ids):
        raise ValueError(f"skip must be at least {max(nnns) - 1} (the longest context) and less than the text")
    theirs = {n: nnn_log_probs(m, ids)[skip - (n - 1):] for n, m in nnns.items()}
    rows = []
    for step, path in snapshots(run_dir):
        tensors, meta = load_checkpoint(path)
        model = CharRNN(ModelConfig.from_dict(meta["model_config"]))
        model.load_state_dict(tensors)
        ours = lstm_log_probs(model, ids)[skip:]
        for n, logq in theirs.items():
            rows.append({"step": step, "n": n, "kl": float(symmetric_kl(ours, logq))})
    return pd.DataFrame(rows)
