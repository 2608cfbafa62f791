"""Generators for regression models (CFDB paper, section 4.4): the target is a change of the
model's output by at least ``min_change`` in a direction.

Every generator that declares ``supports_regression`` runs through the conformance checks of
:mod:`tests.generators.test_conformance` with regression tasks, and each answer is checked
against a slow row-at-a-time oracle; reuse (Algorithm 2) is checked to verify a pool CF
against each member's own original output; classifier-only generators refuse regressors.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from cfdb.ctable.condition import TRUE, Cmp, Cond, Domains, Member, Or, normalize
from cfdb.errors import CfdbDataError, CfdbUnsupportedError
from cfdb.generators import GENERATORS, GenerationTask, Generator, valid_mask
from cfdb.generators.base import output_text, target_mask
from cfdb.generators.reuse import Member as ReuseMember
from cfdb.generators.reuse import PoolCF, evaluate_batch
from cfdb.generators.run import run_task
from cfdb.models import Model, train
from cfdb.types import FeatureSpec
from tests.generators.helpers import holds, instance, one_row, rows_of, score

NAMES = [n for n in GENERATORS.names() if GENERATORS.get(n).supports_regression]

CONDITIONS: dict[str, Cond] = {
    "true": TRUE,
    "member": Member("home", frozenset({"own", "mortgage"})),
    "or": Or((Member("student", frozenset({"false"})), Cmp("age", "<=", 30.0))),
}
ROWS = (0, 1, 5)


@pytest.fixture(scope="module")
def regressors(data: dict[str, np.ndarray], features: list[FeatureSpec]) -> dict[str, Model]:
    y = score(data)
    return {
        "ridge": train("ridge", {}, features, data, y, name="ridge"),
        "random_forest_regressor": train(
            "random_forest_regressor",
            {"n_estimators": 10, "max_depth": 5},
            features,
            data,
            y,
            name="rfr",
        ),
    }


def value_of(model: Model, row: dict[str, Any]) -> float:
    return float(model.predict_value(one_row(row))[0])


def make_regression_task(
    model: Model,
    features: list[FeatureSpec],
    x: dict[str, Any],
    cond: Cond = TRUE,
    **kw: Any,
) -> GenerationTask:
    return GenerationTask(
        instance=x,
        original_label=None,
        target=None,
        condition=normalize(cond, Domains(features)),
        original_value=value_of(model, {f.name: x[f.name] for f in features}),
        **kw,
    )


def row_valid(model: Model, features: list[FeatureSpec], task: GenerationTask, row: dict) -> bool:
    """The slow oracle: condition, immutables and the output's move, one row at a time."""
    if not holds(task.condition, row):
        return False
    if any(row[f.name] != task.instance[f.name] for f in features if not f.mutable):
        return False
    delta = value_of(model, {f.name: row[f.name] for f in features}) - task.original_value
    return {
        "up": delta >= task.min_change,
        "down": -delta >= task.min_change,
        "any": abs(delta) >= task.min_change,
    }[task.direction]


def fitted(name: str, model: Model, features: list[FeatureSpec], data: Any) -> Generator:
    return GENERATORS.get(name)().fit(model, features, dict(data))


def test_builtins_support_regression() -> None:
    assert {"nearest", "growing_spheres", "random"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["ridge", "random_forest_regressor"])
@pytest.mark.parametrize("direction", ["up", "down", "any"])
@pytest.mark.parametrize("cond", list(CONDITIONS), ids=list(CONDITIONS))
def test_valid_under_condition_and_direction(
    name: str,
    kind: str,
    direction: str,
    cond: str,
    regressors: dict[str, Model],
    features: list[FeatureSpec],
    data: Any,
) -> None:
    model = regressors[kind]
    gen = fitted(name, model, features, data)
    found = 0
    for i in ROWS:
        x = instance(data, i)
        task = make_regression_task(
            model, features, x, CONDITIONS[cond], n=3, seed=7, min_change=8.0, direction=direction
        )
        out = gen.generate(task)
        assert set(out) == {f.name for f in features}
        assert len(out["income"]) <= 3
        assert valid_mask(model, features, task, out).all()
        for row in rows_of(out):
            assert row_valid(model, features, task, row)
        found += len(out["income"])
    assert found > 0


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_picklable_with_a_regressor(
    name: str, regressors: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = regressors["random_forest_regressor"]
    task = make_regression_task(
        model, features, instance(data, 1), CONDITIONS["or"], n=3, seed=11, min_change=5.0
    )
    gen = fitted(name, model, features, data)
    first = gen.generate(task)
    again = pickle.loads(pickle.dumps(gen)).generate(task)
    assert set(first) == set(again)
    assert all(np.array_equal(np.asarray(first[k]), np.asarray(again[k])) for k in first)


def test_target_mask_matches_the_definition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        original = float(rng.normal(0, 10))
        change = float(rng.uniform(0.01, 10))
        values = original + rng.normal(0, 10, 30)
        values[:3] = [original + change, original - change, original]  # the boundaries
        for direction in ("up", "down", "any"):
            task = GenerationTask(
                {}, None, None, TRUE, original_value=original, min_change=change,
                direction=direction,
            )  # fmt: skip
            expected = [
                {"up": v - original >= change, "down": original - v >= change}.get(
                    direction, abs(v - original) >= change
                )
                for v in values.tolist()
            ]
            assert target_mask(task, values).tolist() == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"original_value": 1.0}, "needs min_change > 0"),
        ({"original_value": 1.0, "min_change": 0.0}, "needs min_change > 0"),
        ({"original_value": 1.0, "min_change": float("nan")}, "needs min_change > 0"),
        ({"original_value": 1.0, "min_change": 1.0, "direction": "left"}, "direction must be"),
        ({"min_change": 1.0}, "regression tasks only"),
        ({"original_value": 1.0, "min_change": 1.0, "target": "a"}, "no target label"),
    ],
)
def test_bad_regression_tasks_are_refused(kwargs: dict[str, Any], message: str) -> None:
    target = kwargs.pop("target", None)
    with pytest.raises(CfdbDataError, match=message):
        GenerationTask({}, None, target, TRUE, **kwargs)


def test_valid_mask_refuses_a_task_of_the_other_kind(
    regressors: dict[str, Model], models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    rows = {k: v[:3] for k, v in data.items()}
    label_task = GenerationTask(instance(data, 0), "accepted", None, TRUE)
    with pytest.raises(CfdbDataError, match="is a regression model, but the task's target is a"):
        valid_mask(regressors["ridge"], features, label_task, rows)
    value_task = GenerationTask(instance(data, 0), None, None, TRUE, original_value=1.0,
                                min_change=1.0)  # fmt: skip
    with pytest.raises(CfdbDataError, match="is a classification model"):
        valid_mask(models["logistic_regression"], features, value_task, rows)


def test_outputs_are_stored_as_text_that_reads_back_exactly(
    regressors: dict[str, Model], data: Any
) -> None:
    model = regressors["random_forest_regressor"]
    values = model.predict_value(data)
    text = output_text(model, values)
    assert all(float(t) == v for t, v in zip(text.tolist(), values.tolist(), strict=True))


class LabelsOnly(Generator):
    name = "labels_only"

    def generate(self, task: GenerationTask) -> Any:  # pragma: no cover - never fitted
        raise AssertionError


def test_classifier_only_generators_refuse_regressors_at_fit(
    regressors: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    with pytest.raises(CfdbUnsupportedError, match="'labels_only' supports classifiers only"):
        LabelsOnly().fit(regressors["ridge"], features, data)
    for name in GENERATORS.names():
        if not GENERATORS.get(name).supports_regression:
            with pytest.raises(CfdbUnsupportedError, match="supports classifiers only"):
                fitted(name, regressors["ridge"], features, data)


def test_reuse_verifies_a_pool_cf_against_each_members_own_output(
    regressors: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    """One pool CF, two members of the same class whose outputs differ: the CF serves the
    member it moves far enough, and the other member's generator is called."""
    model = regressors["ridge"]
    gen = fitted("growing_spheres", model, features, data)
    x = instance(data, 0)
    names = [f.name for f in features]
    base = value_of(model, {n: x[n] for n in names})
    cf = dict(x, income=float(x["income"]) + 40)  # ridge on score(): the output rises ~40
    up = value_of(model, {n: cf[n] for n in names}) - base
    assert up > 30
    near = make_regression_task(model, features, x, min_change=up - 1, direction="up")
    # The same instance, but a claimed original output that the CF does not exceed by enough.
    far = GenerationTask(x, None, None, TRUE, original_value=base + 5, min_change=up - 1,
                         direction="up")  # fmt: skip
    members = {
        1: [
            ReuseMember("near", near, gen, threshold=1e9),
            ReuseMember("far", far, gen, threshold=1e9),
        ]
    }
    pool = {1: [PoolCF(7, cf, "stored")]}
    choices = evaluate_batch([1], members, {}, pool)
    assert choices["near"].reused and choices["near"].cfs[0].ref == 7
    assert not choices["far"].reused and choices["far"].generator_called
    for cf_row in (c.row for c in choices["far"].cfs):
        assert row_valid(model, features, far, dict(cf_row))


def test_run_task_stores_a_regressors_output_as_its_label(
    regressors: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = regressors["random_forest_regressor"]
    gen = fitted("random", model, features, data)
    task = make_regression_task(model, features, instance(data, 5), n=2, seed=1, min_change=6.0)
    outcome = run_task(gen, "k", task, time_limit=10)
    assert outcome.error is None and outcome.count > 0
    values = model.predict_value(outcome.rows)
    assert [float(t) for t in outcome.labels.tolist()] == values.tolist()
