"""Fork and join VALUATE over validation parts on worker processes: the values equal the
in-process run bit for bit, and the unsplit algorithms to rounding; the same for VALUATE in
SQL and for the label-repair loop."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cfdb.exec import make_executor
from cfdb.valuation import KnnShapley, Lineage, Problem, knn_fork, knn_join, knn_map
from cfdb.valuation.neighbors import Ranker, chunk_rows
from cfdb.valuation.validation_parts import MIN_PART, TARGET_PARTS, part_size
from tests.engine.test_valuate_sql import STAR


@pytest.fixture(scope="module")
def process():
    with make_executor("process", n_jobs=2) as executor:
        yield executor


def _problem(rows: list[list[int]], relation: list[int], seed: int, n_classes: int, n_val: int):
    rng = np.random.default_rng(seed)
    width = max(len(r) for r in rows)
    rv = np.full((len(rows), width), -1)
    for i, r in enumerate(rows):
        rv[i, : len(r)] = r
    lineage = Lineage(len(relation), np.asarray(relation), rv)
    # small integer features: distance ties are common and break by row order
    train = rng.integers(-3, 4, (len(rows), 3)).astype(float)
    labels = rng.integers(0, n_classes, len(rows))
    val = rng.integers(-3, 4, (n_val, 3)).astype(float)
    gain = rng.random((n_val, n_classes)) / n_val
    return Problem(train, labels, lineage, val, gain)


def _fork(seed: int, n_classes: int, n_val: int = 45) -> Problem:
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 12, 40)
    return _problem([[int(g)] for g in groups], [0] * 12, seed, n_classes, n_val)


def _join(seed: int, n_classes: int, dimension_only: bool = False, n_val: int = 45) -> Problem:
    rng = np.random.default_rng(seed)
    facts, dims = (10, 4) if dimension_only else (30, 6)
    rows = [[f, facts + int(rng.integers(0, dims))] for f in range(facts)]
    if dimension_only:  # rows of a dimension tuple alone: the general join algorithm
        rows += [[facts + d] for d in range(2)]
    return _problem(rows, [0] * facts + [1] * dims, seed, n_classes, n_val)


CASES = [
    ("fork", 1, "soft", 2, False),
    ("fork", 3, "vote", 3, False),
    ("join", 1, "soft", 2, False),  # K = 1 join
    ("join", 2, "vote", 3, False),  # the sweep
    ("join", 3, "soft", 2, True),  # the general algorithm
]


@pytest.mark.parametrize(("kind", "k", "utility", "n_classes", "extra"), CASES)
def test_fork_and_join_parts_on_workers_equal_in_process_bit_for_bit(
    process, kind, k, utility, n_classes, extra
):
    if kind == "fork":
        problem = _fork(k, n_classes)
    else:  # the general algorithm is slow: fewer validation rows (still 3 parts)
        problem = _join(k, n_classes, extra, n_val=20 if extra else 45)
    here = KnnShapley(k=k, knn_utility=utility).fit(problem)
    there = KnnShapley(k=k, knn_utility=utility, executor=process).fit(problem)
    assert here.pipeline_.kind == kind
    assert np.array_equal(here.values_, there.values_)
    assert here.info_ == there.info_
    # the parts add up to the algorithm run on all validation rows at once
    pipeline, ranker = here.pipeline_, Ranker(problem.train)
    n_vars = problem.lineage.n_vars
    if kind == "fork":
        whole = knn_fork.fork_values(
            ranker,
            pipeline.row_group,
            problem.labels,
            problem.val,
            problem.gain,
            n_vars,
            k,
            utility,
        )
    else:
        whole, _ = knn_join.join_values(
            ranker,
            pipeline.row_fact,
            pipeline.row_group,
            problem.labels,
            problem.val,
            problem.gain,
            n_vars,
            k,
            utility,
        )
    np.testing.assert_allclose(here.values_, whole, atol=1e-12)
    assert here.values_.sum() == pytest.approx(
        there.utility_all_, abs=1e-12
    )  # efficiency holds on both


def test_the_partition_depends_on_the_sizes_only():
    assert part_size(45, 40) == MIN_PART  # 6 parts of 8 rows
    assert part_size(10_000, 1000) == -(-10_000 // TARGET_PARTS)
    assert part_size(10_000, 10_000_000) == chunk_rows(10_000_000)  # the memory budget wins
    assert part_size(1, 5) == MIN_PART


def test_a_worker_rebuilds_its_state_for_a_new_value_even_at_a_reused_id():
    first = (np.zeros(3), 1)
    assert knn_map.worker_state(first, lambda: "first") == "first"
    assert knn_map.worker_state(first, lambda: "again") == "first"  # built once per value
    del first  # a worker may free the old value before the next arrives (Ray's do) ...
    second = (np.ones(3), 2)  # ... which may then get the freed id
    assert knn_map.worker_state(second, lambda: "second") == "second"


def test_a_failing_part_names_the_part(process):
    problem = _join(0, 2)
    bad = Problem(problem.train, problem.labels, problem.lineage, problem.val[:, :2], problem.gain)
    from cfdb.errors import CfdbExecutionError

    with pytest.raises(CfdbExecutionError, match=r"validation rows part \d of 6 failed"):
        KnnShapley(k=2, executor=process).fit(bad)


#: A join VALUATE over the ``STAR`` tables; ``{}`` takes extra options (the executor).
JOIN_VALUATE = (
    "VALUATE (SELECT r.length, r.stars, s.rating, r.verdict FROM reviews r "
    "JOIN sellers s ON r.seller_id = s.seller_id) "
    "EVALUATE ON (SELECT * FROM holdout) USING knn_shapley "
    "WITH (k = 2, label = 'verdict', transformer = 'none'{})"
)


def test_valuate_join_with_process_executor_equals_local(db):
    db.sql(STAR)
    db.sql(JOIN_VALUATE.format(""))
    db.sql(JOIN_VALUATE.format(", executor = 'process', n_jobs = 2"))
    got = db.sql(
        "SELECT RunId, Relation, TupleId, Value FROM DataValues ORDER BY Relation, TupleId, RunId"
    ).fetchall()
    assert [r[0] for r in got] == [1, 2] * (len(got) // 2)
    for a, b in zip(got[::2], got[1::2]):
        assert a[1:3] == b[1:3] and a[3] == b[3]  # bit for bit
    assert any(r[3] != 0.0 for r in got)


@pytest.mark.slow
def test_label_repair_rounds_on_worker_processes_equal_local():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    import label_repair

    common = ["--train", "60", "--valid", "40", "--test", "200", "--step", "0.34", "--k", "3"]
    common += ["--methods", "knn_interactive"]
    here = label_repair.run(label_repair.parser().parse_args(common))
    there = label_repair.run(
        label_repair.parser().parse_args([*common, "--executor", "process", "--n-jobs", "2"])
    )
    assert len(here[0].values) == 3  # one valuation per round
    assert here[0].values == there[0].values  # bit for bit, every round
    assert here[0].accuracy == there[0].accuracy and here[0].found == there[0].found
