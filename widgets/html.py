"""Static HTML export of text coloured by one unit: the paper's red-white-blue pictures.

Each character is a ``<span>`` whose background goes from red (``vmin``) through white
(the midpoint) to blue (``vmax``), with its value in a ``title`` tooltip. Newlines are
kept (``white-space: pre-wrap``), the text is HTML-escaped, and nothing is loaded
from the network: the result is a self-contained string you can save or display.

    >>> html = colour_text("a<b", [-1.0, 0.0, 1.0])
    >>> "&lt;" in html and "background:#ff0000" in html and "background:#0000ff" in html
    True
    >>> ColouredText("hi", [0.5, -0.5])
    ColouredText(2 chars, vmin=-1, vmax=1)
"""
from __future__ import annotations

import html as _html
import math

import numpy as np

__all__ = ["ColouredText", "colour_of", "colour_text", "visible"]

# how invisible characters are drawn: in running text a space stays a space; alone (a
# label, a list of predictions) it is shown too
IN_TEXT = {"\n": "\u21b5", "\t": "\u2192"}
ALONE = {**IN_TEXT, " ": "\u2423"}


def visible(ch: str, alone: bool = True) -> str:
    """A character as vurn draws it: newline \u21b5, tab \u2192, and (alone) space \u2423.

        >>> visible("\\n"), visible(" "), visible(" ", alone=False), visible("a")
        ('\u21b5', '\u2423', ' ', 'a')
    """
    return (ALONE if alone else IN_TEXT).get(ch, ch)

RED = (255, 0, 0)       # vmin
WHITE = (255, 255, 255)  # midpoint
BLUE = (0, 0, 255)      # vmax
DARK = 0.6               # beyond this fraction of the way to red or blue, the text turns white


def _position(value: float, vmin: float, vmax: float) -> float:
    """Where ``value`` lies on the scale, as -1 (vmin) .. 0 (midpoint) .. +1 (vmax), clipped."""
    if math.isnan(value):
        return 0.0
    return max(-1.0, min(1.0, 2.0 * (value - vmin) / (vmax - vmin) - 1.0))


def colour_of(value: float, vmin: float = -1.0, vmax: float = 1.0) -> str:
    """The background colour of ``value`` as ``#rrggbb`` (NaN is white).

        >>> colour_of(-1.0), colour_of(0.0), colour_of(1.0), colour_of(0.5)
        ('#ff0000', '#ffffff', '#0000ff', '#8080ff')
    """
    p = _position(float(value), vmin, vmax)
    end = BLUE if p > 0 else RED
    rgb = (round(w + abs(p) * (e - w)) for w, e in zip(WHITE, end))
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _check(text: str, values, vmin: float, vmax: float) -> np.ndarray:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be one number per character (1-D), got shape {values.shape}")
    if len(values) != len(text):
        raise ValueError(f"{len(text)} characters but {len(values)} values: give one value per character")
    if not vmin < vmax:
        raise ValueError(f"vmin must be below vmax, got vmin={vmin} and vmax={vmax}")
    return values


def colour_text(text: str, values, vmin: float = -1.0, vmax: float = 1.0, caption: str | None = None) -> str:
    """``text`` as HTML, each character's background coloured by its value.

    ``values`` holds one number per character (for example ``trace.unit(1, 283)``, a
    cell's tanh(c)): ``vmin`` is red, the midpoint white, ``vmax`` blue; values outside
    are clipped, NaN is white. ``caption`` (plain text) goes above the coloured text.

        >>> print(colour_text("<b>", [-1, 0, 1]))  # doctest: +ELLIPSIS
        <div class="vurn-coloured-text" ...><span style="background:#ff0000;color:#fff" title="-1.000">&lt;</span><span style="background:#ffffff" title="0.000">b</span><span style="background:#0000ff;color:#fff" title="1.000">&gt;</span></div>
    """
    values = _check(text, values, vmin, vmax)
    spans = []
    for ch, v in zip(text, values):
        colour = colour_of(v, vmin, vmax)
        ink = ";color:#fff" if abs(_position(v, vmin, vmax)) > DARK else ""
        spans.append(f'<span style="background:{colour}{ink}" title="{v:.3f}">{_html.escape(ch)}</span>')
    head = f'<div class="vurn-caption" style="font-size:90%;margin-bottom:4px">{_html.escape(caption)}</div>' \
        if caption else ""
    return (f'{head}<div class="vurn-coloured-text" style="white-space:pre-wrap;font-family:monospace;'
            f'line-height:1.45;color:#000">' + "".join(spans) + "</div>")


class ColouredText:
    """Text coloured by one value per character, shown as HTML in Jupyter.

    ``ColouredText(text, values)`` displays like :func:`colour_text` (its arguments are
    the same); ``.html`` is the HTML string, for saving to a file.

        >>> ct = ColouredText("Hi!", [-1, 0, 1], caption="a unit")
        >>> ct
        ColouredText(3 chars, vmin=-1, vmax=1)
        >>> ct._repr_html_() == ct.html
        True
    """

    def __init__(self, text: str, values, vmin: float = -1.0, vmax: float = 1.0, caption: str | None = None):
        self.values = _check(text, values, vmin, vmax)
        self.text, self.vmin, self.vmax, self.caption = text, vmin, vmax, caption

    @property
    def html(self) -> str:
        """The HTML string (the caption first, when there is one), to save to a file.

            >>> ColouredText("a<b", [-1, 0, 1], caption="unit 283").html[:80]
            '<div class="vurn-caption" style="font-size:90%;margin-bottom:4px">unit 283</div>'
            >>> ColouredText("a<b", [-1, 0, 1]).html.count("<span")
            3
        """
        return colour_text(self.text, self.values, self.vmin, self.vmax, self.caption)

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"ColouredText({len(self.text):,} chars, vmin={self.vmin:g}, vmax={self.vmax:g})"
