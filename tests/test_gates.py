"""Gate saturation statistics (lab.gates) on synthetic gates."""
import numpy as np
import pandas as pd
import pytest

from lab import gates


def synthetic():
    t = 1000
    rng = np.random.default_rng(0)
    forget = np.stack([np.full(t, 0.97),                       # an integrator: always right
                       np.where(np.arange(t) < 250, 0.02, 0.5),  # left a quarter of the time
                       rng.uniform(0.2, 0.8, t)], 1)            # never saturated
    return {"layers.0.gates.forget": forget, "layers.1.gates.input": 1 - forget,
            "layers.0.gates.candidate": np.zeros((t, 3)), "layers.0.hidden": np.zeros((t, 3))}


def test_fractions_per_unit():
    sat = gates.saturation(synthetic())
    f = sat[(sat.gate == "forget")].set_index("unit")
    assert f.loc[0, "right"] == 1.0 and f.loc[0, "left"] == 0.0
    assert f.loc[1, "left"] == 0.25 and f.loc[1, "right"] == 0.0
    assert f.loc[2, ["left", "right"]].tolist() == [0.0, 0.0]
    i = sat[(sat.gate == "input")].set_index("unit")
    assert i.loc[0, "left"] == 1.0 and i.loc[1, "right"] == 0.25   # mirrored
    assert set(sat.gate) == {"forget", "input"}                   # candidate is not a saturating gate


def test_thresholds_are_parameters_and_strict():
    data = {"layers.0.gates.update": np.array([[0.1], [0.9], [0.2], [0.8]])}
    strict = gates.saturation(data)
    assert strict[["left", "right"]].values.tolist() == [[0.0, 0.0]]  # 0.1 and 0.9 are not beyond
    loose = gates.saturation(data, left=0.25, right=0.75)
    assert loose[["left", "right"]].values.tolist() == [[0.5, 0.5]]


def test_summary_counts_integrators():
    s = gates.summary(gates.saturation(synthetic())).set_index(["gate", "layer"])
    assert s.loc[("forget", 0), "mostly_right"] == 1 and s.loc[("forget", 0), "mostly_left"] == 0
    assert s.loc[("input", 1), "mostly_left"] == 1
    assert s.loc[("forget", 0), "units"] == 3


def test_bad_inputs():
    with pytest.raises(ValueError, match="left < right"):
        gates.saturation(synthetic(), left=0.9, right=0.1)
    with pytest.raises(ValueError, match=r"must be \(characters, units\), got shape \(3,\)"):
        gates.saturation({"layers.0.gates.forget": np.zeros(3)})
    with pytest.raises(ValueError, match="unknown gate"):
        gates.saturation(synthetic(), gates=("forgot",))
    # one name alone is one gate, not its letters
    assert set(gates.saturation(synthetic(), gates="forget").gate) == {"forget"}
    assert gates.gates_of(synthetic(), gates="forget") == {"forget": [0]}
    with pytest.raises(ValueError, match="RNN has none"):
        gates.saturation({"layers.0.hidden": np.zeros((3, 2))})


def test_on_a_real_trace():
    import torch

    from lab.models import CharRNN, ModelConfig
    from lab.trace import compute_trace
    from tests.toy import saturating
    model = saturating(CharRNN(ModelConfig("gru", 2, 6, 4)))
    tr = compute_trace(model, torch.randint(0, 4, (300,)), vocab="abcd", dtype=torch.float32)
    sat = gates.saturation(tr)
    assert set(sat.gate) == {"reset", "update"} and len(sat) == 2 * 2 * 6
    assert ((sat.left >= 0) & (sat.left + sat.right <= 1)).all()
    for r in sat.itertuples():       # each row is its own gate's, layer's and unit's column
        g = tr[f"layers.{r.layer}.gates.{r.gate}"][:, r.unit]
        assert (r.left, r.right) == (pytest.approx((g < 0.1).mean()), pytest.approx((g > 0.9).mean()))
    assert (sat.left != sat.right).any()
    assert isinstance(sat, pd.DataFrame)


def test_gates_of_lists_gates_in_the_papers_order_with_their_layers():
    assert gates.gates_of(synthetic()) == {"input": [1], "forget": [0]}
    assert gates.gates_of({"layers.0.hidden": np.zeros((2, 2))}) == {}


def test_histogram_of_one_unit_and_of_a_layer():
    data = synthetic()
    fractions, edges = gates.histogram(data, "forget", 0, unit=1, bins=4)
    assert edges.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert fractions.tolist() == [0.25, 0.0, 0.75, 0.0]      # 0.02 a quarter of the time, else 0.5
    pooled, _ = gates.histogram(data, "forget", 0, bins=4)
    per_unit = [gates.histogram(data, "forget", 0, unit=u, bins=4)[0] for u in range(3)]
    assert pooled.sum() == pytest.approx(1.0) and pooled == pytest.approx(np.mean(per_unit, 0))
    assert gates.histogram(data, "forget", 0, unit=0, bins=10)[0].tolist() == [0.0] * 9 + [1.0]


def test_histogram_errors_name_what_exists():
    with pytest.raises(KeyError, match=r"no 'update' gate in layer 0 .* input \(layers 1\), forget \(layers 0\)"):
        gates.histogram(synthetic(), "update", 0)
    with pytest.raises(IndexError, match=r"unit 3 does not exist: layer 0 has units 0..2"):
        gates.histogram(synthetic(), "forget", 0, unit=3)
    with pytest.raises(ValueError, match="bins must be at least 1"):
        gates.histogram(synthetic(), "forget", 0, bins=0)


def test_thresholds_travel_with_the_table():
    assert gates.saturation(synthetic(), left=0.2, right=0.7).attrs == {"left": 0.2, "right": 0.7}


