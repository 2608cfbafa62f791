"""The CFQL batch planner (CFDB paper, section 4): typed plan objects per phase, the class
walk against Algorithm 2's reference implementation, and EXPLAIN PLAN's estimated generator
calls against the calls a run makes."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from cfdb.engine.cfql_batch import plan_batch, run_batch
from cfdb.engine.cfql_execute import _decimals, _Generators, _member, walk_classes
from cfdb.engine.cfql_explain import render
from cfdb.engine.cfql_plan import Access, CallEstimate
from cfdb.errors import CfdbSyntaxError
from cfdb.generators.reuse import evaluate_batch
from cfdb.lang.cfql import Foreach
from cfdb.lang.parse import split
from tests.cfql.test_batch import EXAMPLE_4_2, SECOND, _loans
from tests.cfql.test_generation import Q_CF, Q_PRED

THIRD = (
    "SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId "
    "AND C.income > I.income"
)


def _items(script: str) -> list:
    return [(s.node, s) for s in split(script) if isinstance(s.node, Foreach)]


def _estimate(tree: str) -> CallEstimate:
    found = re.search(r"Estimated generator calls: (\d+)(?: – (\d+))?", tree)
    assert found, tree
    low = int(found.group(1))
    return CallEstimate(low, int(found.group(2) or low))


def _calls(db, query_ids: list[int] | None = None) -> int:
    rows = db.sql("SELECT QueryId, GeneratorCalls FROM CFQueries WHERE Mode = 'run'").fetchall()
    return sum(c for q, c in rows if query_ids is None or q in query_ids)


@pytest.fixture(scope="module")
def loans():
    return _loans()


def test_phases_on_example_4_2(figure1):
    plan = plan_batch(
        figure1.session, _items(EXAMPLE_4_2), {"reuse_threshold": 1}, True, physical=True
    )
    assert [len(q.requests) for q in plan.queries] == [2, 1, 2]
    request = plan.queries[0].requests[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.condition = "TRUE"  # type: ignore[misc]
    stats = plan.logical.stats()
    assert (stats["Nodes"], stats["UniqueConditions"], stats["Classes"], stats["Edges"]) == (
        5,
        3,
        3,
        2,
    )
    (group,) = plan.physical.groups
    # C(1,1) ⇔ C(1,3) and C(2,4) ⇔ C(3,4) are two sources; both imply C(3,3), served last
    # from the CFs of both.
    classes = group.logical.classes
    by_request = {r.key: c for c in classes.values() for r in c.members}
    weakest = by_request[(3, 3)].class_id
    sources = {by_request[(1, 1)].class_id, by_request[(2, 4)].class_id}
    assert by_request[(1, 3)].class_id in sources and by_request[(3, 4)].class_id in sources
    assert group.logical.order[-1] == weakest
    steps = {s.class_id: s for s in group.steps}
    assert steps[weakest].access is Access.REUSE
    assert set(steps[weakest].reuse_from) == sources
    assert all(steps[c].access is Access.GENERATE for c in sources)
    assert classes[weakest].predecessors == frozenset(sources)
    assert plan.physical.estimate() == CallEstimate(2, 5)
    assert "Estimated generator calls: 2 – 5" in render(plan)
    # Without reuse every request generates: exact.
    no_reuse = plan_batch(figure1.session, _items(EXAMPLE_4_2), {}, True, physical=True)
    assert no_reuse.physical.estimate() == CallEstimate(5, 5)
    assert all(s.access is Access.GENERATE for g in no_reuse.physical.groups for s in g.steps)


def test_explain_plan_is_a_tree_and_generates_nothing(figure1):
    (row,) = figure1.sql(EXAMPLE_4_2.replace("EXPLAIN BEGIN", "EXPLAIN PLAN BEGIN")).fetchall()
    key, tree = row
    assert key == "physical_plan"
    titles = re.findall(r"╭─ ([A-Za-z]+(?: #\d)?) ", tree)
    assert titles == [
        "Record", "Execute", "Order", "Condense", "Graph", "Dedupe",
        "Compile #1", "Compile #2", "Compile #3",
    ]  # fmt: skip
    assert "Distinct conditions: 3" in tree
    assert "z3 calls (naive):" in tree  # construction = 'both'
    assert figure1.sql("SELECT count(*) FROM CFs").fetchall() == [(0,)]
    assert figure1.sql("SELECT DISTINCT Mode FROM CFQueries").fetchall() == [("explain",)]
    lone = figure1.sql(
        "EXPLAIN PLAN FOREACH pred IN (SELECT PredictionId FROM Predictions) GENERATE "
        "(SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId "
        "AND C.Income > I.Income)"
    ).fetchall()
    assert lone[0][0] == "physical_plan" and "Compile #1" in lone[0][1]
    with pytest.raises(CfdbSyntaxError, match="EXPLAIN BEGIN BATCH"):
        figure1.sql(
            "BEGIN BATCH; EXPLAIN PLAN FOREACH pred IN (SELECT PredictionId FROM Predictions) "
            "GENERATE (SELECT C.* FROM CFs C)"
        )
    assert figure1.session.open_block is None


def test_estimate_equals_the_calls_without_reuse_and_after_memo(loans):
    """threshold 0: one call per request not answered earlier; a repeat is all memo."""
    query = f"FOREACH pred IN ({Q_PRED}) GENERATE ({THIRD}) USING nearest"
    estimate = _estimate(loans.sql("EXPLAIN PLAN " + query).fetchall()[0][1])
    assert estimate.exact and estimate.low > 0
    before = _calls(loans)
    loans.sql(query)
    assert _calls(loans) - before == estimate.low
    again = _estimate(loans.sql("EXPLAIN PLAN " + query).fetchall()[0][1])
    assert again == CallEstimate(0, 0)
    loans.sql(query)
    assert _calls(loans) - before == estimate.low


def test_estimate_bounds_the_calls_with_reuse(loans):
    batch = (
        "BEGIN BATCH WITH (reuse_threshold = 3, persistent_pool = false);"
        f"FOREACH pred IN ({Q_PRED}) GENERATE ({Q_CF}) USING random WITH (seed = 4);"
        f"FOREACH pred IN ({Q_PRED}) GENERATE ({SECOND}) USING random WITH (seed = 4);"
        "END BATCH"
    )
    estimate = _estimate(loans.sql("EXPLAIN PLAN " + batch).fetchall()[0][1])
    assert not estimate.exact
    rows = loans.sql(batch).fetchall()
    actual = sum(r[5] for r in rows)
    assert estimate.low <= actual <= estimate.high


def test_estimate_low_is_reached_when_the_first_cf_serves_its_class(loans):
    """Two identical requests of one prediction: one class; its first member generates,
    the second reuses that CF (same instance) under a large threshold."""
    one = f"SELECT min(PredictionId) AS PredictionId FROM ({Q_PRED})"
    query = f"FOREACH pred IN ({one}) GENERATE ({THIRD}) USING random WITH (seed = 9);"
    batch = (
        f"BEGIN BATCH WITH (reuse_threshold = 1e9, persistent_pool = false);{query}{query}END BATCH"
    )
    estimate = _estimate(loans.sql("EXPLAIN PLAN " + batch).fetchall()[0][1])
    assert estimate == CallEstimate(1, 2)
    rows = loans.sql(batch).fetchall()
    assert sum(r[5] for r in rows) == estimate.low and sum(r[6] for r in rows) == 1


def test_class_walk_equals_algorithm_2(loans):
    """The per-class seam (generate_class, walked in order) against the reference
    evaluate_batch on the same members: identical choices, with random pool subsets."""
    script = (
        f"FOREACH pred IN ({Q_PRED}) GENERATE ({Q_CF}) USING random WITH (seed = 5);"
        f"FOREACH pred IN ({Q_PRED}) GENERATE ({SECOND}) USING random WITH (seed = 5);"
        f"FOREACH pred IN ({Q_PRED}) GENERATE ({THIRD}) USING random WITH (seed = 5);"
    )
    options = {"reuse_threshold": 2, "max_pool_checks": 2, "persistent_pool": False}
    plan = plan_batch(loans.session, _items(script), options, True, physical=True)
    features = plan.queries[0].features
    generators = _Generators(loans.session, features)
    decimals = _decimals(loans.session.store, features)
    by_id = {q.query_id: q for q in plan.queries}
    compared = 0
    for group in plan.physical.groups:
        lg = group.logical
        members: dict[int, list] = {}
        for r in lg.group.members:
            q = by_id[r.query_id]
            gen = generators.get(q, lg.group.model_id)
            m = _member(loans.session, q, r, gen, plan.physical, decimals)
            members.setdefault(lg.class_of_hash[r.hash], []).append(m)
        ours = walk_classes(group, members, seed=loans.session.seed)
        successors = {c: set(cls.successors) for c, cls in lg.classes.items()}
        pools = {s.class_id: list(s.pool) for s in group.steps}
        reference = evaluate_batch(lg.order, members, successors, pools, seed=loans.session.seed)
        assert list(ours) == list(reference)
        for key, choice in reference.items():
            mine = ours[key]
            assert [cf.ref for cf in mine.cfs] == [cf.ref for cf in choice.cfs]
            assert mine.distances == choice.distances and mine.reused == choice.reused
            assert mine.generator_called == choice.generator_called
            compared += 1
        assert any(c.reused for c in reference.values())
    assert compared == sum(len(q.requests) for q in plan.queries)


def test_the_shell_prints_the_tree_as_drawn(figure1):
    from tests.shell_helpers import Captured

    sh = Captured(figure1)
    assert sh.run(EXAMPLE_4_2.replace("EXPLAIN BEGIN", "EXPLAIN PLAN BEGIN"))
    out, err = sh.take()
    assert not err and "explain_value" not in out
    tree = out[out.index("╭─ Record ─") :]
    assert tree.splitlines()[0].endswith("╮") and tree.count("╭─ Compile #") == 3
    assert "Estimated generator calls: 5" in out
    assert sh.run("EXPLAIN SELECT 42;")  # DuckDB's own EXPLAIN prints its tree too
    out, _ = sh.take()
    assert "╭─ Projection" in out and "explain_value" not in out


@pytest.mark.parametrize(("seed", "threshold"), [(0, 0.0), (1, 0.5), (2, 2.0), (3, 5.0)])
def test_estimate_bounds_random_batches(loans, seed, threshold):
    """Random batches (shapes, thresholds, persistent pool on, so memo and POOL occur as the
    database fills): actual calls within the bounds, equal to them when exact."""
    rng = np.random.default_rng(seed)
    shapes = [Q_CF, SECOND, THIRD, "SELECT C.* FROM CFs C"]
    picked = rng.choice(len(shapes), size=int(rng.integers(1, 4)), replace=False)
    body = "".join(
        f"FOREACH pred IN ({Q_PRED}) GENERATE ({shapes[i]}) USING random WITH (seed = {seed});"
        for i in sorted(picked.tolist())
    )
    batch = f"BEGIN BATCH WITH (reuse_threshold = {threshold:g});{body}END BATCH"
    estimate = _estimate(loans.sql("EXPLAIN PLAN " + batch).fetchall()[0][1])
    actual = sum(r[5] for r in loans.sql(batch).fetchall())
    assert estimate.low <= actual <= estimate.high
    if threshold == 0:
        assert estimate.exact


def test_records_are_typed_and_match_the_stored_links(loans):
    items = _items(f"FOREACH pred IN ({Q_PRED}) GENERATE ({SECOND}) USING nearest WITH (n = 2);")
    plan, result = run_batch(loans.session, items, {}, False)
    (query,) = result.queries
    stored: dict[int, list[int]] = {}
    for pid, cf in loans.sql(
        f"SELECT PredictionId, CfId FROM Prediction_CFs WHERE QueryId = {query.query.query_id}"
    ).fetchall():
        stored.setdefault(pid, []).append(cf)
    assert len(query.records) == len(plan.queries[0].requests) > 0
    for rec in query.records:
        assert rec.answer.status in ("satisfied", "reused", "failed", "infeasible")
        assert sorted(rec.answer.cf_ids) == sorted(stored.get(rec.request.prediction_id, []))
        assert rec.answer.generated == (len(rec.answer.cf_ids) if rec.answer.called else 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        query.records[0].answer.status = "failed"  # type: ignore[misc]
    assert query.stats["GeneratorCalls"] == sum(r.answer.called for r in query.records)
