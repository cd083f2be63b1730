"""lab.train: exact resume (after a real SIGKILL and after crashes at awkward moments),
divergence, refused folders and options, the learning-rate schedule, and the
streamed evaluation.

Small models run with one torch thread: on a busy two-core machine torch's thread
pool makes them many times slower, and results must not depend on it anyway (both
sides of every comparison run the same way).
"""
from __future__ import annotations

import importlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lab.__main__ import main
from lab.checkpoint import load_checkpoint, save_checkpoint
from lab.corpus import Corpus
from lab.models import CharRNN, ModelConfig
from lab.train import TrainConfig, Trainer, TrainingDiverged, char_losses, evaluate, row_losses, train
from tests.toy import toy_text

ROOT = Path(__file__).resolve().parents[1]
TRAIN = importlib.import_module("lab.train")  # `lab.train` itself is the train() function


def small_cfg(**kw) -> TrainConfig:
    base = dict(corpus="toy", kind="lstm", layers=2, width=16, dropout=0.2, epochs=2, batch=4, seq_len=10,
                checkpoint_every=20, seed=3)
    return TrainConfig(**{**base, **kw})


def toy_corpus(n: int = 3005, seed: int = 0) -> Corpus:
    # 3005 chars: 2404 train chars, 4 streams of 601, 60 steps of 10 per epoch
    return Corpus.from_text("toy", toy_text(n, seed))


def metrics(run_dir) -> list[str]:
    return (Path(run_dir) / "metrics.jsonl").read_text().splitlines()


def run_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("VURN_DATA", None)  # these runs use their own text
    return env


# -- exact resume -----------------------------------------------------------------------------

@pytest.mark.slow
def test_resume_after_sigkill_is_exact(tmp_path):
    text = tmp_path / "toy.txt"
    text.write_text(toy_text(40_000))   # 160 steps of 8 x 25 per epoch
    args = [sys.executable, "-m", "lab", "train", "--corpus", str(text), "--kind", "lstm", "--layers", "2",
            "--width", "24", "--dropout", "0.2", "--epochs", "3", "--batch", "8", "--seq-len", "25",
            "--checkpoint-every", "5", "--quiet", "--device", "cpu"]
    a, b = tmp_path / "A", tmp_path / "B"
    done = subprocess.run(args + ["--run-dir", str(a)], env=run_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary_a = json.loads(done.stdout)
    steps_per_epoch = load_checkpoint(a / "last.safetensors")[1]["step"] // 3

    proc = subprocess.Popen(args + ["--run-dir", str(b)], env=run_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        # kill well inside epoch 2: after epoch 1's validation and 20 more steps are logged
        while time.time() < deadline and proc.poll() is None:
            lines = (b / "metrics.jsonl").read_text().splitlines() if (b / "metrics.jsonl").exists() else []
            steps = [json.loads(x)["step"] for x in lines[:-1]]  # the last line may be half written
            if (b / "last.safetensors").exists() and steps and steps[-1] >= steps_per_epoch + 20:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed: make it longer"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (b / "summary.json").exists()
    _, meta = load_checkpoint(b / "last.safetensors")
    assert meta["epoch"] == 1 and 0 < meta["step_in_epoch"] < steps_per_epoch, meta["step"]
    assert (b / "best.safetensors").exists()

    done = subprocess.run(args + ["--run-dir", str(b), "--resume"], env=run_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    summary_b = json.loads(done.stdout)
    assert metrics(b) == metrics(a)
    assert summary_b["test_loss"] == summary_a["test_loss"]
    assert summary_b["val_loss"] == summary_a["val_loss"] and summary_b["best_epoch"] == summary_a["best_epoch"]
    ta, _ = load_checkpoint(a / "best.safetensors")
    tb, _ = load_checkpoint(b / "best.safetensors")
    assert all(torch.equal(ta[k], tb[k]) for k in ta) and set(ta) == set(tb)
    assert [p.name for p in b.iterdir() if p.name.endswith(".tmp")] == []


class Crash(Exception):
    pass


# 60 steps per epoch, checkpoints every 20: the one at step 60 is taken mid-epoch, at its last step,
# before the validation; each case crashes at a moment where a naive resume would log twice or skip
@pytest.mark.parametrize("method,call", [
    ("_save_best", 1),   # epoch 1 validated and logged, nothing saved since the step-60 checkpoint
    ("_save_last", 4),   # epoch 1's best saved, its last not yet
    ("_save_last", 5),   # inside epoch 2, at its first mid-epoch checkpoint
    ("_log", 3),         # a metrics write
    ("finish", 1),       # all epochs done, before the test score
])
def test_resume_after_a_crash_is_exact(tmp_path, monkeypatch, method, call):
    corpus = toy_corpus()
    cfg = small_cfg()
    reference = train(cfg, tmp_path / "ref", corpus=corpus, device="cpu", progress=False)

    original = getattr(Trainer, method)
    calls = {"n": 0}

    def crashing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == call:
            raise Crash(f"{method} call {call}")
        return original(self, *a, **k)
    monkeypatch.setattr(Trainer, method, crashing)
    trainer = Trainer(cfg, tmp_path / "run", corpus=corpus, device="cpu", progress=False)
    assert trainer.steps_per_epoch == 60
    with pytest.raises(Crash):
        trainer.run()
    summary = train(cfg, tmp_path / "run", corpus=corpus, device="cpu", progress=False, resume=True)
    assert metrics(tmp_path / "run") == metrics(tmp_path / "ref")
    assert summary["test_loss"] == reference["test_loss"]


def test_resume_with_only_the_run_folder_continues_for_more_epochs(tmp_path, capsys):
    text = tmp_path / "toy.txt"
    text.write_text(toy_text(3005))
    opts = ["--corpus", str(text), "--layers", "2", "--width", "16", "--dropout", "0.2", "--batch", "4",
            "--seq-len", "10", "--quiet", "--device", "cpu"]
    assert main(["train", *opts, "--epochs", "2", "--run-dir", str(tmp_path / "two")]) == 0
    assert main(["train", *opts, "--epochs", "1", "--run-dir", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    stale = tmp_path / "one" / ".last.safetensors.abc123.tmp"   # what a kill during a write leaves
    stale.write_bytes(b"half a checkpoint")
    # the documented form: every option comes from the run itself, only --epochs changes
    assert main(["train", "--run-dir", str(tmp_path / "one"), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert not stale.exists()
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 2
    assert metrics(tmp_path / "one") == metrics(tmp_path / "two")


def test_resume_refuses_a_changed_corpus_file(tmp_path, capsys):
    text = tmp_path / "toy.txt"
    text.write_text(toy_text(3005))
    opts = ["--corpus", str(text), "--width", "8", "--batch", "4", "--seq-len", "10", "--epochs", "1",
            "--quiet", "--device", "cpu", "--run-dir", str(tmp_path / "r")]
    assert main(["train", *opts]) == 0
    text.write_text(toy_text(3005, seed=1))
    capsys.readouterr()
    assert main(["train", *opts, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "was trained on corpus 'toy'" in err and "not on corpus 'toy'" in err
    assert err.count("sha256") == 2


# -- divergence -------------------------------------------------------------------------------

def nan_after(monkeypatch, good_steps: int) -> None:
    real = TRAIN.train_step
    calls = {"n": 0}

    def step(*a, **k):
        loss, state = real(*a, **k)
        calls["n"] += 1
        return (torch.tensor(float("nan")) if calls["n"] > good_steps else loss), state
    monkeypatch.setattr(TRAIN, "train_step", step)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    nan_after(monkeypatch, 12)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as err:
        train(small_cfg(checkpoint_every=5), run, corpus=toy_corpus(), device="cpu", progress=False)
    msg = str(err.value)
    assert "loss became nan at epoch 1, step 13" in msg
    assert f"{run / 'last.safetensors'} (step 10," in msg
    tensors, meta = load_checkpoint(run / "last.safetensors")
    assert meta["step"] == 10 < 13
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))
    logged = [json.loads(x) for x in metrics(run)]
    assert max(r["step"] for r in logged) == 10 and all(math.isfinite(r["loss"]) for r in logged)


def test_nan_loss_before_any_checkpoint_says_so(tmp_path, monkeypatch):
    nan_after(monkeypatch, 2)
    with pytest.raises(TrainingDiverged, match=r"step 3\. No checkpoint was written in .* before that"):
        train(small_cfg(checkpoint_every=0), tmp_path / "run", corpus=toy_corpus(), device="cpu", progress=False)
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_diverged_run_is_a_clean_cli_error(tmp_path, monkeypatch, capsys):
    nan_after(monkeypatch, 4)
    text = tmp_path / "toy.txt"
    text.write_text(toy_text(3005))
    rc = main(["train", "--corpus", str(text), "--width", "8", "--batch", "4", "--seq-len", "10",
               "--checkpoint-every", "3", "--quiet", "--device", "cpu", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("vurn train: error: the training loss became nan") and "step 5" in err


# -- refused folders and options ------------------------------------------------------------------

@pytest.fixture
def finished_run(tmp_path, capsys):
    text = tmp_path / "toy.txt"
    text.write_text(toy_text(3005))
    opts = ["--corpus", str(text), "--layers", "2", "--width", "8", "--batch", "4", "--seq-len", "10",
            "--epochs", "1", "--quiet", "--device", "cpu"]
    assert main(["train", *opts, "--run-dir", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    return opts, tmp_path / "run"


def cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


def test_second_train_into_a_run_folder_is_refused(finished_run, capsys):
    opts, run = finished_run
    before = metrics(run)
    err = cli_error(capsys, ["train", *opts, "--run-dir", str(run)])
    assert f"{run} already holds an earlier run (" in err
    assert "pass resume=True (--resume) to continue it, or choose a new folder" in err
    assert metrics(run) == before


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory) -> Path:
    """A finished run with every run file: last, best, metrics, summary and snapshots/."""
    run = tmp_path_factory.mktemp("earlier") / "run"
    train(small_cfg(layers=1, width=8, epochs=1, snapshot_every=30), run, corpus=toy_corpus(), device="cpu",
          progress=False)
    assert sorted(p.name for p in run.iterdir()) == ["best.safetensors", "last.safetensors", "metrics.jsonl",
                                                     "snapshots", "summary.json"]
    return run


@pytest.mark.parametrize("kept", ["best.safetensors", "metrics.jsonl", "summary.json", "snapshots"])
def test_a_folder_with_an_earlier_run_but_no_last_checkpoint_is_refused_and_kept(earlier_run, tmp_path, kept):
    """Its last.safetensors deleted (to save space, say), an earlier run is still there: a new
    run must not overwrite its files or append to its metrics."""
    import shutil
    run = tmp_path / "run"
    run.mkdir()
    (shutil.copytree if kept == "snapshots" else shutil.copy2)(earlier_run / kept, run / kept)
    (run / "train.log").write_text("the grid runner's own log\n")   # not a run file
    before = folder_bytes(run)
    with pytest.raises(FileExistsError) as err:
        Trainer(small_cfg(), run, corpus=toy_corpus(), device="cpu", progress=False)
    msg = str(err.value)
    assert f"{run} already holds an earlier run ({kept}" in msg
    assert "it has no last.safetensors, so it cannot be resumed; choose a new folder" in msg
    assert folder_bytes(run) == before


def test_an_earlier_run_is_refused_by_the_cli_and_kept(earlier_run, tmp_path, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(earlier_run, run)
    (run / "last.safetensors").unlink()
    before = folder_bytes(run)
    text = tmp_path / "toy.txt"
    text.write_text(toy_text(3005))
    err = cli_error(capsys, ["train", "--corpus", str(text), "--width", "8", "--batch", "4", "--seq-len", "10",
                             "--epochs", "1", "--quiet", "--device", "cpu", "--run-dir", str(run)])
    assert err.startswith(f"vurn train: error: {run} already holds an earlier run (best.safetensors, "
                          "metrics.jsonl, summary.json, snapshots/)")
    assert "choose a new folder" in err
    assert folder_bytes(run) == before
    # --resume cannot help, and says what can
    err = cli_error(capsys, ["train", "--run-dir", str(run), "--resume", "--quiet", "--device", "cpu"])
    assert f"nothing to resume in {run} (no last.safetensors): it holds best.safetensors" in err
    assert f"start a new run in another folder, or evaluate or sample {run / 'best.safetensors'}" in err
    assert folder_bytes(run) == before


def test_an_empty_snapshots_folder_and_the_grids_files_are_not_an_earlier_run(tmp_path):
    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    (run / "train.log").write_text("# a launch\n")
    (run / "grid.json").write_text('{"launches": []}')
    summary = train(small_cfg(layers=1, width=8, epochs=1), run, corpus=toy_corpus(), device="cpu", progress=False)
    assert summary["finished"] and (run / "train.log").read_text() == "# a launch\n"


def test_a_run_folder_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("keep me\n")
    with pytest.raises(FileExistsError, match=rf"the run folder {path} is a file, not a folder: choose a folder"):
        Trainer(small_cfg(), path, corpus=toy_corpus(), device="cpu", progress=False)
    with pytest.raises(FileExistsError, match=rf"the run folder {path / 'run'} cannot be made: {path} is a file"):
        Trainer(small_cfg(), path / "run", corpus=toy_corpus(), device="cpu", progress=False)
    assert path.read_text() == "keep me\n"


def test_a_truncated_last_checkpoint_says_what_can_be_done(finished_run, capsys):
    opts, run = finished_run
    last = run / "last.safetensors"
    last.write_bytes(last.read_bytes()[:1000])
    before = folder_bytes(run)
    for argv in (["train", "--run-dir", str(run), "--resume", "--quiet"],
                 ["train", *opts, "--epochs", "2", "--run-dir", str(run), "--resume"]):
        err = cli_error(capsys, argv)
        assert f"cannot resume {run}: {last} is not a readable safetensors file (truncated or damaged?)" in err
        assert "start a new run in another folder, or evaluate or sample the best epoch's weights, " \
               f"{run / 'best.safetensors'}" in err
        assert "Use another checkpoint" not in err and "e.g. best.safetensors" not in err
    with pytest.raises(TRAIN.CheckpointError, match="A run resumes only from its last.safetensors"):
        Trainer(small_cfg(), run, corpus=toy_corpus(), device="cpu", progress=False, resume=True)
    assert folder_bytes(run) == before


def test_resume_with_other_options_is_refused(finished_run, capsys):
    opts, run = finished_run
    err = cli_error(capsys, ["train", *opts, "--layers", "1", "--seq-len", "20", "--run-dir", str(run), "--resume"])
    assert "cannot resume" in err and "different options ['layers', 'seq_len']" in err


@pytest.mark.parametrize("make", [True, False])
def test_resume_of_an_empty_folder_is_refused(tmp_path, capsys, make):
    run = tmp_path / "empty"
    if make:
        run.mkdir()
    err = cli_error(capsys, ["train", "--run-dir", str(run), "--resume", "--device", "cpu"])
    assert f"nothing to resume in {run} (no last.safetensors)" in err


def test_too_short_text_is_a_clear_error(tmp_path):
    corpus = Corpus.from_text("tiny", toy_text(500))
    with pytest.raises(ValueError, match=r"training text \(400 chars\) is too short for batch 4 x sequence 100"):
        Trainer(small_cfg(seq_len=100), tmp_path / "r", corpus=corpus, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"the val split has 1 character\(s\): scoring needs at least 2"):
        Trainer(small_cfg(batch=1, seq_len=5), tmp_path / "r", corpus=Corpus.from_text("t", "abcdefghij"),
                device="cpu", progress=False)      # not a NaN validation loss reported as divergence
    with pytest.raises(TypeError, match=r"corpus must be a Corpus \(lab.load_corpus\(name or path\) makes one\)"):
        Trainer(small_cfg(), tmp_path / "r", corpus="/data/toy.txt", device="cpu", progress=False)
    assert not (tmp_path / "r").exists()


def test_a_config_given_as_a_dict_is_refused_by_name_and_makes_no_run_folder(tmp_path):
    wanted = r"^cfg must be a TrainConfig, got dict: use TrainConfig\(\.\.\.\) or TrainConfig\.from_dict\(\.\.\.\)$"
    with pytest.raises(TypeError, match=wanted):
        Trainer(asdict(small_cfg()), tmp_path / "r", corpus=toy_corpus(), device="cpu", progress=False)
    with pytest.raises(TypeError, match=wanted):
        train({"kind": "gru"}, tmp_path / "r", corpus=toy_corpus(), device="cpu", progress=False)
    assert not (tmp_path / "r").exists()


# -- configuration and the learning-rate schedule ------------------------------------------------

def test_lr_schedule_is_the_papers():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.lr_decay, cfg.decay_after) == (2e-3, 0.95, 10)
    for epoch in range(10):
        assert cfg.lr_at(epoch) == 2e-3
    for epoch in range(10, 50):
        assert cfg.lr_at(epoch) == pytest.approx(2e-3 * 0.95 ** (epoch - 9), rel=1e-12)
    assert cfg.lr_at(10) == pytest.approx(1.9e-3) and cfg.lr_at(11) == pytest.approx(1.805e-3)


def test_the_optimizer_follows_the_schedule(tmp_path, monkeypatch):
    seen: dict[int, set] = {}
    real = TRAIN.train_step

    def step(model, optimizer, *a, **k):
        seen.setdefault(len(seen_epochs), set()).add(optimizer.param_groups[0]["lr"])
        return real(model, optimizer, *a, **k)
    seen_epochs: list = []
    real_eval = TRAIN.evaluate

    def evaluate_and_count(*a, **k):
        seen_epochs.append(1)
        return real_eval(*a, **k)
    monkeypatch.setattr(TRAIN, "train_step", step)
    monkeypatch.setattr(TRAIN, "evaluate", evaluate_and_count)
    cfg = small_cfg(layers=1, width=8, epochs=4, lr=1e-2, lr_decay=0.5, decay_after=2, checkpoint_every=0)
    train(cfg, tmp_path / "r", corpus=toy_corpus(), device="cpu", progress=False)
    assert seen == {0: {1e-2}, 1: {1e-2}, 2: {5e-3}, 3: {2.5e-3}}


def test_batches_read_each_stream_in_order_and_carry_the_state(tmp_path, monkeypatch):
    # the paper's stateful truncated BPTT: batch k of an epoch is characters k*T..(k+1)*T of each
    # of the B contiguous streams, its targets the next characters, and it starts from the state
    # the previous batch ended in; each epoch starts from a zero state
    calls = []
    real = TRAIN.train_step

    def step(model, optimizer, x, y, state, grad_clip):
        loss, new = real(model, optimizer, x, y, state, grad_clip)
        calls.append((x.clone(), y.clone(), state, new))
        return loss, new
    monkeypatch.setattr(TRAIN, "train_step", step)
    corpus = toy_corpus()
    cfg = small_cfg(layers=1, width=8, epochs=2, dropout=0.0, checkpoint_every=0)
    train(cfg, tmp_path / "r", corpus=corpus, device="cpu", progress=False)
    T, B = cfg.seq_len, cfg.batch
    data = TRAIN.stream_view(corpus.split_ids("train"), B)
    per_epoch = TRAIN.batches_per_epoch(corpus.split_ids("train").numel(), B, T)
    assert len(calls) == 2 * per_epoch == 2 * 60                  # 4 streams of 601: 60 steps of 10
    for i, (x, y, state, _) in enumerate(calls):
        k = i % per_epoch
        assert torch.equal(x, data[:, k * T:(k + 1) * T]) and torch.equal(y, data[:, k * T + 1:(k + 1) * T + 1])
        if k == 0:
            assert state is None                                   # a new epoch starts from zeros
        else:
            prev = calls[i - 1][3]
            assert all(torch.equal(a, b) for a, b in zip(state, prev))   # the last batch's final state
            assert not any(t.requires_grad for t in state)           # carried, not backpropagated into


def test_gradients_are_clipped_element_wise():
    # char-rnn clamps each gradient element at +-5; a norm clip would scale all of them down
    model = CharRNN(ModelConfig("rnn", 1, 4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    x = torch.tensor([[0, 1, 2, 0]])
    with torch.no_grad():
        model.head.weight.mul_(1000)                              # huge logits: huge gradients
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    logits, _ = model(x)
    F.cross_entropy(logits.reshape(-1, 3), torch.tensor([1, 2, 0, 1])).backward()
    raw = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.zero_grad()
    TRAIN.train_step(model, opt, x, torch.tensor([[1, 2, 0, 1]]), None, grad_clip=5.0)
    for n, p in model.named_parameters():
        step = before[n] - p.detach()                              # SGD with lr 1: the clipped gradient
        assert torch.allclose(step, raw[n].clamp(-5, 5), atol=1e-4), n
    assert any((raw[n].abs() > 5).any() and (raw[n].abs() < 5).any() for n in raw)   # some clipped, some not


def test_train_config_from_dict_names_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown training options \['learning_rate'\]; known: corpus, kind"):
        TrainConfig.from_dict({"kind": "gru", "learning_rate": 0.1})
    cfg = TrainConfig.from_dict({"kind": "gru", "layers": 3})
    assert (cfg.kind, cfg.layers, cfg.lr) == ("gru", 3, 2e-3)
    assert TrainConfig.from_dict({f.name: getattr(cfg, f.name) for f in fields(cfg)}) == cfg


def test_train_config_width_comes_from_the_row():
    assert TrainConfig(kind="lstm", layers=2, row=512).model_config(82).width == 307
    assert TrainConfig(kind="lstm", layers=2, row=512, width=None).model_config(82).width == 307
    assert TrainConfig(kind="gru", layers=1, row=64, width=33).model_config(82).width == 33
    assert TrainConfig(kind="gru", layers=1, row=100, width=33).model_config(82).width == 33  # the row unused
    with pytest.raises(ValueError, match="unknown model kind 'cnn'"):
        TrainConfig(kind="cnn").model_config(82)


@pytest.mark.parametrize("option,value,message", [
    ("epochs", 0, "epochs must be at least 1, got 0"),
    ("batch", 0, "batch must be at least 1 (parallel streams per batch), got 0"),
    ("seq_len", -5, "seq_len must be at least 1 (characters per training step), got -5"),
    ("width", 0, "width must be at least 1 (or left out: the row's width), got 0"),
    ("width", -3, "width must be at least 1"),
    ("snapshot_every", -1, "snapshot_every must be at least 0 (0: no snapshots), got -1"),
    ("checkpoint_every", -2, "checkpoint_every must be at least 0 (0: checkpoints at epoch ends only), got -2"),
    ("max_train_chars", 0, "max_train_chars must be at least 1 (or left out: the whole training split), got 0"),
    ("max_train_chars", -5, "max_train_chars must be at least 1"),
    ("grad_clip", 0.0, "grad_clip must be positive (gradients are clamped to [-grad_clip, grad_clip]), got 0.0"),
    ("grad_clip", -5, "grad_clip must be positive"),
    ("grad_clip", math.inf, "grad_clip must be a finite number, got inf"),
    ("lr_decay", 0.0, "lr_decay must be in (0, 1] (1: no decay), got 0.0"),
    ("lr_decay", 1.5, "lr_decay must be in (0, 1] (1: no decay), got 1.5"),
    ("lr", 0, "lr must be positive, got 0.0"),
    ("lr", math.nan, "lr must be a finite number, got nan"),
    ("lr", math.inf, "lr must be a finite number, got inf"),
    ("lr", "0.1", "lr must be a number, got '0.1'"),
    ("init_scale", -0.08, "init_scale must be positive"),
    ("rmsprop_alpha", 1.0, "rmsprop_alpha must be in [0, 1), got 1.0"),
    ("dropout", 1.0, "dropout must be in [0, 1), got 1.0"),
    ("dropout", -math.inf, "dropout must be a finite number, got -inf"),
    ("decay_after", -1, "decay_after must be at least 0"),
    ("seed", -2 ** 63 - 1, "seed must be between -2**63 and 2**64 - 1 (torch's range), got -9223372036854775809"),
    ("layers", 4, "layers must be 1, 2 or 3 (the paper's depths), got 4"),
    ("epochs", 2.5, "epochs must be a whole number, got 2.5"),
    ("width", True, "width must be a whole number, got True"),
    ("row", 100, "row must be one of the paper's rows 64, 128, 256, 512 (or give a width), got 100"),
    ("kind", "cnn", "unknown model kind 'cnn': choose one of rnn, lstm, gru"),
    ("corpus", "", "corpus must be a corpus name (war_and_peace, linux_kernel) or a path"),
])
def test_bad_train_config_values_are_refused(option, value, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**{option: value})
    assert message in str(err.value)
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig.from_dict({**TrainConfig().__dict__, option: value})


def test_valid_configs_of_the_project_still_pass():
    from lab.grid import grid_runs
    from lab.pretrained import load_model
    edge = TrainConfig(lr_decay=1.0, rmsprop_alpha=0.0, decay_after=0, checkpoint_every=0, snapshot_every=0,
                       max_train_chars=1, width=1, seed=2 ** 64 - 1, dropout=0.0, lr=1, corpus=Path("a/b.txt"))
    assert (edge.lr, type(edge.lr), edge.corpus) == (1.0, float, "a/b.txt")
    for run in grid_runs(vocab_sizes={"war_and_peace": 82, "linux_kernel": 98}, epochs=2,
                         train_options={"max_train_chars": 20000, "batch": 10, "width": 16}):
        TrainConfig.from_dict(run.train_config())
    for name in ("war_and_peace_lstm", "linux_kernel_lstm"):   # written before snapshot_every existed
        cfg = TrainConfig.from_dict(load_model(name)[1]["train_config"])
        assert cfg.width is None and cfg.model_config(82).width == 307


def test_an_invalid_config_creates_no_run_folder(tmp_path, capsys):
    text = tmp_path / "toy.txt"
    text.write_text(toy_text(3005))
    for bad in (["--epochs", "0"], ["--seq-len", "-5"], ["--width", "0"], ["--max-train-chars", "0"]):
        err = cli_error(capsys, ["train", "--corpus", str(text), "--quiet", "--device", "cpu", "--batch", "4",
                                 "--run-dir", str(tmp_path / "run"), *bad])
        assert f"{bad[0][2:].replace('-', '_')} must be at least 1" in err
        assert not (tmp_path / "run").exists()


# -- streamed evaluation --------------------------------------------------------------------------

def random_model(vocab: int, seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    model = CharRNN(ModelConfig("lstm", 2, 24, vocab)).eval()
    model.init_uniform(0.3)
    return model


def full_sequence_losses(model, ids) -> torch.Tensor:
    with torch.no_grad():
        logits, _ = model(ids[None, :-1])
    return F.cross_entropy(logits[0], ids[1:], reduction="none")


def test_one_stream_is_the_full_sequence_computation():
    corpus = Corpus.from_text("toy", toy_text(2501))
    ids = corpus.split_ids("train")
    model = random_model(len(corpus.vocab))
    want = full_sequence_losses(model, ids)
    for window in (1000, 7, 10_000):
        got = char_losses(model, ids, streams=1, window=window)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert evaluate(model, ids, streams=1) == pytest.approx(want.mean().item(), abs=1e-6)
    assert not model.training


def memoryless_model(vocab: int) -> CharRNN:
    """A 2-layer RNN whose recurrent weights are zero: each character's loss depends on that
    character alone, so any cut into streams must give the one-stream losses exactly."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig("rnn", 2, 24, vocab)).eval()
    model.init_uniform(0.3)
    with torch.no_grad():
        for name, p in model.rnn.named_parameters():
            if name.startswith("weight_hh"):
                p.zero_()
    return model


def test_every_character_is_scored_exactly_once_by_many_streams():
    """A shifted target, a position written twice or a burn-in character counted would each
    put some loss in the wrong place: with a memoryless model every place is known."""
    corpus = Corpus.from_text("toy", toy_text(3001))
    ids = corpus.encode(corpus.text)
    model = memoryless_model(len(corpus.vocab))
    want = full_sequence_losses(model, ids)
    assert want.std() > 0.1                                  # the places tell characters apart
    for streams, burn_in in [(7, 0), (100, 10), (3, 50), (1000, 1), (2999, 0)]:
        got = char_losses(model, ids, streams=streams, burn_in=burn_in, window=37)
        assert got.shape == (3000,)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0, msg=f"streams={streams}, burn_in={burn_in}")


def test_model_mode_is_restored():
    model = random_model(5).train()
    char_losses(model, torch.tensor([0, 1, 2, 3, 4] * 20))
    assert model.training


def test_streams_with_burn_in_agree_with_one_continuous_stream():
    """A trained model has long memory, so a stream needs its burn-in to catch up."""
    from lab.pretrained import load_model
    from lab.sample import sample

    model, meta = load_model("war_and_peace_lstm")
    vocab = meta["vocab"]
    text = "\"Well, Prince, so Genoa and Lucca are now just family estates.\" "
    text += sample(model, vocab, 2400, prime=text, temperature=0.8, seed=0)
    ids = torch.tensor([vocab.index(ch) for ch in text])
    one = char_losses(model, ids, streams=1)
    torch.testing.assert_close(one, full_sequence_losses(model, ids), atol=1e-5, rtol=0)

    warm = char_losses(model, ids, streams=5, burn_in=200)
    assert warm.shape == one.shape
    assert abs(warm.mean() - one.mean()) < 1e-3
    assert (warm - one).abs().max() < 0.2
    cold = char_losses(model, ids, streams=5, burn_in=0)   # each stream starts from a zero state
    assert abs(cold.mean() - one.mean()) > 10 * abs(warm.mean() - one.mean())
    assert (cold - one).abs().max() > 0.5




def test_a_run_killed_in_its_first_epoch_is_discarded_for_a_fresh_start(tmp_path):
    """What the grid and scripts/dynamics.py do before starting such a run again in its folder."""
    from lab.train import discard_unresumable
    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    (run / "snapshots" / "step_0.safetensors").write_bytes(b"x")
    for name in ("metrics.jsonl", "best.safetensors", "train.log"):
        (run / name).write_text("x")
    assert discard_unresumable(run) == ["best.safetensors", "metrics.jsonl", "snapshots/"]
    assert sorted(p.name for p in run.iterdir()) == ["train.log"]          # the grid's own log stays
    (run / "last.safetensors").write_text("x")
    (run / "metrics.jsonl").write_text("x")
    assert discard_unresumable(run) == [] and (run / "metrics.jsonl").exists()   # it resumes: kept


# -- char-rnn's layout of the splits ---------------------------------------------------------------

def test_row_losses_are_one_cold_stream_per_row():
    torch.manual_seed(1)
    model = CharRNN(ModelConfig("gru", 2, 12, 5)).eval()
    rows = torch.randint(0, 5, (4, 90))
    got = row_losses(model, rows, window=13)
    assert got.shape == (4, 89)
    for r in range(4):
        torch.testing.assert_close(got[r], full_sequence_losses(model, rows[r]), atol=1e-6, rtol=0)


def test_a_charrnn_layout_run_trains_on_the_rows_and_scores_the_pieces_cold(tmp_path):
    corpus = toy_corpus(4005)
    cfg = small_cfg(layout="char-rnn", epochs=1, checkpoint_every=0)
    trainer = Trainer(cfg, tmp_path / "r", corpus=corpus, device="cpu", progress=False)
    pieces = corpus.charrnn_pieces("train", cfg.batch, cfg.seq_len)
    n_train = len(pieces[0]) // cfg.seq_len
    assert torch.equal(trainer.data[:, :-1], torch.stack(pieces))     # row b is char-rnn's row b ...
    assert torch.equal(trainer.data[:, -1], torch.stack(corpus.charrnn_pieces("val", cfg.batch, cfg.seq_len))[:, 0])
    assert trainer.steps_per_epoch == n_train                         # ... and every block of it is a step
    summary = trainer.run()
    tensors, meta = load_checkpoint(tmp_path / "r" / "best.safetensors")
    model = CharRNN(ModelConfig.from_dict(meta["model_config"])).eval()
    model.load_state_dict(tensors)
    for split, want in (("val", meta["val_loss"]), ("test", summary["test_loss"])):
        rows = torch.stack(corpus.charrnn_pieces(split, cfg.batch, cfg.seq_len, with_next=True))
        assert row_losses(model, rows).shape[1] == len(corpus.charrnn_pieces(split, cfg.batch, cfg.seq_len)[0])
        assert row_losses(model, rows).mean().item() == pytest.approx(want, abs=1e-6), split
    assert meta["train_config"]["layout"] == "char-rnn"
    assert summary["test_loss"] != pytest.approx(evaluate(model, corpus.split_ids("test")), abs=1e-4)
    from lab import Session
    session = Session.load(str(tmp_path / "r" / "best.safetensors"), device="cpu", corpus=corpus)
    with pytest.warns(UserWarning, match="trained on char-rnn's layout of the splits, but split='test' is the "
                                         "contiguous split, part of which it trained on") as said:
        session.trace(split="test", length=20)
    hint = str(said[0].message).split("pieces: ")[1]
    s = session  # noqa: F841 - the hint names the session s
    assert eval(hint).text == corpus.decode(corpus.charrnn_pieces("test", cfg.batch, cfg.seq_len)[0])


def test_a_bad_layout_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown layout 'rows': choose one of contiguous, char-rnn"):
        small_cfg(layout="rows")
    with pytest.raises(ValueError, match="max_train_chars cuts a contiguous training split; the char-rnn layout"):
        small_cfg(layout="char-rnn", max_train_chars=1000)
    with pytest.raises(ValueError, match="the char-rnn layout of this text has no val split"):
        Trainer(small_cfg(layout="char-rnn", batch=100), "unused", corpus=toy_corpus(), device="cpu")


def test_a_run_saved_before_layouts_existed_resumes_as_contiguous_bit_for_bit(tmp_path):
    corpus = toy_corpus()
    whole = train(small_cfg(epochs=2), tmp_path / "whole", corpus=corpus, device="cpu", progress=False)
    train(small_cfg(epochs=1), tmp_path / "r", corpus=corpus, device="cpu", progress=False)
    last = tmp_path / "r" / "last.safetensors"
    tensors, meta = load_checkpoint(last)
    del meta["train_config"]["layout"]
    save_checkpoint(last, tensors, meta)
    resumed = train(small_cfg(epochs=2), tmp_path / "r", corpus=corpus, device="cpu", progress=False, resume=True)
    assert (resumed["test_loss"], resumed["val_loss"]) == (whole["test_loss"], whole["val_loss"])
    assert metrics(tmp_path / "r") == metrics(tmp_path / "whole")
    a, b = load_checkpoint(tmp_path / "r" / "best.safetensors")[0], load_checkpoint(tmp_path / "whole" / "best.safetensors")[0]
    assert all(torch.equal(a[k], b[k]) for k in b)
