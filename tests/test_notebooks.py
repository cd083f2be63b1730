"""Every notebook runs top to bottom under nbval, and is committed without outputs.

Each notebook runs in its own ``python -m pytest --nbval-lax --nbval-current-env``
subprocess, so the main test run stays plain pytest (``./dev.sh test``, ``.ci/run``)
and a notebook that raises, or whose last cell of ``assert``s fails, fails this
test with nbval's report. The environment (``VURN_DATA`` included) is passed through.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 900  # a notebook should take a minute or two on a CPU; busy machines are slower


def _ids(paths):
    return [p.name for p in paths]


def test_there_is_a_tour():
    assert (ROOT / "notebooks" / "00_tour.ipynb") in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: code cells {dirty} hold outputs; clear them before committing"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name}: stored widget state; clear it"


def _nbval(path: Path, cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
           "-q", "--rootdir", str(cwd), str(path.relative_to(cwd))]
    # one torch thread: on two shared cores, two threads spin-wait on each other (10x slower)
    env = {"OMP_NUM_THREADS": "1", **os.environ, "MPLBACKEND": "Agg", "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{path.name} did not finish in {TIMEOUT_S} s under nbval:\n{e.stdout or ''}")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_under_nbval(path, tmp_path):
    run = _nbval(path, ROOT, tmp_path)
    report = (run.stdout + run.stderr)[-8000:]
    assert run.returncode == 0, f"{path.name} failed under nbval (exit {run.returncode}):\n{report}"
    assert " passed" in run.stdout, f"nbval ran no cells of {path.name}:\n{report}"


@pytest.mark.slow
def test_a_failing_assert_fails_the_run(tmp_path):
    """The harness itself: a notebook whose check fails must fail (nbval-lax ignores outputs, not errors)."""
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None}
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3",
          "display_name": "Python 3", "language": "python"}},
          "cells": [{**cell, "id": "ok", "source": "x = 1"}, {**cell, "id": "bad", "source": "assert x == 2"}]}
    path = tmp_path / "broken.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    run = _nbval(path, tmp_path, tmp_path)
    assert run.returncode == 1 and "1 failed, 1 passed" in run.stdout, run.stdout[-3000:]
