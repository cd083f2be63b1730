"""Interpretable cells (paper §4.2): character hypotheses and ranking units against them.

A hypothesis is a function of the text alone that gives one number per character: a
boolean ("inside quotes") or a quantity ("column in the line"). Units are ranked by
how well their values follow it: ROC AUC for booleans (0.5 = chance, 1 or 0 = perfect,
either sign), Pearson correlation for quantities.

    >>> import numpy as np
    >>> text = 'a "bc" d'
    >>> inside_quotes(text).astype(int).tolist()
    [0, 0, 1, 1, 1, 1, 0, 0]
    >>> values = np.stack([inside_quotes(text) * 2.0 - 1, np.zeros(len(text))], 1)   # (T, units)
    >>> best = rank_units(values, inside_quotes(text)).iloc[0]
    >>> int(best.unit), float(best.score)
    (0, 1.0)
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def column(text: str) -> np.ndarray:
    """Position of each character in its line (0 = first); a newline ends its line.

    >>> column("ab\\ncd").astype(int).tolist()
    [0, 1, 2, 0, 1]
    """
    out = np.empty(len(text), dtype=np.float32)
    col = 0
    for i, ch in enumerate(text):
        out[i] = col
        col = 0 if ch == "\n" else col + 1
    return out


def inside_quotes(text: str, quote: str = '"') -> np.ndarray:
    """True from an opening quote up to and including its closing quote.

    >>> inside_quotes('x"y"z').tolist()
    [False, True, True, True, False]
    """
    out = np.zeros(len(text), dtype=bool)
    inside = False
    for i, ch in enumerate(text):
        if ch == quote:
            out[i] = True
            inside = not inside
        else:
            out[i] = inside
    return out


def after_newline(text: str) -> np.ndarray:
    """True on the first character of every line.

    >>> after_newline("a\\nb").tolist()
    [True, False, True]
    """
    out = np.zeros(len(text), dtype=bool)
    out[0:1] = True
    idx = [i + 1 for i, ch in enumerate(text[:-1]) if ch == "\n"]
    out[idx] = True
    return out


def newline_next(text: str) -> np.ndarray:
    """True where the next character is a newline (the paper's new-line prediction).

    >>> newline_next("ab\\nc").tolist()
    [False, True, False, False]
    """
    out = np.zeros(len(text), dtype=bool)
    out[[i for i in range(len(text) - 1) if text[i + 1] == "\n"]] = True
    return out


def depth(text: str, open_: str = "(", close: str = ")") -> np.ndarray:
    """Nesting depth of brackets: the opening character counts inside, the closing one too.

    >>> depth("f(a(b))c").tolist()
    [0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 0.0]
    """
    out = np.empty(len(text), dtype=np.float32)
    d = 0
    for i, ch in enumerate(text):
        if ch == open_:
            d += 1
        out[i] = d
        if ch == close:
            d = max(0, d - 1)
    return out


def indentation(text: str) -> np.ndarray:
    """Leading whitespace of each character's line (tabs count 8).

    >>> indentation("a\\n\\tb").tolist()
    [0.0, 0.0, 8.0, 8.0]
    """
    out = np.empty(len(text), dtype=np.float32)
    start = 0
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip(" \t")
        width = sum(8 if c == "\t" else 1 for c in line[: len(line) - len(stripped)])
        out[start:start + len(line)] = width
        start += len(line)
    return out


def inside_comment(text: str) -> np.ndarray:
    """True inside C comments (``/* ... */`` and ``// ...`` to the end of the line), delimiters included.

    >>> inside_comment("a /* b */ c // d\\ne").astype(int).tolist()
    [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0]
    """
    out = np.zeros(len(text), dtype=bool)
    i, n = 0, len(text)
    in_string = None
    while i < n:
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 2
                continue
            if ch == in_string:
                in_string = None
        elif ch in "\"'":
            in_string = ch
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out[i:end] = True
            i = end
            continue
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out[i:end] = True
            i = end
            continue
        i += 1
    return out


def _skip(text: str, i: int, chars: str) -> int:
    """The first index at or after ``i`` whose character is not in ``chars``."""
    while i < len(text) and text[i] in chars:
        i += 1
    return i


def _past_match(text: str, i: int, open_: str, close: str) -> int:
    """The index just after the bracket that closes the one at ``i`` (or the end of the text)."""
    d = 0
    while i < len(text):
        d += (text[i] == open_) - (text[i] == close)
        i += 1
        if d == 0:
            break
    return i


def inside_if(text: str) -> np.ndarray:
    """True inside the condition and the braced body of C ``if`` statements.

    >>> inside_if("x; if (a) { b; } c").astype(int).tolist()
    [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    """
    out = np.zeros(len(text), dtype=bool)
    i, n = 0, len(text)
    while (i := text.find("if", i)) >= 0:
        before = text[i - 1] if i else " "
        j = _skip(text, i + 2, " \t")
        if before.isalnum() or before == "_" or j >= n or text[j] != "(":
            i += 2
            continue
        m = _skip(text, _past_match(text, j, "(", ")"), " \t\n")   # past the condition
        if m < n and text[m] == "{":                                # a braced body
            end = _past_match(text, m, "{", "}")
        else:                                                       # one statement: to its semicolon
            semi = text.find(";", m)
            end = n if semi < 0 else semi + 1
        out[i:end] = True
        i += 2
    return out

HYPOTHESES: dict[str, Callable[[str], np.ndarray]] = {
    "column": column,
    "inside_quotes": inside_quotes,
    "after_newline": after_newline,
    "newline_next": newline_next,
    "paren_depth": depth,
    "brace_depth": lambda text: depth(text, "{", "}"),
    "bracket_depth": lambda text: depth(text, "[", "]"),
    "indentation": indentation,
    "inside_comment": inside_comment,
    "inside_if": inside_if,
}


def auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of every column of ``scores`` (T, U) against boolean ``labels`` (T,), ties averaged.

    >>> auc(np.array([[0.1], [0.9], [0.5]]), np.array([False, True, True])).tolist()
    [1.0]
    """
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[:, None] if scores.ndim == 1 else scores
    labels = np.asarray(labels, dtype=bool)
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        raise ValueError("the hypothesis is constant on this text: AUC needs both true and false characters")
    from scipy.stats import rankdata
    ranks = rankdata(scores, axis=0)                      # average ranks for ties
    return (ranks[labels].sum(0) - pos * (pos + 1) / 2) / (pos * neg)


def correlation(values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of ``values`` (T, U) with ``target`` (T,); 0 for constant columns."""
    v = np.asarray(values, dtype=np.float64)
    v = v[:, None] if v.ndim == 1 else v
    t = np.asarray(target, dtype=np.float64)
    v = v - v.mean(0)
    t = t - t.mean()
    denom = np.sqrt((v * v).sum(0) * (t * t).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (v * t[:, None]).sum(0) / denom
    return np.nan_to_num(r)


def rank_units(values: np.ndarray, hypothesis: np.ndarray, method: str | None = None) -> pd.DataFrame:
    """Units ranked by how well they follow ``hypothesis``; best first.

    ``method`` is ``auc`` (default for boolean hypotheses) or ``corr``. ``score`` is the
    AUC or r itself; ``strength`` is |AUC - 0.5| * 2 or |r|, which the order follows.
    """
    hypothesis = np.asarray(hypothesis)
    if len(hypothesis) != len(values):
        raise ValueError(f"the hypothesis has {len(hypothesis)} values but the trace {len(values)} characters")
    method = method or ("auc" if hypothesis.dtype == bool else "corr")
    if method == "auc":
        score = auc(values, hypothesis.astype(bool))
        strength = np.abs(score - 0.5) * 2
    elif method == "corr":
        score = correlation(values, hypothesis)
        strength = np.abs(score)
    else:
        raise ValueError(f"method must be 'auc' or 'corr', got {method!r}")
    df = pd.DataFrame({"unit": np.arange(len(score)), "score": score, "strength": strength, "method": method})
    return df.sort_values("strength", ascending=False, kind="stable").reset_index(drop=True)


def rank_trace(trace, hypothesis: str | Callable[[str], np.ndarray] | np.ndarray, what: str = "cell",
               method: str | None = None) -> pd.DataFrame:
    """Rank the units of every layer of a trace against a hypothesis (a name, a function or an array).

    The last character is left out: hypotheses about "what comes next" have no answer there.
    """
    if isinstance(hypothesis, str):
        if hypothesis not in HYPOTHESES:
            raise KeyError(f"unknown hypothesis {hypothesis!r}; known: {', '.join(HYPOTHESES)} "
                           "(or pass your own function of the text)")
        hypothesis = HYPOTHESES[hypothesis]
    target = hypothesis(trace.text) if callable(hypothesis) else np.asarray(hypothesis)
    frames = []
    for layer in range(trace.n_layers):
        df = rank_units(trace.values(layer, what)[:-1], target[:-1], method)
        df.insert(0, "layer", layer)
        frames.append(df)
    return pd.concat(frames).sort_values("strength", ascending=False, kind="stable").reset_index(drop=True)
