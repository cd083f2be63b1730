"""lab.errors: the §4.4 oracles, each on a small constructed text with hand-checked answers;
every error in exactly one category, in the oracles' order; settings that change the
result as they should; and a clear message for each kind of bad input."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from lab.corpus import Corpus
from lab.errors import (
    CATEGORIES,
    OracleConfig,
    boost_oracle,
    error_breakdown,
    memory_oracle,
    ngram_oracle,
    punctuation_oracle,
    rare_word_oracle,
    session_breakdown,
    word_counts,
    word_model_oracle,
    word_spans,
)
from lab.models import CharRNN, ModelConfig
from lab.session import Session
from tests import toy

NAN = float("nan")
OFF = {"orders": (), "memory_spans": (), "rare_counts": (), "word_starts": "", "punctuation": "",  # all off
       "boosts": ()}


def same(a, b) -> bool:
    """Equal lists, NaN equal to NaN."""
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b))


# -- each oracle on a constructed text ------------------------------------------------------------

def test_ngram_oracle_takes_the_smallest_order_that_is_right():
    q = np.array([[0.50, 0.1, 0.1, 0.1],    # order 0
                  [0.90, 0.2, 0.1, 0.1],    # order 1
                  [0.10, 0.6, 0.1, 0.1],    # order 2
                  [0.10, 0.9, 0.7, 0.49]])  # order 3
    assert same(ngram_oracle(q, orders=(1, 2, 3)).tolist(), [1, 2, 3, NAN])
    assert same(ngram_oracle(q, orders=(0, 1, 2, 3)).tolist(), [0, 2, 3, NAN])   # 0.5 is right
    assert same(ngram_oracle(q, orders=(3,)).tolist(), [NAN, 3, 3, NAN])
    assert same(ngram_oracle(q, orders=(1, 2, 3), threshold=0.45).tolist(), [1, 2, 3, 3])
    assert same(ngram_oracle(q, orders=(3, 2, 1, 2)).tolist(), [1, 2, 3, NAN])   # the smallest, in any order


def test_settings_are_tried_smallest_first_and_once():
    cfg = OracleConfig(orders=(3, 1, 1), memory_spans=(500, 100, 500), rare_counts=(2, 0), boosts=(0.3, 0.1, 0.3))
    assert (cfg.orders, cfg.memory_spans, cfg.rare_counts, cfg.boosts) == ((1, 3), (100, 500), (0, 2), (0.1, 0.3))
    # a repeated setting is one step of Figure 6: the cumulative fraction ends at 1, not above
    r = error_breakdown("ab", [0.3], config=OracleConfig(orders=(), rare_counts=(), boosts=(0.2, 0.2)))
    steps = r.steps()
    assert steps["step"].tolist()[-1:] == [0.2] and steps["cumulative_fraction"].iloc[-1] == 1.0


def test_word_spans_and_counts():
    assert word_spans("I'm ok.").tolist() == [[0, 1], [-1, -1], [2, 3], [-1, -1], [4, 6], [4, 6], [-1, -1]]
    assert word_counts("Élan, élan: élan 42 42!") == {"Élan": 1, "élan": 2, "42": 2}


def test_memory_oracle_finds_a_recent_whole_word():
    text = "Mary saw Marys. Mary ran"
    #       0123456789012345678901234 : "Mary" at 0 and 16 (distance 16); "Marys" is another word
    # the word's first character is not memory's (unless first_char): choosing a word is the word model's
    assert same(memory_oracle(text, spans=(20,)).tolist(), [NAN] * 16 + [20.0] * 3 + [NAN] * 4)
    assert same(memory_oracle(text, spans=(20,), first_char=True).tolist(), [NAN] * 15 + [20.0] * 4 + [NAN] * 4)
    assert same(memory_oracle(text, spans=(10,)).tolist(), [NAN] * 23)                  # too far back
    assert same(memory_oracle(text, spans=(100, 16, 5)).tolist(), [NAN] * 16 + [16.0] * 3 + [NAN] * 4)
    # distance is from the last occurrence; case matters
    assert same(memory_oracle("ab ab ab Ab", spans=(3, 6)).tolist(), [NAN, NAN, NAN, 3, NAN, NAN, 3, NAN, NAN, NAN])


def test_rare_word_oracle_uses_training_counts():
    counts = word_counts("the cat sat on the mat the")        # the: 3, cat/sat/on/mat: 1
    text = "the dog cat"
    assert same(rare_word_oracle(text, counts).tolist(), [3, 3, NAN, 0, 0, 0, NAN, 1, 1, 1])
    assert same(rare_word_oracle(text, counts, counts=(0, 1, 2)).tolist(), [NAN, NAN, NAN, 0, 0, 0, NAN, 1, 1, 1])
    assert same(rare_word_oracle(text, counts, counts=(1,)).tolist(), [NAN, NAN, NAN, 1, 1, 1, NAN, 1, 1, 1])


def test_word_model_oracle_is_the_character_after_a_space_quote_or_newline():
    text = 'a b\n"c\'d'
    #       a, ' ', b, \n, ", c, ', d  -> predicted: ' ' b \n " c ' d
    assert word_model_oracle(text).tolist() == [False, True, False, True, True, False, True]
    assert word_model_oracle(text, word_starts=" ").tolist() == [False, True, False, False, False, False, False]


def test_punctuation_oracle():
    assert punctuation_oracle('Hi, "you"!\n').tolist() == [False, True, False, True, False, False, False, True,
                                                          True, False]
    assert punctuation_oracle("a,b.", punctuation=".").tolist() == [False, False, True]


def test_boost_oracle_is_the_smallest_boost_that_reaches_the_threshold():
    p = [0.49, 0.4, 0.35, 0.1, 0.0999, 0.6]
    assert same(boost_oracle(p).tolist(), [0.1, 0.1, 0.2, 0.4, NAN, 0.1])
    assert same(boost_oracle(p, boosts=(0.3,)).tolist(), [0.3, 0.3, 0.3, NAN, NAN, 0.3])
    assert same(boost_oracle(p, boosts=(0.2,), threshold=0.3).tolist(), [0.2, 0.2, 0.2, 0.2, NAN, 0.2])


# -- the breakdown: every error once, in the oracles' order ----------------------------------------

TEXT = 'Ann met Bob. "Ann?" Zed!'
#       012345678901234567890123


def breakdown(prob, ngram=None, **cfg):
    counts = {"Ann": 50, "met": 50, "Bob": 50, "Zed": 2}
    return error_breakdown(TEXT, prob, ngram, counts, OracleConfig(**cfg))


def constructed():
    """Probabilities and n-gram probabilities for TEXT, with every category present."""
    p = np.full(len(TEXT) - 1, 0.9)
    q = np.full((3, len(TEXT) - 1), 0.1)
    p[1 - 1] = 0.3; q[2, 1 - 1] = 0.8          # 'n' (pos 1): n-gram order 2
    p[4 - 1] = 0.2                             # 'm' (pos 4): word start
    p[15 - 1] = 0.05; q[1, 15 - 1] = 0.6       # 'n' of the 2nd "Ann": n-gram order 1, before memory
    p[14 - 1] = 0.05                           # 'A' of the 2nd "Ann": a word's first character: word model
    p[16 - 1] = 0.45                           # 'n': memory
    p[17 - 1] = 0.01                           # '?': punctuation
    p[21 - 1] = 0.3                            # 'e' of "Zed": rare (seen 2 times)
    p[11 - 1] = 0.42                           # '.': punctuation comes before boost
    p[5 - 1] = 0.35                            # 'e' of "met": boost 0.2
    p[19 - 1] = 0.01                           # ' ' after '"': word model, though confidently wrong
    p[12 - 1] = 0.05                           # ' ' after '.': other
    return p, q


def test_every_category_by_hand():
    p, q = constructed()
    r = breakdown(p, q, orders=(1, 2))
    got = r.categories_of_text()
    expected = [""] * len(TEXT)
    for pos, cat in {1: "ngram", 15: "ngram", 4: "word_model", 14: "word_model", 16: "memory", 17: "punctuation",
                     21: "rare_words", 11: "punctuation", 5: "boost", 19: "word_model", 12: "other"}.items():
        expected[pos] = cat
    assert got == expected
    counts = r.counts()
    assert counts["count"].tolist() == [2, 1, 1, 3, 2, 1, 1]
    assert r.n_errors == 11 and r.n_chars == 23 and r.error_rate == 11 / 23
    assert counts["fraction"].sum() == pytest.approx(1.0)
    assert counts.loc["word_model", "per_char"] == pytest.approx(3 / 23)
    steps = {(c, s): n for c, s, n in r.steps()[["category", "step", "count"]].itertuples(index=False)
             if not math.isnan(s)}
    assert steps[("ngram", 1)] == 1 and steps[("ngram", 2)] == 1
    assert steps[("memory", 100)] == 1 and steps[("rare_words", 2)] == 1 and steps[("boost", 0.2)] == 1
    assert r.steps()["cumulative_fraction"].iloc[-1] == pytest.approx(10 / 11)   # all but "other"
    assert r.positions("word_model").tolist() == [4, 14, 19]
    assert r.examples("ngram", context=3)[["position", "char", "before", "after"]].values.tolist() == [
        [1, "n", "A", "n m"], [15, "n", ' "A', 'n?"']]


def test_order_matters_a_claimed_error_is_not_counted_again():
    p, q = constructed()
    with_ngram = breakdown(p, q, orders=(1, 2)).counts()["count"]
    without = breakdown(p, orders=()).counts()["count"]
    # position 1 (word 'Ann', seen 50 times, not after a space) is boost 0.2 without the n-gram;
    # position 15 falls to memory (its word occurred 14 characters before)
    assert without["ngram"] == 0
    assert without["memory"] == with_ngram["memory"] + 1
    assert without["boost"] == with_ngram["boost"] + 1
    assert without.sum() == with_ngram.sum() == 11


def test_settings_change_the_result_as_expected():
    p, q = constructed()
    base = breakdown(p, q, orders=(1, 2)).counts()["count"]
    # memory only 10 characters back: the second "Ann" (14 back) is no longer remembered,
    # its last 'n' (p = 0.45) is a boost
    short = breakdown(p, q, orders=(1, 2), memory_spans=(10,)).counts()["count"]
    assert (short["memory"], short["word_model"], short["boost"]) == (0, base["word_model"], base["boost"] + 1)
    # memory of the first character too: the 'A' of the second "Ann" moves from word model to memory
    first = breakdown(p, q, orders=(1, 2), memory_first_char=True)
    assert (first.counts()["count"]["memory"], first.counts()["count"]["word_model"]) == (2, 2)
    assert first.categories_of_text()[14] == "memory" and first.step[14 - 1] == 100
    # "Zed" is rare only when seen at most 2 times counts as rare
    assert breakdown(p, q, orders=(1, 2), rare_counts=(0, 1)).counts()["count"]["rare_words"] == 0
    # no boosts: everything the boost explained is "other"
    nob = breakdown(p, q, orders=(1, 2), boosts=()).counts()["count"]
    assert nob["boost"] == 0 and nob["other"] == base["other"] + base["boost"]
    # a lower threshold: fewer errors (0.42, 0.45, 0.35, 0.3 (x2) are no longer errors at 0.25)
    low = breakdown(p, q, orders=(1, 2), threshold=0.25, boosts=(0.1, 0.2))
    assert low.n_errors == 11 - 5
    # only the word model and punctuation on: the others fall to "other"
    only = error_breakdown(TEXT, p, config=OracleConfig(**{**OFF, "word_starts": " ", "punctuation": "?."}))
    c = only.counts()["count"]
    assert (c["word_model"], c["punctuation"], c["other"]) == (1, 2, 8)   # 'm' after ' '; '.', '?'


def test_every_error_lands_in_exactly_one_category_on_a_long_text():
    text = toy.toy_text(5000, seed=1)
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, len(text) - 1) ** 2
    q = rng.uniform(0, 1, (10, len(text) - 1))
    counts = word_counts(toy.toy_text(2000, seed=2)[:1000])
    r = error_breakdown(text, p, q, counts)
    assert ((r.category >= 0) == (p < 0.5)).all()
    assert set(np.unique(r.category[r.category >= 0])) <= set(range(len(CATEGORIES)))
    c = r.counts()
    assert c["count"].sum() == r.n_errors == int((p < 0.5).sum())
    assert c["fraction"].sum() == pytest.approx(1.0)
    assert sorted(np.concatenate([r.positions(cat) for cat in CATEGORIES]).tolist()) == (
        np.flatnonzero(p < 0.5) + 1).tolist()
    assert r.steps()["count"].sum() == r.n_errors - c.loc["other", "count"]
    # each error's category is the FIRST oracle that claims it
    ng = ngram_oracle(q, range(1, 10))
    assert (r.category[(p < 0.5) & ~np.isnan(ng)] == 0).all()
    assert (r.category[(p < 0.5) & np.isnan(ng)] != 0).all()


# -- bad input -----------------------------------------------------------------------------------

def test_bad_inputs_are_clear_errors():
    ok = {"config": OracleConfig(orders=(), rare_counts=())}
    with pytest.raises(ValueError, match="one probability per predicted character: 2 for a 3-character text"):
        error_breakdown("abc", [0.1, 0.2, 0.3], **ok)
    with pytest.raises(ValueError, match="at least 2 are needed"):
        error_breakdown("", [], **ok)
    with pytest.raises(TypeError, match="text must be a str"):
        error_breakdown(b"ab", [0.1], **ok)
    with pytest.raises(ValueError, match=r"NaN.*trace\['prob'\]\[:-1\]"):
        error_breakdown("abc", [0.1, float("nan")], **ok)
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        error_breakdown("abc", [0.1, 1.5], **ok)
    with pytest.raises(ValueError, match="ngram_probs is needed"):
        error_breakdown("abc", [0.1, 0.2], config=OracleConfig(rare_counts=()))
    with pytest.raises(ValueError, match="word_counts is needed"):
        error_breakdown("abc", [0.1, 0.2], config=OracleConfig(orders=()))
    with pytest.raises(ValueError, match=r"ngram_probs must be \(orders, 2\)"):
        error_breakdown("abc", [0.1, 0.2], [[0.5, 0.5, 0.5]], config=OracleConfig(orders=(0,), rare_counts=()))
    with pytest.raises(ValueError, match="order 9 is not in ngram_probs, which holds orders 0..1"):
        error_breakdown("abc", [0.1, 0.2], [[0.5, 0.5]] * 2, config=OracleConfig(rare_counts=()))
    with pytest.raises(TypeError, match="config must be an OracleConfig"):
        error_breakdown("abc", [0.1, 0.2], config={"orders": ()})
    with pytest.raises(TypeError, match="train_counts must map words to their training counts"):
        error_breakdown("ab ab", [0.1] * 4, word_counts=["ab"], config=OracleConfig(orders=()))
    r = error_breakdown("abc", [0.1, 0.2], **ok)
    with pytest.raises(ValueError, match="unknown category 'typo': choose one of ngram, memory"):
        r.positions("typo")
    with pytest.raises(IndexError, match="page 1 does not exist: boost has 2 errors, pages 0..0"):
        r.examples("boost", page=1)
    with pytest.raises(ValueError, match="no top-k predictions"):
        r.top_k(1)
    with pytest.raises(ValueError, match="context is the characters shown either side of an error, at least 0"):
        r.examples("boost", context=-2)


def test_top_k_inputs_come_together_and_agree():
    ok = {"config": OracleConfig(orders=(), rare_counts=())}
    with pytest.raises(ValueError, match="top_probs and vocab are missing: pass all three"):
        error_breakdown("ab", [0.3], top_ids=[[0]], **ok)
    with pytest.raises(ValueError, match="vocab is missing"):
        error_breakdown("ab", [0.3], top_ids=[[0]], top_probs=[[0.3]], **ok)
    with pytest.raises(ValueError, match=r"top_ids must be integer ids into vocab \(0..1\)"):
        error_breakdown("ab", [0.3], top_ids=[[5]], top_probs=[[0.3]], vocab="ab", **ok)
    with pytest.raises(ValueError, match="one shape"):
        error_breakdown("ab", [0.3], top_ids=[[0, 1]], top_probs=[[0.3]], vocab="ab", **ok)
    r = error_breakdown("ab", [0.3], top_ids=[[1, 0]], top_probs=[[0.7, 0.3]], vocab="ab", **ok)
    assert r.top_k(1) == [("b", 0.7), ("a", 0.3)]


@pytest.mark.parametrize("kw, message", [
    ({"threshold": 0}, "threshold must be a probability"),
    ({"threshold": "0.5"}, "threshold must be a probability in \\(0, 1\\], got '0.5'"),
    ({"threshold": True}, "threshold must be a probability in \\(0, 1\\], got True"),
    ({"orders": (1, 21)}, "at most 20"),
    ({"orders": (-1,)}, "orders must be ints >= 0"),
    ({"memory_spans": (0,)}, "memory_spans must be ints >= 1"),
    ({"rare_counts": (1.5,)}, "rare_counts must be ints >= 0"),
    ({"boosts": (0.6,)}, r"boosts must be numbers in \(0, 0.5\]"),
    ({"orders": 5}, "orders must be a tuple of ints"),
    ({"punctuation": None}, "punctuation must be a str"),
    ({"memory_first_char": 1}, "memory_first_char must be True or False"),
])
def test_bad_settings_are_clear_errors(kw, message):
    with pytest.raises((ValueError, TypeError), match=message):
        OracleConfig(**kw)


def test_unknown_setting_is_an_error():
    with pytest.raises(TypeError, match="unexpected keyword"):
        OracleConfig(order=(1,))


# -- from a session ------------------------------------------------------------------------------

def test_session_breakdown_on_a_toy_model():
    corpus = Corpus.from_text("toy", toy.toy_text(3000, seed=3))
    vocab = "".join(corpus.vocab)
    model = CharRNN(ModelConfig("lstm", 1, 8, len(vocab)))
    model.init_uniform(0.3, generator=torch.Generator().manual_seed(0))
    s = Session(model, {"vocab": vocab, "corpus": "toy", "corpus_sha256": corpus.sha256}, device="cpu",
                corpus=corpus, name="toy-lstm")
    r = session_breakdown(s, split="test", start=10, length=200, config=OracleConfig(orders=(1, 2, 3)))
    tr = s.trace(split="test", start=10, length=200)
    assert r.text == corpus.split("test")[10:210] and r.name == "toy-lstm"
    assert np.allclose(r.prob, tr["prob"][:-1])
    assert r.n_errors == int((tr["prob"][:-1] < 0.5).sum()) > 0
    assert r.counts()["count"].sum() == r.n_errors
    j = int(r.positions(CATEGORIES[int(r.category[r.category >= 0][0])])[0])
    top = r.top_k(j)
    assert len(top) == 5 and top[0][0] == s.vocab[int(tr["topk.ids"][j - 1, 0])]
    assert all(a[1] >= b[1] for a, b in itertools.pairwise(top))
    assert r.info["params"] == sum(p.numel() for p in model.parameters())


# -- the error explorer's Python side (the browser test covers the page) --------------------------

def explorer_pair():
    from widgets.errors import ErrorExplorer
    p, q = constructed()
    big = breakdown(p, q, orders=(1, 2))
    small = breakdown(np.minimum(p, 0.3), q, orders=(1, 2))
    return ErrorExplorer({"big": big, "small": small}, per_page=2, context=3), big, small


def test_explorer_selection_pages_and_examples():
    w, _big, small = explorer_pair()
    assert w.selection == {"model": "", "category": "", "page": 0, "positions": []} and w.examples == []
    assert [(r["model"], r["category"], r["count"]) for r in w.chart[:2]] == [("big", "ngram", 2), ("big", "memory", 1)]
    assert len(w.chart) == 14 and sum(r["count"] for r in w.chart if r["model"] == "small") == small.n_errors
    w.model_name, w.category = "big", "word_model"          # as a click on a bar does
    assert (w.n_selected, w.n_pages, w.shown) == (3, 2, [4, 14])
    w.page = 1
    assert w.selection == {"model": "big", "category": "word_model", "page": 1, "positions": [19]}
    ex = w.examples[0]
    assert (ex["position"], ex["char"], ex["p"], ex["start"]) == (19, " ", 0.01, 16)
    assert "".join(c["ch"] for c in ex["chars"]) == TEXT[16:23]
    assert [c["cat"] for c in ex["chars"]] == ["memory", "punctuation", "", "word_model", "", "rare_words", ""]
    # the other model on the same character: small has every character below 0.3 wrong
    assert ex["others"] == [{"model": "small", "p": 0.01, "category": "word_model"}]
    w.category = "ngram"                                      # a new category starts at page 0
    assert w.selection == {"model": "big", "category": "ngram", "page": 0, "positions": [1, 15]}
    w.select("small", "boost")
    assert w.shown == small.positions("boost")[:2].tolist()


def test_explorer_keeps_the_example_in_view_when_the_page_size_changes():
    w, big, _ = explorer_pair()
    all_ = big.positions("word_model").tolist()          # 3 errors: pages of 2 are [0, 1], [2]
    w.select("big", "word_model", page=1)
    w.per_page = 1                                       # the example in view (the third) is now page 2
    assert w.selection == {"model": "big", "category": "word_model", "page": 2, "positions": all_[2:]}
    w.per_page = 5                                       # one page holds them all
    assert (w.page, w.n_pages, w.shown) == (0, 1, all_)
    assert "page 1 of 1" in repr(w)


def test_explorer_shows_a_selection_given_to_the_constructor():
    from widgets.errors import ErrorExplorer
    _, big, _ = explorer_pair()
    w = ErrorExplorer({"big": big}, per_page=2, model_name="big", category="word_model", page=1)
    assert (w.n_selected, w.n_pages) == (3, 2)
    assert w.selection == {"model": "big", "category": "word_model", "page": 1,
                           "positions": big.positions("word_model")[2:].tolist()}
    assert len(w.examples) == 1


def test_explorer_refuses_a_bad_selection():
    import traitlets
    w, _big, _ = explorer_pair()
    with pytest.raises(traitlets.TraitError, match="unknown category 'typo'"):
        w.category = "typo"
    with pytest.raises(traitlets.TraitError, match="unknown model 'huge': choose one of big, small"):
        w.model_name = "huge"
    w.select("big", "memory")
    with pytest.raises(traitlets.TraitError, match=r"page 1 does not exist: the selection has pages 0..0"):
        w.page = 1
    from widgets.errors import ErrorExplorer
    with pytest.raises(ValueError, match="at least one ErrorBreakdown"):
        ErrorExplorer([])
    with pytest.raises(ValueError, match="needs a name"):
        ErrorExplorer([error_breakdown("ab", [0.1], config=OracleConfig(**OFF))])
    with pytest.raises(TypeError, match="must be an ErrorBreakdown"):
        ErrorExplorer({"x": [0.1]})
    with pytest.raises(ValueError, match="context is the characters shown either side of an error, at least 0"):
        ErrorExplorer({"big": _big}, context=-5)
    with pytest.raises(traitlets.TraitError, match="context must be at least 0, got -1"):
        w.context = -1
    import dataclasses
    with pytest.raises(ValueError, match=r"model names must differ, got \['big', 'big'\]: pass a dict"):
        ErrorExplorer([dataclasses.replace(_big, name="big"), dataclasses.replace(_big, name="big")])
    with pytest.raises(ValueError, match="per_page must be at least 1, got 0"):
        ErrorExplorer({"big": _big}, per_page=0)
    with pytest.raises(traitlets.TraitError, match="per_page must be at least 1, got 0"):
        w.per_page = 0
    with pytest.raises(ValueError, match="per_page must be at least 1, got 0"):
        _big.examples("memory", per_page=0)
    with pytest.raises(ValueError, match="context is the characters shown either side of an error"):
        _big.examples("memory", context=-1)
    assert (w.model_name, w.category, w.page, w.per_page, w.context) == ("big", "memory", 0, 2, 3)   # unchanged


def test_explorer_static_html():
    w, _big, _ = explorer_pair()
    w.select("big", "punctuation")
    page = w.to_html()
    assert "<script" not in page and "http" not in page
    assert page.count('class="err-example"') == 2 and "big: punctuation, page 1 of 1" in page
    assert "&lt;" not in page and "outline:2px solid #000" in page
    assert repr(w) == "ErrorExplorer(big, small; selected: big / punctuation, page 1 of 1)"
