"""Gate activation statistics (paper §4.2, Figure 3): how often each gate saturates.

A gate value is left-saturated below ``left`` (0.1) and right-saturated above ``right``
(0.9). For every unit of every layer this gives the fraction of characters in each;
the paper plots right (x) against left (y) per gate, coloured by layer.

    >>> import numpy as np
    >>> gates = {"layers.0.gates.forget": np.array([[0.05, 0.5], [0.95, 0.5], [0.99, 0.5]])}
    >>> saturation(gates)[["layer", "gate", "unit", "left", "right"]].values.tolist()
    [[0, 'forget', 0, 0.3333333333333333, 0.6666666666666666], [0, 'forget', 1, 0.0, 0.0]]
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

# the gates the paper plots: LSTM input, forget, output; GRU reset and update
SATURATING = ("input", "forget", "output", "reset", "update")
_KEY = re.compile(r"layers\.(\d+)\.gates\.(\w+)$")


def value_range(what: str) -> tuple[float, float]:
    """The range a traced quantity lives in, for a colour scale: (0, 1) for a sigmoid gate
    (the saturating ones), (-1, 1) for tanh(c), h and the candidate (the raw cell is
    unbounded: shown clipped to it).

    >>> value_range("forget"), value_range("cell")
    ((0.0, 1.0), (-1.0, 1.0))
    """
    return (0.0, 1.0) if what in SATURATING else (-1.0, 1.0)


def saturation(trace: Mapping, left: float = 0.1, right: float = 0.9, gates=SATURATING,
               exclude_last: bool = False) -> pd.DataFrame:
    """Fractions of characters on which each unit's gates are left- and right-saturated.

    ``trace`` is a :class:`lab.trace.Trace` or any mapping with ``layers.{l}.gates.{name}``
    arrays of shape (T, H). Returns one row per (layer, gate, unit); the thresholds are
    in ``.attrs`` (``left``, ``right``).

    >>> from lab import Session
    >>> tr = Session.load("war_and_peace_lstm", device="cpu").trace('He said "yes" and "no" twice.')
    >>> sat = saturation(tr)                                  # 2 layers x 3 gates x 307 units
    >>> len(sat), sat.attrs
    (1842, {'left': 0.1, 'right': 0.9})
    >>> sat.groupby("gate", sort=False)["right"].mean().round(2).to_dict()
    {'input': 0.28, 'forget': 0.08, 'output': 0.22}
    """
    if not 0 <= left < right <= 1:
        raise ValueError(f"need 0 <= left < right <= 1, got left={left}, right={right}")
    gates = _gate_names(gates)
    frames = []
    for key in trace:
        m = _KEY.match(key)
        if not m or m.group(2) not in gates:
            continue
        values = np.asarray(trace[key], dtype=np.float32)
        if values.ndim != 2:
            raise ValueError(f"{key} must be (characters, units), got shape {values.shape}")
        if exclude_last:
            values = values[:-1]
        frames.append(pd.DataFrame({
            "layer": int(m.group(1)), "gate": m.group(2), "unit": np.arange(values.shape[1]),
            "left": (values < left).mean(0).astype(float), "right": (values > right).mean(0).astype(float)}))
    if not frames:
        raise ValueError("no saturating gates in this trace (an RNN has none): use an LSTM or GRU trace")
    sat = pd.concat(frames, ignore_index=True)
    sat.attrs.update(left=left, right=right)  # the thresholds travel with the table (plots label them)
    return sat


def _gate_names(gates) -> tuple[str, ...]:
    """``gates`` as a tuple of names: one name alone is one gate, not its letters."""
    gates = (gates,) if isinstance(gates, str) else tuple(gates)
    unknown = [g for g in gates if g not in SATURATING]
    if unknown:
        raise ValueError(f"unknown gate(s) {unknown}: the saturating gates are {', '.join(SATURATING)}")
    return gates


def gates_of(trace: Mapping, gates=SATURATING) -> dict[str, list[int]]:
    """The saturating gates a trace holds, each with its layers, in the paper's order.

    >>> gates_of({"layers.1.gates.forget": 0, "layers.0.gates.forget": 0, "layers.0.gates.input": 0,
    ...           "layers.0.gates.candidate": 0, "layers.0.hidden": 0})
    {'input': [0], 'forget': [0, 1]}
    """
    gates = _gate_names(gates)
    found: dict[str, set[int]] = {}
    for key in trace:
        m = _KEY.match(key)
        if m and m.group(2) in gates:
            found.setdefault(m.group(2), set()).add(int(m.group(1)))
    return {g: sorted(found[g]) for g in gates if g in found}


def histogram(trace: Mapping, gate: str, layer: int, unit: int | None = None,
              bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """How one gate's activations are spread over [0, 1]: the fraction of characters per bin.

    ``unit=None`` pools every unit of the layer. Returns ``(fractions, edges)`` with
    ``bins`` fractions that sum to 1 and ``bins + 1`` edges from 0 to 1.

    >>> trace = {"layers.0.gates.forget": np.array([[0.05, 0.5], [0.95, 0.97]])}
    >>> fractions, edges = histogram(trace, "forget", 0, unit=1, bins=2)
    >>> fractions.tolist(), edges.tolist()
    ([0.0, 1.0], [0.0, 0.5, 1.0])
    >>> histogram(trace, "forget", 0, bins=2)[0].tolist()      # both units pooled
    [0.25, 0.75]
    """
    key = f"layers.{layer}.gates.{gate}"
    if key not in trace:
        have = ", ".join(f"{g} (layers {', '.join(map(str, ls))})" for g, ls in gates_of(trace).items())
        raise KeyError(f"no {gate!r} gate in layer {layer} of this trace; it has: {have or 'no saturating gates'}")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    values = np.asarray(trace[key], dtype=np.float32)
    if unit is not None:
        if not 0 <= unit < values.shape[1]:
            raise IndexError(f"unit {unit} does not exist: layer {layer} has units 0..{values.shape[1] - 1}")
        values = values[:, unit]
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    return counts / max(1, values.size), edges


def summary(sat: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Per (gate, layer): mean fractions, and how many units are mostly right- or left-saturated.

    >>> sat = pd.DataFrame({"layer": [0, 0], "gate": ["forget"] * 2, "unit": [0, 1],
    ...                     "left": [0.0, 0.7], "right": [0.9, 0.1]})
    >>> [int(v) for v in summary(sat).iloc[0][["mostly_right", "mostly_left"]]]
    [1, 1]
    """
    g = sat.groupby(["gate", "layer"])
    return pd.DataFrame({
        "units": g.size(),
        "mean_left": g["left"].mean(), "mean_right": g["right"].mean(),
        "mean_saturated": g.apply(lambda d: (d["left"] + d["right"]).mean(), include_groups=False),
        "mostly_right": g["right"].apply(lambda r: int((r > threshold).sum())),
        "mostly_left": g["left"].apply(lambda r: int((r > threshold).sum())),
    }).reset_index()
