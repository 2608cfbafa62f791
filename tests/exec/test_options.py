"""``executor``, ``n_jobs`` and ``address`` are checked the same way by every statement that
runs heavy work, with the error pointing at the option; an unreachable cluster fails fast and
writes nothing; VALUATE's map path gives the same values bit for bit on worker processes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cfdb.errors import CfdbDataError, CfdbExecutionError
from cfdb.exec import exec_options, make_executor
from cfdb.exec.options import check_n_jobs
from cfdb.valuation import knn_map
from tests.cfql.test_generation import Q_CF, Q_PRED
from tests.engine.test_grid_sql import grid_sql, make_db
from tests.exec.ray_cluster import free_port

BAD_N_JOBS = ["0", "-2", "1.5", "'two'", "true"]


@pytest.mark.parametrize("value", [0, -2, 1.5, "two", True, None])
def test_n_jobs_must_be_a_positive_integer_or_minus_one(value):
    with pytest.raises(CfdbDataError, match="n_jobs must be a positive integer or -1") as info:
        check_n_jobs(value)
    assert info.value.option == "n_jobs"
    assert check_n_jobs(-1) == -1 and check_n_jobs(3) == 3


def test_exec_options_pick_the_first_source_and_check_every_value():
    opts = exec_options({"n_jobs": 2}, {"executor": "PROCESS", "n_jobs": 4}, {"address": "auto"})
    assert (opts.executor, opts.n_jobs, opts.address) == ("process", 2, "auto")
    assert exec_options({}, default_n_jobs=3).n_jobs == 3
    with pytest.raises(CfdbDataError, match="executor must be one of 'local', 'process'"):
        exec_options({"executor": "dask"})
    with pytest.raises(CfdbDataError, match="address must be a string") as info:
        exec_options({"address": 5})
    assert info.value.option == "address"


@pytest.fixture(scope="module")
def grid_db():
    db = make_db(3, 7)
    db.sql(grid_sql("g", "LEAVE ONE OUT", extra=", lazy = false"))
    yield db
    db.close()


def _located(err: CfdbDataError, option: str) -> str:
    assert err.sql is not None and err.start is not None
    return err.sql[err.start : err.end]


@pytest.mark.parametrize("value", BAD_N_JOBS)
def test_materialize_points_at_a_bad_n_jobs(grid_db, value):
    with pytest.raises(CfdbDataError, match="n_jobs must be") as info:
        grid_db.sql(f"MATERIALIZE GRID g WITH (n_jobs = {value})")
    assert "n_jobs" in _located(info.value, "n_jobs")
    assert grid_db.sql("SELECT count(*) FROM GridCells").fetchall() == [(0,)]


def test_create_grid_and_materialize_reject_an_unknown_executor(grid_db):
    with pytest.raises(CfdbDataError, match="executor must be one of") as info:
        grid_db.sql("MATERIALIZE GRID g WITH (executor = 'dask')")
    assert "executor" in _located(info.value, "executor")
    with pytest.raises(CfdbDataError, match="n_jobs must be") as info:
        grid_db.sql(grid_sql("h", "LEAVE ONE OUT", extra=", n_jobs = 0"))
    assert "n_jobs" in _located(info.value, "n_jobs")


@pytest.mark.parametrize("value", ["0", "'two'"])
def test_valuate_and_foreach_point_at_a_bad_n_jobs(db, value):
    db.sql("CREATE TABLE tr AS SELECT i AS id, i * 1.0 AS x, i % 2 AS y FROM range(6) r(i)")
    with pytest.raises(CfdbDataError, match="n_jobs must be") as info:
        db.sql(
            "VALUATE (SELECT id, x, y FROM tr) EVALUATE ON (SELECT x, y FROM tr) "
            f"USING knn_shapley WITH (label = 'y', n_jobs = {value})"
        )
    assert "n_jobs" in _located(info.value, "n_jobs")
    with pytest.raises(CfdbDataError, match="executor must be") as info:
        db.sql(
            "VALUATE (SELECT id, x, y FROM tr) EVALUATE ON (SELECT x, y FROM tr) "
            "USING knn_shapley WITH (label = 'y', executor = 'threads')"
        )
    assert "executor" in _located(info.value, "executor")


def test_foreach_points_at_a_bad_n_jobs(loans):
    with pytest.raises(CfdbDataError, match="n_jobs must be") as info:
        loans.sql(f"FOREACH pred IN ({Q_PRED}) GENERATE ({Q_CF}) USING random WITH (n_jobs = -3)")
    assert "n_jobs" in _located(info.value, "n_jobs")


@pytest.fixture
def loans(db):
    from tests.conftest import toy_frame

    db.load_instances(toy_frame(), id="applicant", label="decision", split="part")
    db.sql(
        "CREATE MODEL rf AS random_forest WITH (n_estimators = 5, max_depth = 3) "
        "TRAIN ON (SELECT * FROM Instances WHERE split = 'train');"
        "PREDICT rf ON (SELECT * FROM Instances)"
    )
    return db


def test_an_unreachable_ray_address_fails_fast_and_writes_nothing(grid_db):
    grid_db.sql("INSERT INTO GridCells SELECT * FROM GridCells WHERE false")  # table exists
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    for extra in ("", ", retry_failed = true"):
        with pytest.raises(CfdbExecutionError, match="cannot reach the Ray cluster"):
            grid_db.sql(f"MATERIALIZE GRID g WITH (executor = 'ray', address = '{address}'{extra})")
    assert time.monotonic() - started < 20  # two attempts, each well under 10 s
    assert grid_db.sql("SELECT count(*) FROM GridCells").fetchall() == [(0,)]


@pytest.mark.parametrize("knn", ["soft", "vote"])
def test_valuation_parts_on_worker_processes_are_bit_identical(knn):
    rng = np.random.default_rng(11)
    train = rng.normal(size=(200, 3))
    labels = rng.integers(0, 3, 200)
    val = rng.normal(size=(300, 3))
    gain = np.eye(3)[rng.integers(0, 3, 300)]
    fn = knn_map.soft_values if knn == "soft" else knn_map.vote_values
    threads = fn(train, labels, val, gain, 2, n_jobs=2)
    serial = fn(train, labels, val, gain, 2, n_jobs=2, executor=make_executor("local", 1))
    processes = fn(train, labels, val, gain, 2, executor=make_executor("process", 2))
    assert np.array_equal(threads, processes) and np.array_equal(threads, serial)
    assert knn_map.part_rows(300, 200) < 300  # the parts really were split
    # the parts do not depend on the workers: one thread and one worker process agree too
    one = fn(train, labels, val, gain, 2, n_jobs=1)
    single = fn(train, labels, val, gain, 2, executor=make_executor("process", 1))
    assert np.array_equal(threads, one) and np.array_equal(threads, single)


def test_valuate_statement_on_worker_processes_equals_threads(db):
    db.sql(
        "CREATE TABLE tr AS SELECT i AS id, (i * 37 % 101) / 10.0 AS x, (i * 11 % 13) * 1.0 AS z, "
        "CASE WHEN i % 3 = 0 THEN 'a' ELSE 'b' END AS y FROM range(150) r(i)"
    )
    statement = (
        "VALUATE (SELECT id, x, z, y FROM tr) EVALUATE ON (SELECT x + 0.5 AS x, z, y FROM tr) "
        "USING knn_shapley WITH (label = 'y', k = 3, n_jobs = 2{})"
    )
    db.sql(statement.format(""))
    db.sql(statement.format(", executor = 'process'"))
    rows = db.sql(
        "SELECT a.Value, b.Value FROM DataValues a JOIN DataValues b USING (Relation, TupleId) "
        "WHERE a.RunId = 1 AND b.RunId = 2"
    ).fetchall()
    assert len(rows) == 150 and all(a == b for a, b in rows)
