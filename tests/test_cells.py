"""Hypotheses and unit ranking (lab.cells) on constructed texts and synthetic units."""
import numpy as np
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
    df = cells.rank_trace(tr, lambda t: np.array([c == "a" for c in t]))
    assert set(df.layer) == {0, 1} and len(df) == 16 and df.strength.is_monotonic_decreasing
    with pytest.raises(KeyError, match="unknown hypothesis 'nope'"):
        cells.rank_trace(tr, "nope")
