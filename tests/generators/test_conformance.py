"""Conformance suite run over every registered generator: output schema, validity under
conditions, determinism, fit guard, deadlines and multi-class targets.

Validity is checked twice: with :func:`~cfdb.generators.valid_mask` and with the slow
row-at-a-time oracle of :mod:`tests.generators.helpers`.
"""

from __future__ import annotations

import pickle
import time
from typing import Any

import numpy as np
import pytest

from cfdb.ctable.condition import TRUE, Cmp, Cond, Member, Or
from cfdb.errors import CfdbNotFittedError
from cfdb.generators import GENERATORS, GenerationTask, Generator, valid_mask
from cfdb.models import Model
from cfdb.types import FeatureSpec
from tests.generators.helpers import instance, make_task, row_valid, rows_of

NAMES = GENERATORS.names()

CONDITIONS: dict[str, Cond] = {
    "true": TRUE,
    "member": Member("home", frozenset({"own", "mortgage"})),
    "bound": Cmp("income", ">=", 60.0),
    "or": Or((Member("student", frozenset({"false"})), Cmp("age", "<=", 30.0))),
    # Satisfiable over the reals, yet far outside every observed value.
    "far": Cmp("income", ">", 10_000.0),
}

DTYPES = {"numeric": np.float64, "integer": np.int64, "boolean": np.bool_}

# Instances of both labels (checked in test_instances_cover_both_labels).
ROWS = (0, 1, 5)


def fitted(name: str, model: Model, features: list[FeatureSpec], data: Any, **params: Any):
    pool = dict(data)
    pool["InstanceId"] = np.arange(len(data["income"]))  # extra pool columns are ignored
    return GENERATORS.get(name)(**params).fit(model, features, pool)


def check(out: Any, model: Model, features: list[FeatureSpec], task: GenerationTask) -> None:
    """Everything a generator's answer must satisfy."""
    assert set(out) == {f.name for f in features}
    lengths = {len(np.asarray(v)) for v in out.values()}
    assert len(lengths) == 1
    (m,) = lengths
    assert m <= task.n
    for f in features:
        values = np.asarray(out[f.name])
        if f.is_categorical and f.type == "categorical":
            assert values.dtype == object
            assert all(isinstance(v, str) for v in values.tolist())
        else:
            assert values.dtype == DTYPES[f.type], (f.name, values.dtype)
    assert valid_mask(model, features, task, out).all()
    for row in rows_of(out):
        assert row_valid(model, features, task, row)
        for f in features:
            if not f.mutable:
                assert row[f.name] == task.instance[f.name]


def same(a: Any, b: Any) -> bool:
    return set(a) == set(b) and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_builtins_registered() -> None:
    assert {"nearest", "growing_spheres", "random"} <= set(NAMES)


def test_instances_cover_both_labels(models: dict[str, Model], data: Any) -> None:
    for key in ("logistic_regression", "random_forest"):
        labels = {
            str(models[key].predict({k: v[list(ROWS)] for k, v in data.items()})[i])
            for i in range(len(ROWS))
        }
        assert labels == {"accepted", "rejected"}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["logistic_regression", "random_forest"])
@pytest.mark.parametrize("cond", list(CONDITIONS), ids=list(CONDITIONS))
def test_valid_under_condition(
    name: str,
    kind: str,
    cond: str,
    models: dict[str, Model],
    features: list[FeatureSpec],
    data: Any,
) -> None:
    model = models[kind]
    gen = fitted(name, model, features, data)
    found = 0
    for i in ROWS:
        x = instance(data, i)
        before = dict(x)
        task = make_task(model, features, x, CONDITIONS[cond], n=3, seed=7)
        out = gen.generate(task)
        check(out, model, features, task)
        assert x == before  # the instance is not modified
        found += len(out["income"])
    if cond != "far":
        assert found > 0  # every generator answers the easy requests


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_seed(
    name: str, models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["random_forest"]
    x = instance(data, 1)
    task = make_task(model, features, x, CONDITIONS["or"], n=3, seed=11)
    first = fitted(name, model, features, data).generate(task)
    again = fitted(name, model, features, data).generate(task)
    assert same(first, again)
    # Another seed gives another (valid) answer, possibly the same rows.
    other = make_task(model, features, x, CONDITIONS["or"], n=3, seed=12)
    check(fitted(name, model, features, data).generate(other), model, features, other)


@pytest.mark.parametrize("name", NAMES)
def test_not_fitted(
    name: str, models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    gen: Generator = GENERATORS.get(name)()
    task = make_task(models["logistic_regression"], features, instance(data, 0))
    with pytest.raises(CfdbNotFittedError):
        gen.generate(task)


@pytest.mark.parametrize("name", NAMES)
def test_init_only_stores_params(name: str) -> None:
    gen = GENERATORS.get(name)()
    assert gen.params == {}
    assert not hasattr(gen, "model_")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("cond", ["true", "far"])
def test_short_deadline_returns_promptly(
    name: str, cond: str, models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["random_forest"]
    gen = fitted(name, model, features, data)
    for deadline in (time.monotonic() - 1, time.monotonic() + 0.01):
        task = make_task(
            model, features, instance(data, 5), CONDITIONS[cond], n=5, seed=3, deadline=deadline
        )
        started = time.monotonic()
        out = gen.generate(task)
        assert time.monotonic() - started < 2
        check(out, model, features, task)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("target", [None, "low", "mid", "high"])
def test_multiclass(
    name: str,
    target: str | None,
    models: dict[str, Model],
    features: list[FeatureSpec],
    data: Any,
) -> None:
    model = models["multiclass"]
    assert model.labels == ["high", "low", "mid"]
    gen = fitted(name, model, features, data)
    found = 0
    for i in ROWS:
        x = instance(data, i)
        task = make_task(model, features, x, TRUE, n=2, seed=5, target=target)
        if task.original_label == target:
            continue
        out = gen.generate(task)
        check(out, model, features, task)
        labels = set(model.predict(out).tolist())
        assert task.original_label not in labels
        if target is not None:
            assert labels <= {target}
        found += len(out["income"])
    assert found > 0


@pytest.mark.parametrize("name", NAMES)
def test_zero_n_gives_no_rows(
    name: str, models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["logistic_regression"]
    task = make_task(model, features, instance(data, 0), TRUE, n=0)
    out = fitted(name, model, features, data).generate(task)
    check(out, model, features, task)
    assert len(out["income"]) == 0


@pytest.mark.parametrize("name", NAMES)
def test_fitted_generator_pickles(
    name: str, models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    # The engine ships fitted generators to worker processes.
    model = models["random_forest"]
    gen = fitted(name, model, features, data)
    task = make_task(model, features, instance(data, 0), CONDITIONS["member"], n=3, seed=2)
    assert same(gen.generate(task), pickle.loads(pickle.dumps(gen)).generate(task))
