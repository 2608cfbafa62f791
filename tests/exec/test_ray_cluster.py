"""The Ray executor against a real two-node local cluster (``ray start --head`` plus a second
node), joined by address as a user would: grid cells, CF generation (a CFQL batch with reuse
too) and VALUATE's validation parts (map, fork and join pipelines) give the in-process results;
the shared value reaches each worker once; tasks spread over both nodes; a killed Ray worker's
task is retried once, then recorded as lost."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cfdb
from cfdb.exec import make_executor
from cfdb.valuation import KnnShapley, knn_map
from tests.cfql.test_generation import Q_CF, Q_PRED
from tests.conftest import toy_frame
from tests.engine.test_grid_sql import grid_sql, make_db
from tests.engine.test_valuate_sql import STAR
from tests.exec.ray_cluster import start_cluster, wait_for_nodes
from tests.exec.test_pool import Tracker, dies
from tests.valuation.test_executors import CASES, JOIN_VALUATE, _fork, _join

pytestmark = pytest.mark.slow  # starting two Ray nodes takes ~30 s on a busy two-core machine


@pytest.fixture(scope="module")
def cluster():
    import ray  # a dev dependency: these tests must run, never skip

    if ray.is_initialized():
        ray.shutdown()
    # The test cluster runs without token authentication, so the driver must too: an earlier
    # local `ray.init()` in this process leaves RAY_AUTH_MODE=token in the environment, and a
    # driver in token mode cannot serve the cluster's workers (OwnerDiedError on every task).
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    running = start_cluster(nodes=2)
    try:
        ray.init(address=running.address, log_to_driver=False)
        wait_for_nodes(ray, 2)
        yield running
    finally:
        ray.shutdown()
        running.stop()
        shutil.rmtree(running.temp_dir, ignore_errors=True)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def where(shared: Tracker, chunk: list[int]) -> list[tuple[int, str, int]]:
    import ray

    time.sleep(0.5)  # long enough that both single-CPU nodes get tasks
    node = ray.get_runtime_context().get_node_id()
    return [(x * shared.factor, node, os.getpid()) for x in chunk]


def test_tasks_spread_over_both_nodes_and_the_shared_value_ships_once(cluster, tmp_path):
    log = tmp_path / "unpickled.log"
    shared = Tracker(str(log), 7)
    executor = make_executor("ray", n_jobs=2, address=cluster.address)
    got = [r for c in executor.map_chunks(where, shared, [[i] for i in range(8)]) for r in c]
    assert sorted(r[0] for r in got) == [7 * i for i in range(8)]
    assert len({r[1] for r in got}) == 2  # both nodes ran tasks
    workers = {r[2] for r in got}
    shipped = log.read_text().split()
    # each worker process deserialized the shared value once, however many tasks it ran
    assert len(shipped) == len(set(shipped)) and set(map(int, shipped)) == workers


def test_grid_cells_on_the_cluster_equal_the_in_process_cells(cluster):
    db = make_db(4, 31)
    db.sql(grid_sql("here", "EXHAUSTIVE", extra=", lazy = false"))
    db.sql(grid_sql("there", "EXHAUSTIVE", extra=", lazy = false"))
    db.sql("MATERIALIZE GRID here")
    out = db.sql(
        f"MATERIALIZE GRID there WITH (executor = 'ray', address = '{cluster.address}', n_jobs = 2)"
    ).fetchall()[0]
    assert out[1] == 16
    cells = "SELECT SubsetId, SliceId, Metric, Value FROM GridCells WHERE Grid = '{}' ORDER BY ALL"
    assert db.sql(cells.format("here")).fetchall() == db.sql(cells.format("there")).fetchall()
    db.close()


def test_cf_generation_on_the_cluster_equals_in_process(cluster, loans):
    def run(options: str) -> pd.DataFrame:
        return (
            loans.sql(
                f"FOREACH pred IN ({Q_PRED}) GENERATE ({Q_CF}) USING random "
                f"WITH (seed = 3{options})"
            )
            .df()
            .drop(columns=["CfId"])
            .sort_values(["income", "amount"])
            .reset_index(drop=True)
        )

    remote = run(f", executor = 'ray', address = '{cluster.address}', n_jobs = 2")
    pd.testing.assert_frame_equal(run(""), remote)


def test_a_reusing_cf_batch_on_the_cluster_stores_the_local_cfs(cluster):
    from tests.cfql.test_batch import _loans
    from tests.cfql.test_distributed import batch, stored

    options = "reuse_threshold = 3, max_pool_checks = 2"
    local, remote = _loans(), _loans()
    local.sql(batch(options))
    remote.sql(batch(f"{options}, executor = 'ray', address = '{cluster.address}', n_jobs = 2"))
    here = stored(local)
    assert here["CFs"] and here == stored(remote)
    generation = remote.session.last_generation
    assert generation.calls == local.session.last_generation.calls
    assert sum(generation.calls_by_worker.values()) == generation.calls
    # worker names are "<node id>/<host>:<pid>": calls ran on both nodes of the cluster
    assert len({name.split("/")[0] for name in generation.calls_by_worker}) == 2
    local.close()
    remote.close()


@pytest.fixture
def loans():
    db = cfdb.connect()
    db.load_instances(
        toy_frame(), id="applicant", label="decision", split="part", immutable=["student"]
    )
    db.sql(
        "CREATE MODEL rf AS random_forest WITH (n_estimators = 10, max_depth = 4) "
        "TRAIN ON (SELECT * FROM Instances WHERE split = 'train');"
        "PREDICT rf ON (SELECT * FROM Instances)"
    )
    yield db
    db.close()


@pytest.mark.parametrize("knn", ["soft", "vote"])
def test_valuation_parts_on_the_cluster_are_bit_identical(cluster, knn):
    rng = np.random.default_rng(5)
    train = rng.normal(size=(300, 4))
    labels = rng.integers(0, 2, 300)
    val = rng.normal(size=(260, 4))
    gain = np.eye(2)[rng.integers(0, 2, 260)]
    fn = knn_map.soft_values if knn == "soft" else knn_map.vote_values
    threads = fn(train, labels, val, gain, 3, n_jobs=2)
    remote = fn(train, labels, val, gain, 3, executor=make_executor("ray", 2, cluster.address))
    assert np.array_equal(threads, remote)


@pytest.mark.parametrize(("kind", "k", "utility", "n_classes", "extra"), CASES)
def test_fork_and_join_parts_on_the_cluster_are_bit_identical(
    cluster, kind, k, utility, n_classes, extra
):
    problem = _fork(k, n_classes) if kind == "fork" else _join(k, n_classes, extra, n_val=20)
    here = KnnShapley(k=k, knn_utility=utility).fit(problem)
    executor = make_executor("ray", 2, cluster.address)
    there = KnnShapley(k=k, knn_utility=utility, executor=executor).fit(problem)
    assert here.pipeline_.kind == kind and np.array_equal(here.values_, there.values_)


def test_valuate_join_on_the_cluster_equals_local(cluster):
    db = cfdb.connect()
    db.sql(STAR)
    db.sql(JOIN_VALUATE.format(""))
    db.sql(JOIN_VALUATE.format(f", executor = 'ray', address = '{cluster.address}', n_jobs = 2"))
    got = "SELECT Relation, TupleId, Value FROM DataValues WHERE RunId = {} ORDER BY ALL"
    assert db.sql(got.format(1)).fetchall() == db.sql(got.format(2)).fetchall()
    db.close()


def test_statements_naming_the_cluster_by_loopback_keep_the_connection(cluster):
    import ray

    # Ray reports the node's interface address, not the 127.0.0.1 the statement names
    job = ray.get_runtime_context().get_job_id()
    for _ in range(2):
        make_executor("ray", 2, cluster.address).connect()
        assert ray.get_runtime_context().get_job_id() == job  # no reconnection


def test_a_killed_ray_worker_is_retried_once_then_lost(cluster, tmp_path):
    executor = make_executor("ray", n_jobs=2, address=cluster.address)
    got = [
        r
        for c in executor.map_chunks(
            dies, str(tmp_path), [[1, 2, 3], [4, 5]], lost=lambda x, why: (x, "lost")
        )
        for r in c
    ]
    assert sorted(got) == [(1, "ok"), (2, "ok"), (3, "ok"), (4, "ok"), (5, "lost")]
    assert Path(tmp_path, "died-3").exists()
