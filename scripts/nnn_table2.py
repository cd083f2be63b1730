"""Table 2's n-NN rows: for each n, n-NNs of each hidden size, the best on validation scored on test.

Resumable: a (corpus, n) already in the table is skipped, so a run cut short (or split
across machines) goes on where it stopped. Each finished n appends its rows to the CSV
and the run's provenance to the JSON beside it; the chosen model's weights go to
``--models`` (safetensors, not committed).

    python scripts/nnn_table2.py --corpus war_and_peace --n 1 2 3 --sizes 128 512
    python scripts/nnn_table2.py --corpus linux_kernel --n 1 2 3 4 5 6 7 8 9 --device cuda
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lab.checkpoint import code_commit
from lab.corpus import load_corpus
from lab.nnn import select_hidden

FIELDS = ["corpus", "n", "hidden", "epochs", "val_loss", "test_loss", "chosen", "seconds", "device"]


def done(table: Path) -> set[tuple[str, int]]:
    if not table.exists():
        return set()
    with table.open() as f:
        return {(r["corpus"], int(r["n"])) for r in csv.DictReader(f)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="war_and_peace or linux_kernel")
    p.add_argument("--n", type=int, nargs="+", default=list(range(1, 10)))
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 512], help="hidden sizes to choose from")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-seconds", type=float, default=None, help="per model")
    p.add_argument("--device", default="cpu")
    p.add_argument("--table", type=Path, default=ROOT / "results" / "table2_nnn.csv")
    p.add_argument("--models", type=Path, default=ROOT / "runs" / "nnn")
    args = p.parse_args(argv)
    corpus = load_corpus(args.corpus)
    device = torch.device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.models.mkdir(parents=True, exist_ok=True)
    for n in args.n:
        if (corpus.name, n) in done(args.table):
            print(f"{corpus.name} n={n}: already in {args.table.name}, skipped")
            continue
        t0 = time.time()
        model, rows = select_hidden(n, args.sizes, corpus, epochs=args.epochs, batch=args.batch, lr=args.lr,
                                    max_seconds=args.max_seconds, progress=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(args.models / f"{corpus.name}-{n}nn-{model.hidden}.safetensors"))
        new = not args.table.exists()
        with args.table.open("a", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            if new:
                w.writeheader()
            for r in rows:
                w.writerow({"corpus": corpus.name, **{k: r[k] for k in FIELDS[1:-1]}, "device": where})
        prov = args.table.with_suffix(".provenance.jsonl")
        with prov.open("a") as f:
            f.write(json.dumps({"corpus": corpus.name, "n": n, "command": " ".join(sys.argv), "commit": code_commit(),
                                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": where,
                                "sizes": args.sizes, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
                                "seconds": round(time.time() - t0, 1)}) + "\n")
        best = next(r for r in rows if r["chosen"])
        print(f"{corpus.name} n={n}: hidden {best['hidden']}, val {best['val_loss']:.4f}, "
              f"test {best['test_loss']:.4f} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
