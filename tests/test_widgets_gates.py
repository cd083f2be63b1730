"""widgets.gates: Figure 3 as linked Bokeh plots (Python side; tests/test_browser_gates.py clicks)."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
import traitlets
from bokeh.models import BoxSelectTool, GlyphRenderer, HoverTool, Quad, Span, TapTool

from lab import gates
from lab.models import CharRNN, ModelConfig
from lab.trace import compute_trace
from tests.toy import saturating
from widgets.colourer import TextColourer
from widgets.gates import GateSaturation


def tiny_trace(kind: str, layers: int = 3, width: int = 6, chars: int = 400, seed: int = 0):
    torch.manual_seed(seed)
    model = saturating(CharRNN(ModelConfig(kind, layers, width, 5)).eval())   # its gates saturate, as trained ones do
    return compute_trace(model, torch.randint(0, 5, (chars,)), vocab="abcd\n", dtype=torch.float32)


@pytest.fixture(scope="module")
def lstm():
    return tiny_trace("lstm")


@pytest.fixture(scope="module")
def gru():
    return tiny_trace("gru", layers=2)


class Recorder:
    """A stand-in neuron page: remembers the order in which layer and unit were set."""

    def __init__(self):
        self.calls, self._layer, self._unit = [], 0, 0

    @property
    def layer(self):
        return self._layer

    @layer.setter
    def layer(self, value):
        self.calls.append(("layer", value))
        self._layer = value

    @property
    def unit(self):
        return self._unit

    @unit.setter
    def unit(self, value):
        self.calls.append(("unit", value))
        self._unit = value


def test_lstm_has_the_papers_three_panels_coloured_by_layer(lstm):
    fig = GateSaturation(lstm)
    assert fig.gates == ["forget", "input", "output"] and list(fig.panels) == fig.gates
    assert fig.layers == [0, 1, 2] and len(fig.source.data["unit"]) == 3 * 6
    for gate, panel in fig.panels.items():
        assert panel.name == f"gate-{gate}" and panel.title.text == f"{gate} gate"
        scatter = panel.renderers[-1]
        assert scatter.data_source is fig.source             # one source: a selection shows in every panel
        assert scatter.glyph.x == f"{gate}_right" and scatter.glyph.y == f"{gate}_left"
        assert scatter.glyph.fill_color.transform.factors == ["layer 0", "layer 1", "layer 2"]
        assert [item.label.field for item in panel.legend.items] == ["layer_name"]
        hover = panel.select_one(HoverTool)
        assert [name for name, _ in hover.tooltips] == ["unit", "left (< 0.1)", "right (> 0.9)"]
        assert hover.tooltips[1][1] == f"@{{{gate}_left}}{{0.000}}"
        assert panel.select_one(TapTool) is not None and panel.select_one(BoxSelectTool) is not None
    assert repr(fig) == "GateSaturation(LSTM, layers 0-2, 18 units; forget, input, output; 0 selected)"


def test_gru_has_update_and_reset_panels(gru):
    fig = GateSaturation(gru)
    assert fig.gates == ["update", "reset"] and fig.layers == [0, 1]
    assert sorted(c for c in fig.source.data if c.endswith(("_left", "_right"))) == [
        "reset_left", "reset_right", "update_left", "update_right"]


def test_points_are_the_saturation_fractions(lstm):
    fig = GateSaturation(lstm, left=0.2, right=0.8)
    sat = gates.saturation(lstm, left=0.2, right=0.8)
    assert (sat.left != sat.right).mean() > 0.9     # the toy saturates: a left/right swap would show
    data = fig.source.data
    for gate in fig.gates:
        expected = sat[sat.gate == gate].sort_values(["layer", "unit"])
        assert data["layer"] == expected.layer.tolist() and data["unit"] == expected.unit.tolist()
        assert data[f"{gate}_left"] == expected.left.tolist()
        assert data[f"{gate}_right"] == expected.right.tolist()
    assert fig.panels["forget"].xaxis.axis_label == "fraction right-saturated (> 0.8)"
    assert fig.panels["forget"].yaxis.axis_label == "fraction left-saturated (< 0.2)"


def test_a_tap_sends_the_unit_to_the_colourer_layer_first(lstm):
    colourer = TextColourer(lstm, layer=0, unit=0)
    page = Recorder()
    fig = GateSaturation(lstm, targets=[colourer])
    assert fig.link(page) is page
    k = fig.source.data["layer"].index(2) + 4                 # layer 2, unit 4
    fig.source.selected.indices = [k]                         # what a tap in the browser changes
    assert fig.selected == [(2, 4)]
    assert (colourer.layer, colourer.unit) == (2, 4)
    assert page.calls == [("layer", 2), ("unit", 4)]


def test_a_box_select_sends_the_first_unit_and_keeps_them_all(lstm):
    page = Recorder()
    fig = GateSaturation(lstm, targets=[page])
    fig.source.selected.indices = [13, 7, 8]                  # box select: several points, any order
    assert fig.selected == [(1, 1), (1, 2), (2, 1)]
    assert (page.layer, page.unit) == (1, 1)
    fig.source.selected.indices = []                          # a tap on empty space: targets stay
    assert fig.selected == [] and (page.layer, page.unit) == (1, 1)


def test_a_target_linked_later_gets_the_current_choice(lstm):
    fig = GateSaturation(lstm)
    fig.select([(1, 3)])
    page = fig.link(Recorder())
    assert page.calls == [("layer", 1), ("unit", 3)]


def test_the_selection_arrives_from_the_browser_through_jupyter_bokeh(lstm):
    """The message BokehJS sends through jupyter_bokeh when a tap changes the selection."""
    page = Recorder()
    fig = GateSaturation(lstm, targets=[page])
    selection = fig.source.selected
    fig.scatter_view._sync_model(fig.scatter_view, {"event": "jsevent", "kind": "ModelChanged",
                                                    "model": {"id": selection.id}, "attr": "indices",
                                                    "new": [5]}, [])
    assert fig.selected == [(0, 5)] and (page.layer, page.unit) == (0, 5)


def test_histograms_follow_the_unit_and_the_gate(lstm):
    fig = GateSaturation(lstm, bins=10)
    quad = next(r for r in fig.activations_figure.renderers
                if isinstance(r, GlyphRenderer) and isinstance(r.glyph, Quad))
    assert quad.data_source.data["top"] == []
    assert fig.activations_figure.title.text == "forget gate activations: tap a unit"
    fig.select([(2, 1)])
    expected, edges = gates.histogram(lstm, "forget", 2, 1, bins=10)
    assert quad.data_source.data["top"] == expected.tolist()
    assert quad.data_source.data["left"] == edges[:-1].tolist()
    assert fig.activations_figure.title.text == "forget gate activations: layer 2, unit 1"
    fig.chooser.value = "output"                               # the gate buttons drive `gate`
    assert fig.gate == "output"
    assert quad.data_source.data["top"] == gates.histogram(lstm, "output", 2, 1, bins=10)[0].tolist()
    assert fig.fractions_figure.title.text == "output gate: units by how often they saturate"
    # per layer: how many units saturate on each fraction of the characters
    sat = gates.saturation(lstm)
    out = sat[(sat.gate == "output") & (sat.layer == 0)]
    steps = [r for r in fig.fractions_figure.renderers if r.glyph.__class__.__name__ == "Step"]
    counts = np.histogram(out.left + out.right, bins=10, range=(0, 1))[0].tolist()
    assert steps[0].data_source.data["y"] == [*counts, counts[-1]] and sum(counts) == 6


def test_the_chosen_unit_is_marked_among_its_layer():
    forget = np.array([[0.05, 0.5], [0.95, 0.5], [0.97, 0.5], [0.5, 0.5]])   # unit 0: 1/4 left, 1/2 right
    fig = GateSaturation({"layers.0.gates.forget": forget}, bins=4)
    marker = fig.fractions_figure.select_one({"type": Span})
    assert not marker.visible
    fig.select([(0, 0)])
    assert marker.visible and marker.location == 0.75
    step = fig.fractions_figure.renderers[0]
    assert step.data_source.data == {"x": [0.0, 0.25, 0.5, 0.75, 1.0], "y": [1, 0, 0, 1, 1]}


def test_a_saturation_table_alone_gives_no_activation_histogram(lstm):
    sat = gates.saturation(lstm, left=0.05, right=0.95)
    fig = GateSaturation(sat)
    assert fig.trace is None and (fig.left, fig.right) == (0.05, 0.95)   # the table's own thresholds
    assert fig.histogram_view._model.children == [fig.fractions_figure]
    assert fig.panels["input"].xaxis.axis_label == "fraction right-saturated (> 0.95)"
    fig.select([(0, 0)])
    assert [ax.get_title() for ax in fig.to_matplotlib().axes] == [
        "forget gate", "input gate", "output gate", "forget gate: units by how often they saturate"]


def test_exports_write_png_svg_and_html(lstm, tmp_path):
    fig = GateSaturation(lstm)
    fig.select([(1, 2)])
    png = fig.save(tmp_path / "figure3.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    svg = fig.save(tmp_path / "figure3.SVG")
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = svg.read_text()
    assert "forget gate" in text and "layer 2" in text and "chosen unit" in text
    html = fig.save(tmp_path / "figure3.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "cdn.bokeh.org" not in html
    assert not re.search(r"<(script|link)[^>]+(src|href)=", html)     # BokehJS inlined: nothing to fetch
    assert "Bokeh.embed.embed_items" in html and "forget_right" in html
    assert '"indices":[8]' in html.replace(" ", "")            # the chosen unit stays marked
    with pytest.raises(ValueError, match=r"must end in \.png, \.svg, \.html"):
        fig.save(tmp_path / "figure3.jpg")


def test_bad_inputs_are_clear_errors(lstm):
    with pytest.raises(ValueError, match="RNN has none"):
        GateSaturation(tiny_trace("rnn", layers=1))
    with pytest.raises(TypeError, match="a Trace .* or a table"):
        GateSaturation([[0.1, 0.9]])
    with pytest.raises(ValueError, match=r"lacks columns \['left', 'right'\]"):
        GateSaturation(gates.saturation(lstm).drop(columns=["left", "right"]))
    with pytest.raises(ValueError, match="the table is empty"):
        GateSaturation(gates.saturation(lstm).iloc[:0])
    renamed = gates.saturation(lstm).replace({"gate": {"forget": "remember"}})
    with pytest.raises(ValueError, match=r"unknown gates \['remember'\] in the table: Figure 3 plots forget, input"):
        GateSaturation(renamed)
    with pytest.raises(ValueError, match="left < right"):
        GateSaturation(lstm, left=0.9, right=0.1)
    fig = GateSaturation(lstm)
    with pytest.raises(TypeError, match="needs layer and unit attributes .*; dict has neither"):
        fig.link({})

    class LayerOnly:
        layer = 0
    with pytest.raises(TypeError, match="LayerOnly has no unit"):
        fig.link(LayerOnly())
    with pytest.raises(IndexError, match=r"no unit \(3, 0\) in this figure: layers 0-2, units 0..5"):
        fig.select([(3, 0)])
    assert fig.selected == []


def test_the_first_picture_the_browser_gets_has_the_histograms(lstm):
    """Changes made before the browser shows a BokehModel are lost, so the histograms are drawn first."""
    import json
    fig = GateSaturation(lstm)
    bundle = json.dumps(fig.histogram_view.render_bundle)
    assert "forget gate: units by how often they saturate" in bundle
    assert "forget gate activations: tap a unit" in bundle
    pooled = gates.histogram(lstm, "forget", 0, bins=20)[0]
    assert fig.activations_figure.renderers[1].data_source.data["y"][:20] == pooled.tolist()


def test_bad_bins_and_gates_are_clear_errors(lstm):
    for bins in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"bins must be a whole number of histogram bins, at least 1"):
            GateSaturation(lstm, bins=bins)
    fig = GateSaturation(lstm)
    with pytest.raises(traitlets.TraitError, match="gate 'reset' is not shown here: choose one of forget, input, output"):
        fig.gate = "reset"
    assert fig.gate == "forget" and fig.chooser.value == "forget"
