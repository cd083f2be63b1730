"""Where the LSTM beats the n-gram (paper §4.3), clickable: a bar per category, its examples in the text.

:class:`CompareBars` draws one bar per category (a character, a distance bin) at the
difference between two models' mean probability of the correct character, with both
means and the count on hover. A tap on a bar underlines the category's characters in a
text colourer that shows both models' probabilities (hover a character for both), and
scrolls to the first. ``selected`` and ``examples`` hold the choice for Python.

    >>> import numpy as np
    >>> text = "ab\\nab\\n"
    >>> p_lstm, p_ngram = np.array([.9, .8, .9, .7, .9]), np.array([.5, .2, .5, .6, .2])
    >>> bars = character_bars(text, p_lstm, p_ngram, names=("LSTM", "20-gram"))
    >>> bars.select("\\n"); bars.selected, bars.examples.tolist()
    ('\\n', [2, 5])
"""
from __future__ import annotations

import ipywidgets
import numpy as np
import pandas as pd
import traitlets
from bokeh.models import ColumnDataSource, HoverTool, TapTool
from bokeh.plotting import figure
from jupyter_bokeh import BokehModel

from lab.longrange import binned_braces, by_character
from widgets.colourer import TextColourer
from widgets.html import visible


def _aligned(p) -> np.ndarray:
    """p[i] = P(text[i + 1]) moved onto the character it scores: (T,), NaN at character 0."""
    return np.r_[np.nan, np.asarray(p, dtype=np.float32)]


class CompareBars(ipywidgets.VBox):
    """Bars of ``table`` (columns label, count, p_a, p_b, difference); a tap shows that bar's
    ``positions[label]`` (character indices of ``text``) in a colourer of both models' probabilities.

    ``p_a[i]`` and ``p_b[i]`` are the two models' probabilities of ``text[i + 1]``.

        >>> import pandas as pd
        >>> table = pd.DataFrame({"label": ["vowel", "consonant"], "count": [1, 2], "p_a": [0.9, 0.6],
        ...                       "p_b": [0.5, 0.5], "difference": [0.4, 0.1]})
        >>> bars = CompareBars("abab", [0.6, 0.9, 0.6], [0.5, 0.5, 0.5], table, {"vowel": [2], "consonant": [1, 3]})
        >>> bars.select("consonant"); bars
        CompareBars(2 bars, selected 'consonant', 2 examples)
        >>> bars.colourer.series                    # hover a character for all three
        ['LSTM - 20-gram', 'LSTM', '20-gram']
    """

    selected = traitlets.Unicode("")

    def __init__(self, text: str, p_a, p_b, table: pd.DataFrame, positions: dict, names=("LSTM", "20-gram"),
                 title: str = "", x_label: str = "", height: int = 300, name: str = "bars"):
        missing = {"label", "count", "p_a", "p_b", "difference"} - set(table.columns)
        if missing:
            raise ValueError(f"the table lacks columns {sorted(missing)}")
        if not len(table):
            raise ValueError("there is nothing to draw: the table has no bars (too high a min_count, or a text "
                             "without what the bars count?)")
        self.table, self.positions, self.names = table.reset_index(drop=True), positions, names
        self.examples = np.array([], dtype=np.int64)
        a, b = _aligned(p_a), _aligned(p_b)
        diff = f"{names[0]} - {names[1]}"
        # the difference on -1..1 (white: a tie); each model's probability on 0..1 (red: a miss, blue: a hit)
        self.colourer = TextColourer.from_arrays(
            text, {diff: a - b, names[0]: a, names[1]: b}, vmin=-1, vmax=1, height=height,
            ranges={diff: (-1.0, 1.0), names[0]: (0.0, 1.0), names[1]: (0.0, 1.0)})
        shown = [visible(x) for x in self.table.label]
        self.source = ColumnDataSource({"x": shown, "label": list(self.table.label), "count": self.table["count"],
                                        "a": self.table.p_a, "b": self.table.p_b, "d": self.table.difference})
        # replace: a tap chooses that bar, a second tap keeps it (Bokeh's default, toggle, would drop it)
        fig = figure(x_range=shown, height=260, width=900, title=title, tools=[TapTool(mode="replace"), "reset"],
                     name=name,
                     toolbar_location="right", y_axis_label=f"mean P(correct): {names[0]} - {names[1]}",
                     x_axis_label=x_label)
        fig.vbar(x="x", top="d", width=0.8, source=self.source, color="#4a72b0",
                 nonselection_alpha=0.35, selection_color="#d62728")
        fig.add_tools(HoverTool(tooltips=[("", "@label"), ("count", "@count"), (names[0], "@a{0.000}"),
                                          (names[1], "@b{0.000}"), ("difference", "@d{+0.000}")]))
        fig.xaxis.major_label_orientation = 0.9 if len(shown) > 30 else 0
        self.figure = fig
        self.source.selected.on_change("indices", self._on_indices)
        self.chart = BokehModel(fig)
        super().__init__([self.chart, self.colourer])
        self.observe(self._on_selected, names=["selected"])

    def __repr__(self) -> str:
        return f"CompareBars({len(self.table)} bars, selected {self.selected!r}, {len(self.examples)} examples)"

    def select(self, label: str) -> None:
        """Choose a bar from Python, as a tap does.

            >>> bars = character_bars("abab", [0.6, 0.9, 0.6], [0.5, 0.5, 0.5])
            >>> bars.select("b"); bars.examples.tolist(), bars.colourer.scroll_to
            ([1, 3], 1)
        """
        rows = np.flatnonzero(self.table.label.to_numpy() == label)
        if not len(rows):
            raise KeyError(f"no bar {label!r}; bars: {', '.join(map(repr, self.table.label[:20]))}...")
        self.source.selected.indices = [int(rows[0])]
        if self.selected == label:
            self._show()          # chosen again: scroll to its first example again
        self.selected = label

    def _on_indices(self, attr, old, new) -> None:
        # a tap in empty space clears the selection in the browser: clear the underlines too
        self.selected = str(self.table.label[new[0]]) if new else ""

    def _on_selected(self, change) -> None:
        self._show()

    def _show(self) -> None:
        self.examples = np.asarray(self.positions.get(self.selected, []), dtype=np.int64)
        pairs = np.stack([self.examples, self.examples + 1], 1).astype(np.int32)
        self.colourer.matches = pairs.tobytes()
        if len(self.examples):
            self.colourer.scroll_to = -1            # a repeated tap scrolls again
            self.colourer.scroll_to = int(self.examples[0])


def character_bars(text: str, p_a, p_b, names=("LSTM", "20-gram"), min_count: int = 1, **kw) -> CompareBars:
    """Mean probability of each character under both models (sorted by the difference), clickable.

        >>> bars = character_bars("abab", [0.6, 0.9, 0.6], [0.5, 0.5, 0.5], names=("LSTM", "5-gram"))
        >>> bars.table[["label", "count", "difference"]].round(2).values.tolist()
        [['a', 1, 0.4], ['b', 2, 0.1]]
    """
    table = by_character(text, p_a, p_b, min_count).rename(columns={"char": "label"})
    chars = np.array(list(text))
    positions = {c: np.flatnonzero(chars == c)[np.flatnonzero(chars == c) > 0] for c in table.label}
    kw.setdefault("name", "bars-characters")
    return CompareBars(text, p_a, p_b, table, positions, names,
                       title=f"Which characters {names[0]} predicts better than {names[1]}", **kw)


def brace_bars(text: str, p_a, p_b, names=("LSTM", "20-gram"),
               edges=(0, 5, 10, 20, 40, 60, 80, 100, 150, 200, 400, 10**9), **kw) -> CompareBars:
    """Each closing brace's probability under both models, binned by the distance to its ``{``.

        >>> import numpy as np
        >>> text = "{a}{bbbbbb}"                 # closing braces 2 and 7 characters after their {
        >>> p_lstm, p_ngram = np.full(10, 0.5), np.full(10, 0.5)
        >>> p_ngram[9] = 0.1                     # the n-gram misses the far brace
        >>> bars = brace_bars(text, p_lstm, p_ngram, edges=(0, 5, 100))
        >>> bars.table[["label", "count", "difference"]].round(2).values.tolist()
        [['[0, 5)', 1, 0.0], ['[5, 100)', 1, 0.4]]
    """
    df = binned_braces(text, p_a, p_b, edges)
    g = df.groupby("bin", observed=True)

    def label(b):   # the open-ended last bin reads "≥ 400", not "[400, 1000000000)"
        return f"\u2265 {b.left:g}" if b.right >= 10**9 else str(b)
    table = pd.DataFrame({"label": [label(b) for b in g.groups], "count": g.size().to_numpy(),
                          "p_a": g.p_a.mean().to_numpy(), "p_b": g.p_b.mean().to_numpy()})
    table["difference"] = table.p_a - table.p_b
    positions = {label(b): rows.position.to_numpy() for b, rows in g}
    kw.setdefault("name", "bars-braces")
    return CompareBars(text, p_a, p_b, table, positions, names, x_label="distance to the matching {",
                       title=f"Closing braces: {names[0]} against {names[1]}, by distance to the {{", **kw)
