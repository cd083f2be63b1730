"""Training with the paper's protocol (§4.1), stateful truncated BPTT and exact resume.

Defaults are the paper's: RMSProp (lr 2e-3, alpha 0.95), lr x0.95 per epoch after
epoch 10, batch 100, sequence 100 with the state carried across batches, uniform
init +-0.08, gradients clipped element-wise at 5, dropout after every layer (before the
next layer and before the output), 50 epochs, the best validation checkpoint kept, test loss
in nats per char. The clip acts on the gradient of the loss averaged over batch and time;
char-rnn clamps the gradient summed over the 100 steps instead, a 100 times tighter clip
(results/table1/README.md lists where the protocol differs from char-rnn's).

A run folder holds ``last.safetensors`` (weights, optimizer, RNG and carried state:
everything ``resume`` needs), ``best.safetensors`` (weights of the best validation
epoch), ``metrics.jsonl`` and, when finished, ``summary.json``.

Resume is bit for bit on a CPU (tested, a SIGKILL included). On a GPU, cuDNN draws the
dropout masks between layers from its own generator, which restoring the RNG state
re-seeds: a resumed multi-layer run with dropout gets the same data, schedule and
optimizer state but, very likely, other masks: the same run in distribution, not bit
for bit (not yet measured on a GPU).

    >>> from lab.corpus import Corpus
    >>> import tempfile
    >>> corpus = Corpus.from_text("toy", "abcab\\n" * 400)
    >>> cfg = TrainConfig(kind="lstm", layers=1, width=16, epochs=1, batch=4, seq_len=20)
    >>> summary = train(cfg, tempfile.mkdtemp(), corpus=corpus, progress=False)
    >>> summary["epochs"], summary["test_loss"] < 2.0
    (1, True)
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lab.checkpoint import CheckpointError, check_corpus, code_commit, load_checkpoint, save_checkpoint
from lab.checks import is_integer, is_real
from lab.corpus import KNOWN, Corpus, CorpusError, load_corpus
from lab.files import atomic_write
from lab.models import KINDS, ROWS, CharRNN, ModelConfig, count_parameters, detach_state, exact_float32, width_for
from lab.sample import SEED_RANGE

# how the text is split: DESIGN.md's contiguous splits, or char-rnn's loader's (Corpus.charrnn_pieces)
LAYOUTS = ("contiguous", "char-rnn")
# what a training run writes in its folder (train.log and grid.json are the grid runner's own)
RUN_FILES = ("last.safetensors", "best.safetensors", "metrics.jsonl", "summary.json", "snapshots")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept.

    >>> import tempfile
    >>> from lab.corpus import Corpus
    >>> corpus = Corpus.from_text("toy", "abcab\\n" * 100)
    >>> cfg = TrainConfig(kind="rnn", width=8, epochs=1, batch=2, seq_len=10, lr=1e38)   # far too large
    >>> try: train(cfg, tempfile.mkdtemp(), corpus=corpus, device="cpu", progress=False)
    ... except TrainingDiverged as e: print(e)
    the training loss became nan at epoch 1, step 2. No checkpoint was written in /... before that.
    Start a new run folder with a lower --lr or --grad-clip (resuming with the same options would
    diverge again).
    """


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; it travels inside every checkpoint.

    >>> cfg = TrainConfig(kind="gru", layers=2, dropout=0.25)      # the rest: the paper's protocol
    >>> cfg.corpus, cfg.epochs, cfg.batch, cfg.seq_len, cfg.lr
    ('war_and_peace', 50, 100, 100, 0.002)

    Every value is checked when the config is made, so a bad one stops a run before
    anything is written:

    >>> try: TrainConfig(seq_len=-5)
    ... except ValueError as e: print(e)
    seq_len must be at least 1 (characters per training step), got -5
    """

    corpus: str = "war_and_peace"   # a known corpus name or a path to a UTF-8 file
    kind: str = "lstm"
    layers: int = 1
    row: int = 128                  # Table 1 row: match the size of a 1-layer LSTM this wide
    width: int | None = None        # an explicit width instead of the row's
    dropout: float = 0.0
    epochs: int = 50
    batch: int = 100
    seq_len: int = 100
    lr: float = 2e-3
    lr_decay: float = 0.95
    decay_after: int = 10           # epochs at the full learning rate
    rmsprop_alpha: float = 0.95
    init_scale: float = 0.08
    grad_clip: float = 5.0
    seed: int = 0
    checkpoint_every: int = 0       # steps between mid-epoch checkpoints; 0: at epoch ends only
    snapshot_every: int = 0         # keep the weights every this many steps in snapshots/ (0: never)
    max_train_chars: int | None = None  # use only the first chars of the train split (quick runs)
    layout: str = "contiguous"      # the splits: contiguous, or "char-rnn" (Corpus.charrnn_pieces)

    def __post_init__(self):
        corpus = os.fspath(self.corpus) if isinstance(self.corpus, os.PathLike) else self.corpus
        if not isinstance(corpus, str) or not corpus.strip():
            raise ValueError(f"corpus must be a corpus name ({', '.join(KNOWN)}) or a path to a UTF-8 text "
                             f"file, got {self.corpus!r}")
        object.__setattr__(self, "corpus", corpus)
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        for name, whole, optional in _CHECKS:
            value = getattr(self, name)
            if optional and value is None:
                continue
            if not (is_integer(value) if whole else is_real(value)):
                raise ValueError(f"{name} must be {'a whole number' if whole else 'a number'}, got {value!r}")
            value = int(value) if whole else float(value)
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
            ok, rule = _RULES[name]
            if not ok(value):
                raise ValueError(f"{name} must be {rule}, got {value}")
            object.__setattr__(self, name, value)
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}: choose one of {', '.join(LAYOUTS)}")
        if self.layout == "char-rnn" and self.max_train_chars is not None:
            raise ValueError("max_train_chars cuts a contiguous training split; the char-rnn layout has none: "
                             "leave one of them out")
        if self.width is None and self.row not in ROWS:
            raise ValueError(f"row must be one of the paper's rows {', '.join(map(str, ROWS))} (or give a "
                             f"width), got {self.row}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a dict; unknown keys are an error that names them.

        >>> TrainConfig.from_dict({"kind": "gru", "epochs": 3}).epochs
        3
        >>> try: TrainConfig.from_dict({"kind": "gru", "epoch": 3})
        ... except ValueError as e: print(e)
        unknown training options ['epoch']; known: corpus, kind, layers, row, width, dropout, epochs, ...
        """
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}; known: "
                             f"{', '.join(f.name for f in fields(cls))}")
        return cls(**d)

    def model_config(self, vocab_size: int) -> ModelConfig:
        """The model shape for ``vocab_size`` characters: ``width``, else the Table 1 ``row``'s width.

        >>> TrainConfig(kind="gru", layers=2, row=128).model_config(65)
        ModelConfig(kind='gru', layers=2, width=96, vocab_size=65, dropout=0.0)
        >>> TrainConfig(kind="gru", width=8).model_config(65).width
        8
        """
        width = self.width if self.width is not None else width_for(self.kind, self.layers, self.row, vocab_size)
        return ModelConfig(self.kind, self.layers, width, vocab_size, self.dropout)

    def lr_at(self, epoch: int) -> float:
        """Learning rate during ``epoch`` (0-based).

        >>> cfg = TrainConfig()                  # 2e-3, then x0.95 per epoch after the first 10
        >>> [round(cfg.lr_at(e), 6) for e in (0, 9, 10, 11)]
        [0.002, 0.002, 0.0019, 0.001805]
        """
        return self.lr * self.lr_decay ** max(0, epoch + 1 - self.decay_after)


def option_type(field) -> type:
    """What a :class:`TrainConfig` field's value is read as from the command line.

    >>> {f.name: option_type(f).__name__ for f in fields(TrainConfig) if f.name in ("width", "lr", "layout")}
    {'width': 'int', 'lr': 'float', 'layout': 'str'}
    """
    return {"int | None": int, "float | None": float}.get(str(field.type)) or type(field.default)


# (field, whole number, None allowed) in field order, and each field's rule
_CHECKS = (("layers", True, False), ("row", True, False), ("width", True, True), ("dropout", False, False),
           ("epochs", True, False), ("batch", True, False), ("seq_len", True, False), ("lr", False, False),
           ("lr_decay", False, False), ("decay_after", True, False), ("rmsprop_alpha", False, False),
           ("init_scale", False, False), ("grad_clip", False, False), ("seed", True, False),
           ("checkpoint_every", True, False), ("snapshot_every", True, False), ("max_train_chars", True, True))
_RULES = {
    "layers": (lambda v: 1 <= v <= 3, "1, 2 or 3 (the paper's depths)"),
    "row": (lambda v: v >= 1, "positive (one of the paper's rows 64, 128, 256, 512)"),
    "width": (lambda v: v >= 1, "at least 1 (or left out: the row's width)"),
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "epochs": (lambda v: v >= 1, "at least 1"),
    "batch": (lambda v: v >= 1, "at least 1 (parallel streams per batch)"),
    "seq_len": (lambda v: v >= 1, "at least 1 (characters per training step)"),
    "lr": (lambda v: v > 0, "positive"),
    "lr_decay": (lambda v: 0 < v <= 1, "in (0, 1] (1: no decay)"),
    "decay_after": (lambda v: v >= 0, "at least 0 (epochs at the full learning rate)"),
    "rmsprop_alpha": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "init_scale": (lambda v: v > 0, "positive (weights start uniform in [-init_scale, init_scale])"),
    "grad_clip": (lambda v: v > 0, "positive (gradients are clamped to [-grad_clip, grad_clip])"),
    "seed": (lambda v: SEED_RANGE[0] <= v <= SEED_RANGE[1], "between -2**63 and 2**64 - 1 (torch's range)"),
    "checkpoint_every": (lambda v: v >= 0, "at least 0 (0: checkpoints at epoch ends only)"),
    "snapshot_every": (lambda v: v >= 0, "at least 0 (0: no snapshots)"),
    "max_train_chars": (lambda v: v >= 1, "at least 1 (or left out: the whole training split)"),
}


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when present, else CPU; an explicit choice wins.

    >>> pick_device("cpu").type
    'cpu'
    """
    if device:
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but torch sees no CUDA GPU; use --device cpu")
        try:
            device = torch.device(device)
        except RuntimeError as e:
            raise ValueError(f"unknown device {device!r} ({e}): use cpu, cuda or cuda:N") from None
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} was asked for but torch sees only "
                             f"{torch.cuda.device_count()} CUDA GPU(s): use cuda:0 to "
                             f"cuda:{torch.cuda.device_count() - 1}")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def batches_per_epoch(n_chars: int, batch: int, seq_len: int) -> int:
    """Training steps in one epoch: ``n_chars`` cut into ``batch`` streams, read ``seq_len`` at a time.

    Each step's targets are its inputs shifted by one; a stream's characters after the last
    full step (up to ``seq_len`` of them) go unread that epoch.

    >>> batches_per_epoch(2_556_971, batch=100, seq_len=100)      # War and Peace's training split
    255
    """
    return (n_chars // batch - 1) // seq_len


def stream_view(ids: torch.Tensor, batch: int) -> torch.Tensor:
    """Cut a split into ``batch`` contiguous streams (batch, chars // batch).

    >>> import torch
    >>> stream_view(torch.arange(10), 3).tolist()            # the leftover character is dropped
    [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    """
    n = ids.numel() // batch
    return ids[: n * batch].view(batch, n)


def train_step(model, optimizer, x, y, state, grad_clip: float):
    """One truncated-BPTT step; returns the (unsynchronised) loss tensor and new state.

    >>> import torch
    >>> from lab.models import CharRNN, ModelConfig
    >>> _ = torch.manual_seed(0)
    >>> model = CharRNN(ModelConfig("lstm", 1, 8, 5))
    >>> opt = torch.optim.RMSprop(model.parameters(), lr=2e-3)
    >>> ids = torch.randint(0, 5, (2, 11))                   # 2 streams of 10 steps, plus the targets
    >>> loss, state = train_step(model, opt, ids[:, :-1], ids[:, 1:], None, grad_clip=5.0)
    >>> round(loss.item(), 2), [tuple(s.shape) for s in state]    # LSTM state (h, c): (layers, batch, width)
    (1.61, [(1, 2, 8), (1, 2, 8)])
    """
    logits, state = model(x, state)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach(), detach_state(state)


@torch.no_grad()
def char_losses(model, ids: torch.Tensor, streams: int = 100, burn_in: int = 200,
                window: int = 1000) -> torch.Tensor:
    """Loss (nats) of every next character of ``ids``: a (len(ids) - 1,) float tensor.

    The text is cut into ``streams`` parallel pieces; each starts ``burn_in`` characters
    early (inside the text) so that its first counted characters have context.

    >>> import torch
    >>> from lab.models import CharRNN, ModelConfig
    >>> _ = torch.manual_seed(0)
    >>> model = CharRNN(ModelConfig("lstm", 1, 8, 5))
    >>> losses = char_losses(model, torch.randint(0, 5, (50,)))
    >>> losses.shape, round(losses.mean().item(), 1)         # untrained: mean about ln(5) = 1.61
    (torch.Size([49]), 1.6)
    """
    was_training = model.training
    model.eval()
    device = model.head.weight.device
    n = ids.numel() - 1                       # characters that have a next one
    streams = max(1, min(streams, n // max(1, 4 * burn_in) or 1))
    span = math.ceil(n / streams)
    starts = torch.tensor([max(0, s * span - burn_in) for s in range(streams)])
    length = span + burn_in
    pos = starts[:, None] + torch.arange(length)[None, :]                    # (S, L) input positions
    owner = torch.arange(streams)[:, None] * span
    counted = (pos >= owner) & (pos < torch.clamp(owner + span, max=n))
    src = ids.to(device)
    inputs = src[pos.clamp(max=n).to(device)]
    targets = src[(pos + 1).clamp(max=n).to(device)]
    losses = torch.zeros(n, device=device)
    state = None
    with exact_float32():   # on a GPU, the losses a trace gives
        for a in range(0, length, window):
            logits, state = model(inputs[:, a:a + window], state)
            nll = F.cross_entropy(logits.transpose(1, 2), targets[:, a:a + window], reduction="none")
            mask = counted[:, a:a + window].to(device)
            losses[pos[:, a:a + window].to(device)[mask]] = nll[mask].float()
    model.train(was_training)
    return losses.cpu()


def evaluate(model, ids: torch.Tensor, **kw) -> float:
    """Mean cross-entropy in nats per character over ``ids``.

    >>> import torch
    >>> from lab.models import CharRNN, ModelConfig
    >>> _ = torch.manual_seed(0)
    >>> model = CharRNN(ModelConfig("lstm", 1, 8, 5))
    >>> round(evaluate(model, torch.randint(0, 5, (50,))), 2)   # untrained: near ln(5) = 1.61
    1.6
    """
    return char_losses(model, ids, **kw).mean().item()


@torch.no_grad()
def row_losses(model, rows: torch.Tensor, window: int = 1000) -> torch.Tensor:
    """Loss (nats) of every next character of each row of ``rows`` (B, L): a (B, L - 1) tensor.

    Each row is one stream from a zero state, as char-rnn scores its val and test pieces
    (``TrainConfig(layout="char-rnn")``).

    >>> import torch
    >>> from lab.models import CharRNN, ModelConfig
    >>> _ = torch.manual_seed(0)
    >>> model = CharRNN(ModelConfig("lstm", 1, 8, 5))
    >>> rows = torch.randint(0, 5, (3, 40))
    >>> losses = row_losses(model, rows, window=7)
    >>> losses.shape, torch.allclose(losses[1], char_losses(model, rows[1], streams=1))
    (torch.Size([3, 39]), True)
    """
    was_training = model.training
    model.eval()
    device = model.head.weight.device
    rows = rows.to(device)
    inputs, targets = rows[:, :-1], rows[:, 1:]
    out, state = [], None
    with exact_float32():
        for a in range(0, inputs.shape[1], window):
            logits, state = model(inputs[:, a:a + window], state)
            out.append(F.cross_entropy(logits.transpose(1, 2), targets[:, a:a + window], reduction="none").float())
    model.train(was_training)
    return torch.cat(out, 1).cpu()


def charrnn_rows(corpus: Corpus, split: str, cfg: TrainConfig) -> torch.Tensor:
    """char-rnn's pieces of ``split`` for ``cfg``'s batch and sequence length, one row each, each
    with the target of its last character after it: (batch, chars + 1).

    >>> from lab.corpus import Corpus
    >>> charrnn_rows(Corpus.from_text("t", "abcd" * 50), "val", TrainConfig(batch=2, seq_len=5)).shape
    torch.Size([2, 11])
    """
    try:
        return torch.stack(corpus.charrnn_pieces(split, cfg.batch, cfg.seq_len, with_next=True))
    except CorpusError as e:
        raise ValueError(f"the char-rnn layout of this text has no {split} split ({e}): use a longer text, "
                         "or a smaller batch or seq_len") from None


def split_loss(model, corpus: Corpus, split: str, cfg: TrainConfig | None = None) -> float:
    """Mean loss (nats/char) of ``model`` on ``split`` in ``cfg``'s layout: the contiguous split
    in streams with a burn-in (:func:`evaluate`), or, for ``layout="char-rnn"``, char-rnn's
    pieces, each from a zero state as char-rnn scores them (:func:`row_losses`).

    >>> import torch
    >>> from lab.corpus import Corpus
    >>> from lab.models import CharRNN, ModelConfig
    >>> _ = torch.manual_seed(0); model = CharRNN(ModelConfig("lstm", 1, 8, 4))
    >>> corpus = Corpus.from_text("t", "abcd" * 500)
    >>> [round(split_loss(model, corpus, "test", TrainConfig(layout=l, batch=4, seq_len=10)), 2) for l in LAYOUTS]
    [1.4, 1.4]
    """
    if cfg is not None and cfg.layout == "char-rnn":
        return row_losses(model, charrnn_rows(corpus, split, cfg)).mean().item()
    return evaluate(model, corpus.split_ids(split))


def _state_tensors(state) -> dict[str, torch.Tensor]:
    if state is None:
        return {}
    if isinstance(state, tuple):
        return {"state.h": state[0], "state.c": state[1]}
    return {"state.h": state}


def _rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"rng.cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng.cuda"] = torch.cuda.get_rng_state(device)
    return out


class Trainer:
    """A training run bound to a folder; ``run()`` trains, ``resume=True`` continues exactly.

    >>> import tempfile
    >>> from lab.corpus import Corpus
    >>> corpus = Corpus.from_text("toy", "abcab\\n" * 100)
    >>> cfg = TrainConfig(kind="gru", width=8, epochs=1, batch=2, seq_len=10)
    >>> trainer = Trainer(cfg, tempfile.mkdtemp(), corpus=corpus, device="cpu", progress=False)
    >>> trainer.steps_per_epoch, tuple(trainer.data.shape)    # 2 streams of the 480 training chars
    (23, (2, 240))
    """

    def __init__(self, cfg: TrainConfig, run_dir, corpus: Corpus | None = None, device=None,
                 data_dir=None, resume: bool = False, progress: bool = True):
        if not isinstance(cfg, TrainConfig):
            raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}: use TrainConfig(...) "
                            "or TrainConfig.from_dict(...)")
        if corpus is not None and not isinstance(corpus, Corpus):
            raise TypeError(f"corpus must be a Corpus (lab.load_corpus(name or path) makes one), got "
                            f"{type(corpus).__name__} {corpus!r}: or leave it out and name it in "
                            "TrainConfig(corpus=...)")
        self.run_dir = Path(run_dir)
        _check_run_dir(self.run_dir)
        self.device = pick_device(device)
        self.progress = progress
        last = self.run_dir / "last.safetensors"
        if resume and last.is_file():
            tensors, meta = _load_last(self.run_dir)
            saved = TrainConfig.from_dict(meta["train_config"])
            changed = {f.name for f in fields(cfg) if getattr(cfg, f.name) != getattr(saved, f.name)}
            if "corpus" in changed and cfg.corpus not in KNOWN and saved.corpus not in KNOWN:
                changed.discard("corpus")   # the same file named another way (its sha256 is checked below)
            # only the length of the run may change on resume; anything else breaks exactness
            if changed - {"epochs"}:
                raise ValueError(f"cannot resume {self.run_dir} with different options {sorted(changed)}: "
                                 "use the same options, or a new run folder")
            if corpus is None and cfg.corpus != saved.corpus:
                corpus, self.corpus_file = load_corpus(cfg.corpus, data_dir), _corpus_file(cfg.corpus)
            elif corpus is None:
                corpus, self.corpus_file = _find_training_corpus(
                    meta, data_dir=data_dir, option="--corpus PATH (corpus=... in Python); its text is checked")
            else:
                self.corpus_file = meta.get("corpus_file")
            cfg = replace(saved, epochs=cfg.epochs)
        elif resume:
            found = _run_files(self.run_dir)
            raise CheckpointError(f"nothing to resume in {self.run_dir} (no last.safetensors)" + (
                f": it holds {', '.join(found)} of an earlier run, which cannot be resumed from; start a new run "
                "in another folder" + (f", or evaluate or sample {self.run_dir / 'best.safetensors'}"
                                       if "best.safetensors" in found else "")
                if found else ": start a new run there without --resume (resume=False)"))
        else:
            found = _run_files(self.run_dir)
            if found:
                raise FileExistsError(
                    f"{self.run_dir} already holds an earlier run ({', '.join(found)}): "
                    + ("pass resume=True (--resume) to continue it, or choose a new folder" if last.is_file() else
                       "it has no last.safetensors, so it cannot be resumed; choose a new folder "
                       "(nothing there is overwritten)"))
            self.corpus_file = _corpus_file(cfg.corpus) if corpus is None else None
        self.cfg = cfg
        self.corpus = corpus or load_corpus(cfg.corpus, data_dir)
        torch.manual_seed(cfg.seed)
        self.model = CharRNN(cfg.model_config(len(self.corpus.vocab)))
        self.model.init_uniform(cfg.init_scale)
        self.model.to(self.device)
        self.optimizer = torch.optim.RMSprop(self.model.parameters(), lr=cfg.lr,
                                             alpha=cfg.rmsprop_alpha, eps=1e-8)
        if cfg.layout == "char-rnn":
            self.data = charrnn_rows(self.corpus, "train", cfg).to(self.device)    # (B, N): char-rnn's rows
        else:
            train_ids = self.corpus.split_ids("train")
            if cfg.max_train_chars is not None:
                train_ids = train_ids[: cfg.max_train_chars]
            self.data = stream_view(train_ids, cfg.batch).to(self.device)     # (B, N)
        self.steps_per_epoch = batches_per_epoch(self.data.numel(), cfg.batch, cfg.seq_len)
        if self.steps_per_epoch < 1:
            raise ValueError(f"the training text ({self.data.numel()} chars) is too short for batch "
                             f"{cfg.batch} x sequence {cfg.seq_len}: lower them"
                             + (", or raise max_train_chars" if cfg.max_train_chars is not None else ""))
        for split in ("val", "test"):
            if cfg.layout == "char-rnn":
                charrnn_rows(self.corpus, split, cfg)   # an empty one is named now; a piece always scores
                continue
            n = self.corpus.split_ids(split).numel()
            if n < 2:   # a loss needs a character and the one after it
                raise ValueError(f"the {split} split has {n} character(s): scoring needs at least 2; "
                                 "use a longer text")
        self.epoch, self.step_in_epoch, self.step = 0, 0, 0
        self.best_val, self.history, self.elapsed = math.inf, [], 0.0
        self.state = None
        self.saved_at: tuple[int, int] | None = None    # (epoch, step) of last.safetensors
        if resume:
            self._restore(tensors, meta)
            # a run killed while writing a checkpoint (SIGKILL skips cleanup) leaves its temporary file
            for stale in self.run_dir.glob(".*.safetensors.*.tmp"):
                stale.unlink(missing_ok=True)

    # -- checkpoints -------------------------------------------------------------------
    def _meta(self, **extra) -> dict:
        return {
            "model_config": self.model.cfg.to_dict(), "train_config": asdict(self.cfg),
            "vocab": "".join(self.corpus.vocab), "corpus": self.corpus.name,
            "corpus_sha256": self.corpus.sha256,
            **({"corpus_file": self.corpus_file} if self.corpus_file else {}), "epoch": self.epoch, "step": self.step,
            "step_in_epoch": self.step_in_epoch, "best_val_loss": self.best_val,
            "history": self.history, "elapsed_s": round(self.elapsed, 2),
            "device": _device_name(self.device), "code_commit": code_commit(), **extra,
        }

    def _save_last(self) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        for i, group in enumerate(self.optimizer.state_dict()["state"].values()):
            for k, v in group.items():
                if torch.is_tensor(v):
                    tensors[f"optim.{i}.{k}"] = v.reshape(-1) if v.dim() == 0 else v
        tensors.update(_state_tensors(self.state))
        tensors.update(_rng_tensors(self.device))
        save_checkpoint(self.run_dir / "last.safetensors", tensors, self._meta(kind="last"))
        self.saved_at = (self.epoch, self.step)

    def _kept(self) -> str:
        """Where the last good checkpoint is, for the message of a diverged run."""
        if self.saved_at is None:
            return f"No checkpoint was written in {self.run_dir} before that"
        epoch, step = self.saved_at
        return (f"The last good checkpoint, {self.run_dir / 'last.safetensors'} (step {step}, "
                f"{epoch} epochs done), is kept")

    def _restore(self, tensors, meta) -> None:
        check_corpus(meta, self.corpus, self.run_dir / "last.safetensors")
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.model.to(self.device)
        opt = self.optimizer.state_dict()
        params = list(opt["state"].keys()) or list(range(len(list(self.model.parameters()))))
        state = {}
        for i, pid in enumerate(params):
            keys = [k for k in tensors if k.startswith(f"optim.{i}.")]
            if keys:
                state[pid] = {k.split(".", 2)[2]: (tensors[k].reshape(()) if k.endswith(".step") else tensors[k])
                              .to(self.device if not k.endswith(".step") else "cpu") for k in keys}
        opt["state"] = state
        self.optimizer.load_state_dict(opt)
        if "state.h" in tensors:
            h = tensors["state.h"].to(self.device)
            self.state = (h, tensors["state.c"].to(self.device)) if "state.c" in tensors else h
        torch.set_rng_state(tensors["rng.cpu"])
        if self.device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.epoch, self.step, self.step_in_epoch = meta["epoch"], meta["step"], meta["step_in_epoch"]
        self.best_val, self.history = meta["best_val_loss"], meta["history"]
        self.elapsed = meta["elapsed_s"]
        self.saved_at = (self.epoch, self.step)
        self._truncate_log(self.step, epoch_done=self.step_in_epoch == 0)

    def _truncate_log(self, step: int, epoch_done: bool = True) -> None:
        """Drop log lines written after the checkpoint we resume from (a killed run's tail).

        A checkpoint taken at an epoch's last step but before its validation
        (``epoch_done`` False) also drops that step's validation line: it is redone.
        """
        log = self.run_dir / "metrics.jsonl"
        if not log.exists():
            return
        keep = []
        for line in log.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            at = rec.get("step", 0)
            if at < step or (at == step and (epoch_done or "val_loss" not in rec)):
                keep.append(line)
        atomic_write(log, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in keep)))

    def _log(self, records: list[dict]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)

    # -- the loop ------------------------------------------------------------------------
    def run(self, max_seconds: float | None = None) -> dict:
        """Train until ``cfg.epochs`` (or ``max_seconds`` of wall time, resumable).

        >>> import tempfile
        >>> from lab.corpus import Corpus
        >>> corpus = Corpus.from_text("toy", "abcab\\n" * 100)
        >>> cfg = TrainConfig(kind="gru", width=8, epochs=1, batch=2, seq_len=10)
        >>> run = tempfile.mkdtemp()
        >>> Trainer(cfg, run, corpus=corpus, device="cpu", progress=False).run(max_seconds=0)  # stops after its first step
        {'finished': False, 'epochs': 0, 'step': 1, 'best_val_loss': inf}
        >>> summary = Trainer(cfg, run, corpus=corpus, device="cpu", progress=False, resume=True).run()
        >>> import os
        >>> summary["finished"], summary["epochs"], sorted(os.listdir(run))
        (True, 1, ['best.safetensors', 'last.safetensors', 'metrics.jsonl', 'summary.json'])
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg, T = self.cfg, self.cfg.seq_len
        started = time.time()
        base_elapsed = self.elapsed
        pending: list[tuple[int, int, torch.Tensor]] = []   # losses not yet synchronised

        def flush():
            if not pending:
                return
            values = torch.stack([p[2] for p in pending]).tolist()
            for (epoch, step, _), v in zip(pending, values):
                if not math.isfinite(v):
                    pending.clear()
                    raise TrainingDiverged(
                        f"the training loss became {v} at epoch {epoch + 1}, step {step}. {self._kept()}. "
                        "Start a new run folder with a lower --lr or --grad-clip (resuming with the same "
                        "options would diverge again).")
            self._log([{"step": s, "epoch": e + 1, "loss": round(v, 6)} for (e, s, _), v in zip(pending, values)])
            bar.set_postfix(loss=f"{values[-1]:.3f}", lr=f"{cfg.lr_at(self.epoch):.2e}")
            pending.clear()

        self.model.train()
        if cfg.snapshot_every and self.step == 0:
            self._save_snapshot()                       # the initial weights: where the dynamics start
        bar = tqdm(total=cfg.epochs * self.steps_per_epoch, initial=self.step, disable=not self.progress,
                   desc=f"{cfg.kind}{cfg.layers} {self.corpus.name}", unit="batch", dynamic_ncols=True)
        stopped_early = False
        try:
            while self.epoch < cfg.epochs:
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr_at(self.epoch)
                while self.step_in_epoch < self.steps_per_epoch:
                    a = self.step_in_epoch * T
                    x, y = self.data[:, a:a + T], self.data[:, a + 1:a + T + 1]
                    loss, self.state = train_step(self.model, self.optimizer, x, y, self.state, cfg.grad_clip)
                    self.step += 1
                    self.step_in_epoch += 1
                    pending.append((self.epoch, self.step, loss))
                    bar.update(1)
                    if len(pending) >= 50:
                        flush()
                    if cfg.snapshot_every and self.step % cfg.snapshot_every == 0:
                        self._save_snapshot()
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        flush()
                        self.elapsed = base_elapsed + time.time() - started
                        self._save_last()
                    if max_seconds is not None and time.time() - started > max_seconds:
                        stopped_early = True
                        break
                if stopped_early:
                    break
                flush()
                val = split_loss(self.model, self.corpus, "val", self.cfg)
                self.model.train()
                self.epoch, self.step_in_epoch, self.state = self.epoch + 1, 0, None
                self.elapsed = base_elapsed + time.time() - started
                self.history.append({"epoch": self.epoch, "val_loss": val, "lr": cfg.lr_at(self.epoch - 1),
                                     "elapsed_s": round(self.elapsed, 1)})
                self._log([{"step": self.step, "epoch": self.epoch, "val_loss": round(val, 6)}])
                if not math.isfinite(val):
                    raise TrainingDiverged(f"the validation loss became {val} after epoch {self.epoch}. "
                                           f"{self._kept()}.")
                if val < self.best_val:
                    self.best_val = val
                    self._save_best(val)
                self._save_last()
                if self.progress:
                    bar.write(f"epoch {self.epoch}: val {val:.4f} nats/char (best {self.best_val:.4f})")
            flush()
            if stopped_early:
                self.elapsed = base_elapsed + time.time() - started
                self._save_last()
        finally:
            bar.close()
        if self.epoch < cfg.epochs:
            return {"finished": False, "epochs": self.epoch, "step": self.step, "best_val_loss": self.best_val}
        return self.finish()

    def _save_snapshot(self) -> None:
        """The weights as they are now, kept (training dynamics read them; see lab.dynamics)."""
        path = self.run_dir / "snapshots" / f"step-{self.step:07d}.safetensors"
        path.parent.mkdir(exist_ok=True)
        save_checkpoint(path, self.model.state_dict(), self._meta(kind="snapshot"))

    def _save_best(self, val: float) -> None:
        tensors = self.model.state_dict()
        save_checkpoint(self.run_dir / "best.safetensors", tensors, self._meta(kind="best", val_loss=val))

    def finish(self) -> dict:
        """Score the best checkpoint on test; write ``summary.json``; return it.

        :meth:`run` calls it at the end; calling it again scores ``best.safetensors`` anew.

        >>> import tempfile
        >>> from lab.corpus import Corpus
        >>> corpus = Corpus.from_text("toy", "abcab\\n" * 100)
        >>> cfg = TrainConfig(kind="gru", width=8, epochs=1, batch=2, seq_len=10)
        >>> run = tempfile.mkdtemp()
        >>> trainer = Trainer(cfg, run, corpus=corpus, device="cpu", progress=False); _ = trainer.run()
        >>> summary = trainer.finish()
        >>> summary["width"], summary["params"], summary["best_epoch"], round(summary["test_loss"], 1)
        (8, 372, 1, 1.3)
        >>> import json, pathlib
        >>> json.loads((pathlib.Path(run) / "summary.json").read_text()) == summary
        True
        """
        best = self.run_dir / "best.safetensors"
        tensors, meta = load_checkpoint(best, self.device)
        model = CharRNN(ModelConfig.from_dict(meta["model_config"])).to(self.device)
        model.load_state_dict(tensors)
        test = split_loss(model, self.corpus, "test", self.cfg)
        summary = run_summary(self.cfg, meta, corpus=self.corpus.name, epochs=self.epoch, test_loss=test,
                              elapsed_s=self.elapsed, device=_device_name(self.device), commit=code_commit())
        meta["test_loss"] = test
        save_checkpoint(best, tensors, meta)
        text = json.dumps(summary, indent=2) + "\n"
        atomic_write(self.run_dir / "summary.json", lambda tmp: Path(tmp).write_text(text))
        return summary


def run_summary(cfg: TrainConfig, best_meta: dict, *, corpus: str, epochs: int, test_loss: float,
                elapsed_s: float | None, device: str | None, commit: str | None) -> dict:
    """What ``summary.json`` holds once a run has finished (the grid and Table 1 read it).

    ``best_meta`` is the best checkpoint's metadata (its epoch, validation loss, model shape).

        >>> meta = {"epoch": 3, "val_loss": 1.5, "model_config": {"kind": "lstm", "layers": 1, "width": 8,
        ...                                                       "vocab_size": 5, "dropout": 0.0}}
        >>> s = run_summary(TrainConfig(), meta, corpus="toy", epochs=4, test_loss=1.6, elapsed_s=9.87,
        ...                 device="cpu", commit="abc")
        >>> s["width"], s["params"], s["best_epoch"], s["elapsed_s"]
        (8, 525, 3, 9.9)
    """
    model = ModelConfig.from_dict(best_meta["model_config"])
    return {"finished": True, "corpus": corpus, "kind": cfg.kind, "layers": cfg.layers, "row": cfg.row,
            "width": model.width, "dropout": cfg.dropout, "params": count_parameters(model), "epochs": epochs,
            "best_epoch": best_meta["epoch"], "val_loss": best_meta.get("val_loss"), "test_loss": test_loss,
            "elapsed_s": None if elapsed_s is None else round(elapsed_s, 1), "device": device,
            "code_commit": commit}


def training_corpus(meta: dict, path=None, data_dir=None) -> Corpus:
    """The corpus a checkpoint was trained on, from its metadata ``meta``.

    A known corpus is found by name (``data_dir``, ``$VURN_DATA``, the cache). A corpus
    file is looked for where training recorded it (its absolute path, ``corpus_file``),
    then as the training named it (relative to the working folder, for checkpoints
    written before that was recorded). ``path`` names the file instead (a moved file,
    or a relative one given from another folder). The caller checks the text with
    :func:`lab.checkpoint.check_corpus`.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "poem.txt"; _ = p.write_text("roses are red\\n" * 5)
    >>> meta = {"train_config": {"corpus": "elsewhere/poem.txt"}, "corpus_file": str(p)}
    >>> training_corpus(meta).name
    'poem'
    >>> try: training_corpus({"train_config": {"corpus": "poem.txt"}})
    ... except CorpusError as e: print(e)
    this model was trained on the corpus file 'poem.txt', which is not found from /...: name the file
    with --corpus PATH (path=... in Python)
    """
    return _find_training_corpus(meta, path, data_dir)[0]


def _find_training_corpus(meta: dict, path=None, data_dir=None, option: str = "--corpus PATH (path=... in Python)"):
    """(corpus, absolute path of its file or None) for :func:`training_corpus`."""
    name = str((meta.get("train_config") or {}).get("corpus") or meta.get("corpus"))
    if path is not None:
        if str(path) in KNOWN:
            return load_corpus(str(path), data_dir), None
        path = Path(path)
        if not path.is_file():
            raise CorpusError(f"corpus file {path} does not exist" + (" (it is a folder)" if path.is_dir() else "")
                              + ": name the text file the model was trained on")
        if name in KNOWN:   # a copy of a known corpus: its own splits and name
            return Corpus.from_file(path, splits=KNOWN[name].splits, name=name), os.path.abspath(path)
        return load_corpus(path), _corpus_file(path)
    if name in KNOWN:
        return load_corpus(name, data_dir), None
    recorded = meta.get("corpus_file")
    for candidate in dict.fromkeys(c for c in (recorded, name) if c):
        if Path(candidate).is_file():
            return Corpus.from_file(candidate), os.path.abspath(candidate)
    where = f" (recorded as {recorded})" if recorded and recorded != name else ""
    raise CorpusError(f"this model was trained on the corpus file {name!r}{where}, which is not found from "
                      f"{os.getcwd()}: name the file with {option}")


def _corpus_file(name) -> str | None:
    """The absolute path of a corpus given as a file, None for a known corpus name."""
    if str(name) in KNOWN or not Path(name).is_file():
        return None
    return os.path.abspath(name)


def _check_run_dir(run_dir: Path) -> None:
    """Refuse a run folder that is a file, or that cannot be made or written."""
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"the run folder {run_dir} is a file, not a folder: choose a folder for the run "
                              "(--run-dir), a new one for a new run")
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FileExistsError(f"the run folder {run_dir} cannot be made: {existing} is a file, not a folder; "
                              "choose another folder (--run-dir)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"the run folder {run_dir} cannot be written: no write permission in {existing}; "
                              "choose a folder you can write (--run-dir)")


def discard_unresumable(run_dir) -> list[str]:
    """Delete what a run killed before its first checkpoint left (no ``last.safetensors``, so it
    cannot be resumed), so that the run can start again in its folder; returns what went.

    A folder with a ``last.safetensors`` is left alone: that run resumes.

    >>> import tempfile, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (run / "metrics.jsonl").write_text("{}"); (run / "snapshots").mkdir()
    >>> _ = (run / "snapshots" / "step_0.safetensors").write_bytes(b"")
    >>> discard_unresumable(run), sorted(p.name for p in run.iterdir())
    (['metrics.jsonl', 'snapshots/'], [])
    """
    run_dir = Path(run_dir)
    if (run_dir / "last.safetensors").is_file():
        return []
    found = _run_files(run_dir)
    discard_run(run_dir)
    return found


def discard_run(run_dir) -> None:
    """Delete what training wrote in ``run_dir`` (:data:`RUN_FILES`, and a checkpoint a kill cut
    short in :func:`lab.files.atomic_write`), resumable or not: the run starts from its first
    step there. Anything else in the folder (a grid's launch record, a log) stays.

    >>> import tempfile, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> for f in ("last.safetensors", ".best.safetensors.x1.tmp", "grid.json"): _ = (run / f).write_text("")
    >>> discard_run(run); sorted(p.name for p in run.iterdir())
    ['grid.json']
    """
    run_dir = Path(run_dir)
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for half_written in run_dir.glob(".*.tmp"):
        half_written.unlink(missing_ok=True)


def _run_files(run_dir: Path) -> list[str]:
    """The files of an earlier run in ``run_dir`` (an empty snapshots/ folder does not count)."""
    found = []
    for name in RUN_FILES:
        p = run_dir / name
        if p.is_dir() and name == "snapshots":
            if any(p.iterdir()):
                found.append(name + "/")
        elif p.exists():
            found.append(name)
    return found


def _load_last(run_dir: Path):
    """``load_checkpoint(run_dir / "last.safetensors")`` with a resume's advice when it is damaged."""
    try:
        return load_checkpoint(run_dir / "last.safetensors")
    except CheckpointError as e:
        reason = e.reason   # without load_checkpoint's "use another checkpoint": a resume cannot
        best = run_dir / "best.safetensors"
        raise CheckpointError(
            f"cannot resume {run_dir}: {reason}. A run resumes only from its last.safetensors (kept as it is): "
            "start a new run in another folder" + (
                f", or evaluate or sample the best epoch's weights, {best} (python -m lab eval {run_dir})"
                if best.is_file() else "")) from None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores)"


def train(cfg: TrainConfig, run_dir, corpus: Corpus | None = None, device=None, data_dir=None,
          resume: bool = False, progress: bool = True, max_seconds: float | None = None) -> dict:
    """Train ``cfg`` in ``run_dir`` (see the module docstring); returns the summary.

    >>> import tempfile
    >>> from lab.corpus import Corpus
    >>> corpus = Corpus.from_text("toy", "abcab\\n" * 100)
    >>> cfg = TrainConfig(kind="gru", width=8, epochs=1, batch=2, seq_len=10)
    >>> summary = train(cfg, tempfile.mkdtemp(), corpus=corpus, device="cpu", progress=False)
    >>> summary["finished"], summary["epochs"], summary["params"], round(summary["test_loss"], 1)
    (True, 1, 372, 1.3)
    """
    trainer = Trainer(cfg, run_dir, corpus=corpus, device=device, data_dir=data_dir,
                      resume=resume, progress=progress)
    return trainer.run(max_seconds=max_seconds)
