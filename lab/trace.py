"""Traces: every hidden state, cell state and gate of a model over a text, fast and exact.

A :class:`Trace` is a read-only mapping from readable names to arrays. With T the
number of characters, H the model's width, V the vocabulary size and K the top-k:

=============================  ==========  ==============================================
key                            shape       what
=============================  ==========  ==============================================
``layers.{l}.hidden``          (T, H)      h(t) of layer l after reading character t
``layers.{l}.cell``            (T, H)      c(t), LSTM only
``layers.{l}.gates.{name}``    (T, H)      LSTM input, forget, output, candidate;
                                           GRU reset, update, candidate (RNN: none)
``logits``                     (T, V)      scores for character t + 1
``prob``, ``loss``             (T,)        probability / -log of the actual next
                                           character (NaN at the last position)
``topk.ids``, ``topk.probs``   (T, K)      the K most likely next characters
=============================  ==========  ==============================================

Arrays are stored float16 by default (``dtype=torch.float32`` for exact work) on the
device that computed them and become NumPy arrays, layer by layer, when first read.

How it is fast: the text is cut into parallel streams. Each starts ``burn_in``
characters before the part it owns, so its state has forgotten the zero start by
then; the deviation from its neighbour at every seam is measured, and when it passes
``tol`` the burn-in doubles (in the end: one single stream, exact by construction).
Each layer's hidden states come from the fused kernel (cuDNN on a GPU), all gates from
one batched product and the cell state from a blocked scan; ``method="loop"`` (one
batched step loop over all streams, what interventions use, and an RNN on a GPU, where
cuDNN's tanh is not exact enough) computes everything step by step. A GPU gets more,
shorter streams and no seam probe: its cost is steps, not rows.

    >>> import torch
    >>> from lab.models import CharRNN, ModelConfig
    >>> model = CharRNN(ModelConfig("lstm", 2, 16, 4)).eval()
    >>> tr = compute_trace(model, torch.randint(0, 4, (500,)), vocab="abc\\n", dtype=torch.float32)
    >>> tr["layers.1.gates.forget"].shape, tr.seam_deviation < 1e-4
    ((500, 16), True)
"""
from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lab.checks import is_integer
from lab.models import exact_float32
from lab.reference import GATE_NAMES


class Trace(Mapping):
    """Arrays keyed by readable names (see the module docstring for the shapes).

    :func:`compute_trace` (or :meth:`lab.Session.trace`) makes one:

    >>> import torch
    >>> from lab.models import CharRNN, ModelConfig
    >>> _ = torch.manual_seed(0); model = CharRNN(ModelConfig("lstm", 1, 8, 3)).eval()
    >>> tr = compute_trace(model, torch.tensor([0, 1, 2, 0]), text="ab\\na", vocab="ab\\n")
    >>> tr
    Trace(LSTM 1x8, 4 chars, 11 arrays, seam deviation 0.0e+00)
    >>> list(tr)[:3], tr["layers.0.cell"].shape, tr["loss"].shape
    (['layers.0.hidden', 'layers.0.cell', 'layers.0.gates.input'], (4, 8), (4,))
    """

    def __init__(self, arrays: dict[str, torch.Tensor], *, text: str, ids: torch.Tensor, vocab,
                 kind: str, layers: int, width: int, info: dict):
        self._arrays = arrays
        self._numpy: dict[str, np.ndarray] = {}
        self.text, self.ids, self.vocab = text, ids, tuple(vocab)
        self.kind, self.n_layers, self.width = kind, layers, width
        self.info = info  # streams, burn_in, seam deviation, method, device, final state

    @property
    def seam_deviation(self) -> float:
        """Largest |difference| of hidden or cell state seen at a seam between streams.

        Below ``tol`` (1e-4) once the trace is done; one single stream has no seams (0.0):

        >>> import torch
        >>> from lab.models import CharRNN, ModelConfig
        >>> _ = torch.manual_seed(0); model = CharRNN(ModelConfig("lstm", 1, 8, 3)).eval()
        >>> ids = torch.randint(0, 3, (3000,), generator=torch.Generator().manual_seed(0))
        >>> tr = compute_trace(model, ids, dtype=torch.float32, burn_in=64)
        >>> tr.info["streams"], tr.seam_deviation < 1e-4
        (11, True)
        """
        return self.info["seam_deviation"]

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._arrays:
            raise KeyError(f"no {key!r} in this trace of a {self.n_layers}-layer {self.kind.upper()}; "
                           f"keys: {', '.join(self._arrays)}")
        if key not in self._numpy:
            array = self._arrays[key].cpu().numpy()
            array.flags.writeable = False   # read-only: an edit would corrupt every later analysis
            self._numpy[key] = array
        return self._numpy[key]

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        return (f"Trace({self.kind.upper()} {self.n_layers}x{self.width}, {len(self.text):,} chars, "
                f"{len(self)} arrays, seam deviation {self.seam_deviation:.1e})")

    @property
    def memory(self) -> str:
        """What holds the model's memory, the default to show: ``"cell"`` (tanh(c)) for an
        LSTM, ``"hidden"`` for an RNN or GRU, which have no cell state.

        >>> import torch
        >>> from lab.models import CharRNN, ModelConfig
        >>> gru = CharRNN(ModelConfig("gru", 1, 8, 3)).eval()
        >>> compute_trace(gru, torch.tensor([0, 1, 2])).memory
        'hidden'
        """
        return "cell" if "layers.0.cell" in self._arrays else "hidden"

    @property
    def whats(self) -> tuple[str, ...]:
        """The names :meth:`values` takes as ``what`` for this trace: states, then gates.

        >>> import torch
        >>> from lab.models import CharRNN, ModelConfig
        >>> lstm = CharRNN(ModelConfig("lstm", 1, 8, 3)).eval()
        >>> compute_trace(lstm, torch.tensor([0, 1, 2])).whats
        ('cell', 'cell_raw', 'hidden', 'input', 'forget', 'candidate', 'output')
        """
        states = ("cell", "cell_raw", "hidden") if self.memory == "cell" else ("hidden",)
        return states + tuple(k.removeprefix("layers.0.gates.") for k in self._arrays
                              if k.startswith("layers.0.gates."))

    def values(self, layer: int, what: str | None = None, unit: int | None = None) -> np.ndarray:
        """A layer's values as shown: (T, H) float32, or (T,) for one ``unit``.

        ``what`` is cell, hidden or a gate name (:attr:`whats`); ``cell`` gives tanh(c), the
        paper's colouring, and ``cell_raw`` gives c itself. None (the default) is the model's
        memory (:attr:`memory`): the cell of an LSTM, the hidden state of an RNN or GRU.

        >>> import torch
        >>> from lab.models import CharRNN, ModelConfig
        >>> _ = torch.manual_seed(0); model = CharRNN(ModelConfig("lstm", 1, 8, 3)).eval()
        >>> tr = compute_trace(model, torch.tensor([0, 1, 2, 0]), text="ab\\na", vocab="ab\\n")
        >>> tr.values(0).shape, tr.values(0).dtype
        ((4, 8), dtype('float32'))
        >>> print(tr.values(0, "forget", unit=3).round(2))
        [0.59 0.57 0.54 0.59]
        """
        what = self.memory if what is None else what
        for arg, value in (("layer", layer), ("unit", unit)):
            if value is not None and not is_integer(value):
                raise TypeError(f"{arg} must be an integer, got {value!r}")
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer {layer} does not exist: this model has layers 0..{self.n_layers - 1}")
        if unit is not None and not 0 <= unit < self.width:
            raise IndexError(f"unit {unit} does not exist: layers have units 0..{self.width - 1}")
        if what not in self.whats:
            hint = (f" (a{'n' if self.kind == 'rnn' else ''} {self.kind.upper()} has no cell state: its memory is "
                    "what='hidden')" if what in ("cell", "cell_raw") else "")
            raise KeyError(f"what={what!r} is not in this {self.kind.upper()} trace{hint}: choose one of "
                           f"{', '.join(self.whats)}")
        name = {"cell": "cell", "cell_raw": "cell", "hidden": "hidden"}.get(what, f"gates.{what}")
        array = self[f"layers.{layer}.{name}"]
        array = (array if unit is None else array[:, unit]).astype(np.float32)
        return np.tanh(array) if what == "cell" else array

    def unit(self, layer: int, unit: int, what: str | None = None) -> np.ndarray:
        """One unit's values over the text (T,): see :meth:`values`.

        >>> import torch
        >>> from lab.models import CharRNN, ModelConfig
        >>> _ = torch.manual_seed(0); model = CharRNN(ModelConfig("lstm", 1, 8, 3)).eval()
        >>> tr = compute_trace(model, torch.tensor([0, 1, 2, 0]), text="ab\\na", vocab="ab\\n")
        >>> print(tr.unit(0, 3).round(2), tr.unit(0, 3, "cell_raw").round(2))   # tanh(c), c
        [0.17 0.27 0.37 0.4 ] [0.18 0.28 0.39 0.42]
        """
        return self.values(layer, what, unit)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the trace to one safetensors file, atomically: its arrays as stored (float16
        by default), and its text, vocabulary, shape and :attr:`info` as JSON metadata.

        :meth:`load` reads it back on any machine, without the model: trace once on a GPU,
        study it on a laptop. A full trace is large (the War and Peace test split through
        the shipped 2-layer LSTM: about 2 GB in float16); :attr:`nbytes` says how large.

        >>> import tempfile, pathlib, torch
        >>> from lab.models import CharRNN, ModelConfig
        >>> _ = torch.manual_seed(0); model = CharRNN(ModelConfig("gru", 2, 8, 3)).eval()
        >>> tr = compute_trace(model, torch.tensor([0, 1, 2, 0]), text="ab\\na", vocab="ab\\n")
        >>> path = tr.save(pathlib.Path(tempfile.mkdtemp()) / "gru.trace.safetensors")
        >>> again = Trace.load(path)
        >>> again, again.text == tr.text, bool((again.unit(1, 3) == tr.unit(1, 3)).all())
        (Trace(GRU 2x8, 4 chars, 13 arrays, seam deviation 0.0e+00), True, True)
        """
        from safetensors.torch import save_file

        from lab.checkpoint import code_commit
        from lab.files import atomic_write
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or path, got {path!r}")
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder: give a file name, e.g. {path / 'trace.safetensors'}")
        tensors = {f"arrays.{k}": v.detach().cpu().contiguous() for k, v in self._arrays.items()}
        tensors["ids"] = self.ids.detach().cpu().contiguous()
        info = dict(self.info)
        final = info.pop("final_state", None)
        for name, t in zip(("h", "c"), final if isinstance(final, tuple) else (final,)):
            if t is not None:
                tensors[f"final_state.{name}"] = t.detach().cpu().contiguous()
        header = {"format": TRACE_FORMAT, "text": self.text, "vocab": list(self.vocab), "kind": self.kind,
                  "layers": self.n_layers, "width": self.width, "keys": list(self._arrays), "info": info,
                  "saved_by": code_commit()}
        meta = {"vurn_trace": json.dumps(header, default=_json_scalar)}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Trace:
        """A trace written by :meth:`save`; refuses any other file with the reason.

        >>> try: Trace.load("/nonexistent/wp.trace.safetensors")
        ... except FileNotFoundError as e: print(e)
        no trace file /nonexistent/wp.trace.safetensors: check the path (Trace.save wrote it)
        """
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        from lab.train import pick_device
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or path, got {path!r}")
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder: give the trace file in it (Trace.save wrote one file)")
        if not path.is_file():
            raise FileNotFoundError(f"no trace file {path}: check the path (Trace.save wrote it)")
        device = pick_device(device)   # a device that does not exist here is its own clear error
        try:
            with safe_open(str(path), framework="pt") as f:
                raw = (f.metadata() or {}).get("vurn_trace")
            tensors = load_file(str(path), device="cpu") if raw is not None else {}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise ValueError(f"{path} is not a readable safetensors file (truncated or damaged?): {e}") from None
        if raw is None:
            raise ValueError(f"{path} is a safetensors file but not a vurn trace (a checkpoint? load it with "
                             "Session.load); a trace is written by Trace.save")
        header = json.loads(raw)
        if header.get("format") != TRACE_FORMAT:
            raise ValueError(f"{path} has trace format {header.get('format')!r}, expected {TRACE_FORMAT!r}: "
                             "trace the text again with this version")
        missing = [k for k in header["keys"] if f"arrays.{k}" not in tensors] + ([] if "ids" in tensors else ["ids"])
        if missing:
            raise ValueError(f"{path} lacks the arrays {', '.join(missing)} that its header lists: it is damaged; "
                             "trace the text again")
        info = dict(header["info"])
        h, c = (tensors[k].to(device) if k in tensors else None for k in ("final_state.h", "final_state.c"))
        info["final_state"] = (h, c) if c is not None else h
        arrays = {k: tensors[f"arrays.{k}"].to(device) for k in header["keys"]}
        return cls(arrays, text=header["text"], ids=tensors["ids"],   # ids stay on the CPU, as compute_trace keeps them
                   vocab=header["vocab"], kind=header["kind"], layers=header["layers"], width=header["width"],
                   info=info)

    @property
    def nbytes(self) -> int:
        """Bytes the trace's arrays take (what :meth:`save` writes, about).

        >>> import torch
        >>> from lab.models import CharRNN, ModelConfig
        >>> rnn = CharRNN(ModelConfig("rnn", 1, 8, 3)).eval()
        >>> compute_trace(rnn, torch.tensor([0, 1, 2])).nbytes    # 3 chars x (8 + 3) float16 and more
        180
        """
        return sum(v.numel() * v.element_size() for v in self._arrays.values())


def _json_scalar(x):
    """JSON for the NumPy and torch scalars an info dict may hold."""
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON-able")


TRACE_FORMAT = "vurn-trace-1"


def _layer_weights(rnn: nn.Module, layer: int):
    return [getattr(rnn, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def _loop_layer(kind, xp, w_hh, b_hh, h, c, edit=None, layer=0, offset=0):
    """The batched step loop: every stream advances one character per iteration.

    ``xp`` (W, S, G*H) holds the input projections, time first (for an LSTM or RNN with
    ``b_hh`` already added, see :func:`_input_projection`); returns hidden, cell and gates
    as (S, W, H) views of time-first buffers. Each step writes its results straight into
    those buffers (``out=``), so a step is a few kernels and no copies.
    ``edit(layer, t, "cell" | "hidden", values) -> values`` may change the state at step t.
    """
    W, S, _ = xp.shape
    H = h.shape[-1]
    w_t = w_hh.T.contiguous()
    hidden = torch.empty(W, S, H, device=xp.device)
    out = {"hidden": hidden}
    if kind == "lstm":
        # gates stored in the order of the weights' blocks: input, forget, candidate, output
        gates, cell, tmp = torch.empty(W, S, 4 * H, device=xp.device), torch.empty_like(hidden), torch.empty_like(h)
        out["cell"] = cell
        out.update(zip(("input", "forget", "candidate", "output"), gates.split(H, dim=-1)))
        for t in range(W):
            pre, g = torch.addmm(xp[t], h, w_t), gates[t]
            torch.sigmoid(pre, out=g)                                      # i, f, o (g is redone)
            torch.tanh(pre[:, 2 * H:3 * H], out=g[:, 2 * H:3 * H])
            i, f, cand, o = g.split(H, dim=-1)
            torch.addcmul(torch.mul(f, c), i, cand, out=cell[t])          # c = f c + i g, as torch's cell
            if edit is not None:  # an edited cell also changes this step's h
                cell[t] = edit(layer, offset + t, "cell", cell[t])
            torch.mul(o, torch.tanh(cell[t], out=tmp), out=hidden[t])
            if edit is not None:
                hidden[t] = edit(layer, offset + t, "hidden", hidden[t])
            h, c = hidden[t], cell[t]
    elif kind == "gru":
        gates = torch.empty(W, S, 3 * H, device=xp.device)
        out.update(zip(("reset", "update", "candidate"), gates.split(H, dim=-1)))
        for t in range(W):
            hp, g = torch.addmm(b_hh, h, w_t), gates[t]
            torch.sigmoid(torch.add(xp[t, :, :2 * H], hp[:, :2 * H]), out=g[:, :2 * H])
            n = torch.addcmul(xp[t, :, 2 * H:], g[:, :H], hp[:, 2 * H:], out=g[:, 2 * H:]).tanh_()
            torch.addcmul(n, g[:, H:2 * H], h - n, out=hidden[t])        # (1 - z) n + z h, as torch's cell
            if edit is not None:
                hidden[t] = edit(layer, offset + t, "hidden", hidden[t])
            h = hidden[t]
    else:
        for t in range(W):
            torch.tanh(torch.addmm(xp[t], h, w_t), out=hidden[t])
            if edit is not None:
                hidden[t] = edit(layer, offset + t, "hidden", hidden[t])
            h = hidden[t]
    return {k: v.transpose(0, 1) for k, v in out.items()}


def _fused_layer(kind, xin, xp, weights, h0, c0, window=8192):
    """Fused kernel for the hidden states, then all gates in one batched product, cell by scan.

    ``xin`` (S, W, in) is the layer's input, ``xp`` (S, W, G*H) its input projection (for an
    LSTM with ``b_hh`` already added, see :func:`_run_rows`; None for an RNN, which has no gates).
    """
    w_ih, w_hh, b_ih, b_hh = weights
    S, W, _ = xin.shape
    H = w_hh.shape[1]
    cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
    mod = cls(w_ih.shape[1], H, 1, batch_first=True).to(xin.device)
    with torch.no_grad():
        for name, w in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), weights):
            getattr(mod, name).copy_(w)
    hs, state = [], ((h0[None], c0[None]) if kind == "lstm" else h0[None])
    for a in range(0, W, window):  # cuDNN refuses very long sequences: windows, state carried
        h_part, state = mod(xin[:, a:a + window], state)
        hs.append(h_part)
    hidden = hs[0] if len(hs) == 1 else torch.cat(hs, 1)                 # (S, W, H)
    if kind == "rnn":
        return {"hidden": hidden}
    h_prev = torch.cat([h0[:, None], hidden[:, :-1]], 1).view(S * W, H)
    if kind == "lstm":  # the recurrent product added to xp in the same call
        pi, pf, pg, po = torch.addmm(xp.view(S * W, -1), h_prev, w_hh.T).view(S, W, -1).chunk(4, dim=-1)
        gates = {"input": torch.sigmoid(pi), "forget": torch.sigmoid(pf), "candidate": torch.tanh(pg),
                 "output": torch.sigmoid(po)}
        cell = _cell_scan(gates["forget"], gates["input"] * gates["candidate"], c0)
        return {"hidden": hidden, "cell": cell, **gates}
    xr, xz, xn = xp.chunk(3, dim=-1)  # GRU: the reset gate scales the recurrent candidate term alone
    hr, hz, hn = torch.addmm(b_hh, h_prev, w_hh.T).view(S, W, -1).chunk(3, dim=-1)
    reset = torch.sigmoid(xr + hr)
    return {"hidden": hidden, "reset": reset, "update": torch.sigmoid(xz + hz),
            "candidate": torch.tanh(xn + reset * hn)}


SCAN_BLOCK = 64  # longest block of the cell scan: bounds the rounding of a block's product of forget gates


def _cell_scan(f: torch.Tensor, ig: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
    """The LSTM cell state c(t) = f(t) c(t-1) + i(t) g(t) along dim 1 of (S, W, H), from c0 (S, H).

    In blocks of about sqrt(W) steps, so that a long text costs ~2 sqrt(W) small steps, not W
    (each step is a kernel launch on a GPU): a scan inside every block at once from zero,
    one across the blocks' ends, then c(t) = local(t) + (product of f since the block's
    start) x c(block start). The same sums as the step loop, grouped differently.

        >>> f, ig = torch.full((1, 5, 1), 0.5), torch.ones(1, 5, 1)
        >>> _cell_scan(f, ig, torch.zeros(1, 1))[0, :, 0].tolist()
        [1.0, 1.5, 1.75, 1.875, 1.9375]
    """
    S, W, H = f.shape
    C = max(1, min(SCAN_BLOCK, math.isqrt(W)))
    B = -(-W // C)
    if B * C != W:  # pad the end with f = 1, ig = 0: the state just carries over
        f, ig = F.pad(f, (0, 0, 0, B * C - W), value=1.0), F.pad(ig, (0, 0, 0, B * C - W))
    f, ig = f.reshape(S, B, C, H), ig.reshape(S, B, C, H)
    local = torch.empty_like(ig)
    c = torch.zeros_like(ig[:, :, 0])
    for t in range(C):                                                    # every block at once
        c = torch.addcmul(ig[:, :, t], f[:, :, t], c)
        local[:, :, t] = c
    decay = torch.cumprod(f, dim=2)                                       # forget since the block's start
    start = torch.empty_like(c)
    c = c0
    for b in range(B):                                                    # across the blocks' ends
        start[:, b] = c
        c = torch.addcmul(local[:, b, -1], decay[:, b, -1], c)
    return torch.addcmul(local, decay, start[:, :, None]).reshape(S, B * C, H)[:, :W]


def _input_projection(x: torch.Tensor, w_ih: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ w_ih.T + bias`` over the last dim of ``x``: (A, B) ids or (A, B, H) states -> (A, B, G*H)."""
    if x.dim() == 2:  # character ids: the one-hot product is a column lookup, exact and V times cheaper
        return w_ih.T[x] + bias
    A, B, H = x.shape
    return torch.addmm(bias, x.reshape(A * B, H), w_ih.T).view(A, B, -1)


def _run_rows(model, rows: torch.Tensor, method: str, edit=None, state=None):
    """All internals of every layer for a batch of rows (S, W) of character ids."""
    kind, L = model.cfg.kind, model.cfg.layers
    S, W = rows.shape
    if state is None:
        state = model.initial_state(S, rows.device)
    h0, c0 = state if kind == "lstm" else (state, torch.zeros_like(state))
    per_layer, x = [], None
    fused = method == "fused" and edit is None
    for layer in range(L):
        w_ih, w_hh, b_ih, b_hh = _layer_weights(model.rnn, layer)
        bias = b_ih if kind == "gru" else b_ih + b_hh  # an LSTM's or RNN's recurrent bias joins it, once
        if fused:
            xin = F.one_hot(rows, model.cfg.vocab_size).float() if layer == 0 else x
            xp = None if kind == "rnn" else _input_projection(rows if layer == 0 else x, w_ih, bias)
            out = _fused_layer(kind, xin, xp, (w_ih, w_hh, b_ih, b_hh), h0[layer], c0[layer])
        else:  # time first
            xp = _input_projection(rows.T if layer == 0 else x.transpose(0, 1), w_ih, bias)
            out = _loop_layer(kind, xp, w_hh, b_hh, h0[layer], c0[layer], edit, layer)
        per_layer.append(out)
        x = out["hidden"]
    logits = model.head(x)                                                # (S, W, V)
    return per_layer, logits


@torch.no_grad()
def compute_trace(model, ids: torch.Tensor, **kw) -> Trace:
    """Trace ``model`` over ``ids``; see :func:`_compute_trace` for the options.

    >>> import torch
    >>> from lab.models import CharRNN, ModelConfig
    >>> _ = torch.manual_seed(0); model = CharRNN(ModelConfig("gru", 2, 8, 3)).eval()
    >>> tr = compute_trace(model, torch.tensor([0, 1, 2, 0]), text="ab\\na", vocab="ab\\n")
    >>> sorted(k for k in tr if k.startswith("layers.1")), tr["topk.ids"].shape
    (['layers.1.gates.candidate', 'layers.1.gates.reset', 'layers.1.gates.update', 'layers.1.hidden'], (4, 3))
    >>> print(tr["loss"].round(2))      # -log p(next character); none after the last
    [1.14 0.95 1.23  nan]
    """
    with exact_float32():   # TF32 would cost the float32 exactness traces promise
        return _compute_trace(model, ids, **kw)


def _compute_trace(model, ids: torch.Tensor, *, text: str | None = None, vocab=None, dtype=torch.float16,
                  streams: int | None = None, burn_in: int = 512, tol: float = 1e-4, top_k: int = 5,
                  method: str | None = None, max_rows: int | None = None, edit=None,
                  next_id: int | None = None, memory: float | None = None) -> Trace:
    """Trace ``model`` over ``ids`` (see the module docstring); ``next_id`` is the character after.

    ``streams`` defaults to one per ``4 * burn_in`` characters on a CPU, where every
    character of burn-in costs arithmetic, and one per ``burn_in`` on a GPU, where a step
    costs about the same for a few streams as for hundreds; ``method`` is ``fused``
    (fused kernel + batched gates) or ``loop`` (explicit batched steps, used for edits);
    None picks one (:func:`_default_method`);
    ``memory`` bounds the float32 working set in bytes (streams are traced in groups;
    default 1e9 on a CPU, half the free memory of a GPU).
    """
    device = model.head.weight.device
    per_stream, probe, default_memory = _device_policy(device)
    memory = default_memory if memory is None else memory
    model = model.eval()
    ids = ids.to(device)
    n = ids.numel()
    if n == 0:
        raise ValueError("the text is empty: give at least one character to trace")
    method = method or _default_method(model.cfg.kind, device, edit)
    if method not in ("fused", "loop"):
        raise ValueError(f"method must be 'fused' or 'loop', got {method!r}")
    if streams is not None and streams < 1:
        raise ValueError(f"streams must be at least 1 (or None: chosen from the length), got {streams}")
    if burn_in < 1 and streams != 1:
        raise ValueError(f"burn_in must be at least 1 character when the text is cut into streams, got "
                         f"{burn_in}: without it the seams could not be checked (or pass streams=1)")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    auto = streams is None or edit is not None
    if edit is not None:
        streams = 1  # an intervention follows one continuous run

    def layout(burn):
        k = max(1, min(4096, n // (per_stream * burn))) if auto and edit is None else streams
        return (1, 0) if k == 1 else (k, burn)

    def grow(k, burn):
        """Double the burn-in; one exact stream once splitting no longer pays.

        With streams chosen from the length, that is when the longer burn-in leaves one
        stream (a GPU's parts are about one burn-in long, so the burn-in may exceed a part);
        with a fixed number of streams, when the burn-in would be as long as a part.
        """
        k2, burn2 = layout(burn * 2)
        return (k2, burn2) if k2 > 1 and (auto or burn2 < math.ceil(n / k2)) else (1, 0)

    probes = 0
    k, burn = layout(burn_in)
    several = k > 1  # several streams at first: ending with one is a fallback
    # Probe a few seams first, so that the full trace runs once. The probe runs 16 rows:
    # worth it only when that is a small part of all rows, on a CPU (whose cost grows with
    # rows); a GPU takes about as long for 16 rows as for all of them.
    while k > 4 * PROBE_SEAMS and probe:
        dev = _seam_probe(model, ids, k, burn, method)
        probes += 1
        if dev <= tol:
            break
        k, burn = grow(k, burn)
    attempts = 0
    while True:
        attempts += 1
        result = _trace_streams(model, ids, k, burn, method, dtype, top_k, max_rows, edit, next_id, memory)
        if k == 1 or result["info"]["seam_deviation"] <= tol:
            break
        k, burn = grow(k, burn)
    result["info"].update(probes=probes, attempts=attempts,  # seam probes, then full traces run
                          tolerance=tol, fell_back_to_one_stream=k == 1 and several)
    cfg = model.cfg
    return Trace(result["arrays"], text=text if text is not None else "", ids=ids.cpu(),
                 vocab=vocab or [], kind=cfg.kind, layers=cfg.layers, width=cfg.width, info=result["info"])


def _default_method(kind: str, device: torch.device, edit=None) -> str:
    """``loop`` for an edit and for an RNN on a GPU, else ``fused``.

    cuDNN's tanh RNN is not exact enough: on an H100 (2026-11-27, TF32 off) its hidden states
    were 1.1e-5 from a float64 reference, past the 1e-5 a trace promises, where the step loop
    was 2.4e-7 off (its LSTM and GRU: 4.6e-6 and 5.0e-6). On a GPU the loop over all streams
    costs steps, as the fused kernel does, and an RNN's step is one product and one tanh.

        >>> _default_method("rnn", torch.device("cpu")), _default_method("rnn", torch.device("cuda"))
        ('fused', 'loop')
    """
    if edit is not None or (kind == "rnn" and device.type == "cuda"):
        return "loop"
    return "fused"


def _device_policy(device: torch.device) -> tuple[int, bool, float]:
    """(characters per stream in burn-in lengths, probe seams first?, working-set bytes) for ``device``.

    A CPU pays for every character of burn-in, so streams are long and a cheap probe of a
    few seams runs first; a GPU pays per step, for few rows as for many, so streams are
    short, the probe would cost as much as the trace, and the working set is half its free memory.
    """
    if device.type == "cuda":
        return 1, False, torch.cuda.mem_get_info(device)[0] / 2
    return 4, True, 1e9


def _rows_layout(n, streams, burn):
    span = math.ceil(n / streams)
    streams = math.ceil(n / span)
    starts = torch.tensor([max(0, s * span - burn) for s in range(streams)])
    pos = (starts[:, None] + torch.arange(span + burn)[None, :]).clamp(max=n - 1)  # (S, W) positions
    return span, streams, starts, pos


def _layer_state(per_layer, rows, cols):
    """Hidden (and cell) of every layer at (row, col) pairs: (len(rows), layers, H, 1|2)."""
    return torch.stack([torch.stack([o["hidden"][rows, cols]] + ([o["cell"][rows, cols]] if "cell" in o else []), -1)
                        for o in per_layer], 1)


def _out_of_memory(width: int) -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError(
        f"GPU out of memory even for one stream of {width:,} characters at a time: trace a shorter "
        "text (or a slice of it), or load the session with device='cpu'")


def _run_rows_halving(model, rows: torch.Tensor, method: str):
    """``_run_rows(...)[0]`` for the seam probe, in halves while the GPU runs out of memory."""
    try:
        return _run_rows(model, rows, method)[0]
    except torch.cuda.OutOfMemoryError:
        if rows.shape[0] == 1:
            raise _out_of_memory(rows.shape[1]) from None
        half = rows.shape[0] // 2
        torch.cuda.empty_cache()
        warnings.warn(f"GPU out of memory while checking seams: running {half} streams at a time instead",
                      stacklevel=4)
    a, b = _run_rows_halving(model, rows[:half], method), _run_rows_halving(model, rows[half:], method)
    return [{k: torch.cat([x[k], y[k]]) for k in x} for x, y in zip(a, b)]


PROBE_SEAMS = 8


def _seam_probe(model, ids, streams, burn, method, seams: int = PROBE_SEAMS) -> float:
    """Largest state deviation at up to ``seams`` evenly spaced seams, from just those rows.

    At a seam s the trace compares row s-1's state at the end of its own part with row s's
    after its burn-in; so the probe runs row s-1 up to that end and row s through its
    burn-in only, each a prefix of the row the trace will run (the same states, to rounding, for less work).
    """
    n = ids.numel()
    span, streams, starts, pos = _rows_layout(n, streams, burn)
    chosen = torch.tensor(sorted({int(x) for x in torch.linspace(1, streams - 1, min(seams, streams - 1))}))
    seam_pos = chosen * span - 1                                       # last position of row s-1's own part
    prev_col, this_col = seam_pos - starts[chosen - 1], seam_pos - starts[chosen]
    prev = _run_rows_halving(model, ids[pos[chosen - 1, :int(prev_col.max()) + 1].to(ids.device)], method)
    this = _run_rows_halving(model, ids[pos[chosen, :int(this_col.max()) + 1].to(ids.device)], method)
    rows = torch.arange(len(chosen))
    return (_layer_state(prev, rows, prev_col) - _layer_state(this, rows, this_col)).abs().max().item()


def _own_blocks(offset: list[int], span: int, n: int, first: int, end: int):
    """(a, b, column, length) for rows first..end-1, in blocks of consecutive rows whose own
    parts start at the same column and have the same length, so that each block is copied
    into place at once: the first rows' burn-ins are shorter, the last row's part may be.

        >>> list(_own_blocks([0, 2, 2, 2], span=5, n=18, first=0, end=4))
        [(0, 1, 0, 5), (1, 3, 2, 5), (3, 4, 2, 3)]
    """
    blocks = []
    for r in range(first, end):
        key = (offset[r], min(span, n - r * span))
        if blocks and tuple(blocks[-1][2:]) == key:
            blocks[-1][1] = r + 1
        else:
            blocks.append([r, r + 1, *key])
    return [tuple(x) for x in blocks]


def _trace_streams(model, ids, streams, burn, method, dtype, top_k, max_rows, edit, next_id, memory):
    device, cfg = ids.device, model.cfg
    n = ids.numel()
    span, streams, starts, pos = _rows_layout(n, streams, burn)
    width = span + burn
    offset = torch.arange(streams) * span - starts                           # where each row's own part begins
    names = [f"layers.{l}.{k}" for l in range(cfg.layers)
             for k in ("hidden",) + (("cell",) if cfg.kind == "lstm" else ()) + tuple(
                 f"gates.{g}" for g in GATE_NAMES[cfg.kind])]
    arrays = {k: torch.empty(n, cfg.width, dtype=dtype, device=device) for k in names}
    arrays["logits"] = torch.empty(n, cfg.vocab_size, dtype=dtype, device=device)
    # every row's last owned position, and (rows after the first) the position just before
    # its own part, where its burn-in has brought it to the previous row's last state
    last_col = (torch.arange(1, streams + 1) * span).clamp(max=n) - 1 - torch.arange(streams) * span + offset
    seam_own, seam_burn = [], []   # float32 states at those positions, group by group
    per_row = width * (cfg.width * len(names) + cfg.vocab_size) * 4 * 2   # float32, with temporaries
    rows_per_group = max(1, min(max_rows or streams, int(memory // per_row)))
    group = 0
    while group < streams:
        g_end = min(streams, group + rows_per_group)
        try:
            per_layer, logits = _run_rows(model, ids[pos[group:g_end].to(device)], method, edit)
        except torch.cuda.OutOfMemoryError:
            if rows_per_group == 1:
                raise _out_of_memory(width) from None
            rows_per_group = max(1, rows_per_group // 2)
            torch.cuda.empty_cache()
            warnings.warn(f"GPU out of memory: tracing {rows_per_group} streams at a time instead", stacklevel=3)
            continue
        for a, b, col, length in _own_blocks(offset.tolist(), span, n, group, g_end):
            into = slice(a * span, a * span + (b - a) * length)                # rows a..b-1's own characters
            rows, cols = slice(a - group, b - group), slice(col, col + length)
            for l, out in enumerate(per_layer):
                for k, v in out.items():
                    key = f"layers.{l}.{k}" if k in ("hidden", "cell") else f"layers.{l}.gates.{k}"
                    arrays[key][into].view(b - a, length, -1).copy_(v[rows, cols])
            arrays["logits"][into].view(b - a, length, -1).copy_(logits[rows, cols])
        here = torch.arange(g_end - group)
        seam_own.append(_layer_state(per_layer, here.to(device), last_col[group:g_end].to(device)))
        late = here[int(group == 0):]                                   # rows with a burn-in: not row 0
        seam_burn.append(_layer_state(per_layer, late.to(device), (offset[group:g_end][late] - 1).to(device)))
        group = g_end
    seam_own, seam_burn = torch.cat(seam_own), torch.cat(seam_burn)    # (streams | streams - 1, layers, H, 1|2)
    final = seam_own[-1]                                                # (layers, H, 1|2)
    deviation = (seam_burn - seam_own[:-1]).abs().max().item() if streams > 1 else 0.0
    logits32 = arrays["logits"].float()
    logp = torch.log_softmax(logits32, dim=-1)
    nxt = torch.full((n,), -1, dtype=torch.long, device=device)
    nxt[:-1] = ids[1:]
    if next_id is not None:
        nxt[-1] = next_id
    known = nxt >= 0
    lp = torch.full((n,), float("nan"), device=device)
    lp[known] = logp[known, nxt[known]]
    top = logp.exp().topk(min(top_k, cfg.vocab_size), dim=-1)
    arrays.update({"prob": lp.exp(), "loss": -lp, "topk.ids": top.indices, "topk.probs": top.values.to(dtype)})
    final_h = final[..., 0][:, None]                                      # (layers, 1, H) as torch gives
    final_state = (final_h, final[..., 1][:, None]) if cfg.kind == "lstm" else final_h
    info = {"streams": streams, "burn_in": burn if streams > 1 else 0, "seam_deviation": deviation, "method": method,
            "device": str(device), "dtype": str(dtype).replace("torch.", ""), "final_state": final_state}
    return {"arrays": arrays, "info": info}
