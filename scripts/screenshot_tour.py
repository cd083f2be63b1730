"""Run the tour in JupyterLab in headless Chromium and save a screenshot of the quote cell.

    python scripts/screenshot_tour.py            # writes docs/tour.png
    python scripts/screenshot_tour.py --out /tmp/tour.png --chromium /usr/bin/chromium

Starts JupyterLab on 127.0.0.1 (a free port, a random token, throw-away config,
settings and workspace folders, a copy of notebooks/00_tour.ipynb), opens the copy in
Chromium through python playwright (never ``playwright install``: it drives the
Chromium already on the machine), runs all cells, waits until every cell has run,
scrolls to the passage coloured by the quote cell and saves a PNG. The server is
stopped by its pid at the end, whatever happened. Needs the corpus (``VURN_DATA``).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_tour.ipynb"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SETTINGS = {  # deterministic UI: every cell rendered, no autosave, no news or update toasts
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
# True once the notebook's kernel is connected and idle (the toolbar's indicator says idle earlier).
KERNEL_READY_JS = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session
                 && panel.sessionContext.session.kernel;
  return !!(kernel && panel.sessionContext.isReady && kernel.status === 'idle'
            && kernel.connectionStatus === 'connected');
}"""
# Every code cell's execution count and whether it holds an error, read from JupyterLab's model.
CELL_STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.widgets) return null;
  return panel.content.widgets.filter(c => c.model.type === 'code').map(c => ({
    count: c.model.executionCount,
    error: c.model.outputs.toJSON().filter(o => o.output_type === 'error')
                                  .map(o => o.ename + ': ' + o.evalue).join('\\n')}));
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(tmp: Path, port: int, token: str) -> subprocess.Popen:
    root = tmp / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    for plugin, values in SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        path = tmp / "settings" / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # Jupyter refuses root without it
    log = open(tmp / "lab.log", "w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)


def wait_up(base: str, token: str, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


def stop_lab(base: str, token: str, server: subprocess.Popen) -> None:
    """Shut the kernels down through the API, then stop the server by its pid."""
    try:
        sessions = json.load(urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5))
        for s in sessions:
            req = urllib.request.Request(f"{base}/api/sessions/{s['id']}?token={token}", method="DELETE")
            urllib.request.urlopen(req, timeout=30).read()
    except OSError:
        pass
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def screenshot(base: str, token: str, out: Path, chromium: str, timeout_s: float) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = None
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 860}, device_scale_factor=1)
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?reset&token={token}")
            page.wait_for_function(KERNEL_READY_JS, timeout=120_000)  # run-all before that runs nothing
            # not awaited: the command's promise settles only when every cell has run
            page.evaluate("() => { window.jupyterapp.commands.execute('application:toggle-left-area'); }")
            page.locator(".jp-Notebook .jp-Cell").first.click()
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            end = time.monotonic() + timeout_s
            while True:  # until every code cell has run (or one failed: run-all stops there)
                state = page.evaluate(CELL_STATE_JS)
                errors = [c["error"] for c in state or [] if c["error"]]
                if errors:
                    raise RuntimeError("the tour failed in JupyterLab:\n" + "\n".join(errors))
                if state and all(c["count"] is not None for c in state):
                    break
                if time.monotonic() > end:
                    raise TimeoutError(f"cells still running after {timeout_s} s: {state}")
                time.sleep(1)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            if page.locator(".jupyter-widgets-error-widget").count():
                raise RuntimeError("a widget failed to render")
            output = page.locator(".jp-OutputArea-output", has=page.locator(".vurn-caption", has_text="quotes"))
            output.wait_for(timeout=30_000)
            cell = page.locator(".jp-CodeCell", has=output)
            cell.evaluate("el => el.scrollIntoView({block: 'start'})")
            page.mouse.move(0, 0)  # no hover highlight
            time.sleep(1)          # let the scroll settle and paint
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
        except BaseException:
            if page is not None:
                failed = out.with_name(out.stem + "-failed.png")
                page.screenshot(path=str(failed))
                print(f"saved what the browser showed to {failed}", file=sys.stderr)
            raise
        finally:
            browser.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "tour.png", help="where to save the PNG")
    p.add_argument("--chromium", default=os.environ.get("VURN_CHROMIUM", "/usr/bin/chromium"),
                   help="the Chromium to drive (default: $VURN_CHROMIUM, else /usr/bin/chromium)")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed for running all cells")
    args = p.parse_args(argv)
    port, token = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="vurn-shot-") as tmp:
        tmp = Path(tmp)
        t0 = time.monotonic()
        server = start_lab(tmp, port, token)
        try:
            wait_up(base, token, server, tmp / "lab.log")
            screenshot(base, token, args.out, args.chromium, args.timeout)
        finally:
            stop_lab(base, token, server)
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KB) in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
