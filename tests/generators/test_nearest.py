"""The ``nearest`` generator against a brute-force scan of the pool, plus its pool handling."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cfdb.ctable.condition import TRUE, Member
from cfdb.errors import CfdbDataError
from cfdb.generators import GENERATORS, GenerationTask
from cfdb.generators.nearest import Nearest
from cfdb.generators.sampling import forced_values
from cfdb.models import Model
from cfdb.types import FeatureSpec
from tests.generators.helpers import (
    holds,
    instance,
    make_task,
    one_row,
    random_condition,
    row_distance,
    rows_of,
)

TIE = 1e-9


@pytest.fixture(scope="module")
def row_labels(models: dict[str, Model], data: Any) -> dict[str, list[str]]:
    """Each model's label of each data row, predicted one row at a time."""
    return {
        key: [str(models[key].predict(one_row(row))[0]) for row in rows_of(data)]
        for key in ("logistic_regression", "random_forest")
    }


def brute_force(
    task: GenerationTask,
    features: list[FeatureSpec],
    pool: Any,
    labels: list[str],
    model: Model | None = None,
) -> list[tuple[float, int, dict[str, Any]]]:
    """Every valid distinct pool row as (distance, first index, row), closest first; the
    values the condition forces are set on each row first, which is then labelled again."""
    forced = forced_values(task.condition, features)
    seen, out = set(), []
    for i, row in enumerate(rows_of(pool)):
        if not all(row[f.name] == task.instance[f.name] for f in features if not f.mutable):
            continue
        if forced:
            assert model is not None
            row = {**row, **{k: v.item() if hasattr(v, "item") else v for k, v in forced.items()}}
            labels = [*labels[:i], str(model.predict(one_row(row))[0]), *labels[i + 1 :]]
        key = tuple(row[f.name] for f in features)
        if key in seen:
            continue
        seen.add(key)
        label_ok = (
            labels[i] != task.original_label if task.target is None else labels[i] == task.target
        )
        kept = all(row[f.name] == task.instance[f.name] for f in features if not f.mutable)
        if label_ok and kept and holds(task.condition, row):
            out.append((row_distance(task.distance, task.instance, row, features), i, row))
    return sorted(out, key=lambda t: (t[0], t[1]))


@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force(
    seed: int,
    models: dict[str, Model],
    features: list[FeatureSpec],
    data: Any,
    row_labels: dict[str, list[str]],
) -> None:
    rng = np.random.default_rng(seed)
    kind = ("logistic_regression", "random_forest")[seed % 2]
    model = models[kind]
    # A pool with duplicated rows, so that de-duplication is exercised.
    index = np.concatenate([np.arange(len(data["income"])), rng.integers(0, 300, 40)])
    pool = {k: v[index] for k, v in data.items()}
    labels = [row_labels[kind][i] for i in index]
    x = instance(data, int(rng.integers(0, 300)))
    cond = TRUE if seed < 4 else random_condition(rng, features)
    task = make_task(
        model,
        features,
        x,
        cond,
        n=int(rng.integers(1, 6)),
        distance=str(rng.choice(["l0", "l1", "tabular"])),
    )
    out = Nearest().fit(model, features, pool).generate(task)
    expected = brute_force(task, features, pool, labels, model)[: task.n]
    got = rows_of(out)
    assert len(got) == len(expected)
    got_d = [row_distance(task.distance, x, row, features) for row in got]
    np.testing.assert_allclose(got_d, [e[0] for e in expected], atol=TIE)
    for row, exp in zip(got, expected, strict=True):
        if all(abs(exp[0] - other[0]) > TIE for other in expected if other is not exp):
            assert row == exp[2]  # no tie: the very same row
    if seed < 4:
        assert len(got) == task.n  # unconstrained: there are always enough


def test_duplicates_and_nulls_count_once(
    models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["logistic_regression"]
    x = instance(data, 0)
    pool = {k: np.concatenate([v, v]) for k, v in data.items()}
    pool["income"] = pool["income"].astype(object)
    pool["income"][:5] = None  # NULLs: skipped, not an error
    pool["home"][5] = None
    gen = Nearest().fit(model, features, pool)
    assert gen.n_ == len(data["income"])  # the copies cover the rows with NULLs
    task = make_task(model, features, x, TRUE, n=1000)
    out = gen.generate(task)
    keys = {tuple(r.values()) for r in rows_of(out)}
    assert len(keys) == len(out["income"])
    plain = Nearest().fit(model, features, data).generate(task)
    assert 0 < len(plain["income"]) == len(out["income"])


def test_user_pool_is_respected(
    models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["random_forest"]
    pool = {k: v[data["home"] == "rent"] for k, v in data.items()}
    x = instance(data, 0)
    out = Nearest().fit(model, features, pool).generate(make_task(model, features, x, n=10))
    assert len(out["home"]) == 10
    assert set(out["home"].tolist()) == {"rent"}
    # The condition forbids the only home value in the pool: nothing qualifies as it is...
    task = make_task(model, features, x, Member("home", frozenset({"own", "mortgage"})), n=10)
    assert len(Nearest().fit(model, features, pool).generate(task)["home"]) == 0
    # ... but a value the condition forces is pinned on the pool's rows before the search.
    task = make_task(model, features, x, Member("home", frozenset({"own"})), n=10)
    assert set(Nearest().fit(model, features, pool).generate(task)["home"].tolist()) == {"own"}


def test_needs_a_pool_with_every_feature(
    models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["logistic_regression"]
    with pytest.raises(CfdbDataError, match="pool"):
        Nearest().fit(model, features, None)
    partial = {k: v for k, v in data.items() if k != "age"}
    with pytest.raises(CfdbDataError, match="'age'"):
        Nearest().fit(model, features, partial)
    # Column names match case-insensitively, as DuckDB's do.
    upper = {k.upper(): v for k, v in data.items()}
    assert Nearest().fit(model, features, upper).n_ == len(data["income"])


def test_rejects_parameters(
    models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["logistic_regression"]
    with pytest.raises(CfdbDataError, match="no parameter 'radius'"):
        GENERATORS.get("nearest")(radius=2).fit(model, features, data)


def test_forced_values_are_pinned_before_the_search(
    models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    """``C.income = I.income``: few pool rows share the income, so without pinning most
    instances get no CF; pinned, each gets the brute-force answer over pinned rows."""
    from cfdb.ctable.condition import Cmp

    model = models["logistic_regression"]
    labels = [str(v) for v in model.predict(data)]
    found = 0
    for i in range(0, 60, 10):
        x = instance(data, i)
        task = make_task(model, features, x, Cmp("income", "=", x["income"]), n=2)
        got = rows_of(Nearest().fit(model, features, data).generate(task))
        expected = brute_force(task, features, data, labels, model)[:2]
        assert [r["income"] for r in got] == [x["income"]] * len(got)
        assert len(got) == len(expected)
        np.testing.assert_allclose(
            [row_distance(task.distance, x, r, features) for r in got],
            [e[0] for e in expected],
            atol=TIE,
        )
        found += bool(got)
    assert found >= 2  # pinned, most instances have a CF (without pinning: almost none)
