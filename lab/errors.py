"""Peeling the onion (paper §4.4): which kinds of error does a character model make?

An **error** is a character to which the model gives probability < 0.5 (``threshold``).
Oracles are applied in a fixed order; each claims some of the errors that are still
unexplained, so every error lands in exactly one category (the first oracle that claims
it) and the counts add up to the number of errors. Within an oracle, its settings are
tried from the smallest up (1-gram before 2-gram, n = 100 before 500, ...; ``OracleConfig``
sorts them and drops repeats) and the setting that first claims an error is recorded as
its ``step``: the paper's Figure 6 is the cumulative sum over the steps.

Exact definitions (``text`` is the scored text, ``p[i]`` the model's probability of
``text[i + 1]``, as in :mod:`lab.longrange`; a *word* is a maximal run of alphanumeric
characters, ``str.isalnum``, compared case-sensitively, so "couldn't" is "couldn" and "t"):

1. ``ngram``: an n-gram model of some order n in ``orders`` (default 1..9) gives the
   correct character probability >= ``threshold``. Order counts CONTEXT characters, as in
   :mod:`lab.ngram` (order 1 looks one character back); the models are trained on the
   training split and read their contexts from the scored text (so its first characters
   have shorter ones). Step: the smallest such order.
2. ``memory`` (dynamic n-long memory): the character is inside a word, not its first
   character, and that whole word occurred (as a whole word, earlier in the scored text)
   starting at most n characters before this word starts; n in ``memory_spans`` (default
   100, 500, 1000, 5000). Step: the smallest such n. A word's first character is the
   choice of the next word, left to the word model, unless ``memory_first_char=True``
   (on War and Peace that setting makes "memory" claim most word starts too, since
   common words recur within 100 characters: 40% of the errors instead of 16%).
3. ``rare_words``: the character is inside a word seen at most t times as a word in the
   training split, t in ``rare_counts`` (default 0..5). Step: the smallest such t. Unlike
   ``memory``, this claims a rare word's first character too: the model cannot have learnt
   to choose a word it has (almost) never seen, so the word model is not to blame either.
4. ``word_model``: the character comes right after one of ``word_starts`` (a space, a
   double or single quote, a newline): choosing the next word, not finishing one.
5. ``punctuation``: the correct character is one of ``punctuation`` (ASCII punctuation).
6. ``boost``: adding b to the correct character's probability would make it right,
   p + b >= ``threshold``, b in ``boosts`` (default 0.1 .. 0.4): the model was merely not
   confident. Step: the smallest such b.
7. ``other``: what is left, errors with p < threshold - max(boosts): confidently wrong.

    >>> import numpy as np
    >>> text = "ab ab"
    >>> p = np.array([0.9, 0.1, 0.2, 0.45])             # P(b), P(' '), P(a), P(b)
    >>> r = error_breakdown(text, p, word_counts={"ab": 9}, config=OracleConfig(orders=()))
    >>> r.counts()["count"].tolist()                     # ngram, memory, rare, word, punct, boost, other
    [0, 1, 0, 1, 0, 1, 0]
    >>> r.categories_of_text()                           # per character of the text
    ['', '', 'boost', 'word_model', 'memory']

For a trained model, :func:`session_breakdown` does everything from a ``lab.Session``::

    >>> from lab import Session                                         # doctest: +SKIP
    >>> r = session_breakdown(Session.load("war_and_peace_lstm"), length=20_000)   # doctest: +SKIP
    >>> r.counts()                                                      # doctest: +SKIP
"""
from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

ERROR_THRESHOLD = 0.5
CATEGORIES = ("ngram", "memory", "rare_words", "word_model", "punctuation", "boost", "other")
LABELS = {"ngram": "n-gram", "memory": "dynamic memory", "rare_words": "rare words", "word_model": "word model",
          "punctuation": "punctuation", "boost": "boost", "other": "other"}
NOT_AN_ERROR = -1


@dataclass(frozen=True)
class OracleConfig:
    """The oracles' settings; an empty tuple switches an oracle off (e.g. ``orders=()``).

    >>> OracleConfig(memory_spans=(500, 100, 500)).memory_spans     # sorted, repeats dropped
    (100, 500)
    >>> OracleConfig(boosts=(0.7,))
    Traceback (most recent call last):
    ...
    ValueError: boosts must be numbers in (0, 0.5] (probability added to the correct character), got (0.7,)
    """

    threshold: float = ERROR_THRESHOLD
    orders: tuple[int, ...] = tuple(range(1, 10))
    memory_spans: tuple[int, ...] = (100, 500, 1000, 5000)
    memory_first_char: bool = False
    rare_counts: tuple[int, ...] = tuple(range(6))
    word_starts: str = ' "\'\n'
    punctuation: str = string.punctuation
    boosts: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)

    def __post_init__(self):
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not 0 < t <= 1:
            raise ValueError(f"threshold must be a probability in (0, 1], got {t!r}")
        object.__setattr__(self, "threshold", float(t))

        def ints(name, low, what):
            v = getattr(self, name)
            if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
                raise TypeError(f"{name} must be a tuple of ints ({what}), got {v!r}")
            v = tuple(v)
            if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= low for x in v):
                raise ValueError(f"{name} must be ints >= {low} ({what}), got {v!r}")
            object.__setattr__(self, name, tuple(sorted({int(x) for x in v})))   # tried smallest first, once

        ints("orders", 0, "n-gram orders, context characters")
        if any(o > 20 for o in self.orders):
            raise ValueError(f"orders must be at most 20 (lab.ngram.MAX_ORDER), got {self.orders!r}")
        ints("memory_spans", 1, "characters looked back")
        ints("rare_counts", 0, "times seen in training")
        b = self.boosts
        if isinstance(b, (str, bytes)) or not hasattr(b, "__iter__"):
            raise TypeError(f"boosts must be a tuple of numbers, got {b!r}")
        b = tuple(b)
        if not all(isinstance(x, (int, float, np.floating)) and 0 < x <= 0.5 for x in b):
            raise ValueError(f"boosts must be numbers in (0, 0.5] (probability added to the correct "
                             f"character), got {b!r}")
        object.__setattr__(self, "boosts", tuple(sorted({float(x) for x in b})))
        if not isinstance(self.memory_first_char, bool):
            raise TypeError(f"memory_first_char must be True or False, got {self.memory_first_char!r}")
        for name in ("word_starts", "punctuation"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a str of characters, got {getattr(self, name)!r}")

    def as_dict(self) -> dict:
        """The settings as plain JSON-able values (for provenance files).

        >>> import json
        >>> d = OracleConfig(orders=(1, 2)).as_dict()
        >>> list(d)
        ['threshold', 'orders', 'memory_spans', 'memory_first_char', 'rare_counts', 'word_starts', 'punctuation', 'boosts']
        >>> json.dumps(d)[:36]
        '{"threshold": 0.5, "orders": [1, 2],'
        """
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ------------------------------------------------------------------ input checks
def _check_text(text) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if len(text) < 2:
        raise ValueError(f"the text has {len(text)} character(s): at least 2 are needed (the first is only context)")
    return text


def _check_prob(text: str, prob, what: str = "prob") -> np.ndarray:
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 1 or len(p) != len(text) - 1:
        raise ValueError(f"{what} must hold one probability per predicted character: {len(text) - 1} for a "
                         f"{len(text)}-character text (p[i] is the probability of text[i + 1]), got shape {p.shape}")
    if np.isnan(p).any():
        raise ValueError(f"{what} has {int(np.isnan(p).sum())} NaN value(s), e.g. at {np.flatnonzero(np.isnan(p))[:3]}"
                         ": a trace's last 'prob' is NaN, so pass trace['prob'][:-1]")
    if (p < 0).any() or (p > 1 + 1e-6).any():
        raise ValueError(f"{what} must be probabilities in [0, 1], got values from {p.min():g} to {p.max():g}")
    return p


# ------------------------------------------------------------------ words
def word_spans(text: str) -> np.ndarray:
    """(len(text), 2): [start, end) of the word each character is in, (-1, -1) outside words.

    >>> word_spans("Hi, yo").tolist()
    [[0, 2], [0, 2], [-1, -1], [-1, -1], [4, 6], [4, 6]]
    """
    alnum = np.fromiter((c.isalnum() for c in text), dtype=bool, count=len(text))
    spans = np.full((len(text), 2), -1, dtype=np.int64)
    if not alnum.any():
        return spans
    edges = np.diff(np.concatenate([[0], alnum.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    for s, e in zip(starts, ends):
        spans[s:e] = (s, e)
    return spans


def words(text: str) -> list[tuple[int, int]]:
    """The (start, end) of every word of ``text``, in order.

    >>> words("a bb, c")
    [(0, 1), (2, 4), (6, 7)]
    """
    alnum = np.fromiter((c.isalnum() for c in text), dtype=bool, count=len(text))
    edges = np.diff(np.concatenate([[0], alnum.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def word_counts(text: str) -> Counter:
    """How often each word occurs in ``text`` (the training split, for the rare-words oracle).

    >>> word_counts("the cat, the hat")["the"]
    2
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return Counter(text[s:e] for s, e in words(text))


# ------------------------------------------------------------------ the oracles
# Each returns one value per predicted character i (the character text[i + 1]): the
# setting that claims it (NaN / False: not claimed), whether or not it is an error.

def ngram_oracle(ngram_probs, orders=tuple(range(1, 10)), threshold: float = ERROR_THRESHOLD) -> np.ndarray:
    """The smallest order in ``orders`` whose n-gram model gives p >= ``threshold`` (NaN: none).

    ``ngram_probs`` is (max order + 1, T - 1): row k the order-k probabilities, as
    ``NGramModel.probs_by_order(ids)`` returns them.

    >>> ngram_oracle(np.array([[0.6, 0.6, 0.2], [0.1, 0.7, 0.2]]), orders=(1, 0)).tolist()
    [0.0, 0.0, nan]
    """
    q = np.asarray(ngram_probs, dtype=np.float64)
    if q.ndim != 2:
        raise ValueError(f"ngram_probs must be 2-D (orders, characters), got shape {q.shape}")
    orders = sorted(set(orders))
    missing = [o for o in orders if not 0 <= o < q.shape[0]]
    if missing:
        raise ValueError(f"order {max(missing)} is not in ngram_probs, which holds orders 0..{q.shape[0] - 1}: "
                         f"fit the n-gram model with order >= {max(missing)}")
    out = np.full(q.shape[1], np.nan)
    for order in orders:
        out[np.isnan(out) & (q[order] >= threshold)] = order
    return out


def memory_oracle(text: str, spans=(100, 500, 1000, 5000), first_char: bool = False) -> np.ndarray:
    """The smallest n in ``spans`` such that the word of text[i + 1] occurred starting at most n
    characters before this word starts (NaN: none, not in a word, or the word's first character
    unless ``first_char``).

    >>> memory_oracle("ab cd ab", spans=(3, 6)).tolist()    # 'ab' again, 6 characters later
    [nan, nan, nan, nan, nan, nan, 6.0]
    >>> memory_oracle("ab cd ab", spans=(3, 6), first_char=True).tolist()
    [nan, nan, nan, nan, nan, 6.0, 6.0]
    """
    _check_text(text)
    spans = sorted(spans)
    out = np.full(len(text), np.nan)
    last: dict[str, int] = {}
    for s, e in words(text):
        w = text[s:e]
        if w in last:
            d = s - last[w]
            n = next((n for n in spans if d <= n), None)
            if n is not None:
                out[s if first_char else s + 1:e] = n
        last[w] = s
    return out[1:]


def rare_word_oracle(text: str, train_counts, counts=tuple(range(6))) -> np.ndarray:
    """The smallest t in ``counts`` such that the word of text[i + 1] was seen at most t times in
    training (NaN: none, or not in a word).

    >>> rare_word_oracle("a Zyx", {"a": 10, "Zyx": 1}, counts=(0, 1)).tolist()
    [nan, 1.0, 1.0, 1.0]
    """
    _check_text(text)
    if not hasattr(train_counts, "get"):
        raise TypeError(f"train_counts must map words to their training counts (lab.errors.word_counts(train_text)), "
                        f"got {type(train_counts).__name__}")
    counts = sorted(counts)
    out = np.full(len(text), np.nan)
    for s, e in words(text):
        seen = train_counts.get(text[s:e], 0)
        t = next((t for t in counts if seen <= t), None)
        if t is not None:
            out[s:e] = t
    return out[1:]


def word_model_oracle(text: str, word_starts: str = ' "\'\n') -> np.ndarray:
    """True where text[i + 1] comes right after a space, a quote or a newline (a new word).

    >>> word_model_oracle('a "b c').tolist()
    [False, True, True, False, True]
    """
    _check_text(text)
    starts = set(word_starts)
    return np.fromiter((c in starts for c in text[:-1]), dtype=bool, count=len(text) - 1)


def punctuation_oracle(text: str, punctuation: str = string.punctuation) -> np.ndarray:
    """True where text[i + 1] is punctuation.

    >>> punctuation_oracle("Hi, you.").tolist()
    [False, True, False, False, False, False, True]
    """
    _check_text(text)
    marks = set(punctuation)
    return np.fromiter((c in marks for c in text[1:]), dtype=bool, count=len(text) - 1)


def boost_oracle(prob, boosts=(0.1, 0.2, 0.3, 0.4), threshold: float = ERROR_THRESHOLD) -> np.ndarray:
    """The smallest boost b with prob + b >= ``threshold`` (NaN: none).

    >>> boost_oracle([0.45, 0.25, 0.05, 0.9]).tolist()
    [0.1, 0.3, nan, 0.1]
    """
    p = np.asarray(prob, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    for b in sorted(boosts):
        # the boosts are decimals: round so that 0.4 + 0.1 reaches 0.5
        out[np.isnan(out) & (np.round(p + b, 12) >= threshold)] = b
    return out


# ------------------------------------------------------------------ the result
@dataclass
class ErrorBreakdown:
    """Every error of a model on a text, in exactly one category.

    Arrays are indexed by predicted character i (the character ``text[i + 1]``):
    ``category[i]`` is an index into :data:`CATEGORIES` or -1 (not an error), ``step[i]``
    the setting of the oracle that claimed it (NaN for the word and punctuation oracles).
    ``top_ids``, ``top_probs`` (optional, (T - 1, K)) are the model's K most likely
    characters there, ids into ``vocab``.

    >>> r = error_breakdown("ab.", [0.2, 0.3], config=OracleConfig(orders=(), rare_counts=()))
    >>> r.error_rate, r.positions("punctuation").tolist(), r.positions("boost").tolist()
    (1.0, [2], [1])
    """

    text: str
    prob: np.ndarray
    category: np.ndarray
    step: np.ndarray
    config: OracleConfig
    name: str = ""
    top_ids: np.ndarray | None = None
    top_probs: np.ndarray | None = None
    vocab: tuple = ()
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"ErrorBreakdown({self.name + ': ' if self.name else ''}{self.n_errors:,} errors in "
                f"{self.n_chars:,} characters, error rate {self.error_rate:.3f})")

    @property
    def n_chars(self) -> int:
        """Characters scored (all but the first of the text).

        >>> error_breakdown("ab.", [0.2, 0.9], config=OracleConfig(orders=(), rare_counts=())).n_chars
        2
        """
        return len(self.prob)

    @property
    def n_errors(self) -> int:
        """Characters given probability below the threshold (every one is in exactly one category).

        >>> error_breakdown("ab.", [0.2, 0.9], config=OracleConfig(orders=(), rare_counts=())).n_errors
        1
        """
        return int((self.category != NOT_AN_ERROR).sum())

    @property
    def error_rate(self) -> float:
        """Errors per scored character.

        >>> error_breakdown("ab.", [0.2, 0.9], config=OracleConfig(orders=(), rare_counts=())).error_rate
        0.5
        """
        return self.n_errors / self.n_chars

    def _index(self, category: str) -> int:
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}: choose one of {', '.join(CATEGORIES)}")
        return CATEGORIES.index(category)

    def counts(self) -> pd.DataFrame:
        """Per category: ``count``, ``fraction`` of the errors, ``per_char`` (of all scored characters).

        >>> error_breakdown("ab", [0.3], config=OracleConfig(orders=(), rare_counts=())).counts().loc["boost"].tolist()
        [1.0, 1.0, 1.0]
        """
        n = np.bincount(self.category[self.category >= 0], minlength=len(CATEGORIES))
        df = pd.DataFrame({"count": n, "fraction": n / max(self.n_errors, 1), "per_char": n / self.n_chars},
                          index=pd.Index(CATEGORIES, name="category"))
        return df

    def steps(self) -> pd.DataFrame:
        """The peel step by step (the paper's Figure 6): errors each setting claims, in order,
        and the cumulative fraction of errors explained after it.

        >>> cfg = OracleConfig(orders=(), rare_counts=())
        >>> error_breakdown("ab", [0.3], config=cfg).steps().iloc[-3:].values.tolist()
        [['boost', 0.2, 1, 1.0], ['boost', 0.3, 0, 1.0], ['boost', 0.4, 0, 1.0]]
        """
        c = self.config
        settings = {"ngram": c.orders, "memory": c.memory_spans, "rare_words": c.rare_counts,
                    "word_model": [np.nan], "punctuation": [np.nan], "boost": c.boosts}   # each sorted, once
        rows = []
        for cat, values in settings.items():
            mask = self.category == CATEGORIES.index(cat)
            for v in values:
                hit = mask if np.isnan(v) else mask & (self.step == v)
                rows.append({"category": cat, "step": v, "count": int(hit.sum())})
        df = pd.DataFrame(rows)
        df["cumulative_fraction"] = df["count"].cumsum() / max(self.n_errors, 1)
        return df

    def positions(self, category: str) -> np.ndarray:
        """Positions in ``text`` of the errors of one category, in text order.

        >>> error_breakdown("xy", [0.0], config=OracleConfig(orders=(), rare_counts=(), boosts=())).positions("other").tolist()
        [1]
        """
        return np.flatnonzero(self.category == self._index(category)) + 1

    def categories_of_text(self) -> list[str]:
        """The category of every character of ``text`` ('' where it is not an error).

        >>> error_breakdown("ab", [0.9], config=OracleConfig(orders=(), rare_counts=())).categories_of_text()
        ['', '']
        """
        return [""] + ["" if c < 0 else CATEGORIES[c] for c in self.category]

    def top_k(self, position: int) -> list[tuple[str, float]]:
        """The model's K most likely characters at ``position`` of the text (what it expected there).

        >>> r = error_breakdown("ab", [0.3], config=OracleConfig(orders=(), rare_counts=()), top_ids=[[1, 0]],
        ...                     top_probs=[[0.7, 0.3]], vocab="ab")
        >>> r.top_k(1)
        [('b', 0.7), ('a', 0.3)]
        """
        if self.top_ids is None:
            raise ValueError("this breakdown has no top-k predictions: build it from a trace (session_breakdown)")
        if not 1 <= position <= self.n_chars:
            raise IndexError(f"position {position} was not predicted: positions run 1..{self.n_chars}")
        i = position - 1
        return [(self.vocab[int(k)], float(p)) for k, p in zip(self.top_ids[i], self.top_probs[i])]

    def examples(self, category: str, page: int = 0, per_page: int = 10, context: int = 30) -> pd.DataFrame:
        """One page of a category's errors: position, correct character, its probability, the
        oracle's step and ``context`` characters either side.

        >>> r = error_breakdown("ab ab", [0.9, 0.1, 0.2, 0.45], word_counts={"ab": 9}, config=OracleConfig(orders=()))
        >>> r.examples("memory", context=2)[["position", "char", "before", "after"]].values.tolist()
        [[4, 'b', ' a', '']]
        """
        idx = self.positions(category)
        if per_page < 1:
            raise ValueError(f"per_page must be at least 1, got {per_page}")
        if context < 0:
            raise ValueError(f"context is the characters shown either side of an error, at least 0; got {context}")
        pages = max(1, -(-len(idx) // per_page))
        if not 0 <= page < pages:
            raise IndexError(f"page {page} does not exist: {category} has {len(idx)} errors, pages 0..{pages - 1}")
        idx = idx[page * per_page:(page + 1) * per_page]
        return pd.DataFrame({
            "position": idx, "char": [self.text[j] for j in idx], "prob": self.prob[idx - 1],
            "step": self.step[idx - 1],
            "before": [self.text[max(0, j - context):j] for j in idx],
            "after": [self.text[j + 1:j + 1 + context] for j in idx]})


def error_breakdown(text: str, prob, ngram_probs=None, word_counts=None, config: OracleConfig | None = None,
                    **extra) -> ErrorBreakdown:
    """Put every error of a model on ``text`` in exactly one category (see the module docstring).

    ``prob[i]`` is the model's probability of ``text[i + 1]``; ``ngram_probs`` the n-gram
    probabilities by order (needed unless ``config.orders`` is empty); ``word_counts`` the
    training split's word counts (needed unless ``config.rare_counts`` is empty). ``extra``
    goes to :class:`ErrorBreakdown` (``name``, ``top_ids``, ``top_probs``, ``vocab``, ``info``).

    >>> cfg = OracleConfig(orders=(0, 1), rare_counts=())
    >>> r = error_breakdown("aa", [0.1], ngram_probs=[[0.2], [0.8]], config=cfg)
    >>> r.categories_of_text(), float(r.step[0])
    (['', 'ngram'], 1.0)
    """
    config = config or OracleConfig()
    if not isinstance(config, OracleConfig):
        raise TypeError(f"config must be an OracleConfig, got {type(config).__name__}")
    text = _check_text(text)
    p = _check_prob(text, prob)
    n = len(p)
    claims: list[tuple[str, np.ndarray]] = []  # (category, step or NaN; claimed where not "unclaimed")
    if config.orders:
        if ngram_probs is None:
            raise ValueError("ngram_probs is needed for the n-gram oracle: pass NGramModel.probs_by_order(ids), "
                             "or switch it off with OracleConfig(orders=())")
        q = np.asarray(ngram_probs, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != n:
            raise ValueError(f"ngram_probs must be (orders, {n}) for this text, got shape {q.shape}")
        claims.append(("ngram", ngram_oracle(q, config.orders, config.threshold)))
    if config.memory_spans:
        claims.append(("memory", memory_oracle(text, config.memory_spans, config.memory_first_char)))
    if config.rare_counts:
        if word_counts is None:
            raise ValueError("word_counts is needed for the rare-words oracle: pass word_counts(train_text), "
                             "or switch it off with OracleConfig(rare_counts=())")
        claims.append(("rare_words", rare_word_oracle(text, word_counts, config.rare_counts)))
    for cat, hit in (("word_model", word_model_oracle(text, config.word_starts)),
                     ("punctuation", punctuation_oracle(text, config.punctuation))):
        claims.append((cat, np.where(hit, np.inf, np.nan)))  # inf: claimed, no setting
    if config.boosts:
        claims.append(("boost", boost_oracle(p, config.boosts, config.threshold)))

    category = np.full(n, NOT_AN_ERROR, dtype=np.int8)
    step = np.full(n, np.nan)
    open_ = p < config.threshold  # errors not yet explained
    for cat, claimed in claims:
        hit = open_ & ~np.isnan(claimed)
        category[hit] = CATEGORIES.index(cat)
        step[hit] = np.where(np.isinf(claimed[hit]), np.nan, claimed[hit])
        open_ &= ~hit
    category[open_] = CATEGORIES.index("other")
    _check_top_k(extra, n)
    return ErrorBreakdown(text, p, category, step, config, **extra)


def _check_top_k(extra: dict, n: int) -> None:
    """``top_ids``, ``top_probs`` and ``vocab`` come together, agree in shape and ids, or not at all."""
    given = [k for k in ("top_ids", "top_probs", "vocab") if extra.get(k) is not None]
    if not given:
        return
    if len(given) < 3:
        missing = sorted({"top_ids", "top_probs", "vocab"} - set(given))
        verb = "is" if len(missing) == 1 else "are"
        raise ValueError(f"top_ids, top_probs and vocab go together (the model's K most likely characters), "
                         f"but {' and '.join(missing)} {verb} missing: pass all three, e.g. from a trace "
                         "(session_breakdown does), or none")
    ids, probs = np.asarray(extra["top_ids"]), np.asarray(extra["top_probs"])
    for key, a in (("top_ids", ids), ("top_probs", probs)):
        if a.ndim != 2 or a.shape[0] != n:
            raise ValueError(f"{key} must be ({n}, K) for this text, got shape {a.shape}")
    if ids.shape != probs.shape:
        raise ValueError(f"top_ids and top_probs must have one shape, got {ids.shape} and {probs.shape}")
    vocab = tuple(extra["vocab"])
    if not np.issubdtype(ids.dtype, np.integer) or (ids.size and not 0 <= ids.min() <= ids.max() < len(vocab)):
        raise ValueError(f"top_ids must be integer ids into vocab (0..{len(vocab) - 1}): check that vocab is the "
                         "model's")
    extra.update(top_ids=ids, top_probs=probs, vocab=vocab)


# ------------------------------------------------------------------ from a session
def fit_ngram(corpus, max_order: int = 9):
    """The n-gram model of the oracle: orders 0..``max_order``, trained on the corpus's training split.

    >>> from lab import Corpus
    >>> fit_ngram(Corpus.from_text("toy", "abcabcabca" * 10), max_order=2).order
    2
    """
    from lab.ngram import NGramModel
    return NGramModel.fit(corpus.split_ids("train").numpy(), len(corpus.vocab), max_order)


def session_breakdown(session, split: str = "test", start: int = 0, length: int | None = None,
                      config: OracleConfig | None = None, ngram=None, train_counts=None,
                      trace=None) -> ErrorBreakdown:
    """The error breakdown of a ``lab.Session``'s model on (a slice of) a split of its corpus.

    Traces the slice (or uses ``trace``, one of that slice), fits the order-9 n-gram model
    and counts words on the training split, unless given ``ngram`` (an ``NGramModel``) and
    ``train_counts`` (from :func:`word_counts`): pass them to compare models of one corpus
    without fitting twice.

    Here an untrained model on a corpus built from a string; its errors are nearly all ones
    that an n-gram model gets right:

    >>> import torch
    >>> from lab import CharRNN, Corpus, ModelConfig, Session
    >>> corpus = Corpus.from_text("toy", "the cat sat on the mat. " * 50)
    >>> _ = torch.manual_seed(0)
    >>> model = CharRNN(ModelConfig("lstm", 1, 8, len(corpus.vocab)))
    >>> meta = {"vocab": "".join(corpus.vocab), "corpus": "toy", "corpus_sha256": corpus.sha256}
    >>> r = session_breakdown(Session(model, meta, device="cpu", corpus=corpus, name="toy"), length=50)
    >>> r
    ErrorBreakdown(toy: 49 errors in 49 characters, error rate 1.000)
    >>> r.counts()["count"].tolist()          # ngram, memory, rare, word, punct, boost, other
    [47, 0, 0, 1, 0, 0, 1]
    """
    config = config or OracleConfig()
    corpus = session.corpus
    if trace is None:
        trace = session.trace(split=split, start=start, length=length)
    text = trace.text
    if config.orders:
        if ngram is None:
            ngram = fit_ngram(corpus, max(config.orders))
        ngram_probs = ngram.probs_by_order(corpus.encode(text).numpy())
    else:
        ngram_probs = None
    if train_counts is None and config.rare_counts:
        train_counts = word_counts(corpus.split("train"))
    return error_breakdown(
        text, trace["prob"][:-1], ngram_probs, train_counts, config, name=session.name,
        top_ids=trace["topk.ids"][:-1], top_probs=trace["topk.probs"][:-1].astype(np.float32),
        vocab=trace.vocab, info={"split": split, "start": start, "model": session.name,
                                 "params": sum(p.numel() for p in session.model.parameters())})
