"""Turn GPU training runs into the shipped models: float16 weights, re-scored, with a card.

    python scripts/ship_models.py RUNS_DIR [RUNS_DIR ...]

Picks, per corpus, the run with the lowest validation loss among those named in
CANDIDATES, stores its best checkpoint as float16 in lab/pretrained/ (the 8 MB budget
for both models rules out float32), scores the stored weights on val and test on this
machine, and writes a model card next to it. Also writes results/shipped/*.csv: every
candidate run's per-epoch curve and the dropout selection table.
"""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lab.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from lab.corpus import load_corpus  # noqa: E402
from lab.grid import curve  # noqa: E402  (per-epoch curve from metrics.jsonl)
from lab.pretrained import load_model  # noqa: E402
from lab.table1 import LINE_ENDING  # noqa: E402
from lab.train import evaluate  # noqa: E402

# run name -> (corpus, commit the GPU run used, budget in seconds given to it)
CANDIDATES = {
    "wp-lstm2-512-d10": ("war_and_peace", "f5b9fea2a808e00bd66d123f958c5098caefda9f", 370, 1),
    "wp-lstm2-512-d25": ("war_and_peace", "f5b9fea2a808e00bd66d123f958c5098caefda9f", 370, 1),
    "wp-lstm2-512-d50": ("war_and_peace", "2f4bf9ac182769895ce2429a5629f17614d4c4f9", 255, 2),
    "lk-lstm2-512-d10": ("linux_kernel", "f5b9fea2a808e00bd66d123f958c5098caefda9f", 370, 1),
    "lk-lstm2-512-d30": ("linux_kernel", "2f4bf9ac182769895ce2429a5629f17614d4c4f9", 255, 2),
    "lk-lstm2-512-d50": ("linux_kernel", "2f4bf9ac182769895ce2429a5629f17614d4c4f9", 255, 2),
}
PAPER = {"war_and_peace": (1.092, "LSTM2, row 512"), "linux_kernel": (0.840, "LSTM2, row 512")}


def main(dirs: list[str]) -> None:
    runs = {p.name: p for d in dirs for p in Path(d).iterdir() if p.name in CANDIDATES and p.is_dir()}
    out = ROOT / "results" / "shipped"
    out.mkdir(parents=True, exist_ok=True)
    table = []
    for name, run in sorted(runs.items()):
        corpus, commit, budget, runset = CANDIDATES[name]
        _, meta = load_checkpoint(run / "best.safetensors")
        last = json.loads(json.dumps(load_checkpoint(run / "last.safetensors")[1]))
        rows = curve(run)
        with open(out / f"curve_{name}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader(), w.writerows(rows)
        table.append({"run": name, "corpus": corpus, "dropout": meta["train_config"]["dropout"],
                      "epochs_done": last["epoch"], "epochs_planned": meta["train_config"]["epochs"],
                      "best_epoch": meta["epoch"], "best_val_loss": round(meta["val_loss"], 5),
                      "wall_s": last["elapsed_s"], "device": meta["device"], "commit": commit,
                      "runset": runset})
    with open(out / "dropout_selection.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader(), w.writerows(table)
    for corpus_name, model_name in (("war_and_peace", "war_and_peace_lstm"), ("linux_kernel", "linux_kernel_lstm")):
        best = min((r for r in table if r["corpus"] == corpus_name), key=lambda r: r["best_val_loss"])
        ship(runs[best["run"]], best, model_name, [r for r in table if r["corpus"] == corpus_name])


def ship(run: Path, row: dict, model_name: str, rivals: list[dict]) -> None:
    tensors, meta = load_checkpoint(run / "best.safetensors")
    corpus = load_corpus(row["corpus"])
    target = ROOT / "lab" / "pretrained" / f"{model_name}.safetensors"
    cfg = meta["train_config"]
    command = (f"python -m lab train --corpus {cfg['corpus']} --kind {cfg['kind']} --layers {cfg['layers']} "
               f"--row {cfg['row']} --dropout {cfg['dropout']} --device cuda --run-dir runs/{row['run']} "
               f"--max-seconds {CANDIDATES[row['run']][2]}")
    meta.update(code_commit=row["commit"], shipped={
        "name": model_name, "source_run": row["run"], "command": command,
        "script": f"RUNSET={row['runset']} bash scripts/gpu_train_shipped.sh DATA OUT",
        "gpu_val_loss_fp32": meta["val_loss"], "weights": "float16 (trained in float32)"})
    save_checkpoint(target, {k: v.half() for k, v in tensors.items()}, meta)
    model, _ = load_model(target)
    t = time.time()
    val, test = evaluate(model, corpus.split_ids("val")), evaluate(model, corpus.split_ids("test"))
    meta["shipped"].update(val_loss=val, test_loss=test, scored_on="cpu", scoring_s=round(time.time() - t, 1))
    save_checkpoint(target, {k: v.half() for k, v in tensors.items()}, meta)
    paper, paper_cell = PAPER[row["corpus"]]
    factor = LINE_ENDING[row["corpus"]]   # the paper's CRLF text against our LF one
    lines = [
        f"# Model card: `{model_name}`", "",
        f"A {cfg['layers']}-layer LSTM, width {meta['model_config']['width']} (Table 1 row {cfg['row']}: about "
        f"the parameters of a 1-layer LSTM of width {cfg['row']}), "
        f"{sum(v.numel() for v in tensors.values()):,} parameters, trained on `{row['corpus']}` by "
        "vurn's own trainer with the paper's protocol.", "",
        "| | |", "| --- | --- |",
        f"| command | `{command}` |",
        f"| how it was run | `{meta['shipped']['script']}` on a lent GPU machine (several runs shared the GPU) |",
        f"| code commit | `{row['commit']}` |",
        f"| corpus sha256 | `{meta['corpus_sha256']}` |",
        f"| device | {meta['device']} |",
        f"| wall time | {row['wall_s']:.0f} s for {row['epochs_done']} of {row['epochs_planned']} epochs "
        f"(best validation at epoch {row['best_epoch']}) |",
        f"| dropout | {cfg['dropout']}, chosen on validation among {', '.join(str(r['dropout']) for r in rivals)} "
        "(`results/shipped/dropout_selection.csv`) |",
        f"| validation loss | {val:.4f} nats/char (float16 weights, scored on CPU); {meta['val_loss']:.4f} in float32 on the GPU |",
        f"| test loss | {test:.4f} nats/char (float16 weights) |",
        f"| paper, same cell ({paper_cell}) | {paper:.3f}" + (f" (x{factor:.4f} for our LF line ends: {paper * factor:.3f})" if factor != 1 else "")
        + " |", "",
    ]
    if row["epochs_done"] < row["epochs_planned"]:
        lines += [f"Training stopped at epoch {row['epochs_done']} of {row['epochs_planned']} when the GPU time "
                  "of the session ran out; the run is resumable with `--resume`.", ""]
    target.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
