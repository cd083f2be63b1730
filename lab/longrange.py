"""Where the LSTM's gains come from (paper §4.3): comparisons of two models character by character.

Each function takes the text and two arrays of per-character probabilities of the
correct character, ``p_a`` and ``p_b`` (e.g. the LSTM and the 20-gram), aligned so that
``p[i]`` is the probability given to ``text[i + 1]``. Probabilities come from
``Session.trace(...)["prob"]`` and ``NGramModel.prob_of_next(ids)``.

    >>> import numpy as np
    >>> text = "{ab}"
    >>> p_a, p_b = np.array([0.9, 0.9, 0.8]), np.array([0.9, 0.2, 0.1])
    >>> error_overlap(p_a, p_b)["only b wrong"]
    2
    >>> closing_braces(text, p_a, p_b)[["distance", "p_a", "p_b"]].values.tolist()
    [[3.0, 0.8, 0.1]]
"""
from __future__ import annotations

import numpy as np
import pandas as pd

ERROR_THRESHOLD = 0.5  # an error: the correct character gets probability < 0.5 (paper §4.3/4.4)


def _check(text: str, *probs) -> None:
    if len(text) < 2:
        raise ValueError(f"the text has {len(text)} character(s): comparing predictions needs at least two "
                         "(p[i] is the probability of text[i + 1])")
    for p in probs:
        if len(p) != len(text) - 1:
            raise ValueError(f"need one probability per next character: {len(text) - 1} for this text, "
                             f"got {len(p)} (p[i] is the probability of text[i + 1])")


def error_overlap(p_a, p_b, threshold: float = ERROR_THRESHOLD) -> dict:
    """How the two models' errors overlap: counts of both / only a / only b / neither wrong.

    >>> error_overlap([0.9, 0.2, 0.1, 0.8], [0.3, 0.1, 0.9, 0.7])
    {'both wrong': 1, 'only a wrong': 1, 'only b wrong': 1, 'both right': 1, 'total': 4}
    """
    a, b = np.asarray(p_a) < threshold, np.asarray(p_b) < threshold
    if a.shape != b.shape:
        raise ValueError(f"p_a and p_b differ in length: {a.shape} vs {b.shape}")
    return {"both wrong": int((a & b).sum()), "only a wrong": int((a & ~b).sum()),
            "only b wrong": int((~a & b).sum()), "both right": int((~a & ~b).sum()), "total": int(a.size)}


def by_character(text: str, p_a, p_b, min_count: int = 1) -> pd.DataFrame:
    """Mean probability of each correct character under both models, sorted by a - b.

    >>> by_character("abab", [0.5, 0.9, 0.5], [0.5, 0.1, 0.5]).char.tolist()
    ['a', 'b']
    """
    _check(text, p_a, p_b)
    df = pd.DataFrame({"char": list(text[1:]), "p_a": p_a, "p_b": p_b})
    g = df.groupby("char").agg(count=("p_a", "size"), p_a=("p_a", "mean"), p_b=("p_b", "mean")).reset_index()
    g["difference"] = g.p_a - g.p_b
    g = g[g["count"] >= min_count]
    return g.sort_values("difference", ascending=False, kind="stable").reset_index(drop=True)


def matching_open(text: str, open_: str = "{", close: str = "}") -> np.ndarray:
    """For each character, the index of the opening bracket a closing one matches (-1 if none).

    >>> matching_open("{a{b}}").tolist()
    [-1, -1, -1, -1, 2, 0]
    """
    out = np.full(len(text), -1, dtype=np.int64)
    stack = []
    for i, ch in enumerate(text):
        if ch == open_:
            stack.append(i)
        elif ch == close and stack:
            out[i] = stack.pop()
    return out


def closing_braces(text: str, p_a, p_b, open_: str = "{", close: str = "}") -> pd.DataFrame:
    """Every matched closing brace (after the first character): its distance to its opening one
    and both models' probabilities of it.

    >>> p_a, p_b = [0.5, 0.5, 0.5, 0.5, 0.9, 0.5, 0.8], [0.5, 0.5, 0.5, 0.5, 0.7, 0.5, 0.2]
    >>> closing_braces("{a{bc}d}", p_a, p_b)
       position  distance  p_a  p_b
    0         5       3.0  0.9  0.7
    1         7       7.0  0.8  0.2
    """
    _check(text, p_a, p_b)
    match = matching_open(text, open_, close)
    idx = np.nonzero(match[1:] >= 0)[0] + 1          # positions of matched closers, >= 1
    return pd.DataFrame({"position": idx, "distance": (idx - match[idx]).astype(float),
                         "p_a": np.asarray(p_a)[idx - 1], "p_b": np.asarray(p_b)[idx - 1]})


def binned_braces(text: str, p_a, p_b, edges) -> pd.DataFrame:
    """:func:`closing_braces` with a ``bin`` column: the distance's bin [edges[k], edges[k + 1]).

    Every brace must fall in a bin (edges from 0 past the longest distance), so that none
    is silently left out.

    >>> binned_braces("{a}", [0.5, 0.9], [0.5, 0.2], edges=(0, 5, 10)).bin.astype(str).tolist()
    ['[0, 5)']
    """
    edges = list(edges)
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges must be at least two increasing distances, got {edges}")
    df = closing_braces(text, p_a, p_b)
    outside = df.distance[(df.distance < edges[0]) | (df.distance >= edges[-1])]
    if len(outside):
        raise ValueError(f"{len(outside)} closing brace(s) lie outside the bins {edges[0]}..{edges[-1]} (distances up "
                         f"to {int(df.distance.max())}): end the edges past the longest, e.g. with 10**9")
    df["bin"] = pd.cut(df.distance, edges, right=False)
    return df


def closing_brace_bins(text: str, p_a, p_b, edges=(0, 5, 10, 20, 40, 60, 80, 100, 150, 200, 400, 10**9)) -> pd.DataFrame:
    """:func:`closing_braces` binned by distance: count, mean probabilities and a - b per bin.

    >>> p_a, p_b = [0.5, 0.5, 0.5, 0.5, 0.9, 0.5, 0.8], [0.5, 0.5, 0.5, 0.5, 0.7, 0.5, 0.2]
    >>> closing_brace_bins("{a{bc}d}", p_a, p_b, edges=(0, 5, 10)).round(2)
           bin  count  p_a  p_b  advantage
    0   [0, 5)      1  0.9  0.7        0.2
    1  [5, 10)      1  0.8  0.2        0.6
    """
    df = binned_braces(text, p_a, p_b, edges)
    g = df.groupby("bin", observed=True).agg(count=("p_a", "size"), p_a=("p_a", "mean"), p_b=("p_b", "mean"))
    g["advantage"] = g.p_a - g.p_b
    return g.reset_index()
