"""Gate saturation (paper §4.2, Figure 3) as linked Bokeh plots in JupyterLab.

One scatter panel per gate (LSTM forget, input, output; GRU update, reset): every unit
of every layer is a point at x = the fraction of characters on which its gate is
right-saturated (> 0.9), y = the fraction on which it is left-saturated (< 0.1),
coloured by layer. Hover a point for the unit and its fractions; tap it, or drag a box
over several, and the first chosen unit goes to every linked target (the text
colourer, a neuron page: anything with ``layer`` and ``unit``). Below, two histograms
of the chosen gate: how saturated the units of each layer are, and how the chosen
unit's activations spread over [0, 1] next to its whole layer's.

    >>> import torch
    >>> from lab.models import CharRNN, ModelConfig
    >>> from lab.trace import compute_trace
    >>> model = CharRNN(ModelConfig("lstm", 2, 8, 4)).eval()
    >>> tr = compute_trace(model, torch.randint(0, 4, (300,)), vocab="abc\\n")
    >>> fig = GateSaturation(tr)
    >>> fig
    GateSaturation(LSTM, layers 0-1, 16 units; forget, input, output; 0 selected)
    >>> class Page:                    # anything with layer and unit, e.g. a TextColourer
    ...     layer, unit = 0, 0
    >>> page = fig.link(Page())
    >>> fig.select([(1, 5)])
    >>> fig.selected, (page.layer, page.unit)
    ([(1, 5)], (1, 5))

The figure reaches the browser through ``jupyter_bokeh``: run
``bokeh.io.output_notebook(resources=INLINE, hide_banner=True)`` once in the notebook
first (BokehJS from the Python package; nothing from the network). ``save`` writes
PNG or SVG (drawn again with matplotlib) or a standalone HTML page.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import ipywidgets
import numpy as np
import pandas as pd
import traitlets
from bokeh.embed import file_html
from bokeh.layouts import column, gridplot, row
from bokeh.models import BoxAnnotation, BoxSelectTool, ColumnDataSource, HoverTool, Range1d, Span, TapTool
from bokeh.palettes import Category10
from bokeh.plotting import figure
from bokeh.resources import INLINE
from bokeh.transform import factor_cmap
from jupyter_bokeh import BokehModel

from lab.checks import is_integer
from lab.gates import histogram, saturation

__all__ = ["PANELS", "GateSaturation"]

# the paper's panels, in its order: LSTM forget, input, output; GRU update, reset
PANELS = ("forget", "input", "output", "update", "reset")
# torch's GRU keeps h = update * h_prev + (1 - update) * candidate: its update is 1 - the paper's z,
# so this panel is the paper's mirrored across x = y
GATE_TITLES = {"update": "update gate (torch's: 1 - the paper's z)"}
LAYER_COLOURS = Category10[10]
COLUMNS = {"layer", "gate", "unit", "left", "right"}
FORMATS = (".png", ".svg", ".html")


def _title(gate: str) -> str:
    return GATE_TITLES.get(gate, f"{gate} gate")


def _layer_name(layer: int) -> str:
    return f"layer {layer}"


class GateSaturation(ipywidgets.VBox):
    """Figure 3 for one model: a scatter panel per gate, linked to the units' other views.

    ``data`` is a :class:`lab.trace.Trace` (or any mapping with ``layers.{l}.gates.{name}``
    arrays) or a table from :func:`lab.gates.saturation`. With a trace, the lower-right
    histogram shows the chosen unit's activations; a table alone has no activations.
    ``targets`` are linked at once (see :meth:`link`). ``selected`` holds the chosen
    (layer, unit) pairs, ``gate`` the gate of the histograms.

        >>> from lab import Session
        >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said, "Yes." Then he left.')
        >>> fig = GateSaturation(tr)
        >>> fig
        GateSaturation(LSTM, layers 0-1, 614 units; forget, input, output; 0 selected)
        >>> fig.gate = "output"; fig.select([(1, 283)])     # as the gate buttons and a tap do
        >>> fig.activations_figure.title.text
        'output gate activations: layer 1, unit 283'
    """

    selected = traitlets.List()
    gate = traitlets.Unicode()

    def __init__(self, data, targets=(), left: float = 0.1, right: float = 0.9, bins: int = 20,
                 panel_size: int = 230, title: str | None = None):
        if isinstance(data, pd.DataFrame):
            self.trace, sat = None, _checked_table(data)
            left, right = sat.attrs.get("left", left), sat.attrs.get("right", right)
        elif isinstance(data, Mapping):
            self.trace, sat = data, saturation(data, left=left, right=right)
        else:
            raise TypeError(f"data must be a Trace (or mapping of gate arrays) or a table from "
                            f"lab.gates.saturation, got {type(data).__name__}")
        if not is_integer(bins) or bins < 1:
            raise ValueError(f"bins must be a whole number of histogram bins, at least 1; got {bins!r}")
        self.sat, self.left, self.right, self.bins, self.panel_size = sat, left, right, bins, panel_size
        self.gates = [g for g in PANELS if g in set(sat.gate)]
        self.layers = sorted(int(v) for v in sat.layer.unique())
        if len(self.layers) > len(LAYER_COLOURS):
            raise ValueError(f"at most {len(LAYER_COLOURS)} layers can be told apart by colour, got {len(self.layers)}")
        self.title = title if title is not None else _describe(self.trace)
        self.table = _wide(sat, self.gates)
        self.source = ColumnDataSource(self._columns())
        self.source.selected.on_change("indices", self._on_indices)
        self._targets: list = []
        self.panels = {g: self._scatter(g, self.source) for g in self.gates}
        self._fraction_sources = {layer: ColumnDataSource({"x": [], "y": []}) for layer in self.layers}
        self._pooled_sources = {layer: ColumnDataSource({"x": [], "y": []}) for layer in self.layers}
        self._unit_source = ColumnDataSource({"left": [], "right": [], "top": []})
        self._marker = Span(location=0, dimension="height", line_color="black", line_dash="dashed",
                            visible=False)
        self.fractions_figure, self.activations_figure = self._histograms()
        self.chooser = ipywidgets.ToggleButtons(options=self.gates, description="histograms:",
                                                style={"button_width": "80px"})
        # drawn before the BokehModels take their snapshot: a change made before the browser
        # shows them is sent as a patch to no one and lost
        self._draw_histograms(self.gates[0])
        self.scatter_view = BokehModel(gridplot([list(self.panels.values())], toolbar_location="right",
                                                merge_tools=True))
        hists = [self.fractions_figure] + ([self.activations_figure] if self.trace is not None else [])
        self.histogram_view = BokehModel(row(*hists))
        super().__init__([ipywidgets.HTML(f"<b>{self.title}</b>"), self.scatter_view, self.chooser,
                          self.histogram_view])
        traitlets.link((self.chooser, "value"), (self, "gate"))
        self.observe(self._on_selected, names=["selected"])
        self.observe(lambda change: self._draw_histograms(), names=["gate"])
        for target in targets:
            self.link(target)

    @traitlets.validate("gate")
    def _valid_gate(self, proposal):
        if proposal["value"] not in self.gates:
            raise traitlets.TraitError(f"gate {proposal['value']!r} is not shown here: choose one of "
                                       f"{', '.join(self.gates)}")
        return proposal["value"]

    def __repr__(self) -> str:
        kind = getattr(self.trace, "kind", "")
        span = f"layers {self.layers[0]}-{self.layers[-1]}" if len(self.layers) > 1 else f"layer {self.layers[0]}"
        return (f"GateSaturation({kind.upper() + ', ' if kind else ''}{span}, {len(self.table)} units; "
                f"{', '.join(self.gates)}; {len(self.selected)} selected)")

    # -- selection and links --------------------------------------------------------------
    def link(self, target):
        """Send every new choice to ``target`` (``layer`` first, then ``unit``); returns ``target``.

        ``target`` is anything with ``layer`` and ``unit`` attributes or traits, such as a
        :class:`widgets.TextColourer`. A unit chosen already is sent at once.

            >>> fig = GateSaturation({"layers.0.gates.update": np.full((4, 3), 0.95)})
            >>> fig.link(object())
            Traceback (most recent call last):
            ...
            TypeError: a linked target needs layer and unit attributes (a TextColourer, a neuron page); object has neither
        """
        missing = [name for name in ("layer", "unit") if not hasattr(target, name)]
        if missing:
            raise TypeError(f"a linked target needs layer and unit attributes (a TextColourer, a neuron page); "
                            f"{type(target).__name__} has {'neither' if len(missing) == 2 else 'no ' + missing[0]}")
        self._targets.append(target)
        if self.selected:
            self._send(target, *self.selected[0])
        return target

    def select(self, units) -> None:
        """Choose units from Python, as a tap or box select would: a list of (layer, unit) pairs.

        The browser marks the choice once the figure is on show (a change made before
        that reaches Python's side only).

            >>> fig = GateSaturation({"layers.0.gates.forget": np.full((4, 3), 0.95)})
            >>> fig.select([(0, 2)]); fig.selected
            [(0, 2)]
            >>> fig.select([(1, 0)])
            Traceback (most recent call last):
            ...
            IndexError: no unit (1, 0) in this figure: layers 0-0, units 0..2
        """
        index = {pair: i for i, pair in enumerate(zip(self.table.layer, self.table.unit))}
        rows = []
        for layer, unit in units:
            if (layer, unit) not in index:
                raise IndexError(f"no unit ({layer}, {unit}) in this figure: layers {self.layers[0]}-"
                                 f"{self.layers[-1]}, units 0..{self.table.unit.max()}")
            rows.append(index[(layer, unit)])
        self.source.selected.indices = rows  # the same path as a tap in the browser

    def _on_indices(self, attr, old, new) -> None:
        # tap and box select in the browser land here (through jupyter_bokeh), and so does select()
        self.selected = [(int(self.table.layer[i]), int(self.table.unit[i])) for i in sorted(new)]

    def _on_selected(self, change) -> None:
        if self.selected:
            for target in self._targets:
                self._send(target, *self.selected[0])
        self._draw_histograms()

    @staticmethod
    def _send(target, layer: int, unit: int) -> None:
        target.layer = layer  # layer first: a target may check the unit against its layer
        target.unit = unit

    # -- Bokeh ----------------------------------------------------------------------------
    def _columns(self) -> dict:
        data = {c: self.table[c].tolist() for c in self.table.columns}
        data["layer_name"] = [_layer_name(v) for v in self.table.layer]
        return data

    def _scatter(self, gate: str, source: ColumnDataSource):
        names = [_layer_name(v) for v in self.layers]
        hover = HoverTool(tooltips=[("unit", "layer @layer, unit @unit"),
                                    (f"left (< {self.left:g})", f"@{{{gate}_left}}{{0.000}}"),
                                    (f"right (> {self.right:g})", f"@{{{gate}_right}}{{0.000}}")])
        fig = figure(name=f"gate-{gate}", title=_title(gate), frame_width=self.panel_size,
                     frame_height=self.panel_size, x_range=Range1d(-0.03, 1.03), y_range=Range1d(-0.03, 1.03),
                     tools=[hover, TapTool(mode="replace"), BoxSelectTool(), "pan", "wheel_zoom", "reset"],
                     active_drag="auto", x_axis_label=f"fraction right-saturated (> {self.right:g})",
                     y_axis_label=f"fraction left-saturated (< {self.left:g})" if gate == self.gates[0] else "")
        fig.line([0, 1], [1, 0], line_color="#bbbbbb", line_dash="dotted")  # left + right <= 1
        fig.scatter(f"{gate}_right", f"{gate}_left", source=source, size=7, alpha=0.75,
                    color=factor_cmap("layer_name", LAYER_COLOURS[:len(names)], names),
                    legend_field="layer_name", nonselection_alpha=0.15, selection_line_color="black",
                    selection_line_width=2)
        fig.legend.location = "top_right"
        fig.legend.label_text_font_size = "8pt"
        fig.legend.padding = fig.legend.spacing = 2
        return fig

    def _histograms(self):
        size = {"frame_width": int(self.panel_size * 1.3), "frame_height": int(self.panel_size * 0.6)}
        fractions = figure(name="fractions", tools="pan,wheel_zoom,reset", x_range=Range1d(0, 1),
                           x_axis_label="fraction of characters saturated (left + right)",
                           y_axis_label="units", **size)
        activations = figure(name="activations", tools="pan,wheel_zoom,reset", x_range=Range1d(0, 1),
                             x_axis_label="gate activation", y_axis_label="fraction of characters", **size)
        activations.add_layout(BoxAnnotation(right=self.left, fill_color="#888888", fill_alpha=0.12))
        activations.add_layout(BoxAnnotation(left=self.right, fill_color="#888888", fill_alpha=0.12))
        activations.quad(left="left", right="right", top="top", bottom=0, source=self._unit_source,
                         fill_color="#444444", fill_alpha=0.45, line_color="#222222", legend_label="chosen unit")
        fractions.add_layout(self._marker)
        for k, layer in enumerate(self.layers):
            colour = LAYER_COLOURS[k]
            fractions.step("x", "y", source=self._fraction_sources[layer], mode="after", line_width=2,
                           line_color=colour, legend_label=_layer_name(layer))
            activations.step("x", "y", source=self._pooled_sources[layer], mode="after", line_width=2,
                             line_color=colour, legend_label=f"{_layer_name(layer)}, all units")
        for fig in (fractions, activations):
            fig.legend.location = "top_center"  # the extremes, where units and the chosen bars pile up, stay clear
            fig.legend.label_text_font_size = "8pt"
            fig.legend.padding = fig.legend.spacing = 2
        return fractions, activations

    def _draw_histograms(self, gate: str | None = None) -> None:
        gate, chosen = gate or self.gate, self.selected[0] if self.selected else None
        for layer in self.layers:
            saturated = self._saturated(gate, layer)
            counts, edges = np.histogram(saturated, bins=self.bins, range=(0.0, 1.0))
            self._fraction_sources[layer].data = {"x": edges.tolist(), "y": [*counts.tolist(), int(counts[-1])]}
        self.fractions_figure.title.text = f"{gate} gate: units by how often they saturate"
        if chosen is not None:
            row_ = self._row(*chosen)
            self._marker.location = float(row_[f"{gate}_left"] + row_[f"{gate}_right"])
        self._marker.visible = chosen is not None
        if self.trace is None:
            return
        for layer in self.layers:
            fractions, edges = histogram(self.trace, gate, layer, bins=self.bins)
            self._pooled_sources[layer].data = {"x": edges.tolist(), "y": [*fractions.tolist(), float(fractions[-1])]}
        if chosen is None:
            self._unit_source.data = {"left": [], "right": [], "top": []}
            self.activations_figure.title.text = f"{gate} gate activations: tap a unit"
        else:
            fractions, edges = histogram(self.trace, gate, chosen[0], chosen[1], bins=self.bins)
            self._unit_source.data = {"left": edges[:-1].tolist(), "right": edges[1:].tolist(),
                                      "top": fractions.tolist()}
            self.activations_figure.title.text = f"{gate} gate activations: layer {chosen[0]}, unit {chosen[1]}"

    def _saturated(self, gate: str, layer: int) -> np.ndarray:
        rows = self.table[self.table.layer == layer]
        return (rows[f"{gate}_left"] + rows[f"{gate}_right"]).to_numpy()

    def _row(self, layer: int, unit: int) -> pd.Series:
        return self.table[(self.table.layer == layer) & (self.table.unit == unit)].iloc[0]

    # -- exports --------------------------------------------------------------------------
    def to_html(self, path: str | Path | None = None) -> str:
        """A standalone HTML page of the figure (BokehJS inlined: no network), the choice marked.

            >>> fig = GateSaturation({"layers.0.gates.forget": np.full((4, 3), 0.95)})
            >>> page = fig.to_html()
            >>> page.startswith("<!DOCTYPE html>") and "cdn.bokeh.org" not in page
            True
        """
        source = ColumnDataSource(self._columns())
        source.selected.indices = list(self.source.selected.indices)
        panels = gridplot([[self._scatter(g, source) for g in self.gates]], toolbar_location="right",
                          merge_tools=True)
        page = file_html(column(panels), INLINE, title=self.title or "gate saturation")
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page

    def to_matplotlib(self):
        """The same panels and histograms as a matplotlib Figure (for PNG, SVG, PDF).

            >>> fig = GateSaturation({"layers.0.gates.forget": np.full((4, 3), 0.95)})
            >>> [ax.get_title() for ax in fig.to_matplotlib().axes]
            ['forget gate', 'forget gate: units by how often they saturate', 'forget gate activations']
        """
        from matplotlib.figure import Figure
        n = len(self.gates)
        hist_axes = 2 if self.trace is not None else 1
        cols = max(n, hist_axes)
        out = Figure(figsize=(3.3 * cols, 6.4), layout="constrained")
        if self.title:
            out.suptitle(self.title)
        grid = out.add_gridspec(2, cols, height_ratios=[1.5, 1])
        chosen = set(self.selected)
        for k, gate in enumerate(self.gates):
            ax = out.add_subplot(grid[0, k])
            ax.plot([0, 1], [1, 0], color="#bbbbbb", linestyle=":", linewidth=1)
            for c, layer in enumerate(self.layers):
                rows = self.table[self.table.layer == layer]
                ax.scatter(rows[f"{gate}_right"], rows[f"{gate}_left"], s=14, alpha=0.75,
                           color=LAYER_COLOURS[c], label=_layer_name(layer), linewidths=0)
            picked = self.table[[(lu in chosen) for lu in zip(self.table.layer, self.table.unit)]]
            if len(picked):
                ax.scatter(picked[f"{gate}_right"], picked[f"{gate}_left"], s=60, facecolors="none",
                           edgecolors="black", linewidths=1.2, label="chosen")
            ax.set(xlim=(-0.03, 1.03), ylim=(-0.03, 1.03), title=_title(gate), aspect="equal",
                   xlabel=f"fraction right-saturated (> {self.right:g})")
            if k == 0:
                ax.set_ylabel(f"fraction left-saturated (< {self.left:g})")
            ax.legend(fontsize=7, loc="upper right")
        gate = self.gate
        ax = out.add_subplot(grid[1, : cols if hist_axes == 1 else cols // 2])
        for c, layer in enumerate(self.layers):
            ax.hist(self._saturated(gate, layer), bins=self.bins, range=(0, 1), histtype="step", linewidth=1.5,
                    color=LAYER_COLOURS[c], label=_layer_name(layer))
        if self.selected:
            ax.axvline(self._saturated_of(gate, *self.selected[0]), color="black", linestyle="--", linewidth=1)
        ax.set(xlim=(0, 1), title=f"{gate} gate: units by how often they saturate", ylabel="units",
               xlabel="fraction of characters saturated (left + right)")
        ax.legend(fontsize=7)
        if self.trace is not None:
            ax = out.add_subplot(grid[1, cols // 2:])
            ax.axvspan(0, self.left, color="#888888", alpha=0.12)
            ax.axvspan(self.right, 1, color="#888888", alpha=0.12)
            for c, layer in enumerate(self.layers):
                fractions, edges = histogram(self.trace, gate, layer, bins=self.bins)
                ax.stairs(fractions, edges, color=LAYER_COLOURS[c], linewidth=1.5,
                          label=f"{_layer_name(layer)}, all units")
            title = f"{gate} gate activations"
            if self.selected:
                layer, unit = self.selected[0]
                fractions, edges = histogram(self.trace, gate, layer, unit, bins=self.bins)
                ax.stairs(fractions, edges, fill=True, color="#444444", alpha=0.45, label="chosen unit")
                title += f": layer {layer}, unit {unit}"
            ax.set(xlim=(0, 1), title=title, xlabel="gate activation", ylabel="fraction of characters")
            ax.legend(fontsize=7)
        return out

    def _saturated_of(self, gate: str, layer: int, unit: int) -> float:
        row_ = self._row(layer, unit)
        return float(row_[f"{gate}_left"] + row_[f"{gate}_right"])

    def save(self, path: str | Path) -> Path:
        """Write the figure to ``path``: ``.png`` or ``.svg`` (matplotlib) or ``.html`` (Bokeh).

            >>> import tempfile, pathlib
            >>> fig = GateSaturation({"layers.0.gates.forget": np.full((4, 3), 0.95)})
            >>> fig.save(pathlib.Path(tempfile.mkdtemp()) / "figure3.svg").stat().st_size > 1000
            True
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in FORMATS:
            raise ValueError(f"cannot save {path.name!r}: the name must end in {', '.join(FORMATS)}")
        if suffix == ".html":
            self.to_html(path)
        else:
            self.to_matplotlib().savefig(path, dpi=110, metadata={"Date": None} if suffix == ".svg" else None)
        return path


def _checked_table(sat: pd.DataFrame) -> pd.DataFrame:
    missing = COLUMNS - set(sat.columns)
    if missing:
        raise ValueError(f"the table lacks columns {sorted(missing)}: give a Trace or the table from "
                         "lab.gates.saturation(trace)")
    if sat.empty:
        raise ValueError("the table is empty: no gates to plot")
    unknown = set(sat.gate) - set(PANELS)
    if unknown:
        raise ValueError(f"unknown gates {sorted(unknown)} in the table: Figure 3 plots {', '.join(PANELS)}")
    return sat


def _wide(sat: pd.DataFrame, gates: list[str]) -> pd.DataFrame:
    """One row per (layer, unit), columns ``{gate}_left`` and ``{gate}_right``."""
    wide = sat.pivot_table(index=["layer", "unit"], columns="gate", values=["left", "right"])
    wide.columns = [f"{gate}_{side}" for side, gate in wide.columns]
    wide = wide.reset_index()
    return wide[["layer", "unit", *(f"{g}_{side}" for g in gates for side in ("left", "right"))]]


def _describe(trace) -> str:
    if trace is not None and hasattr(trace, "kind") and hasattr(trace, "text"):
        model = trace.info.get("model") if hasattr(trace, "info") else None
        return (f"{(model + ': ') if model else ''}{trace.kind.upper()} {trace.n_layers}x{trace.width}, "
                f"gate saturation over {len(trace.text):,} characters")
    return ""
