"""Checkpoints: safetensors weights with JSON metadata in the same file.

A checkpoint is one ``.safetensors`` file. Its header's metadata holds ``vurn``: a
JSON object with the model config, the vocabulary, the corpus name and sha256, the
training state (epoch, step, losses), the code commit, and a sha256 of the tensor
bytes so that an altered file is refused. Loading never unpickles. Writes are atomic
(a temporary file in the same folder, then ``os.replace``), so a crash never leaves a
half-written checkpoint where a good one was.

    >>> import tempfile, pathlib, torch
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.safetensors"
    >>> save_checkpoint(p, {"w": torch.ones(2)}, {"note": "hi"})
    >>> tensors, meta = load_checkpoint(p)
    >>> tensors["w"].tolist(), meta["note"]
    ([1.0, 1.0], 'hi')
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lab.files import atomic_write

FORMAT = "vurn-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, or does not fit what it is used with.

    >>> try: load_checkpoint("/nonexistent/last.safetensors")
    ... except CheckpointError as e: print(e)
    checkpoint /nonexistent/last.safetensors does not exist: check the path or the run folder

    ``reason`` is what is wrong without the advice on what to do, for a caller that knows
    better advice (resuming, for one, can only use last.safetensors).
    """

    def __init__(self, reason: str, advice: str = ""):
        super().__init__(reason + advice)
        self.reason = reason


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        sha.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        sha.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return sha.hexdigest()


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write tensors and a JSON-able ``meta`` dict atomically to ``path``.

    The metadata gains ``format`` and ``tensors_sha256`` (the digest that loading checks).

    >>> import tempfile, pathlib, torch
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.safetensors"
    >>> save_checkpoint(p, {"w": torch.zeros(2, 3)}, {"epoch": 1})
    >>> meta = load_checkpoint(p)[1]
    >>> sorted(meta), meta["format"]
    (['epoch', 'format', 'tensors_sha256'], 'vurn-checkpoint-1')
    """
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    header = {**meta, "format": FORMAT, "tensors_sha256": _digest(tensors)}  # never a stale digest
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"vurn": json.dumps(header)}))


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Read ``(tensors, meta)``; refuse missing, truncated, altered or foreign files.

    >>> import tempfile, pathlib, torch
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.safetensors"
    >>> save_checkpoint(p, {"w": torch.arange(3.0)}, {"epoch": 2})
    >>> tensors, meta = load_checkpoint(p)
    >>> tensors["w"].tolist(), meta["epoch"]
    ([0.0, 1.0, 2.0], 2)
    >>> data = bytearray(p.read_bytes()); data[-1] ^= 1; _ = p.write_bytes(data)   # flip one bit
    >>> try: load_checkpoint(p)
    ... except CheckpointError as e: print(e)
    /.../w.safetensors was altered after it was written (its weights do not match the sha256
    in its metadata): it cannot be trusted; use another checkpoint
    """
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"checkpoint path must be a str or path, got {path!r}")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path or the run folder")
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("vurn")
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or damaged?): {e}",
                              ". Use another checkpoint, e.g. best.safetensors of the same run.") from None
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not a vurn checkpoint (no 'vurn' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} has damaged vurn metadata (not JSON: {e})", ": use another checkpoint") from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt != FORMAT:
        raise CheckpointError(f"{path} has format {fmt!r}, expected {FORMAT!r}")
    if _digest(tensors) != meta.get("tensors_sha256"):
        raise CheckpointError(f"{path} was altered after it was written (its weights do not match the "
                              "sha256 in its metadata): it cannot be trusted", "; use another checkpoint")
    return {k: v.to(device) for k, v in tensors.items()}, meta


def check_corpus(meta: dict, corpus, source: str | os.PathLike = "the checkpoint") -> None:
    """Refuse a corpus that a checkpoint was not trained on: another vocabulary or another text.

    ``meta`` is a checkpoint's metadata, ``corpus`` a :class:`lab.corpus.Corpus`.

    >>> from lab.corpus import Corpus
    >>> toy = Corpus.from_text("toy", "abc")
    >>> meta = {"corpus": "toy", "corpus_sha256": toy.sha256, "vocab": "abc"}
    >>> check_corpus(meta, toy)                               # the same corpus: no error
    >>> try: check_corpus(meta, Corpus.from_text("other", "abd"))
    ... except CheckpointError as e: print(e)
    the checkpoint was trained on corpus 'toy' (sha256 ba7816bf8f01...), whose vocabulary differs
    from that of corpus 'other' (sha256 a52d159f262b...) (characters in one but not the other:
    'c', 'd'): use the corpus the model was trained on
    """
    trained = f"{meta.get('corpus')!r} (sha256 {str(meta.get('corpus_sha256'))[:12]}...)"
    given = f"{corpus.name!r} (sha256 {corpus.sha256[:12]}...)"
    vocab = "".join(corpus.vocab)
    if meta.get("vocab") != vocab:
        differ = sorted(set(meta.get("vocab") or "") ^ set(vocab))
        which = (f"characters in one but not the other: {', '.join(map(repr, differ[:10]))}"
                 + (" ..." if len(differ) > 10 else "")) if differ else "same characters, another order"
        raise CheckpointError(f"{source} was trained on corpus {trained}, whose vocabulary differs from that of "
                              f"corpus {given} ({which}): use the corpus the model was trained on")
    if meta.get("corpus_sha256") != corpus.sha256:
        raise CheckpointError(f"{source} was trained on corpus {trained}, not on corpus {given}: the texts "
                              "differ, so its splits and losses do not apply; use the corpus it was trained on")


CODE_DIRS = ("lab", "widgets", "scripts", "bench")   # a new, uncommitted file here is code the commit lacks


def code_commit(root: str | os.PathLike | None = None) -> str:
    """The git commit of the code that is running (``root``: the repository, by default this
    one), with ``+dirty`` for local changes: edits to tracked files, or new files not yet
    committed in :data:`CODE_DIRS` (a script run before its first commit).

    ``VURN_COMMIT``, when set, wins: a copy of the tree on another machine (a lent GPU)
    can carry a stale ``.git``, and the script that sent it knows the commit.

    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"VURN_COMMIT": "0123abc"}):
    ...     code_commit()
    '0123abc'
    """
    if os.environ.get("VURN_COMMIT"):
        return os.environ["VURN_COMMIT"]
    root = Path(__file__).resolve().parent.parent if root is None else Path(root)
    try:
        done = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=root,
                              capture_output=True, text=True, timeout=5)
        commit = done.stdout.strip() if done.returncode == 0 else ""
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        dirty += subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "--", *CODE_DIRS], cwd=root,
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("VURN_COMMIT", "unknown")
    if not commit:
        return os.environ.get("VURN_COMMIT", "unknown")
    return commit + ("+dirty" if dirty else "")
