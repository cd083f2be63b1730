"""lab.session: loading shipped models and checkpoints, tracing texts and corpus slices,
predict, sample, interventions, and a clear error for each kind of bad input.

The shipped models need no corpus for most of this; the tests that trace a slice of War
and Peace need the corpus under $VURN_DATA (or in the cache) and are skipped without it.
A tiny checkpoint is trained here, on a toy corpus. Everything runs with one torch thread.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lab.checkpoint import CheckpointError, load_checkpoint
from lab.corpus import Corpus, CorpusError, find_corpus_file
from lab.models import CharRNN, ModelConfig
from lab.reference import reference_forward
from lab.sample import next_char_probs
from lab.sample import sample as lab_sample
from lab.session import InterventionResult, Session
from lab.trace import Trace, compute_trace
from lab.train import TrainConfig, train
from tests import toy

WORDS = "the quick brown fox jumps over a lazy dog ( softly ) on hills , and ; 1 2 3 .".split()
TOY_TEXT_CHARS = 3005


def toy_text(n: int, seed: int = 0) -> str:
    return toy.toy_text(n, seed, WORDS)


@pytest.fixture(scope="module")
def toy_corpus() -> Corpus:
    return Corpus.from_text("toy", toy_text(TOY_TEXT_CHARS))


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, toy_corpus):
    """A run folder with a tiny 2-layer LSTM trained one epoch on the toy corpus."""
    run = tmp_path_factory.mktemp("toy") / "run"
    before = torch.get_num_threads()   # module fixtures start before the autouse one_thread
    torch.set_num_threads(1)
    try:
        cfg = TrainConfig(corpus="toy", kind="lstm", layers=2, width=16, epochs=1, batch=4, seq_len=10, seed=3)
        train(cfg, run, corpus=toy_corpus, device="cpu", progress=False)
    finally:
        torch.set_num_threads(before)
    return run


@pytest.fixture(scope="module")
def wp() -> Session:
    return Session.load("war_and_peace_lstm", device="cpu")


@pytest.fixture(scope="module")
def wp_with_corpus(wp) -> Session:
    if find_corpus_file("war_and_peace") is None:
        pytest.skip("war_and_peace.txt is not in $VURN_DATA or the cache")
    wp.corpus  # noqa: B018  (loads and checks it once for the module)
    return wp


def random_session(kind: str = "lstm", layers: int = 2, width: int = 16, vocab: str = "abcdefgh \n",
                   seed: int = 0) -> Session:
    model = CharRNN(ModelConfig(kind, layers, width, len(vocab)))
    model.init_uniform(0.3, generator=torch.Generator().manual_seed(seed))
    return Session(model, {"vocab": vocab}, device="cpu", name=f"random-{kind}")


TEXT = "abc def\nhead bad face cafe\nfed a bee a dab he fade " * 3


# -- loading --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, corpus, text", [
    ("war_and_peace_lstm", "war_and_peace", "Prince Andrew said nothing."),
    ("linux_kernel_lstm", "linux_kernel", "static int foo(void)\n{\n\treturn 0;\n}\n"),
])
def test_load_shipped_model_by_name(name, corpus, text):
    s = Session.load(name, device="cpu")
    assert s.name == name and s.meta["corpus"] == corpus
    assert s.model.cfg.kind == "lstm" and s.model.cfg.layers == 2
    assert len(s.vocab) == s.model.cfg.vocab_size
    assert s.device == torch.device("cpu") and not s.model.training
    assert name in repr(s) and "LSTM 2x" in repr(s)
    tr = s.trace(text)
    assert isinstance(tr, Trace) and tr.text == text
    assert tr["layers.1.cell"].shape == (len(text), s.model.cfg.width)
    assert tr["layers.1.cell"].dtype == np.float16
    assert tr.info["model"] == name


def test_load_unknown_name_lists_the_shipped_models():
    shipped = r"no checkpoint 'war_and_peace_gru'.*linux_kernel_lstm.*war_and_peace_lstm"
    with pytest.raises(CheckpointError, match=shipped):
        Session.load("war_and_peace_gru")
    with pytest.raises(CheckpointError, match="does not exist"):
        Session.load("/nowhere/model.safetensors")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_load_on_a_missing_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        Session.load("war_and_peace_lstm", device="cuda")


def test_load_checkpoint_by_path_and_run_folder(toy_run, toy_corpus):
    tensors, meta = load_checkpoint(toy_run / "best.safetensors")
    for where in (toy_run / "best.safetensors", str(toy_run / "best.safetensors"), toy_run):
        s = Session.load(where, device="cpu")
        assert s.vocab == toy_corpus.vocab and s.meta["corpus"] == "toy"
        for name, value in s.model.state_dict().items():
            torch.testing.assert_close(value, tensors[name], rtol=0, atol=0)
    text = toy_corpus.split("val")[:200]
    tr = s.trace(text, dtype=torch.float32)
    ref = reference_forward(s.model, s.encode(text)[None])
    for key in ("layers.0.cell", "layers.1.hidden", "layers.1.gates.forget", "logits"):
        np.testing.assert_allclose(tr[key], ref[key][0].numpy(), atol=1e-5, err_msg=key)


def test_checkpoint_with_another_corpus_is_refused_naming_both(toy_run, toy_corpus):
    same_chars = Corpus.from_text("other", toy_text(TOY_TEXT_CHARS, seed=9), vocab=toy_corpus.vocab)
    with pytest.raises(CheckpointError, match=r"trained on corpus 'toy'.*corpus 'other'"):
        Session.load(toy_run, corpus=same_chars)
    with pytest.raises(CheckpointError, match=r"trained on corpus 'toy'.*corpus 'shouting'"):
        Session.load(toy_run, corpus=Corpus.from_text("shouting", toy_text(500).upper()))
    with pytest.raises(CheckpointError, match=r"trained on corpus 'war_and_peace'.*corpus 'toy'"):
        Session.load("war_and_peace_lstm", corpus=toy_corpus)
    assert Session.load(toy_run, corpus=toy_corpus, device="cpu").corpus is toy_corpus


def test_unknown_corpus_says_how_to_give_it(toy_run):
    s = Session.load(toy_run, device="cpu")
    with pytest.raises(CorpusError, match=r"corpus file 'toy'.*not found.*pass corpus=Corpus.from_file"):
        s.trace(split="test", length=10)


def test_a_model_trained_on_a_text_file_finds_it_from_anywhere(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "poem.txt").write_text(toy_text(3000))
    monkeypatch.chdir(tmp_path)                     # trained on a relative path...
    train(TrainConfig(corpus="poem.txt", kind="rnn", width=8, epochs=1, batch=4, seq_len=10), "run",
          device="cpu", progress=False)
    monkeypatch.chdir(tmp_path / "elsewhere")       # ...and opened from another folder
    s = Session.load(tmp_path / "run", device="cpu")
    assert s.corpus.text == (tmp_path / "poem.txt").read_text() and s.corpus.name == "poem"
    assert s.trace(split="val", length=20).text == s.corpus.split("val")[:20]


# -- tracing texts and corpus slices ----------------------------------------------------------

def test_trace_of_a_split_slice(toy_run, toy_corpus):
    s = Session.load(toy_run, corpus=toy_corpus, device="cpu")
    test = toy_corpus.split("test")
    tr = s.trace(split="test", start=10, length=100, dtype=torch.float32)
    assert tr.text == test[10:110] and tr.info["split"] == "test" and tr.info["start"] == 10
    # the character after the slice is known, so the last position has a loss too
    assert np.isfinite(tr["loss"]).all() and np.isfinite(tr["prob"]).all()
    whole = s.trace(test[10:111], dtype=torch.float32)
    np.testing.assert_allclose(tr["loss"], whole["loss"][:100], atol=1e-5)
    np.testing.assert_allclose(tr["prob"], np.exp(-tr["loss"]), rtol=1e-5)
    # at the end of the split nothing follows
    end = s.trace(split="test", start=len(test) - 20, dtype=torch.float32)
    assert end.text == test[-20:] and np.isnan(end["loss"][-1]) and np.isfinite(end["loss"][:-1]).all()
    with pytest.raises(IndexError, match=rf"start {len(test)} is outside the test split \(0\.\.{len(test) - 1}\)"):
        s.trace(split="test", start=len(test))
    with pytest.raises(CorpusError, match="unknown split 'dev'"):
        s.trace(split="dev")


def test_trace_of_war_and_peace_test_split(wp_with_corpus):
    s = wp_with_corpus
    tr = s.trace(split="test", length=3000)
    assert tr.text == s.corpus.split("test")[:3000] and len(tr.ids) == 3000
    assert tr["layers.1.cell"].shape == (3000, 307) and tr["logits"].shape == (3000, len(s.vocab))
    prob, loss = tr["prob"], tr["loss"]
    assert np.isfinite(prob).all()                    # the 3001st character is known
    assert ((prob > 0) & (prob <= 1)).all()
    np.testing.assert_allclose(loss, -np.log(prob), rtol=1e-4, atol=1e-6)
    assert 0.5 < loss.mean() < 2.0                    # the model card: 1.16 nats/char on test
    assert tr.seam_deviation <= 1e-4
    # the model reads text: most characters are among its top 5 guesses
    hit = (tr["topk.ids"] == np.append(tr.ids[1:].numpy(), -1)[:, None]).any(1)
    assert hit.mean() > 0.8


def test_bad_text_is_a_clear_error(wp):
    with pytest.raises(CorpusError, match=r"2 character\(s\) are not in this model's vocabulary: ") as err:
        wp.trace("Prince ж Andrew € and Prince ж")
    assert "'€'" in str(err.value) and "'ж'" in str(err.value)
    with pytest.raises(ValueError, match="empty"):
        wp.trace("")
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        wp.trace(b"Prince")
    with pytest.raises(ValueError, match="either text or split"):
        wp.trace("Prince", split="test")
    with pytest.raises(ValueError, match="give a text to trace"):
        wp.trace()


def test_missing_layer_or_unit_in_a_session_trace(wp):
    tr = wp.trace("Natasha laughed.")
    with pytest.raises(KeyError, match=r"layers\.9\.cell.*2-layer LSTM.*keys: .*layers\.1\.cell"):
        tr["layers.9.cell"]
    with pytest.raises(IndexError, match=r"layer 9 does not exist.*layers 0\.\.1"):
        tr.unit(9, 0)
    with pytest.raises(IndexError, match=r"unit 307 does not exist.*units 0\.\.306"):
        tr.unit(1, 307)


def test_session_trace_remembers_a_grown_burn_in():
    s = random_session("lstm", 1, width=16)
    with torch.no_grad():
        s.model.rnn.bias_ih_l0[16:32] = 3.0           # a long memory: 512 characters are too few
    text = ("abc def head bad face cafe\n" * 1000)[:20000]
    first = s.trace(text, dtype=torch.float32)
    assert first.info["streams"] > 1 and first.info["burn_in"] > 512
    assert first.info["probes"] + first.info["attempts"] > 2   # it had to grow the burn-in
    again = s.trace(text, dtype=torch.float32)       # starts where the first ended: no growing
    assert again.info["burn_in"] == first.info["burn_in"] and again.info["attempts"] == 1
    assert again.info["probes"] <= 1
    assert again.seam_deviation <= 1e-4


# -- predict and sample -----------------------------------------------------------------------

def test_predict_top_k(wp):
    top = wp.predict("Prince Andre")
    assert len(top) == 5
    chars, probs = zip(*top)
    assert chars[0] == "w" and probs[0] > 0.9          # Prince Andrew
    assert all(isinstance(c, str) and len(c) == 1 for c in chars) and len(set(chars)) == 5
    assert list(probs) == sorted(probs, reverse=True)
    assert 0 < sum(probs) <= 1 + 1e-6


def test_predict_is_the_softmax_of_the_last_logits():
    s = random_session()
    ref = reference_forward(s.model, s.encode(TEXT)[None])
    want = torch.softmax(ref["logits"][0, -1], -1)
    top = s.predict(TEXT, top_k=3)
    values, indices = want.topk(3)
    assert [c for c, _ in top] == [s.vocab[i] for i in indices]
    np.testing.assert_allclose([p for _, p in top], values.numpy(), atol=1e-6)
    everything = s.predict(TEXT, top_k=100)            # more than the vocabulary: all of it
    assert len(everything) == len(s.vocab)
    assert sum(p for _, p in everything) == pytest.approx(1, abs=1e-5)
    with pytest.raises(CorpusError, match="'Z'"):
        s.predict("abZ")


def test_sample_is_repeatable_with_a_seed():
    s = random_session()
    a = s.sample(80, prime="abc ", temperature=1.0, seed=7)
    assert len(a) == 80 and set(a) <= set(s.vocab)
    assert s.sample(80, prime="abc ", temperature=1.0, seed=7) == a
    assert s.sample(80, prime="abc ", temperature=1.0, seed=8) != a
    assert s.sample(80, prime="abc ", temperature=0.5, seed=7) != a
    # without a seed, two samples differ
    assert s.sample(80, prime="abc ") != s.sample(80, prime="abc ")


def test_sample_at_low_temperature_is_greedy():
    s = random_session(seed=2)
    text = "bad "
    for _ in range(15):
        text += s.predict(text, top_k=1)[0][0]
    assert s.sample(15, prime="bad ", temperature=1e-4, seed=0) == text[4:]


def test_sample_validates_prime_and_temperature(wp):
    with pytest.raises(CorpusError, match="'ж'"):
        wp.sample(10, prime="Pierre ж")
    with pytest.raises(ValueError, match="prime"):
        wp.sample(10, prime="")
    for t in (0, -1.0):
        with pytest.raises(ValueError, match="temperature must be positive"):
            wp.sample(10, prime="The ", temperature=t)


# -- interventions ----------------------------------------------------------------------------

def test_scale_by_one_changes_nothing():
    s = random_session()
    r = s.intervene(TEXT, [(0, 2), (1, 5)], mode="scale", value=1.0, from_step=0, sample_n=60)
    assert isinstance(r, InterventionResult) and r.text == TEXT
    n = len(TEXT)
    assert r.loss_before.shape == r.loss_after.shape == r.loss_change.shape == (n,)
    assert (r.loss_change[:-1] == 0).all() and np.isnan(r.loss_change[-1])
    assert r.sample_after == r.sample_before and len(r.sample_before) == 60
    # the sample before is what sample() gives after the text, with the same seed
    assert r.sample_before == s.sample(60, prime=TEXT, seed=0)
    assert "mean loss change +0.0000" in repr(r)


def test_intervention_samples_continue_the_text_like_sample(wp):
    text = "The old prince "
    r = wp.intervene(text, [(1, 5)], mode="scale", value=1.0, sample_n=60, seed=4)
    assert r.sample_before == r.sample_after == wp.sample(60, prime=text, seed=4)
    assert (r.loss_change[:-1] == 0).all()


def test_loss_before_is_the_plain_trace():
    s = random_session()
    r = s.intervene(TEXT, [(1, 5)], value=3.0, from_step=10, sample_n=5)
    np.testing.assert_allclose(r.loss_before, s.trace(TEXT, dtype=torch.float32)["loss"], atol=1e-5)
    assert np.isnan(r.loss_before[-1]) and np.isnan(r.loss_after[-1])


@pytest.mark.parametrize("what", ["cell", "hidden"])
def test_clamp_changes_nothing_before_from_step_and_something_after(what):
    s = random_session()
    k = 40
    r = s.intervene(TEXT, [(1, 5), (1, 9)], what=what, mode="clamp", value=0.9, from_step=k, sample_n=100)
    # the loss at t is about the character after t, read from the state at t: unchanged before k
    assert (r.loss_change[:k] == 0).all()
    assert (np.abs(r.loss_change[k:-1]) > 0).any()
    assert r.sample_after != r.sample_before


def test_clamped_cell_holds_its_value_from_from_step():
    s = random_session()
    ids, k = s.encode(TEXT), 25
    edit = s._editor([(1, 5), (0, 3)], "cell", "clamp", 0.75, k)
    plain = compute_trace(s.model, ids, dtype=torch.float32, method="loop", streams=1)
    tr = compute_trace(s.model, ids, dtype=torch.float32, method="loop", edit=edit)
    assert (tr["layers.1.cell"][k:, 5] == np.float32(0.75)).all()
    assert (tr["layers.0.cell"][k:, 3] == np.float32(0.75)).all()
    for key in plain:
        if key.startswith("layers"):
            np.testing.assert_array_equal(tr[key][:k], plain[key][:k], err_msg=key)
    others = [u for u in range(16) if u != 5]
    assert not np.array_equal(tr["layers.1.cell"][k:, others], plain["layers.1.cell"][k:, others])
    # zero: the same as clamping to 0
    zero = compute_trace(s.model, ids, dtype=torch.float32, edit=s._editor([(1, 5)], "cell", "zero", None, k))
    assert (zero["layers.1.cell"][k:, 5] == 0).all()
    # scale: each step's new cell is scaled
    half = compute_trace(s.model, ids, dtype=torch.float32, edit=s._editor([(1, 5)], "cell", "scale", 0.5, k))
    f, i, g = (half[f"layers.1.gates.{n}"][:, 5] for n in ("forget", "input", "candidate"))
    c = half["layers.1.cell"][:, 5]
    np.testing.assert_allclose(c[k:], 0.5 * (f[k:] * c[k - 1:-1] + i[k:] * g[k:]), rtol=1e-5, atol=1e-7)


def test_edit_from_a_step_after_the_text_changes_only_the_sample_from_there():
    s = random_session()
    n = len(TEXT)
    r = s.intervene(TEXT, [(1, 5), (1, 9), (0, 1)], what="hidden", value=0.95, from_step=n + 5, sample_n=80)
    assert (r.loss_change[:-1] == 0).all()
    # sample character j is drawn from the state at step n - 1 + j: the first six are untouched
    assert r.sample_after[:6] == r.sample_before[:6]
    assert r.sample_after != r.sample_before


@pytest.mark.parametrize("what, mode, value", [("cell", "clamp", 0.9), ("hidden", "scale", -2.0),
                                               ("cell", "zero", None)])
def test_intervention_equals_a_per_step_reference_with_the_edit(what, mode, value):
    # the edit written out by hand on lab.reference's LSTM step: from step k on, the edited
    # state is what the next step and the prediction read
    from lab.reference import lstm_step
    s = random_session()
    ids, k, units = s.encode(TEXT), 17, {1: [5, 9], 0: [3]}
    m, cfg = s.model, s.model.cfg
    x = torch.nn.functional.one_hot(ids, cfg.vocab_size).float()[None]
    h = [torch.zeros(1, cfg.width) for _ in range(cfg.layers)]
    c = [torch.zeros(1, cfg.width) for _ in range(cfg.layers)]
    losses = []
    with torch.no_grad():
        for t in range(len(ids)):
            inp = x[:, t]
            for layer in range(cfg.layers):
                w = [getattr(m.rnn, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                h[layer], c[layer], gates = lstm_step(inp, h[layer], c[layer], *w)
                if t >= k and layer in units:
                    state = c if what == "cell" else h
                    state[layer] = state[layer].clone()
                    u = units[layer]
                    state[layer][:, u] = (value if mode == "clamp" else
                                          state[layer][:, u] * value if mode == "scale" else 0.0)
                    if what == "cell":   # h is read from the edited cell
                        h[layer] = gates["output"] * torch.tanh(c[layer])
                inp = h[layer]
            if t + 1 < len(ids):
                losses.append(float(-torch.log_softmax(m.head(inp), -1)[0, ids[t + 1]]))
    pairs = [(layer, u) for layer, us in units.items() for u in us]
    r = s.intervene(TEXT, pairs, what=what, mode=mode, value=value, from_step=k, sample_n=0)
    np.testing.assert_allclose(r.loss_after[:-1], losses, atol=1e-5)
    assert abs(r.loss_change[k]) > 0 and (r.loss_change[:k] == 0).all()    # from step k exactly, not k + 1
    assert r.reached == len(TEXT) - 1 - k
    assert r.mean_change == pytest.approx(np.mean(r.loss_change[k:-1]))
    assert f"over the {r.reached} predictions from step {k}" in repr(r)


def test_an_edit_after_the_text_says_so_instead_of_a_mean():
    s = random_session()
    r = s.intervene(TEXT, [(1, 5)], value=0.9, from_step=len(TEXT) - 1, sample_n=10)
    assert r.reached == 0 and np.isnan(r.mean_change)
    assert "after the text's last prediction: compare sample_before and sample_after" in repr(r)


def test_zero_is_scale_by_zero():
    s = random_session()
    a = s.intervene(TEXT, [(0, 4)], what="hidden", mode="zero", from_step=7, sample_n=30)
    b = s.intervene(TEXT, [(0, 4)], what="hidden", mode="scale", value=0.0, from_step=7, sample_n=30)
    np.testing.assert_array_equal(a.loss_after, b.loss_after)
    assert a.sample_after == b.sample_after


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_models_without_a_cell(kind):
    s = random_session(kind)
    with pytest.raises(ValueError, match=rf"a {kind.upper()} has no cell state: use what='hidden'"):
        s.intervene(TEXT, [(0, 1)], what="cell")
    r = s.intervene(TEXT, [(1, 2)], what="hidden", value=-0.5, from_step=20, sample_n=20)
    assert (r.loss_change[:20] == 0).all() and (r.loss_change[20:-1] != 0).any()
    tr = compute_trace(s.model, s.encode(TEXT), dtype=torch.float32,
                       edit=s._editor([(1, 2)], "hidden", "clamp", -0.5, 20))
    assert (tr["layers.1.hidden"][20:, 2] == np.float32(-0.5)).all()


def test_bad_interventions_are_clear_errors():
    s = random_session()   # 2 layers of 16
    with pytest.raises(ValueError, match="the vocabulary has 3 characters but the model reads 5"):
        Session(CharRNN(ModelConfig("lstm", 1, 8, 5)), {"vocab": "abc"}, device="cpu")
    with pytest.raises(TypeError, match="meta must be a dict with the model's 'vocab'"):
        Session(CharRNN(ModelConfig("lstm", 1, 8, 5)), "abcde", device="cpu")
    with pytest.raises(IndexError, match=r"layer 2 does not exist.*layers 0\.\.1"):
        s.intervene(TEXT, [(2, 0)])
    with pytest.raises(IndexError, match=r"layer -1 does not exist"):
        s.intervene(TEXT, [(-1, 0)])
    with pytest.raises(IndexError, match=r"unit 16 does not exist.*units 0\.\.15"):
        s.intervene(TEXT, [(0, 3), (1, 16)])
    with pytest.raises(ValueError, match=r"what must be 'cell' or 'hidden', got 'forget'"):
        s.intervene(TEXT, [(0, 1)], what="forget")
    with pytest.raises(ValueError, match=r"mode must be clamp, zero or scale, got 'add'"):
        s.intervene(TEXT, [(0, 1)], mode="add")
    with pytest.raises(TypeError, match=r"units must be a list of \(layer, unit\) pairs"):
        s.intervene(TEXT, (1, 5))
    with pytest.raises(TypeError, match=r"units must be a list of \(layer, unit\) pairs"):
        s.intervene(TEXT, [])
    with pytest.raises(CorpusError, match="'Z'"):
        s.intervene("abZ", [(0, 1)])
    with pytest.raises(ValueError, match=r"temperature must be positive, got 0"):
        s.intervene(TEXT, [(0, 1)], temperature=0)
    with pytest.raises(ValueError, match=r"sample_n must be 0 \(no sample\) or more, got -1"):
        s.intervene(TEXT, [(0, 1)], sample_n=-1)


# -- bad input at the API boundary: a clear error naming the argument, never a deep one -----------

def tiny_corpus_session() -> Session:
    """A random model with a small corpus of its own (no files): for split slices."""
    c = Corpus.from_text("tiny", TEXT * 4)
    meta = {"vocab": "".join(c.vocab), "corpus": c.name, "corpus_sha256": c.sha256}
    model = CharRNN(ModelConfig("lstm", 1, 8, len(c.vocab)))
    model.init_uniform(0.3, generator=torch.Generator().manual_seed(0))
    return Session(model, meta, device="cpu", corpus=c, name="tiny")


def greedy(s: Session, prime: str, n: int) -> str:
    text = prime
    for _ in range(n):
        text += s.predict(text, top_k=1)[0][0]
    return text[len(prime):]


def test_intervene_units_must_be_integers():
    s = random_session()
    for units, which in (([(1.7, 5)], r"the layer in \(1\.7, 5\) is float 1\.7"),
                         ([(1, 2.5)], r"the unit in \(1, 2\.5\) is float 2\.5"),
                         ([(0, 1), (True, 2)], r"the layer in \(True, 2\) is bool True"),
                         ([(1, "5")], r"the unit in \(1, '5'\) is str '5'")):
        with pytest.raises(TypeError, match=r"units must be \(layer, unit\) pairs of integers.*" + which):
            s.intervene(TEXT, units, sample_n=0)
    # numpy integers are integers: the same edit as plain ints
    a = s.intervene(TEXT, [(np.int64(1), np.int32(5))], value=0.9, sample_n=10)
    b = s.intervene(TEXT, [(1, 5)], value=0.9, sample_n=10)
    np.testing.assert_array_equal(a.loss_after, b.loss_after)
    assert a.sample_after == b.sample_after and (np.abs(a.loss_change[:-1]) > 0).any()


def test_intervene_value_must_be_a_finite_number():
    s = random_session()
    for mode in ("clamp", "scale"):
        for bad in (float("nan"), float("inf"), -np.inf):
            with pytest.raises(ValueError, match=r"value must be a finite number \(the clamp value or the scale "
                                                 r"factor\), got (nan|inf|-inf)"):
                s.intervene(TEXT, [(1, 5)], mode=mode, value=bad, sample_n=0)
    for bad in ("1", [1.0]):
        with pytest.raises(TypeError, match=rf"value must be a number .*got {type(bad).__name__}"):
            s.intervene(TEXT, [(1, 5)], value=bad, sample_n=0)
    # clamp and scale need a value (a forgotten one is not silently 0, an ablation); zero takes none
    with pytest.raises(TypeError, match=r"mode='clamp' needs a value: the value to hold the units at"):
        s.intervene(TEXT, [(1, 5)], sample_n=0)
    with pytest.raises(TypeError, match=r"mode='scale' needs a value: the factor to multiply the units by"):
        s.intervene(TEXT, [(1, 5)], mode="scale", sample_n=0)
    with pytest.raises(ValueError, match=r"mode='zero' sets the units to 0 and takes no value \(got 3.0\)"):
        s.intervene(TEXT, [(1, 5)], mode="zero", value=3.0, sample_n=0)
    r = s.intervene(TEXT, [(1, 5)], value=np.float32(0.5), sample_n=0)    # numpy numbers are numbers
    assert np.isfinite(r.loss_after[:-1]).all()


def test_intervene_seed_none_is_a_fresh_seed_shared_by_both_samples():
    s = random_session()
    one = s.intervene(TEXT, [(1, 5)], mode="scale", value=1.0, sample_n=60, seed=None)
    two = s.intervene(TEXT, [(1, 5)], mode="scale", value=1.0, sample_n=60, seed=None)
    assert one.sample_before == one.sample_after and len(one.sample_before) == 60   # one seed for both
    assert one.sample_before != two.sample_before                                     # a fresh one each call
    seeded = s.intervene(TEXT, [(1, 5)], value=0.5, sample_n=30, seed=np.int64(4))
    assert seeded.sample_before == s.sample(30, prime=TEXT, seed=4)
    with pytest.raises(TypeError, match=r"seed must be an integer \(or None for a fresh random one\), got str 'abc'"):
        s.intervene(TEXT, [(1, 5)], seed="abc")
    with pytest.raises(ValueError, match=r"seed must be between -2\*\*63 and 2\*\*64 - 1, got 1180591620717411303424"):
        s.intervene(TEXT, [(1, 5)], seed=2**70)


def test_intervene_from_step_must_be_a_step_of_the_text_or_the_sample():
    s = random_session()
    n = len(TEXT)
    with pytest.raises(IndexError, match=r"from_step -3 is negative: steps count from 0"):
        s.intervene(TEXT, [(1, 5)], from_step=-3, sample_n=0)
    with pytest.raises(IndexError, match=rf"from_step {n} is past the last step: the steps are the text's {n} "
                                         rf"characters \(sample_n=0: no sample\), 0\.\.{n - 1}"):
        s.intervene(TEXT, [(1, 5)], value=0.9, from_step=n, sample_n=0)
    with pytest.raises(IndexError, match=rf"from_step {n + 10} is past the last step: .* then the 10 sampled "
                                         rf"ones, 0\.\.{n + 9}"):
        s.intervene(TEXT, [(1, 5)], value=0.9, from_step=n + 10, sample_n=10)
    with pytest.raises(TypeError, match=r"from_step must be an integer, got float 1\.5"):
        s.intervene(TEXT, [(1, 5)], from_step=1.5, sample_n=0)
    with pytest.raises(TypeError, match=r"sample_n must be an integer, got float 2\.0"):
        s.intervene(TEXT, [(1, 5)], sample_n=2.0)
    # the last step of the text, and the last of the sample, are allowed: they change nothing seen
    last = s.intervene(TEXT, [(1, 5)], value=0.9, from_step=n - 1, sample_n=0)
    assert (last.loss_change[:-1] == 0).all()
    end = s.intervene(TEXT, [(1, 5)], value=0.9, from_step=np.int64(n + 9), sample_n=10)
    assert end.sample_after == end.sample_before


def test_trace_start_and_length_apply_only_to_a_split():
    s = tiny_corpus_session()
    with pytest.raises(ValueError, match=r"start=3, length=None given with a text: start and length apply to "
                                         r"split=.*slice it: trace\(text\[a:b\]\)"):
        s.trace(TEXT, start=3)
    with pytest.raises(ValueError, match=r"start=0, length=10 given with a text: start and length apply to split="):
        s.trace(TEXT, length=10)
    assert s.trace(TEXT, start=0).text == TEXT            # the default start is no slice


def test_trace_of_a_split_needs_a_length_that_fits():
    s = tiny_corpus_session()
    test = s.corpus.split("test")
    for bad in (0, -1):
        with pytest.raises(ValueError, match=rf"length must be at least 1 character .*got {bad}"):
            s.trace(split="test", length=bad)
        with pytest.raises(ValueError, match=rf"length must be at least 1 character .*got {bad}"):
            s.split_text("test", 0, bad)
    left = len(test) - 5
    with pytest.raises(IndexError, match=rf"length {left + 1} runs past the end of the test split: {left} characters "
                                         rf"are left from start 5; pass length={left} or less"):
        s.trace(split="test", start=5, length=left + 1)
    with pytest.raises(IndexError, match=rf"{left} characters are left from start 5"):
        s.split_text("test", 5, left + 1)
    assert s.trace(split="test", start=5, length=left).text == test[5:]        # exactly what is left: fine
    assert s.trace(split="test", start=np.int64(5), length=np.int32(3)).text == test[5:8]
    with pytest.raises(TypeError, match=r"start must be an integer, got float 1\.5"):
        s.trace(split="test", start=1.5, length=3)
    with pytest.raises(TypeError, match=r"length must be an integer, got float 1\.5"):
        s.trace(split="test", length=1.5)
    with pytest.raises(TypeError, match=r"length must be an integer, got str '10'"):
        s.split_text("test", 0, "10")


def test_trace_dtype_takes_torch_dtypes_or_their_names():
    s = random_session()
    for dtype, want in ((torch.float16, np.float16), ("float16", np.float16), ("float32", np.float32),
                        ("torch.float32", np.float32), (torch.float32, np.float32), (np.float32, np.float32)):
        tr = s.trace(TEXT, dtype=dtype)
        assert tr["layers.1.cell"].dtype == want and tr.info["dtype"] == np.dtype(want).name
    for bad in ("float64", "half", torch.bfloat16, torch.int64, None, 5):
        with pytest.raises(ValueError, match=r"dtype must be torch\.float16 \(the default.*or torch\.float32 "
                                             r"\(exact\), or their names 'float16' / 'float32'; got "):
            s.trace(TEXT, dtype=bad)
    with pytest.raises(TypeError, match=r"top_k must be an integer, got float 2\.5"):
        s.trace(TEXT, top_k=2.5)


def test_sample_length_must_be_an_integer_of_zero_or_more(capsys):
    s = random_session()
    with pytest.raises(ValueError, match=r"n must be 0 \(no sample\) or more, got -1"):
        s.sample(-1)
    with pytest.raises(TypeError, match=r"n must be an integer, got float 1\.5"):
        s.sample(1.5)
    assert s.sample(0, prime="abc", seed=1) == ""           # like intervene's sample_n=0: no sample
    with pytest.raises(ValueError, match=r"n must be 0 \(no sample\) or more, got -1"):
        lab_sample(s.model, s.vocab, -1, prime="a")
    # the CLI, which calls lab.sample.sample, reports it instead of printing the prime alone
    from lab.__main__ import main as cli_main
    assert cli_main(["sample", "war_and_peace_lstm", "-n", "-1", "--prime", "The ", "--device", "cpu"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "n must be 0 (no sample) or more, got -1" in err


@pytest.mark.parametrize("prime, shown", [(b"abc", "bytes"), (["a", "b"], "list"), (None, "NoneType")])
def test_a_prime_that_is_not_a_str_is_refused_by_name(prime, shown):
    s = random_session()
    with pytest.raises(TypeError, match=f"^prime must be a str, got {shown}$"):
        lab_sample(s.model, s.vocab, 5, prime=prime)
    with pytest.raises(TypeError, match=f"^prime must be a str, got {shown}$"):
        s.sample(5, prime=prime)


@pytest.mark.parametrize("temperature", [1e-40, 1e-300, 5e-324])
def test_a_tiny_temperature_is_greedy(temperature):
    s = random_session(seed=2)
    want = greedy(s, "bad ", 15)
    assert s.sample(15, prime="bad ", temperature=temperature, seed=0) == want
    assert lab_sample(s.model, s.vocab, 15, prime="bad ", temperature=temperature, seed=5) == want
    r = s.intervene("bad ", [(1, 5)], mode="scale", value=1.0, sample_n=15, temperature=temperature)
    assert r.sample_before == r.sample_after == want


def test_next_char_probs_is_the_tempered_softmax():
    logits = torch.tensor([0.5, -1.0, 2.0, 2.0 - 1e-6, -30.0])
    for t in (0.3, 1.0, 2.5):
        np.testing.assert_allclose(next_char_probs(logits, t), torch.softmax(logits.double() / t, -1),
                                   rtol=1e-6, atol=1e-30)
    assert next_char_probs(logits, 1e-300).tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert next_char_probs(logits, 1e-300).dtype == torch.float32


def test_temperature_must_be_a_positive_finite_number():
    s = random_session()
    for bad in (float("inf"), np.inf):
        with pytest.raises(ValueError, match=r"temperature must be finite, got inf"):
            s.sample(10, prime="abc", temperature=bad)
        with pytest.raises(ValueError, match=r"temperature must be finite, got inf"):
            s.intervene(TEXT, [(1, 5)], temperature=bad)
    with pytest.raises(ValueError, match=r"temperature must be positive, got -inf"):
        s.sample(10, temperature=-np.inf)
    with pytest.raises(ValueError, match=r"temperature must be a positive number such as 0\.8, got nan"):
        s.sample(10, temperature=float("nan"))
    for bad, shown in (("0.5", "str '0.5'"), (None, "NoneType None"), (True, "bool True")):
        with pytest.raises(TypeError, match=rf"temperature must be a number such as 0\.8, got {shown}"):
            s.sample(10, temperature=bad)
        with pytest.raises(TypeError, match=rf"temperature must be a number such as 0\.8, got {shown}"):
            s.intervene(TEXT, [(1, 5)], temperature=bad)
    assert s.sample(20, prime="abc", temperature=np.float32(0.5), seed=3) == s.sample(20, prime="abc",
                                                                                       temperature=0.5, seed=3)


def test_sample_seeds_are_integers_in_torchs_range():
    s = random_session()
    a = s.sample(30, prime="abc", seed=7)
    assert s.sample(30, prime="abc", seed=np.int64(7)) == a == s.sample(30, prime="abc", seed=np.uint8(7))
    for edge in (2**64 - 1, -2**63, 0):
        assert len(s.sample(5, seed=edge)) == 5
    for bad, shown in (("abc", "str 'abc'"), (1.5, r"float 1\.5"), (True, "bool True")):
        with pytest.raises(TypeError, match=rf"seed must be an integer \(or None for a fresh random one\), got {shown}"):
            s.sample(10, seed=bad)
    for bad in (2**70, 2**64, -2**63 - 1):
        with pytest.raises(ValueError, match=rf"seed must be between -2\*\*63 and 2\*\*64 - 1, got {bad}"):
            s.sample(10, seed=bad)
        with pytest.raises(ValueError, match=rf"seed must be between -2\*\*63 and 2\*\*64 - 1, got {bad}"):
            lab_sample(s.model, s.vocab, 10, seed=bad)


def test_predict_top_k_must_be_an_integer_of_at_least_one():
    s = random_session()
    for bad in (0, -1):
        with pytest.raises(ValueError, match=rf"top_k must be at least 1, got {bad}"):
            s.predict(TEXT, top_k=bad)
    for bad, shown in ((2.5, r"float 2\.5"), ("3", "str '3'"), (True, "bool True"), (None, "NoneType None")):
        with pytest.raises(TypeError, match=rf"top_k must be an integer, got {shown}"):
            s.predict(TEXT, top_k=bad)
    assert s.predict(TEXT, top_k=np.int64(2)) == s.predict(TEXT, top_k=2)
    assert len(s.predict(TEXT, top_k=10**6)) == len(s.vocab)         # more than the vocabulary: all of it


def test_load_needs_a_name_a_checkpoint_or_a_run_folder():
    wanted = (r"Session\.load needs a shipped model name \(linux_kernel_lstm, war_and_peace_lstm\), "
              r"a checkpoint file \(\.safetensors\) or a run folder, got ")
    for bad, shown in ((None, "NoneType None"), (5, "int 5"), (["war_and_peace_lstm"], r"list \['war_and_peace_lstm'\]")):
        with pytest.raises(TypeError, match=wanted + shown):
            Session.load(bad)
    with pytest.raises(ValueError, match=wanted + "str ''"):
        Session.load("")
