"""An LSTM on char-rnn's layout of the splits, next to the grid's same model on ours.

    python -m lab train --corpus linux_kernel --kind lstm --layers 1 --row 64 --layout char-rnn \\
        --run-dir runs/layout/linux_kernel-lstm1-64-charrnn      # resumable with --resume
    python scripts/layout_lstm.py runs/layout/linux_kernel-lstm1-64-charrnn --launch-commit C --started T

adds to ``results/split_layout_lstm.json`` (one entry per model: both models' validation and
test loss, the paper's value, the per-epoch validation curve of each) and keeps the run's best checkpoint, with a
card, in ``results/checkpoints/``. The grid's model is Table 1's run of the same name
(``results/table1/``): same options, contiguous splits.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lab.grid import curve  # noqa: E402
from lab.table1 import paper_table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path, help="the finished char-rnn-layout run folder")
    p.add_argument("--launch-commit", required=True, help="the commit the training was launched at")
    p.add_argument("--started", required=True, help="when the training started (UTC)")
    p.add_argument("--device", default="cpu (2 cores)", help="what it trained on")
    args = p.parse_args()
    summary = json.loads((args.run / "summary.json").read_text())
    if not summary.get("finished"):
        sys.exit(f"{args.run} has not finished: resume it with python -m lab train --run-dir {args.run} --resume")
    name = f"{summary['corpus']}-{summary['kind']}{summary['layers']}-{summary['row']}"
    table = pd.read_csv(ROOT / "results" / "table1" / "table1.csv").set_index("name")
    grid = table.loc[name]
    ours_curve = pd.read_csv(ROOT / "results" / "table1" / "curves" / f"{name}.csv")
    layout_curve = pd.DataFrame(curve(args.run))
    paper = float(paper_table(summary["corpus"]).loc[summary["row"], f"{summary['kind'].upper()}{summary['layers']}"])
    result = {
        "model": name, "paper_test_loss": paper,
        "char-rnn layout": {"val_loss": summary["val_loss"], "test_loss": summary["test_loss"],
                            "best_epoch": summary["best_epoch"], "epochs": summary["epochs"],
                            "val_curve": [round(v, 5) for v in layout_curve.val_loss]},
        "contiguous (the grid)": {"val_loss": float(grid.val_loss), "test_loss": float(grid.test_loss),
                                  "best_epoch": int(grid.best_epoch), "device": grid.device,
                                  "val_curve": [round(v, 5) for v in ours_curve.val_loss]},
        "provenance": {"training": f"python -m lab train --corpus {summary['corpus']} --kind {summary['kind']} "
                                   f"--layers {summary['layers']} --row {summary['row']} --layout char-rnn "
                                   f"--device cpu --run-dir {args.run}",
                       "launch_commit": args.launch_commit, "started": args.started, "device": args.device,
                       "elapsed_s": summary["elapsed_s"], "summary_commit": summary["code_commit"],
                       "collected": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "command": "python scripts/layout_lstm.py " + " ".join(sys.argv[1:])},
    }
    out = ROOT / "results" / "split_layout_lstm.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    results[name] = result
    out.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    keep = ROOT / "results" / "checkpoints" / f"{name}-charrnn"
    shutil.copyfile(args.run / "best.safetensors", keep.with_suffix(".safetensors"))
    keep.with_suffix(".json").write_text(json.dumps({**summary, **{k: result["provenance"][k] for k in
                                                     ("training", "launch_commit", "started", "device")}},
                                                    indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "provenance"}, indent=1)[:1500])


if __name__ == "__main__":
    main()
