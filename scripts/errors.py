"""The §4.4 error breakdown of two War and Peace LSTMs on the whole test split.

    VURN_DATA=../shared/data OMP_NUM_THREADS=1 python scripts/errors.py    # writes results/errors/

Models: the shipped ``war_and_peace_lstm`` (2 x 307, about 1.26M parameters) and the 1-layer
64-cell LSTM of Table 1's row 64 (``results/checkpoints/war_and_peace-lstm1-64.safetensors``,
about 43K parameters). One order-9 n-gram model and one word count of the training split
serve both. Writes ``breakdown.csv`` (per model and category: count, fraction of errors,
per character), ``steps.csv`` (the peel oracle setting by oracle setting, as the paper's
Figure 6) and ``provenance.json``.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lab import Session  # noqa: E402
from lab.checkpoint import code_commit  # noqa: E402
from lab.errors import OracleConfig, fit_ngram, session_breakdown, word_counts  # noqa: E402

OUT = ROOT / "results" / "errors"
MODELS = {"war_and_peace_lstm": "war_and_peace_lstm",
          "war_and_peace-lstm1-64": str(ROOT / "results" / "checkpoints" / "war_and_peace-lstm1-64.safetensors")}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    config = OracleConfig()
    provenance = {"command": "OMP_NUM_THREADS=1 python scripts/errors.py", "commit": code_commit(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                              "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                              "threads": torch.get_num_threads()},
                  "split": "test", "oracles": config.as_dict(), "models": {}}
    counts, steps, ngram, train_counts = [], [], None, None
    for label, name in MODELS.items():
        t0 = time.time()
        s = Session.load(name)
        if ngram is None:
            ngram = fit_ngram(s.corpus, max(config.orders))
            train_counts = word_counts(s.corpus.split("train"))
        trace = s.trace(split="test")
        t1 = time.time()
        r = session_breakdown(s, "test", config=config, ngram=ngram, train_counts=train_counts, trace=trace)
        t2 = time.time()
        c = r.counts().reset_index()
        c.insert(0, "model", label)
        c.insert(1, "params", r.info["params"])
        c["n_chars"], c["n_errors"], c["error_rate"] = r.n_chars, r.n_errors, r.error_rate
        counts.append(c)
        st = r.steps()
        st.insert(0, "model", label)
        steps.append(st)
        provenance["models"][label] = {
            "checkpoint": name, "params": r.info["params"], "n_chars": r.n_chars, "n_errors": r.n_errors,
            "error_rate": r.error_rate, "test_loss": float(-torch.tensor(r.prob).log().mean()),
            "trace_seconds": round(t1 - t0, 1), "oracle_seconds": round(t2 - t1, 1),
            "trace_info": {k: v for k, v in trace.info.items() if k != "final_state"}}
        print(r, flush=True)
        print(r.counts().round(4).to_string(), flush=True)
    pd.concat(counts).round(6).to_csv(OUT / "breakdown.csv", index=False)
    pd.concat(steps).round(6).to_csv(OUT / "steps.csv", index=False)
    provenance["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (OUT / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
