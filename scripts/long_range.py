"""Compute the §4.3 comparisons of the shipped LSTMs with the 20-gram on both test splits.

    VURN_DATA=../shared/data python scripts/long_range.py      # writes results/long_range/

For each corpus: per-character probabilities of the correct character from the LSTM (a
trace of the whole test split) and from the order-20 modified Kneser-Ney n-gram built on
the training split; then the error overlap, the per-character table and, for Linux, the
closing-brace study binned by distance. Also writes the n-gram rows of Table 2.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lab import Session  # noqa: E402
from lab.checkpoint import code_commit  # noqa: E402
from lab.longrange import by_character, closing_brace_bins, error_overlap  # noqa: E402
from lab.ngram import NGramModel  # noqa: E402

OUT = ROOT / "results" / "long_range"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    provenance = {"command": "python scripts/long_range.py", "commit": code_commit(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "corpora": {}}
    table2 = []
    for corpus_name, model_name in (("linux_kernel", "linux_kernel_lstm"), ("war_and_peace", "war_and_peace_lstm")):
        t0 = time.time()
        s = Session.load(model_name)
        corpus = s.corpus
        test = corpus.split("test")
        tr = s.trace(split="test")
        p_lstm = tr["prob"][:-1].astype(np.float64)               # p[i] = P(test[i + 1])
        t1 = time.time()
        ngram = NGramModel.fit(corpus.split_ids("train").numpy(), len(corpus.vocab), 20)
        probs = ngram.probs_by_order(corpus.split_ids("test").numpy())   # (21, len - 1)
        val = ngram.loss_by_order(corpus.split_ids("val").numpy())
        t2 = time.time()
        for n in range(1, 21):
            table2.append({"corpus": corpus_name, "model": f"{n}-gram", "n": n, "val_loss": round(float(val[n]), 5),
                           "test_loss": round(float(-np.log(probs[n]).mean()), 5)})
        p20 = probs[20]
        overlap = error_overlap(p_lstm, p20)
        (OUT / f"{corpus_name}_error_overlap.json").write_text(json.dumps(
            {"a": model_name, "b": "20-gram", "threshold": 0.5, **overlap}, indent=2) + "\n")
        by_character(test, p_lstm, p20, min_count=20).round(5).to_csv(OUT / f"{corpus_name}_by_character.csv", index=False)
        if corpus_name == "linux_kernel":
            closing_brace_bins(test, p_lstm, p20).round(5).to_csv(OUT / "linux_kernel_closing_braces.csv", index=False)
        provenance["corpora"][corpus_name] = {
            "lstm": model_name, "lstm_test_loss": float(-np.log(p_lstm).mean()), "trace_seconds": round(t1 - t0, 1),
            "ngram_seconds": round(t2 - t1, 1), "trace_info": {k: v for k, v in tr.info.items() if k != "final_state"}}
        print(corpus_name, json.dumps(overlap), flush=True)
    import pandas as pd
    pd.DataFrame(table2).to_csv(ROOT / "results" / "table2_ngram.csv", index=False)
    provenance["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (OUT / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
