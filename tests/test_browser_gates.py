"""Gate saturation (paper §4.2, Figure 3) in a real JupyterLab, driven by headless Chromium.

A small notebook (written into the served copy) draws the figure for the shipped War and
Peace LSTM and links a text colourer to it. The test checks that the Bokeh panels render,
taps the most isolated point of the forget panel (its pixel position comes from the
plot's own scales in BokehJS), and checks that the colourer's layer and unit follow, in
the page and on the Python side. A second test runs notebooks/03_gates.ipynb in full and
checks that its figures render. Screenshots go to a temporary folder (``$VURN_SCREENSHOTS``
if set).
"""
from __future__ import annotations

import re
import time

from tests.browser import bokeh_point, needs_corpora, run_cell, run_notebook, wait_for_plots, write_notebook

pytestmark = needs_corpora("war_and_peace")

SMALL_NOTEBOOK = [
    """import numpy as np
from bokeh.io import output_notebook
from bokeh.resources import INLINE

from lab import Session
from widgets import TextColourer
from widgets.gates import GateSaturation

output_notebook(resources=INLINE, hide_banner=True)
s = Session.load("war_and_peace_lstm")
fig = GateSaturation(s.trace(split="test", length=5000))
fig""",
    """colourer = TextColourer(s.trace(split="test", length=1500), layer=0, unit=0, height=160)
fig.link(colourer)
colourer""",
    # the forget-panel point farthest from every other one (a tap there hits it alone)
    """x, y = np.array(fig.source.data["forget_right"]), np.array(fig.source.data["forget_left"])
gap = np.hypot(x[:, None] - x, y[:, None] - y) + 9 * np.eye(len(x))
far = next(int(i) for i in np.argsort(-gap.min(1)) if fig.source.data["unit"][i] != 0)
print(f"target: layer={fig.source.data['layer'][far]} unit={fig.source.data['unit'][far]} "
      f"x={float(x[far])!r} y={float(y[far])!r} gap={gap[far].min():.4f}")""",
    'print(f"python side: layer={colourer.layer} unit={colourer.unit} selected={fig.selected}")',
]

def python_side(page, cell: int, expected: tuple[int, int], timeout_s: float = 30) -> tuple[int, int, str]:
    """(layer, unit, selected) as the kernel sees them; read again until ``expected`` or time is up."""
    end = time.monotonic() + timeout_s
    while True:
        out = run_cell(page, cell)
        m = re.search(r"python side: layer=(\d+) unit=(\d+) selected=(.*)", out)
        assert m, f"unexpected output: {out!r}"
        got = int(m.group(1)), int(m.group(2)), m.group(3)
        if got[:2] == expected or time.monotonic() > end:
            return got
        time.sleep(0.5)


def test_a_tap_on_a_point_sends_its_unit_to_the_colourer(page, jupyter_lab, shots):
    write_notebook(jupyter_lab.root / "gates_check.ipynb", SMALL_NOTEBOOK)
    run_notebook(page, "gates_check.ipynb", timeout_s=600)
    wait_for_plots(page, ["gate-forget", "gate-input", "gate-output", "fractions", "activations"])
    outputs = page.locator(".jp-OutputArea-output")
    assert outputs.filter(has_text="Traceback").count() == 0
    assert page.locator(".bk-notebook-logo").count() == 0          # hide_banner held
    first = page.locator(".jp-CodeCell").first
    assert first.locator("canvas").count() >= 3, "no Bokeh canvases in the figure's output"

    m = re.search(r"target: layer=(\d+) unit=(\d+) x=([\d.e-]+) y=([\d.e-]+) gap=([\d.]+)", run_cell(page, 2))
    assert m, "the target cell printed nothing"
    layer, unit, x, y = int(m.group(1)), int(m.group(2)), float(m.group(3)), float(m.group(4))
    assert float(m.group(5)) > 0.03, "no isolated point to tap"
    colourer = page.locator(".vurn-colourer").first
    assert colourer.locator(".vurn-unit-value").inner_text() == "0"
    assert python_side(page, 3, (0, 0))[:2] == (0, 0)

    first.locator(".jp-OutputArea-output").first.scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    point = bokeh_point(page, "gate-forget", x, y)
    assert point, "BokehJS has no view of the forget panel"
    page.screenshot(path=str(shots / "gates_before_tap.png"))
    page.mouse.click(point["x"], point["y"])

    page.wait_for_function("([el, u]) => el.querySelector('.vurn-unit-value').innerText === String(u)",
                           arg=[colourer.element_handle(), unit], timeout=30_000)
    assert colourer.locator(".vurn-layer-value").inner_text() == str(layer)
    got = python_side(page, 3, (layer, unit))
    assert got[:2] == (layer, unit) and got[2] == f"[({layer}, {unit})]", got
    page.wait_for_function("""(unit) => [...Bokeh.index.query(v => v.model.name === 'activations' && v.frame != null)]
        .some(v => v.model.title.text.endsWith('unit ' + unit))""", arg=unit, timeout=30_000)
    page.screenshot(path=str(shots / "gates_after_tap.png"))
    assert page.locator(".jupyter-widgets-error-widget").count() == 0


def test_the_gates_notebook_draws_both_figures(page, shots):
    run_notebook(page, "03_gates.ipynb", timeout_s=900)
    wait_for_plots(page, ["gate-forget", "gate-input", "gate-output", "gate-update", "gate-reset"])
    assert page.locator(".jp-CodeCell canvas").count() >= 2 * 4    # each figure: panels and histograms
    figure = page.locator(".jp-CodeCell").filter(has_text="lstm_fig = GateSaturation(lstm_tr)")
    output = figure.locator(".jp-OutputArea-output").first
    output.scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    page.wait_for_timeout(500)
    shot = shots / "gates_notebook_lstm.png"
    output.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000, f"{shot}: {shot.stat().st_size} bytes"
    assert page.locator(".jupyter-widgets-error-widget").count() == 0
