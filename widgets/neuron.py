"""The neuron page: one unit of a trace on one page, with previous/next navigation.

It shows the unit's histogram, the characters where it is most on and most off, random
examples from each quantile of its range (each in its context, coloured by the unit,
the character itself outlined), its score and rank for every hypothesis of
:mod:`lab.cells`, and how often its gates saturate. The numbers come from
:func:`lab.neurons.profile`; this module only lays them out.

    >>> from lab import Session                                       # doctest: +SKIP
    >>> from widgets import NeuronPage, TextColourer                  # doctest: +SKIP
    >>> tr = Session.load("war_and_peace_lstm").trace(split="test", length=20_000)  # doctest: +SKIP
    >>> page = NeuronPage(tr, layer=1, unit=283)                      # doctest: +SKIP
    >>> page.link(TextColourer(tr))        # the colourer follows the page and back  # doctest: +SKIP
"""
from __future__ import annotations

import html

import ipywidgets
import numpy as np
import traitlets

from lab.gates import value_range
from lab.neurons import profile
from widgets.html import colour_of, visible


def histogram_svg(hist, width: int = 360, height: int = 110, vmin: float = -1.0, vmax: float = 1.0) -> str:
    """The histogram as a small inline SVG, each bar coloured like the values it counts.

        >>> from lab.neurons import histogram
        >>> histogram_svg(histogram([-1, 0.5, 1], bins=2)).count("<rect")
        2
    """
    counts, edges = np.asarray(hist.counts), np.asarray(hist.edges)
    top = max(int(counts.max()), 1)
    w = width / len(counts)
    bars = []
    for k, n in enumerate(counts):
        if n == 0:
            continue
        h = (height - 16) * n / top
        mid = (edges[k] + edges[k + 1]) / 2
        bars.append(f'<rect x="{k * w:.1f}" y="{height - 16 - h:.1f}" width="{max(w - 1, 1):.1f}" '
                    f'height="{h:.1f}" fill="{colour_of(mid, vmin, vmax)}" stroke="#888" stroke-width="0.5">'
                    f'<title>{edges[k]:+.2f}..{edges[k + 1]:+.2f}: {n}</title></rect>')
    axis = (f'<text x="0" y="{height - 3}" font-size="10">{edges[0]:+.2f}</text>'
            f'<text x="{width}" y="{height - 3}" font-size="10" text-anchor="end">{edges[-1]:+.2f}</text>'
            f'<text x="{width / 2}" y="{height - 3}" font-size="10" text-anchor="middle">max {top:,}</text>')
    return (f'<svg class="vurn-hist" width="{width}" height="{height}" font-family="sans-serif" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(bars)}{axis}</svg>')


def snippet_html(text: str, values, position: int, before: int = 40, after: int = 10,
                 vmin: float = -1.0, vmax: float = 1.0) -> str:
    """The context of one character, coloured by the unit, the character itself outlined.

        >>> snippet_html("ab<c", [0, 0, 1, 0], 2, before=1, after=1).count("outline")
        1
    """
    a, b = max(0, position - before), min(len(text), position + after + 1)
    spans = []
    for i in range(a, b):
        ch = html.escape(visible(text[i], alone=False))
        ring = ";outline:2px solid #000" if i == position else ""
        spans.append(f'<span style="background:{colour_of(values[i], vmin, vmax)}{ring}" '
                     f'title="{values[i]:+.3f}">{ch}</span>')
    pad = " " * (before - (position - a))   # the character lines up with the others' in a column
    return ('<code style="white-space:pre;font-family:\'DejaVu Sans Mono\',monospace;font-size:12px">'
            + pad + "".join(spans) + "</code>")


def _table(df, floats: str = "{:.3f}") -> str:
    return df.to_html(index=False, border=0, float_format=floats.format, classes="vurn-table")


class NeuronPage(ipywidgets.VBox):
    """One unit of a trace on a page; ``layer``, ``unit`` and ``what`` pick it, the buttons page.

    ``profile`` holds the :class:`lab.neurons.NeuronProfile` on show.

        >>> from lab import Session
        >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said, "Yes." Then he left.')
        >>> page = NeuronPage(tr, layer=1, unit=283)
        >>> page.profile
        NeuronProfile(layer 1, unit 283, cell: 29 chars, mean +0.28, range [-0.91, +0.93])
        >>> page.unit = 12; page.profile.unit               # a trait change redraws the page
        12
    """

    layer = traitlets.Int(0)
    unit = traitlets.Int(0)
    what = traitlets.Unicode("cell")

    def __init__(self, trace, layer: int | None = None, unit: int = 0, what: str | None = None, **kw):
        layer = trace.n_layers - 1 if layer is None else layer
        what = trace.memory if what is None else what   # tanh(c) for an LSTM, h for an RNN or GRU
        trace.unit(layer, unit, what)   # a clear error for a bad layer, unit or gate
        self.trace = trace
        self._rankings: dict = {}
        self.profile = None
        self._prev = ipywidgets.Button(description="\u25c0 previous", layout=ipywidgets.Layout(width="110px"))
        self._next = ipywidgets.Button(description="next \u25b6", layout=ipywidgets.Layout(width="110px"))
        self._title = ipywidgets.HTML()
        self._body = ipywidgets.HTML()
        self._prev.on_click(lambda _: self.step(-1))
        self._next.on_click(lambda _: self.step(+1))
        super().__init__([ipywidgets.HBox([self._prev, self._next, self._title]), self._body], **kw)
        self.add_class("vurn-neuron-page")
        self.set_trait("what", what)
        self.set_trait("layer", layer)
        self.unit = unit
        self._show()
        self.observe(lambda _: self._show(), names=["layer", "unit", "what"])

    def __repr__(self) -> str:
        return f"NeuronPage(layer {self.layer}, unit {self.unit}, {self.what})"

    @traitlets.validate("layer", "unit", "what")
    def _valid(self, proposal):
        current = {"layer": self.layer, "unit": self.unit, "what": self.what, proposal["trait"].name: proposal["value"]}
        try:
            self.trace.unit(current["layer"], current["unit"], current["what"])
        except (IndexError, KeyError) as e:
            raise traitlets.TraitError(str(e).strip('"')) from None
        return proposal["value"]

    def step(self, by: int) -> None:
        """Go ``by`` units on (negative: back), into the next or previous layer at the ends.

            >>> from lab import Session
            >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said, "Yes."')
            >>> page = NeuronPage(tr, layer=0, unit=306)        # the last unit of layer 0
            >>> page.step(1); page                              # what the "next" button does
            NeuronPage(layer 1, unit 0, cell)
            >>> page.step(-3); page
            NeuronPage(layer 0, unit 304, cell)
        """
        flat = (self.layer * self.trace.width + self.unit + by) % (self.trace.n_layers * self.trace.width)
        layer, unit = divmod(flat, self.trace.width)
        with self.hold_trait_notifications():
            if layer != self.layer:
                self.unit = 0          # valid in every layer while the layer changes
                self.layer = layer
            self.unit = unit

    def link(self, other) -> NeuronPage:
        """Keep ``other`` (a :class:`widgets.TextColourer`, say) on the same layer and unit, both ways.

            >>> from lab import Session
            >>> from widgets import TextColourer
            >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said, "Yes."')
            >>> colourer = TextColourer(tr, layer=1, unit=0)
            >>> page = NeuronPage(tr, layer=1, unit=283).link(colourer)
            >>> colourer.unit                      # follows the page at once
            283
            >>> colourer.unit = 12; page.unit      # and the page follows it back
            12
        """
        self._links = [traitlets.link((self, "layer"), (other, "layer")),
                       traitlets.link((self, "unit"), (other, "unit"))]
        return self

    def _show(self) -> None:
        p = self.profile = profile(self.trace, self.layer, self.unit, self.what, rankings=self._rankings)
        v = p.values
        self._title.value = (f"<b>layer {p.layer}, unit {p.unit}</b> &nbsp; {html.escape(p.what)}"
                             f"{' tanh(c)' if p.what == 'cell' else ''} over {len(v):,} characters: "
                             f"mean {np.nanmean(v):+.2f}, sd {np.nanstd(v):.2f}")

        lo, hi = value_range(p.what)   # a gate on 0..1 (white at 0.5), the rest on -1..1

        def examples(df):
            return "".join(f'<div>{snippet_html(self.trace.text, v, r.position, vmin=lo, vmax=hi)} &nbsp; '
                           f'{r.value:+.3f}</div>' for r in df.itertuples())

        quantiles = "".join(
            f'<div style="margin-top:4px"><i>bin {b}: {g.low.iloc[0]:+.2f} .. {g.high.iloc[0]:+.2f}</i></div>'
            + examples(g) for b, g in p.quantiles.groupby("bin"))
        sat = _table(p.saturation) if len(p.saturation) else "<i>no gates (an RNN)</i>"
        self._body.value = (
            '<div style="display:flex;gap:24px;flex-wrap:wrap;font-size:12px">'
            f'<div><b>histogram</b><br>{histogram_svg(p.histogram, vmin=lo, vmax=hi)}<br><b>gate saturation</b> '
            f'(&lt; 0.1 left, &gt; 0.9 right){sat}</div>'
            f'<div><b>hypotheses</b> (rank among {self.trace.width} units){_table(p.hypotheses)}</div></div>'
            f'<div style="font-size:12px"><b>most on</b>{examples(p.top)}<b>most off</b>{examples(p.bottom)}'
            f'<b>examples from each quantile</b>{quantiles}</div>')
