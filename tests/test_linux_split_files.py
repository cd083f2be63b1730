"""scripts/linux_split_files.py: rebuilding the Linux corpus from a source tree and crediting
each file's characters to the splits, on a toy tree checked by hand."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lab.corpus import Corpus

spec = importlib.util.spec_from_file_location(
    "linux_split_files", Path(__file__).resolve().parents[1] / "scripts" / "linux_split_files.py")
lsf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lsf)

FILES = {"kernel/b.c": b"int b;\n" * 4, "kernel/a.c": b"int a;\n" * 2, "kernel/sub/c.h": b"#x \xff\n" * 5,
         "kernel/notes.txt": b"not source\n", "init/main.c": b"not kernel/\n"}


@pytest.fixture
def tree(tmp_path):
    for path, data in FILES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    return tmp_path


def test_the_files_are_kernels_c_and_h_files_in_path_order_decoded_as_the_corpus_is(tree):
    files = lsf.kernel_files(tree)
    assert [p for p, _ in files] == ["kernel/a.c", "kernel/b.c", "kernel/sub/c.h"]
    assert files[2][1] == "#x \ufffd\n" * 5                     # the undecodable byte replaced


def test_each_files_characters_go_to_the_splits_they_fall_in(tree):
    text = "".join(t for _, t in lsf.kernel_files(tree))          # 14 + 28 + 25 = 67 characters
    corpus = Corpus.from_text("toy", text, splits=(0.5, 0.25, 0.25))
    assert corpus.bounds("val") == (34, 50)                         # round(33.5) = 34, round(50.25) = 50
    table = lsf.file_table(lsf.kernel_files(tree), corpus)
    assert table[["path", "start", "end", "train", "val", "test"]].values.tolist() == [
        ["kernel/a.c", 0, 14, 14, 0, 0],
        ["kernel/b.c", 14, 42, 20, 8, 0],
        ["kernel/sub/c.h", 42, 67, 0, 8, 17]]
    shares = lsf.folder_shares(table)
    assert shares["val"] == {"kernel": 0.5, "kernel/sub": 0.5} and shares["test"] == {"kernel/sub": 1.0}


def test_the_size_limit_stops_before_the_file_that_would_pass_it(tree, monkeypatch):
    monkeypatch.setattr(lsf, "PAPER_CHARS", 14 + 28 + 24)
    assert [p for p, _ in lsf.kernel_files(tree)] == ["kernel/a.c", "kernel/b.c"]


def test_another_tree_than_the_corpuss_is_refused_naming_the_file(tree):
    text = "".join(t for _, t in lsf.kernel_files(tree))
    (tree / "kernel/b.c").write_bytes(b"int B;\n" * 4)
    with pytest.raises(ValueError, match=r"kernel/b.c \(at character 14\) is not the corpus's text"):
        lsf.file_table(lsf.kernel_files(tree), Corpus.from_text("toy", text))
    with pytest.raises(ValueError, match="the files give 42 characters, the corpus has 67"):
        (tree / "kernel/sub/c.h").unlink()
        (tree / "kernel/b.c").write_bytes(b"int b;\n" * 4)
        lsf.file_table(lsf.kernel_files(tree), Corpus.from_text("toy", text))


def test_a_folder_without_kernel_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        lsf.main([str(tmp_path)])
    assert e.value.code == 2 and "has no kernel/ folder" in capsys.readouterr().err
