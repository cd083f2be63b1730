"""scripts/mps.sh, which starts CUDA's Multi-Process Service for the grid on a lent GPU, driven
here by a stand-in ``nvidia-cuda-mps-control`` (this machine has no GPU): it is on only when a
client really goes through it, off again on any failure, and its quit cannot hang a session."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CONTROL = """#!/bin/bash
# a stand-in for nvidia-cuda-mps-control: -d starts "the daemon"; commands come on stdin
echo "$@ $(cat 2>/dev/null | head -1)" >> "$MPS_CALLS"
case "$1" in -d) exit 0;; esac
last=$(tail -1 "$MPS_CALLS")
case "$last" in
  *get_server_list*) [ -n "$NO_SERVER" ] || echo 4242;;
  *quit*) [ -z "$HANG" ] || exec sleep 30;;
esac
"""


def mps(tmp_path, *, probe_ok=True, tool=True, **env) -> tuple[str, str]:
    """Source scripts/mps.sh, call mps_on, print the variable it exports, exit (the trap quits)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if tool:
        (bin_dir / "nvidia-cuda-mps-control").write_text(CONTROL)
        (bin_dir / "nvidia-cuda-mps-control").chmod(0o755)
    script = f"""
        LOG={tmp_path}/log.txt; PY={'true' if probe_ok else 'false'}
        say() {{ echo "$*"; }}
        source {ROOT}/scripts/mps.sh
        mps_on; echo "rc=$? pipe=${{CUDA_MPS_PIPE_DIRECTORY:-unset}}"
    """
    calls = tmp_path / "calls.txt"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False,
                         stdin=subprocess.DEVNULL,
                         env={**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "MPS_CALLS": str(calls),
                              "MPS_DIR": str(tmp_path / "mps"), **env})
    return out.stdout, calls.read_text() if calls.exists() else ""


def test_mps_is_on_when_a_client_goes_through_it_and_quits_at_exit(tmp_path):
    out, calls = mps(tmp_path)
    assert "MPS on (server 4242" in out and f"rc=0 pipe={tmp_path}/mps/pipe" in out, out
    assert calls.splitlines()[0].startswith("-d") and calls.splitlines()[-1].strip() == "quit", calls


@pytest.mark.parametrize("failure", ["no server listed", "probe fails"])
def test_mps_is_off_again_when_it_does_not_really_work(tmp_path, failure):
    out, calls = mps(tmp_path, probe_ok=failure != "probe fails",
                     **({"NO_SERVER": "1"} if failure == "no server listed" else {}))
    assert "MPS did not start: the processes time-share the GPU" in out and "rc=1 pipe=unset" in out, out
    assert calls.count("quit") == 1, calls                      # stopped once, not again at exit


def test_no_mps_tool_means_time_sharing(tmp_path):
    out, calls = mps(tmp_path, tool=False)
    assert "no nvidia-cuda-mps-control here" in out and "rc=1 pipe=unset" in out and calls == "", out


def test_a_quit_that_hangs_is_cut_short(tmp_path):
    t = time.time()
    out, _ = mps(tmp_path, HANG="1", MPS_QUIT_S="1")
    assert "MPS on" in out and "MPS: quit did not answer in 1 s" in out and time.time() - t < 20, out
