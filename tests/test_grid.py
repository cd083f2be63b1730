"""lab.grid: the Table 1 listing, the resumable runner (real ``python -m lab train``
children on a toy corpus), collecting the table with its bootstrap errors, and the
archives that carry a grid between GPU sessions.

The toy runs are tiny (width 12, two epochs of a 6,000-character text) and run with
one torch thread; each child costs a few seconds, mostly torch's import.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import lab.grid
from lab.__main__ import main
from lab.checkpoint import load_checkpoint
from lab.corpus import load_corpus
from lab.grid import (
    COLUMNS,
    GpuSampler,
    bootstrap_se,
    collect,
    grid_runs,
    pack,
    read_meta,
    restore,
    run_grid,
    run_state,
    width_for,
)
from lab.models import CharRNN, ModelConfig
from lab.train import char_losses

VOCAB = {"war_and_peace": 82, "linux_kernel": 98}
KINDS = ("rnn", "lstm", "gru")
TINY = {"width": 12, "batch": 4, "seq_len": 20}
WORDS = "the quick brown fox jumps over a lazy dog ( softly ) \"quiet\" hills , and ; 1 2 3 .".split()


def toy_file(folder: Path, n: int = 6000) -> str:
    rng = random.Random(0)
    text = "".join(rng.choice(WORDS) + ("\n" if rng.random() < 0.1 else " ") for _ in range(n))[:n]
    path = folder / "toy.txt"
    path.write_text(text)
    return str(path)


def tiny_grid(out, corpus, kinds=("rnn", "lstm", "gru"), **kw):
    kw = {"parallel": 2, "device": "cpu", "epochs": 2, "threads": 1, "train_options": TINY, "log": lambda *a: None,
          **kw}
    return run_grid(out, corpora=[corpus], kinds=kinds, layers=(1,), rows=(64,), **kw)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished tiny grid: three runs (RNN, LSTM, GRU), two at a time."""
    root = tmp_path_factory.mktemp("grid")
    corpus = toy_file(root)
    t = time.time()
    report = tiny_grid(root / "out", corpus)
    return {"out": root / "out", "corpus": corpus, "report": report, "seconds": time.time() - t}


# -- the listing --------------------------------------------------------------------------------

def test_listing_has_72_runs_smallest_first_with_the_rows_widths():
    runs = grid_runs(vocab_sizes=VOCAB)
    assert len(runs) == 72 and len({r.name for r in runs}) == 72
    assert runs[0].name == "war_and_peace-rnn1-64" and runs[-1].name == "linux_kernel-gru3-512"
    assert [r.row for r in runs] == sorted(r.row for r in runs)
    for r in runs:
        assert r.width == width_for(r.kind, r.layers, r.row, VOCAB[r.corpus])
        assert r.name == f"{r.corpus}-{r.kind}{r.layers}-{r.row}"
        assert r.dropout == lab.grid.DROPOUT[r.corpus][r.row]
        lstm1 = next(x for x in runs if (x.corpus, x.kind, x.layers, x.row) == (r.corpus, "lstm", 1, r.row))
        assert abs(r.params / lstm1.params - 1) < 0.05  # every model of a row about the 1-layer LSTM's size
    by_name = {r.name: r for r in runs}
    assert by_name["war_and_peace-lstm1-512"].width == 512 and by_name["war_and_peace-lstm2-512"].width == 307
    for row in (64, 128, 256):  # within a row, the shorter corpus (War and Peace) first
        names = [r.corpus for r in runs if r.row == row]
        assert names == sorted(names, key=lambda c: c != "war_and_peace")


@pytest.mark.skipif(not (Path(os.environ.get("VURN_DATA", "/nonexistent")) / "linux_kernel.txt").is_file(),
                    reason="set VURN_DATA to the folder holding the corpora")
def test_listing_reads_the_vocabulary_sizes_from_the_corpora():
    runs = grid_runs(rows=(512,), kinds=("lstm",), layers=(2,))
    assert [(r.name, r.width) for r in runs] == [("war_and_peace-lstm2-512", 307),
                                                 ("linux_kernel-lstm2-512", width_for("lstm", 2, 512, 98))]


def test_dropout_choices():
    runs = grid_runs(vocab_sizes=VOCAB, rows=(64, 512), kinds=("gru",), layers=(1,), dropout={512: 0.4, 64: 0.1})
    assert [r.dropout for r in runs] == [0.1, 0.1, 0.4, 0.4]
    assert {r.dropout for r in grid_runs(vocab_sizes=VOCAB, dropout=0.2)} == {0.2}


@pytest.mark.parametrize("kw, message", [
    ({"kinds": ["lstm", "tree"]}, "unknown kind"),
    ({"rows": [100]}, "unknown row"),
    ({"layers": [4]}, "unknown layers"),
    ({"corpora": ["shakespeare"]}, "unknown corpus 'shakespeare'"),
    ({"dropout": 1.5}, "dropout must be in"),
    ({"train_options": {"dropout": 0.1}}, "the grid sets"),
    ({"train_options": {"colour": 1}}, "unknown training options"),
    ({"train_options": {"width": 0}}, r"width must be at least 1 \(or left out: the row's width\), got 0"),
    ({"train_options": {"max_train_chars": 0}}, "max_train_chars must be at least 1"),
])
def test_bad_listing_inputs_are_clear_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        grid_runs(**{"vocab_sizes": VOCAB, **kw})


@pytest.mark.parametrize("kw, message", [
    ({"parallel": 0}, "parallel must be a whole number >= 1"),
    ({"parallel": 1.5}, "parallel must be"),
    ({"row_parallel": {512: 0}}, "row_parallel"),
    ({"budget_seconds": -1}, "budget_seconds must be positive"),
    ({"kinds": ["lsmt"]}, "unknown kind"),
    ({"overcommit": -1, "carry_bytes": 1e6, "budget_seconds": 60}, "overcommit must be a whole number >= 0"),
    ({"overcommit": 2, "budget_seconds": 60}, "overcommit needs carry_bytes and budget_seconds"),
    ({"overcommit": 2, "carry_bytes": 1e6}, "overcommit needs carry_bytes and budget_seconds"),
])
def test_bad_runner_inputs_are_clear_errors(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        run_grid(tmp_path / "out", **{"corpora": [toy_file(tmp_path)], "device": "cpu", **kw})
    assert not (tmp_path / "out" / "runs").exists() or not any((tmp_path / "out" / "runs").iterdir())


def test_bad_cli_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["grid", "run", str(tmp_path / "out"), "--parallel", "0", "--corpora", toy_file(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vurn grid: error: parallel must be") and err.count("\n") == 1
    assert main(["grid", "list", "--rows", "100"]) == 2
    assert "unknown row [100]" in capsys.readouterr().err


def test_a_dropout_dict_without_a_row_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^dropout has no value for row 512 \(corpus war_and_peace\)$"):
        grid_runs(vocab_sizes=VOCAB, corpora=["war_and_peace"], rows=(64, 512), dropout={64: 0.1})
    with pytest.raises(ValueError, match=r"^dropout has no value for row 64 \(corpus linux_kernel\)$"):
        grid_runs(vocab_sizes=VOCAB, rows=(64,), dropout={"war_and_peace": {64: 0.1}, "linux_kernel": {512: 0.5}})
    for per_corpus in ({"war_and_peace": {64: 0.1}}, {"war_and_peace": 0.1}):   # not read as a {row: p} table
        with pytest.raises(ValueError, match=r"^dropout has no entry for corpus linux_kernel \(it has war_and_peace\): "
                                             r"give every corpus of the grid a value or a \{row: p\}$"):
            grid_runs(vocab_sizes=VOCAB, rows=(64,), dropout=per_corpus)
    runs = grid_runs(vocab_sizes=VOCAB, rows=(64,), dropout={"war_and_peace": 0.1, "linux_kernel": {64: 0.2}})
    assert {r.corpus: r.dropout for r in runs} == {"war_and_peace": 0.1, "linux_kernel": 0.2}


def test_a_grid_without_corpora_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^no corpora given: use war_and_peace, linux_kernel or a path to a text "
                                         "file$"):
        grid_runs(corpora=[], vocab_sizes=VOCAB)


def test_two_corpora_giving_runs_the_same_name_are_refused_and_nothing_is_written(tmp_path):
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
    corpora = [toy_file(folder) for folder in folders]
    with pytest.raises(ValueError, match="^two corpora give runs of the same name: rename one of the files$"):
        grid_runs(corpora, ("lstm",), (1,), (64,), vocab_sizes=dict.fromkeys(corpora, 30))
    with pytest.raises(ValueError, match="two corpora give runs of the same name"):
        run_grid(tmp_path / "out", corpora=corpora, kinds=("lstm",), layers=(1,), rows=(64,), device="cpu")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, option, given", [
    ("list", "--set", "lr"),
    ("list", "--set", "colour=1"),
    ("run", "--set", "seq_len"),
    ("run", "--row-parallel", "512"),
    ("run", "--row-parallel", "x=3"),
    ("run", "--row-parallel", "512=many"),
])
def test_a_malformed_set_or_row_parallel_is_a_one_line_error_by_name(tmp_path, capsys, command, option, given):
    out = [str(tmp_path / "out")] if command == "run" else []
    assert main(["grid", command, *out, "--corpora", toy_file(tmp_path), option, given]) == 2
    err = capsys.readouterr().err
    wants = ("--set wants KEY=VALUE with KEY one of corpus, kind, layers, row, width, dropout, epochs, "
             if option == "--set" else "--row-parallel wants ROW=N, e.g. 512=3, ")
    assert err.startswith("vurn grid: error: " + wants) and err.endswith(f"got {given!r}\n") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given, message", [
    ("lr=abc", "--set lr=abc: lr wants a float, e.g. lr=0.002"),
    ("width=x", "--set width=x: width wants an int or none"),
    ("seed=1.5", "--set seed=1.5: seed wants an int, e.g. seed=0"),
])
def test_a_set_value_of_the_wrong_type_names_the_option(tmp_path, capsys, given, message):
    assert main(["grid", "list", "--corpora", toy_file(tmp_path), "--set", given]) == 2
    assert capsys.readouterr().err == f"vurn grid: error: {message}\n"


def test_set_converts_values_and_none_for_an_optional_option():
    assert lab.grid._train_option("lr=1e-3") == ("lr", 0.001)
    assert lab.grid._train_option("max-train-chars=None") == ("max_train_chars", None)
    assert lab.grid._train_option("width=200") == ("width", 200)


# -- running ------------------------------------------------------------------------------------

def test_tiny_grid_runs_to_completion(done):
    report, runs = done["report"], done["out"] / "runs"
    assert sorted(report["finished"]) == ["toy-gru1-64", "toy-lstm1-64", "toy-rnn1-64"], report
    assert not report["failed"] and not report["stopped"] and report["gpu_util_mean"] is None
    for name in report["finished"]:
        summary = json.loads((runs / name / "summary.json").read_text())
        assert summary["finished"] and summary["epochs"] == 2 and summary["width"] == 12
        info = json.loads((runs / name / "grid.json").read_text())
        assert info["launches"][0]["outcome"] == "finished" and info["wall_s"] > 0
        steps = lab.grid.curve(runs / name)[-1]["step"]          # every step of the run, in one launch
        launch = info["launches"][0]
        # wall_s is rounded to 0.1 s and steps_per_s to 0.01: compare within those roundings
        assert launch["steps"] == steps > 0
        assert abs(launch["steps_per_s"] * launch["wall_s"] - steps) <= 0.05 * launch["steps_per_s"] + 0.005 * launch["wall_s"] + 1e-9
    log = [json.loads(x) for x in (done["out"] / "grid_log.jsonl").read_text().splitlines()]
    assert log[0]["device"].startswith("cpu") and len(log[0]["runs"]) == 3 and log[0]["end"] >= log[0]["start"]
    assert log[0]["mps"] is False   # CUDA's Multi-Process Service: only for a GPU run


def test_second_invocation_skips_finished_runs(done):
    logs = {p: p.stat().st_mtime_ns for p in (done["out"] / "runs").rglob("*")}
    t = time.time()
    report = tiny_grid(done["out"], done["corpus"])
    assert sorted(report["skipped_finished"]) == sorted(done["report"]["finished"])
    assert not report["finished"] and not report["stopped"] and time.time() - t < 5
    assert {p: p.stat().st_mtime_ns for p in (done["out"] / "runs").rglob("*")} == logs


def test_other_options_on_an_existing_grid_are_refused(done):
    with pytest.raises(ValueError, match="other options .*dropout 0.0 there, 0.5 asked"):
        tiny_grid(done["out"], done["corpus"], dropout=0.5)


def test_a_run_whose_options_predate_a_new_option_is_the_same_run(done, tmp_path):
    """A checkpoint saved before TrainConfig gained ``layout`` has its default, not another value."""
    import shutil

    from lab.checkpoint import load_checkpoint, save_checkpoint
    run_dir = tmp_path / "toy-lstm1-64"
    shutil.copytree(done["out"] / "runs" / "toy-lstm1-64", run_dir)
    tensors, meta = load_checkpoint(run_dir / "last.safetensors")
    del meta["train_config"]["layout"]
    save_checkpoint(run_dir / "last.safetensors", tensors, meta)
    run = next(r for r in lab.grid.grid_runs(**toy_selection(done["corpus"])) if r.name == "toy-lstm1-64")
    assert lab.grid._mismatch(run, run_dir) is None
    meta["train_config"]["layout"] = "char-rnn"
    save_checkpoint(run_dir / "last.safetensors", tensors, meta)
    assert lab.grid._mismatch(run, run_dir) == "toy-lstm1-64: layout 'char-rnn' there, 'contiguous' asked"


def test_the_grid_refuses_the_char_rnn_layout(tmp_path):
    with pytest.raises(ValueError, match=r"the grid trains and scores on the contiguous splits .*--layout char-rnn"):
        tiny_grid(tmp_path / "out", toy_file(tmp_path), train_options={**TINY, "layout": "char-rnn"})
    with pytest.raises(ValueError, match="unknown layout 'rows': choose one of contiguous, char-rnn"):
        tiny_grid(tmp_path / "out", toy_file(tmp_path), train_options={**TINY, "layout": "rows"})
    assert not (tmp_path / "out").exists()


def test_no_new_work_once_the_budget_is_spent(tmp_path):
    report = tiny_grid(tmp_path / "out", toy_file(tmp_path), budget_seconds=30, reserve_seconds=29.5, min_seconds=1)
    assert report["not_started"] == ["toy-rnn1-64", "toy-lstm1-64", "toy-gru1-64"] and not report["finished"]


def test_interrupted_runs_resume_in_another_session_with_the_same_losses(done, tmp_path):
    corpus, kinds = done["corpus"], ("lstm", "gru")
    first = tiny_grid(tmp_path / "a", corpus, kinds, child_seconds=0.01)   # each stops a few steps in
    assert sorted(first["stopped"]) == ["toy-gru1-64", "toy-lstm1-64"], first
    for name in first["stopped"]:
        assert run_state(tmp_path / "a" / "runs" / name) == "resumable"
    packed = pack(tmp_path / "a", tmp_path / "trip")       # the way back from a GPU session ...
    assert packed["unfinished"] == ["toy-gru1-64", "toy-lstm1-64"] and not packed["done_parts"]
    restored = restore(tmp_path / "b", [tmp_path / "trip"])  # ... and into the next one
    assert restored["unfinished"] == ["toy-gru1-64", "toy-lstm1-64"]
    second = tiny_grid(tmp_path / "b", corpus, kinds)
    assert sorted(second["finished"]) == ["toy-gru1-64", "toy-lstm1-64"], second
    for name in second["finished"]:
        run, ref = tmp_path / "b" / "runs" / name, done["out"] / "runs" / name
        first_launch, last_launch = json.loads((run / "grid.json").read_text())["launches"][-2:]
        assert last_launch["resumed"] and first_launch["steps"] > 0        # each launch counts its own steps
        assert first_launch["steps"] + last_launch["steps"] >= lab.grid.curve(ref)[-1]["step"]
        a, b = json.loads((run / "summary.json").read_text()), json.loads((ref / "summary.json").read_text())
        assert (a["val_loss"], a["test_loss"], a["best_epoch"]) == (b["val_loss"], b["test_loss"], b["best_epoch"])
        assert lab.grid.curve(run) == lab.grid.curve(ref)


def test_a_child_past_the_budget_is_killed_and_resumed_next_time(tmp_path):
    corpus = toy_file(tmp_path)
    report = tiny_grid(tmp_path / "out", corpus, ("lstm",), epochs=400, budget_seconds=8, reserve_seconds=0,
                       min_seconds=0)
    assert report["killed"] == ["toy-lstm1-64"], report
    run = tmp_path / "out" / "runs" / "toy-lstm1-64"
    assert json.loads((run / "grid.json").read_text())["launches"][0]["outcome"] == "killed"
    again = tiny_grid(tmp_path / "out", corpus, ("lstm",), epochs=400, child_seconds=0.01)
    assert again["stopped"] == ["toy-lstm1-64"]
    resumed = json.loads((run / "grid.json").read_text())["launches"][-1]["resumed"]
    assert resumed == (len(lab.grid.curve(run)) > 0)  # it had epochs checkpointed before the kill


def _children(run_dir: Path) -> list[int]:
    """The pids of the ``lab train`` children training ``run_dir`` (their argv names it exactly)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:   # the process ended meanwhile
            continue
        if b"--run-dir" in argv[:-1] and argv[argv.index(b"--run-dir") + 1] == os.fsencode(run_dir):
            pids.append(int(cmdline.parent.name))
    return pids


def _wait_for(condition, what: str, seconds: float = 90.0) -> None:
    end = time.time() + seconds
    while time.time() < end and not condition():
        time.sleep(0.2)
    assert condition(), f"waited {seconds:.0f} s for {what}"


def _interrupted_grid(tmp_path: Path, corpus: str, kinds, *options: str, until, what: str, seconds: float = 60.0):
    """Run ``python -m lab grid run`` on the toy grid (width 12, 400 epochs) in its own session,
    wait for ``until()``, then SIGTERM it as a background job's kill would: (exit status, stdout,
    stderr). A runner that outlives the signal's minute is killed with its children."""
    import signal
    cmd = [sys.executable, "-m", "lab", "grid", "run", str(tmp_path / "out"), "--corpora", corpus, "--kinds", *kinds,
           "--layers", "1", "--rows", "64", "--epochs", "400", "--device", "cpu", "--threads", "1", *options,
           *[f"--set={k}={v}" for k, v in TINY.items()]]
    proc = subprocess.Popen(cmd, cwd=str(lab.grid.ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _wait_for(until, what, seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return proc.returncode, out, err


def test_sigterm_stops_the_children_and_keeps_the_sessions_record(tmp_path):
    """A grid run killed from outside (SIGTERM; a background job ignores Ctrl-C) ends like a
    Ctrl-C: children stopped, every launch and the session recorded, exit status 130."""
    runs, names = tmp_path / "out" / "runs", ["toy-gru1-64", "toy-lstm1-64"]
    rc, out, err = _interrupted_grid(tmp_path, toy_file(tmp_path), ("lstm", "gru"), "--parallel", "2",
                                     until=lambda: len(list(runs.glob("*/metrics.jsonl"))) == 2,
                                     what="both children training")
    assert rc == 130 and "interrupted" in err, err
    record = json.loads((tmp_path / "out" / "grid_log.jsonl").read_text().splitlines()[-1])
    assert record["end"] and sorted(record["killed"]) == names, record
    for name in names:
        assert json.loads((runs / name / "grid.json").read_text())["launches"][-1]["outcome"] == "killed"
        assert not _children(runs / name)                                      # no child left running


# -- collecting ---------------------------------------------------------------------------------

def test_collect_writes_the_table_curves_and_provenance(done, tmp_path):
    df = collect(done["out"], tmp_path / "results")
    table = pd.read_csv(tmp_path / "results" / "table1.csv")
    assert list(table.columns) == COLUMNS and len(table) == 3
    assert table["finished"].all() and (table["test_scored"] == "best").all()
    assert (table["epochs_done"] == 2).all() and (table["epochs_planned"] == 2).all()
    assert (table["test_loss_se"] > 0).all() and table["paper_test_loss"].isna().all()
    row = df.set_index("name").loc["toy-lstm1-64"]
    run = done["out"] / "runs" / "toy-lstm1-64"
    # the same numbers computed directly: char losses of best.safetensors, blocks resampled with seed 0
    tensors, meta = load_checkpoint(run / "best.safetensors")
    model = CharRNN(ModelConfig.from_dict(meta["model_config"]))
    model.load_state_dict(tensors)
    losses = char_losses(model, load_corpus(done["corpus"]).split_ids("test")).double().numpy()
    assert row["test_loss"] == pytest.approx(losses.mean(), rel=1e-9)
    assert row["test_loss"] == pytest.approx(json.loads((run / "summary.json").read_text())["test_loss"], rel=1e-5)
    blocks = np.array_split(losses, 100)
    draws = np.random.default_rng(0).integers(0, 100, size=(1000, 100))
    means = [sum(blocks[i].sum() for i in d) / sum(len(blocks[i]) for i in d) for d in draws]
    assert row["test_loss_se"] == pytest.approx(np.std(means, ddof=1), rel=1e-9)
    assert row["test_loss_se"] == pytest.approx(bootstrap_se(losses), rel=1e-12)
    blocks_csv = pd.read_csv(tmp_path / "results" / "table1_blocks.csv", index_col="name")
    assert blocks_csv.shape == (3, 100)          # each block's mean loss, for paired comparisons
    assert np.allclose(blocks_csv.loc["toy-lstm1-64"], [b.mean() for b in blocks], atol=1e-6)
    assert row["width"] == 12 and row["best_epoch"] in (1, 2) and row["wall_s"] > 0
    curve = pd.read_csv(tmp_path / "results" / "curves" / "toy-lstm1-64.csv")
    assert list(curve.columns) == ["epoch", "step", "train_loss", "val_loss"] and list(curve["epoch"]) == [1, 2]
    prov = json.loads((tmp_path / "results" / "table1_provenance.json").read_text())
    for key in ("collect_command", "collect_commit", "devices", "first_start", "last_end", "total_device_seconds",
                "mean_gpu_utilisation", "bootstrap", "sessions"):
        assert key in prov
    assert prov["bootstrap"]["seed"] == 0 and prov["finished"] == 3
    assert json.loads((run / "score.json").read_text())["best_sha256"] == meta["tensors_sha256"]


def test_collect_names_every_device_a_run_trained_on(done, tmp_path):
    """A run started on a GPU and finished on the CPU says both, in launch order, once each."""
    out = tmp_path / "grid"
    shutil.copytree(done["out"], out)
    meta = out / "runs" / "toy-lstm1-64" / "grid.json"
    grid = json.loads(meta.read_text())
    cpu = grid["launches"][-1]["device"]
    grid["launches"] = [dict(grid["launches"][-1], device="NVIDIA H100 80GB HBM3"), *grid["launches"],
                        dict(grid["launches"][-1])]
    meta.write_text(json.dumps(grid))
    df = collect(out, None).set_index("name")
    assert df.loc["toy-lstm1-64", "device"] == f"NVIDIA H100 80GB HBM3 + {cpu}"
    assert df.loc["toy-gru1-64", "device"] == cpu


def test_each_launch_records_its_commit_and_collect_lists_them_all(done, tmp_path, monkeypatch):
    corpus = done["corpus"]
    monkeypatch.setenv("VURN_COMMIT", "aaaaaaa")
    tiny_grid(tmp_path / "g", corpus, ("lstm",), epochs=3, child_seconds=0.01)     # stopped under one commit
    monkeypatch.setenv("VURN_COMMIT", "bbbbbbb")
    tiny_grid(tmp_path / "g", corpus, ("lstm",), epochs=3)                         # finished under another
    launches = json.loads((tmp_path / "g" / "runs" / "toy-lstm1-64" / "grid.json").read_text())["launches"]
    assert [x["code_commit"] for x in launches] == ["aaaaaaa", "bbbbbbb"]
    assert collect(tmp_path / "g", None).loc[0, "code_commit"] == "aaaaaaa + bbbbbbb"
    grid = tmp_path / "g" / "runs" / "toy-lstm1-64" / "grid.json"
    info = json.loads(grid.read_text())
    del info["launches"][0]["code_commit"]                              # a launch from before launches said
    grid.write_text(json.dumps(info))
    assert collect(tmp_path / "g", None).loc[0, "code_commit"] == "unknown + bbbbbbb"   # not silently dropped


def test_collect_scores_an_unfinished_run_from_its_best_so_far(done, tmp_path):
    first = tiny_grid(tmp_path / "out", done["corpus"], ("lstm",), epochs=3, child_seconds=0.01)
    run = tmp_path / "out" / "runs" / "toy-lstm1-64"
    assert first["stopped"] and not (run / "best.safetensors").exists()
    df = collect(tmp_path / "out", None)
    assert df.loc[0, "status"] == "stopped" and pd.isna(df.loc[0, "test_loss"])
    import shutil  # give it the finished grid's first-epoch weights: a best-so-far to score
    shutil.copy(done["out"] / "runs" / "toy-lstm1-64" / "best.safetensors", run / "best.safetensors")
    df = collect(tmp_path / "out", None)
    assert df.loc[0, "test_scored"] == "best so far" and df.loc[0, "test_loss_se"] > 0 and not df.loc[0, "finished"]


def test_pack_and_restore_a_finished_grid(done, tmp_path):
    collect(done["out"], None)  # scores cached in score.json travel with the state
    packed = pack(done["out"], tmp_path / "trip", part_bytes=4096, max_parts=100)
    assert len(packed["state_parts"]) >= 1 and packed["done_parts"] and not packed["left_out"]
    assert sorted(packed["best_weights"]) == ["toy-gru1-64", "toy-lstm1-64", "toy-rnn1-64"]
    for part in packed["state_parts"] + packed["done_parts"]:
        assert (tmp_path / "trip" / part).stat().st_size <= 4096
    restored = restore(tmp_path / "local", [tmp_path / "trip"])
    assert sorted(restored["finished"]) == ["toy-gru1-64", "toy-lstm1-64", "toy-rnn1-64"]
    a, b = collect(done["out"], None), collect(tmp_path / "local", None)
    assert list(a["test_loss"]) == list(b["test_loss"]) and list(a["test_loss_se"]) == list(b["test_loss_se"])
    again = pack(tmp_path / "local", tmp_path / "trip2")   # nothing finished since the restore
    assert not again["done_parts"] and again["state_parts"]
    going = pack(done["out"], tmp_path / "going", state_only=True)   # to a session: no weights of finished runs
    assert going["state_parts"] and not going["done_parts"] and not going["best_weights"]
    assert sorted(p.name for p in (tmp_path / "going").iterdir()) == going["state_parts"]
    state_only = restore(tmp_path / "device", [tmp_path / "trip2"])  # a later session needs only the state
    assert sorted(state_only["finished"]) == sorted(restored["finished"])
    assert not list((tmp_path / "device").rglob("*.safetensors"))


def test_packing_an_unchanged_grid_again_gives_the_same_bytes(done, tmp_path):
    """What lets gpu_prepare.sh see with `cmp` that the committed state is the grid's (and
    send it once): a later pack of the same files, also of a copy restored from the first, is
    byte for byte the same."""
    first = pack(done["out"], tmp_path / "a", state_only=True)
    time.sleep(1.1)   # a gzip header stamped with the time would differ now
    pack(done["out"], tmp_path / "b", state_only=True)
    restore(tmp_path / "copy", [tmp_path / "a"])
    pack(tmp_path / "copy", tmp_path / "c", state_only=True)
    for part in first["state_parts"]:
        assert (tmp_path / "a" / part).read_bytes() == (tmp_path / "b" / part).read_bytes() \
            == (tmp_path / "c" / part).read_bytes()


def test_pack_keeps_within_its_size_limit(done, tmp_path):
    full = pack(done["out"], tmp_path / "full")
    bare = pack(done["out"], tmp_path / "bare", max_bytes=1)   # no room: state and logs only
    assert bare["warnings"] and len(bare["left_out"]) == 3
    base = sum(p.stat().st_size for p in (tmp_path / "bare").iterdir())
    half = lab.grid._half_copy(done["out"] / "runs" / "toy-rnn1-64" / "best.safetensors", tmp_path / "half.safetensors")
    limit = base + half.stat().st_size + 1500   # room for the smallest model in float16, not in float32
    packed = pack(done["out"], tmp_path / "trip", max_bytes=limit)
    assert sum(p.stat().st_size for p in (tmp_path / "trip").iterdir()) <= limit
    assert not packed["best_weights"] and packed["float16_copies"] == ["toy-rnn1-64"], packed
    assert sorted(packed["left_out"]) == ["toy-gru1-64", "toy-lstm1-64"] and packed["warnings"]
    restore(tmp_path / "local", [tmp_path / "trip"])
    tensors, meta = load_checkpoint(tmp_path / "local" / "runs" / "toy-rnn1-64" / "best-f16.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.float16} and "float16 copy" in meta["weights"]
    assert not full["left_out"] and not full["warnings"]


# -- pieces -------------------------------------------------------------------------------------

def test_gpu_sampler_reads_nvidia_smi_and_tolerates_its_absence(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nwhile true; do echo 40; echo 60; sleep 0.1; done\n")
    fake.chmod(0o755)
    sampler = GpuSampler(command=str(fake))
    assert sampler.start()
    time.sleep(0.6)
    sampler.stop()
    assert sampler.mean() == 50.0 and len(sampler.samples) >= 2
    missing = GpuSampler(command=str(tmp_path / "no-such-tool"))
    assert not missing.start() and missing.mean() is None
    missing.stop()


def test_bootstrap_se_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    small, large = rng.exponential(1.0, 10_000), rng.exponential(1.0, 160_000)
    assert bootstrap_se(small) == pytest.approx(np.std(small) / 100, rel=0.15)   # i.i.d.: sd / sqrt(n)
    assert bootstrap_se(large) < bootstrap_se(small) / 3
    with pytest.raises(ValueError, match="too few"):
        bootstrap_se([1.0] * 50)


# -- keeping checkpoints ------------------------------------------------------------------------

def test_keep_copies_the_best_checkpoint_with_its_card(done, tmp_path):
    from lab.session import Session
    report = lab.grid.keep(done["out"], ["toy-gru1-64"], tmp_path / "kept", command="test")
    best = done["out"] / "runs" / "toy-gru1-64" / "best.safetensors"
    kept = tmp_path / "kept" / "toy-gru1-64.safetensors"
    assert kept.read_bytes() == best.read_bytes() and report["mib"] > 0
    card = json.loads((tmp_path / "kept" / "toy-gru1-64.json").read_text())
    score = lab.grid.score_run(best.parent)                                     # cached in score.json
    assert card["finished"] and card["kind"] == "gru" and card["kept_by"] == "test"
    assert card["test_loss"] == score["test_loss"] and card["launches"] and "block_losses" not in card
    assert Session.load(str(kept)).model.cfg.kind == "gru"                      # it opens as any checkpoint


def test_keep_half_stores_float16_weights_scored_again(done, tmp_path):
    import torch

    from lab.checkpoint import load_checkpoint
    from lab.corpus import load_corpus
    from lab.models import CharRNN, ModelConfig
    from lab.train import char_losses, evaluate
    best = done["out"] / "runs" / "toy-gru1-64" / "best.safetensors"
    report = lab.grid.keep(done["out"], ["toy-gru1-64"], tmp_path / "kept", half=True)
    kept = tmp_path / "kept" / "toy-gru1-64.safetensors"
    tensors, meta = load_checkpoint(kept)
    full, _ = load_checkpoint(best)
    assert {v.dtype for v in tensors.values()} == {torch.float16} and tensors.keys() == full.keys()
    assert all(torch.equal(tensors[k], full[k].half()) for k in full)
    assert report["mib"] == round(kept.stat().st_size / 2 ** 20, 2) and kept.stat().st_size < 0.6 * best.stat().st_size
    card = json.loads((tmp_path / "kept" / "toy-gru1-64.json").read_text())
    assert card["weights"].startswith("float16 copy") and meta["weights"] == card["weights"]
    # the card's float16 scores are those of the stored weights, computed independently here
    model = CharRNN(ModelConfig.from_dict(meta["model_config"]))
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    corpus = load_corpus(str(done["corpus"]))
    assert card["half_test_loss"] == char_losses(model, corpus.split_ids("test")).double().mean().item()
    assert card["half_val_loss"] == evaluate(model, corpus.split_ids("val"))
    assert abs(card["half_test_loss"] - card["test_loss"]) < 1e-2   # rounding the weights barely moves the loss


def test_keep_counts_the_epochs_of_a_finished_run_that_came_without_its_last_checkpoint(done, tmp_path):
    run = tmp_path / "g" / "runs" / "toy-gru1-64"
    shutil.copytree(done["out"] / "runs" / "toy-gru1-64", run)
    (run / "last.safetensors").unlink()                     # as restore leaves a run finished elsewhere
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "epochs": 50}))   # best epoch stays 1 or 2
    lab.grid.keep(tmp_path / "g", ["toy-gru1-64"], tmp_path / "kept")
    card = json.loads((tmp_path / "kept" / "toy-gru1-64.json").read_text())
    assert card["epochs_done"] == 50 and card["best_epoch"] in (1, 2)


def test_keep_refuses_missing_and_unfinished_runs(done, tmp_path):
    with pytest.raises(FileNotFoundError, match="no best checkpoint for 'toy-gru9-64'.*grid run"):
        lab.grid.keep(done["out"], ["toy-gru9-64"], tmp_path)
    for name in ("toy-lstm1-64", "toy-gru1-64"):
        shutil.copytree(done["out"] / "runs" / name, tmp_path / "g" / "runs" / name)
    (tmp_path / "g" / "runs" / "toy-lstm1-64" / "summary.json").unlink()     # as a run that has not finished
    with pytest.raises(ValueError, match="toy-lstm1-64 has not finished.*--unfinished"):
        lab.grid.keep(tmp_path / "g", ["toy-gru1-64", "toy-lstm1-64"], tmp_path / "kept")
    assert not (tmp_path / "kept").exists()                                     # nothing half-written
    report = lab.grid.keep(tmp_path / "g", ["toy-lstm1-64"], tmp_path / "kept", unfinished=True)
    card = json.loads((tmp_path / "kept" / "toy-lstm1-64.json").read_text())
    assert card["finished"] is False and report["written"]
    # the configuration comes from the checkpoint when there is no summary yet
    assert card["kind"] == "lstm" and card["layers"] == 1 and card["width"] == 12 and card["epochs_done"] == 2


# -- adopting a run trained outside the grid ----------------------------------------------------

def toy_selection(corpus, **kw):
    return {"corpora": [corpus], "kinds": ("rnn", "lstm", "gru"), "layers": (1,), "rows": (64,), "epochs": 2,
            "train_options": TINY, **kw}


def outside_run(done, folder, name="toy-lstm1-64", epochs=None, val_shift=0.0):
    """A finished training with the grid's options, as it would come from elsewhere: its best
    checkpoint and its per-epoch curve as a CSV (cut to ``epochs``, validation shifted)."""
    folder.mkdir(parents=True, exist_ok=True)
    run = done["out"] / "runs" / name
    rows = pd.DataFrame(lab.grid.curve(run))
    if epochs is not None:
        rows = rows[rows.epoch <= epochs]
    rows["val_loss"] += val_shift
    rows.to_csv(folder / f"{name}.csv", index=False)
    shutil.copyfile(run / "best.safetensors", folder / f"{name}.safetensors")
    return folder / f"{name}.safetensors", folder / f"{name}.csv"


def test_adopt_makes_an_outside_training_a_finished_grid_run(done, tmp_path):
    ckpt, csv = outside_run(done, tmp_path)
    grid, ref = tmp_path / "g", done["out"] / "runs" / "toy-lstm1-64"
    summary = lab.grid.adopt(grid, "toy-lstm1-64", ckpt, csv, wall_s=12.34, command="test",
                             **toy_selection(done["corpus"]))
    run = grid / "runs" / "toy-lstm1-64"
    assert run_state(run) == "finished" and summary["adopted"]["checkpoint"] == str(ckpt)
    assert summary["adopted"]["weights"] == "F32" and summary["elapsed_s"] == 12.3
    assert lab.grid.curve(run) == lab.grid.curve(ref)                     # the same learning curve back
    assert summary["test_loss"] == lab.grid.score_run(ref)["test_loss"]   # scored from the same weights
    best = lab.grid.read_meta(ref / "best.safetensors")
    assert (summary["best_epoch"], summary["epochs"], summary["width"]) == (best["epoch"], 2, 12)
    assert sorted(p.name for p in (grid / "runs").iterdir()) == ["toy-lstm1-64"]   # no staging folder left
    table = collect(grid, tmp_path / "results", device="cpu")
    row = table.set_index("name").loc["toy-lstm1-64"]
    assert row.finished and row.status == "finished" and row.test_loss == summary["test_loss"]
    prov = json.loads((tmp_path / "results" / "table1_provenance.json").read_text())
    assert [a["name"] for a in prov["adopted"]] == ["toy-lstm1-64"] and prov["adopted"][0]["adopted_by"] == "test"
    assert prov["adopted"][0]["wall_s"] == row.wall_s == 12.3
    card = lab.grid.keep(grid, ["toy-lstm1-64"], tmp_path / "kept")
    assert "adopted into the grid" in json.loads((tmp_path / "kept" / "toy-lstm1-64.json").read_text())["source"]
    # the grid runner leaves it alone, and trains the grid's other runs
    report = tiny_grid(grid, done["corpus"], ("lstm", "gru"))
    assert report["skipped_finished"] == ["toy-lstm1-64"] and report["finished"] == ["toy-gru1-64"] and card


def test_adopt_refuses_what_is_not_that_finished_run_and_writes_nothing(done, tmp_path):
    from lab.checkpoint import save_checkpoint
    ckpt, csv = outside_run(done, tmp_path)
    grid, sel = tmp_path / "g", toy_selection(done["corpus"])
    with pytest.raises(ValueError, match=r"other options than grid run toy-lstm1-64: epochs 2 there, 3 in the grid"):
        lab.grid.adopt(grid, "toy-lstm1-64", ckpt, csv, **toy_selection(done["corpus"], epochs=3))
    with pytest.raises(ValueError, match=r"dropout 0.0 there, 0.5 in the grid"):
        lab.grid.adopt(grid, "toy-lstm1-64", ckpt, csv, **toy_selection(done["corpus"], dropout=0.5))
    tensors, meta = load_checkpoint(ckpt)                                  # an option the grid does not set
    save_checkpoint(tmp_path / "lr.safetensors", tensors, {**meta, "train_config": {**meta["train_config"], "lr": 0.01}})
    with pytest.raises(ValueError, match=r"lr 0.01 there, 0.002 in the grid"):
        lab.grid.adopt(grid, "toy-lstm1-64", tmp_path / "lr.safetensors", csv, **sel)
    last = done["out"] / "runs" / "toy-lstm1-64" / "last.safetensors"     # not the best of a finished run
    with pytest.raises(ValueError, match="not the best checkpoint of a finished training"):
        lab.grid.adopt(grid, "toy-lstm1-64", last, csv, **sel)
    with pytest.raises(ValueError, match="no run 'toy-lstm9-64' in the grid"):
        lab.grid.adopt(grid, "toy-lstm9-64", ckpt, csv, **sel)
    _, short = outside_run(done, tmp_path / "short", epochs=1)
    with pytest.raises(ValueError, match=r"has epochs 1..1 \(1 rows\): a finished run has every epoch from 1 to 2"):
        lab.grid.adopt(grid, "toy-lstm1-64", ckpt, short, **sel)
    _, shifted = outside_run(done, tmp_path / "shifted", val_shift=0.5)   # another training's curve
    with pytest.raises(ValueError, match=r"is not this checkpoint's curve.*validation losses differ at epochs \[1"):
        lab.grid.adopt(grid, "toy-lstm1-64", ckpt, shifted, **sel)
    with pytest.raises(FileNotFoundError, match="no file .*nothing.csv"):
        lab.grid.adopt(grid, "toy-lstm1-64", ckpt, tmp_path / "nothing.csv", **sel)
    with pytest.raises(ValueError, match="already holds a run of the grid"):
        lab.grid.adopt(done["out"], "toy-lstm1-64", ckpt, csv, **sel)
    assert not (grid / "runs").exists() or not list((grid / "runs").iterdir())   # every refusal wrote nothing


def test_adopt_of_a_checkpoint_without_its_training_options_is_refused_and_writes_nothing(done, tmp_path):
    from lab.checkpoint import save_checkpoint
    ckpt, csv = outside_run(done, tmp_path)
    tensors, meta = load_checkpoint(ckpt)
    save_checkpoint(tmp_path / "bare.safetensors", tensors, {k: v for k, v in meta.items() if k != "train_config"})
    (tmp_path / "notes.safetensors").write_text("not a checkpoint")
    grid, sel = tmp_path / "g", toy_selection(done["corpus"])
    for path in (tmp_path / "bare.safetensors", tmp_path / "notes.safetensors"):
        with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} is not a vurn checkpoint with its training options$"):
            lab.grid.adopt(grid, "toy-lstm1-64", path, csv, **sel)
    assert not (grid / "runs").exists() or not list((grid / "runs").iterdir())


def test_adopt_of_a_curve_missing_columns_is_refused_by_name_and_writes_nothing(done, tmp_path):
    ckpt, csv = outside_run(done, tmp_path)
    pd.read_csv(csv).drop(columns=["step"]).to_csv(csv, index=False)
    grid = tmp_path / "g"
    with pytest.raises(ValueError, match=rf"^{re.escape(str(csv))} needs columns epoch, step, train_loss, val_loss; "
                                         "it has epoch, train_loss, val_loss$"):
        lab.grid.adopt(grid, "toy-lstm1-64", ckpt, csv, **toy_selection(done["corpus"]))
    assert not (grid / "runs").exists() or not list((grid / "runs").iterdir())


def test_adopt_failing_after_its_checks_leaves_nothing_and_can_be_done_again(done, tmp_path, monkeypatch):
    ckpt, csv = outside_run(done, tmp_path)
    grid, sel = tmp_path / "g", toy_selection(done["corpus"])

    def broken(*a, **k):
        raise RuntimeError("scoring broke")
    monkeypatch.setattr(lab.grid, "score_run", broken)
    with pytest.raises(RuntimeError, match="scoring broke"):
        lab.grid.adopt(grid, "toy-lstm1-64", ckpt, csv, **sel)
    assert not list((grid / "runs").iterdir())                           # neither the run nor its staging
    monkeypatch.undo()
    assert lab.grid.adopt(grid, "toy-lstm1-64", ckpt, csv, **sel)["finished"]


def test_adopt_on_the_command_line_is_a_one_line_error(done, tmp_path, capsys, offline_cache):
    ckpt, csv = outside_run(done, tmp_path)
    # Table 1's grid, whose war_and_peace-lstm1-64 needs War and Peace: without it (no download
    # here) that is the error; with it ($VURN_DATA in CI), the toy checkpoint's other options are
    assert main(["grid", "adopt", str(tmp_path / "g"), "war_and_peace-lstm1-64", str(ckpt), str(csv),
                 "--data", str(tmp_path / "no corpora here")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vurn grid: error: ") and err.count("\n") == 1, err
    from lab.corpus import find_corpus_file
    if find_corpus_file("war_and_peace", tmp_path / "no corpora here") is None:
        assert "could not download" in err and "pg2600.txt" in err, err      # the closed local port
    else:
        assert "other options than grid run war_and_peace-lstm1-64" in err, err
    assert not (tmp_path / "g" / "runs").exists() or not list((tmp_path / "g" / "runs").iterdir())


def test_restore_keeps_a_run_finished_here_over_an_archive_where_it_is_unfinished(done, tmp_path):
    corpus = done["corpus"]
    tiny_grid(tmp_path / "a", corpus, ("lstm",), child_seconds=0.01)     # a session that stopped it early
    pack(tmp_path / "a", tmp_path / "trip")
    local = tmp_path / "local"
    shutil.copytree(done["out"], local)                                  # where it has finished since
    before = (local / "runs" / "toy-lstm1-64" / "best.safetensors").read_bytes()
    restored = restore(local, [tmp_path / "trip"])
    assert restored["kept_local"] == ["toy-lstm1-64"] and "toy-lstm1-64" in restored["finished"]
    assert (local / "runs" / "toy-lstm1-64" / "best.safetensors").read_bytes() == before
    assert run_state(local / "runs" / "toy-lstm1-64") == "finished"
    fresh = restore(tmp_path / "fresh", [tmp_path / "trip"])            # into a folder without it: unpacked
    assert fresh["kept_local"] == [] and fresh["unfinished"] == ["toy-lstm1-64"]


def test_restore_never_rolls_an_unfinished_run_back_and_keeps_both_sides_sessions(done, tmp_path):
    corpus = done["corpus"]
    tiny_grid(tmp_path / "a", corpus, ("lstm",), child_seconds=0.01)     # a session that stopped it early
    shutil.copytree(tmp_path / "a", tmp_path / "early")
    pack(tmp_path / "early", tmp_path / "trip")                          # the state sent to a session then
    tiny_grid(tmp_path / "a", corpus, ("lstm",), child_seconds=0.01)     # meanwhile it went on here
    run = tmp_path / "a" / "runs" / "toy-lstm1-64"
    step = read_meta(run / "last.safetensors")["step"]
    assert step > read_meta(tmp_path / "early" / "runs" / "toy-lstm1-64" / "last.safetensors")["step"]
    log_here = (tmp_path / "a" / "grid_log.jsonl").read_text().splitlines()
    restored = restore(tmp_path / "a", [tmp_path / "trip"])
    assert restored["kept_local"] == ["toy-lstm1-64"] and read_meta(run / "last.safetensors")["step"] == step
    assert (tmp_path / "a" / "grid_log.jsonl").read_text().splitlines() == log_here   # no session lost


def test_a_run_finished_in_an_archive_replaces_the_local_one_whole(done, tmp_path):
    """No best-so-far checkpoint of an earlier session stays beside a summary that says finished."""
    corpus = done["corpus"]
    tiny_grid(tmp_path / "local", corpus, ("lstm",), child_seconds=0.01)
    run = tmp_path / "local" / "runs" / "toy-lstm1-64"
    shutil.copy(done["out"] / "runs" / "toy-rnn1-64" / "best.safetensors", run / "best.safetensors")  # stale
    collect(done["out"], None)                                           # its score travels in score.json
    pack(done["out"], tmp_path / "trip", state_only=True)                # finished there, no weights sent
    restored = restore(tmp_path / "local", [tmp_path / "trip"])
    assert "toy-lstm1-64" in restored["finished"] and not (run / "best.safetensors").exists()
    assert not (run / "last.safetensors").exists()
    there = collect(done["out"], None).set_index("name").loc["toy-lstm1-64"]
    here = collect(tmp_path / "local", None).set_index("name").loc["toy-lstm1-64"]
    assert here.status == "finished" and here.test_loss == there.test_loss
    # restored.json names what the archive had finished (the other side has it), not a run finished
    # only here, which the next pack sends
    shutil.copytree(done["out"] / "runs" / "toy-lstm1-64", tmp_path / "solo" / "runs" / "toy-lstm1-64")
    pack(tmp_path / "solo", tmp_path / "only", state_only=True)          # toy-lstm1-64 finished, alone
    shutil.copytree(done["out"] / "runs" / "toy-gru1-64", tmp_path / "mine" / "runs" / "toy-gru1-64")
    restore(tmp_path / "mine", [tmp_path / "only"])
    assert json.loads((tmp_path / "mine" / "restored.json").read_text())["finished"] == ["toy-lstm1-64"]
    assert pack(tmp_path / "mine", tmp_path / "back")["finished_now"] == ["toy-gru1-64"]


def test_restore_leaves_alone_a_run_a_runner_trains_and_a_checkpoint_the_archive_lacks(done, tmp_path):
    corpus = done["corpus"]
    collect(done["out"], None)
    pack(done["out"], tmp_path / "trip", state_only=True)                # lstm finished there
    tiny_grid(tmp_path / "local", corpus, ("lstm",), child_seconds=0.01)  # here it is being trained ...
    run = tmp_path / "local" / "runs" / "toy-lstm1-64"
    before = sorted(f.name for f in run.iterdir())
    held = lab.grid._lock_run(run)                                       # ... by a runner now
    restored = restore(tmp_path / "local", [tmp_path / "trip"])
    held.close()
    assert restored["kept_local"] == ["toy-lstm1-64"] and sorted(f.name for f in run.iterdir()) == before
    # an archive where the run has no checkpoint yet does not overwrite one that has
    tiny_grid(tmp_path / "early", corpus, ("gru",), child_seconds=0.01)
    (tmp_path / "early" / "runs" / "toy-gru1-64" / "last.safetensors").unlink()
    pack(tmp_path / "early", tmp_path / "trip2")
    shutil.copytree(tmp_path / "early", tmp_path / "here")
    tiny_grid(tmp_path / "here", corpus, ("gru",), child_seconds=0.01)  # starts again and checkpoints
    step = read_meta(tmp_path / "here" / "runs" / "toy-gru1-64" / "last.safetensors")["step"]
    metrics = (tmp_path / "here" / "runs" / "toy-gru1-64" / "metrics.jsonl").read_text()
    assert restore(tmp_path / "here", [tmp_path / "trip2"])["kept_local"] == ["toy-gru1-64"]
    assert (tmp_path / "here" / "runs" / "toy-gru1-64" / "metrics.jsonl").read_text() == metrics
    assert read_meta(tmp_path / "here" / "runs" / "toy-gru1-64" / "last.safetensors")["step"] == step


def test_a_childs_inherited_lock_outlives_its_runner(tmp_path):
    """The runner passes the lock to its child: a second runner cannot take the run while the
    child trains, even if the first runner is gone."""
    lock = lab.grid._lock_run(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], pass_fds=(lock.fileno(),))
    lock.close()                                                         # the runner's copy is gone
    try:
        assert lab.grid._lock_run(tmp_path) is None
    finally:
        child.kill()
        child.wait()
    assert lab.grid._lock_run(tmp_path) is not None


def test_restore_of_an_archive_with_a_part_missing_is_a_clear_error(done, tmp_path):
    pack(done["out"], tmp_path / "trip", part_bytes=4096, max_parts=100)
    parts = sorted((tmp_path / "trip").glob("grid-done.tgz.part-*"))
    assert len(parts) > 1
    parts[-1].unlink()
    with pytest.raises(ValueError, match=r"grid-done.tgz in \d+ part\(s\) cannot be read .*a part is missing or damaged"):
        restore(tmp_path / "local", [tmp_path / "trip"])


@pytest.mark.parametrize("member", ["../evil", "/tmp/evil", "link"])
def test_restore_refuses_an_archive_that_would_write_outside_its_folder(tmp_path, member):
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("runs/toy-lstm1-64/summary.json")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"{}"))
        bad = tarfile.TarInfo(member)
        if member == "link":
            bad.type, bad.linkname = tarfile.SYMTYPE, "../../outside"
        else:
            bad.size = 4
        tar.addfile(bad, None if member == "link" else io.BytesIO(b"evil"))
    (tmp_path / "trip").mkdir()
    (tmp_path / "trip" / "grid-x.tgz.part-0000").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match=f"holds an unsafe member {member!r}: not unpacked"):
        restore(tmp_path / "local", [tmp_path / "trip"])
    assert not (tmp_path / "evil").exists() and not (tmp_path / "local" / "runs" / "toy-lstm1-64").exists()


def test_restore_and_collect_name_a_source_or_folder_that_holds_nothing_of_theirs(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no \*\.tgz\.part-\* archives in .*empty"):
        restore(tmp_path / "local", [tmp_path / "empty"])
    with pytest.raises(ValueError, match=r"notes.txt is neither a folder of \*\.tgz\.part-\* archives nor one of"):
        restore(tmp_path / "local", [tmp_path / "notes.txt"])
    with pytest.raises(ValueError, match=r"empty holds no grid \(no runs folder\): run `python -m lab grid run"):
        collect(tmp_path / "empty", tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_a_run_another_runner_trains_is_skipped_not_trained_twice(tmp_path):
    corpus = toy_file(tmp_path)
    run = tmp_path / "grid" / "runs" / "toy-lstm1-64"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1, "epoch": 0, "loss": 2.0}\n')   # the other child's first steps
    held = lab.grid._lock_run(run)                                      # as the other runner holds it
    said = []
    report = tiny_grid(tmp_path / "grid", corpus, ("lstm", "gru"), log=said.append)
    assert report["skipped_locked"] == ["toy-lstm1-64"] and report["finished"] == ["toy-gru1-64"]
    assert "grid: toy-lstm1-64 is being trained by another runner: skipped" in said
    assert (run / "metrics.jsonl").read_text().count("\n") == 1       # not discarded as a killed first epoch
    held.close()
    assert tiny_grid(tmp_path / "grid", corpus, ("lstm",))["finished"] == ["toy-lstm1-64"]


def test_fewer_epochs_than_an_unfinished_run_was_started_with_is_refused(tmp_path):
    corpus = toy_file(tmp_path)
    tiny_grid(tmp_path / "g", corpus, ("lstm",), epochs=3, child_seconds=0.01)    # stopped, planned 3
    with pytest.raises(ValueError, match=r"--epochs 1 is fewer than these unfinished runs were started with: "
                                         r"toy-lstm1-64 \(planned 3\)"):
        tiny_grid(tmp_path / "g", corpus, ("lstm",), epochs=1)


def test_a_relative_grid_folder_is_the_callers(tmp_path, monkeypatch):
    corpus = toy_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    report = tiny_grid("rel/grid", "toy.txt", ("lstm",))                  # relative to here, not to the repository
    assert report["finished"] == ["toy-lstm1-64"]
    assert (tmp_path / "rel" / "grid" / "runs" / "toy-lstm1-64" / "summary.json").is_file()
    assert Path(corpus).is_file()


# -- what a session may leave unfinished -----------------------------------------------------------

def test_the_carry_budget_bounds_the_unfinished_runs(tmp_path):
    """With room for one unfinished run's state, two slots still run one at a time; with room
    for none, nothing starts, and the log says why."""
    corpus = toy_file(tmp_path)
    one = lab.grid._carry_bytes(tmp_path / "none", grid_runs([corpus], ("lstm",), (1,), (64,), epochs=2,
                                                                train_options=TINY)[0])
    said = []
    report = tiny_grid(tmp_path / "a", corpus, carry_bytes=1.5 * one, log=said.append)
    assert sorted(report["finished"]) == ["toy-gru1-64", "toy-lstm1-64", "toy-rnn1-64"], report
    # the second run waited for the first to finish (the runner may log that finish a poll later)
    assert said[0] == "grid: start toy-rnn1-64" and said[1].startswith(
        "grid: toy-lstm1-64 waits: with it the unfinished runs' state would pass"), said
    said.clear()
    report = tiny_grid(tmp_path / "b", corpus, carry_bytes=0.5 * one, log=said.append)
    assert report["not_started"] == ["toy-rnn1-64", "toy-lstm1-64", "toy-gru1-64"] and not report["finished"]
    assert sum(" waits: " in line for line in said) == 3
    assert json.loads((tmp_path / "b" / "grid_log.jsonl").read_text())["carry_bytes"] == 0.5 * one


def test_overcommitted_runs_that_finish_in_the_budget_start_past_the_carry(tmp_path):
    """Room for one unfinished run's state, two runs more overcommitted: all three train at
    once, and the two past the carry finish in the call, as they must. A run whose steps are
    done is not judged by its rate while it validates and scores (no steps then, rate 0)."""
    corpus = toy_file(tmp_path)
    one = lab.grid._carry_bytes(tmp_path / "none", grid_runs([corpus], ("lstm",), (1,), (64,), epochs=2,
                                                                train_options=TINY)[0])
    said = []
    report = tiny_grid(tmp_path / "g", corpus, parallel=3, carry_bytes=1.5 * one, overcommit=2, budget_seconds=300,
                       probe_seconds=0.3, log=said.append)   # short: it sees the final validation's pause
    assert sorted(report["finished"]) == ["toy-gru1-64", "toy-lstm1-64", "toy-rnn1-64"] and not report["dropped"]
    assert [line.split(" for at most")[0] for line in said[:3]] == [f"grid: start toy-{k}1-64" for k in KINDS]
    assert [" must finish in this call" in line for line in said[:3]] == [False, True, True], said
    assert not any(" waits: " in line for line in said)


def test_an_overcommitted_run_that_cannot_finish_is_dropped_and_the_carry_holds(tmp_path):
    """Runs far longer than the budget: the one within the carry is stopped at the budget's end
    and kept to resume; the two past it are dropped (their checkpoints and metrics deleted, their
    launch recorded), so the state to carry stays within its budget."""
    corpus = toy_file(tmp_path)
    runs = grid_runs([corpus], ("rnn", "lstm", "gru"), (1,), (64,), epochs=5000, train_options=TINY)
    one = lab.grid._carry_bytes(tmp_path / "none", runs[0])
    said = []
    report = tiny_grid(tmp_path / "g", corpus, parallel=3, epochs=5000, carry_bytes=1.5 * one, overcommit=2,
                       budget_seconds=25, reserve_seconds=2, probe_seconds=2.0, log=said.append)
    assert report["stopped"] + report["killed"] == ["toy-rnn1-64"], (report, said)
    assert sorted(report["dropped"]) == ["toy-gru1-64", "toy-lstm1-64"], (report, said)
    assert any("would not finish in this call" in line for line in said), said
    for name in ("toy-lstm1-64", "toy-gru1-64"):
        folder = tmp_path / "g" / "runs" / name
        assert run_state(folder) == "new"
        assert sorted(p.name for p in folder.iterdir() if p.name != ".lock") == ["grid.json", "train.log"]
        assert [x["outcome"] for x in json.loads((folder / "grid.json").read_text())["launches"]] == ["dropped"]
    assert run_state(tmp_path / "g" / "runs" / "toy-rnn1-64") == "resumable"
    carried = sum(lab.grid._carry_bytes(p, None) for p in lab.grid._run_folders(tmp_path / "g"))
    assert carried <= 1.5 * one
    assert json.loads((tmp_path / "g" / "grid_log.jsonl").read_text())["dropped"] == report["dropped"]


@pytest.mark.parametrize("room", ["none", "some"])
def test_an_overcommitted_run_that_fails_is_dropped_unless_it_fits_the_carry(tmp_path, room):
    """An overcommitted child that dies after its first checkpoint (here killed from outside,
    as the kernel's OOM killer would) is a failure past the carry. Where its state does not fit
    beside the other unfinished runs', its files are deleted and its launch recorded as dropped
    with the log's tail; it is not marked failed, so a later session trains it again. Where it
    fits, it is kept as a failure with its checkpoint, for ``--retry-failed``."""
    import signal
    import threading
    corpus = toy_file(tmp_path)
    runs = grid_runs([corpus], ("rnn", "lstm"), (1,), (64,), epochs=5000, train_options=TINY)
    one = lab.grid._carry_bytes(tmp_path / "none", runs[0])   # the RNN's estimate: 1 MiB of logs and the weights
    carry = one + 256 if room == "none" else 1.5 * one          # toy weights are a few KiB
    out, said, result = tmp_path / "g", [], {}

    def grid():
        try:   # the probe (10 s) outlasts the LSTM's first checkpoint: it is killed before it could be judged
            result["report"] = tiny_grid(out, corpus, ("rnn", "lstm"), parallel=2, epochs=5000, carry_bytes=carry,
                                         overcommit=1, budget_seconds=30, reserve_seconds=2, probe_seconds=10.0,
                                         log=said.append)
        except BaseException as e:  # noqa: BLE001 (reported below, in the test's thread)
            result["error"] = e
    thread = threading.Thread(target=grid)
    thread.start()
    lstm = out / "runs" / "toy-lstm1-64"
    try:
        _wait_for(lambda: (lstm / "last.safetensors").is_file() and _children(lstm), "the LSTM's first checkpoint")
        for pid in _children(lstm):
            os.kill(pid, signal.SIGKILL)
    finally:
        thread.join(120)
    assert not thread.is_alive() and "error" not in result, result
    report = result["report"]
    assert report["stopped"] + report["killed"] == ["toy-rnn1-64"], (report, said)   # the budget ends it
    assert " must finish in this call" in said[1] and not any("would not finish" in line for line in said), said
    info = json.loads((lstm / "grid.json").read_text())
    assert info["launches"][0]["rc"] == -signal.SIGKILL and "--run-dir" in info["error"]   # the log's tail stays
    if room == "none":
        assert report["dropped"] == ["toy-lstm1-64"] and not report["failed"], report
        assert run_state(lstm) == "new" and not info["failed"] and info["wall_s"] is None
        assert [x["outcome"] for x in info["launches"]] == ["dropped"]
        assert sorted(p.name for p in lstm.iterdir() if p.name != ".lock") == ["grid.json", "train.log"]
    else:
        assert report["failed"] == ["toy-lstm1-64"] and not report["dropped"], report
        assert run_state(lstm) == "failed" and info["failed"] and (lstm / "last.safetensors").is_file()
    assert run_state(out / "runs" / "toy-rnn1-64") == "resumable"


def test_an_interrupt_keeps_the_overcommitted_runs_it_stops(tmp_path):
    """Ctrl-C or SIGTERM drops nothing: every run stopped keeps its checkpoints, those started
    past the carry too (the carry may then be exceeded; the user chose to stop)."""
    corpus = toy_file(tmp_path)
    one = lab.grid._carry_bytes(tmp_path / "none", grid_runs([corpus], ("lstm",), (1,), (64,), epochs=400,
                                                                train_options=TINY)[0])
    runs, names = tmp_path / "out" / "runs", [f"toy-{k}1-64" for k in KINDS]
    rc, out, err = _interrupted_grid(
        tmp_path, corpus, KINDS, "--parallel", "3", "--budget", "3000", "--carry-mib", str(1.5 * one / 2 ** 20),
        "--overcommit", "2", "--probe-seconds", "1000",
        until=lambda: all((runs / n / "last.safetensors").is_file() for n in names), what="every run's first epoch",
        seconds=120)
    assert rc == 130 and out.count("past the carry budget") == 2, (out, err)   # LSTM and GRU
    record = json.loads((tmp_path / "out" / "grid_log.jsonl").read_text().splitlines()[-1])
    assert sorted(record["killed"]) == sorted(names) and not record["dropped"], record
    for name in names:
        assert run_state(runs / name) == "resumable"
        assert json.loads((runs / name / "grid.json").read_text())["launches"][-1]["outcome"] == "killed"


def test_runs_restored_as_not_started_count_their_files_not_their_weights_against_the_carry(tmp_path):
    """A grid rebuilt from the table has a folder for every run not started (its committed row,
    a few bytes). The carry budget counts those bytes, not each run's estimated weights: the
    2026-11-27 H100 session started nothing, its 27 not-started folders counted as 321 MiB."""
    corpus = toy_file(tmp_path)
    runs = grid_runs([corpus], ("rnn", "lstm", "gru"), (1,), (64,), epochs=2, train_options=TINY)
    one = lab.grid._carry_bytes(tmp_path / "none", runs[0])
    for r in runs:   # what restore_table writes for a row the table has not started
        folder = tmp_path / "g" / "runs" / r.name
        folder.mkdir(parents=True)
        (folder / lab.grid.TABLED).write_text(json.dumps({"index": 0, "row": {"name": r.name, "finished": False}}))
    said = []
    report = tiny_grid(tmp_path / "g", corpus, carry_bytes=1.5 * one, log=said.append)
    assert sorted(report["finished"]) == ["toy-gru1-64", "toy-lstm1-64", "toy-rnn1-64"], (report, said)
    assert said[0] == "grid: start toy-rnn1-64", said


def test_launch_rates_count_each_launchs_steps_also_from_an_older_record(done, tmp_path):
    rates = lab.grid.launch_rates(done["out"]).set_index("run")
    assert sorted(rates.index) == ["toy-gru1-64", "toy-lstm1-64", "toy-rnn1-64"]
    assert (rates.parallel == 2).all() and not rates.mps.any() and rates.device.str.startswith("cpu").all()
    for name, r in rates.iterrows():
        assert r.steps == lab.grid.curve(done["out"] / "runs" / name)[-1]["step"]
        assert r.steps_per_s == round(r.steps / r.wall_s, 2)
    old = tmp_path / "old"                                  # launches recorded before they counted steps
    shutil.copytree(done["out"], old)
    for run in (old / "runs").iterdir():
        info = json.loads((run / "grid.json").read_text())
        for launch in info["launches"]:
            del launch["steps"], launch["steps_per_s"]
        (run / "grid.json").write_text(json.dumps(info))
    again = lab.grid.launch_rates(old).set_index("run")
    assert again.steps.to_dict() == rates.steps.to_dict()  # the same steps, read from train.log
    assert main(["grid", "rates", str(old)]) == 0



def test_launch_rates_credit_each_launch_to_the_runner_that_made_it(done, tmp_path):
    """Two runners side by side on one folder overlap in time: a launch belongs to the one whose
    selection holds its run."""
    side = tmp_path / "side"
    shutil.copytree(done["out"], side)
    log = side / "grid_log.jsonl"
    first = json.loads(log.read_text().splitlines()[0])                # the session that trained them
    other = dict(first, parallel=7, runs=[r for r in first["runs"] if r["name"] == "toy-gru1-64"],
                 start=first["start"])                              # an overlapping runner of its own
    mine = dict(first, runs=[r for r in first["runs"] if r["name"] != "toy-gru1-64"])
    log.write_text(json.dumps(other) + "\n" + json.dumps(mine) + "\n")
    rates = lab.grid.launch_rates(side).set_index("run")
    assert rates.loc["toy-gru1-64", "parallel"] == 7 and rates.loc["toy-lstm1-64", "parallel"] == 2


# -- a grid rebuilt from its committed table (a checkout without runs/) ------------------------

def test_the_committed_table_restores_to_a_grid_that_collects_back_to_the_same_rows(tmp_path):
    """results/table1 is the grid's record in git: rebuilt into a grid folder and collected
    again, every finished model's row, block losses and the sessions come back unchanged."""
    from lab.grid import restore_table
    committed = lab.grid.ROOT / "results" / "table1"
    back = restore_table(tmp_path / "grid", committed)
    table = pd.read_csv(committed / "table1.csv")
    assert back["runs"] == 72 and back["finished"] == int(table.finished.sum()) and back["kept_local"] == []
    assert back["lost"] == {r.name: r.epochs_done for r in table.itertuples()
                            if not r.finished and r.status != "not started"}
    collect(tmp_path / "grid", tmp_path / "results", command="test")
    before = (committed / "table1.csv").read_text().splitlines()
    after = (tmp_path / "results" / "table1.csv").read_text().splitlines()
    assert after[0] == before[0] and len(after) == len(before)
    for old, new, row in zip(before[1:], after[1:], table.itertuples()):
        assert new.split(",")[0] == row.name                    # the committed order
        if row.finished or row.status == "not started":
            assert new == old                                    # the very same line
        else:                                                    # its checkpoints were in the lost folder
            assert ",not started," in new and new.split(",")[8] == "0"
    blocks, blocks_back = (pd.read_csv(d / "table1_blocks.csv", index_col="name") for d in (committed, tmp_path / "results"))
    assert sorted(blocks_back.index) == sorted(table.name[table.finished])
    assert blocks.loc[blocks_back.index].equals(blocks_back)
    prov, prov_back = (json.loads((d / "table1_provenance.json").read_text()) for d in (committed, tmp_path / "results"))
    for key in ("sessions", "adopted", "total_wall_seconds", "elapsed_wall_seconds", "total_device_seconds",
                "mean_gpu_utilisation", "first_start", "last_end", "devices"):
        assert prov_back[key] == prov[key], key
    assert prov_back.get("trained_again", []) == prov.get("trained_again", [])
    again = restore_table(tmp_path / "grid", committed)          # twice: nothing overwritten, no session twice
    assert again["kept_local"] and again["sessions"] == 0 and again["runs"] == 72 - len(again["kept_local"])


def test_a_grid_restored_from_its_table_skips_what_finished_and_retrains_what_was_lost(done, tmp_path):
    from lab.grid import restore_table
    corpus = done["corpus"]
    shutil.copytree(done["out"], tmp_path / "old")
    shutil.rmtree(tmp_path / "old" / "runs" / "toy-gru1-64")
    tiny_grid(tmp_path / "old", corpus, ("gru",), child_seconds=0.01)    # stopped part-way
    old = collect(tmp_path / "old", tmp_path / "results")
    assert list(old.status) == ["finished", "finished", "stopped"]
    back = restore_table(tmp_path / "new", tmp_path / "results")         # the checkpoints are gone
    assert back["finished"] == 2 and list(back["lost"]) == ["toy-gru1-64"]
    assert not list((tmp_path / "new").rglob("*.safetensors"))
    report = tiny_grid(tmp_path / "new", corpus)
    assert sorted(report["skipped_finished"]) == ["toy-lstm1-64", "toy-rnn1-64"]
    assert report["finished"] == ["toy-gru1-64"]                        # trained from its first step
    assert json.loads((tmp_path / "new" / "runs" / "toy-gru1-64" / "grid.json").read_text())["launches"][0]["resumed"] is False
    new = collect(tmp_path / "new", None)
    assert list(new.name) == list(old.name) and list(new.status) == ["finished"] * 3
    written = pd.read_csv(tmp_path / "results" / "table1.csv")             # the record: 6 digits
    assert new.test_loss[:2].tolist() == written.test_loss[:2].tolist()
    # the trip to a GPU session carries the restored records: the device skips them too
    pack(tmp_path / "new", tmp_path / "trip", state_only=True)
    restore(tmp_path / "device", [tmp_path / "trip"])
    device = collect(tmp_path / "device", None)
    pd.testing.assert_frame_equal(device.iloc[:2], new.iloc[:2], check_dtype=False)
    assert list(device.status) == ["finished"] * 3


def test_grid_restore_takes_the_table_first_and_names_what_is_wrong(done, tmp_path, capsys):
    collect(done["out"], tmp_path / "results")
    pack(done["out"], tmp_path / "trip", state_only=True)
    assert main(["grid", "restore", str(tmp_path / "g"), str(tmp_path / "trip"), str(tmp_path / "results")]) == 2
    assert "name the results folders (holding table1.csv) before the archives" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()
    assert main(["grid", "restore", str(tmp_path / "g"), str(tmp_path / "results"), str(tmp_path / "trip")]) == 0
    back = collect(tmp_path / "g", None)     # the archive's records (full precision) over the table's 6 digits
    assert back.test_loss.tolist() == collect(done["out"], None).test_loss.tolist()
    from lab.grid import restore_table
    with pytest.raises(FileNotFoundError, match=r"no .*nowhere/table1.csv: restore_table wants the folder"):
        restore_table(tmp_path / "h", tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "table1.csv").write_text("name,test_loss\nx,1.0\n")
    with pytest.raises(ValueError, match=r"lacks columns \['corpus'"):
        restore_table(tmp_path / "h", tmp_path / "bad")


def test_an_archive_packed_before_the_table_restore_adds_no_session_twice(tmp_path):
    """The table's provenance holds each session without its planned runs; an older archive's
    log holds the same session with them: one record stays (the fuller), in start order."""
    from lab.grid import _merge_log, _sessions
    full = {"command": "grid run a", "start": "2026-01-01T10:00:00+00:00", "wall_s": 5.0, "runs": [{"name": "x"}]}
    later = {"command": "grid run b", "start": "2026-01-02T10:00:00+00:00", "wall_s": 7.0}
    stripped = {k: v for k, v in full.items() if k != "runs"}
    log = tmp_path / "grid_log.jsonl"
    log.write_text(json.dumps(later) + "\n" + json.dumps(stripped) + "\n")     # as restore_table wrote them
    _merge_log(log, [json.dumps(full)])                                       # the archive's copy
    assert _sessions(tmp_path) == [full, later]
    _merge_log(log, [json.dumps(stripped)])                                   # and never the poorer copy again
    assert _sessions(tmp_path)[:2] == [full, later]


def test_adopt_into_a_run_the_table_restored_as_not_started(done, tmp_path):
    from lab.grid import restore_table
    ckpt, csv = outside_run(done, tmp_path)
    table = collect(done["out"], None)
    table.loc[table.name == "toy-lstm1-64", ["finished", "status"]] = [False, "not started"]
    (tmp_path / "results").mkdir()
    table.to_csv(tmp_path / "results" / "table1.csv", index=False)
    assert restore_table(tmp_path / "g", tmp_path / "results")["finished"] == 2
    summary = lab.grid.adopt(tmp_path / "g", "toy-lstm1-64", ckpt, csv, command="test",
                             **toy_selection(done["corpus"]))
    run = tmp_path / "g" / "runs" / "toy-lstm1-64"
    assert run_state(run) == "finished" and not (run / "from_table.json").exists()
    assert collect(tmp_path / "g", None).set_index("name").loc["toy-lstm1-64"].test_loss == summary["test_loss"]


def test_a_run_finished_elsewhere_keeps_its_place_in_the_restored_table(done, tmp_path):
    """A session that trained only the lost run sends it back finished: it replaces the local
    folder whole, and still sits where the table had it (not after every restored run)."""
    from lab.grid import restore_table
    corpus = done["corpus"]
    shutil.copytree(done["out"], tmp_path / "old")
    shutil.rmtree(tmp_path / "old" / "runs" / "toy-lstm1-64")
    tiny_grid(tmp_path / "old", corpus, ("lstm",), child_seconds=0.01)   # stopped part-way, then lost
    assert list(collect(tmp_path / "old", tmp_path / "results").status) == ["finished", "stopped", "finished"]
    restore_table(tmp_path / "here", tmp_path / "results")
    assert tiny_grid(tmp_path / "there", corpus, ("lstm",))["finished"] == ["toy-lstm1-64"]
    pack(tmp_path / "there", tmp_path / "trip")
    restore(tmp_path / "here", [tmp_path / "trip"])
    back = collect(tmp_path / "here", None)
    assert list(back.name) == ["toy-rnn1-64", "toy-lstm1-64", "toy-gru1-64"]
    assert list(back.status) == ["finished"] * 3


def test_a_model_trained_again_after_its_weights_were_lost_replaces_its_table_record(done, tmp_path):
    """A finished model the committed table holds without weights (restored as its row alone),
    trained again in another grid folder and restored: the training replaces the record whole
    (no score of the first training stays to be read as the new one's), keeps its place in the
    table, and the first training's row is listed under trained_again, also after the table
    is restored again, and an archive of the table's record does not overwrite it. Trained again
    to the very same validation loss and best epoch, it is the same training: not listed."""
    from lab.grid import restore_table
    table = collect(done["out"], None)
    first = table.set_index("name").loc["toy-lstm1-64"]
    (tmp_path / "same").mkdir()
    table.to_csv(tmp_path / "same" / "table1.csv", index=False, float_format="%.6g")
    elsewhere = table.name == "toy-lstm1-64"      # as if first trained on another device, its weights since lost
    table.loc[elsewhere, ["test_loss", "val_loss", "device"]] = [first.test_loss + 0.5, first.val_loss + 0.5,
                                                                 "NVIDIA H100 80GB HBM3"]
    (tmp_path / "results").mkdir()
    table.to_csv(tmp_path / "results" / "table1.csv", index=False, float_format="%.6g")
    restore_table(tmp_path / "here", tmp_path / "results")
    assert not list((tmp_path / "here").rglob("*.safetensors"))
    assert tiny_grid(tmp_path / "there", done["corpus"], ("lstm",))["finished"] == ["toy-lstm1-64"]
    pack(tmp_path / "there", tmp_path / "trip")
    assert "toy-lstm1-64" not in restore(tmp_path / "here", [tmp_path / "trip"])["kept_local"]
    run = tmp_path / "here" / "runs" / "toy-lstm1-64"
    assert (run / "best.safetensors").is_file() and not (run / "score.json").exists()   # the table's score is gone
    back = collect(tmp_path / "here", tmp_path / "back")
    assert list(back.name) == list(table.name) and list(back.status) == ["finished"] * 3
    again = back.set_index("name").loc["toy-lstm1-64"]
    assert again.test_loss == pytest.approx(first.test_loss, abs=1e-9) and "H100" not in again.device
    others = back.name != "toy-lstm1-64"
    written = pd.read_csv(tmp_path / "results" / "table1.csv")
    assert back[others].test_loss.tolist() == written[others].test_loss.tolist()   # still the table's records
    listed = json.loads((tmp_path / "back" / "table1_provenance.json").read_text())["trained_again"]
    assert [x["name"] for x in listed] == ["toy-lstm1-64"]
    assert listed[0]["first"]["test_loss"] == pytest.approx(first.test_loss + 0.5, abs=1e-5)
    assert listed[0]["first"]["device"] == "NVIDIA H100 80GB HBM3"
    restore_table(tmp_path / "records", tmp_path / "results")     # an archive of the table's records alone
    pack(tmp_path / "records", tmp_path / "records_trip", state_only=True)
    assert "toy-lstm1-64" in restore(tmp_path / "here", [tmp_path / "records_trip"])["kept_local"]
    assert collect(tmp_path / "here", None).set_index("name").loc["toy-lstm1-64"].test_loss == again.test_loss
    restore_table(tmp_path / "fresh", tmp_path / "back")           # a later checkout keeps the record
    collect(tmp_path / "fresh", tmp_path / "fresh_results")
    assert json.loads((tmp_path / "fresh_results" / "table1_provenance.json").read_text())["trained_again"] == listed
    restore_table(tmp_path / "here2", tmp_path / "same")          # the same loss: the same training, weights back
    restore(tmp_path / "here2", [tmp_path / "trip"])
    collect(tmp_path / "here2", tmp_path / "same_back")
    assert json.loads((tmp_path / "same_back" / "table1_provenance.json").read_text())["trained_again"] == []
