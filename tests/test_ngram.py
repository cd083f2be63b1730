"""Tests of lab.ngram against numbers worked out by hand and a slow, plain reference.

The reference (``RefKN``) is interpolated modified Kneser-Ney written straight from
the formulas with dicts of tuples, sharing no code with lab.ngram.
"""
from __future__ import annotations

import os
from collections import Counter
from fractions import Fraction as F

import numpy as np
import pytest
import torch

from lab.ngram import MAX_ORDER, NGramError, NGramModel, kn_discounts, loss_table


# --------------------------------------------------------------------------- reference
class RefKN:
    """Interpolated modified Kneser-Ney, from the formulas, with dicts.

    raw[L]: Counter of the L-character windows of the text; cont[L]: for each L-string,
    the number of distinct characters just before it (a window of length L+1).
    Level k (context length k) uses raw[k+1] at the top, cont[k+1] below it.
    """

    FALLBACK = (0.5, 1.0, 1.5)

    def __init__(self, text, vocab_size, order):
        text = tuple(int(x) for x in text)
        self.v, self.order = vocab_size, order
        self.raw = {L: Counter(text[i - L + 1:i + 1] for i in range(L - 1, len(text)))
                    for L in range(1, order + 2)}
        self.cont = {L: Counter(s[1:] for s in self.raw[L + 1]) for L in range(1, order + 1)}
        self.d = {("raw", k): self.discounts(self.raw[k + 1].values()) for k in range(order + 1)}
        self.d.update({("cont", k): self.discounts(self.cont[k + 1].values()) for k in range(order)})

    def discounts(self, counts):
        counts = list(counts)
        n1, n2, n3, n4 = (sum(1 for c in counts if c == r) for r in (1, 2, 3, 4))
        if n1 == 0 or n2 == 0 or n3 == 0:
            return self.FALLBACK
        y = n1 / (n1 + 2 * n2)
        d1, d2, d3 = 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3
        if not (0 < d1 <= 1 and 0 < d2 <= 2 and 0 < d3 <= 3):
            return self.FALLBACK
        return d1, d2, d3

    def level(self, k, kind, h, w):
        """P_k(w | h) with len(h) == k; k = -1 is the uniform distribution."""
        if k < 0:
            return 1.0 / self.v
        counts = (self.raw if kind == "raw" else self.cont)[k + 1]
        d1, d2, d3 = self.d[(kind, k)]

        def disc(c):
            return 0.0 if c == 0 else d1 if c == 1 else d2 if c == 2 else d3

        lower = self.level(k - 1, "cont", h[1:], w)
        follow = [counts.get(h + (x,), 0) for x in range(self.v)]
        total = sum(follow)
        if total == 0:
            return lower
        gamma = sum(disc(c) for c in follow if c > 0) / total
        c = counts.get(h + (w,), 0)
        return max(c - disc(c), 0) / total + gamma * lower

    def prob(self, history, w, order=None):
        """P(w | history) under the order-n model: the last min(n, len(history)) chars are the context."""
        n = self.order if order is None else order
        m = min(n, len(history))
        h = tuple(int(x) for x in history[len(history) - m:])
        return self.level(m, "raw", h, int(w))


def ref_probs_by_order(ref, ids, start=1):
    return np.array([[ref.prob(ids[:i], ids[i], n) for i in range(start, len(ids))]
                     for n in range(ref.order + 1)])


# --------------------------------------------------------------------------- by hand
def test_hand_worked_unigram_uses_the_formula_discounts():
    # text a b b c c c d d d d (ids 0..3), vocabulary of 5 (e = 4 never seen), order 0.
    # raw counts a1 b2 c3 d4, so n1 = n2 = n3 = n4 = 1:
    #   Y = 1/(1+2) = 1/3, D1 = 1 - 2(1/3)(1/1) = 1/3, D2 = 2 - 3(1/3)(1/1) = 1,
    #   D3+ = 3 - 4(1/3)(1/1) = 5/3.
    # S = 10; gamma = (D1*1 + D2*1 + D3+*2)/10 = (1/3 + 1 + 10/3)/10 = 14/30,
    # and the uniform gives gamma/5 = 14/150 to every character:
    #   P(a) = (1 - 1/3)/10 + 14/150 = 24/150     P(b) = (2 - 1)/10 + 14/150 = 29/150
    #   P(c) = (3 - 5/3)/10 + 14/150 = 34/150     P(d) = (4 - 5/3)/10 + 14/150 = 49/150
    #   P(e) = 14/150                             sum = 150/150
    text = [0, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    m = NGramModel.fit(text, 5, order=0)
    np.testing.assert_allclose(m.discounts["raw"][0], [1 / 3, 1, 5 / 3], rtol=0, atol=1e-12)
    assert not m.fallback["raw"][0]
    want = [float(F(x, 150)) for x in (24, 29, 34, 49, 14)]
    np.testing.assert_allclose(m.distribution([]), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m.distribution([3, 1, 2]), want, rtol=0, atol=1e-12)  # order 0 ignores context


def test_hand_worked_abab_orders_0_1_2():
    # text "abab" = 0 1 0 1, vocabulary a, b, c (c = 2 never seen).
    # Continuation unigram counts: 'a' is preceded by {b}, 'b' by {a} -> 1 and 1
    #   (the first 'a' has nothing before it: no padding). n1 = 2, n2 = 0 -> fallback
    #   D = (0.5, 1, 1.5).  S = 2, gamma = 0.5*2/2 = 1/2:
    #   Q0(a) = Q0(b) = (1 - 0.5)/2 + (1/2)(1/3) = 5/12,  Q0(c) = 1/6.
    # Order 1, raw bigrams ab:2, ba:1 -> n1 = 1, n2 = 1, n3 = 0 -> fallback.
    #   after a: S = 2, ab -> (2 - D2)/2 = 1/2, gamma = D2*1/2 = 1/2
    #     P(a|a) = 1/2*5/12 = 5/24, P(b|a) = 1/2 + 5/24 = 17/24, P(c|a) = 1/2*1/6 = 1/12
    #   after b: S = 1, ba -> (1 - 0.5)/1 = 1/2, gamma = 0.5/1 = 1/2: mirror image.
    #   after c (never seen): passes through to Q0 = (5/12, 5/12, 1/6).
    # Order 2, raw trigrams aba:1, bab:1 (fallback); continuation bigrams ab:1 (b before),
    #   ba:1 (a before) -> the level-1 continuation distribution Q1 equals the order-1 one above.
    #   after "ab": S = 1, aba -> 1/2, gamma = 1/2:
    #     P(a|ab) = 1/2 + 1/2*Q1(a|b) = 1/2 + 17/48 = 41/48, P(b|ab) = 5/48, P(c|ab) = 2/48.
    # Order 0 (raw unigrams a2 b2 -> fallback): P = (2 - 1)/4 + (1*2/4)/3 -> 5/12, 5/12, 1/6.
    text = [0, 1, 0, 1]
    m1 = NGramModel.fit(text, 3, order=1)
    assert m1.fallback["raw"].all() and m1.fallback["cont"].all()
    np.testing.assert_allclose(m1.distribution([0]), [5 / 24, 17 / 24, 1 / 12], atol=1e-12)
    np.testing.assert_allclose(m1.distribution([1]), [17 / 24, 5 / 24, 1 / 12], atol=1e-12)
    np.testing.assert_allclose(m1.distribution([2]), [5 / 12, 5 / 12, 1 / 6], atol=1e-12)
    np.testing.assert_allclose(m1.distribution([], order=0), [5 / 12, 5 / 12, 1 / 6], atol=1e-12)
    m2 = NGramModel.fit(text, 3, order=2)
    np.testing.assert_allclose(m2.distribution([0, 1]), [41 / 48, 5 / 48, 2 / 48], atol=1e-12)
    np.testing.assert_allclose(m2.distribution([0]), [5 / 24, 17 / 24, 1 / 12], atol=1e-12)  # short context
    # scoring "abab" itself: b after "a" (order-1 model there: one char of context), a after "ab",
    # b after "ba" (= 1/2 + 1/2*Q1(b|a) = 41/48)
    np.testing.assert_allclose(m2.prob_of_next(text), [17 / 24, 41 / 48, 41 / 48], atol=1e-12)
    np.testing.assert_allclose(m2.loss(text), -np.log([17 / 24, 41 / 48, 41 / 48]).mean(), atol=1e-12)


def test_kn_discounts_formula_and_fallbacks():
    d, fb = kn_discounts(10, 4, 2, 1)
    y = 10 / 18
    np.testing.assert_allclose(d, [1 - 2 * y * 4 / 10, 2 - 3 * y * 2 / 4, 3 - 4 * y * 1 / 2])
    assert not fb
    assert kn_discounts(0, 4, 2, 1) == ((0.5, 1.0, 1.5), True)     # no singletons
    assert kn_discounts(10, 4, 0, 0) == ((0.5, 1.0, 1.5), True)    # n3 = 0: D3+ undefined
    assert kn_discounts(1, 1, 10, 0) == ((0.5, 1.0, 1.5), True)    # D2 = 2 - 10 < 0
    assert kn_discounts(3, 1, 1, 0)[0][2] == 3.0                   # n4 = 0: D3+ = 3 is allowed


# --------------------------------------------------------------------------- against the reference
def _random_text(rng, n, v, skew):
    p = rng.dirichlet(np.full(v, skew))
    return rng.choice(v, size=n, p=p)


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_random_texts(seed):
    rng = np.random.default_rng(seed)
    v = int(rng.integers(2, 6))
    n = [1, 2, 7, 40, 150, 300][seed]
    text = _random_text(rng, n, v - 1 if seed % 2 else v, skew=0.7)   # odd seeds: one char unseen
    query = np.concatenate([_random_text(rng, 25, v, 1.0), text[:15]])
    for order in range(6):
        m = NGramModel.fit(text, v, order)
        ref = RefKN(text, v, order)
        for start in (0, 1, 7):
            got = m.probs_by_order(query, start=start)
            want = ref_probs_by_order(ref, query, start=start)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
        for ctx in ([], query[:3].tolist(), text[-order:].tolist() if order else [], [v - 1] * 6):
            np.testing.assert_allclose(m.distribution(ctx), [ref.prob(ctx, w) for w in range(v)],
                                       rtol=0, atol=1e-9)


def test_reference_check_exercises_the_discount_formula():
    # a longer random text: most levels get n1..n4 > 0, so the formula (not the fallback) is compared
    rng = np.random.default_rng(2)
    text = _random_text(rng, 2000, 8, skew=0.3)
    m, ref = NGramModel.fit(text, 8, 4), RefKN(text, 8, 4)
    assert (~m.fallback["raw"]).sum() >= 3 and (~m.fallback["cont"]).sum() >= 2
    for kind in ("raw", "cont"):
        for k in range(4 if kind == "cont" else 5):
            np.testing.assert_allclose(m.discounts[kind][k], ref.d[(kind, k)], rtol=0, atol=1e-12)
    query = np.concatenate([text[-50:], _random_text(rng, 100, 8, skew=1.0)])
    np.testing.assert_allclose(m.probs_by_order(query), ref_probs_by_order(ref, query), rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- properties
def test_distributions_sum_to_one_and_unseen_chars_get_mass():
    rng = np.random.default_rng(3)
    text = _random_text(rng, 500, 6, skew=0.5)
    text[text == 5] = 4                                     # char 5 never in training
    m = NGramModel.fit(text, 7, order=5)                    # char 6 is not either
    contexts = [[], [5], [6, 6], text[:5].tolist(), text[100:110].tolist(), [5, 6, 0, 1, 2, 3]]
    contexts += [rng.integers(0, 7, size=int(rng.integers(0, 8))).tolist() for _ in range(20)]
    for ctx in contexts:
        for order in range(6):
            d = m.distribution(ctx, order=order)
            assert d.shape == (7,)
            assert abs(d.sum() - 1) < 1e-12
            assert (d > 0).all() and d[5] > 0 and d[6] > 0


def test_order0_is_the_raw_unigram_interpolated_with_the_uniform():
    rng = np.random.default_rng(5)
    text = _random_text(rng, 3000, 8, skew=1.0)
    m = NGramModel.fit(text, 10, order=0)
    c = np.bincount(text, minlength=10).astype(float)
    n = np.bincount(c.astype(int))
    (d1, d2, d3), _ = kn_discounts(*(int(n[r]) if r < n.size else 0 for r in (1, 2, 3, 4)))
    d = np.select([c == 0, c == 1, c == 2], [0, d1, d2], d3)
    gamma = d[c > 0].sum() / c.sum()
    want = np.maximum(c - d, 0) / c.sum() + gamma / 10
    np.testing.assert_allclose(m.distribution([]), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m.prob_of_next([3, 9, 0]), want[[9, 0]], rtol=0, atol=1e-12)


def test_short_contexts_use_the_lower_order_model_and_start_history():
    rng = np.random.default_rng(8)
    text = _random_text(rng, 400, 4, skew=1.0)
    m = NGramModel.fit(text, 4, order=5)
    q = text[:30]
    p = m.probs_by_order(q, start=0)                       # position i has i chars before it
    for i in range(5):
        np.testing.assert_array_equal(p[i:, i], p[i, i])
    hist, ids = q[:12], q[12:]
    np.testing.assert_allclose(m.prob_of_next(np.concatenate([hist, ids]), start=len(hist)),
                               p[5, 12:], rtol=0, atol=0)
    assert m.prob_of_next(ids).shape == (len(ids) - 1,)
    np.testing.assert_allclose(m.prob_of_next(torch.as_tensor(ids)), m.prob_of_next(ids.tolist()))
    assert np.isclose(m.loss(ids, order=3), -np.log(m.prob_of_next(ids, order=3)).mean())
    np.testing.assert_allclose(m.loss_by_order(ids), [m.loss(ids, order=k) for k in range(6)])


def test_text_shorter_than_the_order():
    m = NGramModel.fit([1], 3, order=4)
    ref = RefKN([1], 3, 4)
    q = [1, 1, 2, 0, 1, 1, 1]
    np.testing.assert_allclose(m.probs_by_order(q, start=0), ref_probs_by_order(ref, q, start=0), atol=1e-12)


def test_bad_inputs_give_clear_errors():
    with pytest.raises(NGramError, match="order must be an int in 0..20"):
        NGramModel.fit([0, 1], 2, order=-1)
    with pytest.raises(NGramError, match="order"):
        NGramModel.fit([0, 1], 2, order=MAX_ORDER + 1)
    with pytest.raises(NGramError, match="order"):
        NGramModel.fit([0, 1], 2, order=2.0)
    with pytest.raises(NGramError, match="empty"):
        NGramModel.fit([], 2, order=1)
    with pytest.raises(NGramError, match=r"outside the vocabulary \[0, 2\)"):
        NGramModel.fit([0, 1, 2], 2, order=1)
    with pytest.raises(NGramError, match="outside the vocabulary"):
        NGramModel.fit(np.array([0, -1]), 2, order=1)
    with pytest.raises(NGramError, match="integer"):
        NGramModel.fit(np.array([0.0, 1.0]), 2, order=1)
    with pytest.raises(NGramError, match="1-D"):
        NGramModel.fit(np.zeros((2, 2), int), 2, order=1)
    with pytest.raises(NGramError, match="vocab_size"):
        NGramModel.fit([0], 0, order=1)
    m = NGramModel.fit([0, 1, 0], 2, order=2)
    with pytest.raises(NGramError, match="outside the vocabulary"):
        m.prob_of_next([0, 5])
    with pytest.raises(NGramError, match="outside the vocabulary"):
        m.distribution([3])
    with pytest.raises(NGramError, match=r"order must be an int in 0..2"):
        m.loss([0, 1, 0], order=3)
    with pytest.raises(NGramError, match="start"):
        m.prob_of_next([0, 1], start=3)
    with pytest.raises(NGramError, match="nothing to score"):
        m.loss([0])
    assert m.prob_of_next([0]).shape == (0,)


def test_loss_table():
    text = [0, 1, 2] * 30
    t = loss_table(text, 3, {"val": [0, 1, 2, 0], "test": [2, 1, 0]}, orders=[1, 3])
    m = NGramModel.fit(text, 3, 3)
    assert list(t.index) == [1, 3] and list(t.columns) == ["val", "test"]
    assert np.isclose(t.loc[3, "test"], m.loss([2, 1, 0], order=3))


# --------------------------------------------------------------------------- real text
@pytest.mark.skipif(not os.environ.get("VURN_DATA"), reason="needs VURN_DATA (the corpora)")
def test_war_and_peace_slice_matches_reference_and_improves_with_order():
    from lab.corpus import load_corpus
    ids = load_corpus("war_and_peace", download=False).split_ids("train")
    train, val = ids[:20_000], ids[20_000:22_000]
    v = int(ids.max()) + 1
    m = NGramModel.fit(train, v, order=4)
    losses = m.loss_by_order(val)
    assert losses[0] > losses[1] > losses[2] > losses[3]
    ref = RefKN(train.tolist(), v, 4)
    q = val[:60].tolist()
    np.testing.assert_allclose(m.probs_by_order(q), ref_probs_by_order(ref, q), rtol=0, atol=1e-9)


def test_nothing_to_score_is_said_plainly():
    model = NGramModel.fit([0, 1] * 50, 2, order=2)
    with pytest.raises(NGramError, match="ids is empty: give the character ids of a text to score"):
        model.loss([])
    with pytest.raises(NGramError, match="ids has 1 character.*no context"):
        model.loss([0])
    with pytest.raises(NGramError, match="at least one order"):
        loss_table([0, 1] * 50, 2, {"val": [0, 1, 0]}, orders=[])
    with pytest.raises(NGramError, match=r"orders must be ints in 0..20, got \[-1\]"):
        loss_table([0, 1] * 50, 2, {"val": [0, 1, 0]}, orders=[-1, 2])   # not the order-2 loss labelled -1
