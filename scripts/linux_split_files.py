"""Which kernel files does each split of the Linux corpus hold? (notebook 04, README Table 1)

    apt-get download linux-source-6.1=6.1.192-2        # Debian's package (~140 MB): the corpus's release
    VURN_DATA=../shared/data python scripts/linux_split_files.py linux-source-6.1_6.1.192-2_all.deb
    # writes results/linux_split_files.csv and .provenance.json

``linux_kernel.txt`` holds no file names. This rebuilds it file by file from the source
(:func:`lab.download.linux_files`: the .deb, its tarball or an unpacked tree, as
``lab.download`` builds the corpus), refuses unless that is the corpus character for
character (other 6.1.x releases differ), and credits each file's characters to the splits
(``Corpus.bounds``) they fall in.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lab.checkpoint import code_commit  # noqa: E402
from lab.corpus import SPLITS, CorpusError, load_corpus  # noqa: E402
from lab.download import LINUX_DEB, linux_files  # noqa: E402

NOT_IT = (f"this source is not the one the corpus was built from: give Debian's {LINUX_DEB} "
          "(apt-get download linux-source-6.1=6.1.192-2)")


def file_table(files: list[tuple[str, str]], corpus) -> pd.DataFrame:
    """One row per file: its [start, end) in the corpus and its characters in each split.
    Raises ValueError, naming the first file that differs, unless the files are the corpus."""
    bounds = {split: corpus.bounds(split) for split in SPLITS}
    rows, pos = [], 0
    for path, text in files:
        if corpus.text[pos:pos + len(text)] != text:
            raise ValueError(f"{path} (at character {pos:,}) is not {corpus.name}'s text there: {NOT_IT}")
        end = pos + len(text)
        rows.append({"path": path, "start": pos, "end": end,
                     **{split: max(0, min(b, end) - max(a, pos)) for split, (a, b) in bounds.items()}})
        pos = end
    if pos != len(corpus.text):
        raise ValueError(f"the files give {pos:,} characters, {corpus.name} has {len(corpus.text):,}: {NOT_IT}")
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
    p.add_argument("source", type=Path, help=f"Debian's {LINUX_DEB}, its linux-source-6.1.tar.xz or the folder "
                   "that unpacks to (holding kernel/)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "linux_split_files.csv")
    args = p.parse_args(argv)
    if not args.out.parent.is_dir():
        p.error(f"--out {args.out}: its folder does not exist")
    try:
        table = file_table(linux_files(args.source), load_corpus("linux_kernel"))
    except (CorpusError, ValueError) as e:
        p.error(str(e))
    table.to_csv(args.out, index=False)
    shares = folder_shares(table)
    files = {s: table.loc[table[s] > 0, "path"].tolist() for s in SPLITS}
    command = " ".join(["python", "scripts/linux_split_files.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    provenance = {"command": f"VURN_DATA={shlex.quote(os.environ.get('VURN_DATA', ''))} {command}",
                  "commit": code_commit(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "source": args.source.name, "files": len(table), "chars": int(table["end"].iloc[-1]),
                  "split_chars": {s: int(table[s].sum()) for s in SPLITS},
                  "split_files": {s: {"count": len(f), "first": f[0], "last": f[-1]} for s, f in files.items()},
                  "folder_shares": shares}
    args.out.with_suffix(".provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
    for split in SPLITS:
        print(split, files[split][0], "...", files[split][-1], shares[split])


if __name__ == "__main__":
    main()
