"""Shared pytest fixtures."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` without an installed vurn still imports lab
    sys.path.insert(0, str(ROOT))

# The browser tests' fixtures (jupyter_lab, chromium, page, shots), shared by every
# tests/test_browser_*.py; module-scoped ones still start once per test module.
pytest_plugins = ["tests.browser"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    """An empty user cache under tmp_path (XDG_CACHE_HOME), and download URLs that go nowhere.

    Nothing in ~/.cache is touched, and a corpus that is not found locally fails
    fast on a closed local port instead of reaching the internet. VURN_DATA is
    left as it is. Returns the cache folder (``<tmp>/xdg-cache/vurn``).
    """
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    nowhere = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("VURN_WAR_AND_PEACE_URL", f"{nowhere}/pg2600.txt")
    monkeypatch.setenv("VURN_LINUX_URL", f"{nowhere}/linux-6.1.tar.xz")
    return tmp_path / "xdg-cache" / "vurn"


@pytest.fixture(autouse=True)
def one_thread():
    """Small CPU models run many times faster on one torch thread when the machine is busy
    (two threads on two shared cores spin-wait on each other)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
