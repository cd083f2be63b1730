"""The text colourer: a trace's text coloured by one unit (paper §4.2, Figure 2).

    >>> from lab import Session
    >>> from widgets import TextColourer
    >>> s = Session.load("war_and_peace_lstm")                      # doctest: +SKIP
    >>> w = TextColourer(s.trace('"Yes," he said. "I will."'), layer=1, unit=0)   # doctest: +SKIP
    >>> w                                                            # doctest: +SKIP

The default is the model's memory: an LSTM cell's tanh(c) (-1 red, +1 blue), or the
hidden state of an RNN or GRU; ``what="hidden"`` or a gate name shows the others. A layer's values go to the browser once, as float16 bytes, so the
unit slider recolours instantly; a trace too long for that sends one unit at a time.

Select a span of text with the mouse (LSTMVis's workflow): the units that are on inside
it and off around it are found, with a suggested threshold, and every other span where
they fire is underlined; ``w.span_query`` holds the result (:func:`lab.cells.query_span`),
with precision and recall against the hypothesis that fits the selection. ``stack``
adds more units as bands under each character; :func:`side_by_side` puts colourers in a
row; :meth:`TextColourer.save` writes HTML, PNG or SVG.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

import anywidget
import numpy as np
import traitlets

from lab.checks import is_integer
from lab.gates import value_range

HERE = Path(__file__).resolve().parent
SEND_ALL_UNITS_BELOW = 48 * 2**20  # bytes of float16 per layer; above, one unit at a time


class TextColourer(anywidget.AnyWidget):
    """Text coloured by the value of one unit of a :class:`lab.trace.Trace`.

    ``selection`` holds the [start, end) character span the user last selected.

        >>> from lab import Session
        >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said, "Yes." Then he left.')
        >>> w = TextColourer(tr, layer=1, unit=283)     # the quote cell
        >>> w
        TextColourer(29 chars, layer 1, unit 283, cell)
        >>> w.what = "forget"; w.label, (w.vmin, w.vmax)  # a trait change recolours the text, a gate on 0..1
        ('forget · layer 1', (0.0, 1.0))
    """

    _esm = HERE / "colourer.js"
    _css = HERE / "colourer.css"

    text = traitlets.Unicode("").tag(sync=True)
    vocab = traitlets.Unicode("").tag(sync=True)
    values = traitlets.Bytes(b"").tag(sync=True)          # float16, (units, chars) row-major
    loaded_unit = traitlets.Int(-1).tag(sync=True)        # which unit `values` holds when it holds one
    topk_ids = traitlets.Bytes(b"").tag(sync=True)        # uint8 (chars, top_k)
    topk_probs = traitlets.Bytes(b"").tag(sync=True)      # uint8 (chars, top_k), probability x 255
    top_k = traitlets.Int(5).tag(sync=True)
    n_layers = traitlets.Int(1).tag(sync=True)
    width = traitlets.Int(1).tag(sync=True)
    layer = traitlets.Int(0).tag(sync=True)
    unit = traitlets.Int(0).tag(sync=True)
    what = traitlets.Unicode("cell").tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)
    vmin = traitlets.Float(-1.0).tag(sync=True)
    vmax = traitlets.Float(1.0).tag(sync=True)
    height = traitlets.Int(360).tag(sync=True)
    selection = traitlets.List(traitlets.Int(), default_value=[]).tag(sync=True)
    stack = traitlets.List(traitlets.Tuple(traitlets.Int(), traitlets.Int()), default_value=[]).tag(sync=True)
    stack_values = traitlets.Bytes(b"").tag(sync=True)    # float16 (len(stack), chars): extra bands
    matches = traitlets.Bytes(b"").tag(sync=True)         # int32 [start, end) pairs to underline
    query_text = traitlets.Unicode("").tag(sync=True)     # what the span query found, in words
    find_units = traitlets.Bool(True)                     # run the span query on each selection
    series = traitlets.List(traitlets.Unicode(), default_value=[]).tag(sync=True)  # names: hover shows them all
    scroll_to = traitlets.Int(-1).tag(sync=True)          # a character to bring into view

    def __init__(self, trace, layer: int | None = None, unit: int = 0, what: str | None = None, **kw):
        self.trace = trace
        what = trace.memory if what is None else what   # tanh(c) for an LSTM, h for an RNN or GRU
        # the scale follows what is shown (a gate on 0..1, white at 0.5) unless a range is given
        auto_range = "vmin" not in kw and "vmax" not in kw
        kw.setdefault("vmin", value_range(what)[0])
        kw.setdefault("vmax", value_range(what)[1])
        _check_range(kw["vmin"], kw["vmax"])
        if len(trace.vocab) > 256:
            raise ValueError(f"the colourer's hover sends character ids as bytes: at most 256 characters, "
                             f"this trace's vocabulary has {len(trace.vocab)}")
        layer = trace.n_layers - 1 if layer is None else layer
        self._check(layer, unit, what)
        top = trace["topk.ids"]
        super().__init__(
            text=trace.text, vocab="".join(trace.vocab), n_layers=trace.n_layers, width=trace.width,
            top_k=top.shape[1], topk_ids=top.astype(np.uint8).tobytes(),
            topk_probs=np.round(np.nan_to_num(trace["topk.probs"].astype(np.float32)) * 255).astype(np.uint8).tobytes(),
            layer=layer, unit=unit, what=what, **kw)
        self.span_query = None
        self._auto_range = auto_range
        self._send_values()
        self._send_stack()
        self.observe(self._on_layer, names=["layer", "what"])
        self.observe(self._on_unit, names=["unit"])
        self.observe(lambda _: self._send_stack(), names=["stack", "what"])
        self.observe(self._on_selection, names=["selection"])

    @classmethod
    def from_arrays(cls, text: str, series: dict, vmin: float = -1.0, vmax: float = 1.0, ranges: dict | None = None,
                    **kw) -> "TextColourer":
        """Colour ``text`` by any per-character numbers: ``series`` maps a name to (T,) values.

        The slider picks the series; hovering a character shows every series' value. Each
        series is coloured on ``vmin``..``vmax``, or on its own (low, high) in ``ranges``.

            >>> w = TextColourer.from_arrays("ab", {"LSTM": [0.9, 0.2], "LSTM - 5-gram": [0.4, -0.2]}, -1, 1,
            ...                              ranges={"LSTM": (0, 1)})
            >>> w.series, [round(float(v), 2) for v in w.unit_values()], (w.vmin, w.vmax)
            (['LSTM', 'LSTM - 5-gram'], [0.9, 0.2], (0.0, 1.0))
            >>> w.unit = 1; w.label, (w.vmin, w.vmax)
            ('LSTM - 5-gram', (-1.0, 1.0))
        """
        ranges = {name: ranges.get(name, (vmin, vmax)) for name in series} if ranges else {}
        for name, pair in ranges.items():
            _check_range(*pair)
        first = ranges.get(next(iter(series), None), (vmin, vmax))
        w = cls(ArrayTrace(text, series), layer=0, unit=0, what="hidden", vmin=first[0], vmax=first[1], **kw)
        w.series = list(series)
        w.find_units = False            # series are not units: a selection has nothing to look for
        w.label = w.series[0]

        def on_series(change):
            name = w.series[change["new"]]
            with w.hold_trait_notifications():
                w.label = name
                if ranges:
                    w.vmin, w.vmax = ranges[name]
        w.observe(on_series, names=["unit"])
        return w

    def __repr__(self) -> str:
        return f"TextColourer({len(self.text):,} chars, layer {self.layer}, unit {self.unit}, {self.what})"

    def _check(self, layer: int, unit: int, what: str) -> None:
        self.trace.unit(layer, unit, what)  # raises a clear error for a bad layer, unit or gate

    @traitlets.validate("vmin", "vmax")
    def _valid_range(self, proposal):
        if hasattr(self, "span_query"):   # after __init__, which checks the pair it is given
            other = {"vmin": self.vmax, "vmax": self.vmin}[proposal["trait"].name]
            pair = (proposal["value"], other) if proposal["trait"].name == "vmin" else (other, proposal["value"])
            try:
                _check_range(*pair)
            except ValueError as e:
                raise traitlets.TraitError(str(e)) from None
        return proposal["value"]

    @traitlets.validate("unit", "layer", "what")
    def _valid(self, proposal):
        trait, value = proposal["trait"].name, proposal["value"]
        if hasattr(self, "trace"):
            current = {"layer": self.layer, "unit": self.unit, "what": self.what, trait: value}
            try:
                self._check(current["layer"], current["unit"], current["what"])
            except (IndexError, KeyError) as e:
                raise traitlets.TraitError(str(e).strip('"')) from None
        return value

    def _matrix(self) -> np.ndarray:
        """The current layer's values as (units, chars) float16 (tanh applied to the cell)."""
        m = self.trace.values(self.layer, self.what)
        return np.ascontiguousarray(m.T).astype(np.float16)

    def _send_values(self) -> None:
        per_layer = len(self.text) * self.width * 2
        if not isinstance(self.trace, ArrayTrace):
            self.label = f"{self.what}{' tanh(c)' if self.what == 'cell' else ''} · layer {self.layer}"
        if per_layer <= SEND_ALL_UNITS_BELOW:
            self.loaded_unit = -1
            self.values = self._matrix().tobytes()
        else:
            self._send_unit()

    def _send_unit(self) -> None:
        self.values = self.unit_values().astype(np.float16).tobytes()
        self.loaded_unit = self.unit

    def _on_layer(self, change) -> None:
        self._check(self.layer, self.unit, self.what)
        if self._auto_range:
            with self.hold_trait_notifications():
                self.vmin, self.vmax = value_range(self.what)
        self._send_values()

    def _on_unit(self, change) -> None:
        self._check(self.layer, self.unit, self.what)
        if self.loaded_unit != -1:
            self._send_unit()

    @traitlets.validate("stack")
    def _valid_stack(self, proposal):
        for layer, unit in proposal["value"]:
            try:
                self.trace.unit(layer, unit, self.what)
            except (IndexError, KeyError) as e:
                raise traitlets.TraitError(str(e).strip('"')) from None
        return proposal["value"]

    def _stack_matrix(self) -> np.ndarray:
        return np.stack([self.trace.unit(layer, unit, self.what) for layer, unit in self.stack]) \
            if self.stack else np.zeros((0, len(self.text)), np.float32)

    def _send_stack(self) -> None:
        self.stack_values = self._stack_matrix().astype(np.float16).tobytes()

    def _on_selection(self, change) -> None:
        if not self.find_units or len(self.selection) != 2:
            return
        self.query(*self.selection)

    def query(self, start: int, end: int, **kw):
        """Run the span query on [start, end) (as a mouse selection does) and show its matches.

        Keyword arguments go to :func:`lab.cells.query_span` (``layers``, ``threshold``,
        ``tolerance``, ``min_length``, ``hypothesis``...). Returns the :class:`lab.cells.SpanQuery`.

            >>> from lab import Session
            >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said, "Yes." Then he left.')
            >>> w = TextColourer(tr)
            >>> q = w.query(9, 15)                           # select '"Yes."'
            >>> print(w.query_text)
            selection 9-15: units 1:283-, 1:64- on at +0.06; 2 matches (underlined);
            vs inside_quotes: precision 1.00, recall 0.83
        """
        from lab.cells import query_span
        q = query_span(self.trace, (start, end), what=self.what, **kw)
        self.span_query = q
        self.matches = q.matches[["start", "end"]].to_numpy(np.int32).tobytes()
        if len(q.units) == 0:
            self.query_text = (f"selection {start}-{end}: no unit is on throughout it and off around it; "
                               "try a longer span, or a tolerance")
        else:
            units = ", ".join(f"{r.layer}:{r.unit}{'+' if r.sign > 0 else '-'}" for r in q.units.head(6).itertuples())
            more = f" (+{len(q.units) - 6})" if len(q.units) > 6 else ""
            ref = (f"; vs {q.hypothesis}: precision {q.precision:.2f}, recall {q.recall:.2f}"
                   if q.hypothesis else "")
            self.query_text = (f"selection {start}-{end}: units {units}{more} on at {q.threshold:+.2f}; "
                               f"{len(q.matches)} matches (underlined){ref}")
        return q

    def unit_values(self) -> np.ndarray:
        """The shown unit's values over the text (T,), as coloured.

            >>> w = TextColourer.from_arrays("abc", {"LSTM": [0.9, 0.5, 0.1], "5-gram": [0.4, 0.4, 0.2]}, 0, 1)
            >>> w.unit = 1; print(w.label, w.unit_values())
            5-gram [0.4 0.4 0.2]
        """
        return self.trace.unit(self.layer, self.unit, self.what)

    def save(self, path: str | Path, start: int = 0, end: int | None = None, **kw) -> str:
        """Save the text [start, end) coloured as shown (the unit, then any stacked ones).

        The suffix picks the format: ``.html`` (standalone page), ``.png``, ``.svg`` or
        ``.pdf`` (for papers; see :func:`widgets.export.save_coloured_text`). Returns the path.

            >>> import pathlib, tempfile
            >>> w = TextColourer.from_arrays('say "hi"', {"unit": [0, 0, 0, 0, 1, 1, 1, 1]})
            >>> path = w.save(pathlib.Path(tempfile.mkdtemp()) / "quote.png", 3, 8)
            >>> open(path, "rb").read(4)
            b'\\x89PNG'
        """
        path = Path(path)
        start, end = self._span(start, end)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"cannot save {path}: the folder {path.parent} does not exist; create it first")
        if path.suffix.lower() in (".html", ".htm"):
            self.to_html(path, start, end)
            return str(path)
        from widgets.export import save_coloured_text
        values = np.concatenate([self.unit_values()[None], self._stack_matrix()])[:, start:end]
        caption = f"{self.label}, unit {self.unit}" + "".join(f"; {l}:{u}" for l, u in self.stack)
        return save_coloured_text(path, self.text[start:end], values, self.vmin, self.vmax, caption=caption, **kw)

    def _span(self, start, end) -> tuple[int, int]:
        """[start, end) checked against the text (end None: to its end)."""
        end = len(self.text) if end is None else end
        if not (is_integer(start) and is_integer(end) and 0 <= start < end <= len(self.text)):
            raise ValueError(f"cannot save characters [{start}, {end}): give 0 <= start < end <= "
                             f"{len(self.text):,} (the text's length)")
        return int(start), int(end)

    def to_html(self, path: str | Path | None = None, start: int = 0, end: int | None = None) -> str:
        """A standalone HTML page of the text coloured by the current unit, then by each stacked
        one in a block of its own (no scripts, no network).

            >>> w = TextColourer.from_arrays("a<b", {"unit": [-1, 0, 1], "other": [1, 1, 1]})
            >>> page = w.to_html()
            >>> page.count("<span"), "&lt;" in page, "<script" in page
            (3, True, False)
            >>> w.stack = [(0, 1)]
            >>> w.to_html().count("<span"), "stacked: 0:1" in w.to_html()
            (6, True)
        """
        from widgets.html import colour_text
        start, end = self._span(start, end)
        body = colour_text(self.text[start:end], self.unit_values()[start:end], self.vmin, self.vmax)
        for (layer, unit), values in zip(self.stack, self._stack_matrix()):
            body += "<br>" + colour_text(self.text[start:end], values[start:end], self.vmin, self.vmax,
                                         caption=f"stacked: {layer}:{unit}")
        page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(self.label)} unit {self.unit}</title>"
                f"<h3 style='font-family:sans-serif'>{html.escape(self.label)}, unit {self.unit}</h3>{body}")
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page


def _check_range(vmin, vmax) -> None:
    if not (math.isfinite(vmin) and math.isfinite(vmax) and vmin < vmax):
        raise ValueError(f"vmin must be below vmax, both finite: got vmin={vmin} and vmax={vmax}")


class ArrayTrace:
    """Named per-character series dressed as a one-layer trace, so the colourer can show them.

        >>> tr = ArrayTrace("abc", {"LSTM": [0.9, 0.5, 0.1], "5-gram": [0.4, 0.4, 0.2]})
        >>> tr.width, tr.vocab                    # one "unit" per series
        (2, ('a', 'b', 'c'))
    """

    n_layers = 1
    memory = "hidden"   # what the colourer shows by default: the series themselves

    def __init__(self, text: str, series: dict):
        if not series:
            raise ValueError("give at least one series: a name and one value per character")
        self.text = text
        self.vocab = tuple(sorted(set(text)))
        arrays = []
        for name, v in series.items():
            v = np.asarray(v, dtype=np.float32)
            if v.shape != (len(text),):
                raise ValueError(f"series {name!r} has shape {v.shape}: give one value per character "
                                 f"({len(text)})")
            arrays.append(v)
        self._matrix = np.stack(arrays, 1)
        self.width = len(arrays)

    def __getitem__(self, key):
        if key in ("topk.ids", "topk.probs"):   # no model behind these numbers: no predictions
            return np.zeros((len(self.text), 0), dtype=np.float32)
        raise KeyError(key)

    def values(self, layer: int, what: str = "hidden", unit: int | None = None) -> np.ndarray:
        """All series as (T, series) (``what`` is ignored), or one series (T,) when ``unit`` is given.

            >>> tr = ArrayTrace("abc", {"LSTM": [0.9, 0.5, 0.1], "5-gram": [0.4, 0.4, 0.2]})
            >>> tr.values(0).shape
            (3, 2)
        """
        if layer != 0:
            raise IndexError(f"layer {layer} does not exist: series have one layer, 0")
        if unit is not None and not 0 <= unit < self.width:
            raise IndexError(f"unit {unit} does not exist: there are series 0..{self.width - 1}")
        return self._matrix if unit is None else self._matrix[:, unit]

    def unit(self, layer: int, unit: int, what: str = "hidden") -> np.ndarray:
        """Series number ``unit`` (T,); the layer is always 0.

            >>> tr = ArrayTrace("abc", {"LSTM": [0.9, 0.5, 0.1], "5-gram": [0.4, 0.4, 0.2]})
            >>> print(tr.unit(0, 1))
            [0.4 0.4 0.2]
        """
        return self.values(layer, what, unit)


def side_by_side(trace, units, what: str | None = None, height: int = 300, **kw):
    """Colourers for several (layer, unit) pairs in a row, each with its own sliders.

        >>> from lab import Session
        >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said, "Yes."')
        >>> row = side_by_side(tr, [(1, 283), (1, 12)])
        >>> [(w.layer, w.unit) for w in row.children]
        [(1, 283), (1, 12)]
    """
    import ipywidgets
    units = list(units)
    if not units:
        raise ValueError("give at least one (layer, unit) pair")
    row = ipywidgets.HBox([TextColourer(trace, layer=l, unit=u, what=what, height=height, **kw)
                           for l, u in units])
    for w in row.children:
        w.layout = ipywidgets.Layout(flex="1 1 0", min_width="0")
    return row
