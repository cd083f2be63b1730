"""The text colourer, the neuron page and the static exports, on the Python side.

The browser side (painting, sliders, hover, selection) is tested in
tests/test_browser_colourer.py.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import traitlets

from lab import cells
from tests.toy import toy_trace
from widgets import NeuronPage, TextColourer, side_by_side
from widgets.export import save_coloured_text

TEXT = 'She said "come" and he said "no".\n' * 20


@pytest.fixture(scope="module")
def trace():
    return toy_trace(TEXT, width=10)


def test_values_go_once_as_float16_for_the_whole_layer(trace):
    w = TextColourer(trace, layer=0, unit=3)
    sent = np.frombuffer(w.values, dtype=np.float16).reshape(10, len(TEXT))
    assert np.allclose(sent[3], np.tanh(trace["layers.0.cell"][:, 3].astype(np.float32)), atol=1e-3)
    w.what = "forget"
    sent = np.frombuffer(w.values, dtype=np.float16).reshape(10, len(TEXT))
    assert np.allclose(sent, trace["layers.0.gates.forget"].T, atol=1e-3)


def test_a_trace_saved_and_loaded_colours_as_the_one_traced(trace, tmp_path):
    """Trace on one machine, study on another: the loaded trace drives the same colourer."""
    from lab.trace import Trace
    again = Trace.load(trace.save(tmp_path / "toy.trace.safetensors"))
    a, b = TextColourer(trace, layer=0, unit=3), TextColourer(again, layer=0, unit=3)
    assert a.values == b.values and a.text == b.text and (a.topk_ids, a.topk_probs) == (b.topk_ids, b.topk_probs)


def test_bad_layers_units_and_stacks_are_refused_and_nothing_changes(trace):
    w = TextColourer(trace, layer=1, unit=2)
    for trait, value, message in [("unit", 10, "unit 10 does not exist"), ("layer", 2, "layer 2 does not exist"),
                                  ("what", "reset", "what='reset' is not in this LSTM trace: choose one of cell"),
                                  ("stack", [(0, 11)], "unit 11 does not exist")]:
        with pytest.raises(traitlets.TraitError, match=message):
            setattr(w, trait, value)
    assert (w.layer, w.unit, w.what, w.stack) == (1, 2, "cell", [])


def test_stack_sends_one_band_per_extra_unit(trace):
    w = TextColourer(trace, layer=1, unit=2)
    w.stack = [(0, 1), (1, 7)]
    bands = np.frombuffer(w.stack_values, dtype=np.float16).reshape(2, len(TEXT))
    assert np.allclose(bands[1], trace.unit(1, 7), atol=1e-3) and np.allclose(bands[0], trace.unit(0, 1), atol=1e-3)
    w.stack = []
    assert w.stack_values == b""


def planted_quote_cell(trace):
    """The toy trace with layer 1's cell 0 set to 3 inside quotes and -3 outside them, so that
    tanh(c) is +-0.995 there and a selection of one quote has one unit to find."""
    import torch

    from lab.trace import Trace
    arrays = {k: torch.from_numpy(np.array(trace[k])) for k in trace}
    arrays["layers.1.cell"][:, 0] = torch.as_tensor(np.where(cells.inside_quotes(trace.text), 3.0, -3.0))
    return Trace(arrays, text=trace.text, ids=trace.ids, vocab=trace.vocab, kind=trace.kind,
                 layers=trace.n_layers, width=trace.width, info=trace.info)


def test_a_selection_runs_the_span_query_and_sends_its_matches(trace):
    planted = planted_quote_cell(trace)
    w = TextColourer(planted, layer=1, unit=0)
    a = TEXT.index('"')
    b = TEXT.index('"', a + 1) + 1
    w.selection = [a, b]
    q = w.span_query
    assert list(zip(q.units.layer, q.units.unit, q.units.sign)) == [(1, 0, 1)]   # the planted cell alone
    # every quote of the 20 lines, found from one of them (the planted cell is on in all)
    quotes = [(m.start(), m.end()) for m in re.finditer(r'"[^"]*"', TEXT)]
    assert len(quotes) == 40 and q.hypothesis == "inside_quotes" and (q.precision, q.recall) == (1.0, 1.0)
    pairs = np.frombuffer(w.matches, dtype=np.int32).reshape(-1, 2)
    assert pairs.tolist() == q.matches[["start", "end"]].values.tolist()
    assert [tuple(p) for p in pairs.tolist()] == quotes
    assert f"selection {a}-{b}" in w.query_text and "vs inside_quotes" in w.query_text
    w.find_units = False
    w.selection = [0, 3]
    assert w.span_query is q                                   # switched off: nothing recomputed


def test_save_html_png_svg(trace, tmp_path):
    w = TextColourer(trace, layer=1, unit=4)
    w.stack = [(0, 0)]
    assert Path(w.save(tmp_path / "a.png", 0, 200)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = Path(w.save(tmp_path / "a.svg", 0, 200)).read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    page = Path(w.save(tmp_path / "a.html", 0, 50)).read_text(encoding="utf-8")
    assert page.count("<span") == 100 and "<script" not in page       # the unit, then the stacked one
    main, stacked = page.split("stacked: 0:0")
    titles = [float(t) for t in re.findall(r'title="([-0-9.]+)"', stacked)]
    assert np.allclose(titles, trace.unit(0, 0)[:50], atol=5e-4)
    assert np.allclose([float(t) for t in re.findall(r'title="([-0-9.]+)"', main)], trace.unit(1, 4)[:50], atol=5e-4)
    with pytest.raises(ValueError, match="suffix must be one of"):
        w.save(tmp_path / "a.jpg")


def test_export_stacks_bands_and_refuses_bad_input(tmp_path):
    from PIL import Image
    path = save_coloured_text(tmp_path / "s.png", "ab", [[-1, 1], [1, -1]], dpi=100, wrap=None)
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    reds = ((img[..., 0] > 200) & (img[..., 2] < 120)).sum()
    blues = ((img[..., 2] > 200) & (img[..., 0] < 120)).sum()
    assert reds > 20 and blues > 20 and abs(reds - blues) < 0.3 * reds   # a red and a blue band each
    with pytest.raises(ValueError, match="3 characters but values of shape"):
        save_coloured_text(tmp_path / "x.svg", "abc", [0, 1])
    with pytest.raises(ValueError, match="no text"):
        save_coloured_text(tmp_path / "x.svg", "", [])
    with pytest.raises(ValueError, match="vmin must be below vmax"):
        save_coloured_text(tmp_path / "x.svg", "a", [0], vmin=1, vmax=0)


def test_side_by_side_makes_one_colourer_per_unit(trace):
    row = side_by_side(trace, [(0, 1), (1, 2)])
    assert [(w.layer, w.unit) for w in row.children] == [(0, 1), (1, 2)]
    with pytest.raises(ValueError, match="at least one"):
        side_by_side(trace, [])


def test_neuron_page_pages_and_links_to_a_colourer(trace):
    page = NeuronPage(trace, layer=0, unit=9)
    w = TextColourer(trace, layer=1, unit=0)
    page.link(w)
    assert (w.layer, w.unit) == (0, 9)
    page.step(+1)                                      # past the last unit of layer 0: layer 1, unit 0
    assert (page.layer, page.unit) == (1, 0) == (w.layer, w.unit)
    assert page.profile.layer == 1 and page.profile.unit == 0
    page.step(-1)
    assert (page.layer, page.unit) == (0, 9)
    w.unit = 4                                         # and back: the page follows the colourer
    assert page.profile.unit == 4 and "layer 0, unit 4" in page._title.value
    for part in ("<svg", "most on", "most off", "inside_quotes", "forget"):
        assert part in page._body.value, part
    with pytest.raises(traitlets.TraitError, match="unit 10 does not exist"):
        page.unit = 10
    assert page.unit == 4


def test_any_per_character_series_can_be_coloured():
    w = TextColourer.from_arrays("abc", {"LSTM": [0.1, 0.5, 0.9], "20-gram": [0.2, 0.2, 0.2]}, vmin=0, vmax=1)
    assert w.series == ["LSTM", "20-gram"] and w.width == 2 and w.top_k == 0
    sent = np.frombuffer(w.values, dtype=np.float16).reshape(2, 3)
    assert np.allclose(sent, [[0.1, 0.5, 0.9], [0.2, 0.2, 0.2]], atol=1e-3)
    w.unit = 1
    assert w.unit_values().tolist() == pytest.approx([0.2, 0.2, 0.2])
    with pytest.raises(traitlets.TraitError, match="unit 2 does not exist"):
        w.unit = 2
    with pytest.raises(ValueError, match="one value per character"):
        TextColourer.from_arrays("abc", {"x": [1, 2]})
    with pytest.raises(ValueError, match="at least one series"):
        TextColourer.from_arrays("abc", {})


def test_compare_bars_select_underlines_the_category():
    from widgets.longrange import brace_bars, character_bars
    text = "{a;b}\n{" + "x;" * 15 + "}\n"
    rng = np.random.default_rng(0)
    p_a, p_b = rng.uniform(size=len(text) - 1), rng.uniform(size=len(text) - 1)
    bars = character_bars(text, p_a, p_b)
    bars.select(";")
    assert bars.selected == ";" and [text[i] for i in bars.examples] == [";"] * 16
    pairs = np.frombuffer(bars.colourer.matches, dtype=np.int32).reshape(-1, 2)
    assert (pairs[:, 1] - pairs[:, 0] == 1).all() and pairs[:, 0].tolist() == bars.examples.tolist()
    assert bars.colourer.scroll_to == bars.examples[0]
    values = np.frombuffer(bars.colourer.values, dtype=np.float16).reshape(3, len(text))
    assert np.isnan(values[1, 0]) and values[1, 5] == pytest.approx(p_a[4], abs=1e-3)   # on the character it scores
    braces = brace_bars(text, p_a, p_b)
    assert braces.table.label.tolist() == ["[0, 5)", "[20, 40)"]
    braces.select("[20, 40)")
    assert braces.examples.tolist() == [len(text) - 2]
    with pytest.raises(KeyError, match="no bar 'q'"):
        bars.select("q")


def test_compare_bars_taps_replace_rescroll_and_clear():
    from bokeh.models import TapTool

    from widgets.longrange import character_bars
    text = "ab;cd;ef;"
    p = np.full(len(text) - 1, 0.5)
    bars = character_bars(text, p, p)
    assert bars.figure.select_one({"type": TapTool}).mode == "replace"   # a second tap keeps the bar
    bars.select(";")
    bars.colourer.scroll_to = 0                        # the user scrolled away ...
    bars.select(";")                                   # ... and chooses the same bar again: back to it
    assert bars.colourer.scroll_to == 2
    bars._on_indices("indices", [0], [])               # a tap in empty space: nothing underlined
    assert bars.selected == "" and bars.examples.tolist() == []
    assert np.frombuffer(bars.colourer.matches, dtype=np.int32).size == 0


def test_compare_bars_colour_each_series_on_its_own_range():
    from widgets.longrange import character_bars
    text = "abab"
    bars = character_bars(text, [0.6, 0.9, 0.6], [0.5, 0.5, 0.5])
    w = bars.colourer
    assert w.series == ["LSTM - 20-gram", "LSTM", "20-gram"] and (w.vmin, w.vmax) == (-1.0, 1.0)
    w.unit = 1                                         # a probability: 0 red (a miss), 1 blue
    assert (w.vmin, w.vmax, w.label) == (0.0, 1.0, "LSTM")
    w.unit = 0
    assert (w.vmin, w.vmax) == (-1.0, 1.0)


def test_bars_with_nothing_to_draw_and_braces_outside_the_bins_are_named():
    from widgets.longrange import brace_bars, character_bars
    text = "{" + "x" * 8 + "}"
    p = np.full(len(text) - 1, 0.5)
    with pytest.raises(ValueError, match="nothing to draw"):
        character_bars(text, p, p, min_count=100)
    with pytest.raises(ValueError, match="nothing to draw"):
        brace_bars("no braces here", np.full(13, 0.5), np.full(13, 0.5))
    with pytest.raises(ValueError, match=r"1 closing brace\(s\) lie outside the bins 0..5 \(distances up to 9\)"):
        brace_bars(text, p, p, edges=(0, 5))             # not silently dropped
    assert brace_bars(text, p, p, edges=(0, 5, 10**9)).table.label.tolist() == ["\u2265 5"]
    from widgets.longrange import CompareBars
    table = character_bars(text, p, p).table
    with pytest.raises(ValueError, match=r"the table lacks columns \['difference', 'p_b'\]"):
        CompareBars(text, p, p, table.drop(columns=["p_b", "difference"]), positions={})


def test_a_vocabulary_of_more_than_256_characters_is_refused_by_name():
    """The hover sends character ids as one byte each: 256 fit, a wider vocabulary would be misread."""
    import torch

    from lab.trace import Trace
    text = "".join(chr(0x4E00 + i) for i in range(257))
    tr = Trace({"layers.0.hidden": torch.zeros(257, 2)}, text=text, ids=torch.arange(257), vocab=text,
               kind="rnn", layers=1, width=2, info={"seam_deviation": 0.0})
    with pytest.raises(ValueError, match="character ids as bytes: at most 256 characters, this trace's vocabulary "
                                         "has 257"):
        TextColourer(tr)
    wide = toy_trace(text[:256], kind="rnn", layers=1, width=4)
    ids = np.frombuffer(TextColourer(wide).topk_ids, dtype=np.uint8)
    assert np.array_equal(ids, wide["topk.ids"].ravel()) and ids.max() > 127       # ids up to 255 arrive whole


def test_an_rnn_or_gru_trace_shows_its_hidden_state_by_default():
    """They have no cell state: the colourer and the neuron page show their memory, h."""
    for kind in ("gru", "rnn"):
        tr = toy_trace(TEXT[:200], kind=kind)
        w, page = TextColourer(tr), NeuronPage(tr)
        assert w.what == page.what == "hidden"
        assert np.allclose(w.unit_values(), tr.unit(1, 0, "hidden"), atol=1e-3)
        with pytest.raises(KeyError, match=f"a{'n' if kind == 'rnn' else ''} {kind.upper()} has no cell state"):
            TextColourer(tr, what="cell")


def test_a_gate_is_coloured_on_its_own_range(trace):
    from widgets.html import colour_of
    w = TextColourer(trace, layer=0, unit=1)
    assert (w.vmin, w.vmax) == (-1.0, 1.0)                 # tanh(c): -1 red, 0 white, +1 blue
    w.what = "forget"
    assert (w.vmin, w.vmax) == (0.0, 1.0)                  # a gate: closed red, half open white, open blue
    w.what = "candidate"
    assert (w.vmin, w.vmax) == (-1.0, 1.0)                 # the candidate is a tanh
    fixed = TextColourer(trace, layer=0, unit=1, vmin=-0.5, vmax=0.5)
    fixed.what = "forget"
    assert (fixed.vmin, fixed.vmax) == (-0.5, 0.5)         # a range given by the user stays
    assert TextColourer(trace, what="input").vmin == 0.0
    page = NeuronPage(trace, layer=0, unit=1, what="forget")
    g = trace.unit(0, 1, "forget")
    assert colour_of(float(g.max()), 0, 1) in page._body.value   # the most open is shown in the gate's scale
    assert colour_of(float(g.max()), -1, 1) not in page._body.value


def test_colour_range_and_save_span_are_checked(trace, tmp_path):
    for vmin, vmax in ((1, -1), (0.5, 0.5), (float("nan"), 1)):
        with pytest.raises(ValueError, match="vmin must be below vmax"):
            TextColourer(trace, vmin=vmin, vmax=vmax)
    w = TextColourer(trace, layer=1, unit=4)
    with pytest.raises(traitlets.TraitError, match="vmin must be below vmax"):
        w.vmin = 2.0
    assert w.vmin == -1.0
    for start, end in ((20, 5), (-5, None), (0, len(trace.text) + 1), (1.5, 9)):
        for suffix in (".html", ".png"):
            with pytest.raises(ValueError, match=r"cannot save characters .*0 <= start < end <="):
                w.save(tmp_path / f"x{suffix}", start, end)
    with pytest.raises(ValueError, match=r"cannot save characters \[20, 5\)"):
        w.to_html(None, 20, 5)                                   # the page itself, not only save()
    with pytest.raises(FileNotFoundError, match="folder .*nowhere does not exist; create it first"):
        w.save(tmp_path / "nowhere" / "x.png", 0, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
