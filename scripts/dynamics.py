"""The paper's training dynamics (§4.3): an LSTM's symmetric KL to the 1..n-NN over training.

Trains an LSTM on War and Peace keeping its weights every ``--snapshot-every`` steps
(resumable: run it again to go on), takes the n-NN baselines that
``scripts/nnn_table2.py`` chose (``runs/nnn``; any n missing is trained here with its
defaults), and writes the KL of every snapshot to every n-NN over the first validation
characters to ``results/dynamics/war_and_peace.csv`` with its provenance.

    python scripts/dynamics.py --row 128 --epochs 3 --snapshot-every 32 --n 1 2 3 4 5
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
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lab.checkpoint import code_commit
from lab.corpus import load_corpus
from lab.dynamics import similarity_over_training
from lab.nnn import NNN, NNNConfig, fit
from lab.train import TrainConfig, Trainer, discard_unresumable


def chosen_hidden(n: int, corpus_name: str, table: Path) -> int | None:
    """The hidden size Table 2 chose for this n (``results/table2_nnn.csv``), None if it has no row."""
    if not table.is_file():
        return None
    with table.open() as f:
        return next((int(r["hidden"]) for r in csv.DictReader(f)
                     if r["corpus"] == corpus_name and int(r["n"]) == n and r["chosen"] == "True"), None)


def nnn_for(n: int, corpus, models: Path, table: Path) -> tuple[NNN, str]:
    """The n-NN Table 2 chose (saved by scripts/nnn_table2.py), else one trained here."""
    hidden = chosen_hidden(n, corpus.name, table)
    found = sorted(models.glob(f"{corpus.name}-{n}nn-*.safetensors"))
    if hidden is not None:
        found = [f for f in found if f.stem.rsplit("-", 1)[1] == str(hidden)]
    elif len(found) > 1:   # several sizes and no table to say which won: do not pick one silently
        raise SystemExit(f"{', '.join(f.name for f in found)}: several {n}-NNs and no row in {table} saying which "
                         "Table 2 chose; remove the others or run scripts/nnn_table2.py again")
    if found:
        hidden = int(found[0].stem.rsplit("-", 1)[1])
        model = NNN(n, len(corpus.vocab), hidden)
        model.load_state_dict(load_file(str(found[0])))
        return model.eval(), found[0].name
    model, _ = fit(NNNConfig(n=n, hidden=256, epochs=6, batch=1000), corpus.split_ids("train"),
                   corpus.split_ids("val"), len(corpus.vocab), progress=True)
    return model, "trained here: hidden 256, 6 epochs at most"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--row", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--snapshot-every", type=int, default=32)
    p.add_argument("--n", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--chars", type=int, default=20_000, help="validation characters compared on")
    p.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "dynamics-wp")
    p.add_argument("--models", type=Path, default=ROOT / "runs" / "nnn")
    p.add_argument("--table", type=Path, default=ROOT / "results" / "table2_nnn.csv",
                   help="Table 2's n-NN rows: which hidden size was chosen for each n")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "dynamics")
    args = p.parse_args(argv)
    corpus = load_corpus("war_and_peace")
    cfg = TrainConfig(corpus="war_and_peace", kind="lstm", layers=args.layers, row=args.row, epochs=args.epochs,
                      snapshot_every=args.snapshot_every)
    resume = (args.run_dir / "last.safetensors").exists()      # an earlier, interrupted run goes on
    discard_unresumable(args.run_dir)                           # one killed in its first epoch starts again
    trainer = Trainer(cfg, args.run_dir, corpus=corpus, device="cpu", resume=resume)
    if trainer.epoch < cfg.epochs:
        trainer.run()
    nnns, sources = {}, {}
    for n in args.n:
        nnns[n], sources[n] = nnn_for(n, corpus, args.models, args.table)
    ids = corpus.split_ids("val")[: args.chars]
    df = similarity_over_training(args.run_dir, nnns, ids, skip=max(100, max(args.n)))
    df["epoch"] = (df.step / trainer.steps_per_epoch).round(3)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "war_and_peace.csv", index=False)
    (args.out / "provenance.json").write_text(json.dumps({
        "command": "python " + " ".join(sys.argv), "commit": code_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)",
        "lstm": {"layers": args.layers, "row": args.row, "width": trainer.model.cfg.width, "epochs": args.epochs,
                 "snapshot_every": args.snapshot_every, "steps_per_epoch": trainer.steps_per_epoch,
                 "val_history": trainer.history,
                 # the whole training's time, over every resumed run (this call alone may have resumed a finished one)
                 "train_seconds": round(trainer.elapsed, 1)},
        "nnn": {str(n): s for n, s in sources.items()}, "compared_on": f"first {len(ids):,} validation characters",
    }, indent=2) + "\n")
    print(df.pivot(index="step", columns="n", values="kl").round(3).to_string())


if __name__ == "__main__":
    main()
