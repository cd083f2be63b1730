"""Hypotheses and unit ranking (lab.cells) on constructed texts and synthetic units."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from lab import cells


def test_column_and_newlines():
    text = "ab\ncde\n\nf"
    assert cells.column(text).astype(int).tolist() == [0, 1, 2, 0, 1, 2, 3, 0, 0]
    assert cells.after_newline(text).tolist() == [1, 0, 0, 1, 0, 0, 0, 1, 1]
    assert cells.newline_next(text).tolist() == [0, 1, 0, 0, 0, 1, 1, 0, 0]


def test_quotes_open_and_close():
    text = 'He said "no" and "yes'
    m = cells.inside_quotes(text)
    assert "".join(c for c, k in zip(text, m) if k) == '"no""yes'


def test_depths_and_indentation():
    assert cells.depth("{a{b}}c", "{", "}").astype(int).tolist() == [1, 1, 2, 2, 2, 1, 0]
    assert cells.depth("a)b").tolist() == [0, 0, 0]  # an unmatched close never goes negative
    assert cells.indentation("x\n    y\n\tz").astype(int).tolist() == [0, 0, 4, 4, 4, 4, 4, 4, 8, 8]


def test_comments_skip_strings():
    text = 'p("/* no */"); /* yes */ q; // tail\nr'
    m = cells.inside_comment(text)
    assert "".join(c for c, k in zip(text, m) if k) == "/* yes */// tail"


def test_if_statements():
    text = "a; if (x) y; notif (z) w; if(q){\n r;\n}\n"
    m = cells.inside_if(text)
    assert "".join(c for c, k in zip(text, m) if k) == "if (x) y;if(q){\n r;\n}"


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(400, 4)), 1)
    labels = rng.random(400) < 0.3
    ours = cells.auc(scores, labels)
    ref = [roc_auc_score(labels, scores[:, i]) for i in range(4)]
    assert np.allclose(ours, ref, atol=1e-12)


def test_correlation_matches_numpy_and_constant_is_zero():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(300, 3))
    v[:, 2] = 5.0
    t = v[:, 0] * 2 + rng.normal(size=300)
    r = cells.correlation(v, t)
    assert np.isclose(r[0], np.corrcoef(v[:, 0], t)[0, 1])
    assert r[2] == 0.0


def test_rank_units_finds_the_planted_unit_either_sign():
    rng = np.random.default_rng(2)
    text = ('x "quoted text" y ' * 40)
    target = cells.inside_quotes(text)
    values = rng.uniform(-0.3, 0.3, size=(len(text), 20))
    values[:, 7] = np.where(target, -0.9, 0.9)          # an inverted quote cell
    values[:, 3] = cells.column(text) / 100             # a column cell, not a quote cell
    ranked = cells.rank_units(values, target)
    assert ranked.iloc[0].unit == 7 and ranked.iloc[0].score == 0.0 and ranked.iloc[0].strength == 1.0
    by_col = cells.rank_units(values, cells.column(text))
    assert by_col.iloc[0].unit == 3 and by_col.iloc[0].score == pytest.approx(1.0)


def test_bad_inputs_are_clear():
    with pytest.raises(ValueError, match="constant"):
        cells.auc(np.zeros((5, 2)), np.zeros(5, dtype=bool))
    with pytest.raises(ValueError, match="3 values but the trace 4"):
        cells.rank_units(np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="method"):
        cells.rank_units(np.zeros((4, 2)), np.array([0, 1, 0, 1.0]), method="mi")


def test_rank_trace_with_custom_predicate():
    import torch

    from lab.models import CharRNN, ModelConfig
    from lab.trace import compute_trace
    vocab = 'ab "\n'
    text = 'ab "ba" ab\n' * 20
    model = CharRNN(ModelConfig("lstm", 2, 8, len(vocab)))
    ids = torch.tensor([vocab.index(c) for c in text])
    tr = compute_trace(model, ids, text=text, vocab=vocab)
    is_a = lambda t: np.array([c == "a" for c in t])
    df = cells.rank_trace(tr, is_a)
    assert set(df.layer) == {0, 1} and len(df) == 16 and df.strength.is_monotonic_decreasing
    for layer in (0, 1):                          # each layer ranked by rank_units, last character left out
        want = cells.rank_units(tr.values(layer)[:-1], is_a(text)[:-1])
        got = df[df.layer == layer].drop(columns="layer").sort_values("unit").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want.sort_values("unit").reset_index(drop=True))
    with pytest.raises(KeyError, match="unknown hypothesis 'nope'"):
        cells.rank_trace(tr, "nope")
    with pytest.raises(ValueError, match="the hypothesis has 3 values but the trace 220 characters"):
        cells.rank_trace(tr, np.zeros(3))


def test_rank_trace_finds_a_planted_unit_and_ignores_the_last_character():
    text = 'ab "ba" ab\n' * 20 + "a"
    units = np.random.default_rng(4).uniform(-0.3, 0.3, (len(text), 5))
    units[:, 3] = np.where(np.array([c == "a" for c in text]), 0.9, -0.9)
    units[-1, 3] = -0.9                            # wrong on the last character only: not counted
    df = cells.rank_trace(hidden_trace(text, units, layers=2), lambda t: np.array([c == "a" for c in t]),
                          what="hidden")
    assert (df.iloc[0].layer, df.iloc[0].unit, df.iloc[0].strength) == (1, 3, 1.0)


# -- the span query (LSTMVis's workflow) --------------------------------------------------

def hidden_trace(text: str, units: np.ndarray, layers: int = 1):
    """A Trace whose hidden states are exactly ``units`` (T, U) in every layer."""
    import torch

    from lab.trace import Trace
    arrays = {f"layers.{l}.hidden": torch.tensor(units * (1 if l == layers - 1 else 0.0), dtype=torch.float32)
              for l in range(layers)}
    vocab = sorted(set(text))
    return Trace(arrays, text=text, ids=torch.tensor([vocab.index(c) for c in text]), vocab=vocab,
                 kind="rnn", layers=layers, width=units.shape[1], info={"seam_deviation": 0.0})


QUOTED = 'ab "cd" efg "hi" jk lm'


def quote_units(text=QUOTED):
    inside = cells.inside_quotes(text)
    rng = np.random.default_rng(0)
    return np.stack([np.where(inside, 0.9, -0.9),                 # on inside quotes
                     rng.uniform(-0.3, 0.3, len(text)),           # noise
                     np.where(inside, -0.8, 0.5)], 1)             # off inside quotes: sign -1


def test_select_units_finds_both_signs_and_a_threshold_between():
    units, thr = cells.select_units(quote_units(), (3, 7), margin=3, tolerance=0)
    assert sorted(zip(units.unit, units.sign)) == [(0, 1), (2, -1)]
    # unit 0: inside 0.9, around -0.9; unit 2 flipped: inside 0.8, around -0.5 -> shared range (-0.5, 0.8]
    assert units.set_index("unit").loc[2, "gap"] == pytest.approx(1.3)
    assert -0.5 < thr <= 0.8 and thr == pytest.approx((-0.5 + 0.8) / 2)


def test_select_units_with_a_given_threshold_and_tolerance():
    v = quote_units()
    units, thr = cells.select_units(v, (3, 7), margin=3, threshold=0.85, tolerance=0)
    assert thr == 0.85 and units.unit.tolist() == [0]          # unit 2's 0.8 is below 0.85
    v[4, 0] = -0.9                                               # one character inside goes off
    assert 0 not in cells.select_units(v, (3, 7), margin=3, tolerance=0)[0].unit.tolist()
    assert 0 in cells.select_units(v, (3, 7), margin=3, tolerance=0.3)[0].unit.tolist()


def test_query_span_matches_the_other_quote_with_perfect_precision_and_recall():
    tr = hidden_trace(QUOTED, quote_units())
    q = cells.query_span(tr, (3, 7), what="hidden", margin=3, tolerance=0)
    assert q.matches[["start", "end"]].values.tolist() == [[3, 7], [12, 16]]
    assert q.matches.text.tolist() == ['"cd"', '"hi"'] and q.matches.selected.tolist() == [True, False]
    assert q.hypothesis == "inside_quotes"
    assert (q.precision, q.recall, q.span_precision, q.span_recall) == (1.0, 1.0, 1.0, 1.0)
    assert q.on.tolist() == cells.inside_quotes(QUOTED).tolist()


def test_query_span_precision_and_recall_are_counted_by_hand():
    v = quote_units()
    v[[20, 21], 0] = 0.9                          # unit 0 also fires on "lm"
    v[[20, 21], 2] = -0.8                         # and so does unit 2: "lm" is a false match
    v[14, 2] = 0.5                                # unit 2 drops out on "i": that quote splits
    tr = hidden_trace(QUOTED, v)
    q = cells.query_span(tr, (3, 7), what="hidden", margin=3, tolerance=0, hypothesis="inside_quotes")
    assert q.matches[["start", "end"]].values.tolist() == [[3, 7], [12, 14], [15, 16], [20, 22]]
    matched, truth = 4 + 2 + 1 + 2, 8
    assert q.precision == pytest.approx(7 / matched) and q.recall == pytest.approx(7 / truth)
    assert q.span_precision == pytest.approx(3 / 4) and q.span_recall == 1.0
    assert cells.query_span(tr, (3, 7), what="hidden", margin=3, tolerance=0,
                            min_length=2).matches.start.tolist() == [3, 12, 20]


def test_query_span_searches_every_layer_and_names_the_layer():
    tr = hidden_trace(QUOTED, quote_units(), layers=2)
    q = cells.query_span(tr, (3, 7), what="hidden", margin=3, tolerance=0)
    assert set(zip(q.units.layer, q.units.unit)) == {(1, 0), (1, 2)}
    assert "2 units" in repr(q) and "inside_quotes" in repr(q)


def test_query_span_without_separating_units_says_so():
    tr = hidden_trace(QUOTED, quote_units()[:, [1]])
    q = cells.query_span(tr, (3, 7), what="hidden", tolerance=0)
    assert len(q.units) == 0 and len(q.matches) == 0 and np.isnan(q.threshold)


def test_query_span_bad_spans_and_hypotheses_are_clear_errors():
    tr = hidden_trace(QUOTED, quote_units())
    for span in [(5, 5), (-1, 3), (3, 99), "ab"]:
        with pytest.raises(ValueError, match="span"):
            cells.query_span(tr, span, what="hidden")
    with pytest.raises(ValueError, match="no characters around"):
        cells.select_units(quote_units(), (0, len(QUOTED)))
    with pytest.raises(KeyError, match="no yes/no hypothesis 'column'"):
        cells.query_span(tr, (3, 7), what="hidden", hypothesis="column")
    with pytest.raises(ValueError, match="tolerance"):
        cells.select_units(quote_units(), (3, 7), tolerance=0.7)
    with pytest.raises(ValueError, match=f"the hypothesis has 5 values but the text {len(QUOTED)} characters"):
        cells.query_span(tr, (3, 7), what="hidden", hypothesis=np.ones(5, bool))
    with pytest.raises(ValueError, match="the hypothesis has 1 values"):
        cells.query_span(tr, (3, 7), what="hidden", hypothesis=lambda t: [True])


def test_own_predicates_can_be_the_reference():
    tr = hidden_trace(QUOTED, quote_units())
    q = cells.query_span(tr, (3, 7), what="hidden", margin=3, tolerance=0,
                         extra_hypotheses={"vowel": lambda t: np.array([c in "aeiou" for c in t])})
    assert q.hypothesis == "inside_quotes"          # the vowels do not fit the selection
    mine = lambda t: cells.inside_quotes(t) & (np.arange(len(t)) < 10)
    q = cells.query_span(tr, (3, 7), what="hidden", margin=3, tolerance=0, hypothesis=mine)
    assert q.hypothesis == "<lambda>" and q.recall == 1.0 and q.precision == pytest.approx(4 / 8)
