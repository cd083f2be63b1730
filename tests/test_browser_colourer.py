"""The text colourer in a real JupyterLab, driven by headless Chromium (paper §4.2, Figure 2).

A small notebook (written into the served copy) puts a colourer on 2,000 characters of
War and Peace; the test reads the background colour of every visible character, moves
the unit slider with the keyboard and with the mouse, checks that the colours and the
Python side follow, and hovers a character for its tooltip. A second test runs
notebooks/02_interpretable_cells.ipynb in full and checks that all its colourers paint.

Screenshots go to a temporary folder (``$VURN_SCREENSHOTS`` if set); the one of the quote
cell in notebook 02 becomes docs/colourer.png when that file is missing or
``VURN_UPDATE_DOCS=1``.
"""
from __future__ import annotations

import os
import re
import shutil
import time

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser import ROOT, needs_corpora, run_cell, run_notebook, write_notebook

pytestmark = needs_corpora("war_and_peace", "linux_kernel")

DOCS_PNG = ROOT / "docs" / "colourer.png"
QUOTE_UNIT = (1, 283)  # the shipped War and Peace model's quote cell (notebook 02 finds it)

SMALL_NOTEBOOK = [
    """from lab import Session
from widgets import TextColourer

s = Session.load("war_and_peace_lstm")
start = s.split_text("test", 0, 5000).index("\\n\\n") + 2   # a paragraph with dialogue
tr = s.trace(split="test", start=start, length=2000)
w = TextColourer(tr, layer=%d, unit=%d, height=300)
w""" % QUOTE_UNIT,
    'print(f"python side: layer={w.layer} unit={w.unit}")',
    'print(f"span query: {w.span_query!r}")',
    "if w.span_query is not None:  # once a span is selected (not on the first run)\n    w.stack = [(0, 5), (1, 12)]",
]

# background colour of every character span that is inside the scrolled view
VISIBLE_COLOURS_JS = """(root) => {
  const view = root.querySelector('.vurn-view').getBoundingClientRect();
  const out = [];
  for (const s of root.querySelectorAll('.vurn-line span[data-i]')) {
    const r = s.getBoundingClientRect();
    if (r.bottom > view.top && r.top < view.bottom && r.left < view.right)
      out.push([+s.dataset.i, getComputedStyle(s).backgroundColor]);
  }
  return out;
}"""


def painted(widget) -> int:
    return int(widget.evaluate("el => +(el.dataset.painted || 0)"))


def wait_painted_after(page, widget, before: int, timeout_ms: int = 20_000) -> int:
    widget.evaluate("(el, before) => new Promise((ok, fail) => {"
                    "  const t0 = performance.now();"
                    "  const poll = () => +(el.dataset.painted || 0) > before ? ok() :"
                    f"    performance.now() - t0 > {timeout_ms} ? fail('no recolour') : requestAnimationFrame(poll);"
                    "  poll(); })", before)
    return painted(widget)


def python_unit(page, expected: tuple[int, int], timeout_s: float = 30) -> tuple[int, int]:
    """(layer, unit) as the kernel sees it, read by re-running the notebook's second cell.

    The widget tells Python after it has painted, so a read right after a move may come
    too early: read again until it is ``expected`` or the time is up.
    """
    end = time.monotonic() + timeout_s
    while True:
        out = run_cell(page, 1)
        m = re.search(r"python side: layer=(\d+) unit=(\d+)", out)
        assert m, f"unexpected output: {out!r}"
        got = int(m.group(1)), int(m.group(2))
        if got == expected or time.monotonic() > end:
            return got
        time.sleep(0.5)


def test_colourer_slider_hover_and_python_side(page, jupyter_lab, shots):
    write_notebook(jupyter_lab.root / "colourer_check.ipynb", SMALL_NOTEBOOK)
    run_notebook(page, "colourer_check.ipynb", timeout_s=600)
    widget = page.locator(".vurn-colourer").first
    widget.locator(".vurn-line span[data-i]").first.wait_for(timeout=30_000)
    widget.scroll_into_view_if_needed()
    page.wait_for_function("el => +(el.dataset.painted || 0) >= 1", arg=widget.element_handle())
    assert python_unit(page, QUOTE_UNIT) == QUOTE_UNIT

    colours0 = widget.evaluate(VISIBLE_COLOURS_JS)
    assert len(colours0) > 300, f"only {len(colours0)} characters in view"
    painted_colours = {c for _, c in colours0 if c not in ("rgba(0, 0, 0, 0)", "transparent")}
    assert len(painted_colours) > 10, f"the text is hardly coloured: {sorted(painted_colours)[:5]}"
    unit = widget.locator("input.vurn-unit")
    assert unit.input_value() == str(QUOTE_UNIT[1])
    widget.screenshot(path=str(shots / "colourer_unit283.png"))

    # keyboard: focus the unit slider, one step right
    n0 = painted(widget)
    unit.focus()
    page.keyboard.press("ArrowRight")
    n1 = wait_painted_after(page, widget, n0)
    assert unit.input_value() == str(QUOTE_UNIT[1] + 1)
    assert widget.locator(".vurn-unit-value").inner_text() == str(QUOTE_UNIT[1] + 1)
    colours1 = widget.evaluate(VISIBLE_COLOURS_JS)
    assert [i for i, _ in colours1] == [i for i, _ in colours0], "the view scrolled"
    changed = sum(a != b for (_, a), (_, b) in zip(colours0, colours1))
    assert changed > len(colours0) // 4, f"only {changed} of {len(colours0)} characters changed colour"
    assert python_unit(page, (QUOTE_UNIT[0], QUOTE_UNIT[1] + 1)) == (QUOTE_UNIT[0], QUOTE_UNIT[1] + 1)

    # mouse: drag the slider's thumb from its place to 20% of the track
    box = unit.bounding_box()
    width = int(unit.evaluate("el => +el.max")) + 1
    x0 = box["x"] + box["width"] * (QUOTE_UNIT[1] + 1) / (width - 1)
    y = box["y"] + box["height"] / 2
    page.mouse.move(x0, y)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x0 + (box["x"] + 0.2 * box["width"] - x0) * k / 10, y)
    page.mouse.up()
    n2 = wait_painted_after(page, widget, n1)
    dragged = int(unit.input_value())
    assert dragged < 0.35 * width, f"the drag left the slider at {dragged}"
    colours2 = widget.evaluate(VISIBLE_COLOURS_JS)
    assert sum(a != b for (_, a), (_, b) in zip(colours1, colours2)) > len(colours1) // 4
    assert n2 > n1
    assert python_unit(page, (QUOTE_UNIT[0], dragged)) == (QUOTE_UNIT[0], dragged)
    widget.screenshot(path=str(shots / f"colourer_unit{dragged}.png"))

    # scroll: lines are added and dropped as they enter and leave, in text order, coloured
    view = widget.locator(".vurn-view")
    for top in ("el.scrollHeight", "el.scrollHeight / 2", "el.scrollHeight / 2 - 90", "0"):
        view.evaluate(f"el => {{ el.scrollTop = {top}; }}")
        page.wait_for_timeout(100)  # a few frames: the scroll event rebuilds the lines
        shown = widget.evaluate(VISIBLE_COLOURS_JS)
        indices = [int(x) for x in widget.evaluate(
            "el => [...el.querySelectorAll('.vurn-line span[data-i]')].map(s => s.dataset.i)")]
        assert indices == list(range(indices[0], indices[0] + len(indices))), f"lines out of order at {top}"
        assert len(shown) > 200 and all(c not in ("rgba(0, 0, 0, 0)", "transparent") for _, c in shown), top
    assert [i for i, _ in widget.evaluate(VISIBLE_COLOURS_JS)] == [i for i, _ in colours2]

    # hover: the tooltip names the value and the five most likely next characters
    span = widget.locator(".vurn-line span[data-i]").nth(120)
    span.hover()
    tip = widget.locator(".vurn-tip")
    tip.wait_for(state="visible", timeout=5_000)
    text = tip.inner_text()
    assert re.search(r"value -?\d\.\d{3}", text), text
    assert f"#{span.get_attribute('data-i')}" in text, text
    assert "next:" in text, text
    probs = [float(p) for p in re.findall(r"(\d\.\d\d)", text.split("next:", 1)[1])]
    assert len(probs) == 5 and all(0 <= p <= 1 for p in probs) and sum(probs) <= 1.03, text
    assert probs == sorted(probs, reverse=True), text
    page.screenshot(path=str(shots / "colourer_hover.png"))
    page.mouse.move(0, 0)

    # select a quotation with the mouse: the units on inside it are found, their other
    # spans underlined, and the result is readable from Python
    ends = widget.evaluate("""el => {
      // the view is at the top, so quotes alternate open, close from the first one on
      const box = el.querySelector('.vurn-view').getBoundingClientRect();
      const q = [...el.querySelectorAll('.vurn-line span[data-i]')].filter(s => s.textContent === '"');
      for (let j = 0; j + 1 < q.length; j += 2) {
        const a = q[j].getBoundingClientRect(), b = q[j + 1].getBoundingClientRect();
        if (+q[j].dataset.i >= 200 && a.top >= box.top && b.bottom <= box.bottom)
          return [+q[j].dataset.i, +q[j + 1].dataset.i];
      }
      return null; }""")
    assert ends, "no quotation in view"
    first = widget.locator(f'span[data-i="{ends[0]}"]').bounding_box()
    last = widget.locator(f'span[data-i="{ends[1]}"]').bounding_box()
    page.mouse.move(first["x"] + 1, first["y"] + first["height"] / 2)
    page.mouse.down()
    page.mouse.move(last["x"] + last["width"] / 2, last["y"] + last["height"] / 2, steps=8)
    page.mouse.move(last["x"] + last["width"] - 1, last["y"] + last["height"] / 2)
    page.mouse.up()
    query = widget.locator(".vurn-query")
    query.wait_for(state="visible", timeout=20_000)
    assert f"selection {ends[0]}-{ends[1] + 1}" in query.inner_text(), query.inner_text()
    try:
        page.wait_for_function("el => el.querySelectorAll('.vurn-match').length > 0",
                               arg=widget.element_handle(), timeout=20_000)
    except PlaywrightTimeout:
        pytest.fail(f"no match underlined; the query says: {query.inner_text()}")
    out = run_cell(page, 2)
    assert f"SpanQuery(span ({ends[0]}, {ends[1] + 1})" in out and "matches" in out, out
    widget.screenshot(path=str(shots / "colourer_span_query.png"))

    # stacked units: every character gets one band per unit
    run_cell(page, 3)
    page.wait_for_function("""el => [...el.querySelectorAll('.vurn-line span[data-i]')]
        .every(s => s.style.backgroundImage.startsWith('linear-gradient'))""", arg=widget.element_handle(),
        timeout=20_000)
    widget.screenshot(path=str(shots / "colourer_stacked.png"))
    assert page.locator(".jupyter-widgets-error-widget").count() == 0


def test_interpretable_cells_notebook_paints_every_colourer(page, shots):
    run_notebook(page, "02_interpretable_cells.ipynb", timeout_s=900)
    widgets = page.locator(".vurn-colourer")
    assert widgets.count() == 12
    for k in range(widgets.count()):
        w = widgets.nth(k)
        w.scroll_into_view_if_needed()
        page.wait_for_function("el => +(el.dataset.painted || 0) >= 1", arg=w.element_handle(), timeout=30_000)
        coloured = w.evaluate("""el => [...el.querySelectorAll('.vurn-line span[data-i]')]
            .filter(s => s.style.backgroundColor && s.style.backgroundColor !== 'transparent').length""")
        assert coloured > 20, f"colourer {k} painted {coloured} characters"
    cell = page.locator(".jp-CodeCell").filter(has_text='quote_w = colourer("war_and_peace", "inside_quotes")')
    output = cell.locator(".jp-OutputArea-output").first
    output.scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    page.wait_for_timeout(500)  # let the scroll settle and paint
    shot = shots / "colourer_quote_cell.png"
    output.screenshot(path=str(shot))
    assert 10_000 < shot.stat().st_size < 400_000, f"{shot}: {shot.stat().st_size} bytes"
    if os.environ.get("VURN_UPDATE_DOCS") == "1" or not DOCS_PNG.exists():
        DOCS_PNG.parent.mkdir(exist_ok=True)
        shutil.copy(shot, DOCS_PNG)
    assert page.locator(".jupyter-widgets-error-widget").count() == 0
