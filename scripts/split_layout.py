"""How much of a test loss is the split's layout? vurn's contiguous splits against char-rnn's.

    VURN_DATA=../shared/data python scripts/split_layout.py     # writes results/split_layout.csv

vurn splits each corpus contiguously (train, then val, then test: DESIGN.md). char-rnn's
loader, which the paper's models were most likely trained with, cuts the text into 100
rows and gives every row's first 80% (Linux: 90%) to train and its last 10% (5%) to test,
so its test split is 100 short pieces from all over the text (``Corpus.charrnn_pieces``).
Retraining the grid on the other layout is out of reach, but an n-gram is cheap: this fits
the order-20 modified Kneser-Ney model (lab.ngram) on each layout's train split and scores
its val and test splits, each piece from its own start. The train pieces are joined for
counting (99 joins: a few thousand of millions of windows span one).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lab.checkpoint import code_commit  # noqa: E402
from lab.corpus import load_corpus  # noqa: E402
from lab.ngram import NGramModel  # noqa: E402

ORDERS = (1, 2, 3, 5, 7, 9, 20)


def pieces(corpus, layout: str, split: str) -> list[np.ndarray]:
    if layout == "contiguous":
        return [corpus.split_ids(split).numpy()]
    return [p.numpy() for p in corpus.charrnn_pieces(split)]


def piece_losses(model: NGramModel, parts: list[np.ndarray]) -> np.ndarray:
    """Mean loss (nats/char) of every order 0..20 over all pieces, each scored from its own start."""
    probs = np.concatenate([model.probs_by_order(p) for p in parts], axis=1)
    return -np.log(probs).mean(axis=1)


def main() -> None:
    rows = []
    provenance = {"command": "python scripts/split_layout.py", "commit": code_commit(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": {}}
    for name in ("war_and_peace", "linux_kernel"):
        corpus = load_corpus(name)
        for layout in ("contiguous", "char-rnn"):
            t0 = time.time()
            train = np.concatenate(pieces(corpus, layout, "train"))
            model = NGramModel.fit(train, len(corpus.vocab), max(ORDERS))
            val, test = (piece_losses(model, pieces(corpus, layout, s)) for s in ("val", "test"))
            for n in ORDERS:
                rows.append({"corpus": name, "layout": layout, "n": n, "train_chars": len(train),
                             "val_loss": round(float(val[n]), 5), "test_loss": round(float(test[n]), 5)})
            provenance["seconds"][f"{name}/{layout}"] = round(time.time() - t0, 1)
            print(name, layout, {n: round(float(test[n]), 3) for n in ORDERS}, flush=True)
    out = ROOT / "results" / "split_layout.csv"
    pd.DataFrame(rows).to_csv(out, index=False)
    provenance["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (ROOT / "results" / "split_layout.provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
