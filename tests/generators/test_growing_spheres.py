"""The ``growing_spheres`` generator: closeness on a separable problem against a grid search,
sparsity, bounds, categorical-only search and parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cfdb.ctable.condition import TRUE, Cmp
from cfdb.errors import CfdbDataError
from cfdb.generators import GENERATORS, GenerationTask, distance, valid_mask
from cfdb.generators.growing_spheres import GrowingSpheres
from cfdb.models import Model, train
from cfdb.types import FeatureSpec
from tests.generators.helpers import instance, make_task, rows_of

PLANE = [
    FeatureSpec("a", "numeric", min=0, max=10, mad=2.0),
    FeatureSpec("b", "numeric", min=0, max=10, mad=4.0),
]


@pytest.fixture(scope="module")
def plane() -> Model:
    """Logistic regression on a linearly separable problem: ``a + 2b > 12``."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 10, 400), rng.uniform(0, 10, 400)
    labels = np.where(a + 2 * b > 12, "pos", "neg").astype(object)
    return train("logistic_regression", {"C": 100.0}, PLANE, {"a": a, "b": b}, labels, name="p")


def label_of(model: Model, x: dict[str, Any]) -> str:
    return str(model.predict({k: np.array([v]) for k, v in x.items()})[0])


@pytest.mark.parametrize("point", [(2.0, 3.0), (1.0, 1.0), (6.0, 1.0), (8.0, 8.0), (0.5, 5.0)])
@pytest.mark.parametrize("kind", ["l1", "tabular"])
def test_close_to_the_grid_optimum(plane: Model, point: tuple[float, float], kind: str) -> None:
    x = {"a": point[0], "b": point[1]}
    original = label_of(plane, x)
    grid = np.linspace(0, 10, 801)
    ga, gb = np.meshgrid(grid, grid)
    cols = {"a": ga.ravel(), "b": gb.ravel()}
    enemies = plane.predict(cols) != original
    best = distance(kind, x, {k: v[enemies] for k, v in cols.items()}, PLANE).min()
    gen = GrowingSpheres().fit(plane, PLANE)
    for seed in range(3):
        task = GenerationTask(x, original, None, TRUE, n=1, seed=seed, distance=kind)
        out = gen.generate(task)
        assert valid_mask(plane, PLANE, task, out).tolist() == [True]
        assert distance(kind, x, out, PLANE)[0] <= 1.3 * best + 0.01


@pytest.fixture(scope="module")
def income_only(data: Any, features: list[FeatureSpec]) -> Model:
    """A tree that reads every feature but decides on income alone."""
    labels = np.where(data["income"] > 60, "high", "low").astype(object)
    return train("decision_tree", {}, features, data, labels, name="income")


@pytest.mark.parametrize("name", ["growing_spheres", "random"])
def test_sparsity_step_keeps_only_the_needed_change(
    name: str, income_only: Model, features: list[FeatureSpec], data: Any
) -> None:
    dense_l0 = []
    for i in range(8):
        x = instance(data, i)
        task = make_task(income_only, features, x, TRUE, n=3, seed=i, distance="l1")
        sparse = GENERATORS.get(name)().fit(income_only, features, data).generate(task)
        # Small batches, so that random sampling also reaches multi-feature changes.
        dense_gen = GENERATORS.get(name)(sparse=False, n_samples=50)
        dense = dense_gen.fit(income_only, features, data).generate(task)
        assert len(sparse["income"]) > 0
        for row in rows_of(sparse):
            assert [k for k in row if row[k] != x[k]] == ["income"]
        dense_l0 += distance("l0", x, dense, features).tolist()
    assert max(dense_l0) > 1  # without the step, irrelevant features change too


def test_samples_stay_in_the_widened_box(
    models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["random_forest"]
    spec = {f.name: f for f in features}
    for margin in (0.0, 0.25):
        gen = GrowingSpheres(margin=margin, first_radius=20.0).fit(model, features)
        for i in range(5):
            out = gen.generate(make_task(model, features, instance(data, i), TRUE, n=5, seed=i))
            assert len(out["age"]) > 0
            for name in ("income", "age"):
                f = spec[name]
                width = f.max - f.min
                assert out[name].min() >= f.min - margin * width - 1e-9
                assert out[name].max() <= f.max + margin * width + 1e-9
            assert out["age"].dtype == np.int64


def test_finds_far_cfs_with_a_larger_box(
    models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["logistic_regression"]
    x = {**instance(data, 0), "income": 20.0}
    cond = Cmp("income", ">=", 130.0)  # beyond the observed maximum (about 120)
    task = make_task(model, features, x, cond, n=2, seed=0)
    assert task.original_label == "rejected"
    assert len(GrowingSpheres().fit(model, features).generate(task)["income"]) == 0
    out = GrowingSpheres(margin=0.5).fit(model, features).generate(task)
    assert len(out["income"]) > 0
    assert valid_mask(model, features, task, out).all()


def test_categorical_only_search() -> None:
    features = [
        FeatureSpec("home", "categorical", domain=("mortgage", "own", "rent")),
        FeatureSpec("student", "boolean", domain=("false", "true")),
    ]
    rng = np.random.default_rng(1)
    cols = {
        "home": rng.choice(["mortgage", "own", "rent"], 200).astype(object),
        "student": rng.random(200) < 0.5,
    }
    labels = np.where((cols["home"] == "own") & ~cols["student"], "yes", "no").astype(object)
    model = train("decision_tree", {}, features, cols, labels, name="cat")
    x = {"home": "rent", "student": True}
    task = GenerationTask(x, "no", None, TRUE, n=3, seed=0, distance="l0")
    out = GrowingSpheres().fit(model, features).generate(task)
    assert rows_of(out) == [{"home": "own", "student": False}]


def test_parameters(models: dict[str, Model], features: list[FeatureSpec], data: Any) -> None:
    model = models["logistic_regression"]
    with pytest.raises(CfdbDataError, match="decrease_radius"):
        GrowingSpheres(decrease_radius=1).fit(model, features)
    with pytest.raises(CfdbDataError, match="n_samples"):
        GrowingSpheres(n_samples="many").fit(model, features)
    with pytest.raises(CfdbDataError, match="no parameter 'radius'"):
        GrowingSpheres(radius=1).fit(model, features)
    with pytest.raises(CfdbDataError, match="max_iter"):
        GrowingSpheres(max_iter=0).fit(model, features)
    # WITH values may arrive as text; task parameters override the generator's.
    gen = GrowingSpheres(n_samples="50", sparse="false").fit(model, features)
    task = make_task(model, features, instance(data, 0), TRUE, n=2, params={"first_radius": 1})
    assert len(gen.generate(task)["income"]) == 2
    bad = make_task(model, features, instance(data, 0), TRUE, params={"margin": -1})
    with pytest.raises(CfdbDataError, match="margin"):
        gen.generate(bad)


def test_seeds_vary_the_answer(
    models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["random_forest"]
    gen = GrowingSpheres().fit(model, features)
    answers = set()
    for seed in range(5):
        out = gen.generate(make_task(model, features, instance(data, 1), TRUE, n=2, seed=seed))
        answers.add(tuple(out["income"].tolist()))
    assert len(answers) > 1
