"""The paper's map of the models (§4.1): a t-SNE of Table 1's models as a Bokeh scatter.

One point per model (``results/table1/map.csv``, from ``scripts/table1_map.py``):
colour = kind (RNN, LSTM, GRU), size = Table 1 row, marker = depth. Hover names the
model and its test loss; a tap opens it in a :class:`lab.Session` (``self.session``)
when its checkpoint is on this machine (a grid folder's ``runs/NAME/best.safetensors``:
``$VURN_GRID``, else the checkout's ``runs/grid``; or ``results/checkpoints/NAME.safetensors``),
and says where to get it when not.

    >>> import pandas as pd
    >>> points = pd.DataFrame({"name": ["wp-lstm1-64", "wp-rnn2-128", "wp-gru3-512"], "kind": ["lstm", "rnn", "gru"],
    ...                        "layers": [1, 2, 3], "row": [64, 128, 512], "status": ["finished"] * 3,
    ...                        "test_loss": [1.5, 1.35, 1.1], "x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 0.5]})
    >>> m = ModelMap(points, checkpoints=[])
    >>> m.choose("wp-rnn2-128"); m.selected, m.session is None
    ('wp-rnn2-128', True)
    >>> "no checkpoint" in m.status.value
    True

Run ``bokeh.io.output_notebook(resources=INLINE, hide_banner=True)`` once first.
"""
from __future__ import annotations

import html
import os
from pathlib import Path

import ipywidgets
import pandas as pd
import traitlets
from bokeh.embed import file_html
from bokeh.models import ColumnDataSource, HoverTool, TapTool
from bokeh.plotting import figure
from bokeh.resources import INLINE
from bokeh.transform import factor_cmap, factor_mark
from jupyter_bokeh import BokehModel

from lab.results import results_dir
from lab.table1 import find_checkpoint

__all__ = ["ModelMap"]

KIND_COLOURS = {"rnn": "#7f7f7f", "lstm": "#1f77b4", "gru": "#d62728"}
DEPTH_MARKERS = {"1": "circle", "2": "square", "3": "triangle"}
ROW_SIZES = {64: 9, 128: 13, 256: 18, 512: 24}
REQUIRED = {"name", "kind", "layers", "row", "x", "y"}
HINT = "<i>tap a point to open that model</i>"
PLOT_NAME = "model-map"  # the Bokeh figure's name: how BokehJS (and the browser tests) find it


def default_checkpoints() -> list[Path]:
    """Where taps look for checkpoints: ``$VURN_GRID`` (a grid folder anywhere, when set), the
    checkout's ``runs/grid``, then the kept checkpoints in ``results/checkpoints``.

        >>> default_checkpoints()[-1].name
        'checkpoints'
    """
    root = Path(__file__).resolve().parent.parent
    grid = [Path(os.environ["VURN_GRID"]).expanduser()] if os.environ.get("VURN_GRID") else []
    return [*grid, root / "runs" / "grid", results_dir() / "checkpoints"]


class ModelMap(ipywidgets.VBox):
    """The t-SNE of the models: tap a point to open that model in a Session.

    ``points`` is ``map.csv`` as a DataFrame (name, kind, layers, row, x, y, and
    optionally status and test_loss). ``checkpoints`` lists folders to look in: grid
    folders (``runs/NAME/best.safetensors``) or folders of ``NAME.safetensors``.
    ``selected`` is the tapped model's name; ``session`` its Session once opened.

        >>> import pathlib, tempfile
        >>> import pandas as pd
        >>> csv = pathlib.Path(tempfile.mkdtemp()) / "map.csv"
        >>> _ = csv.write_text("name,kind,layers,row,status,test_loss,x,y\\n"   # a tiny map.csv
        ...                    "wp-lstm1-64,lstm,1,64,finished,1.52,0.0,0.0\\n"
        ...                    "wp-gru3-512,gru,3,512,finished,1.08,4.2,1.5\\n")
        >>> m = ModelMap(pd.read_csv(csv), checkpoints=[])
        >>> m
        ModelMap(2 models; selected None)
        >>> m.source.data["label"]                  # what hovering a point says
        ['LSTM 1-layer, row 64', 'GRU 3-layer, row 512']
    """

    selected = traitlets.Unicode(None, allow_none=True)

    def __init__(self, points: pd.DataFrame, checkpoints=None, device=None, title: str | None = None):
        missing = REQUIRED - set(points.columns)
        if missing:
            raise ValueError(f"the map needs columns {sorted(REQUIRED)}; missing {sorted(missing)} "
                             "(make it with scripts/table1_map.py)")
        kinds, depths = set(points.kind) - set(KIND_COLOURS), {str(v) for v in points.layers} - set(DEPTH_MARKERS)
        if kinds or depths:
            raise ValueError(f"the map draws kinds {', '.join(KIND_COLOURS)} of 1 to 3 layers (the paper's grid); "
                             f"got {'kinds ' + str(sorted(kinds)) if kinds else ''}"
                             f"{' and ' if kinds and depths else ''}{'layers ' + str(sorted(depths)) if depths else ''}")
        self.points = points.reset_index(drop=True)
        self.folders = [Path(p) for p in (default_checkpoints() if checkpoints is None else checkpoints)]
        self.device, self.session = device, None
        self.title = title or f"{len(self.points)} models, t-SNE of p(correct character) on the test split"
        self.source = ColumnDataSource(self._columns())
        self.source.selected.on_change("indices", self._on_indices)
        self.figure = self._figure(self.source)
        self.view = BokehModel(self.figure)
        self.status = ipywidgets.HTML(HINT)
        super().__init__([self.view, self.status])
        self.observe(self._on_selected, names=["selected"])

    def __repr__(self) -> str:
        return f"ModelMap({len(self.points)} models; selected {self.selected})"

    def checkpoint(self, name: str) -> Path | None:
        """The first checkpoint of model ``name`` found in :attr:`folders`, or None.

            >>> import pathlib, tempfile
            >>> import pandas as pd
            >>> grid = pathlib.Path(tempfile.mkdtemp())
            >>> (grid / "runs" / "wp-lstm1-64").mkdir(parents=True)
            >>> (grid / "runs" / "wp-lstm1-64" / "best.safetensors").touch()    # a grid folder's run
            >>> points = pd.DataFrame({"name": ["wp-lstm1-64", "wp-gru3-512"], "kind": ["lstm", "gru"],
            ...                        "layers": [1, 3], "row": [64, 512], "x": [0.0, 1.0], "y": [0.0, 1.0]})
            >>> m = ModelMap(points, checkpoints=[grid])
            >>> m.checkpoint("wp-lstm1-64").relative_to(grid).as_posix(), m.checkpoint("wp-gru3-512")
            ('runs/wp-lstm1-64/best.safetensors', None)
        """
        return find_checkpoint(name, self.folders)

    def choose(self, name: str) -> None:
        """Open model ``name`` as a tap would (``selected``, then ``session`` if its checkpoint is here).

        Here a folder of ``NAME.safetensors`` holding a copy of the shipped model:

            >>> import pathlib, shutil, tempfile
            >>> import pandas as pd
            >>> from lab.pretrained import resolve
            >>> folder = pathlib.Path(tempfile.mkdtemp())
            >>> _ = shutil.copy(resolve("war_and_peace_lstm"), folder / "wp-lstm2-307.safetensors")
            >>> points = pd.DataFrame({"name": ["wp-lstm2-307"], "kind": ["lstm"], "layers": [2], "row": [307],
            ...                        "x": [0.0], "y": [0.0]})
            >>> m = ModelMap(points, checkpoints=[folder], device="cpu")
            >>> m.choose("wp-lstm2-307"); m.session
            Session(wp-lstm2-307: LSTM 2x307, corpus war_and_peace, device cpu)
        """
        if name not in set(self.points.name):
            raise KeyError(f"no model {name!r} on this map; it has {', '.join(self.points.name)}")
        if name == self.selected and self.session is None:  # chosen before but not opened: try again
            self._on_selected({"new": name})
        self.source.selected.indices = [int(self.points.index[self.points.name == name][0])]

    def _on_indices(self, attr, old, new) -> None:
        # a tap in empty space clears the selection in the browser: clear it here too; a
        # shift-tap adds a point to it: open the one just added
        added = sorted(set(new) - set(old)) or sorted(new)
        self.selected = str(self.points.name[added[0]]) if new else None

    def _on_selected(self, change) -> None:
        name = change["new"]
        if name is None:
            self.session = None
            self.status.value = HINT
            return
        path = self.checkpoint(name)
        if path is None:
            self.session = None
            where = ", ".join(str(f) for f in self.folders) or "no folders"
            self.status.value = (f"<b>{html.escape(str(name))}</b>: no checkpoint here (looked in {html.escape(where)}); "
                                 "train it with <code>python -m lab grid run</code>")
            return
        from lab.session import Session
        self.session = None  # the previous model goes before the next one loads
        self.status.value = f"opening {html.escape(str(path))} ..."
        try:
            self.session = Session.load(str(path), device=self.device)
        except Exception as e:  # noqa: BLE001 - a tap must say what went wrong, not die in a callback
            self.session = None
            self.status.value = (f"<b>{html.escape(name)}</b>: could not open {html.escape(str(path))}: "
                                 f"{html.escape(str(e))}")
            return
        self.status.value = f"<b>opened</b> {html.escape(repr(self.session))}: this map's <code>.session</code>"

    # -- Bokeh ----------------------------------------------------------------------------
    def _columns(self) -> dict:
        p = self.points
        data = {c: p[c].tolist() for c in p.columns}
        data["depth"] = [str(int(v)) for v in p.layers]
        data["kind_name"] = [k.upper() for k in p.kind]
        data["size"] = [ROW_SIZES.get(int(v), 12) for v in p.row]
        data["label"] = [f"{k.upper()} {int(n)}-layer, row {int(r)}" for k, n, r in zip(p.kind, p.layers, p.row)]
        data["loss"] = [f"{v:.3f}" for v in p.get("test_loss", pd.Series([float("nan")] * len(p)))]
        data["state"] = list(p.get("status", pd.Series(["?"] * len(p))))
        return data

    def _figure(self, source: ColumnDataSource):
        fig = figure(name=PLOT_NAME, width=700, height=460, title=self.title, tools="pan,wheel_zoom,reset,save",
                     toolbar_location="right")
        kinds = [k for k in KIND_COLOURS if k in set(self.points.kind)]
        depths = sorted(set(source.data["depth"]))
        fig.scatter("x", "y", source=source, size="size", fill_alpha=0.75, line_color="black",
                    color=factor_cmap("kind", [KIND_COLOURS[k] for k in kinds], kinds),
                    marker=factor_mark("depth", [DEPTH_MARKERS[d] for d in depths], depths),
                    legend_group="kind_name", selection_line_width=3, nonselection_fill_alpha=0.35)
        fig.add_tools(HoverTool(tooltips=[("model", "@name"), ("", "@label"), ("test loss", "@loss nats/char"),
                                          ("training", "@state")]),
                      TapTool(mode="replace"))   # a second tap keeps the model open (toggle would close it)
        fig.legend.title = "kind (size = row,\nmarker = depth)"
        fig.add_layout(fig.legend[0], "right")  # beside the plot: a legend inside would hide points
        fig.xaxis.axis_label, fig.yaxis.axis_label = "t-SNE 1", "t-SNE 2"
        return fig

    def to_html(self, path: str | Path | None = None) -> str:
        """A standalone HTML page of the map (BokehJS inlined: no network).

            >>> import pathlib, tempfile
            >>> import pandas as pd
            >>> points = pd.DataFrame({"name": ["wp-lstm1-64"], "kind": ["lstm"], "layers": [1], "row": [64],
            ...                        "x": [0.0], "y": [0.0]})
            >>> path = pathlib.Path(tempfile.mkdtemp()) / "map.html"
            >>> page = ModelMap(points, checkpoints=[]).to_html(path)
            >>> page[:15], path.stat().st_size > 0, "cdn.bokeh.org" in page
            ('<!DOCTYPE html>', True, False)
        """
        page = file_html(self._figure(ColumnDataSource(self._columns())), INLINE, title=self.title)
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page
