"""scripts/linux_split_files.py: crediting each file of the Linux corpus's source
(lab.download.linux_files) to the splits, on a toy tree checked by hand."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from lab.corpus import Corpus
from lab.download import linux_files, linux_text

spec = importlib.util.spec_from_file_location(
    "linux_split_files", Path(__file__).resolve().parents[1] / "scripts" / "linux_split_files.py")
lsf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lsf)

FILES = {"kernel/b.c": b"int b;\n" * 4, "kernel/a.c": b"int a;\n" * 2, "kernel/sub/c.h": b"#x \xff\n" * 5,
         "kernel/notes.txt": b"not source\n", "init/main.c": b"not kernel/\n"}


@pytest.fixture
def tree(tmp_path):
    for path, data in FILES.items():
        (tmp_path / "src" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / path).write_bytes(data)
    return tmp_path / "src"


def test_the_files_are_the_corpus_text_in_its_order(tree):
    files = linux_files(tree)
    assert [p for p, _ in files] == ["kernel/a.c", "kernel/b.c", "kernel/sub/c.h"]
    assert files[2][1] == "#x \ufffd\n" * 5 and "".join(t for _, t in files) == linux_text(tree)
    assert [p for p, _ in linux_files(tree, max_chars=14 + 28 + 24)] == ["kernel/a.c", "kernel/b.c"]


def test_each_files_characters_go_to_the_splits_they_fall_in(tree):
    corpus = Corpus.from_text("toy", linux_text(tree), splits=(0.5, 0.25, 0.25))   # 14 + 28 + 25 = 67 chars
    assert corpus.bounds("val") == (34, 50)                         # round(33.5) = 34, round(50.25) = 50
    table = lsf.file_table(linux_files(tree), corpus)
    assert table[["path", "start", "end", "train", "val", "test"]].values.tolist() == [
        ["kernel/a.c", 0, 14, 14, 0, 0],
        ["kernel/b.c", 14, 42, 20, 8, 0],
        ["kernel/sub/c.h", 42, 67, 0, 8, 17]]
    shares = lsf.folder_shares(table)
    assert shares["val"] == {"kernel": 0.5, "kernel/sub": 0.5} and shares["test"] == {"kernel/sub": 1.0}


def test_another_source_than_the_corpuss_is_refused_naming_the_file_and_the_right_package(tree):
    text = linux_text(tree)
    (tree / "kernel/b.c").write_bytes(b"int B;\n" * 4)
    files = linux_files(tree)
    with pytest.raises(ValueError, match=r"kernel/b.c \(at character 14\) is not toy's text there: .*"
                                         r"linux-source-6.1_6.1.192-2_all.deb"):
        lsf.file_table(files, Corpus.from_text("toy", text))
    (tree / "kernel/sub/c.h").unlink()
    (tree / "kernel/b.c").write_bytes(b"int b;\n" * 4)
    files = linux_files(tree)
    with pytest.raises(ValueError, match="the files give 42 characters, toy has 67"):
        lsf.file_table(files, Corpus.from_text("toy", text))


def test_the_script_writes_the_table_and_its_provenance(tree, tmp_path, monkeypatch, capsys):
    corpus = Corpus.from_text("linux_kernel", linux_text(tree), splits=(0.5, 0.25, 0.25))
    monkeypatch.setattr(lsf, "load_corpus", lambda name: corpus)
    lsf.main([str(tree), "--out", str(tmp_path / "files.csv")])
    table = pd.read_csv(tmp_path / "files.csv")
    assert table["path"].tolist() == ["kernel/a.c", "kernel/b.c", "kernel/sub/c.h"] and table["test"].sum() == 17
    prov = json.loads((tmp_path / "files.provenance.json").read_text())
    assert prov["split_chars"] == {"train": 34, "val": 16, "test": 17} and prov["files"] == 3
    assert prov["split_files"]["val"] == {"count": 2, "first": "kernel/b.c", "last": "kernel/sub/c.h"}
    assert capsys.readouterr().out.startswith("train kernel/a.c ... kernel/b.c")


@pytest.mark.parametrize("args, message", [
    (["{tmp}"], "has no kernel/ folder"),
    (["{tmp}/none.deb"], "does not exist"),
    (["{tmp}", "--out", "{tmp}/no/such/folder/x.csv"], "its folder does not exist"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        lsf.main([a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err, err
