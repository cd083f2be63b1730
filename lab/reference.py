"""The explicit, per-step reference: every cell written gate by gate in plain torch.

Slow on purpose and easy to read; tests hold the fused models (and, later, the fast
traces) to it. It uses the weights of a :class:`lab.models.CharRNN` as they are,
in torch's layout (gate blocks stacked in the order input, forget, candidate, output
for the LSTM; reset, update, candidate for the GRU).

Equations (per layer, x = the layer's input at step t, h = h(t-1)):

* RNN:  h(t) = tanh(W_x x + W_h h + b)
* LSTM: input = sigmoid(.), forget = sigmoid(.), output = sigmoid(.), candidate = tanh(.)
  of W_x x + W_h h + b; c(t) = forget * c(t-1) + input * candidate; h(t) = output * tanh(c(t))
* GRU:  reset = sigmoid(.), update = sigmoid(.) of W_x x + W_h h + b;
  candidate = tanh(W_xn x + b_xn + reset * (W_hn h + b_hn)); h(t) = (1 - update) * candidate + update * h.
  torch's ``update`` is the fraction of the old state kept; the paper's z is 1 - update.

    >>> import torch
    >>> from lab.models import CharRNN, ModelConfig
    >>> model = CharRNN(ModelConfig("gru", 2, 8, 5)).eval()
    >>> out = reference_forward(model, torch.tensor([[1, 2, 3]]))
    >>> sorted(k for k in out if k.startswith("layers.1"))
    ['layers.1.gates.candidate', 'layers.1.gates.reset', 'layers.1.gates.update', 'layers.1.hidden']
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

GATE_NAMES = {
    "rnn": (),
    "lstm": ("input", "forget", "candidate", "output"),  # torch's block order
    "gru": ("reset", "update", "candidate"),
}


def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step: returns h(t), c(t) and the four gates, each (batch, width).

    With zero weights every gate is sigmoid(0) = 0.5 and the candidate tanh(0) = 0,
    so the cell keeps half of c(t-1) = 1:

    >>> import torch
    >>> z = torch.zeros
    >>> h, c, gates = lstm_step(z(1, 3), z(1, 2), torch.ones(1, 2), z(8, 3), z(8, 2), z(8), z(8))
    >>> c.tolist(), sorted(gates), gates["forget"].tolist()
    ([[0.5, 0.5]], ['candidate', 'forget', 'input', 'output'], [[0.5, 0.5]])
    """
    pre = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh                   # (B, 4H)
    pre_i, pre_f, pre_g, pre_o = pre.chunk(4, dim=-1)
    input, forget, output = torch.sigmoid(pre_i), torch.sigmoid(pre_f), torch.sigmoid(pre_o)
    candidate = torch.tanh(pre_g)
    c = forget * c + input * candidate
    h = output * torch.tanh(c)
    return h, c, {"input": input, "forget": forget, "output": output, "candidate": candidate}


def gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    """One GRU step: returns h(t) and the gates reset, update, candidate.

    With zero weights update = 0.5 and candidate = 0, so h(t) is half of h(t-1) = 1:

    >>> import torch
    >>> z = torch.zeros
    >>> h, gates = gru_step(z(1, 3), torch.ones(1, 2), z(6, 3), z(6, 2), z(6), z(6))
    >>> h.tolist(), gates["update"].tolist()
    ([[0.5, 0.5]], [[0.5, 0.5]])
    """
    x_r, x_z, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=-1)          # (B, H) each
    h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
    reset, update = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    candidate = torch.tanh(x_n + reset * h_n)  # reset acts after W_hn, as in cuDNN
    h = (1 - update) * candidate + update * h
    return h, {"reset": reset, "update": update, "candidate": candidate}


def rnn_step(x, h, w_ih, w_hh, b_ih, b_hh):
    """One vanilla tanh RNN step.

    >>> import torch
    >>> h, gates = rnn_step(torch.ones(1, 1), torch.zeros(1, 1), torch.ones(1, 1), torch.zeros(1, 1),
    ...                     torch.zeros(1), torch.zeros(1))
    >>> round(h.item(), 4), gates          # tanh(1 * 1); an RNN has no gates
    (0.7616, {})
    """
    return torch.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh), {}


@torch.no_grad()
def reference_forward(model, x: torch.Tensor, state=None) -> dict[str, torch.Tensor]:
    """Run ``model`` (eval mode) one step at a time and keep every internal.

    ``x`` is (batch, time) int64. Returns a dict of (batch, time, ...) tensors keyed
    ``layers.{l}.hidden``, ``layers.{l}.cell`` (LSTM), ``layers.{l}.gates.{name}``,
    ``logits``, and ``final_state`` in the fused module's format.

    It gives what the fused model gives:

    >>> import torch
    >>> from lab.models import CharRNN, ModelConfig
    >>> _ = torch.manual_seed(0); model = CharRNN(ModelConfig("lstm", 2, 8, 5)).eval()
    >>> x = torch.tensor([[0, 1, 2, 3]])
    >>> out = reference_forward(model, x)
    >>> tuple(out["layers.1.cell"].shape), torch.allclose(out["logits"], model(x)[0], atol=1e-6)
    ((1, 4, 8), True)
    """
    cfg = model.cfg
    rnn = model.rnn
    batch, steps = x.shape
    inputs = F.one_hot(x, cfg.vocab_size).to(model.head.weight.dtype)    # (B, T, V)
    if state is None:
        state = model.initial_state(batch, x.device)
    h0, c0 = state if cfg.kind == "lstm" else (state, None)
    out: dict[str, torch.Tensor] = {}
    finals_h, finals_c = [], []
    for layer in range(cfg.layers):
        w = [getattr(rnn, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h, c = h0[layer], (c0[layer] if c0 is not None else None)
        hs, cs, gates = [], [], {name: [] for name in GATE_NAMES[cfg.kind]}
        for t in range(steps):
            if cfg.kind == "lstm":
                h, c, g = lstm_step(inputs[:, t], h, c, *w)
                cs.append(c)
            elif cfg.kind == "gru":
                h, g = gru_step(inputs[:, t], h, *w)
            else:
                h, g = rnn_step(inputs[:, t], h, *w)
            hs.append(h)
            for name, value in g.items():
                gates[name].append(value)
        out[f"layers.{layer}.hidden"] = torch.stack(hs, 1)                # (B, T, H)
        if cfg.kind == "lstm":
            out[f"layers.{layer}.cell"] = torch.stack(cs, 1)
            finals_c.append(c)
        for name, values in gates.items():
            out[f"layers.{layer}.gates.{name}"] = torch.stack(values, 1)
        finals_h.append(h)
        inputs = out[f"layers.{layer}.hidden"]  # no dropout: the reference is eval mode
    out["logits"] = model.head(inputs)                                      # (B, T, V)
    h_n = torch.stack(finals_h)
    out["final_state"] = (h_n, torch.stack(finals_c)) if cfg.kind == "lstm" else h_n
    return out
