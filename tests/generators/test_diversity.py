"""Diverse CFs (DiCE's determinantal term) and CF values at the data's precision."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfdb.generators.distance import distance
from cfdb.generators.diversity import mean_pairwise_distance, round_to_data, select_diverse
from cfdb.types import FeatureSpec

FEATURES = [
    FeatureSpec("income", "numeric", min=0.0, max=100.0, mad=10.0),
    FeatureSpec("home", "categorical", domain=("own", "rent")),
]
X = {"income": 10.0, "home": "rent"}


def objective(rows, dist, chosen, diversity) -> float:
    """DiCE's objective of a set, computed directly (the slow twin)."""
    sub = {k: v[list(chosen)] for k, v in rows.items()}
    k = len(chosen)
    kernel = np.empty((k, k))
    for i, j in itertools.product(range(k), repeat=2):
        row = {name: sub[name][i] for name in sub}
        kernel[i, j] = 1 / (1 + distance("tabular", row, sub, FEATURES)[j])
    return -float(np.mean(dist[list(chosen)])) + diversity * float(np.log(np.linalg.det(kernel)))


def test_near_duplicates_are_not_chosen_together() -> None:
    rows = {
        "income": np.array([20.0, 20.000001, 20.000002, 35.0, 20.0]),
        "home": np.array(["rent", "rent", "rent", "rent", "own"], dtype=object),
    }
    dist = distance("tabular", X, rows, FEATURES)
    closest = select_diverse(rows, dist, 3, 0.0, FEATURES, "tabular")
    assert list(closest) == [0, 1, 2]  # diversity 0: the closest three, near-duplicates
    diverse = select_diverse(rows, dist, 3, 1.0, FEATURES, "tabular")
    assert sorted(diverse) == [0, 3, 4]
    chosen = {k: v[diverse] for k, v in rows.items()}
    plain = {k: v[closest] for k, v in rows.items()}
    assert mean_pairwise_distance(chosen, FEATURES, "tabular") > 100 * mean_pairwise_distance(
        plain, FEATURES, "tabular"
    )


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(11, 90), min_size=4, max_size=9, unique=True), st.integers(2, 3))
def test_each_greedy_step_maximizes_the_objective(incomes, n) -> None:
    rows = {
        "income": np.array(incomes),
        "home": np.array(["rent", "own"] * 5, dtype=object)[: len(incomes)],
    }
    dist = distance("tabular", X, rows, FEATURES)
    picked = list(select_diverse(rows, dist, n, 0.5, FEATURES, "tabular"))
    assert picked[0] == int(np.argsort(dist, kind="stable")[0])
    for step in range(1, n):
        best = max(
            objective(rows, dist, [*picked[:step], c], 0.5)
            for c in range(len(incomes))
            if c not in picked[:step]
        )
        assert objective(rows, dist, picked[: step + 1], 0.5) == pytest.approx(best, abs=1e-9)


@given(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4), st.integers(0, 4))
def test_rounding_keeps_direction_and_the_data_decimals(x, c, d) -> None:
    x = round(x, d)  # the instance comes from the data: it has at most d decimals
    out = round_to_data({"income": np.array([c])}, {"income": x}, {"income": d}, FEATURES)
    r = float(out["income"][0])
    assert r == round(r, d)
    assert abs(r - x) >= abs(c - x) - 1e-9 * max(1.0, abs(c))
    if abs(c - x) > 10**-d:
        assert np.sign(r - x) == np.sign(c - x)


@pytest.mark.slow  # trains a model and runs two FOREACH queries
def test_foreach_cfs_are_diverse_and_at_the_data_precision() -> None:
    import cfdb
    from cfdb.store import catalog
    from tests.conftest import toy_frame

    frame = toy_frame(200)
    frame["income"] = (frame.income + 0.25).round(1)  # one decimal in the data
    db = cfdb.connect()
    db.load_instances(frame, id="applicant", label="decision", split="part")
    db.create_model("lr", "logistic_regression", "SELECT * FROM Instances")
    db.predict("lr")
    features = catalog.read_features(db.session.store)
    spread = {}
    for diversity in (0, 1):
        out = db.foreach(
            "SELECT PredictionId FROM Predictions WHERE Label = 'rejected' ORDER BY 1 LIMIT 6",
            "SELECT C.* FROM CFs C",
            using="growing_spheres",
            n=3,
            seed=2,
            diversity=diversity,
            reuse_threshold=0,
            persistent_pool=False,
        ).df()
        assert (out.income == out.income.round(1)).all()
        spread[diversity] = np.mean(
            [
                mean_pairwise_distance(
                    {f.name: g[f.name].to_numpy() for f in features}, features, "tabular"
                )
                for _, g in out.groupby("PredictionId")
            ]
        )
    assert spread[1] > spread[0]
    db.close()
