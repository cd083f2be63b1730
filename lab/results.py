"""Where the committed results of long runs live (tables, curves, their provenance).

Notebooks read them from here rather than from a path relative to themselves, so they
run from any folder (JupyterLab, nbval, a copy served by the browser tests).

    >>> (results_dir() / "table2_ngram.csv").exists()
    True
"""
from __future__ import annotations

import os
from pathlib import Path


def results_dir() -> Path:
    """``$VURN_RESULTS`` if set, else the ``results/`` folder of the vurn checkout.

    >>> import os; from unittest import mock
    >>> with mock.patch.dict(os.environ, {"VURN_RESULTS": ""}):
    ...     (results_dir() / "table2_ngram.csv").is_file()
    True
    """
    path = Path(os.environ.get("VURN_RESULTS") or Path(__file__).resolve().parents[1] / "results")
    if not path.is_dir():
        raise FileNotFoundError(f"no results folder at {path}: vurn's committed results come with a "
                                "checkout of the repository (pip install -e .), or set VURN_RESULTS")
    return path
