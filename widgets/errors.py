"""The error explorer (paper §4.4): where a model's errors fall, and what they look like.

    >>> from lab import Session
    >>> from lab.errors import session_breakdown
    >>> from widgets.errors import ErrorExplorer
    >>> big = session_breakdown(Session.load("war_and_peace_lstm"), length=20_000)          # doctest: +SKIP
    >>> small = session_breakdown(Session.load("results/checkpoints/war_and_peace-lstm1-64.safetensors"),
    ...                           length=20_000)                                          # doctest: +SKIP
    >>> w = ErrorExplorer({"2x307": big, "1x64": small})                                  # doctest: +SKIP
    >>> w.select("1x64", "ngram"); w.selection                                            # doctest: +SKIP
    {'model': '1x64', 'category': 'ngram', 'page': 0, 'positions': [...]}

One bar chart per model, side by side, on one scale: errors of each category per 100
characters (a bar's label also gives its share of that model's errors). A click on a bar
selects that model and category and shows its errors a page at a time, each in its
context: every error in view is coloured by its category, the selected one in full
colour and outlined; hovering a character shows the model's five most likely characters
there. When the models were scored on the same text, each example also says how the
other models did on that character. The selection (``model_name``, ``category``,
``page``, ``shown``) is plain traits, readable and settable from Python.
"""
from __future__ import annotations

import html
from pathlib import Path

import anywidget
import numpy as np
import traitlets

from lab.errors import CATEGORIES, LABELS, NOT_AN_ERROR, ErrorBreakdown
from widgets.html import visible

HERE = Path(__file__).resolve().parent
COLOURS = {"ngram": "#1f77b4", "memory": "#9467bd", "rare_words": "#2ca02c", "word_model": "#ff7f0e",
           "punctuation": "#8c564b", "boost": "#e377c2", "other": "#7f7f7f"}


class ErrorExplorer(anywidget.AnyWidget):
    """Bar charts of :class:`lab.errors.ErrorBreakdown` s side by side; a click pages through examples.

    >>> from lab.errors import OracleConfig, error_breakdown
    >>> r = error_breakdown("ab ab ab", [0.9, 0.1, 0.2, 0.45, 0.1, 0.2, 0.3], word_counts={"ab": 9},
    ...                     config=OracleConfig(orders=()), name="toy")
    >>> w = ErrorExplorer([r], per_page=1)
    >>> w.select("toy", "memory", page=1)
    >>> w.selection
    {'model': 'toy', 'category': 'memory', 'page': 1, 'positions': [7]}
    >>> w
    ErrorExplorer(toy; selected: toy / memory, page 2 of 2)
    """

    _esm = HERE / "errors.js"
    _css = HERE / "errors.css"

    models = traitlets.List(traitlets.Unicode()).tag(sync=True)
    chart = traitlets.List(traitlets.Dict()).tag(sync=True)        # one row per (model, category)
    categories = traitlets.List(traitlets.Unicode(), default_value=list(CATEGORIES)).tag(sync=True)
    labels = traitlets.Dict(default_value=dict(LABELS)).tag(sync=True)
    colours = traitlets.Dict(default_value=dict(COLOURS)).tag(sync=True)
    model_name = traitlets.Unicode("").tag(sync=True)              # selected model ("" for none)
    category = traitlets.Unicode("").tag(sync=True)                # selected category ("" for none)
    page = traitlets.Int(0).tag(sync=True)
    per_page = traitlets.Int(5).tag(sync=True)
    n_pages = traitlets.Int(0).tag(sync=True)
    n_selected = traitlets.Int(0).tag(sync=True)                   # errors in the selected category
    shown = traitlets.List(traitlets.Int()).tag(sync=True)         # text positions of the examples shown
    examples = traitlets.List(traitlets.Dict()).tag(sync=True)
    context = traitlets.Int(50).tag(sync=True)
    height = traitlets.Int(420).tag(sync=True)                     # px of the examples area

    def __init__(self, breakdowns, per_page: int = 5, context: int = 50, **kw):
        if isinstance(breakdowns, ErrorBreakdown):
            breakdowns = [breakdowns]
        if isinstance(breakdowns, dict):
            items = list(breakdowns.items())
        else:
            items = [(r.name if isinstance(r, ErrorBreakdown) else "", r) for r in breakdowns]
        if not items:
            raise ValueError("give at least one ErrorBreakdown (lab.errors.error_breakdown or session_breakdown)")
        for name, r in items:
            if not isinstance(r, ErrorBreakdown):
                raise TypeError(f"{name or 'each item'} must be an ErrorBreakdown, got {type(r).__name__}")
            if not name:
                raise ValueError("every breakdown needs a name: pass a dict {name: breakdown}")
        names = [n for n, _ in items]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must differ, got {names}: pass a dict {{name: breakdown}}")
        if per_page < 1:
            raise ValueError(f"per_page must be at least 1, got {per_page}")
        if context < 0:
            raise ValueError(f"context is the characters shown either side of an error, at least 0; got {context}")
        self.breakdowns: dict[str, ErrorBreakdown] = dict(items)
        chart = []
        for name, r in items:
            c = r.counts()
            chart += [{"model": name, "category": cat, "count": int(c.loc[cat, "count"]),
                       "fraction": float(c.loc[cat, "fraction"]), "per_char": float(c.loc[cat, "per_char"]),
                       "n_errors": r.n_errors, "n_chars": r.n_chars} for cat in CATEGORIES]
        super().__init__(models=names, chart=chart, per_page=per_page, context=context, **kw)
        self.observe(self._on_choice, names=["model_name", "category"])
        self.observe(self._on_per_page, names=["per_page"])
        self.observe(self._refresh, names=["page", "context"])
        self._refresh()   # a selection given to the constructor (model_name=..., category=...) shows at once

    def __repr__(self) -> str:
        sel = (f"selected: {self.model_name} / {self.category}, page {self.page + 1} of {self.n_pages}"
               if self.category else "nothing selected")
        return f"ErrorExplorer({', '.join(self.models)}; {sel})"

    # -- selection ---------------------------------------------------------------------------
    @traitlets.validate("model_name")
    def _valid_model(self, proposal):
        if proposal["value"] and proposal["value"] not in self.models:
            raise traitlets.TraitError(f"unknown model {proposal['value']!r}: choose one of {', '.join(self.models)}")
        return proposal["value"]

    @traitlets.validate("category")
    def _valid_category(self, proposal):
        if proposal["value"] and proposal["value"] not in CATEGORIES:
            raise traitlets.TraitError(f"unknown category {proposal['value']!r}: choose one of {', '.join(CATEGORIES)}")
        return proposal["value"]

    @traitlets.validate("page")
    def _valid_page(self, proposal):
        page = proposal["value"]
        n = self._count_pages()
        if not 0 <= page < max(n, 1):
            raise traitlets.TraitError(f"page {page} does not exist: the selection has pages 0..{max(n, 1) - 1}")
        return page

    @traitlets.validate("context")
    def _valid_context(self, proposal):
        if proposal["value"] < 0:
            raise traitlets.TraitError(f"context must be at least 0, got {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("per_page")
    def _valid_per_page(self, proposal):
        if proposal["value"] < 1:
            raise traitlets.TraitError(f"per_page must be at least 1, got {proposal['value']}")
        return proposal["value"]

    def _positions(self) -> np.ndarray:
        if not (self.model_name and self.category):
            return np.zeros(0, dtype=np.int64)
        return self.breakdowns[self.model_name].positions(self.category)

    def _count_pages(self) -> int:
        return -(-len(self._positions()) // self.per_page)

    def select(self, model: str, category: str, page: int = 0) -> None:
        """Select a model's category and show one page of its examples (as a click on its bar).

            >>> from lab.errors import OracleConfig, error_breakdown
            >>> r = error_breakdown("ab ab ab", [0.9, 0.1, 0.2, 0.45, 0.1, 0.2, 0.3], word_counts={"ab": 9},
            ...                     config=OracleConfig(orders=()), name="toy")
            >>> w = ErrorExplorer(r, per_page=1)
            >>> w.select("toy", "memory"); w.n_selected, w.n_pages, w.shown
            (2, 2, [4])
        """
        with self.hold_trait_notifications():
            self.model_name, self.category = model, category
        self.page = page

    @property
    def selection(self) -> dict:
        """What the user selected: model, category, page and the text positions shown.

            >>> from lab.errors import OracleConfig, error_breakdown
            >>> r = error_breakdown("ab ab ab", [0.9, 0.1, 0.2, 0.45, 0.1, 0.2, 0.3], word_counts={"ab": 9},
            ...                     config=OracleConfig(orders=()), name="toy")
            >>> w = ErrorExplorer(r)
            >>> w.selection
            {'model': '', 'category': '', 'page': 0, 'positions': []}
            >>> w.category = "memory"; w.model_name = "toy"     # as set from the browser
            >>> w.selection
            {'model': 'toy', 'category': 'memory', 'page': 0, 'positions': [4, 7]}
        """
        return {"model": self.model_name, "category": self.category, "page": self.page, "positions": list(self.shown)}

    def _on_choice(self, change) -> None:
        if self.page != 0:
            self.page = 0   # a new category starts at its first page (this refreshes)
        else:
            self._refresh()

    def _on_per_page(self, change) -> None:
        page = self.page * change["old"] // change["new"]   # the page that holds the first example in view
        if page != self.page:
            self.page = page    # this refreshes
        else:
            self._refresh()

    def _refresh(self, change=None) -> None:
        idx = self._positions()
        self.n_selected = len(idx)
        self.n_pages = self._count_pages()
        chosen = idx[self.page * self.per_page:(self.page + 1) * self.per_page]
        self.examples = [self._example(int(j)) for j in chosen]
        self.shown = [int(j) for j in chosen]

    # -- one example -------------------------------------------------------------------------
    def _example(self, j: int) -> dict:
        r = self.breakdowns[self.model_name]
        a, b = max(0, j - self.context), min(len(r.text), j + self.context + 1)
        chars = []
        for k in range(a, b):
            c = {"ch": r.text[k], "i": k}
            if k >= 1:
                cat = int(r.category[k - 1])
                c["p"] = round(float(r.prob[k - 1]), 4)
                c["cat"] = "" if cat == NOT_AN_ERROR else CATEGORIES[cat]
                if r.top_ids is not None:
                    c["top"] = [[ch, round(p, 3)] for ch, p in r.top_k(k)]
            chars.append(c)
        others = []
        for name, o in self.breakdowns.items():
            if name != self.model_name and o.text == r.text:
                cat = int(o.category[j - 1])
                others.append({"model": name, "p": round(float(o.prob[j - 1]), 4),
                               "category": "" if cat == NOT_AN_ERROR else CATEGORIES[cat]})
        step = float(r.step[j - 1])
        return {"position": j, "char": r.text[j], "p": round(float(r.prob[j - 1]), 4),
                "step": None if np.isnan(step) else step, "start": a, "chars": chars, "others": others}

    # -- static export -----------------------------------------------------------------------
    def to_html(self, path: str | Path | None = None) -> str:
        """A standalone HTML page: the charts and the selected page of examples (no scripts, no network).

        >>> from lab.errors import OracleConfig, error_breakdown
        >>> cfg = OracleConfig(orders=(), rare_counts=(), punctuation="")
        >>> r = error_breakdown("a<b", [0.1, 0.2], config=cfg, name="m")
        >>> w = ErrorExplorer([r]); w.select("m", "boost")
        >>> page = w.to_html()
        >>> "&lt;" in page and "<script" not in page and page.count('class="err-example"') == 2
        True
        """
        top = max([row["per_char"] for row in self.chart] + [1e-9])
        panels = []
        for name in self.models:
            rows = [row for row in self.chart if row["model"] == name]
            n_err, n_chars = rows[0]["n_errors"], rows[0]["n_chars"]
            bars = "".join(
                f'<tr><td style="padding-right:6px">{html.escape(LABELS[row["category"]])}</td>'
                f'<td style="width:240px"><div style="background:{COLOURS[row["category"]]};height:14px;'
                f'width:{240 * row["per_char"] / top:.1f}px"></div></td>'
                f'<td style="padding-left:6px">{row["count"]:,} ({100 * row["fraction"]:.1f}%)</td></tr>'
                for row in rows)
            panels.append(f'<div style="margin-right:24px"><b>{html.escape(name)}</b>: {n_err:,} errors in '
                          f'{n_chars:,} characters ({100 * n_err / n_chars:.1f}%)<table>{bars}</table></div>')
        examples = []
        for ex in self.examples:
            spans = []
            for c in ex["chars"]:
                style, title = "", f'#{c["i"]}'
                if c.get("cat"):
                    colour = COLOURS[c["cat"]]
                    style = (f' style="background:{colour};color:#fff;outline:2px solid #000"' if c["i"] == ex["position"]
                             else f' style="background:{colour}55"')
                if "p" in c:
                    title += f' p={c["p"]:.3f} {LABELS.get(c.get("cat"), "")}'
                if c.get("top"):
                    title += " next: " + " ".join(f"{visible(ch)} {p:.2f}" for ch, p in c["top"])
                shown = "\u21b5\n" if c["ch"] == "\n" else c["ch"]
                spans.append(f'<span{style} title="{html.escape(title)}">{html.escape(shown)}</span>')
            examples.append(f'<div class="err-example" style="white-space:pre-wrap;font-family:monospace;'
                            f'border-top:1px solid #ddd;padding:4px 0">{"".join(spans)}</div>')
        head = (f"<h4>{html.escape(self.model_name)}: {html.escape(LABELS[self.category])}, page {self.page + 1} of "
                f"{self.n_pages}</h4>" if self.category else "")
        page = ("<!doctype html><meta charset='utf-8'><title>Error explorer</title>"
                "<div style='font-family:sans-serif;font-size:13px'>"
                f"<div style='display:flex'>{''.join(panels)}</div>{head}{''.join(examples)}</div>")
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page
