"""Obtain the paper's corpora: download, build, verify, write atomically.

:func:`lab.corpus.load_corpus` calls :func:`fetch_corpus` when a known corpus is
not on this machine. Both corpora can also be built offline from a file you give
(``source=``): the War and Peace text, or a Linux source package, tarball or folder::

    >>> from lab.download import fetch_corpus
    >>> fetch_corpus("linux_kernel", source="linux-source-6.1_6.1.192-2_all.deb")  # doctest: +SKIP
    PosixPath('/home/me/.cache/vurn/linux_kernel.txt')

Recipes (the verified copies' sha256 are in :data:`lab.corpus.KNOWN`):

- **war_and_peace**: char-rnn's ``warpeace_input.txt`` (:data:`WAR_AND_PEACE_URLS`), the
  text the paper used: Project Gutenberg eBook #2600 without its header, footer, title,
  contents and BOOK/CHAPTER heading lines. Byte-order mark dropped, CRLF and CR line
  ends turned into LF. A Gutenberg download is stripped of its header and footer too
  (:func:`strip_gutenberg`), but keeps its headings, so it is not the verified text.
- **linux_kernel**: Debian's ``linux-source-6.1`` package, release 6.1.192-2
  (:data:`LINUX_URLS`; its ``/usr/src/linux-source-6.1.tar.xz``). Every ``*.c`` and
  ``*.h`` under ``kernel/``, sorted by path (plain code-point order of the path string,
  so ``kernel/dma.c`` comes before ``kernel/dma/...``), whole files concatenated with
  nothing in between, stopping before the first file that would take the total past
  6,206,996 characters (292 files, ``kernel/acct.c`` to ``kernel/rcu/srcutiny.c``);
  undecodable bytes become U+FFFD. Other 6.1.x releases differ.

A downloaded text that does not hash to the verified copy is not kept under the
known file name (``load_corpus`` would refuse it): the error says how to proceed.
"""
from __future__ import annotations

import http.client
import io
import os
import re
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from lab.corpus import KNOWN, CorpusError, cache_dir, sha256_text
from lab.files import atomic_write

# Where the verified texts come from, mirrors tried in order. char-rnn's copy of War and Peace:
WAR_AND_PEACE_URLS = ("https://cs.stanford.edu/people/karpathy/char-rnn/warpeace_input.txt",)
# Debian's linux-source-6.1 6.1.192-2 (sha1 68f40866...): the security archive's pool while the
# release is current there, then snapshot.debian.org, which keeps every file by its sha1.
LINUX_DEB = "linux-source-6.1_6.1.192-2_all.deb"
LINUX_URLS = (f"https://deb.debian.org/debian-security/pool/updates/main/l/linux/{LINUX_DEB}",
              "https://snapshot.debian.org/file/68f40866ca310be49762f0b2552e656eae72a14f")
URL_ENV = {"war_and_peace": "VURN_WAR_AND_PEACE_URL", "linux_kernel": "VURN_LINUX_URL"}
DEFAULT_URLS = {"war_and_peace": WAR_AND_PEACE_URLS, "linux_kernel": LINUX_URLS}
LINUX_MAX_CHARS = 6_206_996  # the paper's Linux corpus size: the cap of the recipe
TIMEOUT_S = 60.0   # seconds a download may wait for the server before it fails
USER_AGENT = "vurn/0.1 (corpus download; +https://github.com/karpathy/char-rnn)"

_START = re.compile(r"^\*\*\*\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK[^\n]*$", re.M | re.I)
_END = re.compile(r"^\*\*\*\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK[^\n]*$", re.M | re.I)
_END_LINE = re.compile(r"\n[ \t]*End of (?:the |this )?Project Gutenberg[^\n]*\s*$", re.I)


class DownloadError(CorpusError):
    """A download failed or was cut short; nothing was left behind.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> try: download("file:///nonexistent/pg2600.txt", d / "pg2600.txt", progress=False)
    ... except DownloadError as e: print(e)
    could not download file:///nonexistent/pg2600.txt: cannot reach ... Check your connection
    or proxy, or download the file yourself and pass it as source=...
    >>> list(d.iterdir())                                        # no partial file left
    []
    """


class VerificationError(CorpusError):
    """A built corpus does not hash to the verified copy; nothing was kept.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); src = d / "pg2600.txt"
    >>> _ = src.write_text("Well, Prince, so Genoa and Lucca are now just family estates.\\n")
    >>> try: fetch_corpus("war_and_peace", dest_dir=d / "out", source=src)
    ... except VerificationError as e: print(e)
    the war_and_peace text built from /.../pg2600.txt is not the verified copy: sha256 6c591a3f...
    (62 chars), expected e9d70cc7... (3,196,214 chars); nothing was written. ...
    >>> (d / "out").exists()
    False
    """


def download(url: str, dest: str | os.PathLike, *, progress: bool = True, timeout: float = TIMEOUT_S,
             desc: str | None = None) -> Path:
    """Download ``url`` to ``dest``, atomically: ``dest`` appears only when complete.

    The bytes go to a temporary file beside ``dest`` (progress bar on stderr), which
    is renamed onto ``dest`` only after the whole body (as many bytes as the
    server's Content-Length) has arrived. Any failure raises :class:`DownloadError`
    and leaves neither the temporary file nor ``dest``.

    >>> download(WAR_AND_PEACE_URLS[0], "/tmp/warpeace_input.txt")  # doctest: +SKIP
    PosixPath('/tmp/warpeace_input.txt')

    Any URL that ``urllib`` opens will do, a local ``file://`` one too:

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "book.txt").write_text("Chapter 1\\n")
    >>> out = download((d / "book.txt").as_uri(), d / "copy" / "book.txt", progress=False)
    >>> out.relative_to(d).as_posix(), out.read_text()
    ('copy/book.txt', 'Chapter 1\\n')
    """
    dest = Path(dest)

    def fetch(tmp):
        with open(tmp, "wb") as out:
            _fetch_into(url, out, progress=progress, timeout=timeout, desc=desc or dest.name)

    atomic_write(dest, fetch)
    return dest


def _fetch_into(url: str, out, *, progress: bool, timeout: float, desc: str) -> None:
    """Stream ``url`` into the open binary file ``out``; raise DownloadError on any failure."""
    from tqdm.auto import tqdm

    host = urllib.parse.urlsplit(url).netloc or url
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}. Check the URL, "
                            "or download the file yourself and pass it as source=...") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"could not download {url}: cannot reach {host} ({reason}). Check your "
                            "connection or proxy, or download the file yourself and pass it as "
                            "source=...") from None
    got = 0
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        try:
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                      disable=not progress, leave=False) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as e:
            of = f" of {total:,}" if total is not None else ""
            raise DownloadError(f"download of {url} was interrupted after {got:,}{of} bytes "
                                f"({type(e).__name__}: {e}); nothing was kept: try again") from None
    if total is not None and got != total:
        raise DownloadError(f"download of {url} was interrupted: got {got:,} of {total:,} bytes "
                            "(the connection closed early); nothing was kept: try again")


def strip_gutenberg(data: bytes | str) -> str:
    """A Project Gutenberg plain text without its header and footer, with LF line ends.

    The byte-order mark is dropped, CRLF and CR become LF, and everything up to the
    ``*** START OF THE PROJECT GUTENBERG EBOOK ...`` line and from the ``*** END OF``
    line on is removed, with the blank lines around the book; the result ends with
    one newline. A text without the markers is returned with only BOM and line ends
    fixed (it may already be stripped).

    >>> raw = "\\ufeffheader\\r\\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\\r\\n\\r\\nBook.\\r\\n\\r\\n"
    >>> strip_gutenberg(raw + "*** END OF THE PROJECT GUTENBERG EBOOK X ***\\r\\nlicence\\r\\n")
    'Book.\\n'
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorpusError(f"the Gutenberg text is not UTF-8 (byte {data[e.start]:#04x} at offset "
                              f"{e.start}): use the 'Plain Text UTF-8' file of the eBook") from None
    text = data.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    start, end = _START.search(text), None
    if start:
        end = _END.search(text, start.end())
    else:
        end = _END.search(text)
    if not start and not end:
        return text
    body = text[start.end() if start else 0:end.start() if end else len(text)]
    body = _END_LINE.sub("", body).strip("\n")
    if not body:
        raise CorpusError("the Gutenberg text has nothing between its START and END markers")
    return body + "\n"


def linux_text(source: str | os.PathLike, max_chars: int = LINUX_MAX_CHARS) -> str:
    """The Linux corpus text built from a source folder, tarball (.tar.xz, .tar.gz, ...) or .deb:
    the texts of :func:`linux_files`, concatenated.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "kernel").mkdir(); _ = (root / "kernel" / "b.c").write_text("b\\n")
    >>> _ = (root / "kernel" / "a.h").write_text("a\\n")
    >>> linux_text(root)
    'a\\nb\\n'
    """
    return "".join(text for _, text in linux_files(source, max_chars))


def linux_files(source: str | os.PathLike, max_chars: int = LINUX_MAX_CHARS) -> list[tuple[str, str]]:
    """(path, text) of each file the Linux corpus is built from, in its order.

    A .deb is Debian's ``linux-source-*`` package, whose ``/usr/src/linux-source-*.tar.xz``
    is read without unpacking anything to disk. Every ``*.c`` and ``*.h`` under
    ``kernel/`` (of the folder, or of the tarball's top-level folder), sorted by path, whole
    files, stopping before the first file that would take the total past ``max_chars``;
    undecodable bytes become U+FFFD.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "kernel" / "rcu").mkdir(parents=True); _ = (root / "kernel" / "rcu" / "a.c").write_text("a\\n")
    >>> _ = (root / "kernel" / "b.c").write_bytes(b"b\\xff\\n"); _ = (root / "kernel" / "c.txt").write_text("c")
    >>> linux_files(root)
    [('kernel/b.c', 'b\\ufffd\\n'), ('kernel/rcu/a.c', 'a\\n')]
    """
    source = Path(source)
    if source.is_dir():
        files = _folder_sources(source)
    elif source.is_file():
        files = _deb_sources(source) if _is_deb(source) else _tar_sources(source)
    else:
        raise CorpusError(f"Linux source {source} does not exist: give a kernel source folder, a "
                          ".tar.xz/.tar.gz tarball or Debian's linux-source .deb (apt-get download "
                          f"linux-source-6.1=6.1.192-2 gives {LINUX_DEB})")
    if not files:
        raise CorpusError(f"no *.c or *.h files under kernel/ in {source}: is it a Linux source tree?")
    out, total = [], 0
    for path in sorted(files):
        text = files[path].decode("utf-8", errors="replace")
        if total + len(text) > max_chars:
            break
        out.append((path, text))
        total += len(text)
    if not out:
        raise CorpusError(f"the first source file in {source} alone is over {max_chars:,} characters")
    return out


def _is_kernel_source(rel: tuple[str, ...]) -> bool:
    return len(rel) >= 2 and rel[0] == "kernel" and rel[-1].endswith((".c", ".h"))


def _folder_sources(root: Path) -> dict[str, bytes]:
    """{'kernel/...': bytes} for a source folder (its root, or its kernel/ folder itself)."""
    if not (root / "kernel").is_dir() and root.name == "kernel":
        root = root.parent
    if not (root / "kernel").is_dir():
        raise CorpusError(f"{root} has no kernel/ folder: give the top folder of a Linux source tree")
    files = {}
    for folder, dirs, names in os.walk(root / "kernel"):
        for name in names:
            path = Path(folder, name)
            rel = path.relative_to(root).parts
            if _is_kernel_source(rel) and path.is_file() and not path.is_symlink():
                files["/".join(rel)] = path.read_bytes()
    return files


def _tar_sources(tarball: Path, fileobj=None) -> dict[str, bytes]:
    """{'kernel/...': bytes} for a tarball (read from ``fileobj`` when given), in one streaming pass."""
    found: dict[tuple[str, ...], bytes] = {}
    try:
        with tarfile.open(None if fileobj else tarball, mode="r|*", fileobj=fileobj) as tar:
            for member in tar:
                parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
                if member.isfile() and (_is_kernel_source(parts) or _is_kernel_source(parts[1:])):
                    found[parts] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise CorpusError(f"could not read {tarball} as a source tarball (.tar.xz, .tar.gz, ...): "
                          f"{type(e).__name__}: {e}") from None
    # A tarball holds either kernel/... or one top folder (linux-6.1/kernel/...).
    tops = {p[0] for p in found if _is_kernel_source(p[1:])}
    if len(tops) == 1:
        top = tops.pop()
        return {"/".join(p[1:]): data for p, data in found.items() if p[0] == top and _is_kernel_source(p[1:])}
    return {"/".join(p): data for p, data in found.items() if _is_kernel_source(p)}


_AR_MAGIC = b"!<arch>\n"
_KERNEL_TARBALL = re.compile(r"usr/src/linux-source-[^/]+\.tar(\.[a-z0-9]+)?")


def _is_deb(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(_AR_MAGIC)) == _AR_MAGIC


class _Member(io.RawIOBase):
    """The ``size`` bytes of an open file from its current position, as a file of their own."""

    def __init__(self, f, size: int):
        self.f, self.left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.f.readinto(memoryview(buffer)[:self.left])
        self.left -= n
        return n


def _deb_sources(deb: Path) -> dict[str, bytes]:
    """{'kernel/...': bytes} from a Debian linux-source package: an ar archive whose data.tar.*
    holds usr/src/linux-source-X.tar.xz, read as one stream (nothing is unpacked to disk)."""
    with open(deb, "rb") as f:
        f.read(len(_AR_MAGIC))
        while len(header := f.read(60)) == 60:  # ar: 16-byte name, ..., 10-byte decimal size at 48
            name, size = header[:16].decode("ascii", "replace").strip().rstrip("/"), int(header[48:58])
            if not name.startswith("data.tar"):
                f.seek(size + size % 2, os.SEEK_CUR)
                continue
            try:
                with tarfile.open(fileobj=io.BufferedReader(_Member(f, size)), mode="r|*") as data:
                    for member in data:
                        if member.isfile() and _KERNEL_TARBALL.fullmatch(member.name.removeprefix("./")):
                            return _tar_sources(deb, fileobj=data.extractfile(member))
            except (tarfile.TarError, EOFError, OSError, ValueError) as e:
                raise CorpusError(f"could not read {deb}'s {name} as a tarball: {type(e).__name__}: "
                                  f"{e}") from None
            break
    raise CorpusError(f"{deb} is not a linux-source package (no usr/src/linux-source-*.tar.* in a "
                      f"data.tar member): give Debian's {LINUX_DEB}, a tarball or a source folder")


def _is_url(s: str) -> bool:
    return urllib.parse.urlsplit(s).scheme.lower() in ("http", "https", "ftp", "file")


def fetch_corpus(name: str, dest_dir: str | os.PathLike | None = None, url: str | None = None,
                 source: str | os.PathLike | None = None, *, verify: bool = True,
                 progress: bool = True) -> Path:
    """Download (or build from ``source``) a known corpus, verify it, write it; return its path.

    ``name`` is ``"war_and_peace"`` or ``"linux_kernel"``. The text comes from
    ``source`` (a local War and Peace text; a Linux source .deb, tarball or folder)
    when given, else from ``url``, else from ``$VURN_WAR_AND_PEACE_URL`` /
    ``$VURN_LINUX_URL``, else from :data:`DEFAULT_URLS` (char-rnn's text; Debian's
    package), each mirror in turn until one downloads. It is written to
    ``dest_dir`` (default: the user cache, :func:`lab.corpus.cache_dir`) as
    ``war_and_peace.txt`` / ``linux_kernel.txt``, replacing any file there.

    With ``verify=True`` a text whose sha256 differs from the verified copy raises
    :class:`VerificationError` and nothing is written. With ``verify=False`` such a
    text is kept as a custom corpus, ``<name>-unverified.txt``, so that
    ``load_corpus(name)`` never finds it; load it with
    ``Corpus.from_file(path, splits=...)``.

    Built offline from a local Gutenberg file (here a tiny stand-in, so not the verified
    text: ``verify=False`` keeps it under another name):

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); src = d / "pg2600.txt"
    >>> _ = src.write_text("header\\n*** START OF THE PROJECT GUTENBERG EBOOK WAR AND PEACE ***\\n\\n"
    ...                    "Well, Prince.\\n\\n*** END OF THE PROJECT GUTENBERG EBOOK WAR AND PEACE ***\\n")
    >>> path = fetch_corpus("war_and_peace", dest_dir=d / "out", source=src, verify=False)
    >>> path.name, path.read_text()
    ('war_and_peace-unverified.txt', 'Well, Prince.\\n')

    >>> fetch_corpus("war_and_peace")                                    # doctest: +SKIP
    PosixPath('/home/me/.cache/vurn/war_and_peace.txt')
    >>> fetch_corpus("linux_kernel", source="linux-6.3.tar.xz", verify=False)  # doctest: +SKIP
    PosixPath('/home/me/.cache/vurn/linux_kernel-unverified.txt')
    """
    if name not in KNOWN:
        raise CorpusError(f"unknown corpus {name!r}: fetch_corpus knows {', '.join(KNOWN)}; "
                          "any other UTF-8 text file can be loaded with load_corpus(path)")
    if url is not None and source is not None:
        raise CorpusError("give either url= or source=, not both")
    known = KNOWN[name]
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir()
    if source is not None and _is_url(str(source)):
        url, source = str(source), None
    if source is None and url is not None and not _is_url(url):
        url, source = None, url  # a local path given as url
    if source is not None:
        origin = str(source)
        text = _build(name, Path(source))
    else:
        from_env = os.environ.get(URL_ENV[name])
        urls = [url] if url is not None else [from_env] if from_env else list(DEFAULT_URLS[name])
        origin, text = _download_and_build(name, urls, dest_dir, progress)

    digest = sha256_text(text)
    dest = dest_dir / known.filename
    if digest != known.sha256:
        if verify:
            raise VerificationError(
                f"the {name} text built from {origin} is not the verified copy: sha256 {digest} "
                f"({len(text):,} chars), expected {known.sha256} ({known.chars:,} chars); nothing was "
                f"written. {_HINT[name]} To proceed, set VURN_DATA to a folder holding a verified "
                f"{known.filename}, or call fetch_corpus({name!r}, ..., verify=False) to keep this text "
                f"as a custom corpus ({dest_dir / (name + '-unverified.txt')}) and load it with "
                f"Corpus.from_file(path, splits={known.splits})")
        dest = dest_dir / f"{name}-unverified.txt"
    atomic_write(dest, lambda tmp: Path(tmp).write_bytes(text.encode("utf-8")))
    return dest


def _download_and_build(name: str, urls: Sequence[str], dest_dir: Path, progress: bool) -> tuple[str, str]:
    """(the URL that worked, the corpus text built from it): mirrors in order, the next on a failed download."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        # The raw download (a text, a ~140 MB package) is temporary: written in place, not
        # through download()'s atomic second copy, and removed once the corpus is built.
        fd, raw_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{name}.", suffix=".download")
        raw = Path(raw_name)
        try:
            with os.fdopen(fd, "wb") as out:
                _fetch_into(url, out, progress=progress, timeout=TIMEOUT_S,
                            desc=f"{name} ({urllib.parse.urlsplit(url).netloc})")
            return url, _build(name, raw)
        except CorpusError as e:   # a failed download, or a mirror that sent something else (an HTML page)
            failures.append(str(e))
        finally:
            raw.unlink(missing_ok=True)
    if len(failures) == 1:
        raise DownloadError(failures[0])
    raise DownloadError(f"none of the {len(urls)} mirrors of {name} could be downloaded:\n  "
                        + "\n  ".join(failures))


_HINT = {
    "war_and_peace": "(The verified copy is char-rnn's warpeace_input.txt, which lacks the title, "
                     "contents and BOOK/CHAPTER heading lines of Project Gutenberg's eBook #2600.)",
    "linux_kernel": f"(The verified copy is built from Debian's linux-source-6.1 release 6.1.192-2: "
                    f"apt-get download linux-source-6.1=6.1.192-2, then pass source='{LINUX_DEB}'; "
                    "other 6.1.x releases and kernel.org tarballs differ.)",
}


def _build(name: str, source: Path) -> str:
    """The corpus text of ``name`` from a local file or folder."""
    if name == "linux_kernel":
        return linux_text(source)
    if not source.is_file():
        raise CorpusError(f"{source} is not a file: give char-rnn's warpeace_input.txt (or a Project "
                          "Gutenberg plain-text eBook #2600, with verify=False)")
    text = strip_gutenberg(source.read_bytes())
    if not text:
        raise CorpusError(f"{source} is empty: give char-rnn's warpeace_input.txt")
    return text
