"""lab.checkpoint: round trip, every kind of bad file refused clearly, corpus fit, atomic writes."""
from __future__ import annotations

import json
import os
import pickle
import re
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import lab.checkpoint
from lab.checkpoint import FORMAT, CheckpointError, check_corpus, load_checkpoint, save_checkpoint
from lab.corpus import Corpus
from lab.files import atomic_write


def sample_tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "model.w": torch.randn(7, 5, generator=gen),
        "model.half": torch.randn(3, generator=gen).half(),
        "optim.0.step": torch.tensor([12.0]),
        "rng.cpu": torch.get_rng_state(),                       # uint8
        "ids": torch.arange(10, dtype=torch.long),
        "empty": torch.zeros(0, 4),
        "view": torch.randn(4, 6, generator=gen).T,             # not contiguous
    }


def sample_meta() -> dict:
    return {"model_config": {"kind": "lstm", "layers": 2, "width": 8, "vocab_size": 5, "dropout": 0.1},
            "vocab": "\n \"ab\u00e9", "corpus": "toy", "corpus_sha256": "0" * 64,
            "history": [{"epoch": 1, "val_loss": 1.5}], "best_val_loss": float("inf"), "note": None}


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "run" / "last.safetensors"   # the folder does not exist yet
    save_checkpoint(path, sample_tensors(), sample_meta())
    return path


def data_offset(path) -> int:
    """Where the tensor bytes start: after the 8-byte header length and the JSON header."""
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + n


def test_round_trip_keeps_tensors_and_metadata(ckpt):
    tensors, meta = load_checkpoint(ckpt)
    want = sample_tensors()
    assert set(tensors) == set(want)
    for name, t in want.items():
        assert tensors[name].dtype == t.dtype and torch.equal(tensors[name], t), name
    for key, value in sample_meta().items():
        assert meta[key] == value, key
    assert meta["format"] == FORMAT and len(meta["tensors_sha256"]) == 64


def test_metadata_cannot_override_the_digest(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.ones(3)}, {"tensors_sha256": "stale", "format": "old"})
    _, meta = load_checkpoint(path)
    assert meta["format"] == FORMAT and meta["tensors_sha256"] != "stale"


def test_load_to_a_device(ckpt):
    tensors, _ = load_checkpoint(ckpt, device="meta")      # any device but the CPU it is read on
    assert all(t.device.type == "meta" for t in tensors.values())


# -- bad files --------------------------------------------------------------------------------

def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint .*nope\.safetensors does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_folder_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("keep", [0.0, 0.005, 0.5, 0.999])
def test_truncated_file_is_refused(ckpt, keep):
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=r"not a readable safetensors file \(truncated or damaged\?\)"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("where", [0, 0.5, -1])
def test_flipped_byte_in_tensor_data_is_refused(ckpt, where):
    data = bytearray(ckpt.read_bytes())
    start = data_offset(ckpt)
    i = {0: start, 0.5: (start + len(data)) // 2, -1: len(data) - 1}[where]
    data[i] ^= 0x01
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"was altered after it was written"):
        load_checkpoint(ckpt)


def test_damaged_vurn_metadata_is_refused(ckpt):
    data = bytearray(ckpt.read_bytes())
    header = data[8:data_offset(ckpt)].decode()
    key = '\\"vocab\\":'                # inside the JSON string that holds vurn's metadata
    i = header.index(key) + len(key) - 1
    data[8 + i] = ord(" ")         # still a valid safetensors header, but vurn's JSON is broken
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"damaged vurn metadata"):
        load_checkpoint(ckpt)


def test_plain_safetensors_without_vurn_metadata_is_refused(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, str(path))
    with pytest.raises(CheckpointError, match=r"a safetensors file but not a vurn checkpoint"):
        load_checkpoint(path)
    save_file({"w": torch.ones(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"not a vurn checkpoint"):
        load_checkpoint(path)


def test_other_format_version_is_refused(tmp_path):
    path = tmp_path / "future.safetensors"
    save_file({"w": torch.ones(2)}, str(path), metadata={"vurn": json.dumps({"format": "vurn-checkpoint-9"})})
    with pytest.raises(CheckpointError, match=r"format 'vurn-checkpoint-9', expected 'vurn-checkpoint-1'"):
        load_checkpoint(path)
    save_file({"w": torch.ones(2)}, str(path), metadata={"vurn": "[1, 2]"})
    with pytest.raises(CheckpointError, match=r"format None"):
        load_checkpoint(path)


def test_pickle_renamed_safetensors_is_refused_without_unpickling(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.ones(2)}, path)            # a zip of pickles
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps({"w": [1.0, 2.0]}))  # a bare pickle

    def no_unpickling(*a, **k):
        raise AssertionError("load_checkpoint unpickled something")
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    for p in (path, raw):
        with pytest.raises(CheckpointError, match=r"not a readable safetensors file"):
            load_checkpoint(p)


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("hello, this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"not a readable safetensors file"):
        load_checkpoint(path)


# -- the checkpoint's corpus --------------------------------------------------------------------

def meta_for(corpus: Corpus) -> dict:
    return {"corpus": corpus.name, "corpus_sha256": corpus.sha256, "vocab": "".join(corpus.vocab)}


def test_check_corpus_accepts_the_training_corpus():
    corpus = Corpus.from_text("mine", "hello world\n" * 20)
    check_corpus(meta_for(corpus), corpus)
    check_corpus(meta_for(corpus), Corpus.from_text("renamed", corpus.text))  # the text is what counts


def test_check_corpus_refuses_another_text_with_the_same_vocabulary():
    trained = Corpus.from_text("trained", "hello world\n" * 20)
    other = Corpus.from_text("other", "world hello\n" * 20)
    assert trained.vocab == other.vocab
    with pytest.raises(CheckpointError) as err:
        check_corpus(meta_for(trained), other, "run/best.safetensors")
    msg = str(err.value)
    assert "run/best.safetensors" in msg and "'trained'" in msg and "'other'" in msg
    assert trained.sha256[:12] in msg and other.sha256[:12] in msg


def test_check_corpus_refuses_another_vocabulary_and_names_the_characters():
    trained = Corpus.from_text("trained", "abc\n" * 20)
    other = Corpus.from_text("other", "abd\n" * 20)
    with pytest.raises(CheckpointError, match=r"'trained'.*vocabulary differs.*'other'.*'c', 'd'"):
        check_corpus(meta_for(trained), other)
    reordered = Corpus.from_text("reordered", trained.text, vocab="cba\n")
    with pytest.raises(CheckpointError, match=r"another order"):
        check_corpus(meta_for(trained), reordered)


# -- atomic writes --------------------------------------------------------------------------------

def test_failed_write_leaves_the_old_checkpoint_and_no_temp_file(ckpt, monkeypatch):
    before = ckpt.read_bytes()

    def half_then_fail(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"partial")
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(lab.checkpoint, "save_file", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(ckpt, {"w": torch.zeros(3)}, {"note": "new"})
    assert ckpt.read_bytes() == before
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["last.safetensors"]
    tensors, meta = load_checkpoint(ckpt)
    assert "model.w" in tensors and meta["note"] is None


def test_interrupted_write_leaves_no_temp_file(tmp_path):
    target = tmp_path / "log.jsonl"
    target.write_text("old\n")

    def interrupted(tmp):
        open(tmp, "w").write("new, half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["log.jsonl"]


def test_write_replaces_and_keeps_usual_permissions(ckpt):
    save_checkpoint(ckpt, {"w": torch.zeros(3)}, {"note": "second"})
    tensors, meta = load_checkpoint(ckpt)
    assert list(tensors) == ["w"] and meta["note"] == "second"
    umask = os.umask(0)
    os.umask(umask)
    assert ckpt.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["last.safetensors"]


def test_atomic_write_follows_the_umask_and_leaves_it_as_it_was(tmp_path):
    saved = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.txt", lambda tmp: Path(tmp).write_text("x"))
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
        assert os.umask(0o027) == 0o027      # still the caller's umask afterwards
    finally:
        os.umask(saved)


def test_code_commit_is_git_unless_vurn_commit_names_it(monkeypatch):
    from lab.checkpoint import code_commit
    monkeypatch.delenv("VURN_COMMIT", raising=False)
    here = code_commit()
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown", here)
    monkeypatch.setenv("VURN_COMMIT", "c52d661ce827952f51954e394c68effd591eba55")  # a copied tree's stale .git loses
    assert code_commit() == "c52d661ce827952f51954e394c68effd591eba55"


def test_code_commit_is_dirty_for_edits_and_for_new_code_files(monkeypatch, tmp_path):
    import subprocess

    from lab.checkpoint import code_commit
    monkeypatch.delenv("VURN_COMMIT", raising=False)

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "a.py").write_text("x = 1\n")
    git("add", "."), git("commit", "-q", "-m", "a")
    head = git("rev-parse", "HEAD")
    assert code_commit(tmp_path) == head
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.csv").write_text("a\n")       # a result being written is not code
    assert code_commit(tmp_path) == head
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "new.py").write_text("print(1)\n")   # a script the commit does not hold
    assert code_commit(tmp_path) == head + "+dirty"
    (tmp_path / "scripts" / "new.py").unlink()
    (tmp_path / "lab" / "a.py").write_text("x = 2\n")             # an edit
    assert code_commit(tmp_path) == head + "+dirty"
