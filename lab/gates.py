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


def saturation(trace: Mapping, left: float = 0.1, right: float = 0.9, gates=SATURATING,
               exclude_last: bool = False) -> pd.DataFrame:
    """Fractions of characters on which each unit's gates are left- and right-saturated.

    ``trace`` is a :class:`lab.trace.Trace` or any mapping with ``layers.{l}.gates.{name}``
    arrays of shape (T, H). Returns one row per (layer, gate, unit).
    """
    if not 0 <= left < right <= 1:
        raise ValueError(f"need 0 <= left < right <= 1, got left={left}, right={right}")
    frames = []
    for key in trace:
        m = _KEY.match(key)
        if not m or m.group(2) not in gates:
            continue
        values = np.asarray(trace[key], dtype=np.float32)
        if exclude_last:
            values = values[:-1]
        frames.append(pd.DataFrame({
            "layer": int(m.group(1)), "gate": m.group(2), "unit": np.arange(values.shape[1]),
            "left": (values < left).mean(0).astype(float), "right": (values > right).mean(0).astype(float)}))
    if not frames:
        raise ValueError("no saturating gates in this trace (an RNN has none): use an LSTM or GRU trace")
    return pd.concat(frames, ignore_index=True)


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
