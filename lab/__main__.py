"""vurn's command line: ``python -m lab`` (or ``vurn``) train | eval | sample | grid.

    python -m lab train --corpus war_and_peace --kind lstm --layers 2 --row 512 --run-dir runs/wp
    python -m lab train --run-dir runs/wp --resume
    python -m lab eval runs/wp --split test
    python -m lab sample war_and_peace_lstm -n 300 --prime "The " --temperature 0.8 --seed 1
    python -m lab grid run grid --parallel 8 --budget 3600 && python -m lab grid collect grid
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from lab.checkpoint import CheckpointError, check_corpus
from lab.corpus import CorpusError
from lab.train import TrainConfig, TrainingDiverged, option_type

HELP = {
    "corpus": "corpus: war_and_peace, linux_kernel, or a path to any UTF-8 text file",
    "kind": "cell type: rnn, lstm or gru",
    "layers": "number of recurrent layers, 1 to 3",
    "row": "Table 1 row (64, 128, 256, 512): the width is chosen so that the model has "
           "about the parameters of a 1-layer LSTM this wide",
    "width": "an explicit width for every layer (overrides --row)",
    "dropout": "dropout between layers and before the output layer",
    "epochs": "passes over the training split",
    "batch": "parallel streams per batch",
    "seq_len": "characters per truncated-BPTT step (the state is carried across steps)",
    "lr": "RMSProp learning rate",
    "lr_decay": "learning-rate factor per epoch once decay starts",
    "decay_after": "epochs at the full learning rate before the decay starts",
    "rmsprop_alpha": "RMSProp's moving-average factor for squared gradients",
    "init_scale": "weights start uniform in [-init_scale, init_scale]",
    "grad_clip": "every gradient element is clamped to [-grad_clip, grad_clip]",
    "seed": "random seed (initialisation and dropout)",
    "checkpoint_every": "also checkpoint every this many steps inside an epoch (0: only at epoch ends)",
    "snapshot_every": "keep the model's weights every this many steps in RUN_DIR/snapshots (training dynamics)",
    "max_train_chars": "use only this many characters of the training split (quick runs)",
    "layout": "how the text is split: contiguous (train, val, test in order) or char-rnn (its loader's "
              "100 rows, each cut into train, val and test; to compare with the paper)",
}


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model with the paper's protocol",
                       description="Train a character-level model. Defaults are the paper's protocol.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in fields(TrainConfig):
        typ = option_type(f)
        # no argparse default: with --resume, an option left out is the run's own, not the default
        p.add_argument("--" + f.name.replace("_", "-"), type=typ, default=argparse.SUPPRESS,
                       help=f"{HELP[f.name]} (default: {f.default})")
    p.add_argument("--run-dir", required=True, help="folder for checkpoints and the metrics log")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir exactly where it stopped, with its own options "
                        "(only --epochs may change)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    p.add_argument("--data", default=None, help="folder holding the corpora (default: $VURN_DATA, then the cache)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop cleanly after this much wall time; continue later with --resume")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="loss of a checkpoint on a split, in nats per character",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", help="a shipped model name, a .safetensors file or a run folder")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="which split to score")
    p.add_argument("--data", default=None, help="folder holding the corpora")
    p.add_argument("--corpus", default=None, metavar="PATH",
                   help="the text file the model was trained on, when it is not where training found it "
                        "(moved, or named by a relative path from another folder); its text is checked")
    p.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="sample text from a model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", help="a shipped model name, a .safetensors file or a run folder")
    p.add_argument("-n", type=int, default=500, help="characters to sample")
    p.add_argument("--prime", default="\n", help="text the model reads before sampling (default: %(default)r)")
    p.add_argument("--temperature", type=float, default=1.0, help="<1 sharper, >1 more random")
    p.add_argument("--seed", type=int, default=None, help="random seed for a repeatable sample")
    p.add_argument("--device", default=None, help="cpu or cuda")


def _add_grid(sub) -> None:
    from lab.grid import add_arguments
    add_arguments(sub.add_parser("grid", help="Table 1: train, resume and collect the 72-model grid",
                                 description="Table 1's grid (lab.grid): list, run, collect, pack, restore, keep, adopt, rates."))


def _grid(args) -> int:
    from lab.grid import main as grid_main
    return grid_main(args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="vurn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub), _add_eval(sub), _add_sample(sub), _add_grid(sub)
    args = parser.parse_args(argv)
    try:
        return {"train": _train, "eval": _eval, "sample": _sample, "grid": _grid}[args.command](args)
    except (CorpusError, CheckpointError, TrainingDiverged, ValueError, FileExistsError, FileNotFoundError,
            PermissionError) as e:
        print(f"vurn {args.command}: error: {e}", file=sys.stderr)
        return 2


def _train(args) -> int:
    from pathlib import Path

    from lab.train import _load_last, train
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    run_dir = Path(args.run_dir)
    if args.resume and (run_dir / "last.safetensors").is_file():  # options left out are the run's; given ones must agree
        given = {**_load_last(run_dir)[1]["train_config"], **given}
    cfg = TrainConfig.from_dict(given)
    summary = train(cfg, args.run_dir, device=args.device, data_dir=args.data, resume=args.resume,
                    progress=not args.quiet, max_seconds=args.max_seconds)
    print(json.dumps(summary, indent=2))
    return 0


def _eval(args) -> int:
    from lab.pretrained import load_model
    from lab.train import TrainConfig, pick_device, split_loss, training_corpus
    device = pick_device(args.device)
    model, meta = load_model(args.checkpoint, device)
    corpus = training_corpus(meta, args.corpus, args.data)
    check_corpus(meta, corpus, args.checkpoint)
    saved = meta.get("train_config") or {}
    layout = saved.get("layout", "contiguous")
    cfg = TrainConfig(layout=layout, batch=saved.get("batch", 100), seq_len=saved.get("seq_len", 100))
    loss = split_loss(model, corpus, args.split, cfg)     # in the layout the model was trained with
    print(json.dumps({"checkpoint": str(args.checkpoint), "split": args.split, "loss_nats_per_char": loss,
                      "layout": layout}))
    return 0


def _sample(args) -> int:
    from lab.pretrained import load_model
    from lab.sample import sample
    from lab.train import pick_device
    model, meta = load_model(args.checkpoint, pick_device(args.device))
    print(args.prime + sample(model, meta["vocab"], args.n, args.prime, args.temperature, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
