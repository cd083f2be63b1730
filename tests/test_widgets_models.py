"""widgets.models.ModelMap: the t-SNE of the models; a tap opens the model in a Session, or says why not."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from lab.checkpoint import save_checkpoint
from lab.models import CharRNN, ModelConfig
from lab.session import Session
from widgets.models import ModelMap


def points(names=("toy-lstm1-64", "toy-gru2-128", "toy-rnn3-512")) -> pd.DataFrame:
    kinds = [n.split("-")[1] for n in names]
    return pd.DataFrame({"name": list(names), "kind": [k[:-1] for k in kinds], "layers": [int(k[-1]) for k in kinds],
                         "row": [int(n.split("-")[-1]) for n in names], "status": ["finished", "stopped", "finished"],
                         "test_loss": [1.5, 1.4, 1.3], "x": [0.0, 1.0, 2.0], "y": [1.0, 0.0, 1.0]})


def grid_with_one_model(tmp_path, toy_corpus=None):
    """A grid folder holding runs/toy-lstm1-64/best.safetensors (a real, loadable checkpoint)."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig("lstm", 1, 6, 4)).eval()
    path = tmp_path / "grid" / "runs" / "toy-lstm1-64" / "best.safetensors"
    path.parent.mkdir(parents=True)
    save_checkpoint(path, {f"model.{k}": v for k, v in model.state_dict().items()},
                    {"model_config": model.cfg.to_dict(), "vocab": ["a", "b", "c", "\n"], "corpus": "toy",
                     "train_config": {"corpus": "toy"}})
    return tmp_path / "grid", model


def test_the_figure_encodes_kind_row_and_depth():
    m = ModelMap(points(), checkpoints=[])
    data = m.source.data
    assert data["depth"] == ["1", "2", "3"] and data["size"] == [9, 13, 24]
    assert data["label"] == ["LSTM 1-layer, row 64", "GRU 2-layer, row 128", "RNN 3-layer, row 512"]
    hover = next(t for t in m.figure.tools if type(t).__name__ == "HoverTool")
    assert ("model", "@name") in hover.tooltips
    assert repr(m) == "ModelMap(3 models; selected None)"
    assert m.figure.legend[0] in m.figure.right                          # beside the plot: it hides no point
    assert not [x for x in m.figure.center if type(x).__name__ == "Legend"]


def test_a_tap_opens_the_model_in_a_session(tmp_path):
    grid, model = grid_with_one_model(tmp_path)
    m = ModelMap(points(), checkpoints=[grid])
    m.source.selected.indices = [0]          # what a tap in the browser does, through jupyter_bokeh
    assert m.selected == "toy-lstm1-64" and isinstance(m.session, Session)
    assert m.session.name == "toy-lstm1-64" and "opened" in m.status.value
    for k, v in model.state_dict().items():
        assert torch.equal(m.session.model.state_dict()[k], v)


def test_a_model_without_a_checkpoint_says_where_it_looked(tmp_path):
    grid, _ = grid_with_one_model(tmp_path)
    m = ModelMap(points(), checkpoints=[grid])
    m.choose("toy-lstm1-64")
    m.choose("toy-gru2-128")
    assert m.selected == "toy-gru2-128" and m.session is None
    assert "no checkpoint here" in m.status.value and str(grid) in m.status.value and "grid run" in m.status.value
    with pytest.raises(KeyError, match="no model 'toy-gru9-64' on this map"):
        m.choose("toy-gru9-64")


def test_a_flat_folder_of_checkpoints_is_searched_too(tmp_path):
    grid, _ = grid_with_one_model(tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    (grid / "runs" / "toy-lstm1-64" / "best.safetensors").rename(flat / "toy-lstm1-64.safetensors")
    assert ModelMap(points(), checkpoints=[grid, flat]).checkpoint("toy-lstm1-64") == flat / "toy-lstm1-64.safetensors"


def test_vurn_grid_names_a_grid_folder_anywhere(tmp_path, monkeypatch):
    grid, model = grid_with_one_model(tmp_path)
    monkeypatch.setenv("VURN_GRID", str(grid))
    m = ModelMap(points())                                   # no checkpoints given: the defaults
    assert m.folders[0] == grid and m.folders[-1].name == "checkpoints"
    m.choose("toy-lstm1-64")
    assert isinstance(m.session, Session)
    monkeypatch.delenv("VURN_GRID")
    assert grid not in ModelMap(points()).folders


def test_bad_points_and_html_export(tmp_path):
    with pytest.raises(ValueError, match=r"missing \['x', 'y'\].*table1_map.py"):
        ModelMap(points().drop(columns=["x", "y"]))
    with pytest.raises(ValueError, match=r"1 to 3 layers.*got layers \['4'\]"):
        ModelMap(points().assign(layers=4))
    with pytest.raises(ValueError, match=r"kinds rnn, lstm, gru.*got kinds \['LSTM'\]"):
        ModelMap(points().assign(kind="LSTM"))
    from bokeh.models import TapTool
    assert ModelMap(points(), checkpoints=[]).figure.select_one({"type": TapTool}).mode == "replace"
    m = ModelMap(points(), checkpoints=[])
    m.source.selected.indices = [2]
    m.source.selected.indices = [0, 2]                  # a shift-tap adds point 0: that one opens
    assert m.selected == "toy-lstm1-64"
    page = ModelMap(points(), checkpoints=[]).to_html(tmp_path / "map.html")
    assert page.startswith("<!DOCTYPE html>") and "cdn.bokeh.org" not in page
    assert (tmp_path / "map.html").read_text(encoding="utf-8") == page


def test_a_checkpoint_that_fails_to_open_is_reported_and_a_cleared_tap_clears(tmp_path):
    grid, _ = grid_with_one_model(tmp_path)
    bad = grid / "runs" / "toy-gru2-128" / "best.safetensors"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a checkpoint")
    m = ModelMap(points(), checkpoints=[grid])
    m.choose("toy-gru2-128")
    assert m.session is None and "could not open" in m.status.value and str(bad) in m.status.value
    m.choose("toy-lstm1-64")
    assert m.session is not None and "opened" in m.status.value
    m.source.selected.indices = []          # a tap on empty space
    assert m.selected is None and m.session is None and "tap a point" in m.status.value


def test_choosing_a_model_again_retries_once_its_checkpoint_is_there(tmp_path):
    grid, _ = grid_with_one_model(tmp_path)
    m = ModelMap(points(), checkpoints=[tmp_path / "elsewhere"])
    m.choose("toy-lstm1-64")
    assert m.session is None and "no checkpoint here" in m.status.value
    m.folders = [grid]                       # e.g. the grid was restored meanwhile
    m.choose("toy-lstm1-64")
    assert m.session is not None and "opened" in m.status.value
