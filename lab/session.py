"""The model session: a trained model, its corpus and a device, ready to be taken apart.

    >>> from lab import Session
    >>> s = Session.load("war_and_peace_lstm", device="cpu")
    >>> tr = s.trace('He said, "Yes." Then he left.')
    >>> tr["layers.1.cell"].shape
    (29, 307)
    >>> [(ch, round(p, 4)) for ch, p in s.predict("Prince Andre")[:2]]
    [('w', 0.9998), ('r', 0.0001)]
"""
from __future__ import annotations

import math
import os
import secrets
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from lab.checkpoint import check_corpus
from lab.checks import is_integer, is_real
from lab.corpus import KNOWN, Corpus, CorpusError, encode_chars, load_corpus
from lab.models import exact_float32
from lab.pretrained import available, load_model, resolve
from lab.sample import check_count, check_integer, check_seed, check_temperature, next_char_probs
from lab.sample import sample as _sample
from lab.trace import Trace, compute_trace
from lab.train import pick_device

TRACE_DTYPES = {"float16": torch.float16, "float32": torch.float32}


def _trace_dtype(dtype) -> torch.dtype:
    """The storage dtype of a trace: torch.float16 / torch.float32, their names, or numpy's."""
    if isinstance(dtype, torch.dtype):
        name = str(dtype).replace("torch.", "")
    elif isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
    elif dtype is None:
        name = None
    else:
        try:
            name = np.dtype(dtype).name          # np.float32, np.dtype("float16"), ...
        except TypeError:
            name = None
    if name not in TRACE_DTYPES:
        raise ValueError("dtype must be torch.float16 (the default: half the memory) or torch.float32 "
                         f"(exact), or their names 'float16' / 'float32'; got {dtype!r}")
    return TRACE_DTYPES[name]


def _finite_number(value, name: str, what: str) -> float:
    if not is_real(value):
        raise TypeError(f"{name} must be a number ({what}), got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number ({what}), got {value}")
    return float(value)


@dataclass(frozen=True)
class InterventionResult:
    """What changed when units were edited: per-character loss and a sample, before and after.

    :meth:`Session.intervene` returns it; its repr gives :attr:`mean_change`, the mean
    loss change over the predictions the edit can reach (from ``from_step`` on).

    >>> from lab import Session
    >>> s = Session.load("war_and_peace_lstm", device="cpu")
    >>> s.intervene('He said, "Yes, I will come." Then he left.', [(1, 283)], value=3.0, sample_n=0)
    InterventionResult(mean loss change +0.3442 nats/char over the 41 predictions from step 0)
    """

    text: str
    loss_before: np.ndarray      # (T,) nats; NaN at the last character
    loss_after: np.ndarray
    sample_before: str
    sample_after: str
    from_step: int = 0

    @property
    def loss_change(self) -> np.ndarray:
        """after - before, per character (positive: the edit hurt).

        Entry t is the change in the loss of character t + 1. The quote cell (1, 283) of the
        shipped War and Peace model is negative inside quotes; clamping it to +3, its sign
        outside them, makes the closing quote a surprise:

        >>> import numpy as np
        >>> from lab import Session
        >>> s = Session.load("war_and_peace_lstm", device="cpu")
        >>> text = 'He said, "Yes, I will come." Then he left.'
        >>> change = s.intervene(text, [(1, 283)], value=3.0, sample_n=0).loss_change
        >>> t = int(np.nanargmax(change)); text[t + 1], round(float(change[t]), 1)
        ('"', 5.8)
        """
        return self.loss_after - self.loss_before

    @property
    def reached(self) -> int:
        """Predictions in the text the edit can change: those of characters from_step + 1 on.

        >>> import numpy as np
        >>> InterventionResult("abcd", np.zeros(4), np.zeros(4), "", "", from_step=3).reached   # none: after 'd'
        0
        """
        return max(0, len(self.text) - 1 - self.from_step)

    @property
    def mean_change(self) -> float:
        """The mean loss change over the :attr:`reached` predictions (NaN when none is):
        earlier ones cannot change, and averaging them in would dilute the effect.

        >>> import numpy as np
        >>> r = InterventionResult("abcd", np.array([1.0, 1, 1, np.nan]), np.array([1.0, 2, 3, np.nan]), "", "", 1)
        >>> r.reached, r.mean_change
        (2, 1.5)
        """
        if not self.reached:
            return math.nan
        return float(np.mean(self.loss_change[self.from_step:len(self.text) - 1]))

    def __repr__(self) -> str:
        if not self.reached:
            return (f"InterventionResult(the edit starts at step {self.from_step}, after the text's last prediction: "
                    "compare sample_before and sample_after)")
        return (f"InterventionResult(mean loss change {self.mean_change:+.4f} nats/char over the {self.reached} "
                f"prediction{'s' if self.reached != 1 else ''} from step {self.from_step})")


class Session:
    """A model on a device (CUDA when present, else CPU) with its vocabulary and corpus.

    :meth:`load` is the usual way in; the constructor takes any :class:`lab.models.CharRNN`
    with a checkpoint-style ``meta`` dict (``vocab``, and ``corpus`` / ``corpus_sha256`` to
    go with a ``corpus``):

    >>> from lab import Corpus, Session
    >>> from lab.models import CharRNN, ModelConfig
    >>> c = Corpus.from_text("tiny", "hello world\\n" * 20)
    >>> meta = {"vocab": "".join(c.vocab), "corpus": c.name, "corpus_sha256": c.sha256}
    >>> Session(CharRNN(ModelConfig("lstm", 1, 8, len(c.vocab))), meta, device="cpu", corpus=c, name="tiny")
    Session(tiny: LSTM 1x8, corpus tiny, device cpu)
    """

    def __init__(self, model, meta: dict, device=None, corpus: Corpus | None = None, name: str = ""):
        if not isinstance(meta, dict) or "vocab" not in meta:
            raise TypeError("meta must be a dict with the model's 'vocab' (a checkpoint's metadata), got "
                            f"{type(meta).__name__}")
        if len(meta["vocab"]) != model.cfg.vocab_size:
            raise ValueError(f"the vocabulary has {len(meta['vocab'])} characters but the model reads "
                             f"{model.cfg.vocab_size}: give the vocabulary it was trained with (its checkpoint's)")
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.meta = meta
        self.vocab = tuple(meta["vocab"])
        self.name = name
        self._index = {ch: i for i, ch in enumerate(self.vocab)}
        if corpus is not None:
            self._check_corpus(corpus)
        self._corpus = corpus
        self._burn_in = 512  # grows to what this model's memory needs (see trace)

    @classmethod
    def load(cls, name_or_path: str = "war_and_peace_lstm", device=None, corpus: Corpus | None = None) -> "Session":
        """A shipped model by name (``war_and_peace_lstm``, ``linux_kernel_lstm``) or any checkpoint path.

        >>> Session.load("war_and_peace_lstm", device="cpu")
        Session(war_and_peace_lstm: LSTM 2x307, corpus war_and_peace, device cpu)
        """
        wanted = (f"Session.load needs a shipped model name ({', '.join(available())}), a checkpoint "
                  f"file (.safetensors) or a run folder, got {type(name_or_path).__name__} {name_or_path!r}")
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise TypeError(wanted)
        if isinstance(name_or_path, str) and not name_or_path.strip():
            raise ValueError(wanted)
        model, meta = load_model(name_or_path)
        path = resolve(name_or_path)
        name = path.parent.name if path.stem in ("best", "last") else path.stem  # a run folder's name
        return cls(model, meta, device=device, corpus=corpus, name=name)

    def __repr__(self) -> str:
        c = self.model.cfg
        return (f"Session({self.name or 'model'}: {c.kind.upper()} {c.layers}x{c.width}, "
                f"corpus {self.meta.get('corpus')}, device {self.device})")

    # -- corpus and text ------------------------------------------------------------------
    def _check_corpus(self, corpus: Corpus) -> None:
        check_corpus(self.meta, corpus, f"model {self.name or 'of this session'}")

    @property
    def corpus(self) -> Corpus:
        """The training corpus (found through ``$VURN_DATA`` or the cache, else downloaded, on first use).

        A corpus passed to the session is used as it is (here a tiny one, with a model built for it):

        >>> from lab import Corpus, Session
        >>> from lab.models import CharRNN, ModelConfig
        >>> c = Corpus.from_text("tiny", "hello world\\n" * 20)
        >>> meta = {"vocab": "".join(c.vocab), "corpus": c.name, "corpus_sha256": c.sha256}
        >>> s = Session(CharRNN(ModelConfig("lstm", 1, 8, len(c.vocab))), meta, device="cpu", corpus=c)
        >>> s.corpus.name, s.corpus.vocab
        ('tiny', ('\\n', ' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w'))
        """
        if self._corpus is None:
            name = self.meta.get("corpus")
            if name in KNOWN:
                corpus = load_corpus(name)
            else:   # a text file: where training recorded it (lab.train.training_corpus)
                from lab.train import training_corpus
                try:
                    corpus = training_corpus(self.meta)
                except CorpusError as e:
                    raise CorpusError(f"{e}; or pass corpus=Corpus.from_file(...) to Session.load") from None
            self._check_corpus(corpus)
            self._corpus = corpus
        return self._corpus

    def encode(self, text: str) -> torch.Tensor:
        """Text to ids in this model's vocabulary; unknown characters are named in the error.

        >>> from lab import CorpusError, Session
        >>> s = Session.load("war_and_peace_lstm", device="cpu")
        >>> s.encode("Prince").tolist()
        [41, 69, 60, 65, 54, 56]
        >>> try: s.encode("5 €")
        ... except CorpusError as e: print(e)
        1 character(s) are not in this model's vocabulary: '€'. Remove or replace them.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("the text is empty: give at least one character")
        return encode_chars(text, self._index, "this model's vocabulary")

    def split_text(self, split: str, start: int = 0, length: int | None = None) -> str:
        """A slice of a split of the corpus: ``split_text("test", 0, 5000)``.

        ``start`` is a position in the split; ``length`` (at least 1) must fit in what is left
        from there, or be None for all of it.

        >>> from lab import Corpus, Session
        >>> from lab.models import CharRNN, ModelConfig
        >>> c = Corpus.from_text("tiny", "hello world\\n" * 20)
        >>> meta = {"vocab": "".join(c.vocab), "corpus": c.name, "corpus_sha256": c.sha256}
        >>> s = Session(CharRNN(ModelConfig("lstm", 1, 8, len(c.vocab))), meta, device="cpu", corpus=c)
        >>> s.split_text("test", 6, 8)
        'world\\nhe'
        """
        start = check_integer(start, "start")
        if length is not None:
            length = check_integer(length, "length")
            if length < 1:
                raise ValueError(f"length must be at least 1 character (or None: the rest of the split), got {length}")
        text = self.corpus.split(split)
        if not 0 <= start < len(text):
            raise IndexError(f"start {start} is outside the {split} split (0..{len(text) - 1})")
        left = len(text) - start
        if length is not None and length > left:
            raise IndexError(f"length {length} runs past the end of the {split} split: {left} characters "
                             f"are left from start {start}; pass length={left} or less (or None for all of them)")
        return text[start:start + length if length is not None else None]

    # -- tracing --------------------------------------------------------------------------
    def trace(self, text: str | None = None, *, split: str | None = None, start: int = 0,
              length: int | None = None, dtype=torch.float16, top_k: int = 5, **kw) -> Trace:
        """Every internal of the model over ``text`` or over a slice of a corpus split.

        ``start`` and ``length`` choose the slice of ``split`` (see :meth:`split_text`); to trace
        part of a text, slice the text. ``dtype`` is how the arrays are stored:
        ``torch.float16`` (the default) or ``torch.float32`` (exact), or their names.
        Other keyword arguments go to :func:`lab.trace.compute_trace` (``streams``, ``burn_in``,
        ``tol``, ``method``, ``max_rows``).

        >>> from lab import Session
        >>> s = Session.load("war_and_peace_lstm", device="cpu")
        >>> tr = s.trace('He said, "Yes." Then he left.')
        >>> tr["layers.1.cell"].shape
        (29, 307)
        >>> print(tr.text[9:15], tr.unit(1, 283)[9:15].round(1))    # tanh(c) of the quote cell
        "Yes." [-0.7 -0.9 -0.9 -0.9 -0.9 -0.1]

        With a corpus, a slice of a split; its last character's loss is known too, from the
        character after the slice (here a tiny corpus, with a model built for it):

        >>> import numpy as np
        >>> from lab import Corpus
        >>> from lab.models import CharRNN, ModelConfig
        >>> c = Corpus.from_text("tiny", "hello world\\n" * 20)
        >>> meta = {"vocab": "".join(c.vocab), "corpus": c.name, "corpus_sha256": c.sha256}
        >>> s = Session(CharRNN(ModelConfig("lstm", 1, 8, len(c.vocab))), meta, device="cpu", corpus=c)
        >>> tr = s.trace(split="test", start=6, length=12)
        >>> tr.text, tr["loss"].shape, bool(np.isnan(tr["loss"]).any())
        ('world\\nhello ', (12,), False)
        """
        dtype = _trace_dtype(dtype)
        top_k = check_integer(top_k, "top_k")
        next_id = None
        if split is not None:
            if text is not None:
                raise ValueError("give either text or split, not both")
            start = check_integer(start, "start")
            saved = self.meta.get("train_config") or {}
            if saved.get("layout", "contiguous") != "contiguous":
                shape = f"{saved.get('batch', 100)}, {saved.get('seq_len', 100)}"
                warnings.warn(f"this model was trained on char-rnn's layout of the splits, but split={split!r} "
                              "is the contiguous split, part of which it trained on; to trace text it did not "
                              f"train on, trace one of its {split} pieces: "
                              f"s.trace(s.corpus.decode(s.corpus.charrnn_pieces({split!r}, {shape})[0]))",
                              stacklevel=2)
            full = self.corpus.split(split)
            text = self.split_text(split, start, length)
            end = start + len(text)
            next_id = self._index[full[end]] if end < len(full) else None
        elif text is None:
            raise ValueError("give a text to trace, or split='test' (with start and length)")
        elif length is not None or not (is_integer(start) and start == 0):
            raise ValueError(f"start={start!r}, length={length!r} given with a text: start and length apply to "
                             "split= (a slice of a corpus split); to trace part of a text, slice it: trace(text[a:b])")
        ids = self.encode(text)
        kw.setdefault("burn_in", self._burn_in)
        tr = compute_trace(self.model, ids, text=text, vocab=self.vocab, dtype=dtype, top_k=top_k,
                           next_id=next_id, **kw)
        if tr.info["burn_in"] > self._burn_in:  # remember what this model needs: later traces start there
            self._burn_in = tr.info["burn_in"]
        tr.info.update(model=self.name, split=split, start=start if split else None)
        return tr

    @torch.no_grad()
    def predict(self, text: str, top_k: int = 5) -> list[tuple[str, float]]:
        """The ``top_k`` most likely characters after ``text``, with their probabilities.

        ``top_k`` is an integer of at least 1; more than the vocabulary gives all of it.

        >>> from lab import Session
        >>> s = Session.load("war_and_peace_lstm", device="cpu")
        >>> [(ch, round(p, 2)) for ch, p in s.predict('He said, "Yes', top_k=3)]
        [(',', 0.9), ('.', 0.03), ('\\n', 0.03)]
        """
        top_k = check_integer(top_k, "top_k")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        with exact_float32():   # on a GPU, the same probabilities as a trace's
            logits, _ = self.model(self.encode(text)[None].to(self.device))
        probs = torch.softmax(logits[0, -1].float(), -1).cpu()
        top = probs.topk(min(top_k, len(self.vocab)))
        return [(self.vocab[i], float(p)) for p, i in zip(top.values, top.indices)]

    def sample(self, n: int = 200, prime: str = "\n", temperature: float = 1.0, seed: int | None = None) -> str:
        """``n`` characters sampled after ``prime``; the same ``seed`` gives the same text.

        ``n`` = 0 gives ''; ``temperature`` is a positive finite number (a tiny one is greedy);
        ``seed`` is an integer, or None for a fresh random sample.

        >>> from lab import Session
        >>> s = Session.load("war_and_peace_lstm", device="cpu")
        >>> s.sample(40, prime="The ", temperature=0.5, seed=1)
        'same\\ntime for a moment. The staff office'
        """
        return _sample(self.model, self.vocab, n, prime, temperature, seed)   # which checks every argument

    # -- interventions --------------------------------------------------------------------
    def _editor(self, units, what: str, mode: str, value: float | None, from_step: int):
        cfg = self.model.cfg
        if what not in ("cell", "hidden"):
            raise ValueError(f"what must be 'cell' or 'hidden', got {what!r}")
        if what == "cell" and cfg.kind != "lstm":
            raise ValueError(f"a {cfg.kind.upper()} has no cell state: use what='hidden'")
        if mode not in ("clamp", "zero", "scale"):
            raise ValueError(f"mode must be clamp, zero or scale, got {mode!r}")
        if (not isinstance(units, (list, tuple)) or not units
                or not all(isinstance(u, (list, tuple)) and len(u) == 2 for u in units)):
            raise TypeError(f"units must be a list of (layer, unit) pairs, e.g. [(1, 5)], got {units!r}")
        for pair in units:
            for which, x in zip(("layer", "unit"), pair):
                if not is_integer(x):
                    raise TypeError(f"units must be (layer, unit) pairs of integers, e.g. [(1, 5)]: the {which} "
                                    f"in {tuple(pair)!r} is {type(x).__name__} {x!r}")
        from_step = check_integer(from_step, "from_step")
        if from_step < 0:
            raise IndexError(f"from_step {from_step} is negative: steps count from 0, the text's first character")
        by_layer: dict[int, list[int]] = {}
        for layer, unit in ((int(layer), int(unit)) for layer, unit in units):
            if not 0 <= layer < cfg.layers:
                raise IndexError(f"layer {layer} does not exist: this model has layers 0..{cfg.layers - 1}")
            if not 0 <= unit < cfg.width:
                raise IndexError(f"unit {unit} does not exist: layers have units 0..{cfg.width - 1}")
            by_layer.setdefault(layer, []).append(unit)
        if mode == "zero":
            if value not in (None, 0):
                raise ValueError(f"mode='zero' sets the units to 0 and takes no value (got {value!r}): "
                                 "use mode='clamp' to hold them at a value")
            value = 0.0
        elif value is None:
            raise TypeError(f"mode={mode!r} needs a value: " + ("the value to hold the units at, e.g. value=3.0"
                            if mode == "clamp" else "the factor to multiply the units by, e.g. value=0.5"))
        value = _finite_number(value, "value", "the clamp value or the scale factor")

        def edit(layer, t, kind, values):
            if t < from_step or kind != what or layer not in by_layer:
                return values
            idx = by_layer[layer]
            values = values.clone()
            if mode == "scale":
                values[:, idx] *= value
            else:
                values[:, idx] = value if mode == "clamp" else 0.0
            return values
        return edit

    def intervene(self, text: str, units: list[tuple[int, int]], *, what: str = "cell", mode: str = "clamp",
                  value: float | None = None, from_step: int = 0, sample_n: int = 200, seed: int | None = 0,
                  temperature: float = 1.0) -> InterventionResult:
        """Clamp, zero or scale ``units`` ((layer, unit) pairs) from ``from_step`` on, and compare.

        Returns the per-character loss on ``text`` and a sample continuing ``text``,
        with and without the edit (same seed; ``seed=None`` draws a fresh one for both).
        ``value`` is the clamp value or the scale factor (a finite number; ``mode="zero"``
        takes none). Steps are the
        text's characters, 0 to len(text) - 1, then the ``sample_n`` sampled ones: ``from_step``
        may start the edit anywhere in them. Clamping the quote cell (1, 283) of the
        shipped War and Peace model to -3, beyond its value inside quotes (about -1.6),
        makes it close a quote:

        >>> from lab import Session
        >>> s = Session.load("war_and_peace_lstm", device="cpu")
        >>> r = s.intervene('He said, "Yes, I will come." Then he left.', [(1, 283)], value=-3.0, sample_n=12)
        >>> r.sample_before, r.sample_after
        ('\\n\\n"I can\\'t a', '.."\\n\\nAnd I a')
        >>> r.loss_change.shape
        (42,)
        """
        temperature = check_temperature(temperature)
        sample_n = check_count(sample_n, "sample_n")
        seed = check_seed(seed)
        if seed is None:  # as sample() does: a fresh seed, the same for both samples
            seed = secrets.randbits(63)
        ids = self.encode(text)
        edit = self._editor(units, what, mode, value, from_step)
        steps = ids.numel() + sample_n
        if from_step >= steps:
            then = f", then the {sample_n} sampled ones" if sample_n else " (sample_n=0: no sample)"
            raise IndexError(f"from_step {from_step} is past the last step: the steps are the text's "
                             f"{ids.numel()} characters{then}, 0..{steps - 1}")
        before = compute_trace(self.model, ids, dtype=torch.float32, method="loop", streams=1)
        after = compute_trace(self.model, ids, dtype=torch.float32, method="loop", edit=edit)
        return InterventionResult(
            text, before["loss"], after["loss"],
            self._sample_with(ids, None, sample_n, seed, temperature),
            self._sample_with(ids, edit, sample_n, seed, temperature), from_step)

    @torch.no_grad()
    def _sample_with(self, ids, edit, n, seed, temperature) -> str:
        from lab.trace import _run_rows
        if n == 0:
            return ""
        gen = torch.Generator().manual_seed(seed)
        x = ids[None].to(self.device)
        per_layer, logits = _run_rows(self.model, x, "loop", edit)
        state = self._state_of(per_layer)
        out, t = [], ids.numel()
        for _ in range(n):
            nxt = int(torch.multinomial(next_char_probs(logits[0, -1], temperature), 1, generator=gen))
            out.append(self.vocab[nxt])
            shifted = None if edit is None else (lambda layer, step, kind, v, t=t: edit(layer, step + t, kind, v))
            per_layer, logits = _run_rows(self.model, torch.tensor([[nxt]], device=self.device), "loop",
                                          shifted, state)
            state = self._state_of(per_layer)
            t += 1
        return "".join(out)

    def _state_of(self, per_layer):
        h = torch.stack([o["hidden"][:, -1] for o in per_layer])
        if self.model.cfg.kind == "lstm":
            return h, torch.stack([o["cell"][:, -1] for o in per_layer])
        return h
