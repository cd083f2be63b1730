"""Notebook 04 (paper §4.3) in a real JupyterLab: a click on a bar shows its characters in the text.

The notebook runs in full; the test clicks the '=' bar of the per-character chart (its
position comes from BokehJS's own scales), and waits until the colourer below underlines
exactly the '=' characters: the tap went to Python (``CompareBars.selected``), which sent
their positions back to the colourer. Then the same for a distance bin of the closing-brace
chart. Screenshots go to a temporary folder (``$VURN_SCREENSHOTS`` if set).
"""
from __future__ import annotations

from tests.browser import bokeh_point, needs_corpora, run_notebook, wait_for_plots

pytestmark = needs_corpora("linux_kernel")

UNDERLINED_JS = """el => [...el.querySelectorAll('.vurn-match')].map(s => s.textContent)"""


def click_bar(page, plot: str, label: str) -> None:
    point = bokeh_point(page, plot, label, 0.0)          # the bar's foot: inside it whatever its height
    assert point, f"BokehJS has no view of {plot}"
    page.mouse.click(point["x"], point["y"] - 2)


def test_a_click_on_a_bar_underlines_its_characters(page, shots):
    run_notebook(page, "04_long_range.ipynb", timeout_s=900)
    wait_for_plots(page, ["bars-characters", "bars-braces"])
    assert page.locator(".bk-notebook-logo").count() == 0
    cell = page.locator(".jp-CodeCell").filter(has_text="chars = character_bars(")
    cell.scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    colourer = cell.locator(".vurn-colourer")
    click_bar(page, "bars-characters", "=")
    page.wait_for_function(f"el => ({UNDERLINED_JS})(el).length > 0 && ({UNDERLINED_JS})(el).every(c => c === '=')",
                           arg=colourer.element_handle(), timeout=30_000)
    cell.screenshot(path=str(shots / "long_range_characters.png"))

    cell = page.locator(".jp-CodeCell").filter(has_text="braces = brace_bars(")
    cell.scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    colourer = cell.locator(".vurn-colourer")
    before = colourer.evaluate(UNDERLINED_JS)
    click_bar(page, "bars-braces", "[20, 40)")
    page.wait_for_function(f"([el, n]) => ({UNDERLINED_JS})(el).length > 0 && ({UNDERLINED_JS})(el).every(c => c === '}}')",
                           arg=[colourer.element_handle(), len(before)], timeout=30_000)
    cell.screenshot(path=str(shots / "long_range_braces.png"))
    assert page.locator(".jupyter-widgets-error-widget").count() == 0
