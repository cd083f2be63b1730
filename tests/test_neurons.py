"""The neuron page's numbers (lab.neurons) on hand-made values and a small random LSTM."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lab import cells
from lab.neurons import histogram, hypothesis_scores, profile, quantile_examples, top_examples, unit_saturation
from tests.toy import toy_trace

TEXT = 'He said "yes" and (then) "no".\n' * 30


@pytest.fixture(scope="module")
def trace():
    return toy_trace(TEXT, width=12, dtype=torch.float32)


def test_histogram_counts_every_value_once():
    v = np.array([-1.0, -0.25, 0.0, 0.24, 1.0, np.nan])
    h = histogram(v, bins=4)
    assert h.counts.tolist() == [1, 1, 2, 1] and h.edges.tolist() == [-1, -0.5, 0, 0.5, 1]
    wide = histogram([0.0, 3.0, 6.0], bins=3)            # values beyond [-1, 1] get their own range
    assert wide.edges.tolist() == [0, 2, 4, 6] and wide.counts.tolist() == [1, 1, 1]


def test_top_examples_are_the_extremes_and_spread_apart():
    text = "abcdefghij"
    v = [0.1, 0.9, 0.8, 0.0, 0.0, 0.0, 0.7, -0.5, 0.0, -0.9]
    top = top_examples(text, v, k=3, before=2, after=1, spread=2)
    assert top.position.tolist() == [1, 6, 9]             # 2 is within 2 of 1; then 6; then the rest
    assert top.iloc[0][["before", "char", "after"]].tolist() == ["a", "b", "c"]
    bottom = top_examples(text, v, k=2, sign=-1, spread=0)
    assert bottom.position.tolist() == [9, 7] and bottom.value.tolist() == [-0.9, -0.5]
    with pytest.raises(ValueError, match="one value per character"):
        top_examples(text, v[:3])
    with pytest.raises(ValueError, match="sign"):
        top_examples(text, v, sign=0)


def test_quantile_examples_cover_the_range_in_order():
    text = "x" * 100
    v = np.linspace(-1, 1, 100)
    q = quantile_examples(text, v, bins=4, per_bin=2, seed=1)
    assert q.bin.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for b, g in q.groupby("bin"):
        members = v[b * 25:(b + 1) * 25]
        assert g.low.iloc[0] == members.min() and g.high.iloc[0] == members.max()
        assert all(members.min() <= x <= members.max() for x in g.value)


def test_hypothesis_scores_agree_with_rank_trace(trace):
    scores = hypothesis_scores(trace, 1, 5).set_index("hypothesis")
    assert "inside_comment" not in scores.index            # constant on this text: left out
    ranking = cells.rank_units(trace.values(1, "cell")[:-1], cells.inside_quotes(TEXT)[:-1])
    row = scores.loc["inside_quotes"]
    assert row.score == pytest.approx(ranking.set_index("unit").loc[5, "score"])
    assert row["rank"] == 1 + ranking.unit.tolist().index(5) and row["of"] == 12


def test_unit_saturation_counts_fractions():
    saturated = toy_trace(TEXT, width=12, dtype=torch.float32, scale=15)   # gates near 0 and 1, as trained ones
    for unit in range(12):
        sat = unit_saturation(saturated, 0, unit).set_index("gate")
        assert list(sat.index) == ["input", "forget", "output"]
        for gate in sat.index:
            g = saturated[f"layers.0.gates.{gate}"][:, unit]
            assert sat.loc[gate, "left"] == pytest.approx((g < 0.1).mean())
            assert sat.loc[gate, "right"] == pytest.approx((g > 0.9).mean())
    table = pd.concat([unit_saturation(saturated, 0, u) for u in range(12)])
    assert (table.left > 0).any() and (table.right > 0).any() and (table.left != table.right).any()
    with pytest.raises(IndexError, match="unit -1 does not exist: layers have units 0..11"):
        unit_saturation(saturated, 0, -1)          # not quietly the last unit
    with pytest.raises(IndexError, match="layer 5 does not exist"):
        unit_saturation(saturated, 5, 0)           # not an empty table, as for an RNN
    with pytest.raises(IndexError, match="unit 12 does not exist"):
        hypothesis_scores(saturated, 1, 12)


def test_profile_of_a_unit_and_bad_units(trace):
    cache = {}
    p = profile(trace, 1, 2, rankings=cache)
    assert np.array_equal(p.values, trace.unit(1, 2)) and len(p.top) == 8 and len(p.bottom) == 8
    assert p.top.value.iloc[0] == pytest.approx(p.values.max())
    assert cache and profile(trace, 1, 3, rankings=cache).hypotheses["of"].iloc[0] == 12
    with pytest.raises(IndexError, match="unit 12 does not exist"):
        profile(trace, 1, 12)
    with pytest.raises(IndexError, match="layer 2 does not exist"):
        profile(trace, 2, 0)


def test_a_text_too_short_for_any_hypothesis_gives_an_empty_table():
    """Every hypothesis is constant on two characters: the table is empty, with its columns."""
    short = toy_trace("He", width=12, dtype=torch.float32)
    scores = hypothesis_scores(short, 1, 0)
    assert scores.empty and list(scores.columns) == ["hypothesis", "method", "score", "strength", "rank", "of"]
    assert profile(short, 1, 0).hypotheses.empty
