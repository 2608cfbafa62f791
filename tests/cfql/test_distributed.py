"""A batch generated on worker processes stores exactly what the local run stores: the same
CFs with the same ids, the same links and statuses, the same generator calls (reuse decisions
are taken in the local order, :mod:`cfdb.engine.cfql_distributed`); the calls are spread over
the workers; bad executor options are refused where they are written."""

from __future__ import annotations

import pytest

from cfdb.errors import CfdbDataError, CfdbSyntaxError
from tests.cfql.test_batch import SECOND, _loans
from tests.cfql.test_generation import Q_CF, Q_PRED

TABLES = {
    "CFs": "SELECT * FROM CFs ORDER BY CfId",
    "Prediction_CFs": "SELECT * FROM Prediction_CFs ORDER BY ALL",
    "Conditions": "SELECT QueryId, PredictionId, Hash, Status, Error, ClassId FROM Conditions "
    "ORDER BY ALL",
    "CFQueries": "SELECT QueryId, GeneratorCalls, Generated, Reused, Failed FROM CFQueries "
    "ORDER BY QueryId",
}


def batch(options: str) -> str:
    return (
        f"BEGIN BATCH WITH ({options});"
        f"FOREACH pred IN ({Q_PRED}) GENERATE ({Q_CF}) USING random;"
        f"FOREACH pred IN ({Q_PRED}) GENERATE ({SECOND}) USING nearest;"
        "END BATCH"
    )


def stored(db) -> dict[str, list[tuple]]:
    return {name: db.sql(sql).fetchall() for name, sql in TABLES.items()}


def test_worker_processes_store_the_local_cfs():
    options = "reuse_threshold = 3, max_pool_checks = 2"
    local, remote = _loans(), _loans()
    local.sql(batch(options))
    remote.sql(batch(f"{options}, executor = 'process', n_jobs = 2"))
    here, there = stored(local), stored(remote)
    assert here["CFs"] and here == there
    assert sum(r[3] for r in here["CFQueries"]) > 0  # reuse happened
    a, b = local.session.last_generation, remote.session.last_generation
    assert (a.executor, b.executor, b.workers) == ("local", "process", 2)
    assert a.calls == b.calls == sum(r[1] for r in here["CFQueries"])
    assert a.calls_by_worker == {"driver": a.calls}
    assert "driver" not in b.calls_by_worker and sum(b.calls_by_worker.values()) == b.calls
    assert 1 <= b.waves < a.waves  # calls ran several at a time
    local.close()
    remote.close()


def test_a_lone_foreach_without_reuse_runs_in_one_wave():
    local, remote = _loans(), _loans()
    query = f"FOREACH pred IN ({Q_PRED}) GENERATE ({Q_CF}) USING random WITH (seed = 4"
    local.sql(query + ")")
    remote.sql(query + ", executor = 'process', n_jobs = 2)")
    assert stored(local) == stored(remote)
    generation = remote.session.last_generation
    assert (generation.executor, generation.waves) == ("process", 1)
    assert len(generation.calls_by_worker) == 2  # both workers had calls
    local.close()
    remote.close()


def test_bad_executor_options_of_a_batch_are_refused_where_written():
    db = _loans()
    with pytest.raises(CfdbDataError, match="executor must be one of") as err:
        db.sql("BEGIN BATCH WITH (reuse_threshold = 1, executor = 'spark')")
    assert err.value.start is not None
    assert "'spark'" in db.session.last_sql[err.value.start : err.value.end]
    with pytest.raises(CfdbDataError, match="n_jobs must be"):
        db.sql("BEGIN BATCH WITH (n_jobs = 0)")
    with pytest.raises(CfdbSyntaxError, match="unknown batch option 'workers'"):
        db.sql("BEGIN BATCH WITH (workers = 2)")
    db.close()
