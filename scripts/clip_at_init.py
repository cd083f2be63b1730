"""Does the gradient clip fire at the start of training? Ours against char-rnn's, on one batch.

    VURN_DATA=../shared/data python scripts/clip_at_init.py     # writes results/clip_at_init.csv

vurn clamps each element of the gradient of the loss averaged over batch and time at 5;
char-rnn clamps the gradient summed over the 100 time steps at 5, which on our scale is a
clamp at 5 / 100 = 0.05. For three row-256 War and Peace models at their initialisation
(uniform +-0.08, seed 0), one batch (the first 100 x 101 characters of the training split):
the largest gradient element and the fraction of elements each clip would change.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lab.corpus import load_corpus  # noqa: E402
from lab.models import CharRNN, ModelConfig, width_for  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    corpus = load_corpus("war_and_peace")
    batch = corpus.split_ids("train")[:100 * 101].view(100, 101)
    rows = []
    for kind, layers in (("rnn", 1), ("lstm", 1), ("gru", 3)):
        torch.manual_seed(0)
        width = width_for(kind, layers, 256, len(corpus.vocab))
        model = CharRNN(ModelConfig(kind, layers, width, len(corpus.vocab)))
        model.init_uniform(0.08)
        logits, _ = model(batch[:, :-1])
        F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1)).backward()
        grad = torch.cat([p.grad.abs().flatten() for p in model.parameters()])
        rows.append({"model": f"{kind}{layers}-256", "width": width, "max_abs_grad": round(grad.max().item(), 4),
                     "clipped_ours (>5)": (grad > 5).float().mean().item(),
                     "clipped_char_rnn (>0.05)": (grad > 0.05).float().mean().item()})
    table = pd.DataFrame(rows)
    table.to_csv(ROOT / "results" / "clip_at_init.csv", index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
