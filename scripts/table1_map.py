"""The paper's t-SNE of the models (§4.1): one point per War and Peace model of the grid.

Each model is the vector of probabilities it gives the correct next character over the
whole test split (:func:`lab.table1.correct_char_probs`, from its best checkpoint); the
vectors are embedded in 2-D with t-SNE (:func:`lab.table1.tsne_map`). Writes
``results/table1/map.csv`` (name, kind, layers, row, status, test loss, x, y) and
``map_provenance.json`` beside it. Only finished models are placed (``--unfinished``
adds those still training, from their best checkpoint so far).

    python scripts/table1_map.py                         # grid in runs/grid, corpus War and Peace
    python scripts/table1_map.py --grid runs/grid --corpus war_and_peace --device cuda
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.checkpoint import code_commit
from lab.corpus import load_corpus
from lab.table1 import correct_char_probs, default_perplexity, load_table, orient_map, tsne_map
from lab.train import pick_device


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default=str(ROOT / "runs" / "grid"), help="grid folder (python -m lab grid run)")
    p.add_argument("--corpus", default="war_and_peace")
    p.add_argument("--results", default=str(ROOT / "results" / "table1"))
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--unfinished", action="store_true", help="also place models still training (best so far)")
    p.add_argument("--replace", action="store_true",
                   help="write the map even if it places fewer models than the map.csv there now")
    args = p.parse_args(argv)
    started, t0 = datetime.now(timezone.utc), time.time()
    table = load_table(Path(args.results) / "table1.csv").set_index("name")
    runs = sorted(Path(args.grid, "runs").glob(f"{args.corpus}-*/best.safetensors"))
    if len(runs) < 3:
        sys.exit(f"{len(runs)} {args.corpus} models have a best checkpoint in {args.grid}: t-SNE needs 3 or more")
    chosen = []
    for path in runs:
        if path.parent.name not in table.index:  # trained after the last collect
            print(f"{path.parent.name}: not in table1.csv yet (python -m lab grid collect first): left out")
        elif table.loc[path.parent.name, "status"] != "finished" and not args.unfinished:
            print(f"{path.parent.name}: not finished ({table.loc[path.parent.name, 'status']}): left out")
        else:
            chosen.append(path)
    names = [path.parent.name for path in chosen]
    if len(names) < 3:
        sys.exit(f"{len(names)} {args.corpus} models to place (finished and collected"
                 f"{'' if args.unfinished else '; --unfinished adds those still training'}): t-SNE needs 3 or more")
    dest = Path(args.results)
    placed = set(pd.read_csv(dest / "map.csv").name) if (dest / "map.csv").is_file() else set()
    if placed - set(names) and not args.replace:
        # a grid rebuilt from the committed table (python -m lab grid restore) has no weights of
        # the models trained before it: their probability vectors cannot be computed again here
        gone = sorted(placed - set(names))
        sys.exit(f"{dest / 'map.csv'} places {len(placed)} models and {len(gone)} of them have no best checkpoint "
                 f"in {args.grid} ({', '.join(gone[:3])}{', ...' if len(gone) > 3 else ''}): this map would lose "
                 "them. Restore their weights (python -m lab grid restore ... with the archives that hold them) "
                 "or pass --replace to write a map of only the models that have one")
    device = pick_device(args.device)
    corpus = load_corpus(args.corpus)
    probs = []
    for name, path in zip(names, chosen):
        probs.append(correct_char_probs(path, device=device, corpus=corpus))  # checked against the corpus
        print(f"{name}: mean p(correct) {probs[-1].mean():.4f}", flush=True)
    out = table.loc[names, ["kind", "layers", "row", "status", "test_loss"]].copy()
    xy = orient_map(tsne_map(np.stack(probs), seed=args.seed), out.row.to_numpy())   # axis 1: model size
    out["mean_p_correct"] = [float(v.mean()) for v in probs]
    out["x"], out["y"] = xy[:, 0], xy[:, 1]
    out.rename_axis("name").to_csv(dest / "map.csv", float_format="%.6g")
    (dest / "map_provenance.json").write_text(json.dumps({
        "command": "python " + " ".join([f"scripts/{Path(__file__).name}", *(argv or sys.argv[1:])]),
        "code_commit": code_commit(), "device": str(device), "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.time() - t0, 1), "models": len(names), "test_chars": int(probs[0].size),
        "tsne": {"library": "scikit-learn TSNE", "init": "pca", "random_state": args.seed,
                 "perplexity": default_perplexity(len(names))},
        "vectors": "probability of the correct next character at every test position, from best.safetensors",
    }, indent=1) + "\n")
    print(f"wrote {dest / 'map.csv'} ({len(names)} models)")


if __name__ == "__main__":
    main()
