"""The shipped models: present, small, loaded without pickle, described by a model card
that agrees with their metadata, and scoring what their metadata says on the test split."""
from __future__ import annotations

import os
import pickle
import re
import struct
from pathlib import Path

import pytest
import torch

from lab.checkpoint import check_corpus, load_checkpoint
from lab.corpus import KNOWN, load_corpus
from lab.models import count_parameters, width_for
from lab.pretrained import HERE, available, load_model, resolve
from lab.train import evaluate

SHIPPED = {"war_and_peace_lstm": "war_and_peace", "linux_kernel_lstm": "linux_kernel"}


def corpus_or_skip(name: str):
    data = os.environ.get("VURN_DATA")
    if not data or not (Path(data) / KNOWN[name].filename).is_file():
        pytest.skip("set VURN_DATA to the folder holding the paper's corpora")
    return load_corpus(name, data_dir=data, download=False)


def card_rows(name: str) -> dict[str, str]:
    """The model card's two-column table as {row name: value}."""
    rows = {}
    for line in (HERE / f"{name}.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and cells[0] and set(cells[0]) != {"-"}:
            rows[cells[0]] = cells[1]
    return rows


def test_both_models_are_shipped_and_small():
    assert available() == sorted(SHIPPED)
    sizes = {name: (HERE / f"{name}.safetensors").stat().st_size for name in SHIPPED}
    assert sum(sizes.values()) <= 8_000_000, sizes
    for name in SHIPPED:
        assert resolve(name) == HERE / f"{name}.safetensors"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_loads_without_pickle(name, monkeypatch):
    head = (HERE / f"{name}.safetensors").read_bytes()[:9]
    (n,) = struct.unpack("<Q", head[:8])
    assert head[8:9] == b"{" and n < 100_000  # a safetensors header, not a zip or a pickle

    def no_unpickling(*a, **k):
        raise AssertionError("loading a shipped model unpickled something")
    for attr in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, attr, no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    model, meta = load_model(name)
    assert not model.training
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    cfg = model.cfg
    assert cfg.vocab_size == len(meta["vocab"]) and meta["corpus"] == SHIPPED[name]
    train_cfg = meta["train_config"]
    assert cfg.width == width_for(cfg.kind, cfg.layers, train_cfg["row"], cfg.vocab_size)
    with torch.no_grad():
        logits, _ = model(torch.tensor([[meta["vocab"].index(ch) for ch in "the "]]))
    assert logits.shape == (1, 4, cfg.vocab_size)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_model_card_agrees_with_the_metadata(name):
    _, meta = load_checkpoint(HERE / f"{name}.safetensors")
    shipped = meta["shipped"]
    text = (HERE / f"{name}.md").read_text()
    rows = card_rows(name)
    for row in ("command", "code commit", "corpus sha256", "device", "wall time", "validation loss", "test loss"):
        assert rows.get(row), f"the card of {name} has no {row!r} row"
    assert rows["command"] == f"`{shipped['command']}`"
    assert rows["code commit"] == f"`{meta['code_commit']}`" and re.fullmatch(r"`[0-9a-f]{40}`", rows["code commit"])
    assert rows["corpus sha256"] == f"`{meta['corpus_sha256']}`" == f"`{KNOWN[SHIPPED[name]].sha256}`"
    assert rows["device"] == meta["device"]
    assert re.match(r"\d+ s for \d+ of \d+ epochs", rows["wall time"]), rows["wall time"]
    assert f"best validation at epoch {meta['epoch']})" in rows["wall time"]
    assert rows["validation loss"].startswith(f"{shipped['val_loss']:.4f} nats/char")
    assert rows["test loss"].startswith(f"{shipped['test_loss']:.4f} nats/char")
    cfg = meta["model_config"]
    params = count_parameters(load_model(name)[0].cfg)
    assert f"A {cfg['layers']}-layer {cfg['kind'].upper()}, width {cfg['width']}" in text
    assert f"{params:,} parameters" in text
    assert f"--layers {cfg['layers']}" in shipped["command"] and f"--corpus {SHIPPED[name]}" in shipped["command"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_metadata_test_loss_matches_a_fresh_cpu_evaluation(name):
    corpus = corpus_or_skip(SHIPPED[name])
    model, meta = load_model(name)
    check_corpus(meta, corpus, name)
    loss = evaluate(model, corpus.split_ids("test"))
    assert loss == pytest.approx(meta["shipped"]["test_loss"], abs=1e-4)
    if "test_loss" in meta:  # written by the trainer, from the float32 weights
        assert loss == pytest.approx(meta["test_loss"], abs=1e-3)


def test_what_cannot_be_opened_says_why(tmp_path):
    from lab.checkpoint import CheckpointError, save_checkpoint
    with pytest.raises(CheckpointError, match="no checkpoint None: give a shipped model's name"):
        resolve(None)
    with pytest.raises(CheckpointError, match="no checkpoint '': give a shipped model's name"):
        load_model("")                                             # not the working folder
    with pytest.raises(CheckpointError, match="checkpoint path must be a str or path, got None"):
        load_checkpoint(None)
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match=r"run holds no checkpoint \(neither best.safetensors nor last"):
        resolve(run)
    (run / "last.safetensors").write_bytes((HERE / "war_and_peace_lstm.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"has no best.safetensors \(a run writes it when its first epoch ends\): "
                                              r"to use the run's latest weights, name .*run/last.safetensors"):
        load_model(run)
    assert load_model(run / "last.safetensors")[0].cfg.width == 307
    tensors, meta = load_checkpoint(HERE / "war_and_peace_lstm.safetensors")
    save_checkpoint(tmp_path / "no_config.safetensors", tensors, {k: v for k, v in meta.items() if k != "model_config"})
    with pytest.raises(CheckpointError, match="without a model_config"):
        load_model(tmp_path / "no_config.safetensors")
    wrong = dict(meta, model_config=dict(meta["model_config"], width=16))
    save_checkpoint(tmp_path / "wrong.safetensors", tensors, wrong)
    with pytest.raises(CheckpointError, match="its weights do not fit the model its model_config describes"):
        load_model(tmp_path / "wrong.safetensors")
