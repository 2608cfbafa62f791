"""Shared generator helpers: raw columns, parameters, de-duplication, boxes, and the
vectorized feature-selection step against a row-at-a-time oracle."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cfdb.ctable.condition import TRUE, And, Cmp, Domains, Member, Or, normalize
from cfdb.errors import CfdbDataError
from cfdb.generators.base import GENERATORS, GenerationTask, valid_mask
from cfdb.generators.sampling import (
    box,
    forced_values,
    raw_column,
    resolve_params,
    sparsify,
    unique_index,
)
from cfdb.models import Model
from cfdb.types import FeatureSpec
from tests.generators.helpers import (
    instance,
    make_task,
    random_condition,
    row_distance,
    row_valid,
    rows_of,
)


def test_raw_column_types() -> None:
    num = FeatureSpec("n", "numeric")
    assert raw_column(num, [1, 2.5]).tolist() == [1.0, 2.5]
    assert raw_column(FeatureSpec("i", "integer"), [1.0, 2.6]).dtype == np.int64
    cat = raw_column(FeatureSpec("c", "categorical"), ["a", 3, True])
    assert cat.dtype == object and cat.tolist() == ["a", "3", "true"]
    flag = raw_column(FeatureSpec("b", "boolean"), ["true", "false", 1, False])
    assert flag.tolist() == [True, False, True, False]
    with pytest.raises(CfdbDataError, match="'n'"):
        raw_column(num, ["abc"])


def test_resolve_params() -> None:
    defaults = {"k": 3, "r": 1.0, "sparse": True, "mode": "a"}
    out = resolve_params("g", defaults, {"k": "7"}, {"R": 2, "sparse": "FALSE"})
    assert out == {"k": 7, "r": 2.0, "sparse": False, "mode": "a"}
    with pytest.raises(CfdbDataError, match="no parameter 'x'; known: k, mode, r, sparse"):
        resolve_params("g", defaults, {"x": 1})
    with pytest.raises(CfdbDataError, match="'k' of generator 'g' must be int"):
        resolve_params("g", defaults, {"k": 2.5})
    with pytest.raises(CfdbDataError, match="'sparse'"):
        resolve_params("g", defaults, {"sparse": "maybe"})


def test_box() -> None:
    f = FeatureSpec("i", "integer", min=10, max=20)
    assert box(f, 15, 0.0) == (10, 20)
    assert box(f, 15, 0.25) == (7, 23)  # 7.5 and 22.5 rounded outwards
    assert box(f, 30, 0.0) == (10, 30)  # always holds the instance
    assert box(FeatureSpec("n", "numeric"), 1.0, 0.5) == (-np.inf, np.inf)


@pytest.mark.parametrize("seed", range(5))
def test_unique_index_matches_python(seed: int, features: list[FeatureSpec], data: Any) -> None:
    rng = np.random.default_rng(seed)
    index = rng.integers(0, 20, 60)
    rows = {k: v[index] for k, v in data.items()}
    first: dict[tuple, int] = {}
    for i, row in enumerate(rows_of(rows)):
        first.setdefault(tuple(row.values()), i)
    assert unique_index(rows, features).tolist() == sorted(first.values())


def slow_sparsify(
    model: Model, features: list[FeatureSpec], task: GenerationTask, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Laugel's feature selection, one row and one feature at a time."""
    x = task.instance
    out = []
    for row in rows:
        row = dict(row)
        moves = []
        for j, f in enumerate(features):
            if row[f.name] == x[f.name]:
                continue
            one = {f.name: row[f.name]}
            size = row_distance("l1", {f.name: x[f.name]}, one, [f])
            moves.append((size, j))
        for _, j in sorted(moves):
            name = features[j].name
            trial = {**row, name: x[name]}
            if row_valid(model, features, task, trial):
                row = trial
        out.append(row)
    return out


@pytest.mark.parametrize("seed", range(12))
def test_sparsify_matches_oracle(
    seed: int, models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    rng = np.random.default_rng(seed)
    model = models["logistic_regression"]
    x = instance(data, int(rng.integers(0, 300)))
    cond = TRUE if seed % 3 == 0 else random_condition(rng, features, depth=1)
    task = make_task(model, features, x, cond, distance="l1")
    # Candidates: the instance with random features copied from random data rows.
    pick = rng.integers(0, 300, 30)
    cands = {
        k: np.where(rng.random(30) < 0.6, v[pick], np.array([x[k]] * 30, dtype=v.dtype))
        for k, v in data.items()
    }
    cands["sex"] = np.array([x["sex"]] * 30, dtype=object)
    before = valid_mask(model, features, task, cands)
    fast = sparsify(model, features, task, x, cands)
    slow = slow_sparsify(model, features, task, rows_of(cands))
    assert rows_of(fast) == slow
    after = valid_mask(model, features, task, fast)
    assert after[before].all()  # valid rows stay valid
    l0_before = [row_distance("l0", x, r, features) for r in rows_of(cands)]
    l0_after = [row_distance("l0", x, r, features) for r in rows_of(fast)]
    assert all(a <= b for a, b in zip(l0_after, l0_before, strict=True))
    for k in cands:  # every value is the candidate's or the instance's
        assert all(f == c or f == x[k] for f, c in zip(fast[k], cands[k], strict=True))


def test_forced_values(features: list[FeatureSpec]) -> None:
    domains = Domains(features)
    cond = normalize(
        And(
            (
                Cmp("income", "=", 75.5),
                Cmp("age", "=", 33.0),
                Member("home", frozenset({"own"})),
                Member("student", frozenset({"false"})),
                Member("sex", frozenset({"male"})),  # immutable: never pinned
            )
        ),
        domains,
    )
    forced = forced_values(cond, features)
    assert forced == {"income": 75.5, "age": 33, "home": "own", "student": False}
    assert type(forced["age"]) is np.int64 and type(forced["student"]) is np.bool_
    # Only top-level conjuncts force a value.
    loose = normalize(Or((Cmp("income", "=", 75.5), Cmp("age", "=", 33.0))), domains)
    assert forced_values(loose, features) == {}
    assert forced_values(TRUE, features) == {}


@pytest.mark.parametrize("name", ["growing_spheres", "random"])
def test_samplers_meet_equalities(
    name: str, models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["random_forest"]
    cond = And((Cmp("income", "=", 97.25), Cmp("age", "=", 33.0)))
    gen = GENERATORS.get(name)().fit(model, features)
    found = 0
    for i in range(6):
        x = instance(data, i)
        task = make_task(model, features, x, cond, n=2, seed=i)
        out = gen.generate(task)
        assert valid_mask(model, features, task, out).all()
        assert set(out["income"].tolist()) <= {97.25}
        found += len(out["income"])
    assert found > 0
