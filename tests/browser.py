"""A pytest harness for browser tests: JupyterLab on localhost, driven by headless Chromium.

Its fixtures reach every test module through ``pytest_plugins`` in ``tests/conftest.py``;
import the helpers you use::

    from tests.browser import run_notebook

    @pytest.mark.browser
    def test_tour(page):
        run_notebook(page, "00_tour.ipynb")

``jupyter_lab`` (module scope) starts ``python -m jupyterlab`` on 127.0.0.1, on a free
port with a random token, with throw-away config, settings, workspace and runtime
folders and the settings that make the UI deterministic (every cell rendered, no
autosave, no news or update toasts), serving a temporary copy of ``notebooks/``; its
kernels get ``OMP_NUM_THREADS=1`` unless it is set (they share the CPUs with the
browser, and oversubscribed torch threads stall each other); a
test may write its own notebook into ``jupyter_lab.root``. At teardown it deletes every
kernel session through the REST API and stops the server by its pid.

``chromium`` (module scope) is headless Chromium from ``$VURN_CHROMIUM`` (default
``/usr/bin/chromium``), driven by python playwright: never ``playwright install``.
Without that browser (or without playwright) the tests are skipped with the reason,
except when ``$CI`` is set (non-empty): CI must run them, so there they fail.

``page`` is a fresh 1200x860 page for each test. ``run_notebook(page, name)`` opens a
notebook of the served folder, runs all cells, waits until every code cell has run,
fails on the first error (with its traceback), and asserts that no widget failed or
is still "Loading widget". ``run_cell(page, i)`` runs code cell ``i`` of the open
notebook again and returns its text output (to read the Python side after a UI action).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SETTINGS = {  # deterministic UI: every cell rendered, no autosave, no news or update toasts
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
VIEWPORT = {"width": 1200, "height": 860}

# Every code cell's execution count and errors, read from JupyterLab's own model.
CELL_STATE_JS = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.widgets) return null;
  return panel.content.widgets.filter(c => c.model.type === 'code').map((c, i) => ({
    index: i,
    count: c.model.executionCount,
    source: c.model.sharedModel.getSource().slice(0, 80),
    error: c.model.outputs.toJSON().filter(o => o.output_type === 'error')
             .map(o => o.ename + ': ' + o.evalue + '\\n' + (o.traceback || []).join('\\n')
                  .replace(/\\u001b\\[[0-9;]*m/g, '')).join('\\n')}));
}"""

KERNEL_READY_JS = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const ctx = panel && panel.sessionContext;
  const kernel = ctx && ctx.isReady && ctx.session && ctx.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""


def _fail_or_skip(reason: str):
    """Browser tests must run in CI ($CI non-empty); elsewhere a missing browser skips them."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser tests must run)", pytrace=False)
    pytest.skip(reason)


def chromium_executable() -> str:
    """``$VURN_CHROMIUM`` or /usr/bin/chromium; skips (fails under CI) when it is not there."""
    path = os.environ.get("VURN_CHROMIUM") or DEFAULT_CHROMIUM
    found = shutil.which(path)
    if not found:
        _fail_or_skip(f"no Chromium at {path!r}: install Debian's chromium (apt-get install chromium) "
                      "or point VURN_CHROMIUM at one")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab: ``url(path)`` gives an authenticated address on it."""

    base: str
    token: str
    root: Path          # the folder it serves (a copy of notebooks/)
    process: subprocess.Popen
    log: Path
    extra: dict = field(default_factory=dict)

    def url(self, path: str, **query: str) -> str:
        q = "&".join([*(f"{k}={v}" for k, v in query.items()), f"token={self.token}"])
        return f"{self.base}/{path.lstrip('/')}?{q}"

    def api(self, path: str, method: str = "GET", timeout: float = 30):
        req = urllib.request.Request(self.url(f"api/{path}"), method=method)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def start_lab(tmp: Path, notebooks: Path = NOTEBOOKS, timeout: float = 90) -> Lab:
    """Start JupyterLab serving a copy of ``notebooks`` under ``tmp``; returns once it answers."""
    root = tmp / "root"
    shutil.copytree(notebooks, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for plugin, values in SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        path = tmp / "settings" / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
           "MPLBACKEND": "Agg"}
    # Chromium and the server share the CPUs with the kernel: on a 2-core machine two torch
    # threads then stall each other (a 3,000-character trace took 48 s instead of 0.4 s)
    env.setdefault("OMP_NUM_THREADS", "1")
    port, token = free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # Jupyter refuses root without it
    log = tmp / "lab.log"
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, process, log)
    end = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{lab.log_tail()}")
        try:
            lab.api("status", timeout=2)
            return lab
        except OSError:
            if time.monotonic() > end:
                stop_lab(lab)
                raise TimeoutError(f"JupyterLab did not answer in {timeout} s:\n{lab.log_tail()}") from None
            time.sleep(0.3)


def stop_lab(lab: Lab) -> None:
    """Delete every kernel session through the API, then stop the server by its pid."""
    if lab.process.poll() is None:
        try:
            for s in lab.api("sessions", timeout=5) or []:
                lab.api(f"sessions/{s['id']}", method="DELETE", timeout=30)
        except OSError:
            pass
    if lab.process.poll() is None:
        os.kill(lab.process.pid, signal.SIGTERM)
        try:
            lab.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(lab.process.pid, signal.SIGKILL)
            lab.process.wait()


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    """JupyterLab serving a temporary copy of notebooks/ (see the module docstring)."""
    chromium_executable()  # skip (or fail under CI) before starting anything
    lab = start_lab(tmp_path_factory.mktemp("lab"))
    try:
        yield lab
    finally:
        stop_lab(lab)


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium driven by python playwright (the browser on the machine; no download)."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _fail_or_skip("python playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


_LAB_OF_PAGE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@pytest.fixture
def page(chromium, jupyter_lab, request):
    """A fresh page (1200x860, scale 1) that ``run_notebook`` knows to point at ``jupyter_lab``.

    With ``$VURN_SCREENSHOTS`` set, what the page showed at the end of the test (passed
    or failed) is saved there as ``page-<test>.png``, for CI artifacts.
    """
    context = chromium.new_context(viewport=VIEWPORT, device_scale_factor=1)
    p = context.new_page()
    _LAB_OF_PAGE[p] = jupyter_lab
    try:
        yield p
    finally:
        folder = os.environ.get("VURN_SCREENSHOTS")
        if folder:
            try:
                Path(folder).mkdir(parents=True, exist_ok=True)
                p.screenshot(path=str(Path(folder) / f"page-{request.node.name}.png"))
            except Exception as e:  # noqa: BLE001 - a screenshot must not hide the test's own result
                print(f"no end-of-test screenshot: {e}", file=sys.stderr)
        context.close()


def open_notebook(page, name: str, lab: Lab | None = None, timeout_s: float = 120) -> None:
    """Open ``name`` (a path in the served folder) in JupyterLab with a fresh workspace."""
    lab = lab or _LAB_OF_PAGE[page]
    page.goto(lab.url(f"lab/tree/{name}", reset=""))
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout_s * 1000)
    # the indicator can say idle before the kernel is connected, and cells run then are lost
    page.wait_for_function(KERNEL_READY_JS, timeout=timeout_s * 1000)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # more room for the notebook


def wait_for_cells(page, timeout_s: float, name: str = "the notebook") -> list[dict]:
    """Poll JupyterLab's model until every code cell has an execution count; fail on an error."""
    end = time.monotonic() + timeout_s
    while True:
        state = page.evaluate(CELL_STATE_JS)
        errors = [c for c in state or [] if c["error"]]
        if errors:
            c = errors[0]
            pytest.fail(f"{name}: code cell {c['index']} ({c['source']!r}) failed in JupyterLab:\n{c['error']}",
                        pytrace=False)
        if state and all(c["count"] is not None for c in state):
            return state
        if time.monotonic() > end:
            pending = [c["index"] for c in state or [] if c["count"] is None]
            pytest.fail(f"{name}: code cells {pending} still not run after {timeout_s:.0f} s", pytrace=False)
        time.sleep(0.5)


def assert_widgets_rendered(page, timeout_s: float = 60) -> None:
    """No widget failed (``.jupyter-widgets-error-widget``) and none is left at "Loading widget"."""
    try:
        page.wait_for_function(
            "() => !document.querySelector('.jp-Notebook').innerText.includes('Loading widget')",
            timeout=timeout_s * 1000)
    except Exception:  # noqa: BLE001 - reported as a plain assertion below
        pass
    broken = page.locator(".jupyter-widgets-error-widget")
    assert broken.count() == 0, "a widget failed to render: " + broken.first.inner_text()[:500]
    text = page.locator(".jp-Notebook").inner_text()
    assert "Loading widget" not in text, "a widget is still 'Loading widget...'"


def run_notebook(page, name: str, lab: Lab | None = None, timeout_s: float = 600) -> list[dict]:
    """Open ``name``, run all cells, wait until each has run without error, check the widgets.

    Returns each code cell's ``{index, count, source, error}`` as JupyterLab's model holds it.
    """
    open_notebook(page, name, lab)
    page.locator(".jp-Notebook .jp-Cell").first.click()
    # not awaited: the command's promise settles only when every cell has run
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    state = wait_for_cells(page, timeout_s, name)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    assert_widgets_rendered(page)
    return state


def run_cell(page, index: int, timeout_s: float = 120) -> str:
    """Run code cell ``index`` (counting code cells only) of the open notebook again; returns its text output."""
    before = page.evaluate(CELL_STATE_JS)[index]["count"]
    page.evaluate("""(index) => {
      const panel = window.jupyterapp.shell.currentWidget;
      const cells = panel.content.widgets;
      const code = cells.map((c, i) => [c, i]).filter(([c]) => c.model.type === 'code');
      panel.content.activeCellIndex = code[index][1];
      window.jupyterapp.commands.execute('notebook:run-cell');
    }""", index)
    end = time.monotonic() + timeout_s
    while True:
        cell = page.evaluate(CELL_STATE_JS)[index]
        if cell["error"]:
            pytest.fail(f"code cell {index} failed:\n{cell['error']}", pytrace=False)
        if cell["count"] is not None and cell["count"] != before:
            break
        if time.monotonic() > end:
            pytest.fail(f"code cell {index} did not run again in {timeout_s} s", pytrace=False)
        time.sleep(0.2)
    return page.evaluate("""(index) => {
      const cells = window.jupyterapp.shell.currentWidget.content.widgets.filter(c => c.model.type === 'code');
      return cells[index].model.outputs.toJSON().map(o => o.text || (o.data && o.data['text/plain']) || '')
        .map(t => Array.isArray(t) ? t.join('') : t).join('');
    }""", index)


def write_notebook(path: Path, sources: list[str]) -> None:
    """A notebook of code cells ``sources`` at ``path`` (e.g. in ``jupyter_lab.root``), without outputs."""
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None}
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "cells": [{**cell, "id": f"c{i}", "source": s} for i, s in enumerate(sources)]}
    path.write_text(json.dumps(nb), encoding="utf-8")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """The folder for screenshots: ``$VURN_SCREENSHOTS`` if set, else a temporary one."""
    folder = os.environ.get("VURN_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_for_plots(page, names: list[str], timeout_s: float = 60) -> None:
    """Every Bokeh plot named in ``names`` has a view with a laid-out frame (it has been drawn)."""
    page.wait_for_function("""(names) => window.Bokeh && names.every(name =>
        [...Bokeh.index.query(v => v.model.name === name && v.frame != null)]
          .some(v => v.frame.bbox.width > 50 && v.frame.bbox.height > 50))""", arg=names, timeout=timeout_s * 1000)


# Page position of a data point (x may be a categorical factor) in the Bokeh plot named
# ``name``: the plot's frame scales map data to canvas pixels, the canvas gives the offset.
BOKEH_POINT_JS = """([name, x, y]) => {
  const view = window.Bokeh && [...Bokeh.index.query(v => v.model.name === name && v.frame != null)][0];
  if (!view) return null;
  const box = view.canvas_view.el.getBoundingClientRect();
  const sx = typeof x === "string" ? view.model.x_range.synthetic(x) : x;
  return {x: box.left + view.frame.x_scale.compute(sx), y: box.top + view.frame.y_scale.compute(y)};
}"""


def bokeh_point(page, name: str, x, y) -> dict | None:
    """Where data point (x, y) of the Bokeh plot ``name`` is on the page: {"x", "y"}, or None."""
    return page.evaluate(BOKEH_POINT_JS, [name, x, y])


def needs_corpora(*names: str):
    """Mark a module's browser tests: skipped, with how to fix it, unless every named corpus is found."""
    from lab.corpus import find_corpus_file
    missing = [n for n in names if not find_corpus_file(n)]
    return [pytest.mark.browser,
            pytest.mark.skipif(bool(missing), reason=f"the notebooks need the corpora {', '.join(missing)}: "
                                                     "set VURN_DATA to the folder holding them")]
