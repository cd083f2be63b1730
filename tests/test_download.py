"""lab.download: Gutenberg stripping, the Linux recipe, atomic downloads, verification.

Every download goes to a real HTTP server on 127.0.0.1 started here; nothing
reaches the internet and the user cache is a temporary folder.
"""
from __future__ import annotations

import http.server
import io
import os
import re
import tarfile
import threading
from pathlib import Path

import pytest

import lab.download
from lab.corpus import KNOWN, CorpusError, KnownCorpus, load_corpus, sha256_text
from lab.download import DownloadError, VerificationError, download, fetch_corpus, linux_text, strip_gutenberg

pytestmark = pytest.mark.usefixtures("offline_cache")

BOOK = ("\"Well, Prince, so Genoa and Lucca are now just family estates of the\n"
        "Buonapartes.\"\n\nCaf\u00e9 \u00e0 la cr\u00e8me.\n\nconscious.\n")
GUTENBERG = ("\ufeffThe Project Gutenberg eBook of War and Peace\r\n\r\n"
             "This eBook is for the use of anyone anywhere.\r\n\r\n"
             "*** START OF THE PROJECT GUTENBERG EBOOK WAR AND PEACE ***\r\n\r\n\r\n"
             + BOOK.replace("\n", "\r\n") + "\r\n\r\n\r\n"
             "*** END OF THE PROJECT GUTENBERG EBOOK WAR AND PEACE ***\r\n\r\n"
             "Updated editions will replace the previous one.\r\n").encode("utf-8")


# -- a local HTTP server --------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        body, declared = route  # declared: the Content-Length sent (None: the true length)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) if declared is None else declared))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True  # a short body then a closed connection

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """(base URL, routes): routes maps a path to (body bytes, declared Content-Length or None)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    handler = type("Handler", (_Handler,), {"routes": {}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.routes
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def ordinary_mode() -> int:
    """The permissions open() gives a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- a fake Linux source tree ------------------------------------------------------------------

TREE = {  # path under the source root -> bytes
    "kernel/acct.c": b"// acct\nint a;\n",
    "kernel/async.c": b"// async\n",
    "kernel/bad.c": b"// bad \xff\xfe bytes\n",
    "kernel/dma.c": b"// dma.c\n",
    "kernel/dma/mapping.c": b"// dma/mapping.c\n",
    "kernel/range.c": b"// range\n",
    "kernel/rcu/rcu.h": b"// rcu.h\n",
    "kernel/rcu/tree.c": b"// tree\n",
    "kernel/reboot.c": b"// reboot\n",
    "kernel/Makefile": b"obj-y += acct.o\n",
    "kernel/notes.txt": b"not source\n",
    "kernel/gen.S": b"asm\n",
    "arch/x86/kernel/setup.c": b"// not under the top kernel/\n",
    "include/linux/kernel.h": b"// not under kernel/\n",
    "Makefile": b"VERSION = 6\n",
}
# Code-point order of the path: dma.c before dma/..., range.c before rcu/..., rcu/ before reboot.c.
ORDER = ["kernel/acct.c", "kernel/async.c", "kernel/bad.c", "kernel/dma.c", "kernel/dma/mapping.c",
         "kernel/range.c", "kernel/rcu/rcu.h", "kernel/rcu/tree.c", "kernel/reboot.c"]
EXPECTED_LINUX = "".join(TREE[p].decode("utf-8", errors="replace") for p in ORDER)


def make_tree(root: Path) -> Path:
    for rel, data in TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def make_tarball(path: Path, top: str = "linux-6.1", mode: str = "w:xz") -> Path:
    with tarfile.open(path, mode) as tar:
        for rel, data in reversed(list(TREE.items())):  # archive order is not path order
            info = tarfile.TarInfo(f"{top}/{rel}" if top else rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"{top}/kernel/zlink.c" if top else "kernel/zlink.c")
        link.type, link.linkname = tarfile.SYMTYPE, "acct.c"
        tar.addfile(link)
    return path


def make_deb(path: Path, tmp: Path, with_source: bool = True) -> Path:
    """A Debian package as linux-source-6.1's: ar members debian-binary, control.tar.xz (odd size:
    ar pads it) and data.tar.xz, which holds ./usr/src/linux-source-6.1.tar.xz among other files."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        members = {"./usr/share/doc/linux-source-6.1/copyright": b"GPL-2.0\n"}
        if with_source:
            members["./usr/src/linux-source-6.1.tar.xz"] = make_tarball(
                tmp / "inner.tar.xz", "linux-source-6.1").read_bytes()
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    out = [b"!<arch>\n"]
    for name, body in [("debian-binary", b"2.0\n"), ("control.tar.xz", b"c" * 7),
                       ("data.tar.xz", data.getvalue())]:
        out.append(f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(body):<10}`\n".encode("ascii"))
        out.append(body + b"\n" * (len(body) % 2))
    path.write_bytes(b"".join(out))
    return path


# -- Gutenberg ---------------------------------------------------------------------------------

def test_strip_gutenberg_exact():
    assert strip_gutenberg(GUTENBERG) == BOOK
    assert strip_gutenberg(GUTENBERG.decode("utf-8")) == BOOK


def test_strip_gutenberg_old_markers_and_cr_only():
    raw = ("Header\r*** START OF THIS PROJECT GUTENBERG EBOOK WAR AND PEACE ***\r\rBook.\r\r"
           "End of the Project Gutenberg EBook of War and Peace, by Leo Tolstoy\r\r"
           "*** END OF THIS PROJECT GUTENBERG EBOOK WAR AND PEACE ***\rlicence\r")
    assert strip_gutenberg(raw) == "Book.\n"


def test_strip_gutenberg_without_markers_keeps_text():
    assert strip_gutenberg("\ufeffa\r\nb\r\n\r\n") == "a\nb\n\n"


def test_strip_gutenberg_not_utf8():
    with pytest.raises(CorpusError, match=r"not UTF-8 \(byte 0xff at offset 2\)"):
        strip_gutenberg(b"ab\xffcd")


def test_an_empty_gutenberg_body_is_refused_and_nothing_is_written(tmp_path):
    empty = ("header\r\n*** START OF THE PROJECT GUTENBERG EBOOK WAR AND PEACE ***\r\n\r\n"
             "End of the Project Gutenberg EBook of War and Peace\r\n\r\n"
             "*** END OF THE PROJECT GUTENBERG EBOOK WAR AND PEACE ***\r\nlicence\r\n")
    with pytest.raises(CorpusError, match="^the Gutenberg text has nothing between its START and END markers$"):
        strip_gutenberg(empty)
    src = tmp_path / "pg2600.txt"
    src.write_text(empty)
    with pytest.raises(CorpusError, match="has nothing between its START and END markers"):
        fetch_corpus("war_and_peace", dest_dir=tmp_path / "out", source=src, verify=False)
    assert files_in(tmp_path / "out") == []


def test_stored_war_and_peace_survives_the_recipe():
    """The verified copy (char-rnn's warpeace_input.txt had CRLF, no markers) hashes right."""
    data = os.environ.get("VURN_DATA")
    path = Path(data or "-") / "war_and_peace.txt"
    if not path.is_file():
        pytest.skip("VURN_DATA does not hold war_and_peace.txt")
    text = path.read_text(encoding="utf-8")
    crlf = ("\ufeff" + text.replace("\n", "\r\n")).encode("utf-8")
    assert sha256_text(strip_gutenberg(crlf)) == KNOWN["war_and_peace"].sha256


def test_fetch_war_and_peace_over_http(server, offline_cache):
    base, routes = server
    routes["/pg2600.txt"] = (GUTENBERG, None)
    path = fetch_corpus("war_and_peace", url=f"{base}/pg2600.txt", verify=False, progress=False)
    assert path == offline_cache / "war_and_peace-unverified.txt"
    assert path.read_bytes() == BOOK.encode("utf-8")
    assert files_in(offline_cache) == ["war_and_peace-unverified.txt"]  # no temp file left
    assert path.stat().st_mode & 0o777 == ordinary_mode()   # readable as any file the user makes


def test_fetch_uses_env_url(server, offline_cache, monkeypatch):
    base, routes = server
    routes["/mirror/wp.txt"] = (GUTENBERG, None)
    monkeypatch.setenv("VURN_WAR_AND_PEACE_URL", f"{base}/mirror/wp.txt")
    path = fetch_corpus("war_and_peace", verify=False, progress=False)
    assert path.read_text(encoding="utf-8") == BOOK


def test_fetch_mismatch_keeps_nothing(server, offline_cache, tmp_path):
    base, routes = server
    routes["/pg2600.txt"] = (GUTENBERG, None)
    dest = tmp_path / "data"
    with pytest.raises(VerificationError) as err:
        fetch_corpus("war_and_peace", dest_dir=dest, url=f"{base}/pg2600.txt", progress=False)
    msg = str(err.value)
    assert KNOWN["war_and_peace"].sha256 in msg and sha256_text(BOOK) in msg
    assert "VURN_DATA" in msg and "verify=False" in msg and "Corpus.from_file" in msg
    assert files_in(dest) == []


def test_fetch_verified_then_load_corpus(server, offline_cache, monkeypatch):
    """With a matching hash the text lands under its known name, where load_corpus finds it."""
    base, routes = server
    routes["/pg2600.txt"] = (GUTENBERG, None)
    monkeypatch.setitem(KNOWN, "war_and_peace", KnownCorpus(
        "war_and_peace", "war_and_peace.txt", (0.8, 0.1, 0.1), sha256_text(BOOK), len(BOOK)))
    monkeypatch.setenv("VURN_WAR_AND_PEACE_URL", f"{base}/pg2600.txt")
    monkeypatch.delenv("VURN_DATA", raising=False)
    corpus = load_corpus("war_and_peace")  # not found locally: downloads, verifies, reads
    assert corpus.text == BOOK and corpus.sha256 == sha256_text(BOOK)
    assert files_in(offline_cache) == ["war_and_peace.txt"]
    routes.clear()  # the second load reads the cache, no download
    assert load_corpus("war_and_peace").text == BOOK


def test_load_corpus_download_mismatch_is_clear(server, offline_cache, monkeypatch):
    base, routes = server
    routes["/pg2600.txt"] = (GUTENBERG, None)
    monkeypatch.setenv("VURN_WAR_AND_PEACE_URL", f"{base}/pg2600.txt")
    monkeypatch.delenv("VURN_DATA", raising=False)
    with pytest.raises(VerificationError, match="not the verified copy.*verify=False"):
        load_corpus("war_and_peace")
    assert files_in(offline_cache) == []


def test_fetch_from_local_gutenberg_file(tmp_path):
    src = tmp_path / "pg2600.txt"
    src.write_bytes(GUTENBERG)
    path = fetch_corpus("war_and_peace", dest_dir=tmp_path / "out", source=src, verify=False)
    assert path.read_text(encoding="utf-8") == BOOK
    # a local path given as url= is read as a source too
    path = fetch_corpus("war_and_peace", dest_dir=tmp_path / "out2", url=str(src), verify=False)
    assert path.read_text(encoding="utf-8") == BOOK


# -- downloads that fail -----------------------------------------------------------------------

def test_interrupted_download(server, tmp_path):
    base, routes = server
    routes["/big.bin"] = (b"x" * 100, 1000)  # promises 1000 bytes, sends 100, closes
    dest = tmp_path / "dl" / "big.bin"
    with pytest.raises(DownloadError, match=r"interrupted.*100 of 1,000 bytes.*try again"):
        download(f"{base}/big.bin", dest, progress=False)
    assert files_in(dest.parent) == []


def test_interrupted_fetch_leaves_nothing(server, offline_cache):
    base, routes = server
    routes["/pg2600.txt"] = (GUTENBERG[:50], len(GUTENBERG))
    with pytest.raises(DownloadError, match="interrupted"):
        fetch_corpus("war_and_peace", url=f"{base}/pg2600.txt", verify=False, progress=False)
    assert files_in(offline_cache) == []


def test_http_404(server, offline_cache):
    base, _ = server
    with pytest.raises(DownloadError, match=r"HTTP 404.*source="):
        fetch_corpus("war_and_peace", url=f"{base}/nope.txt", progress=False)
    assert files_in(offline_cache) == []


def test_unreachable_host(offline_cache):
    # offline_cache points the default URLs at a closed local port
    with pytest.raises(DownloadError, match="cannot reach 127.0.0.1"):
        fetch_corpus("linux_kernel", progress=False)
    assert files_in(offline_cache) == []


def test_download_complete(server, tmp_path):
    base, routes = server
    routes["/f.bin"] = (b"0123456789" * 1000, None)
    dest = download(f"{base}/f.bin", tmp_path / "f.bin", progress=True)
    assert dest.read_bytes() == b"0123456789" * 1000
    assert files_in(tmp_path) == ["f.bin"]
    assert dest.stat().st_mode & 0o777 == ordinary_mode()  # not the temporary file's 0600


# -- Linux -------------------------------------------------------------------------------------

def test_linux_from_folder(tmp_path):
    root = make_tree(tmp_path / "linux-6.1")
    (root / "kernel" / "zlink.c").symlink_to("acct.c")  # links are not files of the tree
    text = linux_text(root)
    assert text == EXPECTED_LINUX
    assert "\ufffd\ufffd" in text and text.startswith("// acct\n")
    assert linux_text(root / "kernel") == EXPECTED_LINUX  # the kernel/ folder itself


@pytest.mark.parametrize("top,mode,suffix", [("linux-6.1", "w:xz", ".tar.xz"),
                                             ("linux-source-6.1", "w:gz", ".tar.gz"),
                                             ("", "w", ".tar")])
def test_linux_from_tarball(tmp_path, top, mode, suffix):
    tarball = make_tarball(tmp_path / f"src{suffix}", top, mode)
    assert linux_text(tarball) == EXPECTED_LINUX


def test_linux_from_debian_package(tmp_path):
    deb = make_deb(tmp_path / "linux-source-6.1_6.1.192-2_all.deb", tmp_path)
    assert linux_text(deb) == EXPECTED_LINUX


def test_linux_bad_debian_packages(tmp_path):
    no_source = make_deb(tmp_path / "other_all.deb", tmp_path, with_source=False)
    with pytest.raises(CorpusError, match="not a linux-source package.*6.1.192-2"):
        linux_text(no_source)
    whole = make_deb(tmp_path / "whole.deb", tmp_path).read_bytes()
    cut = tmp_path / "cut.deb"
    cut.write_bytes(whole[:len(whole) // 2])  # a download cut short
    with pytest.raises(CorpusError, match="could not read .*cut.deb"):
        linux_text(cut)


def test_linux_size_cap_stops_at_first_file_over(tmp_path):
    root = make_tree(tmp_path / "src")
    sizes = [len(TREE[p].decode("utf-8", errors="replace")) for p in ORDER]
    cap = sum(sizes[:5])  # exactly five files fit
    assert linux_text(root, max_chars=cap) == "".join(
        TREE[p].decode("utf-8", errors="replace") for p in ORDER[:5])
    # one char less: the fifth no longer fits, and no later (smaller) file is taken instead
    assert sizes[5] < sizes[4]
    assert linux_text(root, max_chars=cap - 1) == "".join(
        TREE[p].decode("utf-8", errors="replace") for p in ORDER[:4])


def test_a_first_source_file_over_the_cap_is_refused_by_name(tmp_path):
    first = TREE[ORDER[0]].decode("utf-8")
    root = make_tree(tmp_path / "src")
    tarball = make_tarball(tmp_path / "src.tar.xz")
    assert linux_text(root, max_chars=len(first)) == first
    for source in (root, tarball):
        with pytest.raises(CorpusError, match=rf"^the first source file in {re.escape(str(source))} alone is over "
                                              rf"{len(first) - 1} characters$"):
            linux_text(source, max_chars=len(first) - 1)


def test_fetch_linux_over_http(server, offline_cache, tmp_path):
    base, routes = server
    routes["/linux-6.1.tar.xz"] = (make_tarball(tmp_path / "l.tar.xz").read_bytes(), None)
    path = fetch_corpus("linux_kernel", url=f"{base}/linux-6.1.tar.xz", verify=False, progress=False)
    assert path == offline_cache / "linux_kernel-unverified.txt"
    assert path.read_text(encoding="utf-8") == EXPECTED_LINUX
    assert files_in(offline_cache) == ["linux_kernel-unverified.txt"]  # the tarball is gone


def test_fetch_tries_the_mirrors_in_order(server, offline_cache, tmp_path, monkeypatch):
    """The first mirror is gone (404): the package comes from the second, nothing is left behind."""
    base, routes = server
    routes["/snapshot/file/68f4"] = (make_deb(tmp_path / "p.deb", tmp_path).read_bytes(), None)
    monkeypatch.delenv("VURN_LINUX_URL")
    monkeypatch.setitem(lab.download.DEFAULT_URLS, "linux_kernel",
                        (f"{base}/pool/{lab.download.LINUX_DEB}", f"{base}/snapshot/file/68f4"))
    path = fetch_corpus("linux_kernel", verify=False, progress=False)
    assert path.read_text(encoding="utf-8") == EXPECTED_LINUX
    assert files_in(offline_cache) == ["linux_kernel-unverified.txt"]


def test_a_mirror_that_sends_something_else_is_skipped(server, offline_cache, tmp_path, monkeypatch):
    """A mirror answering 200 with an HTML page instead of the package: the next one is tried."""
    base, routes = server
    routes["/pool/p.deb"] = (b"<html>moved</html>", None)
    routes["/snapshot/p.deb"] = (make_deb(tmp_path / "p.deb", tmp_path).read_bytes(), None)
    monkeypatch.delenv("VURN_LINUX_URL")
    monkeypatch.setitem(lab.download.DEFAULT_URLS, "linux_kernel", (f"{base}/pool/p.deb", f"{base}/snapshot/p.deb"))
    assert fetch_corpus("linux_kernel", verify=False, progress=False).read_text(encoding="utf-8") == EXPECTED_LINUX


def test_fetch_every_mirror_failing_names_each(server, offline_cache, monkeypatch):
    base, routes = server
    routes["/cut.txt"] = (GUTENBERG[:50], len(GUTENBERG))
    monkeypatch.delenv("VURN_WAR_AND_PEACE_URL")
    monkeypatch.setitem(lab.download.DEFAULT_URLS, "war_and_peace", (f"{base}/gone.txt", f"{base}/cut.txt"))
    with pytest.raises(DownloadError, match=r"(?s)none of the 2 mirrors.*gone.txt.*HTTP 404.*cut.txt.*interrupted"):
        fetch_corpus("war_and_peace", progress=False)
    assert files_in(offline_cache) == []


def test_fetch_linux_verified(tmp_path, monkeypatch):
    monkeypatch.setitem(KNOWN, "linux_kernel", KnownCorpus(
        "linux_kernel", "linux_kernel.txt", (0.9, 0.05, 0.05), sha256_text(EXPECTED_LINUX),
        len(EXPECTED_LINUX)))
    root = make_tree(tmp_path / "src")
    path = fetch_corpus("linux_kernel", dest_dir=tmp_path / "data", source=root)
    assert path == tmp_path / "data" / "linux_kernel.txt"
    corpus = load_corpus("linux_kernel", data_dir=tmp_path / "data", download=False)
    assert corpus.text == EXPECTED_LINUX and corpus.splits == (0.9, 0.05, 0.05)


def test_fetch_linux_mismatch(tmp_path):
    root = make_tree(tmp_path / "src")
    with pytest.raises(VerificationError, match="linux-source-6.1.*verify=False"):
        fetch_corpus("linux_kernel", dest_dir=tmp_path / "data", source=root)
    assert files_in(tmp_path / "data") == []


def test_linux_bad_sources(tmp_path):
    with pytest.raises(CorpusError, match="does not exist.*tarball"):
        linux_text(tmp_path / "missing.tar.xz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="has no kernel/ folder"):
        linux_text(tmp_path / "empty")
    (tmp_path / "empty" / "kernel").mkdir()
    with pytest.raises(CorpusError, match=r"no \*\.c or \*\.h files under kernel/"):
        linux_text(tmp_path / "empty")
    junk = tmp_path / "junk.tar.xz"
    junk.write_bytes(b"this is not a tarball" * 10)
    with pytest.raises(CorpusError, match="could not read .*junk.tar.xz as a source tarball"):
        linux_text(junk)
    truncated = tmp_path / "cut.tar.xz"
    truncated.write_bytes(make_tarball(tmp_path / "whole.tar.xz").read_bytes()[:200])
    with pytest.raises(CorpusError, match="could not read"):
        linux_text(truncated)


def test_fetch_bad_arguments(tmp_path):
    with pytest.raises(CorpusError, match="unknown corpus 'shakespeare'.*war_and_peace, linux_kernel"):
        fetch_corpus("shakespeare")
    with pytest.raises(CorpusError, match="not both"):
        fetch_corpus("war_and_peace", url="http://127.0.0.1/x", source=tmp_path)
    with pytest.raises(CorpusError, match="is not a file"):
        fetch_corpus("war_and_peace", source=tmp_path)


