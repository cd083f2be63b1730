"""Table 1 (paper §4.1): train, resume and collect the grid of 72 models.

RNN, LSTM and GRU with 1, 2 and 3 layers, at the four rows (64, 128, 256, 512: each
model has about the parameters of the 1-layer LSTM that wide, see
:func:`lab.models.width_for`), on War and Peace and on the Linux kernel, each trained
with the paper's protocol (:mod:`lab.train`). Smallest models first.

:func:`run_grid` launches up to ``parallel`` ``python -m lab train`` processes at a
time so that several models share one GPU, in ``OUT/runs/NAME``. It is resumable: a
finished run (``summary.json`` with ``finished: true``) is skipped, an unfinished one
(``last.safetensors``) is resumed (exactly on a CPU, see lab.train), before any new run is
started. Under a wall budget it launches nothing that could not run ``min_seconds`` and
gives every child a ``--max-seconds`` that ends ``reserve_seconds`` before the budget, so
children stop cleanly (whatever still runs at the budget's end is killed, and resumes from its last
checkpoint next time). Each invocation appends a provenance record (command, commit,
device, start and end, wall seconds, mean GPU utilisation from ``nvidia-smi``) to
``OUT/grid_log.jsonl``; each run folder's ``grid.json`` keeps its launches.

:func:`collect` turns the folder into a table (one row per model, test loss of the
best validation checkpoint with a block-bootstrap standard error), learning curves
and a provenance JSON. :func:`pack` and :func:`restore` move the state between short
GPU sessions in archives of at most 15 MiB a part (``scripts/gpu_grid.sh``).

Dropout (paper: chosen on validation; one search per model is out of reach) follows
:data:`DROPOUT`: none for rows 64 and 128 (these models underfit 50 epochs of either
corpus, and validation-based best-epoch selection already guards against the rest),
the values chosen on validation for the 2-layer LSTM at row 512
(``results/shipped/dropout_selection.csv``: 0.25 War and Peace, 0.3 Linux), and
about half that at row 256. Every kind and depth of a row shares it.

    >>> runs = grid_runs(vocab_sizes={"war_and_peace": 82, "linux_kernel": 98})
    >>> len(runs), runs[0].name, runs[-1].name
    (72, 'war_and_peace-rnn1-64', 'linux_kernel-gru3-512')
    >>> [(r.width, r.dropout) for r in runs if r.name == "war_and_peace-lstm2-512"]
    [(307, 0.25)]
"""
from __future__ import annotations

import functools
import gzip
import io
import json
import math
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.files import atomic_write
from lab.models import KINDS, ROWS, ModelConfig, count_parameters, width_for

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ("war_and_peace", "linux_kernel")
LAYERS = (1, 2, 3)
DROPOUT = {"war_and_peace": {64: 0.0, 128: 0.0, 256: 0.1, 512: 0.25},
           "linux_kernel": {64: 0.0, 128: 0.0, 256: 0.15, 512: 0.3}}
GRID_SET = ("corpus", "kind", "layers", "row", "dropout", "epochs")  # options the grid sets itself
BOOTSTRAP = {"blocks": 100, "resamples": 1000, "seed": 0}
PART_BYTES = 15 * 2 ** 20
STATE, DONE = "grid-state.tgz", "grid-done.tgz"
TABLED = "from_table.json"   # a run restored from a committed table1.csv (restore_table)
# Table 1 as recalled in DESIGN.md (test nats/char); None: the paper has no RNN at row 512
PAPER = {
    "war_and_peace": {64: (1.449, 1.442, 1.540, 1.446, 1.401, 1.396, 1.398, 1.373, 1.472),
                      128: (1.277, 1.227, 1.279, 1.417, 1.286, 1.277, 1.230, 1.226, 1.253),
                      256: (1.189, 1.137, 1.141, 1.342, 1.256, 1.239, 1.144, 1.138, 1.095),
                      512: (1.161, 1.092, 1.082, None, None, None, 1.170, 1.201, 1.077)},
    "linux_kernel": {64: (1.355, 1.331, 1.366, 1.407, 1.371, 1.383, 1.335, 1.298, 1.357),
                     128: (1.149, 1.128, 1.177, 1.241, 1.120, 1.220, 1.154, 1.125, 1.150),
                     256: (1.026, 0.972, 0.998, 1.171, 1.116, 1.116, 1.039, 0.991, 1.026),
                     512: (0.952, 0.840, 0.846, None, None, None, 0.943, 0.861, 0.829)},
}


def paper_loss(corpus: str, kind: str, layers: int, row: int) -> float | None:
    """The paper's Table 1 test loss for one model, as recalled in :data:`PAPER`; None where it has none.

    Nats per character of the paper's text, which had CRLF line ends: unscaled, so compare it
    with ours through :func:`lab.table1.paper_table` (which applies the line-ending factor).

        >>> paper_loss("war_and_peace", "lstm", 2, 512), paper_loss("linux_kernel", "rnn", 1, 512)
        (1.092, None)
    """
    col = ("lstm", "rnn", "gru").index(kind) * 3 + layers - 1
    return PAPER.get(corpus, {}).get(row, (None,) * 9)[col]


# -- the listing ------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridRun:
    """One model of the grid: its run-folder name and everything its training needs.

        >>> run = grid_runs(["war_and_peace"], ["lstm"], [2], [512], vocab_sizes={"war_and_peace": 82})[0]
        >>> run.name, run.width, run.params, run.dropout
        ('war_and_peace-lstm2-512', 307, 1261852, 0.25)
    """

    name: str
    corpus: str             # a known corpus name or a path to a text file
    kind: str
    layers: int
    row: int
    width: int
    params: int
    dropout: float
    epochs: int = 50
    options: tuple = ()     # further TrainConfig options as (key, value) pairs

    def train_config(self) -> dict:
        """The run's :class:`lab.train.TrainConfig` options, its ``options`` included.

            >>> run = grid_runs(["war_and_peace"], ["lstm"], [2], [512], vocab_sizes={"war_and_peace": 82},
            ...                 train_options={"seq_len": 50})[0]
            >>> run.train_config()
            {'corpus': 'war_and_peace', 'kind': 'lstm', 'layers': 2, 'row': 512, 'dropout': 0.25, 'epochs': 50, 'seq_len': 50}
        """
        return {"corpus": self.corpus, "kind": self.kind, "layers": self.layers, "row": self.row,
                "dropout": self.dropout, "epochs": self.epochs, **dict(self.options)}


def corpus_label(corpus: str) -> str:
    """The short name a run is named after: the known name, or the file's stem.

        >>> corpus_label("linux_kernel"), corpus_label("/data/my_text.txt")
        ('linux_kernel', 'my_text')
    """
    from lab.corpus import KNOWN
    return corpus if corpus in KNOWN else Path(corpus).stem


def _check_corpus_arg(corpus: str) -> None:
    from lab.corpus import KNOWN
    if corpus not in KNOWN and not Path(corpus).is_file():
        raise ValueError(f"unknown corpus {corpus!r}: use {' or '.join(KNOWN)}, or a path to a UTF-8 text file")


@functools.cache
def _vocab_size(corpus: str, data_dir=None) -> int:
    from lab.corpus import load_corpus
    return len(load_corpus(corpus, data_dir).vocab)


def _dropout_for(dropout, corpus: str, row: int) -> float:
    if dropout is None:
        dropout = DROPOUT.get(corpus_label(corpus), DROPOUT["war_and_peace"])
    if isinstance(dropout, Mapping):
        by_corpus = any(isinstance(k, str) or isinstance(v, Mapping) for k, v in dropout.items())
        if by_corpus and corpus not in dropout and corpus_label(corpus) not in dropout:
            raise ValueError(f"dropout has no entry for corpus {corpus_label(corpus)} (it has "
                             f"{', '.join(map(str, dropout))}): give every corpus of the grid a value or a {{row: p}}")
        inner = dropout.get(corpus, dropout.get(corpus_label(corpus), dropout))
        if isinstance(inner, Mapping):
            if row not in inner:
                raise ValueError(f"dropout has no value for row {row} (corpus {corpus_label(corpus)})")
            dropout = inner[row]
        else:
            dropout = inner
    dropout = float(dropout)
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return dropout


def _check_options(options: Mapping | None) -> dict:
    from lab.train import TrainConfig
    options = dict(options or {})
    known = {f.name for f in fields(TrainConfig)}
    if set(options) - known:
        raise ValueError(f"unknown training options {sorted(set(options) - known)}; known: {', '.join(sorted(known))}")
    if set(options) & set(GRID_SET):
        raise ValueError(f"the grid sets {sorted(set(options) & set(GRID_SET))} itself: use its own arguments")
    TrainConfig(**options)   # every value checked now, not when each child starts (a bad width: no run at all)
    if options.get("layout", "contiguous") != "contiguous":
        raise ValueError("the grid trains and scores on the contiguous splits (Table 1 compares them); "
                         "train a char-rnn layout run with `python -m lab train --layout char-rnn`")
    return options


def grid_runs(corpora: Sequence[str] = CORPORA, kinds: Sequence[str] = KINDS, layers: Sequence[int] = LAYERS,
              rows: Sequence[int] = ROWS, *, epochs: int = 50, dropout=None, train_options: Mapping | None = None,
              data_dir=None, vocab_sizes: Mapping[str, int] | None = None) -> list[GridRun]:
    """The grid's runs, smallest models first (row, then the shorter corpus, then kind, depth).

    ``dropout``: None for :data:`DROPOUT`, a number for all, ``{row: p}`` or
    ``{corpus: {row: p}}``. ``train_options`` are further :class:`lab.train.TrainConfig`
    options for every run (an explicit ``width`` replaces the row's). ``vocab_sizes``
    (corpus -> size) avoids reading the corpora to size the models.

        >>> runs = grid_runs(["linux_kernel"], ["rnn", "gru"], [1], [128], vocab_sizes={"linux_kernel": 98})
        >>> [(r.name, r.width, r.params) for r in runs]       # each about the LSTM1 128's 129,378
        [('linux_kernel-rnn1-128', 274, 129426), ('linux_kernel-gru1-128', 152, 129906)]
    """
    for what, given, allowed in (("kind", kinds, KINDS), ("layers", layers, LAYERS), ("row", rows, ROWS)):
        bad = [g for g in given if g not in allowed]
        if bad or not given:
            raise ValueError(f"unknown {what} {bad or 'list (empty)'}: choose from {', '.join(map(str, allowed))}")
    if not corpora:
        raise ValueError("no corpora given: use war_and_peace, linux_kernel or a path to a text file")
    for c in corpora:
        _check_corpus_arg(c)
    if int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    options = _check_options(train_options)
    runs = []
    for ci, corpus in enumerate(corpora):
        vocab = (vocab_sizes or {}).get(corpus) or _vocab_size(corpus, data_dir)
        for row in rows:
            for kind in kinds:
                for n in layers:
                    width = options["width"] if options.get("width") is not None else width_for(kind, n, row, vocab)
                    runs.append((row, ci, KINDS.index(kind), n, GridRun(
                        f"{corpus_label(corpus)}-{kind}{n}-{row}", corpus, kind, n, row, width,
                        count_parameters(ModelConfig(kind, n, width, vocab)), _dropout_for(dropout, corpus, row),
                        int(epochs), tuple(sorted(options.items())))))
    runs.sort(key=lambda r: r[:4])
    names = [r[-1].name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError("two corpora give runs of the same name: rename one of the files")
    return [r[-1] for r in runs]


# -- run folders ------------------------------------------------------------------------------

def read_meta(path: Path) -> dict | None:
    """A checkpoint's vurn metadata, read from its header only (no tensors), or None.

        >>> from lab.pretrained import resolve
        >>> meta = read_meta(resolve("war_and_peace_lstm"))
        >>> meta["kind"], meta["epoch"], meta["model_config"]["width"]
        ('best', 42, 307)
        >>> print(read_meta("/nonexistent/best.safetensors"))
        None
    """
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {}).get("vurn", "null"))
    except Exception:  # missing, truncated: the caller treats it as absent
        return None


def _weights_dtype(path: Path) -> str:
    """The dtype of a checkpoint's tensors as safetensors names it ("F32", "F16"), read from its header."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return ",".join(sorted({f.get_slice(k).get_dtype() for k in f.keys()}))


def _run_folders(out_dir: Path) -> list[Path]:
    """The run folders of a grid (not a staging folder of :func:`adopt`)."""
    runs = Path(out_dir) / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")) if runs.is_dir() else []


def _carry_bytes(run_dir: Path, run: GridRun | None) -> int:
    """The bytes an unfinished run adds to the state :func:`pack` sends to the next session:
    its files, and at least the estimate for its size (last weights with RMSProp's running
    averages, and the best weights: 12 bytes a parameter, plus 1 MiB of logs)."""
    have = sum(p.stat().st_size for p in run_dir.iterdir() if p.is_file()) if run_dir.is_dir() else 0
    return max(have, 12 * run.params + 2 ** 20 if run is not None else 0)


def _sessions(out_dir: Path) -> list[dict]:
    """The grid's session records (``grid_log.jsonl``), oldest first."""
    log = Path(out_dir) / "grid_log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:   # only the last line may be half-written (a runner appending now)
                raise ValueError(f"{log} line {i + 1} is not JSON: the grid log is damaged") from None
    return records


def elapsed_minutes(sessions) -> float:
    """Wall minutes covered by ``sessions`` (records with ISO ``start`` and ``end``), overlaps
    counted once: two runners side by side for an hour are one hour of the machine.

    >>> elapsed_minutes([{"start": "2026-01-01T10:00", "end": "2026-01-01T11:00"},
    ...                  {"start": "2026-01-01T10:30", "end": "2026-01-01T11:15"},   # overlaps the first
    ...                  {"start": "2026-01-01T12:00", "end": "2026-01-01T12:10"}])
    85.0
    """
    spans = sorted((datetime.fromisoformat(x["start"]), datetime.fromisoformat(x["end"])) for x in sessions)
    total, covered_to = 0.0, None
    for start, end in spans:
        start = start if covered_to is None else max(start, covered_to)   # skip what is counted already
        if end > start:
            total += (end - start).total_seconds()
        covered_to = end if covered_to is None else max(covered_to, end)
    return total / 60


def _planned_runs(out_dir: Path) -> dict[str, dict]:
    """Each run as the grid's sessions planned it (the latest session wins)."""
    return {r["name"]: r for s in _sessions(out_dir) for r in s.get("runs", [])}


def _read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return default


def _write_json(path: Path, obj) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


def run_state(run_dir: Path) -> str:
    """'finished', 'resumable', 'failed' (its last launch failed) or 'new'.

        >>> import tempfile; from pathlib import Path
        >>> run = Path(tempfile.mkdtemp())
        >>> run_state(run)
        'new'
        >>> _ = (run / "grid.json").write_text('{"failed": true}'); run_state(run)
        'failed'
        >>> _ = (run / "summary.json").write_text('{"finished": true}'); run_state(run)
        'finished'
    """
    summary = _read_json(run_dir / "summary.json", {})
    if summary.get("finished"):
        return "finished"
    if _read_json(run_dir / "grid.json", {}).get("failed"):
        return "failed"
    return "resumable" if (run_dir / "last.safetensors").is_file() else "new"


def _same_file(a, b) -> bool:
    """Whether two corpus paths name one file (a relative and an absolute name of it)."""
    try:
        return a not in CORPORA and b not in CORPORA and Path(a).resolve() == Path(b).resolve()
    except (TypeError, OSError):
        return False


def _mismatch(run: GridRun, run_dir: Path) -> str | None:
    """How an existing run folder's options differ from the grid's, or None."""
    from lab.train import TrainConfig
    want = asdict(TrainConfig.from_dict(run.train_config()))
    meta = read_meta(run_dir / "last.safetensors")
    if meta:
        have = asdict(TrainConfig.from_dict(meta["train_config"]))   # options added since: their defaults
        diff = [k for k in want if k != "epochs" and have.get(k) != want[k]
                and not (k == "corpus" and _same_file(have.get(k), want[k]))]
    else:  # a finished run carried without last.safetensors: its summary says enough
        have = _read_json(run_dir / "summary.json", {})
        want = {"dropout": run.dropout, "width": run.width}
        diff = [k for k in want if k in have and have[k] != want[k]]
    if diff:
        return f"{run.name}: " + ", ".join(f"{k} {have.get(k)!r} there, {want[k]!r} asked" for k in diff)
    return None


def curve(run: Path) -> list[dict]:
    """Per-epoch validation loss and mean training loss from a run's metrics.jsonl.

        >>> import tempfile; from pathlib import Path
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = (run / "metrics.jsonl").write_text('{"step": 1, "epoch": 1, "loss": 2.0}\\n'
        ...     '{"step": 2, "epoch": 1, "loss": 1.0}\\n{"step": 2, "epoch": 1, "val_loss": 1.4}\\n')
        >>> curve(run)
        [{'epoch': 1, 'step': 2, 'train_loss': 1.5, 'val_loss': 1.4}]
    """
    train, rows = [], []
    for line in (Path(run) / "metrics.jsonl").read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if "loss" in rec:
            train.append(rec["loss"])
        elif "val_loss" in rec:
            rows.append({"epoch": rec["epoch"], "step": rec["step"],
                         "train_loss": round(statistics.mean(train), 5) if train else None,
                         "val_loss": rec["val_loss"]})
            train = []
    return rows


# -- GPU utilisation ---------------------------------------------------------------------------

class GpuSampler:
    """``nvidia-smi`` utilisation samples, once a second in the background; absent tool: no samples.

        >>> GpuSampler(index=1, interval_ms=500).cmd
        ['nvidia-smi', '-i', '1', '--query-gpu=utilization.gpu', '--format=csv,noheader,nounits', '-lms', '500']
    """

    def __init__(self, index: int | None = None, interval_ms: int = 1000, command: str = "nvidia-smi"):
        self.cmd = [command, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", str(interval_ms)]
        if index is not None:
            self.cmd[1:1] = ["-i", str(index)]
        self.samples: list[tuple[float, float]] = []
        self.proc = None

    def start(self) -> bool:
        """Start sampling in the background; False (and no samples) where the tool cannot be run.

            >>> GpuSampler(command="/nonexistent/nvidia-smi").start()     # as on a machine without nvidia-smi
            False
        """
        try:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return False
        threading.Thread(target=self._read, daemon=True).start()
        return True

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.samples.append((time.time(), float(line.strip().rstrip("%").split()[0])))
            except (ValueError, IndexError):
                pass

    def stop(self) -> None:
        """Stop the ``nvidia-smi`` process (its samples stay); harmless when none was started.

            >>> sampler = GpuSampler(command="/nonexistent/nvidia-smi")
            >>> sampler.start(), sampler.stop(), sampler.samples
            (False, None, [])
        """
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def mean(self, start: float = -math.inf, end: float = math.inf) -> float | None:
        """Mean utilisation (%) of the samples taken between ``start`` and ``end`` (``time.time()``), or None.

            >>> sampler = GpuSampler()
            >>> sampler.samples = [(10.0, 40.0), (11.0, 60.0), (12.0, 95.0)]     # (time, utilisation %)
            >>> sampler.mean(), sampler.mean(start=10.5, end=11.5), GpuSampler().mean()
            (65.0, 60.0, None)
        """
        values = [u for t, u in self.samples if start <= t <= end]
        return round(statistics.mean(values), 1) if values else None


def _device_label(device: str) -> str:
    if device.startswith("cuda"):
        index = device.partition(":")[2] or "0"
        try:
            names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                   text=True, timeout=20).stdout.splitlines()
            return names[int(index)].strip()
        except (OSError, subprocess.SubprocessError, IndexError, ValueError):
            return device
    return f"cpu ({os.cpu_count()} cores)"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- the runner --------------------------------------------------------------------------------

@dataclass
class _Child:
    run: GridRun
    proc: subprocess.Popen
    started: float
    max_seconds: float | None
    resumed: bool
    log: Any = None
    killed: bool = False
    start_step: int = 0
    lock: Any = None
    commit: str = ""
    must_finish: bool = False   # started past the carry budget (overcommit): it finishes in this call or is dropped
    dropped: bool = False
    samples: list = field(default_factory=list)   # (time, step) while it trains: its rate under the current load


LOCK = ".lock"   # held (flock) by the runner that trains a run, for the child's whole life


def _lock_run(run_dir: Path):
    """An exclusive lock on ``run_dir`` (an open file; closing it releases), or None when
    another runner holds it: two runners side by side on one grid never train one run twice.

        >>> import tempfile; from pathlib import Path
        >>> d = Path(tempfile.mkdtemp())
        >>> mine = _lock_run(d); print(_lock_run(d)); mine.close(); _lock_run(d) is not None
        None
        True
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, as before
        return open(os.devnull)
    f = open(run_dir / LOCK, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def _metrics_tail(run_dir: Path, nbytes: int = 4096):
    """The records of the last ``nbytes`` of a run's ``metrics.jsonl`` that name a step, newest first."""
    try:
        with open(run_dir / "metrics.jsonl", "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - nbytes))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return
    for line in reversed(lines):
        try:
            rec = json.loads(line)
            rec["step"] = int(rec["step"])
        except (ValueError, KeyError, TypeError):
            continue  # the cut first line of the tail, or one cut by a kill
        yield rec


def _last_logged_step(run_dir: Path) -> int:
    """The last training step in ``metrics.jsonl`` (0 if none): with the launch's first step, its rate."""
    return next((rec["step"] for rec in _metrics_tail(run_dir)), 0)


def _steps_to_go(run_dir: Path, epochs: int) -> int | None:
    """The training steps a run has left to its ``epochs``, from its ``metrics.jsonl`` once it has
    validated an epoch (steps per epoch = that step / its epoch), else None.

        >>> import tempfile; from pathlib import Path
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = (run / "metrics.jsonl").write_text('{"step": 510, "epoch": 2, "val_loss": 1.9}\\n{"step": 600, "epoch": 3, "loss": 1.8}\\n')
        >>> _steps_to_go(run, epochs=50)            # 255 steps an epoch
        12150
    """
    step = None
    for rec in _metrics_tail(run_dir, 2 ** 16):   # more than an epoch of lines
        step = rec["step"] if step is None else step
        try:
            if "val_loss" in rec and int(rec["epoch"]) > 0:
                return max(0, epochs * (rec["step"] // int(rec["epoch"])) - step)
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _child_argv(run: GridRun, run_dir: Path, resume: bool, device, data_dir, max_seconds) -> list[str]:
    argv = [sys.executable, "-m", "lab", "train", "--run-dir", str(run_dir), "--quiet", "--epochs", str(run.epochs)]
    if resume:
        argv.append("--resume")  # its own options come from last.safetensors (checked equal beforehand)
    else:
        for key, value in run.train_config().items():
            if value is not None and key != "epochs":
                argv += ["--" + key.replace("_", "-"), str(value)]
    if device:
        argv += ["--device", str(device)]
    if data_dir:
        argv += ["--data", str(data_dir)]
    if max_seconds is not None:
        argv += ["--max-seconds", f"{max_seconds:.3f}"]
    return argv


def run_grid(out_dir, corpora: Sequence[str] = CORPORA, kinds: Sequence[str] = KINDS,
             layers: Sequence[int] = LAYERS, rows: Sequence[int] = ROWS, *, parallel: int = 4,
             row_parallel: Mapping[int, int] | None = None, budget_seconds: float | None = None,
             device: str | None = None, data_dir=None, epochs: int = 50, dropout=None,
             train_options: Mapping | None = None, reserve_seconds: float = 30.0, min_seconds: float = 20.0,
             child_seconds: float | None = None, threads: int | None = None, max_failures: int = 3,
             retry_failed: bool = False, carry_bytes: float | None = None, overcommit: int = 0,
             probe_seconds: float = 60.0, command: str | None = None, poll_seconds: float = 0.5,
             log=print) -> dict:
    """Train the grid's runs in ``out_dir/runs``, ``parallel`` at a time; returns a report.

    ``row_parallel`` caps the processes while a run of that row is started (e.g.
    ``{512: 3}``: fewer unfinished 512-row runs to carry between sessions).
    ``budget_seconds``: wall budget of this call (None: none); children get
    ``--max-seconds`` = what is left minus ``reserve_seconds`` (startup, the last
    validation and test scoring), capped by ``child_seconds``; none starts with less
    than ``min_seconds``. ``threads``: torch threads per child (default: CPU cores /
    ``parallel``). After ``max_failures`` failed children nothing new is started.
    ``carry_bytes``: a new run starts only while every unfinished run of ``out_dir``, it
    included, would still fit this many bytes (:func:`_carry_bytes`): what a short GPU
    session can carry to the next one is bounded, and any run may end the session unfinished.
    ``overcommit``: up to this many runs more may train at a time past ``carry_bytes``, each
    started in the budget's first half, without a checkpoint, on condition that it finishes
    before the budget ends. Once such a run has trained ``probe_seconds`` and validated an
    epoch, its rate over the last ``probe_seconds`` (under the load of the runs beside it)
    says whether its remaining steps fit; the one furthest from fitting is stopped and dropped
    (:func:`lab.train.discard_run`: it starts from its first step in a later session), one at a time, and
    no more start past the carry in this call. One still unfinished (or failed) at the
    budget's end is kept only if it fits the carry after all (``report["dropped"]``); an
    interruption (Ctrl-C, SIGTERM) drops nothing more.

    With a budget too short for any child (1 s, under ``min_seconds``) nothing starts,
    and the session is still logged::

        >>> import json, tempfile; from pathlib import Path
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "toy.txt").write_text("the cat sat on the mat. " * 40)
        >>> report = run_grid(d / "grid", [str(d / "toy.txt")], ["lstm"], [1], [64], device="cpu", budget_seconds=1)
        >>> report["not_started"], report["finished"], report["skipped_finished"]
        (['toy-lstm1-64'], [], [])
        >>> last = json.loads((d / "grid" / "grid_log.jsonl").read_text().splitlines()[-1])   # one line a session
        >>> [r["name"] for r in last["runs"]]
        ['toy-lstm1-64']
    """
    if not isinstance(parallel, int) or parallel < 1:
        raise ValueError(f"parallel must be a whole number >= 1, got {parallel!r}")
    row_parallel = dict(row_parallel or {})
    if any(not isinstance(v, int) or v < 1 for v in row_parallel.values()) or set(row_parallel) - set(ROWS):
        raise ValueError(f"row_parallel must map rows {ROWS} to whole numbers >= 1, got {row_parallel}")
    if budget_seconds is not None and budget_seconds <= 0:
        raise ValueError(f"budget_seconds must be positive, got {budget_seconds}")
    from lab.train import discard_run, discard_unresumable, pick_device
    device = str(pick_device(device))
    corpora = [str(Path(c).resolve()) if c not in CORPORA and Path(c).exists() else c for c in corpora]
    data_dir = None if data_dir is None else Path(data_dir).resolve()
    runs = grid_runs(corpora, kinds, layers, rows, epochs=epochs, dropout=dropout, train_options=train_options,
                     data_dir=data_dir)
    out_dir = Path(out_dir).resolve()   # the children run in ROOT: every path they get is absolute
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    states = {r.name: run_state(out_dir / "runs" / r.name) for r in runs}
    shorter = [f"{r.name} (planned {planned})" for r in runs if states[r.name] == "resumable"
               and (planned := ((read_meta(out_dir / "runs" / r.name / "last.safetensors") or {})
                                .get("train_config") or {}).get("epochs", epochs)) > epochs]
    if shorter:
        raise ValueError(f"--epochs {epochs} is fewer than these unfinished runs were started with: "
                         f"{', '.join(shorter)}; resuming would end them early and count them finished. "
                         "Use their epochs (the grid's: 50)")
    clashes = [m for r in runs if states[r.name] != "new" and (m := _mismatch(r, out_dir / "runs" / r.name))]
    if clashes:
        raise ValueError(f"{out_dir} holds runs with other options ({'; '.join(clashes)}): use the same "
                         "options (dropout, train options) or another folder")
    if not isinstance(overcommit, int) or overcommit < 0 or not probe_seconds > 0:
        raise ValueError(f"overcommit must be a whole number >= 0 and probe_seconds positive, got {overcommit!r} "
                         f"and {probe_seconds!r}")
    if overcommit and (carry_bytes is None or budget_seconds is None):
        raise ValueError("overcommit needs carry_bytes and budget_seconds: it starts runs past the carry "
                         "budget only on condition that they finish within the call's budget")
    report = {"finished": [], "stopped": [], "failed": [], "killed": [], "dropped": [], "not_started": [],
              "skipped_locked": [],
              "skipped_finished": [n for n, s in states.items() if s == "finished"],
              "skipped_failed": [n for n, s in states.items() if s == "failed" and not retry_failed]}
    for r in runs:  # finished earlier, but with fewer epochs than asked now: extend if it can
        if states[r.name] == "finished" and _read_json(out_dir / "runs" / r.name / "summary.json")["epochs"] < epochs:
            if (out_dir / "runs" / r.name / "last.safetensors").is_file():
                states[r.name] = "resumable"
                report["skipped_finished"].remove(r.name)
            else:
                log(f"grid: {r.name} finished with fewer epochs than {epochs} and has no last.safetensors: kept")
    todo = [r for r in runs if states[r.name] in ("resumable", "new") or (states[r.name] == "failed" and retry_failed)]
    # runs under way first: fewer unfinished runs to carry from one session to the next
    todo.sort(key=lambda r: not (out_dir / "runs" / r.name / "last.safetensors").is_file())
    threads = threads or max(1, (os.cpu_count() or 1) // parallel)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    start = time.time()
    deadline = start + budget_seconds if budget_seconds else math.inf
    started_at = _now()
    sampler = GpuSampler(int(device.partition(":")[2] or 0)) if device.startswith("cuda") else None
    sampling = sampler.start() if sampler else False
    record = {"command": command or " ".join(map(shlex.quote, sys.argv)), "code_commit": _commit(),
              "device": _device_label(device), "start": started_at, "budget_seconds": budget_seconds,
              "parallel": parallel, "row_parallel": row_parallel, "epochs": epochs, "threads": threads,
              "carry_bytes": carry_bytes, "overcommit": overcommit,
              # CUDA's Multi-Process Service lets the children's kernels run at the same time
              # (without it the GPU time-slices between processes); scripts/gpu_grid.sh starts it
              "mps": device.startswith("cuda") and bool(os.environ.get("CUDA_MPS_PIPE_DIRECTORY")),
              "runs": [asdict(r) for r in runs]}
    active: list[_Child] = []
    failures = 0
    by_name = {r.name: r for r in runs}
    waiting: set[str] = set()
    dropping = {"any": False, "next_check": 0.0}

    def carried_bytes(exclude=()) -> int:
        """The unfinished runs' state as it stands, a run under way at least at its estimate (its
        first checkpoint may not be written yet), any other unfinished folder at its files alone
        (a folder restored from the table for a run not started holds a few bytes, not the
        run's weights); not a run that must finish in this call (it is dropped if it does not)."""
        under_way = {c.run.name for c in active}
        return sum(_carry_bytes(p, by_name.get(p.name) if p.name in under_way else None)
                   for p in _run_folders(out_dir) if run_state(p) != "finished"
                   and p.name not in {c.run.name for c in active if c.must_finish} | set(exclude))

    def admit(run: GridRun) -> str | None:
        """'carry' if starting ``run`` keeps the unfinished runs' state within ``carry_bytes``,
        'finish' if it may start past it on condition that it finishes (``overcommit``), else None."""
        if carry_bytes is None or (out_dir / "runs" / run.name / "last.safetensors").is_file():
            return "carry"   # a run under way (or failed with a checkpoint) is carried anyway
        carried = carried_bytes()
        if carried + _carry_bytes(out_dir / "runs" / run.name, run) <= carry_bytes:
            return "carry"
        left = deadline - time.time() - reserve_seconds
        if (sum(c.must_finish for c in active) < overcommit and not dropping["any"]
                and left >= max(2 * probe_seconds, budget_seconds / 2)):   # a late start could not finish
            return "finish"
        if run.name not in waiting:
            waiting.add(run.name)
            log(f"grid: {run.name} waits: with it the unfinished runs' state would pass "
                f"{carry_bytes / 2 ** 20:.0f} MiB (now {carried / 2 ** 20:.1f} MiB)")
        return None

    def drop_the_late() -> None:
        """Stop and drop the run that must finish in this call and is, at its current rate,
        furthest from doing so (at most one a call: the others speed up without it)."""
        now = time.time()
        late = []
        for c in active:
            if not c.must_finish or c.dropped or c.proc.poll() is not None:
                continue
            step = _last_logged_step(out_dir / "runs" / c.run.name)
            if step > c.start_step:   # training, past the child's start-up
                c.samples.append((now, step))
            if not c.samples or now - c.samples[0][0] < probe_seconds:
                continue
            t0, s0 = next((x for x in c.samples if x[0] >= now - probe_seconds), c.samples[-1])
            rate = (step - s0) / max(1e-9, now - t0)
            to_go = _steps_to_go(out_dir / "runs" / c.run.name, c.run.epochs)
            if not to_go or rate <= 0:
                # no epoch validated yet, or trained to the end and scoring, or a pause (a validation,
                # a checkpoint): not judged now. One that never gets there is dropped at the budget's end
                continue
            need = 1.05 * to_go / rate
            if now + need > deadline - reserve_seconds:
                late.append((need, c, rate, to_go))
        if late:
            need, c, rate, to_go = max(late, key=lambda x: x[0])
            log(f"grid: {c.run.name} would not finish in this call ({to_go} steps to go at {rate:.1f}/s, "
                f"{deadline - now:.0f} s left): stopped and dropped; it starts again in a later session")
            c.dropped = c.killed = True
            c.proc.terminate()
            dropping["any"] = True
            for other in active:   # their rates change without it: measure them again
                other.samples.clear()

    def finish(child: _Child, interrupted: bool = False) -> None:
        end = time.time()
        child.log.close()
        run_dir = out_dir / "runs" / child.run.name
        rc = child.proc.returncode
        outcome = ("finished" if run_state(run_dir) == "finished" else "killed" if child.killed
                   else "stopped" if rc == 0 else "failed")
        info = _read_json(run_dir / "grid.json", {"launches": []})
        tail = (run_dir / "train.log").read_text(errors="replace")[-1500:] if outcome == "failed" else None
        steps = max(0, _last_logged_step(run_dir) - child.start_step)
        if child.must_finish and outcome in ("killed", "stopped", "failed") and (child.dropped or (
                not interrupted and carried_bytes({child.run.name}) + _carry_bytes(run_dir, None) > carry_bytes)):
            outcome = "dropped"   # it was to finish in this call, and its state does not fit the carry
            discard_run(run_dir)  # its launch record stays (a failure's message too: "error")
        info["launches"].append({"start": datetime.fromtimestamp(child.started, timezone.utc).isoformat(timespec="seconds"),
                                 "wall_s": round(end - child.started, 1), "rc": rc, "outcome": outcome,
                                 "resumed": child.resumed, "max_seconds": child.max_seconds,
                                 "device": record["device"], "threads": threads, "steps": steps,
                                 "code_commit": child.commit,
                                 "steps_per_s": round(steps / max(1e-9, end - child.started), 2),
                                 "gpu_util_mean": sampler.mean(child.started, end) if sampling else None})
        # the run's training time: not a dropped launch (its weights are gone); an adopted one may have none
        kept = _kept_launches(info)
        info["wall_s"] = round(sum(x["wall_s"] or 0 for x in kept), 1) if kept else None
        info["failed"] = outcome == "failed"
        info["error"] = tail   # of a failure, also one dropped since
        _write_json(run_dir / "grid.json", info)
        report[outcome].append(child.run.name)
        log(f"grid: {child.run.name} {outcome} after {end - child.started:.0f} s (rc {rc}), "
            f"{steps} steps, {steps / max(1e-9, end - child.started):.1f}/s")
        child.lock.close()   # last: its record is written before another runner may take the run

    # SIGTERM (a job killed from outside; background shells ignore SIGINT) stops the
    # children and writes this session's record, as Ctrl-C does
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main else None
    try:
        while todo or active:
            for child in [c for c in active if c.proc.poll() is not None]:
                active.remove(child)
                finish(child)
                failures += child.run.name in report["failed"]
            if overcommit and time.time() >= dropping["next_check"]:
                dropping["next_check"] = time.time() + min(10.0, probe_seconds / 4)
                drop_the_late()
            now = time.time()
            if now >= deadline and active:
                for child in active:  # past the budget: stop what is left; it resumes from its checkpoint
                    child.killed = True
                    child.proc.terminate()
                for child in active:
                    try:
                        child.proc.wait(15)
                    except subprocess.TimeoutExpired:
                        child.proc.kill()
                        child.proc.wait()
                continue
            left = deadline - now - reserve_seconds
            while todo and failures < max_failures and left >= min_seconds and len(active) < parallel:
                pick, mode = None, None
                for i, r in enumerate(todo):
                    if len(active) < row_parallel.get(r.row, parallel) and (mode := admit(r)):
                        pick = i
                        break
                if pick is None:
                    break
                run = todo.pop(pick)
                run_dir = out_dir / "runs" / run.name
                run_dir.mkdir(parents=True, exist_ok=True)
                lock = _lock_run(run_dir)
                if lock is None:   # another runner on this folder trains it now
                    report["skipped_locked"].append(run.name)
                    log(f"grid: {run.name} is being trained by another runner: skipped")
                    continue
                now_state = run_state(run_dir)
                if now_state == "finished" or (now_state == "failed" and not retry_failed):
                    lock.close()   # since this call began (adopted, another runner): keep it
                    report["skipped_finished" if now_state == "finished" else "skipped_failed"].append(run.name)
                    continue
                resume = (run_dir / "last.safetensors").is_file()
                start_step = (read_meta(run_dir / "last.safetensors") or {}).get("step", 0) if resume else 0
                if not resume:  # a killed first epoch left no checkpoint: start clean
                    discard_unresumable(run_dir)
                caps = [x for x in (left, child_seconds) if x is not None and x < math.inf]
                seconds = min(caps) if caps else None
                argv = _child_argv(run, run_dir, resume, device, data_dir, seconds)
                logf = open(run_dir / "train.log", "a")
                logf.write(f"# {_now()} {' '.join(map(shlex.quote, argv))}\n")
                logf.flush()
                commit = _commit()   # the code this child loads now (the tree may have changed since the call began)
                # the child inherits the lock: it stays held while the child lives, even if this runner dies
                proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=dict(env, VURN_COMMIT=commit),
                                        cwd=str(ROOT), pass_fds=(lock.fileno(),))
                active.append(_Child(run, proc, time.time(), seconds, resume, logf, start_step=start_step,
                                     lock=lock, commit=commit, must_finish=mode == "finish"))
                log(f"grid: {'resume' if resume else 'start'} {run.name}"
                    + (f" for at most {seconds:.0f} s" if seconds is not None else "")
                    + (" (past the carry budget: it must finish in this call)" if mode == "finish" else ""))
            if not active and todo:  # nothing can start: out of budget or too many failures
                break
            time.sleep(poll_seconds)
    finally:
        for child in active:  # interrupted (Ctrl-C): stop the children, keep their checkpoints
            child.killed = True
            child.proc.send_signal(signal.SIGTERM)
        for child in list(active):
            try:
                child.proc.wait(15)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
            active.remove(child)
            finish(child, interrupted=True)
        if sampler:
            sampler.stop()
        report["not_started"] = [r.name for r in todo]
        end = time.time()
        record.update(end=_now(), wall_s=round(end - start, 1),
                      gpu_util_mean=sampler.mean() if sampling else None,
                      gpu_util_samples=len(sampler.samples) if sampling else 0,
                      **{k: v for k, v in report.items()})
        with open(out_dir / "grid_log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if on_main:
            signal.signal(signal.SIGTERM, previous)
    report["wall_s"], report["gpu_util_mean"] = record["wall_s"], record["gpu_util_mean"]
    return report


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _commit() -> str:
    from lab.checkpoint import code_commit
    return code_commit()


# -- scoring and collecting -------------------------------------------------------------------

def bootstrap_se(losses, blocks: int = 100, resamples: int = 1000, seed: int = 0) -> float:
    """Standard error of the mean loss by a block bootstrap.

    The losses (in text order) are cut into ``blocks`` contiguous blocks of near-equal
    length (``numpy.array_split``); each of ``resamples`` resamples draws ``blocks``
    blocks with replacement (``numpy.random.default_rng(seed).integers``, all draws at
    once, shape (resamples, blocks)) and takes the mean over their characters; the
    result is the standard deviation (ddof 1) of those means. Blocks keep the
    correlation between neighbouring characters that an i.i.d. bootstrap would ignore.

    >>> round(bootstrap_se([1.0, 2.0] * 500, blocks=10), 6)
    0.0
    """
    import numpy as np
    x = np.asarray(losses, dtype=np.float64)
    if x.size < blocks:
        raise ValueError(f"{x.size} losses are too few for {blocks} blocks")
    sums, sizes = block_sums(x, blocks)
    idx = np.random.default_rng(seed).integers(0, blocks, size=(resamples, blocks))
    return float((sums[idx].sum(1) / sizes[idx].sum(1)).std(ddof=1))


def block_sums(losses, blocks: int = 100):
    """Sums and sizes of the ``blocks`` contiguous near-equal blocks (``numpy.array_split``).

    What :func:`bootstrap_se` resamples, and what ``score.json`` keeps (as block means) so
    that two models scored on the same text can be compared pairwise later
    (:func:`lab.table1.paired_difference`), without their weights.

        >>> block_sums([1.0, 2.0, 3.0, 4.0, 5.0], 2)
        (array([6., 9.]), array([3., 2.]))
    """
    import numpy as np
    parts = np.array_split(np.asarray(losses, dtype=np.float64), blocks)
    return np.array([p.sum() for p in parts]), np.array([p.size for p in parts], dtype=np.float64)


def score_run(run_dir: Path, device=None, data_dir=None, corpora: dict | None = None, rescore: bool = False) -> dict | None:
    """Test loss of ``best.safetensors`` and its bootstrap SE, cached in ``score.json``.

    The cache holds while the best checkpoint's tensors (their sha256) and the bootstrap
    settings are the same. None when there is neither a best checkpoint nor a cache.

        >>> import tempfile; from pathlib import Path
        >>> run = Path(tempfile.mkdtemp())
        >>> print(score_run(run))                   # neither best.safetensors nor score.json
        None
        >>> _ = (run / "score.json").write_text('{"test_loss": 1.234, "test_loss_se": 0.002}')
        >>> score_run(run)                          # no checkpoint to check the cache against: kept as it is
        {'test_loss': 1.234, 'test_loss_se': 0.002}
    """
    run_dir = Path(run_dir)
    cached = _read_json(run_dir / "score.json")
    meta = read_meta(run_dir / "best.safetensors")
    if cached and not rescore and cached.get("bootstrap") == BOOTSTRAP and (meta is None or (
            cached.get("best_sha256") == meta.get("tensors_sha256") and "block_losses" in cached)):
        return cached
    if meta is None:
        return cached
    from lab.checkpoint import check_corpus, load_checkpoint
    from lab.corpus import load_corpus
    from lab.models import CharRNN
    from lab.train import char_losses, pick_device
    dev = pick_device(device)
    corpora = {} if corpora is None else corpora
    name = meta["train_config"]["corpus"]
    if name not in corpora:
        corpora[name] = load_corpus(name, data_dir)
    check_corpus(meta, corpora[name], run_dir / "best.safetensors")
    tensors, meta = load_checkpoint(run_dir / "best.safetensors", dev)
    model = CharRNN(ModelConfig.from_dict(meta["model_config"])).to(dev)
    model.load_state_dict(tensors)
    t = time.time()
    losses = char_losses(model, corpora[name].split_ids("test"))
    sums, sizes = block_sums(losses.numpy(), BOOTSTRAP["blocks"])
    score = {"test_loss": losses.double().mean().item(), "test_loss_se": bootstrap_se(losses.numpy(), **BOOTSTRAP),
             "block_losses": [round(float(v), 7) for v in sums / sizes],  # mean loss of each bootstrap block
             "test_chars": losses.numel(), "best_epoch": meta["epoch"], "val_loss": meta.get("val_loss"),
             "best_sha256": meta["tensors_sha256"], "bootstrap": BOOTSTRAP, "scored_on": _device_label(str(dev)),
             "scoring_s": round(time.time() - t, 2), "scored_at": _now()}
    _write_json(run_dir / "score.json", score)
    return score


COLUMNS = ["name", "corpus", "kind", "layers", "row", "width", "params", "dropout", "epochs_done", "epochs_planned",
           "finished", "status", "best_epoch", "val_loss", "test_loss", "test_loss_se", "test_scored", "test_chars",
           "paper_test_loss", "wall_s", "train_s", "gpu_util_mean", "device", "scored_on", "code_commit"]


FIRST_TRAINING = ("test_loss", "test_loss_se", "val_loss", "best_epoch", "epochs_done", "wall_s", "device",
                  "code_commit")


def _trained_again(run_dir: Path, row: dict) -> dict | None:
    """``{"name", "first": {...}}``: the committed row of a model's first training (the
    columns :data:`FIRST_TRAINING`) when the model was trained again because the weights of
    that training were lost (:func:`restore`), else None. The same training restored from an
    archive (its best epoch, and its validation loss to the table's 6 digits: both fixed when it
    trained, where the test loss depends on the device that scored it) is not a second one.

        >>> import tempfile; from pathlib import Path
        >>> run = Path(tempfile.mkdtemp()); _ = (run / "metrics.jsonl").write_text("")
        >>> first = {"finished": True, "val_loss": 1.4976, "best_epoch": 48, "device": "H100"}
        >>> _write_json(run / TABLED, {"row": first})
        >>> _trained_again(run, {"finished": True, "val_loss": 1.5012, "best_epoch": 50})["first"]["device"]
        'H100'
        >>> _trained_again(run, {"finished": True, "val_loss": 1.49760004, "best_epoch": 48}) is None
        True
    """
    tabled = _read_json(run_dir / TABLED) or {}
    if "trained_again" in tabled:        # restore_table keeps it from the committed provenance
        return tabled["trained_again"]
    first = tabled.get("row") or {}
    if not (first.get("finished") and row.get("finished")) or _table_row(run_dir) is not None:
        return None
    if first.get("val_loss") is not None and row.get("val_loss") is not None \
            and f"{first['val_loss']:.6g}" == f"{row['val_loss']:.6g}" and first.get("best_epoch") == row.get("best_epoch"):
        return None
    return {"name": run_dir.name, "first": {k: first.get(k) for k in FIRST_TRAINING}}


def _kept_launches(grid: dict) -> list[dict]:
    """A run's launches (``grid.json``) but those dropped (``run_grid(overcommit=...)``): their
    training was deleted, so they are not in the run's wall time, devices, commits or GPU use."""
    return [x for x in grid.get("launches", []) if x.get("outcome") != "dropped"]


def _launch_commits(grid: dict) -> str | None:
    """Every commit a run's launches trained with, in order ("unknown" for a launch recorded before
    launches named theirs), or None when no launch names one (the checkpoint's commit then).

        >>> _launch_commits({"launches": [{"wall_s": 5}, {"code_commit": "b1"}, {"code_commit": "b1"}]})
        'unknown + b1'
    """
    launches = [x for x in _kept_launches(grid) if not x.get("adopted")]
    if not any(x.get("code_commit") for x in launches):
        return None
    return " + ".join(dict.fromkeys(x.get("code_commit") or "unknown" for x in launches))


def _row(run_dir: Path, planned: dict | None, device, data_dir, corpora, rescore) -> dict:
    if (stored := _table_row(run_dir)) is not None:
        return stored
    summary = _read_json(run_dir / "summary.json", {})
    last = read_meta(run_dir / "last.safetensors") or {}
    best = read_meta(run_dir / "best.safetensors") or {}
    grid = _read_json(run_dir / "grid.json", {})
    cfg = last.get("train_config") or best.get("train_config") or planned or {}
    model = last.get("model_config") or best.get("model_config")
    finished = bool(summary.get("finished"))
    label = corpus_label(cfg.get("corpus", summary.get("corpus", "")))
    score = score_run(run_dir, device, data_dir, corpora, rescore)
    kept = _kept_launches(grid)
    launches = [x for x in kept if x.get("gpu_util_mean") is not None]
    util = (sum(x["gpu_util_mean"] * x["wall_s"] for x in launches) / max(1e-9, sum(x["wall_s"] for x in launches))
            if launches else None)
    status = ("finished" if finished else "failed" if grid.get("failed") else
              "stopped" if last else "not started" if not (run_dir / "metrics.jsonl").exists() else "killed")
    row = {
        "name": run_dir.name, "corpus": summary.get("corpus", label), "kind": summary.get("kind", cfg.get("kind")),
        "layers": summary.get("layers", cfg.get("layers")), "row": summary.get("row", cfg.get("row")),
        "width": summary.get("width", (model or {}).get("width", (planned or {}).get("width"))),
        "params": summary.get("params", count_parameters(ModelConfig.from_dict(model)) if model
                              else (planned or {}).get("params")),
        "dropout": summary.get("dropout", cfg.get("dropout")),
        "epochs_done": summary.get("epochs", last.get("epoch", 0)),
        "epochs_planned": summary.get("epochs") if finished else cfg.get("epochs"),
        "finished": finished, "status": status,
        "best_epoch": (score or {}).get("best_epoch", best.get("epoch")),
        "val_loss": (score or {}).get("val_loss", best.get("val_loss")),
        "test_loss": (score or {}).get("test_loss"), "test_loss_se": (score or {}).get("test_loss_se"),
        "test_scored": None if not score else "best" if finished else "best so far",
        "test_chars": (score or {}).get("test_chars"),
        "paper_test_loss": paper_loss(label, cfg.get("kind"), cfg.get("layers"), cfg.get("row"))
        if cfg.get("kind") in KINDS and cfg.get("row") in ROWS else None,
        "wall_s": grid.get("wall_s"), "train_s": summary.get("elapsed_s", last.get("elapsed_s")),
        "gpu_util_mean": None if util is None else round(util, 1),
        # every device the run trained on, in order (a run started on a GPU may be finished on a CPU)
        "device": " + ".join(dict.fromkeys(x["device"] for x in kept if x.get("device")))
        or summary.get("device", last.get("device")), "scored_on": (score or {}).get("scored_on"),
        # every commit the run was trained with, in launch order (the checkpoints hold only the last)
        "code_commit": _launch_commits(grid) or summary.get("code_commit", last.get("code_commit")),
    }
    return row


def collect(out_dir, results_dir="results", *, device=None, data_dir=None, rescore: bool = False,
            command: str | None = None):
    """One row per model of ``out_dir`` (a :class:`pandas.DataFrame`, columns :data:`COLUMNS`).

    With ``results_dir`` (None: write nothing) also writes ``table1.csv``,
    ``table1_blocks.csv`` (each model's mean test loss in each bootstrap block, for paired
    comparisons), ``curves/NAME.csv`` (epoch, step, mean train loss, val loss) and
    ``table1_provenance.json`` there. Runs the grid log names but that have no folder
    yet are rows with status 'not started'. Test losses are scored from
    ``best.safetensors`` (best so far for an unfinished run) and cached in each run's
    ``score.json`` (:func:`score_run`).

    A grid whose only run has not started yet (the session's 1 s budget started nothing)::

        >>> import tempfile; from pathlib import Path
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "toy.txt").write_text("the cat sat on the mat. " * 40)
        >>> _ = run_grid(d / "grid", [str(d / "toy.txt")], ["lstm"], [1], [64], device="cpu", budget_seconds=1)
        >>> df = collect(d / "grid", d / "results")
        >>> df[["name", "width", "params", "status"]].values.tolist()
        [['toy-lstm1-64', 64, 20427, 'not started']]
        >>> sorted(p.name for p in (d / "results").iterdir())
        ['curves', 'table1.csv', 'table1_blocks.csv', 'table1_provenance.json']
    """
    import pandas as pd
    out_dir = Path(out_dir)
    if not (out_dir / "runs").is_dir():
        raise ValueError(f"{out_dir} holds no grid (no runs folder): run `python -m lab grid run {out_dir}` first")
    sessions = _sessions(out_dir)
    planned = _planned_runs(out_dir)
    # the committed table's order for the runs restored from it (restore_table), then the sessions' plans
    tabled = sorted((x["index"], p.name) for p in _run_folders(out_dir)
                    if (x := _read_json(p / TABLED)) and "index" in x)
    order = {name: i for i, name in enumerate(dict.fromkeys([n for _, n in tabled] + list(planned)))}
    folders = sorted(_run_folders(out_dir), key=lambda p: (order.get(p.name, len(order)), p.name))
    corpora: dict = {}
    rows = [_row(p, planned.get(p.name), device, data_dir, corpora, rescore) for p in folders]
    for name, plan in planned.items():
        if not (out_dir / "runs" / name).is_dir():
            rows.append({"name": name, **{k: plan.get(k) for k in ("kind", "layers", "row", "width", "params",
                                                                    "dropout")},
                         "corpus": corpus_label(plan["corpus"]), "epochs_done": 0, "epochs_planned": plan["epochs"],
                         "finished": False, "status": "not started",
                         "paper_test_loss": paper_loss(corpus_label(plan["corpus"]), plan["kind"], plan["layers"],
                                                       plan["row"])})
    df = pd.DataFrame(rows, columns=COLUMNS)
    if results_dir is not None:
        results = Path(results_dir)
        (results / "curves").mkdir(parents=True, exist_ok=True)
        df.to_csv(results / "table1.csv", index=False, float_format="%.6g")
        blocks = {p.name: score["block_losses"] for p in folders
                  if (score := _read_json(p / "score.json")) and "block_losses" in score}
        pd.DataFrame.from_dict(blocks, orient="index").rename_axis("name").to_csv(
            results / "table1_blocks.csv", float_format="%.7g")
        for p in folders:
            if (p / "metrics.jsonl").exists() and (points := curve(p)):
                pd.DataFrame(points).to_csv(results / "curves" / f"{p.name}.csv", index=False)
        cuda = [s for s in sessions if s.get("gpu_util_samples")]
        weight = sum(s["wall_s"] for s in cuda)
        _write_json(results / "table1_provenance.json", {
            "collected_at": _now(), "collect_command": command or " ".join(map(shlex.quote, sys.argv)),
            "collect_commit": _commit(), "grid_dir": str(out_dir),
            "runs": len(df), "finished": int(df["finished"].sum()), "status": df["status"].value_counts().to_dict(),
            "training_commits": sorted({c for cs in df["code_commit"].dropna() for c in str(cs).split(" + ")}),
            "devices": sorted({s.get("device", "?") for s in sessions} | {str(d) for d in df["device"].dropna()}),
            "total_wall_seconds": round(sum(s.get("wall_s", 0) for s in sessions), 1),   # summed over runners
            "elapsed_wall_seconds": round(60 * elapsed_minutes([s for s in sessions if s.get("end")]), 1),
            "total_device_seconds": round(sum(s.get("wall_s", 0) for s in sessions
                                              if not str(s.get("device", "cpu")).startswith("cpu")), 1),
            "mean_gpu_utilisation": round(sum(s["gpu_util_mean"] * s["wall_s"] for s in cuda) / weight, 1)
            if weight else None,
            "first_start": min((s["start"] for s in sessions), default=None),
            "last_end": max((s.get("end", "") for s in sessions), default=None),
            "test_loss": "mean nats/char over the test split from best.safetensors (lab.train.char_losses)",
            "bootstrap": {**BOOTSTRAP, "method": "contiguous equal blocks (numpy.array_split), resampled with "
                                                 "replacement; SE = std (ddof 1) of the resampled means"},
            "dropout_rule": {c: {str(k): v for k, v in d.items()} for c, d in DROPOUT.items()},
            "sessions": [{k: v for k, v in s.items() if k != "runs"} for s in sessions],
            # trained outside the grid's sessions with its exact options (lab.grid.adopt): not in the totals above
            "adopted": [{"name": p.name, "device": g["launches"][0].get("device"), "wall_s": g.get("wall_s"), **g["adopted"]}
                        for p in folders if (g := _read_json(p / "grid.json", {})).get("adopted")],
            # models trained again because the first training's weights were lost: that training's row
            "trained_again": [again for p, r in zip(folders, rows) if (again := _trained_again(p, r))],
        })
    return df


def _log_segments(run_dir: Path) -> list[int | None]:
    """The step each launch in ``train.log`` ended at (None: killed before it could say)."""
    ends: list[int | None] = []
    text = (run_dir / "train.log").read_text(errors="replace") if (run_dir / "train.log").exists() else ""
    for segment in re.split(r"^# ", text, flags=re.MULTILINE)[1:]:   # each launch's command line, then its output
        body = segment.partition("\n")[2]
        summary = body[body.find("{"):body.rfind("}") + 1] if "{" in body else ""
        try:
            info = json.loads(summary)
        except json.JSONDecodeError:
            ends.append(None)
            continue
        ends.append(info.get("step") if not info.get("finished") else _last_logged_step(run_dir))
    return ends


def launch_rates(out_dir) -> pd.DataFrame:
    """Training steps per second of every launch of the grid, with its device, how many ran at
    once and whether CUDA's Multi-Process Service was on: what each device and setting gives.

    A launch's steps come from ``grid.json`` (recorded since the runner counts them) or, for
    older launches, from the steps ``train.log`` says each launch ended at; a launch killed
    before it could say, and the one after it, have none. ``steps_per_s`` counts the whole
    launch (start-up, validation and scoring included).

        >>> launch_rates("/nonexistent").empty
        True
    """
    import pandas as pd
    out_dir = Path(out_dir)
    sessions = _sessions(out_dir)
    rows = []
    for run in _run_folders(out_dir):
        launches = _read_json(run / "grid.json", {}).get("launches", [])
        ends = _log_segments(run)
        start = 0
        for i, launch in enumerate(launches):
            end = ends[i] if i < len(ends) else None
            steps = launch.get("steps")
            if steps is None and end is not None and start is not None:
                steps = end - start
            start = end
            if launch.get("adopted") or not steps or not launch.get("wall_s") or not launch.get("start"):
                continue
            at = launch["start"]
            # the session that launched it: running then, and with this run in its selection (runners
            # side by side on one folder overlap in time)
            session = next((x for x in sessions if x.get("start", "") <= at <= x.get("end", "~")
                            and run.name in {r.get("name") for r in x.get("runs", [])}), {})
            name = run.name.rsplit("-", 2)
            rows.append({"run": run.name, "corpus": name[0], "model": name[1], "row": int(name[2]),
                         "device": launch.get("device"), "parallel": session.get("parallel"),
                         "mps": session.get("mps", False), "start": at, "steps": steps,
                         "wall_s": launch["wall_s"], "steps_per_s": round(steps / launch["wall_s"], 2)})
    return pd.DataFrame(rows, columns=["run", "corpus", "model", "row", "device", "parallel", "mps", "start",
                                       "steps", "wall_s", "steps_per_s"])


# -- moving the state between GPU sessions -----------------------------------------------------

def _suffixes():
    for a in "abcdefghijklmnopqrstuvwxyz":
        for b in "abcdefghijklmnopqrstuvwxyz":
            yield a + b


def _tar(out_dir: Path, members: list[Path], renamed: Sequence[tuple[Path, str]] = ()) -> bytes:
    """A tar.gz of ``members`` (named relative to ``out_dir``) and of (file, name) pairs.

    The same files give the same bytes (the gzip header's time is 0, not now), so that
    ``scripts/gpu_prepare.sh`` can tell that the committed ``results/table1/state`` is the
    grid's state with ``cmp`` and send it once, not twice.
    """
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for m in members:
            tar.add(m, arcname=str(m.relative_to(out_dir)))
        for m, name in renamed:
            tar.add(m, arcname=name)
    return buf.getvalue()


def _write_parts(data: bytes, dest: Path, name: str, part_bytes: int) -> list[str]:
    for old in dest.glob(f"{name}.part-*"):
        old.unlink()
    parts = []
    for i, suffix in zip(range(0, max(1, len(data)), part_bytes), _suffixes()):
        (dest / f"{name}.part-{suffix}").write_bytes(data[i:i + part_bytes])
        parts.append(f"{name}.part-{suffix}")
    return parts


def _half_copy(best: Path, target: Path) -> Path:
    """A float16 copy of checkpoint ``best`` at ``target``."""
    import torch

    from lab.checkpoint import load_checkpoint, save_checkpoint
    tensors, meta = load_checkpoint(best)
    meta["weights"] = ("float16, as best.safetensors already was" if any(v.dtype == torch.float16 for v in tensors.values())
                       else "float16 copy of best.safetensors (trained and scored in float32)")
    target.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(target, {k: v.half() for k, v in tensors.items()}, meta)
    return target


def _score_weights(path: Path, data_dir=None) -> dict:
    """Validation loss of the weights stored at ``path`` as training measures it, and test loss as
    :func:`score_run` does (the mean in float64), so that they compare with the run's own."""
    from lab.checkpoint import check_corpus
    from lab.corpus import load_corpus
    from lab.pretrained import load_model
    from lab.train import char_losses, evaluate
    model, meta = load_model(path)
    corpus = load_corpus(meta["train_config"]["corpus"], data_dir)
    check_corpus(meta, corpus, path)
    return {"val_loss": evaluate(model, corpus.split_ids("val")),
            "test_loss": char_losses(model, corpus.split_ids("test")).double().mean().item()}


def pack(out_dir, dest, *, part_bytes: int = PART_BYTES, max_parts: int = 7, max_bytes: int = 60 * 2 ** 20,
         state_only: bool = False) -> dict:
    """Archive a grid folder for the trip back from a GPU session, in ``part_bytes`` parts.

    ``grid-state.tgz.part-*``: what the next session needs to go on (every run's
    summary, score and launch record, and the whole folder of each unfinished run),
    the grid log and ``results/``. ``grid-done.tgz.part-*``: the runs finished since
    the last :func:`restore` (metrics log, train log, best weights), weights smallest
    first while they fit ``max_parts`` and ``max_bytes`` together, then float16
    copies (``best-f16.safetensors``); what still does not fit is listed as left out.
    Both are plain ``tar.gz`` streams cut into pieces: ``cat X.part-* | tar xz``.
    ``state_only``: the state alone (what goes *to* a session; ``scripts/gpu_prepare.sh``).

        >>> import tempfile; from pathlib import Path
        >>> g = Path(tempfile.mkdtemp()) / "grid"
        >>> for name in ("toy-lstm1-64", "toy-gru1-64"): (g / "runs" / name).mkdir(parents=True)
        >>> _ = (g / "runs" / "toy-lstm1-64" / "summary.json").write_text('{"finished": true}')
        >>> packed = pack(g, g.parent / "trip")
        >>> packed["state_parts"], packed["done_parts"], packed["finished_now"], packed["unfinished"]
        (['grid-state.tgz.part-aa'], ['grid-done.tgz.part-aa'], ['toy-lstm1-64'], ['toy-gru1-64'])
    """
    out_dir, dest = Path(out_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    restored = set(_read_json(out_dir / "restored.json", {}).get("finished", []))
    runs = _run_folders(out_dir)
    small = ("summary.json", "score.json", "grid.json", TABLED)
    state = [p for p in (out_dir / "grid_log.jsonl",) if p.is_file()]
    state += sorted(p for p in (out_dir / "results").rglob("*") if p.is_file()) if (out_dir / "results").is_dir() else []
    done_text, done_weights = [], []
    for run in runs:
        if run_state(run) == "finished":
            state += [run / f for f in small if (run / f).is_file()]
            if run.name not in restored and not state_only:
                done_text += [run / f for f in (*small, "metrics.jsonl", "train.log") if (run / f).is_file()]
                if (run / "best.safetensors").is_file():
                    done_weights.append(run / "best.safetensors")
        else:
            state += sorted(p for p in run.iterdir() if p.is_file() and not p.name.startswith("."))
    state_bytes = _tar(out_dir, state)
    state_parts = _write_parts(state_bytes, dest, STATE, part_bytes)
    warnings = []
    if len(state_bytes) > max_bytes or len(state_parts) > max_parts:
        warnings.append(f"the state archive alone ({len(state_bytes) / 2**20:.1f} MiB, {len(state_parts)} parts) is "
                        "over the limits: lower the parallel runs of the big rows")
    room = max_bytes - len(state_bytes)
    parts_left = max_parts - len(state_parts)
    text_bytes = len(_tar(out_dir, done_text)) if done_text else 0
    limit = min(room, parts_left * part_bytes)
    cost = lambda f: int(f.stat().st_size * 1.002) + 1024   # noqa: E731  (weights hardly compress; tar header)
    budget = limit - text_bytes
    chosen, left_out = [], []
    for w in sorted(done_weights, key=lambda p: p.stat().st_size):
        if cost(w) <= budget:
            chosen.append(w)
            budget -= cost(w)
        else:
            left_out.append(w)
    halves, tmp = [], out_dir / ".pack-f16"
    for w in list(left_out):  # float16 copies of what does not fit in float32
        if w.stat().st_size // 2 + 2048 <= budget:
            halves.append(_half_copy(w, tmp / w.parent.name / "best-f16.safetensors"))
            budget -= cost(halves[-1])
            left_out.remove(w)
    done_parts, done_size = [], 0
    for old in dest.glob(f"{DONE}.part-*"):
        old.unlink()
    while done_text or chosen or halves:
        data = _tar(out_dir, done_text + chosen, [(h, f"runs/{h.relative_to(tmp)}") for h in halves])
        if len(data) <= limit or not (chosen or halves):
            done_parts, done_size = _write_parts(data, dest, DONE, part_bytes), len(data)
            break
        drop = max(chosen + halves, key=lambda f: f.stat().st_size)  # over after all: drop the biggest, again
        (chosen if drop in chosen else halves).remove(drop)
        left_out.append(out_dir / "runs" / drop.parent.name / "best.safetensors")
    if left_out:
        warnings.append(f"best weights left out (scores kept in score.json): {[w.parent.name for w in left_out]}")
    shutil.rmtree(tmp, ignore_errors=True)
    return {"state_parts": state_parts, "state_mib": round(len(state_bytes) / 2 ** 20, 2),
            "done_parts": done_parts, "done_mib": round(done_size / 2 ** 20, 2),
            "finished_now": sorted({p.parent.name for p in done_text}), "best_weights": [w.parent.name for w in chosen],
            "float16_copies": [h.parent.name for h in halves], "left_out": [w.parent.name for w in left_out],
            "unfinished": [r.name for r in runs if run_state(r) != "finished"], "warnings": warnings}


def _member_run(name: str) -> str | None:
    """The run a file of a grid archive belongs to (``runs/NAME/...``), or None."""
    parts = Path(name).parts
    return parts[1] if len(parts) >= 3 and parts[0] == "runs" else None


def _archived_step(tar: tarfile.TarFile, member: tarfile.TarInfo) -> int:
    """The training step of a ``last.safetensors`` inside an archive, from its header alone."""
    f = tar.extractfile(member)
    try:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        return int(json.loads(header.get("__metadata__", {}).get("vurn", "{}")).get("step", 0))
    except (ValueError, TypeError):   # damaged: the local copy wins
        return -1


def _merge_log(path: Path, before: list[str]) -> None:
    """``grid_log.jsonl`` as the union of its lines before and after an archive was unpacked,
    in order of their sessions' start: a session recorded on either side is kept, once (a
    session is its start and command; the record that lists its runs wins over one restored
    from the table's provenance, which does not)."""
    after = path.read_text().splitlines() if path.is_file() else []
    sessions: dict = {}
    for line in before + after:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict):
            sessions.setdefault(line, line)
            continue
        key = ("session", rec.get("start"), rec.get("command"))
        if key not in sessions or ("runs" in rec and "runs" not in json.loads(sessions[key])):
            sessions[key] = line

    def start(line):
        try:
            return json.loads(line).get("start") or ""
        except json.JSONDecodeError:
            return ""
    lines = sorted(sessions.values(), key=start)
    if lines != after:
        atomic_write(path, lambda tmp: Path(tmp).write_text("".join(x + "\n" for x in lines)))


def restore(out_dir, sources: Sequence) -> dict:
    """Unpack :func:`pack`'s archives into ``out_dir``, in the order given (later wins), except
    that a run is never rolled back (``kept_local`` names the runs kept as they are here):

    * a run finished here is not overwritten by an archive where it is unfinished;
    * an unfinished run is not overwritten by an archive whose ``last.safetensors`` is at
      an earlier step;
    * a run finished in an archive but not here replaces the local folder whole, so that
      no older best or last checkpoint of it stays behind to be scored;
    * so does a run trained to its end in an archive that is finished here only as the
      committed table's record (:func:`restore_table`: weights lost, trained again);
      :func:`collect` lists the first training's row under ``trained_again``; and a
      training here is not overwritten by an archive that holds only the table's record of it.

    ``grid_log.jsonl`` keeps the sessions recorded on either side. ``sources``: folders
    holding ``*.tgz.part-*`` files (state before done within a folder) or single part
    files. Writes ``out_dir/restored.json`` (the runs finished in the archives: what the
    other side has), which :func:`pack` uses to send back only what is new.

        >>> import tempfile; from pathlib import Path
        >>> g = Path(tempfile.mkdtemp()) / "grid"
        >>> for name in ("toy-lstm1-64", "toy-gru1-64"): (g / "runs" / name).mkdir(parents=True)
        >>> _ = (g / "runs" / "toy-lstm1-64" / "summary.json").write_text('{"finished": true}')
        >>> _ = (g / "runs" / "toy-gru1-64" / "metrics.jsonl").write_text('{"step": 1, "epoch": 1, "loss": 2.0}\\n')
        >>> _ = pack(g, g.parent / "trip")
        >>> back = restore(g.parent / "copy", [g.parent / "trip"])
        >>> back["runs"], back["finished"], back["unfinished"]
        (2, ['toy-lstm1-64'], ['toy-gru1-64'])
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: list[list[Path]] = []
    for src in map(Path, sources):
        if src.is_dir():
            prefixes = sorted({p.name.split(".part-")[0] for p in src.glob("*.tgz.part-*")},
                              key=lambda n: (n != STATE, n))
            groups += [sorted(src.glob(f"{n}.part-*")) for n in prefixes]
        elif src.is_file() and ".part-" in src.name:
            groups.append(sorted(src.parent.glob(src.name.split(".part-")[0] + ".part-*")))
        else:
            raise ValueError(f"{src} is neither a folder of *.tgz.part-* archives nor one of their parts")
    if not groups:
        raise ValueError(f"no *.tgz.part-* archives in {', '.join(map(str, sources))}")
    kept_local, archived_finished = set(), set()
    for parts in groups:
        try:
            data = b"".join(p.read_bytes() for p in parts)
            tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise ValueError(f"{parts[0].parent}: the archive {parts[0].name.split('.part-')[0]} in "
                             f"{len(parts)} part(s) cannot be read ({e}): a part is missing or damaged") from None
        with tar:
            for m in members:
                if m.name.startswith("/") or ".." in Path(m.name).parts or not (m.isfile() or m.isdir()):
                    raise ValueError(f"{parts[0]} holds an unsafe member {m.name!r}: not unpacked")
            run_of = {m.name: _member_run(m.name) for m in members}
            summaries = {run_of[m.name]: json.loads(tar.extractfile(m).read() or b"{}") for m in members
                         if run_of[m.name] and m.name.endswith("/summary.json")}
            finished_there = {n for n, s in summaries.items() if s.get("finished")}
            archived_finished |= finished_there
            local = {p.name: p for p in _run_folders(out_dir)}
            done_here = {n for n, p in local.items() if run_state(p) == "finished"}
            # a model finished here only as the committed table's record (its weights lost with an
            # earlier checkout) and trained again there: the training replaces the record
            again = {n for n in finished_there & done_here
                     if "restored_from" not in summaries[n] and _table_row(local[n]) is not None}
            # a run finished here (on this machine, or adopted) is not overwritten by an archive
            # in which it is unfinished: a session that started before it finished trained it too;
            # nor a training here by an archive's table record of it (its first training's score)
            skip = (done_here - finished_there) | {n for n in finished_there & done_here if "restored_from"
                                                   in summaries[n] and _table_row(local[n]) is None}
            # nor an unfinished run by an archive at an earlier step (no checkpoint there: step -1)
            archived_step = {run_of[m.name]: _archived_step(tar, m) for m in members
                             if run_of[m.name] and m.name.endswith("/last.safetensors")}
            for name in {run_of[m.name] for m in members if run_of[m.name]} - finished_there - done_here:
                here = read_meta(local[name] / "last.safetensors") if name in local else None
                if here is not None and archived_step.get(name, -1) < here.get("step", 0):
                    skip.add(name)
            held = []   # nor a run a runner trains here now
            for name in {run_of[m.name] for m in members if run_of[m.name]} & set(local):
                lock = _lock_run(local[name])
                if lock is None:
                    skip.add(name)
                else:
                    held.append(lock)
            for name in (finished_there - done_here - skip) | (again - skip):   # no stale file of it stays
                if name in local:
                    for f in local[name].iterdir():
                        if f.name not in (LOCK, TABLED):   # the lock, and its place in the table
                            shutil.rmtree(f) if f.is_dir() else f.unlink()
            mine = [m for m in members if run_of[m.name] not in skip]
            kept_local |= {run_of[m.name] for m in members} & skip
            log_before = (out_dir / "grid_log.jsonl").read_text().splitlines() if (out_dir / "grid_log.jsonl").is_file() else []
            if hasattr(tarfile, "data_filter"):
                tar.extractall(out_dir, members=mine, filter="data")
            else:  # pragma: no cover - Python before 3.11.4
                tar.extractall(out_dir, members=mine)
            _merge_log(out_dir / "grid_log.jsonl", log_before)
            for lock in held:
                lock.close()
    runs = _run_folders(out_dir)
    finished = [r.name for r in runs if run_state(r) == "finished"]
    # what the other side has finished: a run finished here since is sent back by the next pack
    _write_json(out_dir / "restored.json", {"at": _now(), "sources": [str(s) for s in sources],
                                            "finished": sorted(archived_finished & set(finished))})
    return {"archives": [str(g[0]).rsplit(".part-", 1)[0] for g in groups], "runs": len(runs), "finished": finished,
            "unfinished": [r.name for r in runs if r.name not in finished], "kept_local": sorted(kept_local)}


def _table_row(run_dir: Path) -> dict | None:
    """The row :func:`restore_table` stored for a run, while nothing has been trained in its folder since
    (no log or weights here, no summary but the restored one, no launch: a run finished elsewhere
    after its restore and carried here without its weights has its own summary and launches)."""
    if any((run_dir / f).exists() for f in ("metrics.jsonl", "last.safetensors", "best.safetensors")):
        return None
    summary = _read_json(run_dir / "summary.json")
    launches = (_read_json(run_dir / "grid.json") or {}).get("launches", [])
    if (summary is not None and "restored_from" not in summary) or any(not x.get("adopted") for x in launches):
        return None
    return (_read_json(run_dir / TABLED) or {}).get("row")


def _clean(value):
    """A value of a pandas row as JSON has it (NaN: None, numpy scalars: Python ones)."""
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def restore_table(out_dir, results_dir) -> dict:
    """Rebuild a grid folder's record from a committed ``results_dir`` (``table1.csv``,
    ``table1_blocks.csv``, ``table1_provenance.json`` as :func:`collect` wrote them), for a
    checkout that has lost ``runs/`` (it is git-ignored) or never had it.

    Each finished model becomes a run folder holding its committed row (``from_table.json``),
    its scores and block losses (``score.json``) and a summary that marks it finished, so
    that :func:`run_grid` skips it, :func:`collect` writes its row back unchanged and
    :func:`pack` carries it to a GPU session. Its weights are not in the table: they are
    not restored. A model the table has unfinished had its checkpoints in the lost folder,
    so it is restored as not started (``lost`` names it and the epochs it had) and trains
    from the beginning. The sessions of the provenance join ``grid_log.jsonl``. A run that
    already has a folder here is left as it is (``kept_local``).

        >>> import tempfile; from pathlib import Path
        >>> back = restore_table(Path(tempfile.mkdtemp()) / "grid", ROOT / "results" / "table1")
        >>> back["finished"] >= 43, back["runs"]
        (True, 72)
        >>> collect(back["grid"], None).equals(collect(back["grid"], None))   # collect reads it like any grid
        True
    """
    import pandas as pd
    out_dir, results_dir = Path(out_dir), Path(results_dir)
    table_csv = results_dir / "table1.csv"
    if not table_csv.is_file():
        raise FileNotFoundError(f"no {table_csv}: restore_table wants the folder `python -m lab grid collect` "
                                "wrote (results/table1)")
    table = pd.read_csv(table_csv)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{table_csv} lacks columns {missing}: it was not written by this version's collect")
    blocks = (pd.read_csv(results_dir / "table1_blocks.csv", index_col="name")
              if (results_dir / "table1_blocks.csv").is_file() else pd.DataFrame())
    prov = _read_json(results_dir / "table1_provenance.json", {})
    adopted = {a["name"]: a for a in prov.get("adopted", [])}
    trained_again = {a["name"]: a for a in prov.get("trained_again", [])}
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    kept, lost, finished = [], {}, 0
    for index, rec in enumerate(table.to_dict("records")):
        row = {c: _clean(rec[c]) for c in COLUMNS}
        run_dir = out_dir / "runs" / row["name"]
        if run_dir.exists() and any(run_dir.iterdir()):
            kept.append(row["name"])
            continue
        if not row["finished"]:
            if row["status"] != "not started":
                lost[row["name"]] = row["epochs_done"]
            row = {**{c: None for c in COLUMNS}, **{c: row[c] for c in (
                "name", "corpus", "kind", "layers", "row", "width", "params", "dropout", "paper_test_loss")},
                "epochs_done": 0, "epochs_planned": row["epochs_planned"], "finished": False, "status": "not started"}
        run_dir.mkdir(parents=True, exist_ok=True)
        again = {"trained_again": trained_again[row["name"]]} if row["finished"] and row["name"] in trained_again else {}
        _write_json(run_dir / TABLED, {"from": str(results_dir), "at": _now(), "index": index, "row": row, **again})
        if not row["finished"]:
            continue
        finished += 1
        _write_json(run_dir / "summary.json", {
            "finished": True, "restored_from": str(table_csv), "corpus": row["corpus"], "kind": row["kind"],
            "layers": row["layers"], "row": row["row"], "width": row["width"], "params": row["params"],
            "dropout": row["dropout"], "epochs": row["epochs_done"], "test_loss": row["test_loss"]})
        score = {k: row[k] for k in ("test_loss", "test_loss_se", "test_chars", "best_epoch", "val_loss", "scored_on")}
        if row["name"] in blocks.index:
            score["block_losses"] = [float(v) for v in blocks.loc[row["name"]].dropna()]
        _write_json(run_dir / "score.json", {**score, "bootstrap": prov.get("bootstrap", BOOTSTRAP),
                                             "restored_from": str(table_csv)})
        if row["name"] in adopted:   # collect lists the adopted runs in its provenance from grid.json
            a = {k: v for k, v in adopted[row["name"]].items() if k not in ("name", "device", "wall_s")}
            _write_json(run_dir / "grid.json", {"launches": [{"wall_s": adopted[row["name"]].get("wall_s"),
                                                              "device": adopted[row["name"]].get("device"),
                                                              "adopted": True}],
                                                "wall_s": adopted[row["name"]].get("wall_s"), "adopted": a})
    log = out_dir / "grid_log.jsonl"
    before = log.read_text().splitlines() if log.is_file() else []
    have = {(s.get("start"), s.get("command")) for s in _sessions(out_dir)}
    new = [json.dumps(s) for s in prov.get("sessions", []) if (s.get("start"), s.get("command")) not in have]
    if new and not before:   # the provenance's own order (that of the log it was collected from)
        atomic_write(log, lambda tmp: Path(tmp).write_text("".join(x + "\n" for x in new)))
    elif new:
        _merge_log(log, before + new)   # into a log of its own: in order of the sessions' start
    return {"grid": str(out_dir), "runs": len(table) - len(kept), "finished": finished, "lost": lost,
            "kept_local": kept, "sessions": len(new)}


def keep(out_dir, names: Sequence[str], dest, *, command: str | None = None, unfinished: bool = False,
         data_dir=None, half: bool = False) -> dict:
    """Copy the best checkpoints of runs ``names`` to ``dest/NAME.safetensors``, each with a ``NAME.json`` card.

    The card holds the run's summary (config, epochs, losses, device, training commit),
    its test score and SE (``score.json``), every launch (``grid.json``) and who kept it
    when. A run must be finished unless ``unfinished=True`` (then the card says which
    epoch its best-so-far weights are from). A stale score is computed again on the corpus
    (``data_dir`` as in :func:`collect`). ``half=True`` stores the weights as float16 (half
    the bytes; the shipped models are stored so) and the card adds ``half_val_loss`` and
    ``half_test_loss``: those weights scored here. Returns the files written and their size.

    Here the shipped War and Peace LSTM stands in for a finished run, with a cached score::

        >>> import json, shutil, tempfile; from pathlib import Path
        >>> from lab.pretrained import resolve
        >>> run = Path(tempfile.mkdtemp()) / "grid" / "runs" / "war_and_peace-lstm2-512"; run.mkdir(parents=True)
        >>> best = shutil.copyfile(resolve("war_and_peace_lstm"), run / "best.safetensors")
        >>> _ = (run / "summary.json").write_text('{"finished": true}')
        >>> _ = (run / "score.json").write_text(json.dumps({"test_loss": 1.1602, "block_losses": [], "bootstrap": BOOTSTRAP,
        ...                                                 "best_sha256": read_meta(best)["tensors_sha256"]}))
        >>> kept = keep(run.parent.parent, [run.name], run.parent.parent / "kept", command="doc")
        >>> [Path(f).name for f in kept["written"]], kept["mib"]
        (['war_and_peace-lstm2-512.safetensors', 'war_and_peace-lstm2-512.json'], 2.41)
        >>> card = json.loads(Path(kept["written"][1]).read_text())
        >>> card["width"], card["best_epoch"], card["test_loss"], card["finished"]
        (307, 42, 1.1602, True)
    """
    out_dir, dest = Path(out_dir), Path(dest)
    for name in names:  # every name checked before anything is copied
        best = out_dir / "runs" / name / "best.safetensors"
        if not best.is_file():
            raise FileNotFoundError(f"no best checkpoint for {name!r} in {out_dir / 'runs'}: "
                                    "train it (python -m lab grid run) or restore its session's archive")
        if not _read_json(best.parent / "summary.json", {}).get("finished") and not unfinished:
            raise ValueError(f"{name} has not finished its epochs: keep it anyway with unfinished=True "
                             "(--unfinished), and its card will say so")
    written, total = [], 0
    for name in names:
        run = out_dir / "runs" / name
        best = run / "best.safetensors"
        meta = read_meta(best) or {}
        # an unfinished run has no summary yet: its configuration comes from the checkpoint
        model_cfg = meta.get("model_config", {})
        summary = _read_json(run / "summary.json", {})
        # as collect counts them: a finished run's summary says how many epochs ran (one restored from
        # another session has no last.safetensors: pack ships the best weights only)
        config = {**meta.get("train_config", {}), "width": model_cfg.get("width"),
                  "params": count_parameters(ModelConfig.from_dict(model_cfg)) if model_cfg else None,
                  "epochs_done": summary.get("epochs", (read_meta(run / "last.safetensors") or meta).get("epoch"))}
        score = {k: v for k, v in (score_run(run, data_dir=data_dir) or {}).items() if k != "block_losses"}
        card = {**config, **summary, "finished": bool(summary.get("finished")), "best_epoch": meta.get("epoch"),
                **{k: score.get(k) for k in ("test_loss", "test_loss_se", "test_chars", "val_loss", "scored_on")},
                "launches": (launches := _read_json(run / "grid.json", {}).get("launches", [])),
                "devices": sorted({x.get("device", "?") for x in launches}),   # "device" is the last launch's
                "source": (f"adopted into the grid from {ad['checkpoint']} (lab.grid.adopt; weights {ad['weights']})"
                           if (ad := summary.get("adopted")) else f"lab.grid run {name} (best validation checkpoint)"),
                "kept_by": command or " ".join(map(shlex.quote, sys.argv)), "kept_commit": _commit(), "kept_at": _now()}
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / f"{name}.safetensors"
        if half:
            _half_copy(best, target)
            card.update(weights=read_meta(target)["weights"],
                        **{f"half_{k}": v for k, v in _score_weights(target, data_dir).items()})
        else:
            shutil.copyfile(best, target)
        _write_json(dest / f"{name}.json", card)
        written += [str(target), str(dest / f"{name}.json")]
        total += target.stat().st_size
    return {"written": written, "mib": round(total / 2 ** 20, 2)}


def adopt(out_dir, name: str, checkpoint, curve, *, wall_s: float | None = None, data_dir=None,
          command: str | None = None, **selection) -> dict:
    """Make a finished training with exactly the options of grid run ``name`` that run.

    ``checkpoint`` is that training's best-validation checkpoint as :mod:`lab.train` left
    it when the run ended (kind "best", with its test loss; e.g. a shipped model's, stored
    float16) and ``curve`` its per-epoch CSV (epoch, step, train_loss, val_loss). Refused,
    with nothing written, unless: the training options equal the grid's for ``name`` (every
    option, the defaults included; the grid is the one ``out_dir``'s sessions planned, else
    :func:`grid_runs` with ``selection``); it was trained on this corpus; the curve has
    every epoch and agrees with the checkpoint's own history and best epoch; and ``name``
    has no run of its own yet. Writes ``runs/NAME`` (the checkpoint, ``metrics.jsonl``
    from the curve, ``summary.json`` with its test loss scored here, ``grid.json`` saying
    where it came from) all at once, and returns the summary. ``wall_s``: the training's
    whole wall time, when known (the checkpoint holds the seconds to its best epoch).

        >>> adopt("runs/grid", "war_and_peace-lstm2-512", "lab/pretrained/war_and_peace_lstm.safetensors",
        ...       "results/shipped/curve_wp-lstm2-512-d25.csv", wall_s=299.1)["test_loss"]  # doctest: +SKIP
        1.1601...

    (that needs the War and Peace corpus). Options that differ from the grid's are refused
    before any corpus is read, here the dropout::

        >>> import tempfile; from pathlib import Path
        >>> from lab.pretrained import resolve
        >>> curve = Path(tempfile.mkdtemp()) / "curve.csv"; _ = curve.write_text("epoch,step,train_loss,val_loss\\n")
        >>> try: adopt(tempfile.mkdtemp(), "war_and_peace-lstm2-512", resolve("war_and_peace_lstm"), curve,
        ...            dropout=0.3, vocab_sizes={"war_and_peace": 82})
        ... except ValueError as e: print(e)                                # doctest: +ELLIPSIS
        /.../war_and_peace_lstm.safetensors was trained with other options than grid run war_and_peace-lstm2-512: dropout 0.25 there, 0.3 in the grid
    """
    import pandas as pd

    from lab.checkpoint import check_corpus
    from lab.corpus import load_corpus
    from lab.train import TrainConfig, run_summary
    out_dir, checkpoint, curve = Path(out_dir), Path(checkpoint), Path(curve)
    run_dir = out_dir / "runs" / name
    if run_state(run_dir) != "new" or (run_dir / "metrics.jsonl").exists():
        raise ValueError(f"{run_dir} already holds a run of the grid: adopt only into a run that has not started")
    for path in (checkpoint, curve):
        if not path.is_file():
            raise FileNotFoundError(f"no file {path}: adopt wants the training's best checkpoint and its curve CSV")
    planned = _planned_runs(out_dir)
    if name in planned:
        run = GridRun(**{**planned[name], "options": tuple(tuple(o) for o in planned[name].get("options", ()))})
    else:
        label = name.rsplit("-", 2)[0]
        selection.setdefault("corpora", [label] if label in CORPORA else CORPORA)   # read only the corpus needed
        runs = {r.name: r for r in grid_runs(data_dir=data_dir, **selection)}
        if name not in runs:
            raise ValueError(f"no run {name!r} in the grid; its runs are named like {next(iter(runs))!r}")
        run = runs[name]
    meta = read_meta(checkpoint)
    if meta is None or "train_config" not in meta:
        raise ValueError(f"{checkpoint} is not a vurn checkpoint with its training options")
    if meta.get("kind") != "best" or "test_loss" not in meta:
        raise ValueError(f"{checkpoint} is not the best checkpoint of a finished training (lab.train marks it "
                         "kind 'best' and writes its test loss when the run ends): adopt only finished trainings")
    defaults = asdict(TrainConfig())
    want, got = {**defaults, **run.train_config()}, {**defaults, **meta["train_config"]}
    differ = [f"{k} {got[k]!r} there, {want[k]!r} in the grid" for k in sorted(want) if got.get(k) != want[k]]
    if differ:
        raise ValueError(f"{checkpoint} was trained with other options than grid run {name}: {'; '.join(differ)}")
    check_corpus(meta, load_corpus(want["corpus"], data_dir), checkpoint)
    rows = pd.read_csv(curve)
    if not {"epoch", "step", "train_loss", "val_loss"} <= set(rows.columns):
        raise ValueError(f"{curve} needs columns epoch, step, train_loss, val_loss; it has {', '.join(rows.columns)}")
    if list(rows.epoch) != list(range(1, want["epochs"] + 1)):
        raise ValueError(f"{curve} has epochs {rows.epoch.min()}..{rows.epoch.max()} ({len(rows)} rows): "
                         f"a finished run has every epoch from 1 to {want['epochs']}")
    val = dict(zip(rows.epoch, rows.val_loss))
    off = [h["epoch"] for h in meta.get("history", []) if abs(val[h["epoch"]] - h["val_loss"]) > 1e-5]
    best = int(rows.epoch[rows.val_loss.idxmin()])
    if off or not meta.get("history") or best != meta["epoch"] or int(rows.step[best - 1]) != meta["step"]:
        raise ValueError(f"{curve} is not this checkpoint's curve: its best validation epoch is {best} (step "
                         f"{int(rows.step[best - 1])}), the checkpoint's {meta['epoch']} (step {meta['step']})"
                         + (f"; validation losses differ at epochs {off[:5]}" if off else ""))
    staging = out_dir / "runs" / f".adopt-{name}"     # written whole, then moved into place: no half run
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        shutil.copyfile(checkpoint, staging / "best.safetensors")
        # one training-loss line per epoch (its mean), so that curve() gives back the same rows
        lines = [json.dumps(rec) for r in rows.itertuples() for rec in (
            {"step": int(r.step), "epoch": int(r.epoch), "loss": float(r.train_loss)},
            {"step": int(r.step), "epoch": int(r.epoch), "val_loss": float(r.val_loss)})]
        (staging / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        source = {"checkpoint": str(checkpoint), "curve": str(curve), "weights": _weights_dtype(checkpoint),
                  "adopted_by": command or " ".join(map(shlex.quote, sys.argv)), "adopted_commit": _commit(),
                  "adopted_at": _now()}
        wall = round(float(wall_s), 1) if wall_s is not None else None
        _write_json(staging / "grid.json", {"launches": [{
            "start": None, "wall_s": wall, "rc": 0, "outcome": "finished", "resumed": False,
            "device": meta.get("device"), "steps": int(rows.step.iloc[-1]), "adopted": True}],
            "wall_s": wall, "failed": False, "error": None, "adopted": source})
        score = score_run(staging, data_dir=data_dir)
        summary = {**run_summary(TrainConfig.from_dict(want), meta, corpus=meta["corpus"], epochs=want["epochs"],
                                 test_loss=score["test_loss"], elapsed_s=wall if wall is not None else meta.get("elapsed_s"),
                                 device=meta.get("device"), commit=meta.get("code_commit")),
                   "best_elapsed_s": meta.get("elapsed_s"), "adopted": source}
        _write_json(staging / "summary.json", summary)
        if run_dir.exists():
            (run_dir / TABLED).unlink(missing_ok=True)   # a not-started row restored from the table
            run_dir.rmdir()   # an empty folder only (checked above: nothing of a run is there)
        staging.rename(run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


# -- command line (python -m lab grid ...) -----------------------------------------------------

def _train_option(text: str) -> tuple[str, Any]:
    from lab.train import TrainConfig, option_type
    key, eq, value = text.partition("=")
    key = key.strip().replace("-", "_")
    types = {f.name: f for f in fields(TrainConfig)}
    if not eq or key not in types:
        raise ValueError(f"--set wants KEY=VALUE with KEY one of {', '.join(types)}, got {text!r}")
    optional = str(types[key].type).endswith("| None")
    typ = option_type(types[key])
    if optional and value.strip().lower() == "none":
        return key, None
    try:
        return key, typ(value)
    except ValueError:
        example = f", e.g. {key}={types[key].default}" if types[key].default is not None else ""
        raise ValueError(f"--set {key}={value}: {key} wants {'an' if typ is int else 'a'} {typ.__name__}"
                         f"{' or none' if optional else ''}{example}") from None


def add_arguments(p) -> None:
    """The ``grid`` subcommands: list, run, collect, pack, restore, keep, adopt, rates.

        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="grid"); add_arguments(parser)
        >>> a = parser.parse_args(["run", "runs/grid", "--rows", "64", "128", "--parallel", "6"])
        >>> a.grid_command, a.out, a.rows, a.parallel, a.epochs
        ('run', 'runs/grid', [64, 128], 6, 50)
    """
    sub = p.add_subparsers(dest="grid_command", required=True)

    def selection(q):
        q.add_argument("--corpora", nargs="+", default=list(CORPORA),
                       help="corpora of the grid: war_and_peace, linux_kernel or paths to text files")
        q.add_argument("--kinds", nargs="+", default=list(KINDS), help="cell types of the grid (rnn lstm gru)")
        q.add_argument("--layers", nargs="+", type=int, default=list(LAYERS), help="depths of the grid (1 2 3)")
        q.add_argument("--rows", nargs="+", type=int, default=list(ROWS), help="Table 1 rows (64 128 256 512)")
        q.add_argument("--epochs", type=int, default=50, help="epochs of every run (the paper: 50)")
        q.add_argument("--dropout", type=float, default=None,
                       help="one dropout for every run (default: per corpus and row, see lab.grid.DROPOUT)")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="options",
                       help="a further training option for every run, e.g. max_train_chars=20000 (repeatable)")
        q.add_argument("--data", default=None, help="folder holding the corpora (default: $VURN_DATA, then the cache)")

    q = sub.add_parser("list", help="print the grid's runs, smallest first")
    selection(q)
    q = sub.add_parser("run", help="train the grid's runs (resumable)")
    q.add_argument("out", help="grid folder: runs/NAME for every model, grid_log.jsonl")
    selection(q)
    q.add_argument("--parallel", type=int, default=4, help="training processes at a time (they share the GPU)")
    q.add_argument("--row-parallel", action="append", default=[], metavar="ROW=N",
                   help="fewer processes while starting runs of a row, e.g. 512=3 (repeatable)")
    q.add_argument("--budget", type=float, default=None, help="wall budget in seconds for this call (default: none)")
    q.add_argument("--reserve", type=float, default=30.0,
                   help="seconds each child keeps before the budget's end for startup and test scoring")
    q.add_argument("--min-seconds", type=float, default=20.0, help="start no run that would get fewer seconds")
    q.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    q.add_argument("--threads", type=int, default=None, help="torch threads per child (default: cores / parallel)")
    q.add_argument("--retry-failed", action="store_true", help="launch again runs whose last launch failed")
    q.add_argument("--carry-mib", type=float, default=None,
                   help="start a new run only while all unfinished runs' files fit this many MiB (what a GPU "
                        "session can carry to the next)")
    q.add_argument("--overcommit", type=int, default=0,
                   help="with --carry-mib and --budget: up to N more runs past the carry, each on condition that "
                        "its measured rate lets it finish in the budget (one that cannot is stopped and dropped)")
    q.add_argument("--probe-seconds", type=float, default=60.0,
                   help="seconds of training over which an overcommitted run's rate is measured (default 60)")
    q = sub.add_parser("collect", help="table1.csv, learning curves and provenance from a grid folder")
    q.add_argument("out", help="grid folder written by `grid run`")
    q.add_argument("--results", default="results", help="folder for table1.csv, curves/ and table1_provenance.json")
    q.add_argument("--device", default=None, help="device that scores the test split (default: CUDA when present)")
    q.add_argument("--data", default=None, help="folder holding the corpora (default: $VURN_DATA, then the cache)")
    q.add_argument("--rescore", action="store_true", help="score every best checkpoint again, ignoring score.json")
    q = sub.add_parser("pack", help="archive a grid folder in 15 MiB parts for the trip back from a GPU session")
    q.add_argument("out", help="grid folder")
    q.add_argument("dest", help="folder for the grid-state and grid-done parts")
    q.add_argument("--max-parts", type=int, default=7, help="at most this many part files in all")
    q.add_argument("--max-mib", type=float, default=60.0, help="at most this many MiB in all")
    q.add_argument("--state-only", action="store_true", help="the state alone, no finished runs' weights")
    q = sub.add_parser("restore", help="rebuild a grid folder from the committed table and archives of "
                                       "earlier sessions, oldest first")
    q.add_argument("out", help="grid folder to unpack into")
    q.add_argument("sources", nargs="+", help="results folders holding table1.csv (results/table1: every finished "
                                              "model's record, no weights), then folders holding *.tgz.part-* "
                                              "files, oldest session first")
    q = sub.add_parser("keep", help="copy runs' best checkpoints, with a provenance card each, to a folder")
    q.add_argument("out", help="grid folder")
    q.add_argument("names", nargs="+", help="runs to keep, e.g. war_and_peace-lstm3-512")
    q.add_argument("--to", default="results/checkpoints", help="destination folder (default results/checkpoints)")
    q.add_argument("--unfinished", action="store_true", help="keep a run that has not finished its epochs")
    q.add_argument("--half", action="store_true",
                   help="store float16 weights (half the bytes), scored again on val and test for the card")
    q.add_argument("--data", default=None, help="folder holding the corpora (default: $VURN_DATA, then the cache)")
    q = sub.add_parser("rates", help="training steps per second of every launch, by device and setting")
    q.add_argument("out", help="grid folder")
    q = sub.add_parser("adopt", help="make a finished training with the grid's exact options a run of the grid")
    q.add_argument("out", help="grid folder")
    q.add_argument("name", help="the grid run it is, e.g. war_and_peace-lstm2-512")
    q.add_argument("checkpoint", help="its best-validation checkpoint")
    q.add_argument("curve", help="its per-epoch curve CSV (epoch, step, train_loss, val_loss)")
    q.add_argument("--wall-s", type=float, default=None, help="the training's whole wall time in seconds, if known")
    q.add_argument("--data", default=None, help="folder holding the corpora (default: $VURN_DATA, then the cache)")


def main(args) -> int:
    """Run a ``grid`` subcommand parsed by :func:`add_arguments`; returns the exit status.

        >>> import argparse, tempfile; from pathlib import Path
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "toy.txt").write_text("the cat sat on the mat. " * 40)
        >>> parser = argparse.ArgumentParser(prog="grid"); add_arguments(parser)
        >>> main(parser.parse_args(["list", "--corpora", str(d / "toy.txt"), "--kinds", "lstm", "gru", "--layers", "2", "--rows", "64"]))
        toy-lstm2-64                     width    38  params    20,037  dropout 0.0
        toy-gru2-64                      width    45  params    20,756  dropout 0.0
        0
    """
    command = " ".join(map(shlex.quote, ["python", "-m", "lab"] + sys.argv[1:]))
    if args.grid_command in ("list", "run"):
        options = dict(_train_option(o) for o in args.options)
        pick = dict(corpora=args.corpora, kinds=args.kinds, layers=args.layers, rows=args.rows, epochs=args.epochs,
                    dropout=args.dropout, train_options=options, data_dir=args.data)
    if args.grid_command == "list":
        for r in grid_runs(**pick):
            print(f"{r.name:32s} width {r.width:5d}  params {r.params:9,d}  dropout {r.dropout}")
        return 0
    if args.grid_command == "run":
        caps = {}
        for text in args.row_parallel:
            row, eq, n = text.partition("=")
            if not eq or not row.strip().isdigit() or not n.strip().isdigit():
                raise ValueError(f"--row-parallel wants ROW=N, e.g. 512=3, got {text!r}")
            caps[int(row)] = int(n)
        try:
            report = run_grid(args.out, parallel=args.parallel, row_parallel=caps, budget_seconds=args.budget,
                              device=args.device, reserve_seconds=args.reserve, min_seconds=args.min_seconds,
                              threads=args.threads, retry_failed=args.retry_failed, command=command,
                              carry_bytes=None if args.carry_mib is None else args.carry_mib * 2 ** 20,
                              overcommit=args.overcommit, probe_seconds=args.probe_seconds, **pick)
        except KeyboardInterrupt:
            print("grid: interrupted: the runs keep their last checkpoints, and this session is in grid_log.jsonl",
                  file=sys.stderr)
            return 130
        print(json.dumps(report, indent=1))
        return 0 if not report["failed"] else 1
    if args.grid_command == "collect":
        df = collect(args.out, args.results, device=args.device, data_dir=args.data, rescore=args.rescore,
                     command=command)
        with __import__("pandas").option_context("display.width", 200, "display.max_rows", 200):
            print(df[["name", "width", "epochs_done", "status", "best_epoch", "val_loss", "test_loss",
                      "test_loss_se", "paper_test_loss", "wall_s"]].to_string(index=False))
        return 0
    if args.grid_command == "pack":
        print(json.dumps(pack(args.out, args.dest, max_parts=args.max_parts, max_bytes=int(args.max_mib * 2 ** 20),
                              state_only=args.state_only), indent=1))
        return 0
    if args.grid_command == "rates":
        rates = launch_rates(args.out)
        if rates.empty:
            print(f"no launches with a step count in {args.out}")
            return 0
        table = rates.groupby(["device", "parallel", "mps", "row", "model"]).steps_per_s.agg(["count", "median"])
        with __import__("pandas").option_context("display.width", 200, "display.max_rows", 500):
            print(table.to_string())
        return 0
    if args.grid_command == "adopt":
        print(json.dumps(adopt(args.out, args.name, args.checkpoint, args.curve, wall_s=args.wall_s,
                               data_dir=args.data, command=command), indent=1))
        return 0
    if args.grid_command == "keep":
        kept = keep(args.out, args.names, args.to, command=command, unfinished=args.unfinished, data_dir=args.data,
                    half=args.half)
        print(json.dumps(kept, indent=1))
        return 0
    tables = [s for s in args.sources if (Path(s) / "table1.csv").is_file()]
    archives = [s for s in args.sources if s not in tables]
    if tables and archives and args.sources.index(archives[0]) < args.sources.index(tables[-1]):
        raise ValueError("name the results folders (holding table1.csv) before the archives: the table is the "
                         "oldest record, the archives' sessions come after it")
    for source in tables:
        print(json.dumps(restore_table(args.out, source), indent=1))
    if archives:
        print(json.dumps(restore(args.out, archives), indent=1))
    return 0
