"""The paper's t-SNE of the models (§4.1): one point per War and Peace model of the grid.

Each model is the vector of probabilities it gives the correct next character on the test
split (:func:`lab.table1.correct_char_probs`, from its best checkpoint), at every 8th
position; the vectors are embedded in 2-D with t-SNE (:func:`lab.table1.tsne_map`).

The vectors of finished models are kept in ``results/table1/map_vectors.npz``
(:func:`lab.table1.save_vectors`, float16): the grid folder that holds the weights is not
in git, so a later checkout draws the map from them. Weights are looked for in the grid
(``runs/NAME/best.safetensors``), then among the kept checkpoints
(``results/checkpoints/NAME.safetensors``), then for an adopted run at the checkpoint it was
adopted from. The map (``map.csv``: name, kind, layers, row, status, test loss, mean
p(correct), x, y; ``map_provenance.json``) is drawn again only when no model it places
would be left out for want of a vector (``--replace`` overrides); the vectors are saved
either way. A kept vector is used rather than computed again while the weights here are the
ones it was computed from (their ``tensors_sha256``; ``--recompute`` computes every vector). Another corpus than War and Peace writes ``map_CORPUS.csv`` and
``map_vectors_CORPUS.npz``. Only finished models are placed (``--unfinished`` adds those still training,
from their best checkpoint so far; their vectors are not kept).

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
from lab.grid import read_meta
from lab.table1 import (
    VECTOR_STRIDE,
    correct_char_probs,
    default_perplexity,
    find_checkpoint,
    load_table,
    load_vectors,
    orient_map,
    save_vectors,
    tsne_map,
    vector_sources,
)
from lab.train import pick_device


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default=str(ROOT / "runs" / "grid"), help="grid folder (python -m lab grid run)")
    p.add_argument("--corpus", default="war_and_peace")
    p.add_argument("--results", default=str(ROOT / "results" / "table1"))
    p.add_argument("--kept", default=str(ROOT / "results" / "checkpoints"), help="folder of kept checkpoints")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--unfinished", action="store_true", help="also place models still training (best so far)")
    p.add_argument("--replace", action="store_true",
                   help="draw the map even if a model the map.csv there places now has no vector")
    p.add_argument("--recompute", action="store_true",
                   help="compute every vector from its weights, also those kept from the same weights")
    args = p.parse_args(argv)
    started, t0 = datetime.now(timezone.utc), time.time()
    dest = Path(args.results)
    table = load_table(dest / "table1.csv").set_index("name")
    prov = json.loads((dest / "table1_provenance.json").read_text()) if (dest / "table1_provenance.json").is_file() else {}
    adopted = {a["name"]: a["checkpoint"] for a in prov.get("adopted", []) if a.get("checkpoint")}
    wanted = []
    for name, row in table[table.index.str.startswith(f"{args.corpus}-")].iterrows():
        if row.status == "finished" or (args.unfinished and row.status != "not started"):
            wanted.append(name)
    corpus = load_corpus(args.corpus)
    own = "" if args.corpus == "war_and_peace" else f"_{args.corpus}"   # the paper's map is War and Peace's
    cache, map_csv, map_prov = dest / f"map_vectors{own}.npz", dest / f"map{own}.csv", dest / f"map{own}_provenance.json"
    kept, kept_sources = load_vectors(cache, corpus), vector_sources(cache)
    device = pick_device(args.device)
    vectors, computed, sources = {}, [], {}
    for name in wanted:
        path = find_checkpoint(name, [args.grid, args.kept])
        if path is None and name in adopted and (ROOT / adopted[name]).is_file():
            path = ROOT / adopted[name]          # an adopted run: the checkpoint it was adopted from
        sha = (read_meta(path) or {}).get("tensors_sha256") if path is not None else None
        if path is not None and (args.recompute or name not in kept or sha is None or kept_sources.get(name) != sha):
            full = correct_char_probs(path, device=device, corpus=corpus)   # checked against the corpus
            vectors[name], sources[name] = full[::VECTOR_STRIDE].astype(np.float16), sha
            computed.append(name)
            print(f"{name}: mean p(correct) {full.mean():.4f} ({path})", flush=True)
        elif name in kept:
            vectors[name] = kept[name]
        else:
            print(f"{name}: neither weights here nor a kept vector: left out")
    finished = {n: v for n, v in vectors.items() if table.loc[n, "status"] == "finished"}
    # a vector taken from the cache is the kept one: only one computed now can be new, in its values or its weights
    new = [n for n in computed if n in finished and (n not in kept or not np.array_equal(vectors[n], kept[n])
                                                      or sources[n] != kept_sources.get(n))]
    if new:
        known = {**kept_sources, **{n: sources[n] for n in new}}
        save_vectors(cache, {**kept, **finished}, corpus, sources={n: sha for n, sha in known.items() if sha})
        print(f"kept the vectors of {len({**kept, **finished})} models in {cache}")
    names = [n for n in wanted if n in vectors]
    placed = set(pd.read_csv(map_csv).name) if map_csv.is_file() else set()
    gone = sorted(placed - set(names))
    if gone and not args.replace:
        # a grid rebuilt from the committed table (python -m lab grid restore) has no weights of
        # the models trained before it: only their kept vectors can place them again
        sys.exit(f"map not drawn: {map_csv} places {len(placed)} models and {len(gone)} of them have "
                 f"neither a vector in {cache.name} nor a best checkpoint here ({', '.join(gone[:3])}"
                 f"{', ...' if len(gone) > 3 else ''}): the map would lose them. Train or restore them, or pass "
                 "--replace to draw a map of only the models that have one")
    if len(names) < 3:
        sys.exit(f"{len(names)} {args.corpus} models to place (finished, with a vector or weights"
                 f"{'' if args.unfinished else '; --unfinished adds those still training'}): t-SNE needs 3 or more")
    probs = np.stack([vectors[n].astype(np.float32) for n in names])
    out = table.loc[names, ["kind", "layers", "row", "status", "test_loss"]].copy()
    xy = orient_map(tsne_map(probs, seed=args.seed), out.row.to_numpy())   # axis 1: model size
    out["mean_p_correct"] = probs.mean(1)
    out["x"], out["y"] = xy[:, 0], xy[:, 1]
    out.rename_axis("name").to_csv(map_csv, float_format="%.6g")
    map_prov.write_text(json.dumps({
        "command": "python " + " ".join([f"scripts/{Path(__file__).name}", *(argv or sys.argv[1:])]),
        "code_commit": code_commit(), "device": str(device), "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.time() - t0, 1), "models": len(names), "test_chars": int(corpus.split_ids("test").numel()) - 1,
        "positions": int(probs.shape[1]), "stride": VECTOR_STRIDE,
        "tsne": {"library": "scikit-learn TSNE", "init": "pca", "random_state": args.seed,
                 "perplexity": default_perplexity(len(names))},
        "vectors": f"probability of the correct next character at every {VECTOR_STRIDE}th test position: "
                   f"computed now from best checkpoints for {len(computed)} models, from {cache.name} for "
                   f"{len(names) - len(computed)}",
    }, indent=1) + "\n")
    print(f"wrote {map_csv} ({len(names)} models)")


if __name__ == "__main__":
    main()
