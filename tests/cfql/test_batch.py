"""Batches (CFDB paper, section 4): the paper's Example 4.2, identical graphs from both
constructions, reuse that is verified, and the persistent pool."""

from __future__ import annotations

import pandas as pd
import pytest

import cfdb
from tests.cfql.test_generation import Q_CF, Q_PRED, check_stored_cfs
from tests.conftest import toy_frame

LINK = "I.InstanceId = pred.InstanceId"
EXAMPLE_4_2 = f"""
EXPLAIN BEGIN BATCH WITH (construction = 'both');
FOREACH pred IN (SELECT PredictionId FROM Predictions WHERE ModelId = 1 AND InstanceId IN (1, 3))
  GENERATE (SELECT C.* FROM CFs C, Instances I WHERE {LINK} AND C.Home = I.Home AND C.Income > I.Income);
FOREACH pred IN (SELECT PredictionId FROM Predictions WHERE ModelId = 1 AND InstanceId = 4)
  GENERATE (SELECT C.* FROM CFs C, Instances I WHERE {LINK} AND (C.Home <> 'rent' OR C.Income > I.Income));
FOREACH pred IN (SELECT PredictionId FROM Predictions WHERE ModelId = 1 AND InstanceId IN (3, 4))
  GENERATE (SELECT C.* FROM CFs C, Instances I WHERE {LINK} AND (C.Home = 'own' OR C.Income > I.Income));
END BATCH;
"""


def test_example_4_2(figure1):
    summary = figure1.sql(EXAMPLE_4_2).fetchall()
    by_construction = {row[1]: row for row in summary}
    # 5 nodes. Hashing canonical forms merges C(1,1) with C(1,3) as in the paper, and also
    # C(2,4) with C(3,4): over Home's active domain {own, rent}, Home <> 'rent' normalizes to
    # Home = 'own' before the graph is built. 3 distinct conditions, 3 classes, 2 edges
    # between them; both constructions agree.
    for row in by_construction.values():
        assert row[2:6] == (5, 3, 3, 2)
    assert by_construction["atoms"][6] <= by_construction["naive"][6] <= 6
    conds = dict(
        ((q, p), (cond, cls))
        for q, p, cond, cls in figure1.sql(
            "SELECT QueryId, PredictionId, Condition, ClassId FROM Conditions"
        ).fetchall()
    )
    # Query ids are 1, 2, 3 (their order in the batch); prediction j is instance j's here.
    assert conds[(1, 1)][0] == conds[(1, 3)][0]
    assert conds[(1, 1)][1] == conds[(1, 3)][1]
    assert conds[(2, 4)][1] == conds[(3, 4)][1]  # Home is binary: C(2,4) ⇔ C(3,4)
    assert len({cls for _, cls in conds.values()}) == 3
    edges = set(
        figure1.sql(
            "SELECT FromQueryId, FromPredictionId, ToQueryId, ToPredictionId FROM ImplicationEdges"
        ).fetchall()
    )
    assert edges == {
        (1, 1, 3, 3),  # C(1,1) ⇒ C(3,3)
        (2, 4, 3, 3),  # C(2,4) (and its equal C(3,4)) ⇒ C(3,3)
    }
    positions = figure1.sql(
        "SELECT QueryId, Position, BatchId FROM CFQueries ORDER BY 1"
    ).fetchall()
    assert positions == [(1, 1, 1), (2, 2, 1), (3, 3, 1)]
    assert figure1.sql("SELECT count(*) FROM CFs").fetchall() == [(0,)]


def test_equivalences_that_only_the_graph_finds_become_one_class(figure1):
    figure1.sql(
        "EXPLAIN BEGIN BATCH;"
        "FOREACH pred IN (SELECT 4 AS PredictionId) GENERATE (SELECT C.* FROM CFs C "
        "WHERE C.Home = 'own');"
        "FOREACH pred IN (SELECT 4 AS PredictionId) GENERATE (SELECT C.* FROM CFs C "
        "WHERE C.Home = 'own' AND (C.Income > C.Amount OR C.Income <= C.Amount));"
        "END BATCH"
    )
    rows = figure1.sql("SELECT Condition, ClassId FROM Conditions ORDER BY QueryId").fetchall()
    assert rows[0][0] != rows[1][0] and rows[0][1] == rows[1][1]
    assert figure1.sql("SELECT count(*) FROM ImplicationEdges").fetchall() == [(2,)]


def test_batch_statements_may_span_several_calls_and_admit_only_foreach(figure1):
    figure1.sql("EXPLAIN BEGIN BATCH")
    with pytest.raises(cfdb.CfdbSyntaxError, match="only FOREACH"):
        figure1.sql("SELECT 1")
    figure1.sql(
        "FOREACH pred IN (SELECT 4 AS PredictionId) GENERATE (SELECT C.* FROM CFs C "
        "WHERE C.Income > 3)"
    )
    summary = figure1.sql("END BATCH").fetchall()
    assert summary[0][2] == 1
    with pytest.raises(cfdb.CfdbSyntaxError, match="END BATCH without BEGIN BATCH"):
        figure1.sql("END BATCH")


def _loans() -> cfdb.Database:
    db = cfdb.connect()
    db.load_instances(
        toy_frame(), id="applicant", label="decision", split="part", immutable=["student"]
    )
    db.sql(
        "CREATE MODEL rf AS random_forest WITH (n_estimators = 10, max_depth = 4) "
        "TRAIN ON (SELECT * FROM Instances WHERE split = 'train');"
        "PREDICT rf ON (SELECT * FROM Instances)"
    )
    return db


SECOND = (
    "SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId AND C.home = I.home"
)


def _cfs(db) -> pd.DataFrame:
    return db.sql(
        "SELECT PC.QueryId, PC.PredictionId, C.income, C.amount, C.home, C.student "
        "FROM Prediction_CFs PC JOIN CFs C USING (CfId) ORDER BY ALL"
    ).df()


def test_threshold_zero_gives_the_unoptimized_cfs():
    batched = _loans()
    batched.sql(
        f"BEGIN BATCH; FOREACH pred IN ({Q_PRED}) GENERATE ({Q_CF}) USING random WITH (seed = 2);"
        f"FOREACH pred IN ({Q_PRED}) GENERATE ({SECOND}) USING random WITH (seed = 2); END BATCH"
    )
    alone = _loans()
    alone.sql(f"FOREACH pred IN ({Q_PRED}) GENERATE ({Q_CF}) USING random WITH (seed = 2)")
    alone.sql(f"FOREACH pred IN ({Q_PRED}) GENERATE ({SECOND}) USING random WITH (seed = 2)")
    pd.testing.assert_frame_equal(_cfs(batched), _cfs(alone))
    assert batched.sql("SELECT sum(Reused) FROM CFQueries").fetchall() == [(0,)]


def test_reuse_cuts_generator_calls_and_every_reused_cf_is_valid():
    db = _loans()
    rows = db.sql(
        "BEGIN BATCH WITH (reuse_threshold = 3);"
        f"FOREACH pred IN ({Q_PRED}) GENERATE ({Q_CF}) USING growing_spheres;"
        f"FOREACH pred IN ({Q_PRED}) GENERATE ({SECOND}) USING growing_spheres;"
        "END BATCH"
    ).fetchall()
    predictions = sum(r[3] - r[4] for r in rows)
    calls = sum(r[5] for r in rows)
    reused = sum(r[6] for r in rows)
    assert reused > 0 and calls + reused + sum(r[7] for r in rows) == predictions
    for (query_id,) in db.sql("SELECT QueryId FROM CFQueries").fetchall():
        check_stored_cfs(db, query_id)
    saved = db.sql("SELECT CallsSaved, GeneratorCalls FROM CFBatches").fetchall()[0]
    assert saved == (reused, calls)
    distances = db.sql("SELECT max(Distance) FROM Prediction_CFs WHERE Reused").fetchall()[0][0]
    assert distances <= 3


def test_persistent_pool_makes_a_second_session_free(tmp_path):
    path = str(tmp_path / "pool.duckdb")
    db = cfdb.connect(path)
    db.load_instances(
        toy_frame(), id="applicant", label="decision", split="part", immutable=["student"]
    )
    db.sql(
        "CREATE MODEL rf AS random_forest WITH (n_estimators = 10, max_depth = 4) "
        "TRAIN ON (SELECT * FROM Instances);"
        "PREDICT rf ON (SELECT * FROM Instances);"
        f"FOREACH pred IN ({Q_PRED}) GENERATE ({Q_CF}) USING nearest"
    )
    first = db.sql("SELECT GeneratorCalls, Generated FROM CFQueries").fetchall()[0]
    db.close()
    db = cfdb.connect(path)
    db.sql(f"FOREACH pred IN ({Q_PRED}) GENERATE ({Q_CF}) USING nearest")
    second = db.sql("SELECT GeneratorCalls, Reused FROM CFQueries WHERE QueryId = 2").fetchall()
    assert first[0] > 0 and second == [(0, first[0])]
    check_stored_cfs(db, 2)
    # A weaker condition, with a threshold, draws on the stored CFs too.
    db.sql(
        f"FOREACH pred IN ({Q_PRED}) GENERATE (SELECT C.* FROM CFs C) USING nearest "
        "WITH (reuse_threshold = 100)"
    )
    third = db.sql("SELECT GeneratorCalls, Reused FROM CFQueries WHERE QueryId = 3").fetchall()[0]
    assert third[1] > 0
    check_stored_cfs(db, 3)
