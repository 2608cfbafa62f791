"""The ``random`` generator: diversity of the chosen CFs (against a slow greedy oracle), value
ranges and parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cfdb.ctable.condition import TRUE, Member
from cfdb.errors import CfdbDataError
from cfdb.generators.random_sampling import RandomSampling, _distinct
from cfdb.models import Model
from cfdb.types import FeatureSpec
from tests.generators.helpers import instance, make_task, row_distance, rows_of


@pytest.mark.parametrize("kind", ["logistic_regression", "random_forest"])
@pytest.mark.parametrize("distance", ["l0", "l1", "tabular"])
def test_chosen_cfs_are_pairwise_distinct(
    kind: str, distance: str, models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models[kind]
    gen = RandomSampling().fit(model, features)
    for i in range(4):
        x = instance(data, i)
        out = gen.generate(make_task(model, features, x, TRUE, n=5, seed=i, distance=distance))
        rows = rows_of(out)
        assert len(rows) == 5
        for a in range(len(rows)):
            for b in range(a + 1, len(rows)):
                assert row_distance(distance, rows[a], rows[b], features) > 0
        d = [row_distance(distance, x, r, features) for r in rows]
        assert d == sorted(d)  # closest first


def greedy_oracle(
    rows: list[dict[str, Any]], x: dict[str, Any], n: int, kind: str, features: list[FeatureSpec]
) -> list[dict[str, Any]]:
    """Max-min diversity, one pair at a time: the closest row, then the farthest from those
    chosen (ties: closer to ``x``, then earlier)."""
    d = [row_distance(kind, x, r, features) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: (d[i], i))
    chosen = [order[0]]
    while len(chosen) < min(n, len(rows)):

        def gap(i: int) -> float:
            return min(row_distance(kind, rows[i], rows[j], features) for j in chosen)

        rest = [i for i in order if i not in chosen]
        best = max(rest, key=lambda i: (gap(i), -order.index(i)))
        chosen.append(best)
    return [rows[i] for i in sorted(chosen, key=lambda i: (d[i], i))]


@pytest.mark.parametrize("seed", range(10))
def test_diverse_choice_matches_greedy_oracle(
    seed: int, models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    rng = np.random.default_rng(seed)
    gen = RandomSampling().fit(models["logistic_regression"], features)
    pick = rng.choice(len(data["income"]), 25, replace=False)
    # Coarse values so that distance ties happen.
    cands = {k: v[pick] for k, v in data.items()}
    cands["income"] = np.round(cands["income"], -1)
    x = instance(data, int(rng.integers(0, 300)))
    kind = str(rng.choice(["l0", "l1", "tabular"]))
    n = int(rng.integers(1, 8))
    task = make_task(models["logistic_regression"], features, x, TRUE, n=n, distance=kind)
    cands = _distinct(cands, features)
    got = rows_of(gen._diverse(task, x, cands))
    expected = greedy_oracle(rows_of(cands), x, n, kind, features)
    got_d = [row_distance(kind, x, r, features) for r in got]
    exp_d = [row_distance(kind, x, r, features) for r in expected]
    np.testing.assert_allclose(got_d, exp_d, atol=1e-9)
    assert len(got) == min(n, len(rows_of(cands)))


def test_values_come_from_the_features_ranges(
    models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["random_forest"]
    spec = {f.name: f for f in features}
    gen = RandomSampling(sparse=False, candidates_per_cf=3).fit(model, features)
    for i in range(6):
        x = instance(data, i)
        out = gen.generate(make_task(model, features, x, TRUE, n=8, seed=i))
        assert len(out["income"]) > 0
        for name in ("income", "age"):
            lo, hi = min(spec[name].min, x[name]), max(spec[name].max, x[name])
            assert lo <= out[name].min() and out[name].max() <= hi
        assert set(out["home"].tolist()) <= set(spec["home"].domain)
        assert set(out["sex"].tolist()) == {x["sex"]}


def test_condition_filters_samples(
    models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["logistic_regression"]
    x = instance(data, 1)
    cond = Member("home", frozenset({"own"}))
    out = (
        RandomSampling()
        .fit(model, features)
        .generate(make_task(model, features, x, cond, n=4, seed=2))
    )
    assert len(out["home"]) == 4
    assert set(out["home"].tolist()) == {"own"}


def test_parameters(models: dict[str, Model], features: list[FeatureSpec]) -> None:
    model = models["logistic_regression"]
    with pytest.raises(CfdbDataError, match="candidates_per_cf"):
        RandomSampling(candidates_per_cf=0).fit(model, features)
    with pytest.raises(CfdbDataError, match="no parameter 'first_radius'"):
        RandomSampling(first_radius=2).fit(model, features)
    with pytest.raises(CfdbDataError, match="margin"):
        RandomSampling(margin=-0.5).fit(model, features)


def test_seeds_vary_the_answer(
    models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["random_forest"]
    gen = RandomSampling().fit(model, features)
    answers = set()
    for seed in range(5):
        out = gen.generate(make_task(model, features, instance(data, 1), TRUE, n=2, seed=seed))
        answers.add(tuple(out["income"].tolist()))
    assert len(answers) > 1
