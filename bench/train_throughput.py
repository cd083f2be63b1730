"""Training throughput: vurn's training step against a bare torch.nn.LSTM step.

Both train the same shape (one-hot input, LSTM, linear softmax output, RMSProp,
element-wise clipping) on the same batch and sequence length, in the same process,
in interleaved rounds; the script prints characters per second of each and the
median ratio ours / bare (goal: >= 0.95).

    python bench/train_throughput.py                      # CPU: 1-layer, row 128
    python bench/train_throughput.py --layers 2 --row 512 --device cuda
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lab.models import CharRNN, ModelConfig, width_for  # noqa: E402
from lab.train import pick_device, train_step  # noqa: E402


class BareLSTM(nn.Module):
    """What people write by hand: nn.LSTM over one-hot characters plus a linear layer."""

    def __init__(self, vocab, width, layers):
        super().__init__()
        self.vocab = vocab
        self.lstm = nn.LSTM(vocab, width, layers, batch_first=True)
        self.out = nn.Linear(width, vocab)

    def forward(self, x, state):
        h, state = self.lstm(F.one_hot(x, self.vocab).float(), state)
        return self.out(h), state


def bare_step(model, opt, x, y, state):
    logits, state = model(x, state)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), 5.0)
    opt.step()
    return loss.detach(), tuple(s.detach() for s in state)


def timed(step, n, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--row", type=int, default=128)
    p.add_argument("--vocab", type=int, default=82)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--steps", type=int, default=10, help="steps per timed block")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    device = pick_device(args.device)
    width = width_for("lstm", args.layers, args.row, args.vocab)
    torch.manual_seed(0)
    x = torch.randint(0, args.vocab, (args.batch, args.seq_len + 1), device=device)
    ours = CharRNN(ModelConfig("lstm", args.layers, width, args.vocab)).to(device)
    bare = BareLSTM(args.vocab, width, args.layers).to(device)
    opt_ours = torch.optim.RMSprop(ours.parameters(), lr=2e-3, alpha=0.95, eps=1e-8)
    opt_bare = torch.optim.RMSprop(bare.parameters(), lr=2e-3, alpha=0.95, eps=1e-8)
    state = {"ours": None, "bare": None}

    def step_ours():
        _, state["ours"] = train_step(ours, opt_ours, x[:, :-1], x[:, 1:], state["ours"], 5.0)

    def step_bare():
        _, state["bare"] = bare_step(bare, opt_bare, x[:, :-1], x[:, 1:], state["bare"])

    timed(step_ours, 3, device), timed(step_bare, 3, device)  # warm up kernels and allocator
    chars = args.batch * args.seq_len * args.steps
    rates = {"ours": [], "bare": []}
    for _ in range(args.rounds):
        rates["ours"].append(chars / timed(step_ours, args.steps, device))
        rates["bare"].append(chars / timed(step_bare, args.steps, device))
    ratios = [o / b for o, b in zip(rates["ours"], rates["bare"])]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; lstm {args.layers} layer(s) x {width} (row {args.row}), "
          f"batch {args.batch}, seq {args.seq_len}, torch {torch.__version__}")
    print(f"ours: {statistics.median(rates['ours']):,.0f} chars/s   "
          f"bare nn.LSTM: {statistics.median(rates['bare']):,.0f} chars/s")
    print(f"ratio ours/bare (median of {args.rounds} rounds): {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
