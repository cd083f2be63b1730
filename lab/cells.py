"""Interpretable cells (paper §4.2): character hypotheses and ranking units against them.

A hypothesis is a function of the text alone that gives one number per character: a
boolean ("inside quotes") or a quantity ("column in the line"). Units are ranked by
how well their values follow it: ROC AUC for booleans (0.5 = chance, 1 or 0 = perfect,
either sign), Pearson correlation for quantities.

The delimited hypotheses (quotes, brackets, comments) mark spans as a reader sees them,
delimiters included, which is what :func:`query_span` compares a selection of text with.
A unit's value at character t is its state after reading t, so a cell that tracks quotes
perfectly has already switched off at the closing quote: against ``inside_quotes`` it
scores just under AUC 1 (one character per quoted span), against the quote parity
(``np.cumsum(is_quote) % 2``) exactly 1.

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
from dataclasses import dataclass

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
    """True over C ``if`` statements: the keyword, the condition and the body, a braced one
    up to its closing ``}`` or a single statement up to its ``;`` (``else`` is not included).

    >>> inside_if("x; if (a) { b; } c").astype(int).tolist()
    [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    >>> inside_if("if (a) b; c").astype(int).tolist()
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
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
    """Pearson correlation of every column of ``values`` (T, U) with ``target`` (T,); 0 for constant columns.

    >>> values = np.array([[1.0, 3.0, 5.0], [2.0, 2.0, 5.0], [3.0, 1.0, 5.0]])
    >>> correlation(values, np.array([1.0, 2.0, 3.0])).round(3).tolist()
    [1.0, -1.0, 0.0]
    """
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

    >>> values = np.array([[0.1, 0.0], [0.2, 0.5], [0.3, 0.1], [0.4, 0.9]])      # (T, units)
    >>> rank_units(values, np.array([False, True, False, True]))                 # a boolean: AUC
       unit  score  strength method
    0     1   1.00       1.0    auc
    1     0   0.75       0.5    auc
    >>> rank_units(values, np.arange(4)).unit.tolist()                           # a quantity: r
    [0, 1]
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


def rank_trace(trace, hypothesis: str | Callable[[str], np.ndarray] | np.ndarray, what: str | None = None,
               method: str | None = None) -> pd.DataFrame:
    """Rank the units of every layer of a trace against a hypothesis (a name, a function or an array).

    The last character is left out: hypotheses about "what comes next" have no answer there.

    >>> from lab import Session
    >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said "yes" and "no" twice.')
    >>> rank_trace(tr, "inside_quotes").head(3).round(3)       # unit 283 of layer 1: a quote cell
       layer  unit  score  strength method
    0      1   283  0.000     1.000    auc
    1      0   188  0.035     0.930    auc
    2      1   195  0.058     0.883    auc
    """
    if isinstance(hypothesis, str):
        if hypothesis not in HYPOTHESES:
            raise KeyError(f"unknown hypothesis {hypothesis!r}; known: {', '.join(HYPOTHESES)} "
                           "(or pass your own function of the text)")
        hypothesis = HYPOTHESES[hypothesis]
    target = hypothesis(trace.text) if callable(hypothesis) else np.asarray(hypothesis)
    if len(target) != len(trace.text):
        raise ValueError(f"the hypothesis has {len(target)} values but the trace {len(trace.text)} characters: "
                         "give one value per character of trace.text")
    frames = []
    for layer in range(trace.n_layers):
        df = rank_units(trace.values(layer, what)[:-1], target[:-1], method)
        df.insert(0, "layer", layer)
        frames.append(df)
    return pd.concat(frames).sort_values("strength", ascending=False, kind="stable").reset_index(drop=True)


# -- LSTMVis's workflow, made quantitative: select a span, get its units, find their matches --

def boolean_hypotheses(text: str, extra: dict | None = None) -> dict[str, np.ndarray]:
    """Every yes/no hypothesis of the library (and of ``extra``) evaluated on ``text``.

    >>> sorted(boolean_hypotheses('a "b"'))
    ['after_newline', 'inside_comment', 'inside_if', 'inside_quotes', 'newline_next']
    """
    out = {}
    for name, f in {**HYPOTHESES, **(extra or {})}.items():
        h = np.asarray(f(text))
        if h.dtype == bool:
            out[name] = h
    return out


def _runs(mask: np.ndarray) -> np.ndarray:
    """[start, end) of every run of True in ``mask``, as an (n, 2) int array."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return edges.reshape(-1, 2)


def _check_span(span, length: int) -> tuple[int, int]:
    try:
        start, end = (int(x) for x in span)
    except (TypeError, ValueError):
        raise ValueError(f"a span is (start, end) character offsets, got {span!r}") from None
    if not 0 <= start < end <= length:
        raise ValueError(f"span ({start}, {end}) is not inside the text of {length} characters "
                         "(need 0 <= start < end <= length)")
    return start, end


def _around(span: tuple[int, int], length: int, margin: int | None) -> np.ndarray:
    """Indices of the ``margin`` characters on each side of ``span`` (default: its length, 3 to 10)."""
    start, end = span
    margin = min(max(3, end - start), 10) if margin is None else int(margin)
    return np.r_[max(0, start - margin):start, end:min(length, end + max(margin, 0))]


def select_units(values: np.ndarray, span, margin: int | None = None, threshold: float | None = None,
                 tolerance: float = 0.05) -> tuple[pd.DataFrame, float]:
    """Units that are on inside ``span`` and off just around it, and the threshold that says "on".

    ``values`` is (T, U). A unit may work either way round (the paper's cells go red or
    blue), so each gets a sign: +1 if it is higher inside than around, else -1, and it is
    "on" where sign x value >= threshold. Around means ``margin`` characters on each side
    (default: the span's length, between 3 and 10). ``tolerance`` is the fraction of characters
    allowed on the wrong side (the default 0.05 forgives the character where a cell
    switches). Without a ``threshold`` one is suggested from the data: the middle of the
    range shared by the units with the widest gaps (at least half the widest).

    Returns (units, threshold): a table with unit, sign, inside (lowest signed value
    inside), outside (highest signed value around) and gap = inside - outside, best first.

    >>> v = np.array([[0.0, 0.1], [0.9, 0.2], [0.8, 0.1], [0.1, 0.3]])   # unit 0 is on at 1..2
    >>> units, thr = select_units(v, (1, 3), margin=1)
    >>> units.unit.tolist(), units.sign.tolist(), round(thr, 2)
    ([0], [1], 0.45)
    """
    values = np.asarray(values, dtype=np.float32)
    values = values[:, None] if values.ndim == 1 else values
    start, end = _check_span(span, len(values))
    if not 0 <= tolerance < 0.5:
        raise ValueError(f"tolerance is a fraction of characters below 0.5, got {tolerance}")
    around = _around((start, end), len(values), margin)
    if len(around) == 0:
        raise ValueError("the span has no characters around it to be off on: select a shorter span "
                         "or give a margin of at least 1")
    inside, outside = values[start:end], values[around]
    sign = np.where(inside.mean(0) >= outside.mean(0), 1.0, -1.0).astype(np.float32)
    low_in = np.quantile(inside * sign, tolerance, axis=0)      # the lowest "on" value inside
    high_out = np.quantile(outside * sign, 1 - tolerance, axis=0)  # the highest value around
    if threshold is None:
        # the units with the widest gaps (at least half the best one) whose (high_out, low_in]
        # intervals share a range; the threshold is the middle of that range
        gap = low_in - high_out
        order = [u for u in np.argsort(-gap, kind="stable") if gap[u] > 0 and gap[u] >= gap.max() / 2]
        if not order:
            return _units_table(np.array([], dtype=int), sign, low_in, high_out), float("nan")
        lo, hi = high_out[order[0]], low_in[order[0]]
        for u in order[1:]:
            if max(lo, high_out[u]) < min(hi, low_in[u]):
                lo, hi = max(lo, high_out[u]), min(hi, low_in[u])
        threshold = float((lo + hi) / 2)
    chosen = np.flatnonzero((low_in >= threshold) & (high_out < threshold))
    return _units_table(chosen, sign, low_in, high_out), float(threshold)


def _units_table(chosen, sign, low_in, high_out) -> pd.DataFrame:
    df = pd.DataFrame({"unit": chosen, "sign": sign[chosen].astype(int), "inside": low_in[chosen],
                       "outside": high_out[chosen], "gap": low_in[chosen] - high_out[chosen]})
    return df.sort_values("gap", ascending=False, kind="stable").reset_index(drop=True)


def unit_set_on(values: np.ndarray, units: pd.DataFrame, threshold: float) -> np.ndarray:
    """Where every unit of ``units`` (a :func:`select_units` table) is on: (T,) bool.

    >>> v = np.array([[0.9, -0.8], [0.9, 0.5], [0.1, -0.9]])
    >>> unit_set_on(v, pd.DataFrame({"unit": [0, 1], "sign": [1, -1]}), 0.5).tolist()
    [True, False, False]
    """
    values = np.asarray(values, dtype=np.float32)
    if len(units) == 0:
        return np.zeros(len(values), dtype=bool)
    signed = values[:, units.unit.to_numpy()] * units.sign.to_numpy()
    return (signed >= threshold).all(1)


def _overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each [start, end) row of ``a``, whether it overlaps any row of ``b``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a), dtype=bool)
    return ((a[:, None, 0] < b[None, :, 1]) & (b[None, :, 0] < a[:, None, 1])).any(1)


@dataclass(frozen=True)
class SpanQuery:
    """A selected span, the units on inside it and off around it, and where else they fire.

    ``units`` has layer, unit, sign, inside, outside, gap; a unit is on where sign x
    value >= ``threshold``. ``matches`` lists every run of characters on which all those
    units are on (start, end, text, and whether it overlaps the selection). When a
    reference hypothesis is known (given, or the library's best fit to the selection),
    ``precision`` / ``recall`` compare the matched characters with it, and
    ``span_precision`` / ``span_recall`` count matches and the hypothesis's own runs
    that overlap each other.

    >>> from lab import Session
    >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said "yes" and "no" twice.')
    >>> q = query_span(tr, (8, 13))                        # select '"yes"'
    >>> q.units[["layer", "unit", "sign"]].values.tolist(), q.hypothesis
    ([[1, 283, -1], [1, 246, 1], [0, 161, -1]], 'inside_quotes')
    """

    span: tuple[int, int]
    what: str
    threshold: float
    units: pd.DataFrame
    matches: pd.DataFrame
    on: np.ndarray
    hypothesis: str | None = None
    precision: float = float("nan")
    recall: float = float("nan")
    span_precision: float = float("nan")
    span_recall: float = float("nan")

    def __repr__(self) -> str:
        ref = (f"; against {self.hypothesis}: precision {self.precision:.2f}, recall {self.recall:.2f}"
               if self.hypothesis else "")
        return (f"SpanQuery(span {self.span}, {len(self.units)} units on at >= {self.threshold:.2f}, "
                f"{len(self.matches)} matches{ref})")


def query_span(trace, span, *, what: str | None = None, layers=None, margin: int | None = None,
               threshold: float | None = None, tolerance: float = 0.05, min_length: int = 1,
               hypothesis=None, extra_hypotheses: dict | None = None) -> SpanQuery:
    """LSTMVis's selection, made quantitative: the units of a span, their matches, and how good they are.

    ``span`` is [start, end) in ``trace.text``; ``layers`` (default all) are searched for
    units on inside and off around it (see :func:`select_units`), and the matches are
    the runs of at least ``min_length`` characters where all of them are on.
    ``hypothesis`` (a name, a function of the text or a boolean array) is what the
    matches are scored against; by default the library's yes/no hypothesis (plus
    ``extra_hypotheses``) that best agrees with the selection, if one agrees on at least
    90% of the span and its margin, else none.

    >>> from lab import Session
    >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said "yes" and "no" twice.')
    >>> q = query_span(tr, (8, 13))                        # select '"yes"': where else are its units on?
    >>> q
    SpanQuery(span (8, 13), 3 units on at >= 0.03, 4 matches; against inside_quotes: precision 0.53, recall 0.89)
    >>> q.matches[["start", "end", "text"]].values.tolist()
    [[0, 2, 'He'], [8, 13, '"yes"'], [19, 23, 'no" '], [25, 29, 'ice.']]
    """
    start, end = _check_span(span, len(trace.text))
    layers = range(trace.n_layers) if layers is None else list(layers)
    values = np.concatenate([trace.values(layer, what) for layer in layers], axis=1)
    table, thr = select_units(values, (start, end), margin, threshold, tolerance)
    table.insert(0, "layer", [layers[u // trace.width] for u in table.unit])
    column_of = table.unit.to_numpy()
    table["unit"] = column_of % trace.width
    on = unit_set_on(values, table.assign(unit=column_of), thr) if len(table) else np.zeros(len(values), bool)
    runs = _runs(on)
    runs = runs[(runs[:, 1] - runs[:, 0]) >= max(1, min_length)] if len(runs) else runs.reshape(0, 2)
    matches = pd.DataFrame({"start": runs[:, 0], "end": runs[:, 1],
                            "text": [trace.text[a:b] for a, b in runs],
                            "selected": (runs[:, 0] < end) & (start < runs[:, 1])})
    name, ref = _reference(trace.text, (start, end), margin, hypothesis, extra_hypotheses)
    scores = {}
    if ref is not None:
        in_match = np.zeros(len(on), dtype=bool)
        for a, b in runs:
            in_match[a:b] = True
        hits = (in_match & ref).sum()
        ref_runs = _runs(ref)
        nan = float("nan")
        scores = {"precision": hits / in_match.sum() if in_match.any() else nan,
                  "recall": hits / ref.sum() if ref.any() else nan,
                  "span_precision": _overlaps(runs, ref_runs).mean() if len(runs) else nan,
                  "span_recall": _overlaps(ref_runs, runs).mean() if len(ref_runs) else nan}
    return SpanQuery((start, end), what, thr, table, matches, on, name, **scores)


def _reference(text, span, margin, hypothesis, extra):
    """The hypothesis the matches are scored against: (name, boolean array) or (None, None)."""
    if hypothesis is not None:
        if isinstance(hypothesis, str):
            known = boolean_hypotheses(text, extra)
            if hypothesis not in known:
                raise KeyError(f"no yes/no hypothesis {hypothesis!r}; known: {', '.join(known)}")
            return hypothesis, known[hypothesis]
        h = np.asarray(hypothesis(text) if callable(hypothesis) else hypothesis, dtype=bool)
        if len(h) != len(text):
            raise ValueError(f"the hypothesis has {len(h)} values but the text {len(text)} characters")
        return getattr(hypothesis, "__name__", "given"), h
    start, end = span
    around = _around(span, len(text), margin)
    best, best_score = (None, None), 0.0
    for name, h in boolean_hypotheses(text, extra).items():
        agree = (h[start:end].sum() + (~h[around]).sum()) / (end - start + len(around))
        if agree >= 0.9 and agree > best_score:
            best, best_score = (name, h), agree
    return best
