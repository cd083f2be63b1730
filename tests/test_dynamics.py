"""Training dynamics (lab.dynamics): snapshots during training, and their distance to n-NNs."""
from __future__ import annotations

import math

import pytest
import torch

from lab.corpus import Corpus
from lab.dynamics import lstm_log_probs, nnn_log_probs, similarity_over_training, snapshots, symmetric_kl
from lab.nnn import NNNConfig, char_probs, fit
from lab.train import TrainConfig, char_losses, train
from tests.toy import toy_text


def test_symmetric_kl_by_hand():
    p = torch.tensor([[0.25, 0.75]])
    q = torch.tensor([[0.5, 0.5]])
    by_hand = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5) + 0.5 * math.log(0.5 / 0.25) \
        + 0.5 * math.log(0.5 / 0.75)
    assert float(symmetric_kl(p.log(), q.log())) == pytest.approx(by_hand)
    with pytest.raises(ValueError, match="differ in shape"):
        symmetric_kl(p.log(), torch.zeros(1, 3))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    corpus = Corpus.from_text("toy", toy_text(3005))
    cfg = TrainConfig(corpus="toy", kind="lstm", layers=1, width=16, epochs=2, batch=4, seq_len=10, lr=1e-2,
                      snapshot_every=20, seed=1)
    folder = tmp_path_factory.mktemp("dyn") / "run"
    train(cfg, folder, corpus=corpus, device="cpu", progress=False)
    return folder, corpus


def test_snapshots_are_kept_from_the_start_every_n_steps(run):
    folder, _ = run
    steps = [s for s, _ in snapshots(folder)]
    assert steps == [0, 20, 40, 60, 80, 100, 120]      # 60 steps per epoch, 2 epochs
    with pytest.raises(FileNotFoundError, match="--snapshot-every"):
        snapshots(folder / "nowhere")


def test_log_probs_line_up_with_the_scores_they_come_from(run):
    folder, corpus = run
    ids = corpus.split_ids("val")
    nnn, _ = fit(NNNConfig(n=2, hidden=8, epochs=2, batch=100, lr=1e-2), corpus.split_ids("train"), ids)
    logq = nnn_log_probs(nnn, ids)                      # predicts ids[2:] (and one past the end)
    assert torch.allclose(logq[:-1].gather(1, ids[2:, None])[:, 0].exp(), char_probs(nnn, ids, 2, len(ids)))
    from lab.pretrained import load_model
    model, _ = load_model(folder / "best.safetensors")
    logp = lstm_log_probs(model, ids)
    loss = -logp[:-1].gather(1, ids[1:, None]).mean()
    assert float(loss) == pytest.approx(float(char_losses(model, ids, streams=1).mean()), rel=1e-5)


def test_the_lstm_moves_towards_the_n_nns_as_it_learns(run):
    folder, corpus = run
    train_ids, ids = corpus.split_ids("train"), corpus.split_ids("val")
    nnns = {n: fit(NNNConfig(n=n, hidden=32, epochs=15, batch=100, lr=1e-2), train_ids, ids)[0] for n in (1, 3)}
    df = similarity_over_training(folder, nnns, ids, skip=10)
    assert len(df) == 7 * 2 and (df.kl >= 0).all()
    first, last = df[df.step == 0].set_index("n").kl, df[df.step == 120].set_index("n").kl
    assert (last < first).all()
    with pytest.raises(ValueError, match="skip must be at least 2"):
        similarity_over_training(folder, nnns, ids, skip=1)


def test_similarity_over_training_without_n_nns_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"^give at least one n-NN: \{n: model\}$"):
        similarity_over_training(tmp_path, {}, torch.arange(50) % 5, skip=10)
