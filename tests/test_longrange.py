"""The §4.3 comparisons (lab.longrange) on constructed texts."""
from pathlib import Path

import numpy as np
import pytest

from lab import longrange as lr


def test_error_overlap_counts():
    a = np.array([0.9, 0.4, 0.4, 0.6, 0.1])
    b = np.array([0.9, 0.4, 0.6, 0.3, 0.5])     # 0.5 is not an error: errors are < 0.5
    assert lr.error_overlap(a, b) == {"both wrong": 1, "only a wrong": 2, "only b wrong": 1,
                                      "both right": 1, "total": 5}


def test_by_character_means_and_order():
    text = "xabab"
    p_a = [0.9, 0.8, 0.7, 0.6]                 # for a, b, a, b
    p_b = [0.1, 0.8, 0.3, 0.6]
    df = lr.by_character(text, p_a, p_b)
    assert df.char.tolist() == ["a", "b"]
    assert df.loc[0, ["count", "p_a", "p_b"]].tolist() == [2, pytest.approx(0.8), pytest.approx(0.2)]
    assert df.loc[1, "difference"] == pytest.approx(0.0)
    assert lr.by_character(text, p_a, p_b, min_count=3).empty


def test_matching_and_distances():
    text = "{a{bc}d\n}}"          # the last brace has no opener
    assert lr.matching_open(text).tolist() == [-1, -1, -1, -1, -1, 2, -1, -1, 0, -1]
    p = np.linspace(0.1, 0.9, len(text) - 1)
    df = lr.closing_braces(text, p, p / 2)
    assert df.position.tolist() == [5, 8] and df.distance.tolist() == [3.0, 8.0]
    assert df.p_a.tolist() == pytest.approx([p[4], p[7]])


def test_bins_show_an_advantage_that_grows():
    # constructed: model a gets far braces right, model b only near ones
    body = lambda n: "{" + "x" * (n - 1) + "}"
    text = " " + "".join(body(n) for n in (3, 3, 30, 30, 90, 90))
    match = lr.matching_open(text)
    p_a = np.full(len(text) - 1, 0.5)
    p_b = np.full(len(text) - 1, 0.5)
    for i in np.nonzero(match >= 0)[0]:
        d = i - match[i]
        p_a[i - 1], p_b[i - 1] = 0.9, (0.9 if d < 10 else 0.2)
    bins = lr.closing_brace_bins(text, p_a, p_b, edges=(0, 10, 50, 1000))
    assert bins["count"].tolist() == [2, 2, 2]
    assert bins.advantage.round(6).tolist() == [0.0, 0.7, 0.7]
    with pytest.raises(ValueError, match="lie outside the bins 0..50"):
        lr.closing_brace_bins(text, p_a, p_b, edges=(0, 10, 50))   # the 90s would be dropped
    with pytest.raises(ValueError, match="increasing"):
        lr.closing_brace_bins(text, p_a, p_b, edges=(0, 50, 10))


def test_lengths_are_checked():
    with pytest.raises(ValueError, match="one probability per next character: 3"):
        lr.by_character("abcd", [0.1, 0.2], [0.1, 0.2])
    with pytest.raises(ValueError, match="differ in length"):
        lr.error_overlap([0.1, 0.2], [0.1])


def test_results_dir_finds_the_committed_results_and_names_a_missing_one(monkeypatch, tmp_path):
    import lab.results
    root = Path(lab.results.__file__).resolve().parents[1]
    monkeypatch.delenv("VURN_RESULTS", raising=False)
    assert lab.results.results_dir() == root / "results"
    assert (lab.results.results_dir() / "table1" / "table1.csv").is_file()
    monkeypatch.setenv("VURN_RESULTS", str(tmp_path))
    assert lab.results.results_dir() == tmp_path                  # a folder named by the user wins
    monkeypatch.setenv("VURN_RESULTS", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"no results folder at .*nowhere.*set VURN_RESULTS"):
        lab.results.results_dir()


def test_a_text_too_short_to_compare_is_named():
    with pytest.raises(ValueError, match=r"the text has 0 character\(s\): comparing predictions needs at least two"):
        lr.by_character("", [], [])
