"""lab.models against lab.reference, Table 1 widths, and ModelConfig's bad inputs.

The fused (cuDNN-style) modules and the explicit per-step reference must compute the
same thing: the same logits, the same final state and the same top-layer hidden
states, for every kind and depth, from a random non-zero state, with weights large
enough (uniform +-0.5) that the gates are far from their linear regime.
"""
from __future__ import annotations

import functools
import itertools

import pytest
import torch

from lab.corpus import KNOWN, find_corpus_file, load_corpus
from lab.models import KINDS, ROWS, CharRNN, ModelConfig, count_parameters, detach_state, width_for
from lab.reference import GATE_NAMES, reference_forward

PAPER_VOCAB = {"war_and_peace": 82, "linux_kernel": 98}


def random_model(kind: str, layers: int, width: int = 20, vocab: int = 11, seed: int = 0) -> CharRNN:
    gen = torch.Generator().manual_seed(seed)
    model = CharRNN(ModelConfig(kind, layers, width, vocab)).eval()
    model.init_uniform(0.5, generator=gen)
    return model


def random_state(model: CharRNN, batch: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    shape = (model.cfg.layers, batch, model.cfg.width)
    h = torch.rand(shape, generator=gen) * 1.6 - 0.8  # inside tanh's range, like a real state
    if model.cfg.kind == "lstm":
        return h, torch.randn(shape, generator=gen) * 2  # cells are not bounded
    return h


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("kind,layers", list(itertools.product(KINDS, (1, 2, 3))))
def test_fused_model_matches_reference(kind, layers):
    model = random_model(kind, layers)
    batch, steps = 3, 30
    x = torch.randint(0, model.cfg.vocab_size, (batch, steps), generator=torch.Generator().manual_seed(2))
    state = random_state(model, batch)

    with torch.no_grad():
        logits, final = model(x, state)
        onehot = torch.nn.functional.one_hot(x, model.cfg.vocab_size).float()
        top_hidden, _ = model.rnn(onehot, state)                              # (B, T, H)
    ref = reference_forward(model, x, state)

    assert logits.shape == ref["logits"].shape == (batch, steps, model.cfg.vocab_size)
    torch.testing.assert_close(ref["logits"], logits, atol=1e-5, rtol=0)
    for got, want in zip(as_tuple(ref["final_state"]), as_tuple(final), strict=True):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(ref[f"layers.{layers - 1}.hidden"], top_hidden, atol=1e-5, rtol=0)
    # the weights drive the states well away from zero, so agreement is no accident of tiny values
    assert top_hidden.abs().max() > 0.5
    # the reference starts from the given state, not from zeros
    zero_ref = reference_forward(model, x)
    assert not torch.allclose(zero_ref["logits"][:, 0], ref["logits"][:, 0], atol=1e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_reference_exposes_every_layer_and_gate(kind):
    model = random_model(kind, 2, width=6, vocab=5)
    out = reference_forward(model, torch.tensor([[1, 2, 3, 4]]))
    for layer in range(2):
        assert out[f"layers.{layer}.hidden"].shape == (1, 4, 6)
        for gate in GATE_NAMES[kind]:
            g = out[f"layers.{layer}.gates.{gate}"]
            assert g.shape == (1, 4, 6)
            lo, hi = (-1, 1) if gate == "candidate" else (0, 1)
            assert lo <= g.min() and g.max() <= hi
        assert (f"layers.{layer}.cell" in out) == (kind == "lstm")


def test_lstm_reference_gates_follow_the_cell_equation():
    model = random_model("lstm", 1, width=7, vocab=5)
    out = reference_forward(model, torch.tensor([[0, 1, 2, 3, 4, 0]]))
    i, f, o, g = (out[f"layers.0.gates.{n}"] for n in ("input", "forget", "output", "candidate"))
    c, h = out["layers.0.cell"], out["layers.0.hidden"]
    c_prev = torch.cat([torch.zeros_like(c[:, :1]), c[:, :-1]], 1)
    torch.testing.assert_close(c, f * c_prev + i * g)
    torch.testing.assert_close(h, o * torch.tanh(c))


def test_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig("lstm", 2, 16, 7, dropout=0.5))
    x = torch.randint(0, 7, (2, 10))
    model.eval()
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(x)
    assert torch.equal(a, b)
    model.train()
    with torch.no_grad():
        c, _ = model(x)
    assert not torch.allclose(a, c)


def test_detach_state_cuts_the_graph():
    model = CharRNN(ModelConfig("lstm", 1, 4, 3))
    _, state = model(torch.tensor([[0, 1, 2]]))
    assert all(s.requires_grad for s in state)
    assert not any(s.requires_grad for s in detach_state(state))
    gru = CharRNN(ModelConfig("gru", 1, 4, 3))
    _, h = gru(torch.tensor([[0, 1, 2]]))
    assert h.requires_grad and not detach_state(h).requires_grad


# -- Table 1 widths ------------------------------------------------------------------------------

@functools.lru_cache
def counted_vocab_sizes() -> dict[str, int]:
    """The vocabulary sizes counted from the corpora found here ($VURN_DATA, the cache)."""
    sizes = {}
    for name in KNOWN:
        path = find_corpus_file(name)
        if path is not None:
            sizes[name] = len(load_corpus(name).vocab)
    return sizes


def corpus_vocab_sizes() -> dict[str, int]:
    """The paper corpora's vocabulary sizes: counted where the texts are found, else the known ones."""
    return {**PAPER_VOCAB, **counted_vocab_sizes()}


def test_corpus_vocab_sizes_are_the_known_ones():
    counted = counted_vocab_sizes()
    if not counted:
        pytest.skip("no corpus found (set VURN_DATA): nothing to count the vocabularies of")
    assert counted == {name: PAPER_VOCAB[name] for name in counted}


@pytest.mark.parametrize("corpus", sorted(PAPER_VOCAB))
def test_table1_widths_match_the_row_lstm_size(corpus):
    vocab = corpus_vocab_sizes()[corpus]
    lines = [f"{corpus} (vocabulary {vocab}): width / parameters (ratio to the row's LSTM1)"]
    worst = 0.0
    for row in ROWS:
        target = count_parameters(ModelConfig("lstm", 1, row, vocab))
        cells = []
        for kind, layers in itertools.product(KINDS, (1, 2, 3)):
            width = width_for(kind, layers, row, vocab)
            cfg = ModelConfig(kind, layers, width, vocab)
            params = count_parameters(cfg)
            assert params == sum(p.numel() for p in CharRNN(cfg).parameters()), cfg
            ratio = params / target
            worst = max(worst, abs(ratio - 1))
            assert abs(ratio - 1) <= 0.02, f"{kind}{layers} row {row}: {params} vs {target}"
            # it is the closest width: one wider or narrower is no closer to the target
            for other in (width - 1, width + 1):
                assert abs(count_parameters(ModelConfig(kind, layers, other, vocab)) - target) >= abs(params - target)
            cells.append(f"{kind}{layers} {width:4d}/{params:9,d} ({ratio:.4f})")
        lines.append(f"  row {row:3d}: LSTM1 {target:,d} params")
        lines.extend("    " + "  ".join(cells[k:k + 3]) for k in range(0, 9, 3))
    assert width_for("lstm", 1, 512, vocab) == 512
    lines.append(f"  worst deviation {worst:.4%}")
    print("\n" + "\n".join(lines))  # shown with pytest -s


def test_width_for_rejects_rows_outside_table1():
    with pytest.raises(ValueError, match=r"row must be one of the paper's rows \(64, 128, 256, 512\), got 100"):
        width_for("lstm", 1, 100, 82)


def test_count_parameters_matches_real_modules_on_odd_shapes():
    for kind, layers, width, vocab in [("rnn", 3, 1, 1), ("gru", 2, 13, 97), ("lstm", 3, 5, 2)]:
        cfg = ModelConfig(kind, layers, width, vocab)
        assert count_parameters(cfg) == sum(p.numel() for p in CharRNN(cfg).parameters())


# -- ModelConfig ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    ({"kind": "transformer"}, r"unknown model kind 'transformer': choose one of rnn, lstm, gru"),
    ({"kind": "LSTM"}, r"unknown model kind 'LSTM'"),
    ({"layers": 0}, r"layers must be 1, 2 or 3 .*got 0"),
    ({"layers": 4}, r"layers must be 1, 2 or 3 .*got 4"),
    ({"dropout": -0.1}, r"dropout must be in \[0, 1\), got -0.1"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    ({"width": 0}, r"width and vocab_size must be positive"),
    ({"vocab_size": 0}, r"width and vocab_size must be positive"),
])
def test_model_config_rejects_bad_inputs(kwargs, message):
    args = {"kind": "lstm", "layers": 1, "width": 8, "vocab_size": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        ModelConfig(**args)


def test_model_config_round_trips_and_refuses_unknown_keys():
    cfg = ModelConfig("gru", 2, 30, 12, 0.25)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown model config keys: \['heads'\]"):
        ModelConfig.from_dict({**cfg.to_dict(), "heads": 4})


