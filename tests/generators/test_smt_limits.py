"""The ``smt`` generator at its limits: infeasible condition + model combinations come back
empty, quickly, and reported as infeasible; the time limit is enforced at process level (the
solver process is killed, the best CF so far kept and flagged); the solver process is replaced
after a kill; in a daemonic process the search runs in-process; and CFQL runs it end to end.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import numpy as np
import pytest

from cfdb.ctable.condition import TRUE, And, Cmp, Cond, Member, VarCmp
from cfdb.errors import CfdbDataError, CfdbSolverError
from cfdb.generators import GenerationTask, valid_mask
from cfdb.generators.smt import Smt
from cfdb.models import Model, train
from cfdb.types import FeatureSpec
from tests.conftest import toy_frame
from tests.generators.helpers import instance, make_task


def pinned(x: dict[str, Any]) -> Cond:
    """Every mutable feature keeps the instance's value: the label cannot change."""
    return And(
        (
            Cmp("income", "=", float(x["income"])),
            Cmp("age", "=", float(x["age"])),
            Member("home", frozenset({x["home"]})),
            Member("student", frozenset({"true" if x["student"] else "false"})),
        )
    )


INFEASIBLE = {
    "pinned": pinned,
    # Satisfiable over the reals, but beyond every observed income: CFs stay in the range.
    "beyond the range": lambda x: Cmp("income", ">", 10_000.0),
    # Contradictory only through a comparison between features, which z3 must see.
    "contradiction": lambda x: And(
        (VarCmp("age", ">", "income"), Cmp("age", "<=", 20.0), Cmp("income", ">=", 30.0))
    ),
}


@pytest.mark.parametrize("name", list(INFEASIBLE))
@pytest.mark.parametrize("kind", ["logistic_regression", "random_forest"])
def test_infeasible_conditions_return_none_quickly(
    name: str, kind: str, models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models[kind]
    gen = Smt().fit(model, features)
    try:
        for i in (0, 1, 5):
            x = instance(data, i)
            task = make_task(model, features, x, INFEASIBLE[name](x), n=2)
            started = time.monotonic()
            out = gen.generate(task)
            assert time.monotonic() - started < 2
            assert len(out["income"]) == 0
            assert out.info["status"] == "infeasible"
    finally:
        gen.close()


def test_a_label_no_mutable_feature_moves_is_infeasible(
    features: list[FeatureSpec], data: Any
) -> None:
    # The label is the immutable feature itself: no CF can change it.
    model = train("decision_tree", {}, features, data, data["sex"], name="by_sex")
    gen = Smt(process=False).fit(model, features)
    for objective in ("l0", "l1", "tabular", "l0_l1"):
        task = make_task(
            model, features, instance(data, 0), TRUE, n=1, params={"objective": objective}
        )
        out = gen.generate(task)
        assert len(out["income"]) == 0 and out.info["status"] == "infeasible"


@pytest.fixture(scope="module")
def big_forest(features: list[FeatureSpec], data: Any, binary_labels: np.ndarray) -> Model:
    return train(
        "random_forest",
        {"n_estimators": 60, "max_depth": 10},
        features,
        data,
        binary_labels,
        name="big",
    )


def test_time_limit_is_enforced_by_killing_the_solver(
    big_forest: Model, features: list[FeatureSpec], data: Any
) -> None:
    gen = Smt(objective="l1").fit(big_forest, features)
    try:
        worker = gen.worker_
        limit = 0.3
        for i in (0, 1):
            task = make_task(
                big_forest,
                features,
                instance(data, i),
                TRUE,
                n=3,
                deadline=time.monotonic() + limit,
            )
            started = time.monotonic()
            out = gen.generate(task)
            spent = time.monotonic() - started
            assert spent < limit + 0.25, spent
            assert out.info["status"] in ("timeout", "feasible")
            assert out.extra["__timed_out"].all()
            assert not out.extra["__optimal"].all() or len(out["income"]) < 3
            assert valid_mask(big_forest, features, task, out).all()
        assert worker.restarts == 2
        # A fresh solver process takes over: without a deadline the search completes.
        task = make_task(big_forest, features, instance(data, 5), TRUE, n=1)
        out = gen.generate(task)
        assert out.info["status"] == "optimal" and out.extra["__optimal"].all()
    finally:
        gen.close()


def _in_pool(args: tuple[Smt, Any]) -> tuple[str, int]:
    gen, task = args
    out = gen.generate(task)
    return out.info["status"], len(out["income"])


def test_daemonic_processes_solve_in_process(
    models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["random_forest"]
    gen = Smt().fit(model, features)
    task = make_task(model, features, instance(data, 0), TRUE, n=1)
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:  # pool workers are daemonic: no child process of their own
        status, count = pool.map(_in_pool, [(gen, task)])[0]
    assert (status, count) == ("optimal", 1)


def test_a_dead_solver_process_is_replaced(
    models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["logistic_regression"]
    gen = Smt().fit(model, features)
    try:
        task = make_task(model, features, instance(data, 0), TRUE, n=1)
        assert gen.generate(task).info["status"] == "optimal"
        gen.worker_.proc.kill()
        gen.worker_.proc.join()
        assert gen.generate(task).info["status"] == "optimal"
    finally:
        gen.close()


def test_unknown_objective_is_refused(
    models: dict[str, Model], features: list[FeatureSpec]
) -> None:
    with pytest.raises(CfdbDataError, match="objective"):
        Smt(objective="l2").fit(models["logistic_regression"], features)


def test_cfql_end_to_end(db: Any) -> None:
    db.load_instances(
        toy_frame(), id="applicant", label="decision", split="part", immutable=["student"]
    )
    db.sql(
        "CREATE MODEL rf AS random_forest WITH (n_estimators = 10, max_depth = 4) "
        "TRAIN ON (SELECT * FROM Instances WHERE split = 'train'); "
        "PREDICT rf ON (SELECT * FROM Instances WHERE split = 'test')"
    )
    rows = db.sql(
        "FOREACH pred IN (SELECT PredictionId FROM Predictions WHERE Label = 'rejected' "
        "ORDER BY PredictionId LIMIT 5) "
        "GENERATE (SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId "
        "AND C.home = I.home AND C.amount <= I.amount) "
        "USING smt WITH (objective = 'tabular', distance = 'tabular', n = 2)"
    ).fetchall()
    assert rows
    checked = db.sql(
        "SELECT count(*), count(*) FILTER (WHERE C.home = I.home AND C.amount <= I.amount "
        "AND C.Label = 'accepted') "
        "FROM Prediction_CFs PC JOIN CFs C USING (CfId) JOIN Predictions P USING (PredictionId) "
        "JOIN Instances I ON I.InstanceId = P.InstanceId"
    ).fetchall()
    assert checked[0][0] == checked[0][1] > 0
    assert db.sql("SELECT DISTINCT Generator FROM CFs").fetchall() == [("smt",)]


@pytest.mark.parametrize("process", [True, False])
def test_a_failing_search_raises_with_its_reason(
    process: bool, models: dict[str, Model], features: list[FeatureSpec], data: Any
) -> None:
    model = models["logistic_regression"]
    gen = Smt(process=process).fit(model, features)
    x = instance(data, 0)
    label = str(make_task(model, features, x).original_label)
    task = GenerationTask(
        instance=x, original_label=label, target=None, condition=Cmp("nope", ">", 1.0)
    )
    with pytest.raises(CfdbSolverError, match="unknown feature 'nope'"):
        gen.generate(task)
    gen.close()
