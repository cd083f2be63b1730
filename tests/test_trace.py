"""lab.trace: every internal of a model over a text, held to the explicit per-step
reference (lab.reference) for all three kinds and 1 to 3 layers, both methods, one
stream and several; seams, burn-in growth and fallback; out-of-memory handling; and
clear errors for what does not exist.

Models here are random (init_uniform(0.3)), so that their memory is short and a few
hundred characters of burn-in are plenty, except where a long memory is the point.
Everything runs with one torch thread (see tests/test_train.py for why).
"""
from __future__ import annotations

import contextlib
import json
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import lab.trace as trace_mod
from lab.models import CharRNN, ModelConfig, exact_float32
from lab.reference import GATE_NAMES, reference_forward
from lab.trace import Trace, compute_trace

V = 7       # vocabulary size of the random models
H = 16      # their width
VOCAB = "abcdef\n"


@contextlib.contextmanager
def no_hang(seconds: int = 20):
    """Turn a hang into a failure (a loop that never ends must fail, not stall the suite)."""
    def fail(*_):
        raise TimeoutError(f"still running after {seconds} s: the call hangs")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def random_model(kind: str, layers: int, width: int = H, vocab: int = V, seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    model = CharRNN(ModelConfig(kind, layers, width, vocab))
    model.init_uniform(0.3, generator=torch.Generator().manual_seed(seed))
    return model.eval()


def long_memory_model(layers: int = 1, forget_bias: float = 8.0, seed: int = 0) -> CharRNN:
    """An LSTM whose forget gates sit near 1 (sigmoid(8) = 0.9997): it remembers for thousands of steps."""
    model = random_model("lstm", layers, seed=seed)
    with torch.no_grad():
        for layer in range(layers):
            getattr(model.rnn, f"bias_ih_l{layer}")[H:2 * H] = forget_bias   # block 1 = forget
    return model


def random_ids(n: int, seed: int = 1, vocab: int = V) -> torch.Tensor:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


def internal_keys(kind: str, layers: int) -> set[str]:
    keys = set()
    for layer in range(layers):
        keys.add(f"layers.{layer}.hidden")
        if kind == "lstm":
            keys.add(f"layers.{layer}.cell")
        keys.update(f"layers.{layer}.gates.{g}" for g in GATE_NAMES[kind])
    return keys


def max_error(got: np.ndarray, want: torch.Tensor) -> tuple[float, float]:
    """max |got - want| and the scale it is judged against (max(1, max |want|))."""
    want = want.detach().float()
    err = (torch.from_numpy(np.array(got, dtype=np.float32)) - want).abs().max().item()
    return err, max(1.0, want.abs().max().item())


def assert_matches_reference(tr: Trace, ref: dict, tol: float = 1e-5) -> None:
    """Every internal and the logits equal the reference to ``tol`` (relative where |values| > 1).

    Cell states of a long-memory LSTM grow to hundreds, where float32 itself only holds
    about 7 digits: there the bound is ``tol`` times the largest |value|.
    """
    kind, layers = tr.kind, tr.n_layers
    assert internal_keys(kind, layers) | {"logits"} == {k for k in ref if k != "final_state"}
    for key in sorted(internal_keys(kind, layers)) + ["logits"]:
        err, scale = max_error(tr[key], ref[key][0])
        assert err <= tol * scale, f"{key}: max |trace - reference| = {err:.2e} > {tol:g} x {scale:.3g}"


def assert_final_state(tr: Trace, model, ids: torch.Tensor, tol: float = 1e-5) -> None:
    with exact_float32():   # cuDNN's default TF32 on a GPU is off by ~1e-4 (measured on an H100)
        _, state = model(ids[None])                               # the fused kernel, one stream
    got = tr.info["final_state"]
    if model.cfg.kind == "lstm":
        assert isinstance(got, tuple) and len(got) == 2
        pairs = list(zip(got, state))
    else:
        pairs = [(got, state)]
    for g, s in pairs:
        assert tuple(g.shape) == tuple(s.shape) == (model.cfg.layers, 1, model.cfg.width)
        err, scale = max_error(g.cpu().numpy(), s.cpu())
        assert err <= tol * scale, f"final state off by {err:.2e}"


# -- exact: the trace is the per-step reference ----------------------------------------------

@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_trace_equals_reference_both_methods_one_and_many_streams(kind, layers):
    model = random_model(kind, layers, seed=layers)
    ids = random_ids(400, seed=layers)
    ref = reference_forward(model, ids[None])
    for method in ("fused", "loop"):
        for streams, burn_in in ((1, 0), (4, 50)):
            tr = compute_trace(model, ids, vocab=VOCAB, dtype=torch.float32, method=method,
                               streams=streams, burn_in=burn_in)
            where = f"{kind} x{layers} {method} streams={streams}"
            # the layout asked for is the layout used (no silent fallback makes this pass)
            assert tr.info["streams"] == streams, where
            assert tr.info["burn_in"] == burn_in, where
            assert tr.info["method"] == method, where
            assert 0 <= tr.seam_deviation <= 1e-4, where
            assert_matches_reference(tr, ref)
            assert_final_state(tr, model, ids)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_trace_on_a_device_equals_the_reference_on_that_device(kind, device):
    """On a GPU, the fused cuDNN path (TF32 off) against the explicit per-step reference run there.

    The reference runs on the same device, so the comparison measures the method, not the
    GPU's float32 arithmetic against the CPU's. That arithmetic is bounded separately: every
    method is within 1e-5 of a float64 reference, or at worst twice as far from it as the
    device's own per-step reference is. The test prints each one's error against the
    device's reference, the CPU float32 reference and the float64 one. (On the CPU the
    same checks run, so that the test itself is exercised where there is no GPU.)
    """
    import copy
    model = random_model(kind, 2)
    ids = random_ids(2000)
    refs = {"cpu": reference_forward(model, ids[None]),
            "float64": reference_forward(copy.deepcopy(model).double(), ids[None])}
    on = random_model(kind, 2).to(device)
    refs["device"] = {k: v.cpu() for k, v in reference_forward(on, ids[None].to(device)).items()
                      if k != "final_state"}
    keys = sorted(internal_keys(kind, 2)) + ["logits"]

    def errors(got) -> dict[str, tuple[str, float]]:
        """Per reference: the key with the largest relative error, and that error / scale."""
        worst = {}
        for name, ref in refs.items():
            rel = {}
            for key in keys:
                err, scale = max_error(got(key), ref[key][0])
                rel[key] = err / scale
            key = max(rel, key=rel.get)
            worst[name] = (key, rel[key])
        return worst

    reference = errors(lambda k: refs["device"][k][0].float().numpy())
    held, shown, traces = {}, {}, []

    def run(method, streams):
        tr = compute_trace(on, ids, dtype=torch.float32, method=method, streams=streams, burn_in=100)
        assert tr.info["device"].startswith(device)
        name = f"{tr.info['method']}{'' if method else ' (default)'}, {tr.info['streams']} streams"
        return f"{name} (seam {tr.seam_deviation:.1e})", tr

    # the default method with streams chosen and with one stream (fused, but the loop for an RNN
    # on a GPU: lab.trace._default_method), and the loop
    for method, streams in ((None, None), (None, 1), ("loop", 4)):
        name, tr = run(method, streams)
        held[name] = errors(tr.__getitem__)
        traces.append(tr)
    if kind == "rnn" and device != "cpu":   # cuDNN's tanh RNN: printed, not held (1.1e-5 off on an H100)
        name, tr = run("fused", 1)
        shown[f"{name}, not held to the bound"] = errors(tr.__getitem__)
    print(f"\n{kind} on {device}: worst relative error (key) against each reference")
    for name, row in {"per-step reference on the device": reference, **held, **shown}.items():
        print(f"  {name}: " + ", ".join(f"{ref} {err:.2e} ({key})" for ref, (key, err) in row.items()))
    for tr in traces:   # printed first: on a device, a failure here still shows every method's errors
        assert_final_state(tr, on, ids.to(device))                 # the fused kernel on that device
    own = reference["float64"][1]
    for name, row in held.items():
        assert row["device"][1] <= 1e-5, (name, row)
        assert row["float64"][1] <= max(1e-5, 2 * own), (name, row, own)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_prob_loss_and_topk_follow_from_the_logits(kind):
    model = random_model(kind, 2)
    ids = random_ids(300)
    ref = reference_forward(model, ids[None])
    logp = torch.log_softmax(ref["logits"][0], -1)                 # (T, V)
    tr = compute_trace(model, ids, vocab=VOCAB, dtype=torch.float32, top_k=3, streams=3, burn_in=50)
    n = ids.numel()
    expected = logp[torch.arange(n - 1), ids[1:]]                  # log p(actual next char)
    assert tr["prob"].shape == tr["loss"].shape == (n,)
    np.testing.assert_allclose(tr["loss"][:-1], -expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(tr["prob"][:-1], expected.exp().numpy(), atol=1e-5)
    assert np.isnan(tr["prob"][-1]) and np.isnan(tr["loss"][-1])  # the next char is unknown
    assert ((tr["prob"][:-1] > 0) & (tr["prob"][:-1] <= 1)).all()

    top_ids, top_probs = tr["topk.ids"], tr["topk.probs"]
    assert top_ids.shape == top_probs.shape == (n, 3)
    want = logp.exp().topk(3, dim=-1)
    np.testing.assert_array_equal(top_ids, want.indices.numpy())
    np.testing.assert_allclose(top_probs, want.values.numpy(), atol=1e-5)
    assert (np.diff(top_probs, axis=1) <= 0).all()
    # the top ids carry the largest logits of the traced logits themselves
    logits = tr["logits"]
    picked = np.take_along_axis(logits, top_ids, 1)
    rest = logits.copy()
    np.put_along_axis(rest, top_ids, -np.inf, 1)
    assert (picked[:, -1] >= rest.max(1)).all()


def test_next_id_fills_the_last_position():
    model = random_model("lstm", 1)
    ids = random_ids(101)
    full = compute_trace(model, ids, dtype=torch.float32, streams=1)
    part = compute_trace(model, ids[:100], dtype=torch.float32, streams=1, next_id=int(ids[100]))
    assert np.isfinite(part["prob"]).all()
    np.testing.assert_allclose(part["loss"], full["loss"][:100], atol=1e-6)


# -- keys, shapes, dtypes ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_keys_shapes_and_default_float16(kind):
    model = random_model(kind, 2)
    n = 120
    tr = compute_trace(model, random_ids(n), text="x" * n, vocab=VOCAB)
    assert set(tr) == internal_keys(kind, 2) | {"logits", "prob", "loss", "topk.ids", "topk.probs"}
    assert len(tr) == len(set(tr))
    for key in internal_keys(kind, 2):
        assert tr[key].shape == (n, H), key
        assert tr[key].dtype == np.float16, key
        assert isinstance(tr[key], np.ndarray)
    assert tr["logits"].shape == (n, V) and tr["logits"].dtype == np.float16
    assert tr["topk.ids"].shape == tr["topk.probs"].shape == (n, 5)
    assert tr["topk.probs"].dtype == np.float16
    assert np.issubdtype(tr["topk.ids"].dtype, np.integer)
    assert tr["prob"].shape == tr["loss"].shape == (n,)
    assert tr.info["dtype"] == "float16"
    assert tr.text == "x" * n and tr.vocab == tuple(VOCAB) and tr.kind == kind
    # float16 is the float32 trace rounded, nothing more
    exact = compute_trace(model, random_ids(n), dtype=torch.float32)
    for key in sorted(internal_keys(kind, 2)) + ["logits"]:
        np.testing.assert_allclose(tr[key].astype(np.float32), exact[key], atol=2e-3, rtol=2e-3, err_msg=key)
    assert repr(tr).startswith(f"Trace({kind.upper()} 2x{H}")


def test_unit_reads_one_unit():
    model = random_model("lstm", 2)
    tr = compute_trace(model, random_ids(80), dtype=torch.float32)
    np.testing.assert_array_equal(tr.unit(1, 3), np.tanh(tr["layers.1.cell"][:, 3]))   # the paper's colour
    np.testing.assert_array_equal(tr.unit(1, 3, "cell_raw"), tr["layers.1.cell"][:, 3])
    np.testing.assert_array_equal(tr.unit(0, 5, "hidden"), tr["layers.0.hidden"][:, 5])
    np.testing.assert_array_equal(tr.unit(0, 5, "forget"), tr["layers.0.gates.forget"][:, 5])


# -- clear errors for what does not exist ---------------------------------------------------------

def test_missing_layer_unit_and_key_are_clear_errors():
    tr = compute_trace(random_model("lstm", 2), random_ids(50))
    with pytest.raises(KeyError, match=r"layers\.9\.cell.*2-layer LSTM.*layers\.0\.cell.*layers\.1\.cell"):
        tr["layers.9.cell"]
    with pytest.raises(IndexError, match=r"layer 2 does not exist.*layers 0\.\.1"):
        tr.unit(2, 0)
    with pytest.raises(IndexError, match=r"layer -1 does not exist"):
        tr.unit(-1, 0)
    with pytest.raises(IndexError, match=rf"unit {H} does not exist.*units 0\.\.{H - 1}"):
        tr.unit(0, H)
    with pytest.raises(KeyError, match=r"what='nonsense' is not in this LSTM trace: choose one of cell, cell_raw, "
                                       r"hidden, input, forget, candidate, output"):
        tr.unit(0, 0, "nonsense")
    with pytest.raises(TypeError, match=r"layer must be an integer, got '1'"):
        tr.values("1")
    with pytest.raises(TypeError, match=r"unit must be an integer, got 2.5"):
        tr.unit(0, 2.5)
    assert tr.unit(np.int64(1), np.int64(3)).shape == (50,)           # numpy integers are integers

    gru = compute_trace(random_model("gru", 1), random_ids(50))
    with pytest.raises(KeyError, match=r"a GRU has no cell state: its memory is what='hidden'.*"
                                       r"choose one of hidden, reset, update, candidate"):
        gru.unit(0, 0, "cell")
    assert gru.memory == "hidden" and tr.memory == "cell"
    assert np.array_equal(gru.unit(0, 1), gru.unit(0, 1, "hidden"))     # the default: the model's memory
    assert np.array_equal(tr.unit(0, 1), tr.unit(0, 1, "cell"))


def test_arrays_are_read_only():
    """An edit to a trace's array would silently change every later analysis of it."""
    tr = compute_trace(random_model("lstm", 1), random_ids(20))
    with pytest.raises(ValueError, match="read-only"):
        tr["loss"][0] = 123.0
    with pytest.raises(ValueError, match="read-only"):
        tr["layers.0.cell"][:] = 0
    values = tr.values(0)          # what values() returns is the caller's own copy
    values[:] = 0
    assert np.abs(tr.values(0)).max() > 0


def test_bad_arguments_are_clear_errors():
    model = random_model("lstm", 1)
    ids = random_ids(200)
    with pytest.raises(ValueError, match="empty"):
        compute_trace(model, ids[:0])
    with pytest.raises(ValueError, match="method must be 'fused' or 'loop'"):
        compute_trace(model, ids, method="cudnn")
    with no_hang():
        with pytest.raises(ValueError, match="streams"):
            compute_trace(model, ids, streams=0)
        with pytest.raises(ValueError, match="streams"):
            compute_trace(model, ids, streams=-2)
        with pytest.raises(ValueError, match="burn_in"):
            compute_trace(model, ids, streams=4, burn_in=0)   # no burn-in: the seams could never be checked
        with pytest.raises(ValueError, match="burn_in"):
            compute_trace(model, ids, burn_in=0)
        with pytest.raises(ValueError, match="top_k"):
            compute_trace(model, ids, top_k=0)
    # one stream needs no burn-in
    assert compute_trace(model, ids, streams=1, burn_in=0).info["streams"] == 1


def test_a_text_too_short_to_split_reports_no_burn_in():
    # four streams asked of one character: the layout makes it one, which has no burn-in
    tr = compute_trace(random_model("lstm", 1), random_ids(1), dtype=torch.float32, streams=4, burn_in=100)
    assert (tr.info["streams"], tr.info["burn_in"], tr.seam_deviation) == (1, 0, 0.0)


# -- seams: measured, grown, fallen back ------------------------------------------------------

def test_seam_deviation_is_what_the_seams_really_differ_by():
    """With the check switched off (tol=inf) the reported deviation matches an independent
    computation from the reference, and the trace is then visibly off: the check has teeth."""
    model = long_memory_model()
    n, streams, burn = 400, 4, 20
    ids = random_ids(n)
    tr = compute_trace(model, ids, dtype=torch.float32, streams=streams, burn_in=burn, tol=float("inf"))
    assert (tr.info["streams"], tr.info["burn_in"]) == (streams, burn)
    span = n // streams
    row_start = lambda s: max(0, s * span - burn)               # noqa: E731  (where row s begins)
    deviations = []
    for s in range(1, streams):
        seam = s * span - 1                                      # last character owned by row s - 1
        prev = reference_forward(model, ids[None, row_start(s - 1):seam + 1])
        this = reference_forward(model, ids[None, row_start(s):seam + 1])
        for key in ("hidden", "cell"):
            deviations.append((prev[f"layers.0.{key}"][0, -1] - this[f"layers.0.{key}"][0, -1]).abs().max().item())
    expected = max(deviations)
    assert expected > 1e-2                                       # 20 characters are far too few here
    assert tr.seam_deviation == pytest.approx(expected, rel=1e-3)
    ref = reference_forward(model, ids[None])
    err, _ = max_error(tr["layers.0.cell"], ref["layers.0.cell"][0])
    assert err > 1e-3


def test_long_memory_grows_burn_in_or_falls_back_and_stays_exact():
    model = long_memory_model(layers=2)
    ids = random_ids(1200)
    tr = compute_trace(model, ids, dtype=torch.float32, burn_in=20)
    assert tr.info["burn_in"] > 20 or tr.info["streams"] == 1
    assert tr.seam_deviation <= 1e-4 == tr.info["tolerance"]
    ref = reference_forward(model, ids[None])
    assert_matches_reference(tr, ref)
    # cells reach hundreds here, where torch's fused kernel and the per-step reference already
    # part by ~1e-5 relative: the final state is held to the reference's
    for got, want in zip(tr.info["final_state"], ref["final_state"]):
        err, scale = max_error(got.cpu().numpy(), want)
        assert err <= 1e-5 * scale, f"final state off by {err:.2e}"


def test_medium_memory_grows_burn_in_and_keeps_several_streams():
    """A forget bias of 1 forgets within a hundred-odd steps: the burn-in must grow from 10,
    yet several streams remain, and every seam is within tol."""
    model = long_memory_model(layers=1, forget_bias=1.0)
    ids = random_ids(3000)
    tr = compute_trace(model, ids, dtype=torch.float32, burn_in=10)
    assert tr.info["burn_in"] > 10
    assert tr.info["streams"] > 1
    assert not tr.info["fell_back_to_one_stream"]
    assert tr.seam_deviation <= 1e-4
    # streams are exact up to what the seams differ by (here a few 1e-6)
    assert_matches_reference(tr, reference_forward(model, ids[None]), tol=max(1e-5, tr.seam_deviation))
    assert_final_state(tr, model, ids, tol=max(1e-5, tr.seam_deviation))


def test_every_seam_is_verified_not_just_the_probed_ones(monkeypatch):
    """Only one seam is bad: a run of a 'hold' character (forget gate ~1, input gate ~0) covers
    the burn-in of stream 2, so that stream cannot forget its zero start there. With 40
    streams the quick probe runs (it needs more than 4 x PROBE_SEAMS) and passes, since it
    looks at 8 of the 39 seams and not seam 2; the full check must still catch it."""
    model = random_model("lstm", 1)
    hold = 6
    with torch.no_grad():
        model.rnn.weight_ih_l0[0:H, hold] = -12.0       # input gate shut
        model.rnn.weight_ih_l0[H:2 * H, hold] = 12.0    # forget gate open: the cell is held
    n, streams, burn = 8000, 40, 30
    assert streams > 4 * trace_mod.PROBE_SEAMS
    span = n // streams
    ids = random_ids(n, vocab=hold)                      # the hold character nowhere else
    ids[2 * span - 50:2 * span] = hold
    probe_results = []
    real_probe = trace_mod._seam_probe

    def probe(*args, **kwargs):
        probe_results.append(real_probe(*args, **kwargs))
        return probe_results[-1]

    monkeypatch.setattr(trace_mod, "_seam_probe", probe)
    tr = compute_trace(model, ids, dtype=torch.float32, streams=streams, burn_in=burn)
    # the probe ran once and saw nothing wrong; the full trace then found seam 2 and ran again
    assert tr.info["probes"] == 1 and probe_results[0] <= tr.info["tolerance"]
    assert tr.info["attempts"] >= 2
    assert tr.info["burn_in"] > burn or tr.info["streams"] == 1
    assert tr.seam_deviation <= 1e-4
    assert_matches_reference(tr, reference_forward(model, ids[None]))
    # and the seam was bad indeed
    unchecked = compute_trace(model, ids, dtype=torch.float32, streams=streams, burn_in=burn, tol=float("inf"))
    assert unchecked.seam_deviation > 1e-2


@pytest.mark.parametrize("method", ["fused", "loop"])
def test_tiny_tol_falls_back_to_one_stream(method):
    model = long_memory_model()
    ids = random_ids(600)
    with no_hang():
        tr = compute_trace(model, ids, dtype=torch.float32, streams=4, burn_in=50, tol=1e-12, method=method)
    assert tr.info["streams"] == 1 and tr.info["fell_back_to_one_stream"]
    assert tr.seam_deviation == 0.0
    assert_matches_reference(tr, reference_forward(model, ids[None]))


def test_fallback_flag_only_when_it_fell_back():
    model = long_memory_model()
    # several streams asked for on a short text (shorter than 4 burn-ins), then given up: a fallback
    tr = compute_trace(model, random_ids(150), dtype=torch.float32, streams=4, burn_in=50, tol=1e-12)
    assert tr.info["streams"] == 1 and tr.info["fell_back_to_one_stream"]
    # a text short enough for one stream from the start (5 burn-ins < 8): no fallback happened
    tr = compute_trace(random_model("lstm", 1), random_ids(500), dtype=torch.float32, burn_in=100)
    assert tr.info["streams"] == 1 and tr.info["probes"] == 0
    assert not tr.info["fell_back_to_one_stream"]
    # several streams that pass: no fallback either
    tr = compute_trace(random_model("lstm", 1), random_ids(800), dtype=torch.float32, burn_in=50)
    assert tr.info["streams"] > 1 and not tr.info["fell_back_to_one_stream"]


# -- GPU out of memory, simulated -------------------------------------------------------------------

def _oom_when(monkeypatch, should_fail):
    """Make lab.trace._run_rows raise CUDA OOM whenever should_fail(rows, calls) says so."""
    real = trace_mod._run_rows
    calls: list[int] = []

    def run_rows(model, rows, *args, **kw):
        calls.append(rows.shape[0])
        if should_fail(rows.shape[0], calls):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        return real(model, rows, *args, **kw)

    monkeypatch.setattr(trace_mod, "_run_rows", run_rows)
    return calls


def _assert_same_trace(a: Trace, b: Trace) -> None:
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-6, err_msg=key)
    assert a.seam_deviation == pytest.approx(b.seam_deviation, abs=1e-6)


@pytest.mark.parametrize("method", ["fused", "loop"])
def test_out_of_memory_once_uses_fewer_streams_at_a_time(monkeypatch, method):
    model = random_model("lstm", 2)
    ids = random_ids(800)
    unsplit = compute_trace(model, ids, dtype=torch.float32, streams=8, burn_in=50, method=method)
    calls = _oom_when(monkeypatch, lambda rows, calls: rows > 1 and sum(c > 1 for c in calls) == 1)
    with pytest.warns(UserWarning, match=r"out of memory.*streams at a time"):
        tr = compute_trace(model, ids, dtype=torch.float32, streams=8, burn_in=50, method=method)
    assert sum(c > 1 for c in calls) > 1                          # it went on after the failure
    assert tr.info["streams"] == 8
    _assert_same_trace(tr, unsplit)


def test_out_of_memory_above_a_few_rows_still_traces_everything(monkeypatch):
    model = random_model("gru", 2)
    ids = random_ids(1600)
    unsplit = compute_trace(model, ids, dtype=torch.float32, streams=32, burn_in=40)
    calls = _oom_when(monkeypatch, lambda rows, calls: rows > 3)
    with pytest.warns(UserWarning, match=r"out of memory.*streams at a time"):
        tr = compute_trace(model, ids, dtype=torch.float32, streams=32, burn_in=40)
    assert max(c for c in calls if c <= 3) > 1                    # it did not fall to one row at a time
    assert tr.info["streams"] == 32
    _assert_same_trace(tr, unsplit)


def test_out_of_memory_even_for_one_stream_is_a_clear_error(monkeypatch):
    model = random_model("lstm", 1)
    _oom_when(monkeypatch, lambda rows, calls: True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(torch.cuda.OutOfMemoryError, match=r"one stream.*shorter text.*cpu"):
            compute_trace(model, random_ids(300), streams=1)
        with pytest.raises(torch.cuda.OutOfMemoryError, match=r"one stream.*shorter text.*cpu"):
            compute_trace(model, random_ids(800), streams=8, burn_in=50)


# -- edits (the mechanism behind interventions) ---------------------------------------------------

def test_identity_edit_changes_nothing():
    model = random_model("lstm", 2)
    ids = random_ids(200)
    plain = compute_trace(model, ids, dtype=torch.float32, method="loop", streams=1)
    edited = compute_trace(model, ids, dtype=torch.float32, edit=lambda layer, t, what, v: v)
    assert edited.info["streams"] == 1 and edited.info["method"] == "loop"
    for key in plain:
        np.testing.assert_array_equal(plain[key], edited[key], err_msg=key)


def test_clamping_edit_shows_in_the_trace():
    model = random_model("lstm", 2)
    ids = random_ids(120)
    plain = compute_trace(model, ids, dtype=torch.float32, method="loop", streams=1)

    def clamp(layer, t, what, values):
        if layer == 1 and what == "cell" and t >= 40:
            values = values.clone()
            values[:, 3] = 2.5
        return values

    tr = compute_trace(model, ids, dtype=torch.float32, edit=clamp)
    assert (tr["layers.1.cell"][40:, 3] == 2.5).all()
    np.testing.assert_array_equal(tr["layers.1.cell"][:40], plain["layers.1.cell"][:40])
    np.testing.assert_array_equal(tr["layers.0.cell"], plain["layers.0.cell"])  # layer 0 feeds layer 1 only
    # the clamped cell drives h = output * tanh(c) of that same step
    np.testing.assert_allclose(tr["layers.1.hidden"][40:, 3],
                               tr["layers.1.gates.output"][40:, 3] * np.tanh(2.5), rtol=1e-6)
    assert not np.allclose(tr["logits"][40:], plain["logits"][40:])

    def zero_hidden(layer, t, what, values):
        return values * 0 if layer == 0 and what == "hidden" and t >= 10 else values

    tr = compute_trace(model, ids, dtype=torch.float32, edit=zero_hidden)
    assert (tr["layers.0.hidden"][10:] == 0).all()
    np.testing.assert_array_equal(tr["layers.0.hidden"][:10], plain["layers.0.hidden"][:10])


@pytest.mark.parametrize("steps", [1, 2, 5, 63, 64, 65, 200, 4099])
def test_blocked_cell_scan_is_the_step_loop(steps):
    """The cell scan in blocks (few kernel launches on a GPU) against c(t) = f c(t-1) + ig, step by step."""
    gen = torch.Generator().manual_seed(steps)
    f = torch.rand(3, steps, 4, generator=gen, dtype=torch.float64)
    ig = torch.rand(3, steps, 4, generator=gen, dtype=torch.float64) * 2 - 1
    c0 = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    want, c = torch.empty_like(ig), c0
    for t in range(steps):
        c = f[:, t] * c + ig[:, t]
        want[:, t] = c
    assert torch.allclose(trace_mod._cell_scan(f, ig, c0), want, rtol=1e-12, atol=1e-12)
    # float32, with forget gates near 1: cells reach hundreds and the rounding must not grow
    f32 = (0.9995 + 0.0005 * f).float()
    c, want32 = c0.float(), torch.empty_like(f32)
    for t in range(steps):
        c = f32[:, t] * c + ig[:, t].float()
        want32[:, t] = c
    got = trace_mod._cell_scan(f32, ig.float(), c0.float())
    assert (got - want32).abs().max() <= 1e-5 * max(1.0, want32.abs().max().item())


def test_the_gpu_layout_on_the_cpu_equals_the_reference(monkeypatch):
    """What a GPU gets (a stream per burn-in, no probe), forced on the CPU, with a memory bound
    small enough to trace the streams in several groups: still the per-step reference."""
    monkeypatch.setattr(trace_mod, "_device_policy", lambda device: (1, False, 2e6))
    model = random_model("lstm", 2, seed=4)
    ids = random_ids(3000, seed=4)
    ref = reference_forward(model, ids[None])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr = compute_trace(model, ids, vocab=VOCAB, dtype=torch.float32, burn_in=100)
    assert tr.info["streams"] == 30 and tr.info["probes"] == 0 and tr.info["burn_in"] == 100
    assert 0 < tr.seam_deviation <= 1e-4
    assert_matches_reference(tr, ref)
    assert_final_state(tr, model, ids)


def test_the_gpu_layout_grows_its_burn_in_instead_of_falling_back_to_one_stream(monkeypatch):
    """A model that remembers longer than the first burn-in: on a GPU's layout (parts about one
    burn-in long) the burn-in must double, with streams still many, as on the CPU's."""
    model = long_memory_model(forget_bias=1.0, seed=2)
    ids = random_ids(3000, seed=2)
    cpu = compute_trace(model, ids, vocab=VOCAB, dtype=torch.float32, burn_in=10, tol=1e-6)
    monkeypatch.setattr(trace_mod, "_device_policy", lambda device: (1, False, 1e9))
    gpu = compute_trace(model, ids, vocab=VOCAB, dtype=torch.float32, burn_in=10, tol=1e-6)
    assert cpu.info["burn_in"] > 10 and gpu.info["burn_in"] > 10          # the seams asked for more
    assert gpu.info["streams"] > 1 and not gpu.info["fell_back_to_one_stream"], gpu.info
    assert gpu.info["streams"] == 3000 // gpu.info["burn_in"] and gpu.seam_deviation <= 1e-6
    assert_matches_reference(gpu, reference_forward(model, ids[None]))


# -- saving and loading ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_a_saved_trace_loads_back_identical(tmp_path, kind, dtype):
    model = random_model(kind, 2)
    ids = random_ids(700)
    text = "".join(VOCAB[i] for i in ids.tolist())
    tr = compute_trace(model, ids, text=text, vocab=VOCAB, dtype=dtype, burn_in=64)
    tr.info.update(model="random", split="test", start=5)          # as Session.trace adds them
    path = tr.save(tmp_path / "t.trace.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["t.trace.safetensors"]   # no temporary file left
    again = Trace.load(path)
    assert list(again) == list(tr) and again.text == text and again.vocab == tr.vocab
    assert (again.kind, again.n_layers, again.width) == (kind, 2, H) and torch.equal(again.ids, tr.ids)
    for key in tr:
        assert again[key].dtype == tr[key].dtype
        np.testing.assert_array_equal(again[key], tr[key], err_msg=key)
    want = {k: v for k, v in tr.info.items() if k != "final_state"}
    assert {k: v for k, v in again.info.items() if k != "final_state"} == want
    assert tr.info["streams"] > 1 and again.seam_deviation == tr.seam_deviation
    finals = tr.info["final_state"] if kind == "lstm" else (tr.info["final_state"],)
    loaded = again.info["final_state"] if kind == "lstm" else (again.info["final_state"],)
    assert all(torch.equal(a, b) for a, b in zip(finals, loaded))
    np.testing.assert_array_equal(again.values(1), tr.values(1))


def test_saving_over_a_trace_replaces_it_whole(tmp_path):
    path = tmp_path / "t.safetensors"
    compute_trace(random_model("gru", 1), random_ids(50)).save(path)
    compute_trace(random_model("lstm", 1), random_ids(80)).save(path)
    assert Trace.load(path).kind == "lstm" and len(Trace.load(path)["loss"]) == 80


def test_loading_what_is_not_a_trace_says_what_it_is(tmp_path):
    from lab.checkpoint import save_checkpoint
    with pytest.raises(FileNotFoundError, match="no trace file .*missing.safetensors: check the path"):
        Trace.load(tmp_path / "missing.safetensors")
    save_checkpoint(tmp_path / "ckpt.safetensors", {"w": torch.zeros(2)}, {"epoch": 1})
    with pytest.raises(ValueError, match="not a vurn trace \\(a checkpoint\\? load it with Session.load\\)"):
        Trace.load(tmp_path / "ckpt.safetensors")
    good = compute_trace(random_model("lstm", 1), random_ids(200)).save(tmp_path / "good.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ValueError, match="cut.safetensors is not a readable safetensors file \\(truncated"):
        Trace.load(tmp_path / "cut.safetensors")
    with pytest.raises(IsADirectoryError, match="is a folder: give the trace file in it"):
        Trace.load(tmp_path)
    with pytest.raises(ValueError, match="unknown device 'gpu' .*: use cpu, cuda or cuda:N"):
        Trace.load(good, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' was asked for but torch sees no CUDA GPU"):
            Trace.load(good, device="cuda")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        Trace.load(tmp_path / "notes.txt")
    with pytest.raises(TypeError, match="path must be a str or path, got 3"):
        Trace.load(3)


def test_saving_to_a_folder_or_a_non_path_is_refused_and_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    import safetensors.torch
    tr = compute_trace(random_model("rnn", 1), random_ids(30))
    with pytest.raises(IsADirectoryError, match="is a folder: give a file name"):
        tr.save(tmp_path)
    with pytest.raises(TypeError, match="path must be a str or path"):
        tr.save(None)
    path = tr.save(tmp_path / "t.safetensors")
    before = path.read_bytes()

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        compute_trace(random_model("lstm", 1), random_ids(30)).save(path)
    assert path.read_bytes() == before                    # a failed save leaves the old file whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors"]


def test_a_trace_of_another_format_or_missing_arrays_says_trace_again(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    good = compute_trace(random_model("lstm", 1), random_ids(60)).save(tmp_path / "good.safetensors")
    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(good))
    header = json.loads(meta["vurn_trace"])
    old = dict(meta, vurn_trace=json.dumps(dict(header, format=0)))
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=old)
    with pytest.raises(ValueError, match=f"old.safetensors has trace format 0, expected {trace_mod.TRACE_FORMAT!r}: "
                                         "trace the text again"):
        Trace.load(tmp_path / "old.safetensors")
    cut = {k: v for k, v in tensors.items() if k != "arrays.layers.0.cell"}
    save_file(cut, str(tmp_path / "cut.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="lacks the arrays layers.0.cell that its header lists: it is damaged"):
        Trace.load(tmp_path / "cut.safetensors")
