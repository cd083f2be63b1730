"""Coloured text as a figure for a paper: PNG or SVG (vector), drawn with matplotlib.

The picture is the colourer's: one cell per character on a monospaced grid, its
background red (``vmin``) through white to blue (``vmax``), lines as in the text. With
several units (``values`` of shape (k, T)) each character cell is split into k
horizontal bands, the first unit on top: the stacked view.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "quote.svg")
    >>> save_coloured_text(path, 'a "b"\\nc', [0, -1, -1, -1, 1, 0, 0])
    '...quote.svg'
    >>> open(path).read().count("<svg") == 1
    True
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from widgets.html import colour_of, visible

FORMATS = ("png", "svg", "pdf")
CHAR_WIDTH = 0.602  # DejaVu Sans Mono's advance width, in em (matplotlib ships the font)
LINE_HEIGHT = 1.45  # in em


def _lines(text: str, wrap: int | None) -> list[tuple[int, int]]:
    """[start, end) of each display line (newline included), wrapped at ``wrap`` characters."""
    spans, start = [], 0
    for i, ch in enumerate(text):
        if ch == "\n" or (wrap and i + 1 - start >= wrap):
            spans.append((start, i + 1))
            start = i + 1
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def save_coloured_text(path, text: str, values, vmin: float = -1.0, vmax: float = 1.0, *,
                       caption: str | None = None, fontsize: float = 10.0, wrap: int | None = 100,
                       dpi: int = 200) -> str:
    """Write ``text`` coloured by ``values`` (T,) or (k, T) to ``path``; the format is its suffix.

    ``.png``, ``.svg`` or ``.pdf``. Lines longer than ``wrap`` characters wrap. Returns the path.

        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "two_units.png"
        >>> save_coloured_text(path, "ab\\ncd", [[-1, 0, 0, 0, 1], [1, 1, 0, 0, -1]], caption="stacked: 2 units")
        '...two_units.png'
        >>> path.read_bytes()[:4], path.stat().st_size > 0
        (b'\\x89PNG', True)
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"cannot save {path.name!r}: the suffix must be one of "
                         f"{', '.join('.' + f for f in FORMATS)}")
    values = np.asarray(values, dtype=np.float64)
    values = values[None] if values.ndim == 1 else values
    if values.ndim != 2 or values.shape[1] != len(text):
        raise ValueError(f"{len(text)} characters but values of shape {values.shape}: give one value "
                         "per character, or (units, characters) for stacked units")
    if not text:
        raise ValueError("there is no text to draw")
    if not vmin < vmax:
        raise ValueError(f"vmin must be below vmax, got vmin={vmin} and vmax={vmax}")

    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    lines = _lines(text, wrap)
    cols = max(end - start for start, end in lines)
    em = fontsize / 72                                         # inches
    head = LINE_HEIGHT if caption else 0.0
    fig = Figure(figsize=(max(cols, 10) * CHAR_WIDTH * em + 0.2, (len(lines) * LINE_HEIGHT + head) * em + 0.2))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.15 / (CHAR_WIDTH * em), max(cols, 10) + 0.05 / (CHAR_WIDTH * em))
    ax.set_ylim(len(lines) + head / LINE_HEIGHT + 0.1 / (LINE_HEIGHT * em), -0.1 / (LINE_HEIGHT * em))
    ax.axis("off")
    k = len(values)
    rects, colours = [], []
    for row, (start, end) in enumerate(lines):
        y = row + head / LINE_HEIGHT
        for i in range(start, end):
            for band in range(k):
                rects.append(Rectangle((i - start, y + band / k), 1, 1 / k))
                colours.append(colour_of(values[band, i], vmin, vmax))
        shown = "".join(visible(ch, alone=False) for ch in text[start:end])
        ax.text(0, y + 0.5, shown, fontsize=fontsize, family="DejaVu Sans Mono", va="center_baseline",
                ha="left", color="#111")
    ax.add_collection(PatchCollection(rects, facecolors=colours, edgecolors="none", alpha=0.85))  # legible ink
    if caption:
        ax.text(0, 0.5, caption, fontsize=fontsize * 0.9, family="DejaVu Sans", va="center_baseline", color="#333")
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "vurn"}):
        fig.savefig(path, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None)
    return str(path)
