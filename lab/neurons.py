"""One unit, taken apart: what the neuron page of the text colourer shows (paper §4.2).

For a unit of a trace: the histogram of its values, the characters where it is most
on and most off (with their context), examples from every quantile of its range, how
well it follows each hypothesis of :mod:`lab.cells` (and where it ranks), and how
often its gates saturate (:mod:`lab.gates`).

    >>> import torch
    >>> from lab.models import CharRNN, ModelConfig
    >>> from lab.trace import compute_trace
    >>> text = 'He said "yes" and "no".\\n' * 20
    >>> vocab = sorted(set(text))
    >>> ids = torch.tensor([vocab.index(ch) for ch in text])
    >>> tr = compute_trace(CharRNN(ModelConfig("lstm", 1, 8, len(vocab))).eval(), ids, vocab=vocab, text=text)
    >>> p = profile(tr, 0, 3)
    >>> p
    NeuronProfile(layer 0, unit 3, cell: 480 chars, mean ... range [...])
    >>> int(p.histogram.counts.sum()) == len(text), list(p.saturation.gate)
    (True, ['input', 'forget', 'output'])
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab.cells import HYPOTHESES, rank_units
from lab.gates import SATURATING


@dataclass(frozen=True)
class Histogram:
    """Counts of a unit's values in equal bins: ``edges`` has one more entry than ``counts``.

    >>> h = histogram([0.0, 3.0, 4.0], bins=2)         # values beyond [-1, 1]: their own range
    >>> h.counts.tolist(), h.edges.tolist()
    ([1, 2], [0.0, 2.0, 4.0])
    """

    counts: np.ndarray
    edges: np.ndarray


def histogram(values, bins: int = 40, range_: tuple[float, float] | None = None) -> Histogram:
    """Histogram of one unit's values; the range defaults to [-1, 1] when they fit in it.

    >>> h = histogram([-1.0, -0.9, 0.2, 1.0], bins=4)
    >>> h.counts.tolist(), h.edges.tolist()
    ([2, 0, 1, 1], [-1.0, -0.5, 0.0, 0.5, 1.0])
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if range_ is None:
        lo, hi = (float(v.min()), float(v.max())) if len(v) else (-1.0, 1.0)
        range_ = (-1.0, 1.0) if -1 <= lo and hi <= 1 else (lo, hi if hi > lo else lo + 1)
    counts, edges = np.histogram(v, bins=bins, range=range_)
    return Histogram(counts, edges)


def _context(text: str, i: int, before: int, after: int) -> dict:
    return {"position": i, "before": text[max(0, i - before):i], "char": text[i],
            "after": text[i + 1:i + 1 + after]}


def top_examples(text: str, values, k: int = 8, sign: int = 1, before: int = 40, after: int = 10,
                 spread: int | None = None) -> pd.DataFrame:
    """The ``k`` characters where the unit is highest (``sign=-1``: lowest), with their context.

    No two are within ``spread`` characters of each other (default ``before``), so one
    long stretch does not fill the list.

    >>> top_examples("abcabc", [0, 5, 1, 0, 4, 1], k=2, before=1, after=1, spread=1)[["position", "char", "value"]].values.tolist()
    [[1, 'b', 5.0], [4, 'b', 4.0]]
    """
    v = np.asarray(values, dtype=np.float64)
    if len(v) != len(text):
        raise ValueError(f"{len(text)} characters but {len(v)} values: give one value per character")
    if sign not in (1, -1):
        raise ValueError(f"sign is +1 (most on) or -1 (most off), got {sign!r}")
    spread = before if spread is None else spread
    order = np.argsort(-sign * np.nan_to_num(v, nan=-sign * np.inf), kind="stable")
    taken, blocked = [], np.zeros(len(v), dtype=bool)
    for i in order:
        if len(taken) == k:
            break
        if blocked[i] or not np.isfinite(v[i]):
            continue
        taken.append(i)
        blocked[max(0, i - spread):i + spread + 1] = True
    return pd.DataFrame([{**_context(text, i, before, after), "value": float(v[i])} for i in taken],
                        columns=["position", "before", "char", "after", "value"])


def quantile_examples(text: str, values, bins: int = 5, per_bin: int = 3, before: int = 40,
                      after: int = 10, seed: int = 0) -> pd.DataFrame:
    """``per_bin`` random characters from each of ``bins`` equal-count bins of the unit's values.

    The bins run from the lowest values (bin 0) to the highest, so the rows read like the
    unit's scale, from one end to the other.

    >>> df = quantile_examples("abcdefgh", np.arange(8.0), bins=2, per_bin=2, before=0, after=0)
    >>> df.groupby("bin")[["low", "high"]].max().values.tolist()
    [[0.0, 3.0], [4.0, 7.0]]
    """
    v = np.asarray(values, dtype=np.float64)
    if len(v) != len(text):
        raise ValueError(f"{len(text)} characters but {len(v)} values: give one value per character")
    ok = np.flatnonzero(np.isfinite(v))
    ranked = ok[np.argsort(v[ok], kind="stable")]
    rng = np.random.default_rng(seed)
    rows = []
    for b, members in enumerate(np.array_split(ranked, bins)):
        if len(members) == 0:
            continue
        for i in sorted(rng.choice(members, size=min(per_bin, len(members)), replace=False)):
            rows.append({"bin": b, "low": float(v[members].min()), "high": float(v[members].max()),
                         **_context(text, int(i), before, after), "value": float(v[i])})
    return pd.DataFrame(rows)


def hypothesis_scores(trace, layer: int, unit: int, what: str | None = None, hypotheses: dict | None = None,
                      rankings: dict | None = None) -> pd.DataFrame:
    """How well one unit follows each hypothesis, and its rank among its layer's units (1 = best).

    ``hypotheses`` defaults to the library's (:data:`lab.cells.HYPOTHESES`); any that is
    constant on the trace's text is left out. ``rankings`` caches each hypothesis's
    ranking of the layer (a dict filled on the first call), so paging through units is quick.

    >>> from lab import Session
    >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said "yes" and "no" twice.')
    >>> hypothesis_scores(tr, 1, 283).head(2).round(2)     # off inside quotes: AUC 0, best of 307
          hypothesis method  score  strength  rank   of
    0  inside_quotes    auc   0.00      1.00     1  307
    1         column   corr  -0.33      0.33    91  307
    """
    trace.unit(layer, unit, what or trace.memory)   # a clear error for a bad layer, unit or quantity
    rankings = {} if rankings is None else rankings
    rows = []
    for name, f in (hypotheses or HYPOTHESES).items():
        key = (layer, what, name)
        if key not in rankings:
            target = np.asarray(f(trace.text))[:-1]
            constant = len(target) == 0 or (target == target[0]).all()   # no comments in a novel
            rankings[key] = None if constant else rank_units(trace.values(layer, what)[:-1], target)
        ranked = rankings[key]
        if ranked is None:
            continue
        pos = int(np.flatnonzero(ranked.unit.to_numpy() == unit)[0])
        row = ranked.iloc[pos]
        rows.append({"hypothesis": name, "method": row.method, "score": float(row.score),
                     "strength": float(row.strength), "rank": pos + 1, "of": len(ranked)})
    columns = ["hypothesis", "method", "score", "strength", "rank", "of"]   # none on a text of one or two characters
    return pd.DataFrame(rows, columns=columns).sort_values("strength", ascending=False, kind="stable").reset_index(
        drop=True)


def unit_saturation(trace, layer: int, unit: int, left: float = 0.1, right: float = 0.9) -> pd.DataFrame:
    """Fractions of characters on which each gate of one unit is left- (< ``left``) or right-saturated.

    An RNN has no gates: the table is empty.

    >>> from lab import Session
    >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said "yes" and "no" twice.')
    >>> unit_saturation(tr, 1, 283).round(2)
         gate  left  right
    0   input  0.52   0.07
    1  forget  0.10   0.83
    2  output  0.00   0.45
    """
    trace.unit(layer, unit, "hidden")   # a clear error for a bad layer or unit
    rows = []
    for gate in SATURATING:
        key = f"layers.{layer}.gates.{gate}"
        if key in trace:
            g = np.asarray(trace[key][:, unit], dtype=np.float32)
            rows.append({"gate": gate, "left": float((g < left).mean()), "right": float((g > right).mean())})
    return pd.DataFrame(rows, columns=["gate", "left", "right"])


@dataclass(frozen=True)
class NeuronProfile:
    """Everything the neuron page shows about one unit (see :func:`profile`).

    >>> from lab import Session
    >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said "yes" and "no" twice.')
    >>> p = profile(tr, 1, 283)
    >>> p.layer, p.unit, p.values.shape, int(p.histogram.counts.sum())
    (1, 283, (29,), 29)
    >>> p.bottom[["position", "before", "char", "value"]].round(2).values.tolist()   # one: examples are 40 chars apart
    [[20, 'He said "yes" and "n', 'o', -0.93]]
    """

    layer: int
    unit: int
    what: str
    values: np.ndarray
    histogram: Histogram
    top: pd.DataFrame          # most on
    bottom: pd.DataFrame       # most off
    quantiles: pd.DataFrame
    hypotheses: pd.DataFrame
    saturation: pd.DataFrame

    def __repr__(self) -> str:
        v = self.values
        return (f"NeuronProfile(layer {self.layer}, unit {self.unit}, {self.what}: {len(v)} chars, "
                f"mean {np.nanmean(v):+.2f}, range [{np.nanmin(v):+.2f}, {np.nanmax(v):+.2f}])")


def profile(trace, layer: int, unit: int, what: str | None = None, k: int = 8, bins: int = 5,
            per_bin: int = 3, rankings: dict | None = None) -> NeuronProfile:
    """The neuron page of one unit of a trace: histogram, examples, hypothesis scores, saturation.

    See the module docstring for an example; ``rankings`` is a cache shared between calls
    (see :func:`hypothesis_scores`).

    >>> from lab import Session
    >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said "yes" and "no" twice.')
    >>> p = profile(tr, 1, 283)
    >>> p
    NeuronProfile(layer 1, unit 283, cell: 29 chars, mean -0.24, range [-0.93, +0.45])
    >>> p.hypotheses.hypothesis[0], p.top.char[0], p.bottom.char[0]
    ('inside_quotes', 'd', 'o')
    """
    what = trace.memory if what is None else what
    values = trace.unit(layer, unit, what)   # raises a clear error for a bad layer, unit or gate
    return NeuronProfile(
        layer, unit, what, values, histogram(values),
        top_examples(trace.text, values, k, 1), top_examples(trace.text, values, k, -1),
        quantile_examples(trace.text, values, bins, per_bin),
        hypothesis_scores(trace, layer, unit, what, rankings=rankings),
        unit_saturation(trace, layer, unit))
