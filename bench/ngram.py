"""N-gram baseline (Table 2): build orders 1..20 on a training split, score val and test.

Prints the per-order loss table (nats per character, like ``lab.train.evaluate``:
each split scored on its own, every character after the first), the wall time of
building and of scoring, the memory of the count tables and the peak resident
memory of the process. Goal: War and Peace, all orders, < 1 minute, < 8 GB.

    VURN_DATA=../shared/data python bench/ngram.py                 # War and Peace
    VURN_DATA=../shared/data python bench/ngram.py --linux         # and the Linux kernel
    python bench/ngram.py --corpus linux_kernel --max-order 12
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lab.corpus import load_corpus  # noqa: E402
from lab.ngram import MAX_ORDER, NGramModel  # noqa: E402


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # Linux: KiB


def run(name: str, max_order: int) -> dict:
    t0 = time.perf_counter()
    corpus = load_corpus(name)
    train, val, test = (corpus.split_ids(s).numpy() for s in ("train", "val", "test"))
    t1 = time.perf_counter()
    model = NGramModel.fit(train, len(corpus.vocab), max_order)
    t2 = time.perf_counter()
    losses = {s: model.loss_by_order(ids) for s, ids in (("val", val), ("test", test))}
    t3 = time.perf_counter()
    print(f"\n{name}: train {train.size:,} chars, val {val.size:,}, test {test.size:,}, vocab {len(corpus.vocab)}")
    print(f"{'order':>5} {'val':>7} {'test':>7}   (n = context chars; nats/char)")
    for k in range(1, max_order + 1):
        print(f"{k:>5} {losses['val'][k]:7.4f} {losses['test'][k]:7.4f}")
    best = int(np.argmin(losses["val"][1:])) + 1
    print(f"best on val: n = {best}, val {losses['val'][best]:.4f}, test {losses['test'][best]:.4f}")
    fb = {k: np.flatnonzero(v).tolist() for k, v in model.fallback.items()}
    print(f"levels on fallback discounts (0.5, 1, 1.5): raw {fb['raw']}, continuation {fb['cont']}")
    print(f"time: load {t1 - t0:.1f} s, build {t2 - t1:.1f} s, score val+test {t3 - t2:.1f} s, "
          f"build+score {t3 - t1:.1f} s; tables {model.nbytes / 2**30:.2f} GiB, "
          f"peak RSS so far {peak_rss_gib():.2f} GiB")
    return {"corpus": name, "orders": list(range(1, max_order + 1)),
            "val": losses["val"][1:].round(5).tolist(), "test": losses["test"][1:].round(5).tolist(),
            "build_s": round(t2 - t1, 2), "score_s": round(t3 - t2, 2),
            "tables_gib": round(model.nbytes / 2**30, 3), "peak_rss_gib": round(peak_rss_gib(), 3)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="war_and_peace", help="war_and_peace, linux_kernel or a text file")
    ap.add_argument("--linux", action="store_true", help="also run linux_kernel after the corpus")
    ap.add_argument("--max-order", type=int, default=MAX_ORDER)
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)
    results = [run(args.corpus, args.max_order)]
    if args.linux and args.corpus != "linux_kernel":
        results.append(run("linux_kernel", args.max_order))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
