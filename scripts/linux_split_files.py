"""Which kernel files does each split of the Linux corpus hold? (notebook 04, README Table 1)

    apt-get download linux-source-6.1                  # Debian's package, ~140 MB
    dpkg-deb --fsys-tarfile linux-source-6.1_*_all.deb | tar -x ./usr/src/linux-source-6.1.tar.xz
    tar -xJf usr/src/linux-source-6.1.tar.xz --wildcards 'linux-source-6.1/kernel/*'
    VURN_DATA=../shared/data python scripts/linux_split_files.py linux-source-6.1 \
        --source "Debian linux-source-6.1 6.1.192-2"
    # writes results/linux_split_files.csv and .provenance.json

``linux_kernel.txt`` is every ``*.c`` and ``*.h`` file under ``kernel/`` in path order, whole
files concatenated until the next would pass the paper's 6,206,996 characters (the corpus's
README). The text holds no file names, so this rebuilds that concatenation from a source
tree, refuses unless it is the corpus character for character, and then credits each
file's characters to the splits (``Corpus.bounds``) they fall in.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lab.checkpoint import code_commit  # noqa: E402
from lab.corpus import SPLITS, load_corpus  # noqa: E402

PAPER_CHARS = 6_206_996   # the paper's Linux corpus size: the corpus stops before passing it


def kernel_files(tree: Path) -> list[tuple[str, str]]:
    """(path, text) of the files the corpus is built from, in its order: ``kernel/**/*.c|h``
    sorted by path, decoded as UTF-8 with undecodable bytes replaced, up to the size limit."""
    paths = sorted(p.relative_to(tree).as_posix() for p in (tree / "kernel").rglob("*")
                   if p.suffix in (".c", ".h") and p.is_file())
    out, total = [], 0
    for path in paths:
        text = (tree / path).read_bytes().decode("utf-8", errors="replace")
        if total + len(text) > PAPER_CHARS:
            break
        out.append((path, text))
        total += len(text)
    return out


def file_table(files: list[tuple[str, str]], corpus) -> pd.DataFrame:
    """One row per file: its [start, end) in the corpus and its characters in each split.
    Raises ValueError, naming the first file that differs, unless the files are the corpus."""
    rows, pos = [], 0
    for path, text in files:
        if corpus.text[pos:pos + len(text)] != text:
            raise ValueError(f"{path} (at character {pos:,}) is not the corpus's text there: this source tree "
                             f"is not the one {corpus.name} was built from; use Debian's linux-source-6.1")
        row = {"path": path, "start": pos, "end": pos + len(text)}
        for split in SPLITS:
            a, b = corpus.bounds(split)
            row[split] = max(0, min(b, row["end"]) - max(a, pos))
        rows.append(row)
        pos += len(text)
    if pos != len(corpus.text):
        raise ValueError(f"the files give {pos:,} characters, the corpus has {len(corpus.text):,}: "
                         "this source tree is not the one it was built from")
    return pd.DataFrame(rows)


def folder_shares(table: pd.DataFrame) -> dict:
    """Each split's share of characters by folder (``kernel/rcu``; ``kernel`` for its top level)."""
    folders = table["path"].map(lambda p: p.rsplit("/", 1)[0])
    shares = {}
    for split in SPLITS:
        by = table.groupby(folders)[split].sum()
        by = by[by > 0] / table[split].sum()
        shares[split] = {k: round(float(v), 4) for k, v in by.sort_values(ascending=False).items()}
    return shares


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("tree", type=Path, help="a Linux 6.1 source tree (the folder holding kernel/)")
    p.add_argument("--source", default="unstated", help="where the tree came from, for the provenance "
                   "(e.g. 'Debian linux-source-6.1 6.1.192-2')")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "linux_split_files.csv")
    args = p.parse_args(argv)
    if not (args.tree / "kernel").is_dir():
        p.error(f"{args.tree} has no kernel/ folder: give the folder the source tarball unpacks to")
    corpus = load_corpus("linux_kernel")
    try:
        table = file_table(kernel_files(args.tree), corpus)
    except ValueError as e:
        p.error(str(e))
    table.to_csv(args.out, index=False)
    shares = folder_shares(table)
    files = {s: table.loc[table[s] > 0, "path"].tolist() for s in SPLITS}
    provenance = {"command": "python scripts/linux_split_files.py " + " ".join(map(shlex.quote, argv or sys.argv[1:])),
                  "commit": code_commit(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "source": args.source,
                  "files": len(table), "chars": int(table["end"].iloc[-1]),
                  "split_files": {s: {"count": len(f), "first": f[0], "last": f[-1]} for s, f in files.items()},
                  "folder_shares": shares}
    args.out.with_suffix(".provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
    for split in SPLITS:
        print(split, files[split][0], "...", files[split][-1], shares[split])


if __name__ == "__main__":
    main()
