"""How much does where evaluation starts cost? Our burn-in streams against char-rnn's cold ones.

    VURN_DATA=../shared/data python scripts/eval_start.py     # writes results/eval_start.json

vurn scores a split as 100 parallel streams, each started 200 characters early so that its
first counted character has context (:func:`lab.train.char_losses`); char-rnn scores 100
streams that each start from a zero state. One continuous run over the whole split is the
reference both approximate. For the shipped War and Peace LSTM (Table 1's LSTM2-512) on the
test split: the mean loss of each, and their differences from the continuous run.
"""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lab.checkpoint import code_commit  # noqa: E402
from lab.corpus import load_corpus  # noqa: E402
from lab.pretrained import load_model  # noqa: E402
from lab.train import char_losses  # noqa: E402


def main() -> None:
    started, t0 = datetime.now(timezone.utc), time.time()
    model, meta = load_model("war_and_peace_lstm")
    ids = load_corpus(meta["corpus"]).split_ids("test")
    with torch.no_grad():
        loss = {"burn_in_200": char_losses(model, ids),                     # vurn's default
                "cold_streams": char_losses(model, ids, burn_in=0),         # char-rnn's
                "continuous": char_losses(model, ids, streams=1)}           # one run, no cut
    mean = {k: round(v.double().mean().item(), 6) for k, v in loss.items()}
    out = {"model": "war_and_peace_lstm (Table 1's war_and_peace-lstm2-512)", "split": "test",
           "characters": int(ids.numel()) - 1, "mean_loss": mean,
           "minus_continuous": {k: float(f"{mean[k] - mean['continuous']:.2g}") for k in mean if k != "continuous"},
           "command": "python scripts/eval_start.py", "code_commit": code_commit(), "device": "cpu",
           "started": started.isoformat(timespec="seconds"), "seconds": round(time.time() - t0, 1)}
    (ROOT / "results" / "eval_start.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
