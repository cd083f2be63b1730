"""lab.corpus: vocabulary, encode/decode, splits, finding corpora, and every bad input.

The tests on the paper's corpora read them from $VURN_DATA and are skipped when
it is not set. The user cache is a temporary folder and downloads go nowhere.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lab.corpus import KNOWN, Corpus, CorpusError, find_corpus_file, load_corpus, read_text

pytestmark = pytest.mark.usefixtures("offline_cache")


def shared_data() -> Path | None:
    data = os.environ.get("VURN_DATA")
    return Path(data) if data and Path(data).is_dir() else None


@pytest.fixture(scope="module", params=sorted(KNOWN))
def known_corpus(request):
    data = shared_data()
    if data is None or not (data / KNOWN[request.param].filename).is_file():
        pytest.skip("set VURN_DATA to the folder holding the paper's corpora")
    return load_corpus(request.param, data_dir=data, download=False)


# -- vocabulary, encode, decode ----------------------------------------------------------------

def test_vocab_is_sorted_distinct_characters():
    c = Corpus.from_text("t", "hello, world\n")
    assert c.vocab == ("\n", " ", ",", "d", "e", "h", "l", "o", "r", "w")
    assert c.index == {ch: i for i, ch in enumerate(c.vocab)}


def test_explicit_vocab_is_kept_in_its_order():
    c = Corpus.from_text("t", "ab", vocab="zba")
    assert c.vocab == ("z", "b", "a") and c.encode("ab").tolist() == [2, 1]


def test_explicit_vocab_must_cover_the_text():
    with pytest.raises(CorpusError, match=r"1 character\(s\) are not in the vocabulary.*'c'"):
        Corpus.from_text("t", "abc", vocab="ab")


def test_encode_decode_round_trip():
    text = "Caf\u00e9 \u00e0 la cr\u00e8me.\n\tx = y;\n"
    c = Corpus.from_text("t", text)
    ids = c.encode(text)
    assert ids.dtype == torch.long and ids.shape == (len(text),)
    assert c.decode(ids) == text
    assert c.decode(ids.tolist()) == text
    assert c.decode([]) == "" and c.encode("").tolist() == []


def test_unknown_characters_are_named():
    c = Corpus.from_text("tiny", "hello")
    with pytest.raises(CorpusError) as err:
        c.encode("h\u00e9llo!")
    msg = str(err.value)
    assert "2 character(s)" in msg and "'!'" in msg and "'\u00e9'" in msg and "'tiny'" in msg


def test_many_unknown_characters_are_cut_short():
    c = Corpus.from_text("t", "a")
    with pytest.raises(CorpusError, match=r"12 character\(s\).*'b'.* \.\.\."):
        c.encode("bcdefghijklm")


# -- splits ------------------------------------------------------------------------------------

def test_bounds_are_contiguous_and_cover_the_text():
    c = Corpus.from_text("t", "x" * 1000)
    assert [c.bounds(s) for s in ("train", "val", "test")] == [(0, 800), (800, 900), (900, 1000)]
    c = Corpus.from_text("t", "abcdefghij" * 100, splits=(0.9, 0.05, 0.05))
    assert [c.bounds(s) for s in ("train", "val", "test")] == [(0, 900), (900, 950), (950, 1000)]
    assert c.split("train") + c.split("val") + c.split("test") == c.text
    assert c.decode(c.split_ids("val")) == c.split("val")


def test_charrnn_pieces_are_char_rnns_rows_cut_by_time():
    """char-rnn's loader: drop the tail so the text divides into batch x seq_len blocks, view it
    as batch rows, and give each row's first floor(0.9 blocks) to train, the next floor(0.05
    blocks) to val, the rest to test. Written out by hand here with Python slicing."""
    text = "".join(chr(ord("a") + i % 26) + str(i % 7) for i in range(5050))   # 10,100 characters
    c = Corpus.from_text("t", text, splits=(0.9, 0.05, 0.05))
    batch, seq_len = 10, 50
    blocks = 10_100 // (batch * seq_len)                                    # 20 blocks of 50 per row
    row_len = blocks * seq_len
    rows = [text[r * row_len:(r + 1) * row_len] for r in range(batch)]     # the last 100 characters dropped
    want = {"train": (0, 18), "val": (18, 19), "test": (19, 20)}           # floor(18.0), floor(1.0), the rest
    for split, (a, b) in want.items():
        got = [c.decode(p) for p in c.charrnn_pieces(split, batch=batch, seq_len=seq_len)]
        assert got == [row[a * seq_len:b * seq_len] for row in rows], split
    joined = ["".join(c.decode(p) for p in c.charrnn_pieces(s, batch, seq_len)) for s in ("train", "val", "test")]
    assert sorted("".join(joined)) == sorted(text[:batch * row_len])        # every used character once


def test_charrnn_pieces_floor_the_train_and_val_blocks_as_char_rnn_does():
    """War and Peace's 319 blocks a row: floor(255.2) = 255 train, floor(31.9) = 31 val, 33 test
    (rounding would give 255, 32, 32)."""
    c = Corpus.from_text("t", "ab" * (319 * 2 * 5 // 2))                       # 2 rows of 319 blocks of 5
    assert [len(c.charrnn_pieces(s, batch=2, seq_len=5)[0]) // 5 for s in ("train", "val", "test")] == [255, 31, 33]


def test_charrnn_pieces_refuse_bad_arguments_and_an_empty_split():
    c = Corpus.from_text("t", "abcdefghij" * 100)
    with pytest.raises(CorpusError, match="unknown split 'dev'"):
        c.charrnn_pieces("dev")
    with pytest.raises(CorpusError, match="batch and seq_len must be at least 1, got 0 and 100"):
        c.charrnn_pieces("train", batch=0)
    with pytest.raises(CorpusError, match="the val split of corpus 't' is empty"):
        c.charrnn_pieces("val", batch=10, seq_len=100)       # one block per row: floor(0.8) = floor(0.1) = 0


def test_unknown_split():
    with pytest.raises(CorpusError, match="unknown split 'dev'.*train, val, test"):
        Corpus.from_text("t", "abc").bounds("dev")


@pytest.mark.parametrize("splits", [(0.5, 0.5, 0.1), (1.0, 0.0, 0.0), (0.5, 0.5), (0.8, 0.3, -0.1),
                                    (float("nan"), 0.5, 0.5), None, "abc", (0.8, "x", 0.1), ("0.8", "0.1", "0.1")])
def test_bad_split_fractions(splits):
    with pytest.raises(CorpusError, match="splits must be three positive fractions summing to 1"):
        Corpus.from_text("t", "abc", splits=splits)


def test_an_empty_split_is_named_when_used():
    """A text too short for its splits: the empty split is an error that says why, not '' or NaN later."""
    c = Corpus.from_text("two", "ab")
    assert c.split("train") == "ab" and c.split_ids("train").tolist() == [0, 1]
    for split in ("val", "test"):
        with pytest.raises(CorpusError, match=f"the {split} split of corpus 'two' is empty: 2 characters "
                                              r"split 0.8/0.1/0.1 leave it none; give a longer text"):
            c.split(split)
        with pytest.raises(CorpusError, match=f"the {split} split .* is empty"):
            c.split_ids(split)


def test_text_must_be_str_and_decode_checks_indices():
    with pytest.raises(CorpusError, match="must be a str, got bytes.*decode"):
        Corpus.from_text("t", b"abc")
    c = Corpus.from_text("t", "abc")
    for ids in ([0, 3], [-1], torch.tensor([5])):
        with pytest.raises(CorpusError, match=r"outside the vocabulary of corpus 't' \(0 to 2\)"):
            c.decode(ids)


def test_known_corpora(known_corpus):
    c, known = known_corpus, KNOWN[known_corpus.name]
    assert len(c.text) == known.chars and c.sha256 == known.sha256
    assert c.splits == {"war_and_peace": (0.8, 0.1, 0.1), "linux_kernel": (0.9, 0.05, 0.05)}[c.name]
    assert len(c.vocab) == {"war_and_peace": 82, "linux_kernel": 98}[c.name]
    (a0, a1), (b0, b1), (t0, t1) = (c.bounds(s) for s in ("train", "val", "test"))
    n = len(c.text)
    assert a0 == 0 and a1 == b0 and b1 == t0 and t1 == n
    for (lo, hi), frac in zip([(a0, a1), (b0, b1), (t0, t1)], c.splits):
        assert abs((hi - lo) - frac * n) <= 1
    ids = c.split_ids("test")
    assert ids.shape == (t1 - t0,) and c.decode(ids[:1000]) == c.text[t0:t0 + 1000]


# -- finding corpora ---------------------------------------------------------------------------

def test_find_corpus_file_order(tmp_path, monkeypatch, offline_cache):
    folders = {k: tmp_path / k for k in ("arg", "env")}
    for f in (*folders.values(), offline_cache):
        f.mkdir(parents=True)
        (f / "war_and_peace.txt").write_text("x")
    monkeypatch.setenv("VURN_DATA", str(folders["env"]))
    assert find_corpus_file("war_and_peace", folders["arg"]) == folders["arg"] / "war_and_peace.txt"
    assert find_corpus_file("war_and_peace") == folders["env"] / "war_and_peace.txt"
    monkeypatch.delenv("VURN_DATA")
    assert find_corpus_file("war_and_peace") == offline_cache / "war_and_peace.txt"
    assert find_corpus_file("linux_kernel") is None


def test_a_corpus_kept_compressed_with_xz_is_found_read_and_verified(tmp_path, known_corpus, offline_cache):
    import lzma
    name = known_corpus.name
    (tmp_path / f"{name}.txt.xz").write_bytes(lzma.compress(known_corpus.text.encode()))
    assert find_corpus_file(name, tmp_path) == tmp_path / f"{name}.txt.xz"
    again = load_corpus(name, data_dir=tmp_path)
    assert again.text == known_corpus.text and again.sha256 == KNOWN[name].sha256
    (tmp_path / f"{name}.txt").write_text(known_corpus.text)     # both there: the plain text first
    assert find_corpus_file(name, tmp_path) == tmp_path / f"{name}.txt"


def test_a_bad_or_wrong_xz_file_is_a_clear_error(tmp_path):
    import lzma
    (tmp_path / "war_and_peace.txt.xz").write_bytes(b"not xz at all")
    with pytest.raises(CorpusError, match=r"war_and_peace.txt.xz is not a valid .xz file .*xz -k"):
        load_corpus("war_and_peace", data_dir=tmp_path)
    (tmp_path / "war_and_peace.txt.xz").write_bytes(lzma.compress(b"not the book\n"))
    with pytest.raises(CorpusError, match="not the expected war_and_peace text"):
        load_corpus("war_and_peace", data_dir=tmp_path)
    (tmp_path / "mine.txt.xz").write_bytes(lzma.compress("ab\nba\n".encode()))
    mine = load_corpus(tmp_path / "mine.txt.xz")
    assert (mine.name, mine.text) == ("mine", "ab\nba\n")


def test_load_any_text_file(tmp_path):
    p = tmp_path / "mine.txt"
    p.write_text("\ufeffab\nba\n", encoding="utf-8")  # the BOM is dropped
    c = load_corpus(p)
    assert c.name == "mine" and c.text == "ab\nba\n" and c.vocab == ("\n", "a", "b")
    assert Corpus.from_file(p, splits=(0.9, 0.05, 0.05), name="x").splits == (0.9, 0.05, 0.05)


# -- bad inputs --------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="missing.txt does not exist.*VURN_DATA"):
        load_corpus(tmp_path / "missing.txt")


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(CorpusError, match="is a folder, not a text file"):
        read_text(tmp_path)
    with pytest.raises(CorpusError, match="is a folder"):
        Corpus.from_file(tmp_path)


def test_not_utf8(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("caf\u00e9\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"not UTF-8 text \(byte 0xe9 at offset 3\).*iconv"):
        load_corpus(p)


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path, content):
    p = tmp_path / "empty.txt"
    p.write_bytes(content)
    with pytest.raises(CorpusError, match="empty.txt is empty"):
        load_corpus(p)


def test_empty_text():
    with pytest.raises(CorpusError, match="corpus 'e' is empty"):
        Corpus.from_text("e", "")


def test_unknown_corpus_name():
    with pytest.raises(CorpusError, match="unknown corpus 'shakespeare': use one of war_and_peace, linux_kernel"):
        load_corpus("shakespeare")


def test_wrong_hash(tmp_path):
    (tmp_path / "war_and_peace.txt").write_text("not the book\n")
    with pytest.raises(CorpusError, match=r"not the expected war_and_peace text \(sha256 .*expected "
                                          + KNOWN["war_and_peace"].sha256[:12]):
        load_corpus("war_and_peace", data_dir=tmp_path)


def test_not_found_without_download(monkeypatch, tmp_path):
    monkeypatch.delenv("VURN_DATA", raising=False)
    with pytest.raises(CorpusError, match="linux_kernel.txt not found.*set VURN_DATA"):
        load_corpus("linux_kernel", data_dir=tmp_path, download=False)


def test_not_found_download_fails_clearly(monkeypatch, offline_cache):
    # offline_cache points the download at a closed local port
    monkeypatch.delenv("VURN_DATA", raising=False)
    with pytest.raises(CorpusError, match="could not download .*cannot reach"):
        load_corpus("war_and_peace")
    assert not offline_cache.exists() or list(offline_cache.iterdir()) == []


