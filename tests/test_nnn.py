"""n-NN baselines (lab.nnn): the model is the paper's dense layer, contexts line up, training learns."""
from __future__ import annotations

import pytest
import torch

from lab.corpus import Corpus
from lab.nnn import NNN, NNNConfig, char_probs, contexts, fit, loss, select_hidden
from tests.toy import toy_text


def test_the_lookup_is_the_dense_layer_over_concatenated_one_hot_vectors():
    torch.manual_seed(0)
    n, V, H = 3, 5, 7
    model = NNN(n, V, H)
    ctx = torch.randint(0, V, (11, n))
    onehot = torch.nn.functional.one_hot(ctx, V).float().reshape(11, n * V)   # [x_{t-3}; x_{t-2}; x_{t-1}]
    dense = torch.tanh(onehot @ model.inp.weight + model.bias)
    expected = model.out(dense)
    assert torch.allclose(model(ctx), expected, atol=1e-6)


def test_contexts_are_the_n_characters_before_each_position():
    ids = torch.arange(10)
    ctx, y = contexts(ids, 3, 5, 8)
    assert ctx.tolist() == [[2, 3, 4], [3, 4, 5], [4, 5, 6]] and y.tolist() == [5, 6, 7]
    assert contexts(ids, 3, 0, 10)[1].tolist() == list(range(3, 10))      # the first 3 have no context
    with pytest.raises(ValueError, match="no position"):
        contexts(ids, 3, 0, 2)
    with pytest.raises(ValueError, match="end 11 is past the text's 10 characters"):
        contexts(ids, 3, 0, 11)        # not silently fewer characters than asked


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="n is the number of context characters"):
        NNNConfig(n=0, hidden=4)
    with pytest.raises(ValueError, match="positive"):
        NNNConfig(n=2, hidden=0)


def test_fit_learns_what_n_characters_determine_and_no_more():
    # "abcd" repeated with the character after "b" random: 1 character of context settles
    # everything except that one, so a 1-NN reaches about log(2)/4 nats per character
    g = torch.Generator().manual_seed(0)
    blocks = [torch.tensor([0, 1, int(torch.randint(2, 4, (1,), generator=g)), 4]) for _ in range(1500)]
    ids = torch.cat(blocks)
    model, log = fit(NNNConfig(n=1, hidden=16, epochs=40, batch=256, lr=1e-2, patience=3), ids[:5000], ids[5000:])
    assert loss(model, ids, 5000, len(ids)) == pytest.approx(torch.log(torch.tensor(2.0)).item() / 4, abs=0.02)
    assert log[0]["val_loss"] > log[-1]["val_loss"]
    p = char_probs(model, ids, 5000, 5008)
    assert p.shape == (8,) and torch.all(p > 0.3)


def test_select_hidden_keeps_the_best_on_validation():
    text = toy_text(6000)
    corpus = Corpus.from_text("toy", text)
    model, rows = select_hidden(2, [2, 32], corpus, epochs=4, batch=200, lr=1e-2)
    assert [r["hidden"] for r in rows] == [2, 32]
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["val_loss"] == min(r["val_loss"] for r in rows)
    assert model.hidden == chosen[0]["hidden"] and chosen[0]["test_loss"] > 0
    assert all(r["test_loss"] != r["test_loss"] for r in rows if not r["chosen"])   # NaN: not tested


def test_bad_training_input_is_named():
    ids = torch.tensor([0, 1, 2, 1] * 20)
    cfg = NNNConfig(n=2, hidden=4, epochs=1, batch=10)
    with pytest.raises(ValueError, match="train_ids is empty"):
        fit(cfg, ids[:0], ids)
    with pytest.raises(ValueError, match="val_ids is empty"):
        fit(cfg, ids, ids[:0])
    with pytest.raises(ValueError, match=r"train_ids has 2 characters: an n-NN with n = 2 needs more than n"):
        fit(cfg, ids[:2], ids)
    with pytest.raises(ValueError, match=r"character ids must lie in 0\.\.1 \(vocab_size 2\); the ids go up to 2"):
        fit(cfg, ids, ids, vocab_size=2)
    with pytest.raises(TypeError, match="train_ids must be a 1-D tensor of character ids"):
        fit(cfg, ids.tolist(), ids)


def test_training_that_diverges_at_once_is_a_clear_error():
    ids = torch.tensor([0, 1, 2, 1] * 40)
    with pytest.raises(ValueError, match="the 1-NN diverged: validation loss (nan|inf) after epoch 1 at lr 1e\\+30; "
                                         "train again with a smaller lr"):
        fit(NNNConfig(n=1, hidden=4, epochs=3, batch=10, lr=1e30), ids[:120], ids[120:])
    with pytest.raises(TypeError, match=r"n must be a whole number, got 1\.5"):
        NNNConfig(n=1.5, hidden=4)
    with pytest.raises(ValueError, match="at least one hidden size"):
        select_hidden(1, [], Corpus.from_text("toy", "abcb" * 50))
