"""widgets.html: the static coloured-text export."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest

from widgets.html import ColouredText, colour_of, colour_text

SPAN = re.compile(r'<span style="background:(#[0-9a-f]{6})[^"]*" title="([^"]*)">(.*?)</span>', re.S)


class _Text(HTMLParser):
    """Collects the text a browser would show, with entities decoded."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []

    def handle_data(self, data):
        self.chunks.append(data)


def shown_text(html: str) -> str:
    p = _Text()
    p.feed(html)
    return "".join(p.chunks)


def test_special_characters_are_escaped_and_come_back_unchanged():
    text = 'a<b>&"c\'\n'
    html = colour_text(text, np.zeros(len(text)))
    spans = SPAN.findall(html)
    assert [s[2] for s in spans] == ["a", "&lt;", "b", "&gt;", "&amp;", "&quot;", "c", "&#x27;", "\n"]
    assert "<b>" not in html
    assert shown_text(html) == text  # what the browser shows is the text itself, newline included


def test_colour_endpoints_and_midpoint():
    assert colour_of(-1) == "#ff0000"
    assert colour_of(0) == "#ffffff"
    assert colour_of(1) == "#0000ff"
    assert colour_of(-5) == "#ff0000" and colour_of(5) == "#0000ff"  # clipped
    assert colour_of(float("nan")) == "#ffffff"
    assert colour_of(0.0, vmin=0, vmax=1) == "#ff0000" and colour_of(0.5, vmin=0, vmax=1) == "#ffffff"
    red, white, blue = (s[0] for s in SPAN.findall(colour_text("xyz", [-1, 0, 1])))
    assert (red, white, blue) == ("#ff0000", "#ffffff", "#0000ff")


def test_colours_are_monotone_between_endpoints():
    reds = [int(colour_of(v)[3:5], 16) for v in np.linspace(-1, 0, 11)]   # green channel on the red side
    blues = [int(colour_of(v)[1:3], 16) for v in np.linspace(0, 1, 11)]   # red channel on the blue side
    assert reds == sorted(reds) and blues == sorted(blues, reverse=True)


def test_titles_hold_the_values_and_layout_keeps_newlines():
    html = colour_text("ab", np.array([0.25, -0.5], dtype=np.float16))
    assert [s[1] for s in SPAN.findall(html)] == ["0.250", "-0.500"]
    assert "white-space:pre-wrap" in html
    assert "http" not in html and "<script" not in html  # self-contained, nothing fetched


def test_length_mismatch_and_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="3 characters but 2 values"):
        colour_text("abc", [0, 0])
    with pytest.raises(ValueError, match="1-D"):
        colour_text("ab", np.zeros((2, 1)))
    with pytest.raises(ValueError, match="vmin must be below vmax"):
        colour_text("a", [0], vmin=1, vmax=1)
    with pytest.raises(TypeError, match="str"):
        colour_text(["a"], [0])
    with pytest.raises(ValueError, match="characters but"):
        ColouredText("abc", [0])


def test_coloured_text_repr_is_short_and_html_matches():
    values = np.linspace(-1, 1, 5000)
    ct = ColouredText("x" * 5000, values, caption="layer 1 <unit> 3")
    assert repr(ct) == "ColouredText(5,000 chars, vmin=-1, vmax=1)"
    assert ct._repr_html_() == colour_text("x" * 5000, values, caption="layer 1 <unit> 3")
    assert "layer 1 &lt;unit&gt; 3" in ct.html
    assert ct.html.count("<span") == 5000
