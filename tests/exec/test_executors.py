"""Executors: the local process pool and a real local Ray instance give the serial results."""

from __future__ import annotations

import os

import pytest

import cfdb
from cfdb.errors import CfdbDataError, CfdbPluginError
from cfdb.exec import EXECUTORS, chunked, make_executor
from tests.engine.test_grid_sql import grid_sql, make_db


def scale(shared: dict, chunk: list[int]) -> list[tuple[int, int]]:
    return [(x, x * shared["factor"]) for x in chunk]


def test_chunks_keep_order_and_cover_every_item():
    items = list(range(37))
    for workers in (1, 2, 8):
        chunks = chunked(items, workers)
        assert [x for c in chunks for x in c] == items
        assert max(len(c) for c in chunks) <= 8
    assert chunked([], 2) == []


def test_registry_and_bad_arguments():
    assert {"local", "ray"} <= set(EXECUTORS.names())
    with pytest.raises(CfdbPluginError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(CfdbDataError, match="n_jobs must be"):
        make_executor("local", n_jobs=0)


def test_local_pool_equals_in_process():
    chunks = chunked(list(range(50)), 2)
    with make_executor("local", 1) as serial:
        expected = sorted(r for c in serial.map_chunks(scale, {"factor": 3}, chunks) for r in c)
    with make_executor("local", 2) as pool:
        got = sorted(r for c in pool.map_chunks(scale, {"factor": 3}, chunks) for r in c)
        again = sorted(r for c in pool.map_chunks(scale, {"factor": 3}, chunks) for r in c)
    assert got == expected == again == [(x, 3 * x) for x in range(50)]


def _cells(db, grid):
    return db.sql(
        f"SELECT SubsetId, SliceId, Metric, Value FROM GridCells WHERE Grid = '{grid}' ORDER BY ALL"
    ).fetchall()


@pytest.mark.slow
def test_materialize_with_two_worker_processes_equals_in_process():
    db = make_db(5, 30)
    db.sql(grid_sql("a", "EXHAUSTIVE", extra=", lazy = false"))
    db.sql(grid_sql("b", "EXHAUSTIVE", extra=", lazy = false"))
    db.sql("MATERIALIZE GRID a")
    out = db.sql("MATERIALIZE GRID b WITH (n_jobs = 2)").fetchall()[0]
    assert out[1] == 32
    assert [c[1:] for c in _cells(db, "a")] == [c[1:] for c in _cells(db, "b")]
    db.close()


@pytest.fixture(scope="module")
def ray_instance():
    import ray  # a dev dependency: this test must run, never skip

    saved = os.environ.get("RAY_AUTH_MODE")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    # ray.init() sets RAY_AUTH_MODE in this process's environment: do not leak it to the
    # tests that join other clusters
    if saved is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = saved


@pytest.mark.slow
def test_ray_executor_on_a_real_local_ray_instance(ray_instance, tmp_path):
    assert ray_instance.is_initialized()
    executor = make_executor("ray", n_jobs=2)
    chunks = chunked(list(range(20)), 2)
    got = sorted(r for c in executor.map_chunks(scale, {"factor": 5}, chunks) for r in c)
    assert got == [(x, 5 * x) for x in range(20)]
    # a grid trained through Ray equals the in-process one; DuckDB stays the single writer
    db = make_db(4, 31)
    db.sql(grid_sql("local", "EXHAUSTIVE", extra=", lazy = false"))
    db.sql(grid_sql("viaray", "EXHAUSTIVE", extra=", lazy = false"))
    db.sql("MATERIALIZE GRID local")
    out = db.sql("MATERIALIZE GRID viaray WITH (executor = 'ray', n_jobs = 2)").fetchall()[0]
    assert out[1] == 16
    assert [c[1:] for c in _cells(db, "local")] == [c[1:] for c in _cells(db, "viaray")]
    db.close()
    # the executor can also be the connection's default
    path = str(tmp_path / "ray.duckdb")
    with cfdb.connect(path, executor="ray", n_jobs=2) as db2:
        frame = make_db(4, 31)
        rows = frame.sql("SELECT * FROM pts").df()
        frame.close()
        db2.session.store.register("frame", rows)
        db2.sql("CREATE TABLE pts AS SELECT * FROM frame")
        db2.sql(grid_sql("g", "LEAVE ONE OUT", extra=", lazy = false"))
        assert db2.sql("MATERIALIZE GRID g").fetchall()[0][1] == 5


def nap(shared: float, chunk: list[int]) -> list[int]:
    import time

    time.sleep(shared * len(chunk))
    return list(chunk)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["local", "ray"])
def test_two_workers_run_chunks_side_by_side(name, request):
    import time

    if name == "ray":
        request.getfixturevalue("ray_instance")
    chunks = [[i] for i in range(8)]
    with make_executor(name, n_jobs=2) as executor:
        list(executor.map_chunks(nap, 0.0, chunks[:2]))  # start the workers
        started = time.perf_counter()
        done = sorted(x for c in executor.map_chunks(nap, 0.4, chunks) for x in c)
        elapsed = time.perf_counter() - started
    assert done == list(range(8))
    assert elapsed < 0.8 * 8 * 0.4, f"{elapsed:.2f} s: chunks did not overlap"
