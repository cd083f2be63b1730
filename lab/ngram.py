"""Character n-gram language models with interpolated modified Kneser-Ney smoothing.

The baseline of the paper's section 4.3. ``order`` (n) is the number of CONTEXT
characters: an order-n model predicts a character from the n characters before it,
so n = 20 looks 20 characters back and counts 21-character windows (the paper's
"n-gram, n up to 20" is recalled as counting context characters too)::

    >>> import numpy as np
    >>> m = NGramModel.fit(np.array([0, 1, 0, 1, 0, 2]), vocab_size=4, order=2)
    >>> round(float(m.distribution([0]).sum()), 12)       # any context, seen or not
    1.0
    >>> m.loss_by_order([0, 1, 0, 1]).round(3).tolist()    # orders 0, 1, 2 on one text
    [1.276, 0.636, 0.578]

One fit builds every order 0..n at once and scores them all in one pass, so the
whole Table 2 (orders 1..20, War and Peace) takes seconds::

    >>> from lab.corpus import load_corpus                      # doctest: +SKIP
    >>> c = load_corpus("war_and_peace")                         # doctest: +SKIP
    >>> m = NGramModel.fit(c.split_ids("train"), len(c.vocab), order=20)  # doctest: +SKIP
    >>> m.loss_by_order(c.split_ids("val"))[1:]                  # doctest: +SKIP

The smoothing (Chen & Goodman 1998, "interpolated modified Kneser-Ney"), for a context
h of k characters, its shortening h' (h without its first character) and a count c::

    P_k(w | h) = max(c(hw) - D_k(c(hw)), 0) / S(h)  +  gamma(h) * P_{k-1}(w | h')
    S(h) = sum_w c(hw),   gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / S(h)
    P_{-1}(w) = 1 / vocab_size                      (the uniform distribution)

* the top level (k = n) uses raw counts c(hw): how many windows of the training text
  read hw; every lower level k < n uses continuation counts N1+(. hw): how many
  distinct characters precede hw in the training text;
* N_r(h.) is the number of characters w with c(hw) = r (r = 3 means >= 3), with c the
  raw or continuation count of that level;
* the three discounts of each level and kind (raw, continuation) come from that
  level's count-of-counts n1..n4 (how many (k+1)-grams have count 1, 2, 3, 4):
  Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3.
  Where n1, n2 or n3 is zero, or a discount falls outside (0, r], the level uses
  KenLM's ``--discount_fallback`` values (0.5, 1, 1.5) instead (tiny or artificial
  texts only; ``model.discounts`` records which levels did);
* a context never seen followed by a character (S(h) = 0) passes straight through:
  P_k(w | h) = P_{k-1}(w | h').

No padding symbols. Counts come from windows that lie wholly inside the training
text, so the first characters of the text are never "preceded" by anything (they
add nothing to continuation counts). A scored character with only m < n characters
before it (the start of a scored text) is predicted by the order-m model, i.e. with
the whole shorter context it has. Every probability is > 0, also for characters of
the vocabulary that the training text never uses.

How it is fast: the distinct strings of each length L are numbered by prefix
doubling with a stable radix sort (a string is its first character plus the number
of its suffix), so numbering all strings of length 1..21 of War and Peace costs
about 20 linear passes; their sorted keys are the lookup tables (np.searchsorted)
and every count and count-of-count is an np.bincount. All exact, no hashing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ORDER = 20
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)   # KenLM's --discount_fallback default


class NGramError(ValueError):
    """Bad input for an n-gram model; the message says what was wrong.

    >>> try: NGramModel.fit([0, 5], vocab_size=3, order=1)
    ... except NGramError as e: print(e)
    train_ids has 1 id(s) outside the vocabulary [0, 3), e.g. [5]: encode with the same corpus vocabulary
    """


def kn_discounts(n1: int, n2: int, n3: int, n4: int) -> tuple[tuple[float, float, float], bool]:
    """Modified Kneser-Ney discounts (D1, D2, D3+) from count-of-counts, and whether the fallback was used.

    >>> [round(d, 4) for d in kn_discounts(1, 1, 1, 1)[0]]   # Y = 1/3
    [0.3333, 1.0, 1.6667]
    >>> kn_discounts(5, 0, 1, 1)          # no count-2 grams: the formula is undefined
    ((0.5, 1.0, 1.5), True)
    """
    if min(n1, n2, n3) <= 0:
        return FALLBACK_DISCOUNTS, True
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if not all(0 < dr <= r for r, dr in zip((1, 2, 3), d)):
        return FALLBACK_DISCOUNTS, True
    return d, False


def _discount_table(counts: np.ndarray) -> tuple[np.ndarray, bool]:
    """[0, D1, D2, D3+] for the counts of one level (zero counts are ignored)."""
    n = np.bincount(np.minimum(counts, 5), minlength=6)
    d, fallback = kn_discounts(*(int(x) for x in n[1:5]))
    return np.array((0.0, *d)), fallback


def _as_ids(ids, vocab_size: int, what: str) -> np.ndarray:
    """A 1-D int64 array of character ids in [0, vocab_size), or a clear error."""
    if hasattr(ids, "detach"):                        # torch tensor, without importing torch
        ids = ids.detach().cpu().numpy()
    a = np.asarray(ids)
    if a.ndim != 1:
        raise NGramError(f"{what} must be a 1-D sequence of character ids, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise NGramError(f"{what} must hold integer character ids, got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if a.size and (a.min() < 0 or a.max() >= vocab_size):
        bad = a[(a < 0) | (a >= vocab_size)]
        raise NGramError(f"{what} has {bad.size} id(s) outside the vocabulary [0, {vocab_size}), "
                         f"e.g. {bad[:5].tolist()}: encode with the same corpus vocabulary")
    return a


def _take(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """values[idx] where idx >= 0, else 0 (an unseen string counts nothing)."""
    out = np.zeros(idx.shape, values.dtype)
    hit = idx >= 0
    out[hit] = values[idx[hit]]
    return out


@dataclass
class _Strings:
    """The distinct strings of one length L in the training text, numbered 0..R-1.

    A string's number is its position in ``keys``, and its key is
    ``first char * R_{L-1} + number of its suffix`` (the last L-1 characters).
    As a context (of the level-L distributions) it also carries S and gamma numerators.
    """

    keys: np.ndarray                      # (R,) int64, sorted
    count: np.ndarray                     # (R,) int32: windows of the training text that read it
    cont: np.ndarray | None = None        # (R,) int32: distinct characters seen just before it
    raw_total: np.ndarray | None = None   # (R,) S(h) with raw counts: how often h is followed by a char
    raw_gamma: np.ndarray | None = None   # (R,) D1 N1 + D2 N2 + D3+ N3+ (raw counts)
    cont_total: np.ndarray | None = None  # (R,) S(h) with continuation counts
    cont_gamma: np.ndarray | None = None  # (R,) gamma numerator with continuation counts

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in vars(self).values() if a is not None)


class NGramModel:
    """Interpolated modified Kneser-Ney character model of orders 0..``order`` (context chars).

    Build with :meth:`fit`. All scoring methods take character ids (numpy array, torch
    tensor or list) and, like ``lab.train.evaluate``, score ``ids[start:]`` with
    contexts taken from ``ids`` itself (default ``start=1``: every character that has
    one before it; use ``start=0`` to also score the first one with an empty context,
    or prepend history and set ``start=len(history)``).

    >>> m = NGramModel.fit([0, 1, 0, 1], vocab_size=3, order=1)
    >>> m.prob_of_next([0, 1, 2]).round(4).tolist()       # P(1 | 0), P(2 | 1)
    [0.7083, 0.0833]
    >>> m.distribution([0]).round(4).tolist()             # next char after "0"
    [0.2083, 0.7083, 0.0833]
    """

    def __init__(self, vocab_size: int, order: int, strings: list[_Strings],
                 discounts: dict[str, np.ndarray], fallback: dict[str, np.ndarray], train_chars: int):
        self.vocab_size = vocab_size
        self.order = order
        self._strings = strings                 # index L = string length, 0..order+1
        # D1, D2, D3+ of each level k (context length): "raw" (order+1, 3), "cont" (order, 3)
        self.discounts = discounts
        self.fallback = fallback                # same keys and lengths: True where (0.5, 1, 1.5) was used
        self.train_chars = train_chars

    def __repr__(self) -> str:
        return (f"NGramModel(order={self.order}, vocab_size={self.vocab_size}, "
                f"train_chars={self.train_chars}, {self.nbytes / 2**20:.0f} MiB)")

    @property
    def nbytes(self) -> int:
        """Memory held by the count tables, in bytes.

        >>> NGramModel.fit([0, 1, 0, 1], vocab_size=3, order=1).nbytes
        120
        """
        return sum(s.nbytes for s in self._strings)

    # ---------------------------------------------------------------- building
    @classmethod
    def fit(cls, train_ids, vocab_size: int, order: int) -> "NGramModel":
        """Count a training text; the model then answers for every order 0..``order``.

        >>> m = NGramModel.fit([0, 1, 1, 2, 2, 2, 3, 3, 3, 3], vocab_size=5, order=0)
        >>> m.distribution([]).round(4).tolist()     # hand-worked in tests/test_ngram.py
        [0.16, 0.1933, 0.2267, 0.3267, 0.0933]
        """
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= MAX_ORDER:
            raise NGramError(f"order must be an int in 0..{MAX_ORDER} (context characters), got {order!r}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
            raise NGramError(f"vocab_size must be a positive int, got {vocab_size!r}")
        order, vocab_size = int(order), int(vocab_size)
        t = _as_ids(train_ids, vocab_size, "train_ids")
        if t.size == 0:
            raise NGramError("train_ids is empty: an n-gram model needs some training text")
        if t.size >= 2**31 - 1:
            raise NGramError(f"train_ids has {t.size:,} characters: counts are int32, so at most 2**31 - 2")
        n = t.size
        # small unsigned ids make np.argsort(kind="stable") a radix sort
        small = t.astype(np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.int64)
        # length 0: the empty string, "starting" at every position 0..n
        strings = [_Strings(keys=np.zeros(1, np.int64), count=np.array([n], np.int32))]
        ids = np.zeros(n + 1, np.int64)          # ids[j]: number of the string of length L-1 starting at j
        perm = np.arange(n + 1)                  # positions j sorted by ids[j]
        prefix_prev = None                       # number of the prefix of each string of length L-1
        levels = {"raw": order + 1, "cont": order}       # the top level uses raw counts only
        disc = {k: np.zeros((n_levels, 4)) for k, n_levels in levels.items()}
        fallback = {k: np.zeros(n_levels, bool) for k, n_levels in levels.items()}
        for length in range(1, order + 2):
            r_prev = strings[-1].keys.size
            if n - length + 1 <= 0:              # text shorter than the window: nothing of this length
                keys, new_ids, perm = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
            else:
                # why: sorting by (first char, suffix number) = stable sort by first char of the
                # positions already sorted by suffix number; that is one radix pass
                p = perm[perm > 0] - 1
                p = p[np.argsort(small[p], kind="stable")]
                sorted_keys = t[p] * r_prev + ids[p + 1]
                first = np.empty(p.size, bool)
                first[0] = True
                np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=first[1:])
                keys = sorted_keys[first]
                new_ids = np.empty(p.size, np.int64)
                new_ids[p] = np.cumsum(first) - 1
                perm = p
            count = np.bincount(new_ids, minlength=keys.size).astype(np.int32)
            prefix = np.zeros(keys.size, np.int64)
            prefix[new_ids] = ids[:new_ids.size]
            cur = _Strings(keys=keys, count=count)
            prev = strings[-1]
            # continuation counts of the strings of length L-1: how many distinct characters precede them
            prev.cont = np.bincount(keys % max(r_prev, 1), minlength=r_prev).astype(np.int32)
            # level L-1 (contexts of length L-1), raw counts of the L-strings
            k = length - 1
            d, fallback["raw"][k] = _discount_table(count)
            disc["raw"][k] = d
            prev.raw_total = np.bincount(prefix, weights=count, minlength=r_prev).astype(np.int32)
            prev.raw_gamma = np.bincount(prefix, weights=d[np.minimum(count, 3)], minlength=r_prev)
            # level L-2, continuation counts of the (L-1)-strings (known only now)
            if k >= 1:
                d, fallback["cont"][k - 1] = _discount_table(prev.cont)
                disc["cont"][k - 1] = d
                before = strings[-2]
                before.cont_total = np.bincount(prefix_prev, weights=prev.cont, minlength=before.keys.size
                                                ).astype(np.int32)
                before.cont_gamma = np.bincount(prefix_prev, weights=d[np.minimum(prev.cont, 3)],
                                                minlength=before.keys.size)
            strings.append(cur)
            ids, prefix_prev = new_ids, prefix
        strings[-1].cont = None                  # the top strings are never a lower-order gram
        return cls(vocab_size, order, strings, {k: v[:, 1:] for k, v in disc.items()}, fallback, n)

    # ---------------------------------------------------------------- scoring
    def _ids_by_length(self, q: np.ndarray) -> list[np.ndarray]:
        """For a (B, T) batch: list over L of (B, T-L+1) numbers of the L-strings starting at j (-1: unseen)."""
        b, t = q.shape
        out = [np.zeros((b, t + 1), np.int64)]
        for length in range(1, self.order + 2):
            if t - length + 1 <= 0:
                out.append(np.full((b, 0), -1, np.int64))
                continue
            table = self._strings[length]
            suffix = out[-1][:, 1:]                                  # (B, T-L+1)
            key = q[:, :t - length + 1] * self._strings[length - 1].keys.size + suffix
            pos = np.searchsorted(table.keys, key)
            hit = (suffix >= 0) & (pos < table.keys.size)
            hit[hit] = table.keys[pos[hit]] == key[hit]
            out.append(np.where(hit, pos, -1))
        return out

    def _probs(self, q: np.ndarray, start: int) -> np.ndarray:
        """(order+1, B, T-start) probability of q[:, i] (i >= start) under each order 0..order."""
        b, t = q.shape
        ids = self._ids_by_length(q)
        targets = np.arange(start, t)
        v = self.vocab_size
        lower = np.full((b, targets.size), 1.0 / v)                  # P_{k-1}: starts as the uniform
        probs = np.empty((self.order + 1, b, targets.size))
        for k in range(self.order + 1):
            ok = targets >= k                                        # enough characters before i
            j = targets[ok] - k                                      # where the context / gram starts
            gram = np.full((b, targets.size), -1, np.int64)
            ctx = np.full((b, targets.size), -1, np.int64)
            gram[:, ok] = ids[k + 1][:, j]
            ctx[:, ok] = ids[k][:, j]
            s_gram, s_ctx = self._strings[k + 1], self._strings[k]
            kinds = [("raw", s_gram.count, s_ctx.raw_total, s_ctx.raw_gamma)]
            if k < self.order:
                kinds.append(("cont", s_gram.cont, s_ctx.cont_total, s_ctx.cont_gamma))
            for kind, counts, total, gamma in kinds:
                d = np.concatenate([[0.0], self.discounts[kind][k]])
                c, s, g = _take(counts, gram), _take(total, ctx), _take(gamma, ctx)
                seen = s > 0
                safe = np.where(seen, s, 1)
                alpha = np.where(seen, np.maximum(c - d[np.minimum(c, 3)], 0.0) / safe, 0.0)
                weight = np.where(seen, g / safe, 1.0)                # unseen context: pass through
                p = alpha + weight * lower
                if kind == "raw":
                    probs[k] = p
                else:
                    lower = p
        # a character with only m < n characters before it is predicted by the order-m model
        for i in range(start, min(t, self.order)):
            probs[i + 1:, :, i - start] = probs[i, :, i - start]
        return probs

    def _check_order(self, order):
        order = self.order if order is None else order
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= self.order:
            raise NGramError(f"order must be an int in 0..{self.order} (this model's largest), got {order!r}")
        return int(order)

    def _prepare(self, ids, start: int) -> np.ndarray:
        q = _as_ids(ids, self.vocab_size, "ids")
        if q.size == 0:
            raise NGramError("ids is empty: give the character ids of a text to score")
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start <= q.size:
            raise NGramError(f"start must be an int in 0..len(ids) = {q.size}, got {start!r}")
        return q[None, :]

    def probs_by_order(self, ids, start: int = 1) -> np.ndarray:
        """(order+1, len(ids)-start): probability of each ids[i], i >= start, under orders 0..order.

        >>> NGramModel.fit([0, 1, 0, 1], 2, order=1).probs_by_order([0, 1]).round(3).tolist()
        [[0.5], [0.75]]
        """
        return self._probs(self._prepare(ids, start), start)[:, 0]

    def prob_of_next(self, ids, start: int = 1, order: int | None = None) -> np.ndarray:
        """(len(ids)-start,): probability of each ids[i], i >= start, given up to ``order`` chars before it.

        >>> NGramModel.fit([0, 1, 0, 1], 2, order=1).prob_of_next([1, 0, 1], order=0).round(3).tolist()
        [0.5, 0.5]
        """
        order = self._check_order(order)
        return self.probs_by_order(ids, start)[order]

    def loss_by_order(self, ids, start: int = 1) -> np.ndarray:
        """(order+1,): mean cross-entropy in nats per character of ids[start:] under orders 0..order.

        >>> NGramModel.fit([0, 1] * 50, 2, order=2).loss_by_order([0, 1, 0]).round(3).tolist()
        [0.693, 0.015, 0.011]
        """
        p = self.probs_by_order(ids, start)
        if p.shape[1] == 0:
            raise NGramError(f"nothing to score: ids has {len(ids)} character(s), and scoring starts at "
                             f"position {start} (the first character has no context to be predicted from)")
        return -np.log(p).mean(axis=1)

    def loss(self, ids, start: int = 1, order: int | None = None) -> float:
        """Mean cross-entropy in nats per character of ids[start:] (as ``lab.train.evaluate``).

        >>> round(NGramModel.fit([0, 1] * 50, 2, order=1).loss([0, 1, 0, 1]), 4)
        0.0152
        """
        return float(self.loss_by_order(ids, start)[self._check_order(order)])

    def distribution(self, context, order: int | None = None) -> np.ndarray:
        """(vocab_size,): the next-character distribution after ``context`` (its last ``order`` chars).

        >>> d = NGramModel.fit([0, 1, 0, 1], 3, order=1).distribution([2])  # "2" never seen
        >>> d.round(4).tolist(), round(float(d.sum()), 12)
        ([0.4167, 0.4167, 0.1667], 1.0)
        """
        order = self._check_order(order)
        ctx = _as_ids(context, self.vocab_size, "context")
        ctx = ctx[ctx.size - min(order, ctx.size):]
        v = self.vocab_size
        q = np.concatenate([np.broadcast_to(ctx, (v, ctx.size)), np.arange(v)[:, None]], axis=1)
        return self._probs(q, ctx.size)[order, :, 0]


def loss_table(train_ids, vocab_size: int, texts: dict, orders=range(1, MAX_ORDER + 1)):
    """A pandas DataFrame of nats per character: one row per order, one column per scored text.

    >>> loss_table([0, 1] * 50, 2, {"val": [0, 1, 0, 1]}, orders=[1, 2]).round(3)
             val
    order       
    1      0.015
    2      0.010
    """
    import pandas as pd

    orders = list(orders)
    if not orders:
        raise NGramError(f"give at least one order to score (1 to {MAX_ORDER})")
    bad = [o for o in orders if isinstance(o, bool) or not isinstance(o, (int, np.integer)) or not 0 <= o <= MAX_ORDER]
    if bad:   # numpy would read -1 as the largest order and label it -1
        raise NGramError(f"orders must be ints in 0..{MAX_ORDER}, got {bad}")
    model = NGramModel.fit(train_ids, vocab_size, max(orders))
    cols = {name: model.loss_by_order(ids)[orders] for name, ids in texts.items()}
    return pd.DataFrame(cols, index=pd.Index(orders, name="order"))
