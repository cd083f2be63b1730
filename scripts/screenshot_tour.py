"""Run the tour in JupyterLab in headless Chromium and save a screenshot of the quote cell.

    python scripts/screenshot_tour.py            # writes docs/tour.png
    python scripts/screenshot_tour.py --out /tmp/tour.png --chromium /usr/bin/chromium

Uses the browser-test harness (``tests/browser.py``): JupyterLab on 127.0.0.1 with a
random token and throw-away settings, serving a copy of notebooks/; Debian's Chromium
through python playwright (never ``playwright install``). Runs every cell of the tour,
scrolls to the passage coloured by the quote cell and saves a PNG. The server is stopped
by its pid at the end, whatever happened. Needs the corpus (``VURN_DATA``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.browser import CHROMIUM_FLAGS, VIEWPORT, run_notebook, start_lab, stop_lab  # noqa: E402

TOUR = "00_tour.ipynb"


def screenshot(lab, out: Path, chromium: str, timeout_s: float) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = None
        try:
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            run_notebook(page, TOUR, lab, timeout_s)
            output = page.locator(".jp-OutputArea-output", has=page.locator(".vurn-caption", has_text="quotes"))
            output.wait_for(timeout=30_000)
            page.locator(".jp-CodeCell", has=output).evaluate("el => el.scrollIntoView({block: 'start'})")
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
    with tempfile.TemporaryDirectory(prefix="vurn-shot-") as tmp:
        t0 = time.monotonic()
        lab = start_lab(Path(tmp))
        try:
            screenshot(lab, args.out, args.chromium, args.timeout)
        finally:
            stop_lab(lab)
    print(f"saved {args.out} ({args.out.stat().st_size // 1024} KB) in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
