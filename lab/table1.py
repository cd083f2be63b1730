"""Table 1 (paper §4.1) as measured: the grid beside the paper, its findings tested, a map of the models.

:mod:`lab.grid` trains the 72 models and writes ``results/table1/table1.csv`` (one row per
model) and ``table1_blocks.csv`` (each model's mean test loss in each of the 100
contiguous blocks of the test split). This module reads them:

* :func:`paper_table` and :func:`ours_table`: the paper's layout (rows 64..512 x
  LSTM1..GRU3), the paper's recalled values scaled by :data:`LINE_ENDING` so that they
  compare with ours;
* :func:`findings` and :func:`verdicts`: each of the paper's claims (LSTM and GRU beat
  the RNN; two layers beat one; two against three layers is mixed) tested on every pair
  of models it concerns, with a paired block bootstrap (:func:`paired_difference`);
* :func:`correct_char_probs` and :func:`tsne_map`: the paper's t-SNE of the models, from
  each model's probability of the correct character over the test split (kept, every
  8th position, by :func:`save_vectors`).

    >>> table = pd.DataFrame({"name": ["a-lstm1-64"], "corpus": ["war_and_peace"], "kind": ["lstm"],
    ...                       "layers": [1], "row": [64], "test_loss": [1.5], "status": ["finished"]})
    >>> float(ours_table(table, "war_and_peace").loc[64, "LSTM1"])
    1.5
    >>> round(float(paper_table("war_and_peace").loc[64, "LSTM1"]), 3)     # 1.449 x 1.0194
    1.477
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lab.grid import CORPORA, LAYERS, PAPER, corpus_label, elapsed_minutes  # noqa: F401 (notebook 01 uses it here)
from lab.models import KINDS, ROWS
from lab.results import results_dir

# The paper's War and Peace had CRLF line ends (3,258,246 characters, DESIGN.md); ours has
# LF (3,196,214). The same text carries the same information over fewer characters, so
# the same model's loss per character is this much higher on ours (over our test split
# alone the ratio is 1.0188, not 1.0194: under 0.001 nats apart). Our Linux corpus is
# another kernel version altogether: no factor makes it comparable, only rough.
LINE_ENDING = {"war_and_peace": 3_258_246 / 3_196_214, "linux_kernel": 1.0}
PAPER_ORDER = [(k, n) for k in ("lstm", "rnn", "gru") for n in LAYERS]     # Table 1's column order
COLUMNS = [f"{k.upper()}{n}" for k, n in PAPER_ORDER]
CLAIMS = {
    "gated beat RNN": "LSTM and GRU beat the RNN of the same row and depth",
    "2 layers beat 1": "two layers beat one (same kind and row)",
    "2 vs 3 layers": "two against three layers is mixed (same kind and row)",
}


def _corpus(corpus: str) -> str:
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}: Table 1 has {', '.join(CORPORA)}")
    return corpus


def load_table(path: str | Path | None = None) -> pd.DataFrame:
    """``results/table1/table1.csv`` (or ``path``), as :func:`lab.grid.collect` wrote it.

        >>> load_table("/nonexistent/table1.csv")
        Traceback (most recent call last):
        ...
        FileNotFoundError: no Table 1 results at /nonexistent/table1.csv: train the grid (python -m lab grid run) and collect it (python -m lab grid collect)
    """
    path = Path(path) if path is not None else results_dir() / "table1" / "table1.csv"
    if not path.exists():
        raise FileNotFoundError(f"no Table 1 results at {path}: train the grid (python -m lab grid run) and "
                                "collect it (python -m lab grid collect)")
    return pd.read_csv(path)


def load_blocks(path: str | Path | None = None) -> pd.DataFrame:
    """``results/table1/table1_blocks.csv``: one row per model (index ``name``), one column per block.

        >>> import tempfile; from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "table1_blocks.csv"
        >>> _ = path.write_text("name,0,1,2\\nwar_and_peace-lstm1-64,1.52,1.47,1.49\\n")
        >>> load_blocks(path).loc["war_and_peace-lstm1-64"].tolist()
        [1.52, 1.47, 1.49]
    """
    path = Path(path) if path is not None else results_dir() / "table1" / "table1_blocks.csv"
    if not path.exists():
        raise FileNotFoundError(f"no block losses at {path}: collect the grid again (python -m lab grid collect)")
    return pd.read_csv(path, index_col="name")


def paper_table(corpus: str, adjusted: bool = True) -> pd.DataFrame:
    """The paper's Table 1 for ``corpus`` (recalled, DESIGN.md), times :data:`LINE_ENDING` unless ``adjusted=False``.

        >>> float(paper_table("linux_kernel").loc[512, "LSTM2"]), int(paper_table("war_and_peace").isna().sum().sum())
        (0.84, 3)
    """
    factor = LINE_ENDING[_corpus(corpus)] if adjusted else 1.0
    # lab.grid.PAPER's rows are in Table 1's column order (PAPER_ORDER)
    data = {row: [None if v is None else v * factor for v in PAPER[corpus][row]] for row in ROWS}
    return pd.DataFrame.from_dict(data, orient="index", columns=COLUMNS, dtype=float).rename_axis("row")


def ours_table(table: pd.DataFrame, corpus: str, value: str = "test_loss", finished_only: bool = False) -> pd.DataFrame:
    """Our ``value`` per row and model in the paper's layout; NaN where a model has none (yet).

    ``finished_only`` blanks models whose 50 epochs are not done (their loss is the best so far).

        >>> table = pd.DataFrame({"name": ["a", "b"], "corpus": ["war_and_peace"] * 2, "kind": ["lstm", "gru"],
        ...                       "layers": [1, 2], "row": [64, 128], "test_loss": [1.5, 1.3],
        ...                       "status": ["finished", "stopped"]})
        >>> ours_table(table, "war_and_peace").loc[128].tolist()
        [nan, nan, nan, nan, nan, nan, nan, 1.3, nan]
        >>> float(ours_table(table, "war_and_peace", finished_only=True).loc[128, "GRU2"])
        nan
    """
    want = table[table["corpus"] == corpus_label(_corpus(corpus))]
    if finished_only:
        want = want[want["status"] == "finished"]
    out = pd.DataFrame(np.nan, index=pd.Index(ROWS, name="row"), columns=COLUMNS)
    for r in want.itertuples():
        if r.kind in KINDS and int(r.row) in ROWS and 1 <= int(r.layers) <= 3:
            out.loc[int(r.row), f"{r.kind.upper()}{int(r.layers)}"] = getattr(r, value)
    return out


def side_by_side(table: pd.DataFrame, corpus: str) -> pd.DataFrame:
    """Table 1 as text: each cell "ours (paper)", the paper's value times :data:`LINE_ENDING`;
    ``*`` marks a model whose training is not finished (its best so far), ``-`` one not started.

        >>> t = pd.DataFrame({"name": ["x"], "corpus": ["linux_kernel"], "kind": ["gru"], "layers": [2],
        ...                   "row": [512], "test_loss": [0.9], "status": ["stopped"]})
        >>> side_by_side(t, "linux_kernel").loc[512, "GRU2"], side_by_side(t, "linux_kernel").loc[512, "RNN1"]
        ('0.900* (0.861)', '- (-)')
    """
    ours, paper = ours_table(table, corpus), paper_table(corpus)
    done = ours_table(table, corpus, finished_only=True)
    cell = lambda v, star="": "-" if np.isnan(v) else f"{v:.3f}{star}"
    return pd.DataFrame([[f"{cell(ours.loc[r, c], '' if not np.isnan(done.loc[r, c]) else '*')} "
                          f"({cell(paper.loc[r, c])})" for c in COLUMNS] for r in ROWS],
                        index=pd.Index(ROWS, name="row"), columns=COLUMNS)


def best_against_paper(table: pd.DataFrame, corpus: str = "war_and_peace", kind: str = "lstm") -> pd.Series:
    """Our best finished model of ``kind`` on ``corpus`` against the paper (scaled by :data:`LINE_ENDING`).

    ``gap_cell``: ours minus the paper's value for the same cell (kind, depth, row);
    ``gap_best``: ours minus the paper's best model of that kind on that corpus.

        >>> table = pd.DataFrame({"name": ["wp-lstm1-64", "wp-lstm2-512"], "corpus": ["war_and_peace"] * 2,
        ...                       "kind": ["lstm"] * 2, "layers": [1, 2], "row": [64, 512],
        ...                       "test_loss": [1.50, 1.16], "status": ["finished"] * 2})
        >>> best = best_against_paper(table)
        >>> best["name"], round(best.paper_cell, 4), round(best.gap_cell, 3)   # 1.092 x 1.0194
        ('wp-lstm2-512', 1.1132, 0.047)
    """
    want = table[(table["corpus"] == corpus_label(_corpus(corpus))) & (table["kind"] == kind)
                 & (table["status"] == "finished")]
    if want.empty:
        raise ValueError(f"no finished {kind} on {corpus} in the table yet: train the grid further")
    best = want.loc[want["test_loss"].idxmin()]
    paper = paper_table(corpus)
    cell = paper.loc[int(best["row"]), f"{kind.upper()}{int(best['layers'])}"]
    column = [c for c in paper.columns if c.startswith(kind.upper())]
    top = paper[column].stack().idxmin()                                   # (row, column) of the paper's best
    return pd.Series({"name": best["name"], "test_loss": float(best["test_loss"]), "paper_cell": float(cell),
                      "gap_cell": float(best["test_loss"] - cell), "paper_best": f"{top[1]} row {top[0]}",
                      "paper_best_loss": float(paper.loc[top]), "gap_best": float(best["test_loss"] - paper.loc[top])})


def load_curves(folder: str | Path | None = None) -> pd.DataFrame:
    """Every model's learning curve (``results/table1/curves/NAME.csv``) in one long table.

    Columns: name, corpus, kind, layers, row, epoch, step, train_loss, val_loss.

        >>> import tempfile; from pathlib import Path
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "war_and_peace-gru2-128.csv").write_text("epoch,step,train_loss,val_loss\\n"
        ...                                                         "1,553,2.36,2.0\\n2,1106,1.62,1.75\\n")
        >>> curves = load_curves(folder)
        >>> curves[["name", "kind", "layers", "row", "epoch", "val_loss"]].values.tolist()
        [['war_and_peace-gru2-128', 'gru', 2, 128, 1, 2.0], ['war_and_peace-gru2-128', 'gru', 2, 128, 2, 1.75]]
    """
    folder = Path(folder) if folder is not None else results_dir() / "table1" / "curves"
    parts = []
    for path in sorted(folder.glob("*.csv")):
        corpus, model, row = path.stem.rsplit("-", 2)
        parts.append(pd.read_csv(path).assign(name=path.stem, corpus=corpus, kind=model[:-1], layers=int(model[-1]),
                                              row=int(row)))
    if not parts:
        raise FileNotFoundError(f"no learning curves in {folder}: collect the grid (python -m lab grid collect)")
    cols = ["name", "corpus", "kind", "layers", "row", "epoch", "step", "train_loss", "val_loss"]
    return pd.concat(parts, ignore_index=True)[cols]


def block_sizes(n: int, blocks: int) -> np.ndarray:
    """Sizes of ``numpy.array_split``'s blocks of ``n`` items: the first ``n % blocks`` one larger.

        >>> block_sizes(10, 4).astype(int).tolist()
        [3, 3, 2, 2]
    """
    return np.array([n // blocks + (i < n % blocks) for i in range(blocks)], dtype=np.float64)


def paired_difference(a, b, n: int, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Mean loss of ``a`` minus ``b`` over the same ``n`` test characters, and its paired bootstrap SE.

    ``a`` and ``b`` are two models' mean losses in the same contiguous blocks (a row of
    :func:`load_blocks`). Both models see the same characters, so most of the noise of
    either mean is shared; resampling whole blocks, the same for both, keeps that and
    the correlation between neighbouring characters.

        >>> d, se = paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5], n=9)
        >>> round(d, 6), round(se, 6)
        (0.5, 0.0)
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"both models need the same blocks, got shapes {a.shape} and {b.shape}")
    sizes = block_sizes(n, a.size)
    diff = (a - b) * sizes                                              # summed difference per block
    idx = np.random.default_rng(seed).integers(0, a.size, size=(resamples, a.size))
    return float(diff.sum() / sizes.sum()), float((diff[idx].sum(1) / sizes[idx].sum(1)).std(ddof=1))


def _pairs(corpus: str):
    """(claim, worse, better, row) name pairs: the models each claim compares."""
    name = f"{corpus}-{{}}{{}}-{{}}".format
    for row in ROWS:
        for n in LAYERS:
            for kind in ("lstm", "gru"):
                yield "gated beat RNN", name("rnn", n, row), name(kind, n, row), row
        for kind in KINDS:
            yield "2 layers beat 1", name(kind, 1, row), name(kind, 2, row), row
            yield "2 vs 3 layers", name(kind, 3, row), name(kind, 2, row), row


def findings(table: pd.DataFrame, blocks: pd.DataFrame, corpus: str, z: float = 2.0,
             finished_only: bool = True) -> pd.DataFrame:
    """Every comparison behind the paper's claims on ``corpus``, one row each.

    ``gain`` is the claimed-worse model's test loss minus the claimed-better one's (for
    "2 vs 3 layers": three layers minus two), ``se`` its paired bootstrap SE; ``verdict``
    is ``better`` when gain > z se, ``worse`` when gain < -z se, else ``tie``.
    ``paper_gain`` is the same difference in the paper's Table 1, scaled like
    :func:`paper_table` (None where it has no such model), so that the two can be
    compared pair by pair. Pairs where either model is missing (or unfinished, with
    ``finished_only``) are left out.

    The SE is the test text's sampling noise for these trained weights; it says nothing of
    how much another training seed would move a model (surely more than 0.002 nats), so
    a verdict is about these models on this text, not about the architectures.

        >>> names = ["war_and_peace-rnn1-64", "war_and_peace-lstm1-64"]
        >>> table = pd.DataFrame({"name": names, "corpus": ["war_and_peace"] * 2, "kind": ["rnn", "lstm"],
        ...                       "layers": [1, 1], "row": [64, 64], "test_loss": [1.575, 1.50],
        ...                       "test_chars": [400] * 2, "status": ["finished"] * 2})
        >>> blocks = pd.DataFrame([[1.6, 1.55, 1.6, 1.55], [1.5] * 4], index=names)  # 4 blocks of 100 chars
        >>> found = findings(table, blocks, "war_and_peace")
        >>> found[["claim", "better", "verdict", "paper_gain"]].values.tolist()     # the paper's RNN1 won here
        [['gated beat RNN', 'war_and_peace-lstm1-64', 'better', -0.003]]
        >>> round(float(found.gain[0]), 3), round(float(found.se[0]), 3)     # better: gain > 2 SE
        (0.075, 0.012)
    """
    _corpus(corpus)
    t = table.set_index("name")
    paper = paper_table(corpus)
    rows = []
    for claim, worse, better, row in _pairs(corpus):
        if worse not in t.index or better not in t.index or worse not in blocks.index or better not in blocks.index:
            continue
        if finished_only and not (t.loc[worse, "status"] == t.loc[better, "status"] == "finished"):
            continue
        n = int(t.loc[worse, "test_chars"])
        gain, se = paired_difference(blocks.loc[worse].to_numpy(), blocks.loc[better].to_numpy(), n)
        verdict = "better" if gain > z * se else "worse" if gain < -z * se else "tie"
        column = {name: f"{t.loc[name, 'kind'].upper()}{int(t.loc[name, 'layers'])}" for name in (worse, better)}
        paper_gain = paper.loc[row, column[worse]] - paper.loc[row, column[better]]
        rows.append({"claim": claim, "row": row, "worse": worse, "better": better, "worse_loss": t.loc[worse, "test_loss"],
                     "better_loss": t.loc[better, "test_loss"], "gain": gain, "se": se, "verdict": verdict,
                     "paper_gain": None if np.isnan(paper_gain) else round(float(paper_gain), 3)})
    return pd.DataFrame(rows, columns=["claim", "row", "worse", "better", "worse_loss", "better_loss", "gain", "se",
                                       "verdict", "paper_gain"])


def verdicts(found: pd.DataFrame) -> pd.DataFrame:
    """One line per claim: how many comparisons went each way, and whether our numbers support it.

    "gated beat RNN" and "2 layers beat 1" are supported when no comparison goes clearly
    the other way and most go the claimed way; "2 vs 3 layers" (the paper: mixed) is
    supported when both directions occur. For that claim "as claimed" counts the pairs
    where two layers did better, "against" those where three did.

        >>> found = pd.DataFrame({"claim": ["2 vs 3 layers"] * 2, "verdict": ["better", "worse"]})
        >>> verdicts(found).loc["2 vs 3 layers", "supported"]
        'yes'
    """
    out = []
    for claim, text in CLAIMS.items():
        v = found.loc[found["claim"] == claim, "verdict"].value_counts()
        better, worse, tie = (int(v.get(k, 0)) for k in ("better", "worse", "tie"))
        n = better + worse + tie
        if n == 0:
            supported = "no data yet"
        elif claim == "2 vs 3 layers":
            supported = "yes" if better and worse else "no: three never better" if better else \
                "no: two never better" if worse else "no: all ties"
        else:
            supported = "yes" if worse == 0 and better > n / 2 else "no" if worse > better else "partly"
        out.append({"claim": claim, "paper says": text, "comparisons": n, "as claimed": better, "against": worse,
                    "ties": tie, "supported": supported})
    return pd.DataFrame(out).set_index("claim")


def correct_char_probs(checkpoint, ids=None, device=None, corpus=None) -> np.ndarray:
    """The probability a model gives the correct next character at every test position (float32).

    ``checkpoint`` is a shipped model's name or a checkpoint path. ``corpus`` (default:
    the one it was trained on, loaded) is checked against the checkpoint, and its test
    split is read unless ``ids`` are given. The vector the paper's t-SNE of the models
    (§4.1) embeds.

        >>> from lab import Session
        >>> ids = Session.load("war_and_peace_lstm", device="cpu").encode("Prince Andrew said")
        >>> p = correct_char_probs("war_and_peace_lstm", ids=ids, device="cpu")      # of each next character
        >>> p.shape, p.dtype, round(float(p.mean()), 2)
        ((17,), dtype('float32'), 0.74)
    """
    import torch

    from lab.checkpoint import check_corpus
    from lab.corpus import load_corpus
    from lab.pretrained import load_model
    from lab.train import char_losses, pick_device
    dev = pick_device(device)
    model, meta = load_model(checkpoint, dev)
    if corpus is None and ids is None:
        corpus = load_corpus(meta["train_config"]["corpus"])
    if corpus is not None:
        check_corpus(meta, corpus, checkpoint)
        ids = corpus.split_ids("test") if ids is None else ids
    with torch.no_grad():
        return torch.exp(-char_losses(model, ids)).float().cpu().numpy()


def find_checkpoint(name: str, folders) -> Path | None:
    """The best checkpoint of model ``name`` in the first of ``folders`` that has it, or None:
    a grid folder's ``runs/NAME/best.safetensors`` or a folder of kept ``NAME.safetensors``.

        >>> print(find_checkpoint("war_and_peace-lstm1-64", [results_dir() / "checkpoints"]).name)
        war_and_peace-lstm1-64.safetensors
        >>> print(find_checkpoint("war_and_peace-gru3-512", [results_dir() / "checkpoints"]))
        None
    """
    for folder in map(Path, folders):
        for path in (folder / "runs" / name / "best.safetensors", folder / f"{name}.safetensors"):
            if path.is_file():
                return path
    return None


VECTOR_STRIDE = 8   # the map's vectors keep every 8th test position: 40k of War and Peace's 320k


def load_vectors(path, corpus=None) -> dict[str, np.ndarray]:
    """The committed p(correct) vectors of the map (``results/table1/map_vectors.npz``): name -> float16.

    Each is :func:`correct_char_probs` at every :data:`VECTOR_STRIDE`-th test position,
    kept so that the map can be drawn again without the models' weights (the grid folder
    that held them is not in git). An absent file is no vectors; ``corpus`` (a
    :class:`lab.corpus.Corpus`) is checked against the one they were computed on.

        >>> import tempfile; from pathlib import Path
        >>> from lab.corpus import Corpus
        >>> toy = Corpus.from_text("toy", "the cat sat on the mat. " * 200)
        >>> path = Path(tempfile.mkdtemp()) / "v.npz"
        >>> n = toy.split_ids("test").numel() - 1          # as many as correct_char_probs gives
        >>> save_vectors(path, {"toy-lstm1-64": np.full(n, 0.25)}, toy)
        >>> v = load_vectors(path, toy)["toy-lstm1-64"]
        >>> v.dtype, v.size == -(-n // VECTOR_STRIDE), float(v[0])
        (dtype('float16'), True, 0.25)
        >>> load_vectors(path.parent / "none.npz")
        {}
    """
    import json
    path = Path(path)
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        vectors = {k: z[k] for k in z.files if k != "__meta__"}
    if meta.get("stride") != VECTOR_STRIDE:
        raise ValueError(f"{path} keeps every {meta.get('stride')}th test position, this version every "
                         f"{VECTOR_STRIDE}th: compute the vectors again (scripts/table1_map.py)")
    if corpus is not None and meta.get("corpus_sha256") != corpus.sha256:
        raise ValueError(f"{path} was computed on corpus {meta.get('corpus')!r} (sha256 "
                         f"{str(meta.get('corpus_sha256'))[:12]}...), not on {corpus.name!r} (sha256 "
                         f"{corpus.sha256[:12]}...): its vectors do not belong to this test split")
    return vectors


def vector_sources(path) -> dict[str, str]:
    """Which weights each kept vector was computed from: name -> the checkpoint's ``tensors_sha256``
    (none for a vector kept without it). A vector whose model has other weights now is stale.

        >>> import tempfile; from pathlib import Path
        >>> from lab.corpus import Corpus
        >>> toy = Corpus.from_text("toy", "the cat sat on the mat. " * 200)
        >>> path = Path(tempfile.mkdtemp()) / "v.npz"
        >>> save_vectors(path, {"toy-gru1-64": np.ones(60)}, toy, sources={"toy-gru1-64": "9f2c..."})
        >>> vector_sources(path), vector_sources(path.parent / "none.npz")
        ({'toy-gru1-64': '9f2c...'}, {})
    """
    import json
    if not Path(path).is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["__meta__"])).get("sources", {})


def save_vectors(path, vectors, corpus, sources: dict[str, str] | None = None) -> None:
    """Write ``vectors`` (name -> p(correct) at every test position, or already strided) to ``path``.

    Full-length vectors are cut to every :data:`VECTOR_STRIDE`-th position and stored as
    float16 in a compressed ``.npz`` with the corpus they belong to (see :func:`load_vectors`),
    and with ``sources``: the ``tensors_sha256`` of the weights behind each (:func:`vector_sources`).

        >>> import tempfile; from pathlib import Path
        >>> from lab.corpus import Corpus
        >>> toy = Corpus.from_text("toy", "the cat sat on the mat. " * 200)
        >>> try: save_vectors(Path(tempfile.mkdtemp()) / "v.npz", {"toy-rnn1-64": np.ones(7)}, toy)
        ... except ValueError as e: print(e)
        toy-rnn1-64: a vector of 7 values; the test split of toy has 479 positions (60 kept)
    """
    import json

    from lab.files import atomic_write
    n = corpus.split_ids("test").numel() - 1   # a probability for each character that has a next one
    short = -(-n // VECTOR_STRIDE)
    out = {}
    for name, v in vectors.items():
        v = np.asarray(v)
        if v.size == n:
            v = v[::VECTOR_STRIDE]
        if v.size != short:
            raise ValueError(f"{name}: a vector of {v.size} values; the test split of {corpus.name} has {n} "
                             f"positions ({short} kept)")
        out[name] = v.astype(np.float16)
    meta = {"corpus": corpus.name, "corpus_sha256": corpus.sha256, "test_chars": n, "stride": VECTOR_STRIDE,
            "what": "probability of the correct next character (lab.table1.correct_char_probs) at test "
                    "positions 0, stride, 2 stride, ...",
            "sources": {n: sha for n, sha in sorted((sources or {}).items()) if n in out}}

    def write(tmp):
        with open(tmp, "wb") as f:   # a file object: np.savez would add ".npz" to a name without it
            np.savez_compressed(f, __meta__=np.array(json.dumps(meta)), **out)
    atomic_write(Path(path), write)


def tsne_map(probs: np.ndarray, seed: int = 0, perplexity: float | None = None) -> np.ndarray:
    """2-D t-SNE (scikit-learn) of the models, one row of ``probs`` each: (models, 2).

    The perplexity defaults to a third of the models less one, capped at 30 (t-SNE needs
    it below the number of points).

        >>> probs = np.random.default_rng(0).random((6, 50))
        >>> tsne_map(probs).shape
        (6, 2)
    """
    from sklearn.manifold import TSNE
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] < 3:
        raise ValueError(f"t-SNE needs at least 3 models (rows of probabilities), got shape {probs.shape}")
    perplexity = perplexity if perplexity is not None else default_perplexity(probs.shape[0])
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(probs)


def orient_map(xy: np.ndarray, rows) -> np.ndarray:
    """``xy`` rotated so that its first axis runs from the smallest row's centre to the largest's.

    A t-SNE map is the same under any rotation or reflection; turning it this way makes "model
    size" its first coordinate in every run, so that what a notebook says about the axes holds
    whichever way t-SNE happened to land. The largest row is the largest one with 3 or more
    models (one model does not make a centre worth aligning to).

        >>> xy = np.array([[0.0, 5.0], [1.0, 5.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.0]])
        >>> orient_map(xy, [64, 64, 512, 512, 512]).round(2).tolist()   # first axis: -5 for row 64, -1..0 for 512
        [[-5.0, 0.0], [-5.0, 1.0], [-1.0, 0.0], [-1.0, 1.0], [0.0, 0.5]]
    """
    xy, rows = np.asarray(xy, dtype=np.float64), np.asarray(rows)
    counts = pd.Series(rows).value_counts()
    small, large = rows.min(), counts[counts >= 3].index.max() if (counts >= 3).any() else rows.max()
    d = xy[rows == large].mean(0) - xy[rows == small].mean(0)
    if small == large or not np.linalg.norm(d):
        return xy
    d /= np.linalg.norm(d)
    return xy @ np.array([[d[0], -d[1]], [d[1], d[0]]])


def default_perplexity(models: int) -> float:
    """t-SNE's perplexity for ``models`` points: a third of them less one, within [1, 30].

        >>> default_perplexity(36), default_perplexity(100)
        (11.666666666666666, 30.0)
    """
    return min(30.0, max(1.0, (models - 1) / 3))
