"""Algorithm 2 in waves (:class:`cfdb.engine.cfql_distributed.Waves`) against the sequential
walk it must reproduce (:func:`cfdb.generators.reuse.evaluate_batch`), on random condensed
graphs, members, thresholds, pool-check caps and persistent pools: same choices in the same
order, same CFs, same reuse decisions, same generator calls."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfdb.ctable.condition import TRUE, Cmp, Cond, Member
from cfdb.engine.cfql_distributed import GenerationStats, Waves
from cfdb.exec import make_executor
from cfdb.generators.reuse import Member as ReuseMember
from cfdb.generators.reuse import PoolCF, evaluate_batch
from tests.generators.helpers import instance, make_task
from tests.generators.test_conformance import fitted

CONDITIONS: list[Cond] = [
    TRUE,
    Member("home", frozenset({"own", "mortgage"})),
    Cmp("income", ">=", 40.0),
    Cmp("age", "<=", 60.0),
]


def canonical(choices: dict[Any, Any]) -> list[tuple[Any, ...]]:
    """Choices with CF refs renamed by first appearance (each run names new CFs its own way)."""
    names: dict[Any, int] = {}
    out = []
    for key, c in choices.items():
        refs = [names.setdefault(cf.ref, len(names)) for cf in c.cfs]
        rows = [tuple(sorted((k, str(v)) for k, v in cf.row.items())) for cf in c.cfs]
        out.append((key, c.reused, c.generator_called, c.error, refs, rows, c.distances))
    return out


@st.composite
def batches(draw: Any) -> dict[str, Any]:
    k = draw(st.integers(1, 6))
    edges = {
        i: {j for j in range(i + 1, k) if draw(st.booleans())} for i in range(k)
    }  # a DAG in the order 0..k-1, strongest first
    sizes = [draw(st.integers(0, 4)) for _ in range(k)]
    rows = draw(st.lists(st.integers(0, 299), min_size=sum(sizes), max_size=sum(sizes)))
    return {
        "k": k,
        "edges": edges,
        "sizes": sizes,
        "rows": rows,
        "conds": [draw(st.integers(0, len(CONDITIONS) - 1)) for _ in range(k)],
        "generators": [draw(st.integers(0, 1)) for _ in rows],
        "threshold": draw(st.sampled_from([0.0, 0.5, 2.0, 50.0])),
        "checks": draw(st.sampled_from([None, 0, 1, 3])),
        "pool_rows": draw(st.lists(st.integers(0, 299), max_size=4)),
        "seed": draw(st.integers(0, 5)),
    }


@pytest.fixture(scope="module")
def generators(models, features, data) -> list[Any]:
    model = models["logistic_regression"]
    return [
        fitted("nearest", model, features, data),
        fitted("random", model, features, data, n_samples=100),
    ]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=batches())
def test_waves_reproduce_the_sequential_walk(models, features, data, generators, batch) -> None:
    model, gens = models["logistic_regression"], generators
    members: dict[int, list[ReuseMember]] = {}
    rows = iter(batch["rows"])
    for cls, size in enumerate(batch["sizes"]):
        for j in range(size):
            row = next(rows)
            x = instance(data, row)
            task = make_task(model, features, x, CONDITIONS[batch["conds"][cls]], seed=row)
            members.setdefault(cls, []).append(
                ReuseMember(
                    (cls, j),
                    task,
                    gens[batch["generators"][sum(batch["sizes"][:cls]) + j]],
                    threshold=batch["threshold"],
                    max_pool_checks=batch["checks"],
                )
            )
    names = [f.name for f in features]
    stored = [
        PoolCF(1000 + i, {n: instance(data, r)[n] for n in names}, "stored")
        for i, r in enumerate(batch["pool_rows"])
    ]
    pools = {c: stored[c % 2 :: 2] for c in range(batch["k"])}
    order = list(range(batch["k"]))
    local = evaluate_batch(order, members, batch["edges"], pools, seed=batch["seed"])
    stats = GenerationStats()
    waves = Waves(order, members, batch["edges"], pools, batch["seed"]).run(
        make_executor("local", 1), None, stats
    )
    assert canonical(waves) == canonical(local)
    assert stats.calls == sum(c.generator_called for c in local.values())
    # every wave asks for at least one call, and never more waves than calls
    assert stats.waves <= stats.calls


def test_a_wave_runs_independent_classes_together(models, features, data) -> None:
    """Two unrelated classes whose first members must generate: one wave for both; a third
    class implied by both waits for them (two waves in all)."""
    model = models["logistic_regression"]
    gen = fitted("nearest", model, features, data)

    def member(key: Any, row: int) -> ReuseMember:
        task = make_task(model, features, instance(data, row), TRUE, seed=row)
        return ReuseMember(key, task, gen, threshold=1e-9)

    members = {0: [member("a", 0)], 1: [member("b", 1)], 2: [member("c", 5)]}
    stats = GenerationStats()
    waves = Waves([0, 1, 2], members, {0: {2}, 1: {2}}, {}, 0).run(
        make_executor("local", 1), None, stats
    )
    local = evaluate_batch([0, 1, 2], members, {0: {2}, 1: {2}}, {})
    assert canonical(waves) == canonical(local)
    assert (stats.calls, stats.waves) == (3, 2)
