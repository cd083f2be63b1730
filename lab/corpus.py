"""Corpora: text, vocabulary, contiguous splits, encode and decode.

The paper's two corpora are found by name; any UTF-8 file can be a corpus too::

    >>> from lab.corpus import Corpus
    >>> c = Corpus.from_text("tiny", "hello world\\n" * 10, splits=(0.8, 0.1, 0.1))
    >>> c.vocab[:3], c.decode(c.encode("hello"))
    (('\\n', ' ', 'd'), 'hello')

``load_corpus("war_and_peace")`` looks for ``war_and_peace.txt`` in, in order, the
folder you pass, ``$VURN_DATA``, the user cache (``~/.cache/vurn``), and otherwise
downloads and verifies it (see :mod:`lab.download`).
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lab.checks import is_real

SPLITS = ("train", "val", "test")


class CorpusError(ValueError):
    """A corpus could not be found, read or used; the message says what to do.

    >>> try: load_corpus("shakespeare")
    ... except CorpusError as e: print(e)
    unknown corpus 'shakespeare': use one of war_and_peace, linux_kernel or a path to a UTF-8 text file
    """


@dataclass(frozen=True)
class KnownCorpus:
    """A corpus of the paper: its file name, its splits and the sha256 of its text.

    >>> wp = KNOWN["war_and_peace"]
    >>> wp.filename, wp.splits, wp.chars
    ('war_and_peace.txt', (0.8, 0.1, 0.1), 3196214)
    """

    name: str
    filename: str
    splits: tuple[float, float, float]
    sha256: str
    chars: int


KNOWN: dict[str, KnownCorpus] = {
    "war_and_peace": KnownCorpus(
        "war_and_peace", "war_and_peace.txt", (0.8, 0.1, 0.1),
        "e9d70cc7d26da7bb53c09a90844647f75cd2ef081b6aa358290a8cf7184d889b", 3_196_214),
    "linux_kernel": KnownCorpus(
        "linux_kernel", "linux_kernel.txt", (0.9, 0.05, 0.05),
        "87d32dcf78a30cda308400fda232f5a0480ec9ddfff1ed2829eb5cfe5dbfc862", 6_153_338),
}


def cache_dir() -> Path:
    """The user cache where downloaded corpora live (``$XDG_CACHE_HOME/vurn``).

    >>> cache_dir().name
    'vurn'
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "vurn"


def sha256_text(text: str) -> str:
    """sha256 of a text's UTF-8 bytes, the corpus hash checkpoints carry.

    >>> sha256_text("")[:8]
    'e3b0c442'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_text(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file as a corpus text, with a clear error for every bad file.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.txt"; _ = p.write_text("ab\\n")
    >>> read_text(p)
    'ab\\n'
    """
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"corpus file {path} does not exist: check the path (the paper's corpora are "
                          f"named, not given as paths: {', '.join(KNOWN)}; they are looked for in --data, "
                          "$VURN_DATA and the cache)")
    if path.is_dir():
        raise CorpusError(f"{path} is a folder, not a text file: name the .txt file inside it")
    data = path.read_bytes()
    if path.suffix == ".xz":  # a corpus kept compressed (xz -k NAME.txt): a quarter to a fifth of the bytes
        import lzma
        try:
            data = lzma.decompress(data)
        except lzma.LZMAError as e:
            raise CorpusError(f"{path} is not a valid .xz file ({e}): compress the text again with `xz -k`") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path} is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}): "
                          "convert it first, e.g. `iconv -f latin1 -t utf-8`") from None
    text = text.removeprefix("\ufeff")
    if not text:
        raise CorpusError(f"{path} is empty: a corpus needs some text")
    return text


@dataclass(frozen=True)
class Corpus:
    """A text with its vocabulary and contiguous train/val/test splits.

    >>> c = Corpus.from_text("toy", "hello world\\n" * 10)
    >>> len(c.text), "".join(c.vocab)
    (120, '\\n dehlorw')
    >>> [len(c.split(s)) for s in ("train", "val", "test")]
    [96, 12, 12]
    """

    name: str
    text: str = field(repr=False)
    vocab: tuple[str, ...]
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1)

    @classmethod
    def from_text(cls, name: str, text: str, splits=(0.8, 0.1, 0.1), vocab=None) -> "Corpus":
        """Make a corpus from a string; the vocabulary is every distinct character, sorted.

        >>> Corpus.from_text("t", "ba\\n").vocab
        ('\\n', 'a', 'b')
        """
        if not isinstance(text, str):
            raise CorpusError(f"corpus {name!r}: the text must be a str, got {type(text).__name__} "
                              "(decode bytes first, e.g. data.decode('utf-8'))")
        if not text:
            raise CorpusError(f"corpus {name!r} is empty: a corpus needs some text")
        try:
            fractions = tuple(float(x) for x in splits
                              if is_real(x))
        except TypeError:
            fractions = ()
        if (len(fractions) != 3 or len(fractions) != len(splits) or not all(map(math.isfinite, fractions)) or abs(sum(fractions) - 1) > 1e-9
                or min(fractions) <= 0):
            raise CorpusError(f"splits must be three positive fractions summing to 1 (train, val, test), "
                              f"got {splits!r}")
        vocab = tuple(sorted(set(text))) if vocab is None else tuple(vocab)
        corpus = cls(name, text, vocab, fractions)
        corpus.encode(text)  # an explicit vocabulary must cover the text
        return corpus

    @classmethod
    def from_file(cls, path: str | os.PathLike, splits=(0.8, 0.1, 0.1), name=None) -> "Corpus":
        """Any UTF-8 text file as a corpus.

        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "mine.txt"; _ = p.write_text("abc" * 30)
        >>> Corpus.from_file(p).name
        'mine'
        """
        return cls.from_text(name or Path(Path(path).name.removesuffix(".xz")).stem, read_text(path), splits)

    @property
    def sha256(self) -> str:
        """sha256 of the whole text (computed once).

        >>> Corpus.from_text("t", "abc").sha256[:16]
        'ba7816bf8f01cfea'
        """
        cached = self.__dict__.get("_sha256")
        if cached is None:
            cached = sha256_text(self.text)
            object.__setattr__(self, "_sha256", cached)
        return cached

    @property
    def index(self) -> dict[str, int]:
        """Character to vocabulary index (computed once).

        >>> Corpus.from_text("t", "cab").index
        {'a': 0, 'b': 1, 'c': 2}
        """
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = {ch: i for i, ch in enumerate(self.vocab)}
            object.__setattr__(self, "_index", cached)
        return cached

    def bounds(self, split: str) -> tuple[int, int]:
        """Character offsets [start, end) of a split in the whole text.

        >>> Corpus.from_text("t", "x" * 100).bounds("val")
        (80, 90)
        """
        if split not in SPLITS:
            raise CorpusError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
        n = len(self.text)
        a = round(n * self.splits[0])
        b = round(n * (self.splits[0] + self.splits[1]))
        return {"train": (0, a), "val": (a, b), "test": (b, n)}[split]

    def split(self, split: str) -> str:
        """The text of one split: 'train', 'val' or 'test'.

        >>> c = Corpus.from_text("t", "abcdefghij")
        >>> c.split("train"), c.split("val"), c.split("test")
        ('abcdefgh', 'i', 'j')
        """
        a, b = self.bounds(split)
        if a == b:
            raise self._empty(split)
        return self.text[a:b]

    def _empty(self, split: str) -> CorpusError:
        return CorpusError(f"the {split} split of corpus {self.name!r} is empty: {len(self.text):,} characters "
                           f"split {'/'.join(f'{x:g}' for x in self.splits)} leave it none; give a longer text")

    def encode(self, text: str) -> torch.Tensor:
        """Characters to a 1-D int64 tensor of vocabulary indices.

        Characters outside the vocabulary are an error that names them.

        >>> c = Corpus.from_text("t", "abc")
        >>> c.encode("cab").tolist()
        [2, 0, 1]
        """
        return encode_chars(text, self.index, f"the vocabulary of corpus {self.name!r}",
                            "Remove or replace them, or use a model trained on a corpus that has them.")

    def decode(self, ids) -> str:
        """Vocabulary indices (any iterable of ints or a tensor) back to text.

        >>> c = Corpus.from_text("t", "abc")
        >>> c.decode([2, 0, 1]), c.decode(c.encode("abba"))
        ('cab', 'abba')
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        ids = list(ids)
        bad = [i for i in ids if not 0 <= i < len(self.vocab)]
        if bad:
            raise CorpusError(f"indices {bad[:5]} are outside the vocabulary of corpus {self.name!r} "
                              f"(0 to {len(self.vocab) - 1})")
        return "".join(self.vocab[i] for i in ids)

    def split_ids(self, split: str) -> torch.Tensor:
        """One split, encoded (cached: the whole text is encoded once).

        >>> c = Corpus.from_text("t", "abcabcabca")
        >>> c.split_ids("train").tolist(), c.split_ids("test").tolist()
        ([0, 1, 2, 0, 1, 2, 0, 1], [0])
        """
        ids = self.__dict__.get("_ids")
        if ids is None:
            ids = self.encode(self.text)
            object.__setattr__(self, "_ids", ids)
        a, b = self.bounds(split)
        if a == b:
            raise self._empty(split)
        return ids[a:b]

    def charrnn_pieces(self, split: str, batch: int = 100, seq_len: int = 100,
                       with_next: bool = False) -> list[torch.Tensor]:
        """One split as char-rnn's loader cuts it: ``batch`` pieces, one from each part of the text.

        vurn's splits are contiguous (train, then val, then test). char-rnn's
        ``CharSplitLMMinibatchLoader`` instead drops the text's tail so that it divides into
        ``batch`` x ``seq_len`` blocks, lays it out as ``batch`` rows (row r: the r-th
        hundredth of the text), and gives the first 80% of every row's ``seq_len``-blocks to
        train, the next 10% to val and the rest to test (WP's fractions): its test split is
        ``batch`` short pieces spread over the whole text (``scripts/split_layout.py``
        measures what that does to an n-gram; ``TrainConfig(layout="char-rnn")`` trains on it).

        ``with_next`` appends to each piece the target of its last character, as char-rnn
        reads targets from the whole text shifted by one (the text's last character's
        target wraps to its first): a piece of L characters then holds L predictions.

        >>> c = Corpus.from_text("t", "abcdefghijklmnopqrst" + "ABCDEFGHIJKLMNOPQRST" + "xyz")
        >>> [c.decode(p) for p in c.charrnn_pieces("train", batch=2, seq_len=2)]   # 2 rows of 10 blocks; xyz dropped
        ['abcdefghijklmnop', 'ABCDEFGHIJKLMNOP']
        >>> [c.decode(p) for p in c.charrnn_pieces("val", 2, 2)], [c.decode(p) for p in c.charrnn_pieces("test", 2, 2)]
        (['qr', 'QR'], ['st', 'ST'])
        >>> [c.decode(p) for p in c.charrnn_pieces("val", 2, 2, with_next=True)]
        ['qrs', 'QRS']
        >>> c.decode(c.charrnn_pieces("test", 2, 2, with_next=True)[1])   # the text's last target: its first
        'STa'
        """
        if split not in SPLITS:
            raise CorpusError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
        if batch < 1 or seq_len < 1:
            raise CorpusError(f"batch and seq_len must be at least 1, got {batch} and {seq_len}")
        blocks = len(self.text) // (batch * seq_len)       # seq_len-blocks in each row
        n_train = math.floor(blocks * self.splits[0])
        n_val = math.floor(blocks * self.splits[1])
        ranges = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, blocks)}
        a, b = ranges[split]
        if a == b:
            raise self._empty(split)
        self.split_ids("train")                              # encodes and caches the whole text
        used = self.__dict__["_ids"][:batch * seq_len * blocks]
        rows = used.view(batch, -1)[:, a * seq_len:b * seq_len]
        if with_next:
            last_targets = torch.roll(used, -1).view(batch, -1)[:, b * seq_len - 1]
            rows = torch.cat([rows, last_targets[:, None]], 1)
        return list(rows)


def encode_chars(text: str, index: dict[str, int], whose: str, advice: str = "Remove or replace them.") -> torch.Tensor:
    """``text`` as ids through ``index``; characters it lacks are a :class:`CorpusError` naming them.

    >>> encode_chars("ba", {"a": 0, "b": 1}, "this vocabulary").tolist()
    [1, 0]
    """
    try:
        return torch.tensor([index[ch] for ch in text], dtype=torch.long)
    except KeyError:
        unknown = sorted(set(text) - set(index))
        shown = ", ".join(repr(ch) for ch in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise CorpusError(f"{len(unknown)} character(s) are not in {whose}: {shown}. {advice}") from None


def find_corpus_file(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """Where a known corpus's text is on this machine, or None.

    Looks in ``data_dir``, then ``$VURN_DATA``, then the user cache, for the text or the
    text compressed with xz (``war_and_peace.txt.xz``).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "war_and_peace.txt.xz").write_bytes(b"")
    >>> find_corpus_file("war_and_peace", data_dir=d).name
    'war_and_peace.txt.xz'
    """
    known = KNOWN[name]
    for folder in (data_dir, os.environ.get("VURN_DATA"), cache_dir()):
        for filename in (known.filename, known.filename + ".xz"):
            if folder and (Path(folder) / filename).is_file():
                return Path(folder) / filename
    return None


def load_corpus(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                download: bool = True) -> Corpus:
    """A corpus of the paper by name (``war_and_peace``, ``linux_kernel``) or any UTF-8 file.

    A file is a corpus with the default splits (0.8, 0.1, 0.1), named after the file:

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "poem.txt"; _ = p.write_text("roses are red\\n" * 5)
    >>> c = load_corpus(p)
    >>> c.name, len(c.text), c.split("test")
    ('poem', 70, 're red\\n')

    A known corpus is found (or downloaded) and verified:

    >>> c = load_corpus("war_and_peace")            # doctest: +SKIP
    >>> len(c.text), c.splits                        # doctest: +SKIP
    (3196214, (0.8, 0.1, 0.1))
    """
    name = str(name_or_path)
    if name not in KNOWN:
        if Path(name).exists() or os.sep in name or name.endswith(".txt"):
            return Corpus.from_file(name)
        raise CorpusError(f"unknown corpus {name!r}: use one of {', '.join(KNOWN)} or a path to a UTF-8 text file")
    known = KNOWN[name]
    path = find_corpus_file(name, data_dir)
    if path is None:
        if not download:
            raise CorpusError(f"{known.filename} not found in {data_dir or '-'}, $VURN_DATA or {cache_dir()}: "
                              "set VURN_DATA to the folder that holds it, or allow the download")
        from lab.download import fetch_corpus
        path = fetch_corpus(name)
    text = read_text(path)
    digest = sha256_text(text)
    if digest != known.sha256:
        raise CorpusError(f"{path} is not the expected {name} text (sha256 {digest[:12]}..., expected "
                          f"{known.sha256[:12]}...): replace it; or build it from your copy with lab.download.fetch_corpus("
                          f"{name!r}, source=PATH) (which normalises line ends and strips the Gutenberg header, "
                          "as the download does); or load it as a plain file with Corpus.from_file")
    corpus = Corpus.from_text(name, text, known.splits)
    object.__setattr__(corpus, "_sha256", digest)
    return corpus
