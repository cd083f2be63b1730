"""Tracing speed: every layer's hidden state, cell state and gates over the War and Peace test split.

Three ways, in one run, on the paper's best model shape (3-layer LSTM, Table 1 row 512,
width 241 for War and Peace's 82 characters):

* ours: ``lab.trace.compute_trace`` (parallel streams with verified burn-in, fused
  kernel, batched gates, cell scan), float16 storage;
* loop: a per-step ``torch.nn.LSTMCell`` loop (what people write today), keeping h and
  c of every layer only, so it does less work than ours; timed on a prefix, and its
  rate (chars/s) is constant along the text;
* one stream: ``compute_trace(streams=1)``: one exact, unsplit fused stream (in windows).

It also prints the roofline: this machine's float32 matrix-product rate, measured in the
same run, divided by the arithmetic a full trace needs per character. That is the most
chars/s any exact float32 trace can reach here, so ``roofline/loop`` bounds the possible gain.

Weights: a trained checkpoint with ``--checkpoint`` (its shape is used), else the paper's
initialisation (uniform +-0.08) of the 3x512-row shape. A trained model remembers
further back, which needs a longer burn-in: run both.

    python bench/trace.py                                   # random 3x241, CPU
    python bench/trace.py --checkpoint war_and_peace_lstm   # the shipped 2x307
    python bench/trace.py --device cuda --repeat 3 --sweep   # and other stream counts
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lab.corpus import load_corpus  # noqa: E402
from lab.models import CharRNN, ModelConfig, width_for  # noqa: E402
from lab.pretrained import load_model  # noqa: E402
from lab.trace import compute_trace  # noqa: E402
from lab.train import pick_device  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def lstmcell_loop(model, ids, device) -> float:
    """Seconds for a per-step LSTMCell loop over ``ids`` keeping h and c of every layer."""
    cfg = model.cfg
    cells = []
    for layer in range(cfg.layers):
        w_ih, w_hh = getattr(model.rnn, f"weight_ih_l{layer}"), getattr(model.rnn, f"weight_hh_l{layer}")
        cell = torch.nn.LSTMCell(w_ih.shape[1], cfg.width).to(device)
        cell.weight_ih.copy_(w_ih), cell.weight_hh.copy_(w_hh)
        cell.bias_ih.copy_(getattr(model.rnn, f"bias_ih_l{layer}")), cell.bias_hh.copy_(getattr(model.rnn, f"bias_hh_l{layer}"))
        cells.append(cell)
    onehot = torch.eye(cfg.vocab_size, device=device)
    state = [(torch.zeros(1, cfg.width, device=device),) * 2 for _ in cells]
    hs = torch.empty(len(ids), cfg.layers, 2, cfg.width, device=device)
    sync(device)
    t = time.perf_counter()
    for i, ch in enumerate(ids.tolist()):
        x = onehot[ch][None]
        for layer, cell in enumerate(cells):
            h, c = cell(x, state[layer])
            state[layer] = (h, c)
            hs[i, layer, 0], hs[i, layer, 1] = h[0], c[0]
            x = h
    sync(device)
    return time.perf_counter() - t


def flops_per_char(cfg) -> int:
    """Floating-point operations a full trace needs per character: every gate of every layer
    (input and recurrent products) and the output layer, 2 per multiply-add."""
    inputs = [cfg.vocab_size] + [cfg.width] * (cfg.layers - 1)
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cfg.kind]
    return sum(2 * (n + cfg.width) * gates * cfg.width for n in inputs) + 2 * cfg.width * cfg.vocab_size


@torch.no_grad()
def matmul_rate(cfg, device, rows: int = 8192, seconds: float = 2.0) -> float:
    """FLOP/s of this machine on the trace's biggest product shape (rows x (2H) @ (2H) x (4H)):
    an upper bound on what any exact float32 trace can do here."""
    a = torch.randn(rows, 2 * cfg.width, device=device)
    b = torch.randn(2 * cfg.width, 4 * cfg.width, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    t, reps = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        a @ b
        reps += 1
    sync(device)
    return 2 * rows * a.shape[1] * b.shape[1] * reps / (time.perf_counter() - t)


def timed_trace(model, ids, device, **kw):
    sync(device)
    t = time.perf_counter()
    tr = compute_trace(model, ids, **kw)
    sync(device)
    return time.perf_counter() - t, tr


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="a trained model (name or path); default: random 3x512-row LSTM")
    p.add_argument("--device", default=None)
    p.add_argument("--chars", type=int, default=None, help="trace only this many test characters")
    p.add_argument("--loop-chars", type=int, default=5000, help="prefix length timed for the per-step loop")
    p.add_argument("--skip-one-stream", action="store_true", help="skip the slow single-stream run")
    p.add_argument("--repeat", type=int, default=1, help="time ours this many times and report the fastest")
    p.add_argument("--sweep", type=int, nargs="*", default=None, metavar="STREAMS",
                   help="also time ours with these stream counts (default list when given bare)")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    corpus = load_corpus("war_and_peace")
    if args.checkpoint:
        model, _ = load_model(args.checkpoint, device)
        what = f"trained {args.checkpoint}"
    else:
        torch.manual_seed(0)
        model = CharRNN(ModelConfig("lstm", 3, width_for("lstm", 3, 512, len(corpus.vocab)), len(corpus.vocab)))
        model.init_uniform(0.08)
        model = model.to(device).eval()
        what = "random init (uniform +-0.08)"
    ids = corpus.split_ids("test")[: args.chars]
    n = ids.numel()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    cfg = model.cfg
    print(f"device: {name}; torch {torch.__version__}; LSTM {cfg.layers}x{cfg.width}, {what}; "
          f"War and Peace test split, {n:,} chars")
    compute_trace(model, ids[:2000], burn_in=64)  # warm-up
    t_ours, tr = min((timed_trace(model, ids, device) for _ in range(max(1, args.repeat))), key=lambda r: r[0])
    best = f"fastest of {args.repeat}; " if args.repeat > 1 else ""
    print(f"ours:       {n / t_ours:12,.0f} chars/s  ({t_ours:.3f} s; {best}{tr.info['streams']} streams, burn-in "
          f"{tr.info['burn_in']}, seam deviation {tr.seam_deviation:.1e}, {tr.info['probes']} probes, "
          f"{tr.info['attempts']} attempts)")
    nbytes = sum(tr._arrays[k].numel() * tr._arrays[k].element_size() for k in tr)
    t = time.perf_counter()
    for key in tr:  # what the first read of every array costs (from a GPU: the copy to the host)
        tr[key]
    print(f"to host:    {time.perf_counter() - t:.3f} s for all {len(tr)} arrays ({nbytes / 2**30:.2f} GiB), "
          "not part of the time above: a trace is read layer by layer, when first needed")
    if args.sweep is not None:
        for k in args.sweep or (n // 2048, n // 1024, n // 512, n // 256, n // 128):
            t_k, tr_k = min((timed_trace(model, ids, device, streams=k) for _ in range(max(1, args.repeat))),
                            key=lambda r: r[0])
            print(f"  streams={tr_k.info['streams']:5d}: {n / t_k:12,.0f} chars/s  ({t_k:.3f} s; burn-in "
                  f"{tr_k.info['burn_in']}, seam deviation {tr_k.seam_deviation:.1e}, attempts {tr_k.info['attempts']})")
            del tr_k
    loop_n = min(args.loop_chars, n)
    t_loop = lstmcell_loop(model, ids[:loop_n], device) * n / loop_n
    print(f"loop:       {n / t_loop:12,.0f} chars/s  (LSTMCell per step, timed on {loop_n:,} chars)")
    if not args.skip_one_stream:
        t_one, _ = timed_trace(model, ids, device, streams=1)
        print(f"one stream: {n / t_one:12,.0f} chars/s  ({t_one:.3f} s)")
        print(f"ratio ours/one stream: {t_one / t_ours:.1f}x")
    print(f"ratio ours/loop: {t_loop / t_ours:.1f}x")
    # the roofline: no exact float32 trace can beat the machine's matrix-product rate
    rate, per_char = matmul_rate(cfg, device), flops_per_char(cfg)
    ceiling = rate / per_char
    print(f"roofline:   {ceiling:12,.0f} chars/s  (matrix products at {rate / 1e9:.1f} GFLOP/s, "
          f"{per_char / 1e6:.2f} MFLOP per char); ours reaches {n / t_ours / ceiling:.0%} of it")
    print(f"ratio roofline/loop: {ceiling * t_loop / n:.1f}x (the most any exact float32 trace could gain here)")


if __name__ == "__main__":
    main()
