"""The command line: help for every option, eval and sample on the shipped models, and
bad inputs that end with exit code 2 and one 'error:' line, never a traceback.

A few tests run the real ``python -m lab`` in a subprocess (what users type); the
rest call ``lab.__main__.main`` in-process, which is the same code and faster.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from lab.__main__ import main
from lab.checkpoint import load_checkpoint
from lab.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "lab" / "pretrained"


def has_corpus(name: str) -> bool:
    data = os.environ.get("VURN_DATA")
    return bool(data) and (Path(data) / f"{name}.txt").is_file()


def vurn(*args, timeout=120, env=None) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env, OMP_NUM_THREADS="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(done_or_rc, err: str | None = None, command: str = "") -> str:
    rc, err = (done_or_rc.returncode, done_or_rc.stderr) if err is None else (done_or_rc, err)
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vurn {command}: error: "), err
    return lines[0]


# -- help ----------------------------------------------------------------------------------------

def test_top_level_help_lists_the_commands():
    done = vurn("--help")
    assert done.returncode == 0, done.stderr
    for command in ("train", "eval", "sample"):
        assert re.search(rf"^\s+{command}\s+\S", done.stdout, re.M), f"{command} has no help line"
    assert "python -m lab train" in done.stdout  # the examples of the module docstring


def test_vurn_console_script_is_installed():
    script = Path(sys.executable).parent / "vurn"
    assert script.is_file() and os.access(script, os.X_OK), f"no console script at {script}"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0 and done.stdout.startswith("usage: vurn "), done.stderr


def option_help(help_text: str) -> dict[str, str]:
    """``--option`` -> its description, from argparse's help output."""
    entries: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        m = re.match(r"^  (-{1,2}[\w-]+)(?: [A-Z_{][^\s]*)?(?:, (--[\w-]+)(?: [A-Z_{][^\s]*)?)?(?:\s{2,}(.*))?$",
                     line)
        if m:
            current = m.group(2) or m.group(1)
            entries[current] = (m.group(3) or "").strip()
        elif current and line.startswith("    ") and line.strip():
            entries[current] = (entries[current] + " " + line.strip()).strip()
        elif not line.strip() or not line.startswith(" "):
            current = None
    return entries


@pytest.mark.parametrize("command", ["train", "eval", "sample"])
def test_every_option_has_a_description(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    entries = option_help(capsys.readouterr().out)
    assert "--help" in entries
    expected = {"train": [f"--{f.name.replace('_', '-')}" for f in fields(TrainConfig)]
                + ["--run-dir", "--resume", "--device", "--data", "--max-seconds", "--quiet"],
                "eval": ["--split", "--data", "--corpus", "--device"],
                "sample": ["-n", "--prime", "--temperature", "--seed", "--device"]}[command]
    for option in expected:
        assert option in entries, f"{command} {option} is missing from --help"
    for option, text in entries.items():
        assert len(text) > 10 and not text.startswith("(default"), f"{command} {option}: no description"


def test_train_help_names_every_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    entries = option_help(capsys.readouterr().out)
    for f in fields(TrainConfig):
        assert entries[f"--{f.name.replace('_', '-')}"].endswith(f"(default: {f.default})")


# -- eval and sample on the shipped models ---------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not has_corpus("war_and_peace"), reason="set VURN_DATA to the folder holding the corpora")
def test_eval_of_the_shipped_war_and_peace_model():
    done = vurn("eval", "war_and_peace_lstm", "--split", "test", "--device", "cpu", timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    _, meta = load_checkpoint(SHIPPED / "war_and_peace_lstm.safetensors")
    assert out["split"] == "test" and out["checkpoint"] == "war_and_peace_lstm"
    assert out["loss_nats_per_char"] == pytest.approx(meta["shipped"]["test_loss"], abs=0.01)


@pytest.mark.parametrize("model,prime", [("war_and_peace_lstm", "The "), ("linux_kernel_lstm", "static int ")])
def test_sample_with_a_seed_is_repeatable(model, prime, capsys):
    done = vurn("sample", model, "-n", "120", "--prime", prime, "--seed", "7", "--temperature", "0.8",
                "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(prime) and len(done.stdout) == len(prime) + 120 + 1  # print's newline
    # the same seed in another process gives the same text; another seed does not
    assert main(["sample", model, "-n", "120", "--prime", prime, "--seed", "7", "--temperature", "0.8",
                 "--device", "cpu"]) == 0
    assert capsys.readouterr().out == done.stdout
    assert main(["sample", model, "-n", "120", "--prime", prime, "--seed", "8", "--temperature", "0.8",
                 "--device", "cpu"]) == 0
    assert capsys.readouterr().out != done.stdout


def test_sample_uses_only_the_models_vocabulary(capsys):
    _, meta = load_checkpoint(SHIPPED / "linux_kernel_lstm.safetensors")
    assert main(["sample", "linux_kernel_lstm", "-n", "300", "--seed", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert set(out) <= set(meta["vocab"])


# -- bad inputs --------------------------------------------------------------------------------

def test_missing_checkpoint_is_a_one_line_error(tmp_path):
    done = vurn("sample", str(tmp_path / "nope.safetensors"))
    line = assert_one_line_error(done, command="sample")
    assert f"checkpoint {tmp_path / 'nope.safetensors'} does not exist" in line


def test_prime_outside_the_vocabulary_is_a_one_line_error():
    done = vurn("sample", "war_and_peace_lstm", "--prime", "Caf\u00e9 \u20ac5 {x}")
    line = assert_one_line_error(done, command="sample")
    assert "3 character(s) are not in the model's vocabulary (in the prime): '{', '}', '\u20ac'" in line


def test_unknown_corpus_is_a_one_line_error(tmp_path):
    done = vurn("train", "--corpus", "shakespeare", "--run-dir", str(tmp_path / "run"), "--device", "cpu")
    line = assert_one_line_error(done, command="train")
    assert "unknown corpus 'shakespeare': use one of war_and_peace, linux_kernel or a path" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv,message", [
    (["sample", "no_such_model"], r"no checkpoint 'no_such_model'.*linux_kernel_lstm, war_and_peace_lstm"),
    (["sample", "war_and_peace_lstm", "--temperature", "0"], r"temperature must be positive, got 0.0"),
    (["sample", "war_and_peace_lstm", "--prime", ""], r"prime must hold at least one character"),
    (["eval", "{tmp}/empty_run"], r"empty_run holds no checkpoint \(neither best.safetensors nor last.safetensors\)"),
    (["sample", "{tmp}/empty_run"], r"empty_run holds no checkpoint"),
    (["eval", "{tmp}/nope.safetensors"], r"checkpoint .*nope.safetensors does not exist"),
    (["eval", "war_and_peace_lstm", "--corpus", "{tmp}/missing.txt"],
     r"corpus file .*missing.txt does not exist: name the text file the model was trained on"),
    (["train", "--seq-len", "-5", "--corpus", "{tmp}/text.txt", "--run-dir", "{tmp}/r"],
     r"seq_len must be at least 1 \(characters per training step\), got -5$"),
    (["train", "--epochs", "0", "--corpus", "{tmp}/text.txt", "--run-dir", "{tmp}/r"], r"epochs must be at least 1, got 0$"),
    (["train", "--lr", "inf", "--corpus", "{tmp}/text.txt", "--run-dir", "{tmp}/r"], r"lr must be a finite number, got inf$"),
    (["train", "--corpus", "{tmp}/text.txt", "--run-dir", "{tmp}/text.txt"],
     r"the run folder .*text.txt is a file, not a folder: choose a folder for the run \(--run-dir\)"),
    (["eval", "{tmp}/junk.safetensors"], r"not a readable safetensors file"),
    (["train", "--corpus", "{tmp}/missing.txt", "--run-dir", "{tmp}/r"], r"corpus file .*missing.txt does not exist"),
    (["train", "--kind", "transformer", "--corpus", "{tmp}/text.txt", "--run-dir", "{tmp}/r"],
     r"unknown model kind 'transformer'"),
    (["train", "--layers", "4", "--corpus", "{tmp}/text.txt", "--run-dir", "{tmp}/r"], r"layers must be 1, 2 or 3"),
    (["train", "--device", "cuda:7", "--corpus", "{tmp}/text.txt", "--run-dir", "{tmp}/r"],
     r"device 'cuda:7' was asked for but torch sees (no CUDA GPU; use --device cpu$|only \d CUDA GPU\(s\): use cuda:0)"),
    (["train", "--device", "gpu", "--corpus", "{tmp}/text.txt", "--run-dir", "{tmp}/r"], r"unknown device 'gpu'"),
    (["sample", "war_and_peace_lstm", "--device", "gpu"], r"unknown device 'gpu'.*use cpu, cuda or cuda:N"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, argv, message):
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    (tmp_path / "text.txt").write_text("abc\n" * 2000)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "train":
        argv += ["--quiet"]
    if argv[0] == "train" and "--device" not in argv:
        argv += ["--device", "cpu"]
    if "cuda:7" in argv and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    rc = main(argv)
    line = assert_one_line_error(rc, capsys.readouterr().err, command=argv[0])
    assert re.search(message, line), line
    if argv[0] == "train":
        assert not (tmp_path / "r").exists()    # nothing is made for a refused run
        assert (tmp_path / "text.txt").read_text() == "abc\n" * 2000


def toy_run(tmp_path):
    """(corpus file, run folder) of a one-epoch toy run trained on a file corpus."""
    text = tmp_path / "toy.txt"
    text.write_text("the cat sat on the mat, and the dog ran.\n" * 80)
    run = tmp_path / "run"
    assert main(["train", "--corpus", str(text), "--width", "8", "--batch", "4", "--seq-len", "10",
                 "--epochs", "1", "--quiet", "--device", "cpu", "--run-dir", str(run)]) == 0
    return text, run


def test_eval_and_sample_of_a_run_folder_without_best_name_its_last_checkpoint(tmp_path, capsys):
    text, run = toy_run(tmp_path)
    (run / "best.safetensors").unlink()   # as in a run stopped inside its first epoch
    capsys.readouterr()
    for command in ("eval", "sample"):
        line = assert_one_line_error(main([command, str(run), "--device", "cpu"]), capsys.readouterr().err, command)
        assert line.endswith(f"run folder {run} has no best.safetensors (a run writes it when its first epoch "
                             f"ends): to use the run's latest weights, name {run / 'last.safetensors'}"), line
    assert main(["eval", str(run / "last.safetensors"), "--split", "val", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["loss_nats_per_char"] < 3
    assert main(["sample", str(run / "last.safetensors"), "-n", "10", "--seed", "0", "--device", "cpu"]) == 0


def test_a_char_rnn_layout_run_is_trained_and_evaluated_in_its_layout(tmp_path, capsys):
    text = tmp_path / "toy.txt"
    text.write_text("the cat sat on the mat, and the dog ran.\n" * 120)
    run = tmp_path / "run"
    assert main(["train", "--corpus", str(text), "--width", "8", "--batch", "4", "--seq-len", "10", "--epochs", "1",
                 "--layout", "char-rnn", "--quiet", "--device", "cpu", "--run-dir", str(run)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert main(["eval", str(run), "--split", "test", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layout"] == "char-rnn" and out["loss_nats_per_char"] == pytest.approx(summary["test_loss"], abs=1e-6)
    assert main(["train", "--corpus", str(text), "--layout", "rows", "--run-dir", str(tmp_path / "r2")]) == 2
    assert "unknown layout 'rows': choose one of contiguous, char-rnn" in capsys.readouterr().err


def test_a_corpus_given_by_a_relative_path_is_found_from_any_folder(tmp_path, capsys, monkeypatch):
    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    text = tmp_path / "work" / "toy.txt"
    text.write_text("the cat sat on the mat, and the dog ran.\n" * 80)
    monkeypatch.chdir(tmp_path / "work")
    opts = ["--corpus", "toy.txt", "--width", "8", "--batch", "4", "--seq-len", "10", "--quiet", "--device", "cpu"]
    assert main(["train", *opts, "--epochs", "1", "--run-dir", "run"]) == 0
    _, meta = load_checkpoint(tmp_path / "work" / "run" / "best.safetensors")
    assert meta["train_config"]["corpus"] == "toy.txt"      # as given (the grid compares it)
    assert meta["corpus_file"] == str(text)                 # and where it is
    # the same options resume it, from where it was trained
    assert main(["train", *opts, "--epochs", "2", "--run-dir", "run", "--resume"]) == 0
    capsys.readouterr()
    assert main(["eval", "run", "--split", "val", "--device", "cpu"]) == 0
    here = json.loads(capsys.readouterr().out)["loss_nats_per_char"]

    monkeypatch.chdir(tmp_path / "elsewhere")
    run = str(tmp_path / "work" / "run")
    assert main(["eval", run, "--split", "val", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["loss_nats_per_char"] == here
    assert main(["train", "--run-dir", run, "--resume", "--epochs", "3", "--quiet"]) == 0   # its corpus found too
    capsys.readouterr()

    moved = tmp_path / "elsewhere" / "moved.txt"
    text.rename(moved)
    line = assert_one_line_error(main(["eval", run, "--device", "cpu"]), capsys.readouterr().err, "eval")
    assert line.endswith(f"this model was trained on the corpus file 'toy.txt' (recorded as {text}), which is "
                         f"not found from {tmp_path / 'elsewhere'}: name the file with --corpus PATH "
                         "(path=... in Python)"), line
    assert "VURN_DATA" not in line and "--data" not in line
    assert main(["eval", run, "--split", "val", "--device", "cpu", "--corpus", "moved.txt"]) == 0
    capsys.readouterr()
    # resuming names it with --corpus too: another name for the same text
    line = assert_one_line_error(main(["train", "--run-dir", run, "--resume", "--epochs", "4", "--quiet"]),
                                 capsys.readouterr().err, "train")
    assert "name the file with --corpus PATH" in line
    assert main(["train", "--run-dir", run, "--resume", "--epochs", "4", "--quiet", "--corpus", "moved.txt"]) == 0
    _, meta = load_checkpoint(tmp_path / "work" / "run" / "last.safetensors")
    assert meta["train_config"]["corpus"] == "toy.txt" and meta["corpus_file"] == str(moved)


def test_a_checkpoint_from_before_the_corpus_file_was_recorded_still_loads(tmp_path, capsys, monkeypatch):
    from lab.checkpoint import save_checkpoint
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "toy.txt").write_text("the cat sat on the mat, and the dog ran.\n" * 80)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--corpus", "toy.txt", "--width", "8", "--batch", "4", "--seq-len", "10", "--epochs", "1",
                 "--quiet", "--device", "cpu", "--run-dir", "run"]) == 0
    for name in ("best.safetensors", "last.safetensors"):   # as written before corpus_file existed
        tensors, meta = load_checkpoint(tmp_path / "run" / name)
        del meta["corpus_file"], meta["train_config"]["snapshot_every"]
        save_checkpoint(tmp_path / "run" / name, tensors, meta)
    capsys.readouterr()
    assert main(["eval", "run", "--device", "cpu"]) == 0       # from where it was trained: as before
    monkeypatch.chdir(tmp_path / "elsewhere")
    line = assert_one_line_error(main(["eval", "../run", "--device", "cpu"]), capsys.readouterr().err, "eval")
    assert "trained on the corpus file 'toy.txt', which is not found from" in line and "--corpus PATH" in line
    assert main(["eval", "../run", "--device", "cpu", "--corpus", "../toy.txt"]) == 0
    assert main(["train", "--run-dir", "../run", "--resume", "--epochs", "2", "--quiet", "--corpus", "../toy.txt"]) == 0
    _, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta["corpus_file"] == str(tmp_path / "toy.txt")   # recorded from now on


def test_eval_of_a_run_folder_and_a_changed_corpus(tmp_path, capsys):
    text, run = toy_run(tmp_path)
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "val", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    _, meta = load_checkpoint(run / "best.safetensors")
    assert out["loss_nats_per_char"] == meta["val_loss"]
    assert main(["sample", str(run), "-n", "20", "--seed", "1", "--prime", "the "]) == 0
    assert capsys.readouterr().out.startswith("the ")

    text.write_text("the cat sat on the mat, and the dog ran!\n" * 80)  # same name, another text
    line = assert_one_line_error(main(["eval", str(run), "--device", "cpu"]), capsys.readouterr().err, "eval")
    assert "was trained on corpus 'toy'" in line and "vocabulary differs" in line and "'!'" in line
