"""The map of the models (paper §4.1, Table 1's t-SNE) in a real JupyterLab, driven by headless Chromium.

A small notebook (written into the served copy) draws ``widgets.models.ModelMap`` for
``results/table1/map.csv``. The test checks that the Bokeh scatter renders, hovers the
point of the 64-cell, 1-layer LSTM (its pixel position comes from the plot's own scales
in BokehJS) and reads its name in the tooltip, then taps it and checks that the Python
side selected it and opened it in a Session (its checkpoint ships in
``results/checkpoints``, so it opens on any machine with the corpus), and that the status
line under the map says so. A second test runs notebooks/01_models.ipynb in full and
checks that its map renders.

Screenshots go to a temporary folder (``$VURN_SCREENSHOTS`` if set); the one of the map
with the tapped point and its tooltip becomes docs/models_map.png when that file is
missing or ``VURN_UPDATE_DOCS=1``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time

from tests.browser import ROOT, bokeh_point, needs_corpora, run_cell, run_notebook, wait_for_plots, write_notebook
from widgets.models import PLOT_NAME

pytestmark = needs_corpora("war_and_peace")

DOCS_PNG = ROOT / "docs" / "models_map.png"
MODEL = "war_and_peace-lstm1-64"  # ships in results/checkpoints

SMALL_NOTEBOOK = [
    """import pandas as pd
from bokeh.io import output_notebook
from bokeh.resources import INLINE

from lab.results import results_dir
from widgets.models import ModelMap

output_notebook(resources=INLINE, hide_banner=True)
points = pd.read_csv(results_dir() / "table1" / "map.csv")
m = ModelMap(points)
m""",
    # the target's data position, and how far (in data units) its nearest neighbour is
    f"""import numpy as np
i = int(points.index[points.name == {MODEL!r}][0])
x, y = points.x.to_numpy(), points.y.to_numpy()
gap = np.delete(np.hypot(x - x[i], y - y[i]), i).min()
print(f"target: x={{float(x[i])!r}} y={{float(y[i])!r}} gap={{gap:.4f}}")""",
    'print(f"python side: selected={m.selected} session={None if m.session is None else m.session.name}")',
]

# The names of the selected points, for each scatter of the map (BokehJS's side of the selection).
SELECTED_JS = f"""() => [...Bokeh.index.query(v => v.model.name === {PLOT_NAME!r} && v.frame != null)]
  .flatMap(v => v.model.renderers).filter(r => r.data_source && r.data_source.data.name)
  .map(r => r.data_source.selected.indices.map(i => r.data_source.data.name[i]))"""

# Every visible Bokeh tooltip's text (tooltips live in the plot's shadow DOM).
TOOLTIPS_JS = """() => {
  const out = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.classList && el.classList.contains('bk-tooltip-content') && el.getClientRects().length)
        out.push(el.innerText || el.textContent);
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  return out;
}"""


def map_name(page, timeout_s: float = 60) -> str:
    """The map plot's name, once BokehJS has drawn it; there is exactly one map on the page."""
    wait_for_plots(page, [PLOT_NAME], timeout_s)
    count = page.evaluate("(name) => [...Bokeh.index.query(v => v.model.name === name && v.frame != null)].length",
                          PLOT_NAME)
    assert count == 1, f"{count} maps on the page"
    return PLOT_NAME


def map_output(page, cell):
    """The output of ``cell`` that holds the map (the widget: plot and status line)."""
    output = cell.locator(".jp-OutputArea-output").filter(has=page.locator(".widget-html"))
    assert output.count() == 1, f"{output.count()} outputs with a status line"
    return output


def content_box(output) -> dict:
    """``output``'s box, cut on the right where its content (plot, tooltip, status text) ends."""
    box = output.bounding_box()
    right = output.evaluate("""el => {
      const rights = [];
      const walk = (root) => {
        for (const e of root.querySelectorAll('canvas, .bk-tooltip-content, .widget-html-content')) {
          const range = document.createRange();   // a block's text, not the block's full width
          range.selectNodeContents(e);
          const r = e.tagName === 'CANVAS' ? e.getBoundingClientRect() : range.getBoundingClientRect();
          if (r.width > 0) rights.push(r.right);
        }
        for (const e of root.querySelectorAll('*')) if (e.shadowRoot) walk(e.shadowRoot);
      };
      walk(el);
      return Math.max(...rights);
    }""")
    return {**box, "width": min(box["width"], right - box["x"] + 12)}


def python_side(page, cell: int, expected: str, timeout_s: float = 60) -> tuple[str, str]:
    """(selected, session name) as the kernel sees them; read again until both are ``expected`` or time is up."""
    end = time.monotonic() + timeout_s
    while True:
        out = run_cell(page, cell)
        m = re.search(r"python side: selected=(\S+) session=(\S+)", out)
        assert m, f"unexpected output: {out!r}"
        got = m.group(1), m.group(2)
        if got == (expected, expected) or time.monotonic() > end:
            return got
        time.sleep(0.5)


def test_hover_names_a_model_and_a_tap_opens_it(page, jupyter_lab, shots):
    write_notebook(jupyter_lab.root / "models_check.ipynb", SMALL_NOTEBOOK)
    run_notebook(page, "models_check.ipynb", timeout_s=300)
    name = map_name(page)
    assert page.locator(".jp-OutputArea-output").filter(has_text="Traceback").count() == 0
    assert page.locator(".bk-notebook-logo").count() == 0          # hide_banner held
    first = page.locator(".jp-CodeCell").first
    assert first.locator("canvas").count() >= 1, "no Bokeh canvas in the map's output"
    status = first.locator(".widget-html").filter(has_text="tap a point")
    assert status.count() == 1, "no status line under the map"
    assert python_side(page, 2, "None", timeout_s=0) == ("None", "None")

    m = re.search(r"target: x=([\d.e-]+) y=([\d.e-]+) gap=([\d.]+)", run_cell(page, 1))
    assert m, "the target cell printed nothing"
    x, y = float(m.group(1)), float(m.group(2))
    output = map_output(page, first)
    output.scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    point = bokeh_point(page, name, x, y)
    assert point, "BokehJS has no view of the map"
    # the nearest other point is well clear of the target's marker (9 px across for row 64): its
    # distance, laid along the x axis, is more than 15 px on the page
    far = bokeh_point(page, name, x + float(m.group(3)), y)
    assert abs(far["x"] - point["x"]) > 15, (point, far)
    box = output.bounding_box()
    assert box["x"] < point["x"] < box["x"] + box["width"] and box["y"] < point["y"] < box["y"] + box["height"]

    # hover: the tooltip names the model under the mouse (and no other)
    assert not [t for t in page.evaluate(TOOLTIPS_JS) if t.strip()]
    page.mouse.move(point["x"] - 3, point["y"] - 3)
    page.mouse.move(point["x"], point["y"], steps=3)
    page.wait_for_function(f"() => ({TOOLTIPS_JS})().some(t => t.includes({MODEL!r}))", timeout=20_000)
    tips = [t for t in page.evaluate(TOOLTIPS_JS) if t.strip()]
    assert len(tips) == 1 and MODEL in tips[0], tips
    assert "LSTM 1-layer, row 64" in tips[0] and "nats/char" in tips[0], tips[0]

    # tap: the Python side selects the model and opens its checkpoint in a Session
    page.mouse.click(point["x"], point["y"])
    opened = first.locator(".widget-html").filter(has_text="opened")
    opened.wait_for(state="visible", timeout=60_000)
    assert MODEL in opened.inner_text(), opened.inner_text()
    assert python_side(page, 2, MODEL) == (MODEL, MODEL)
    assert page.evaluate(SELECTED_JS) == [[MODEL]]

    # the map with the tapped point highlighted and its tooltip
    page.mouse.move(point["x"], point["y"] - 1)
    page.mouse.move(point["x"], point["y"], steps=2)
    page.wait_for_function(f"() => ({TOOLTIPS_JS})().some(t => t.includes({MODEL!r}))", timeout=20_000)
    page.wait_for_timeout(300)
    shot = shots / "models_map.png"
    page.screenshot(path=str(shot), clip=content_box(output))
    assert 20_000 < shot.stat().st_size < 300_000, f"{shot}: {shot.stat().st_size} bytes"
    if os.environ.get("VURN_UPDATE_DOCS") == "1" or not DOCS_PNG.exists():
        DOCS_PNG.parent.mkdir(exist_ok=True)
        shutil.copy(shot, DOCS_PNG)
    assert page.locator(".jupyter-widgets-error-widget").count() == 0


def test_the_models_notebook_draws_the_map(page, shots):
    cells = run_notebook(page, "01_models.ipynb", timeout_s=900)
    assert all(c["count"] is not None and not c["error"] for c in cells)
    map_name(page)                                               # drawn, and only one
    cell = page.locator(".jp-CodeCell").filter(has_text="model_map = ModelMap(points)")
    assert cell.count() == 1
    output = map_output(page, cell)
    assert output.locator("canvas").count() >= 1, "no Bokeh canvas in the map's output"
    # the notebook's choose() reached the status line under the map, and the plot shows the selection
    output.locator(".widget-html").filter(has_text="opened").wait_for(state="visible", timeout=30_000)
    page.wait_for_function(f"() => JSON.stringify(({SELECTED_JS})()) === {json.dumps(json.dumps([[MODEL]]))}",
                           timeout=30_000)
    output.scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    page.wait_for_timeout(500)
    shot = shots / "models_notebook_map.png"
    page.screenshot(path=str(shot), clip=content_box(output))
    assert shot.stat().st_size > 20_000, f"{shot}: {shot.stat().st_size} bytes"
    assert page.locator(".jupyter-widgets-error-widget").count() == 0
