"""CFQL over regression models (CFDB paper, section 4.4): a CF is a change of the model's
numeric output by at least ``min_change`` in the asked ``direction``.

Every stored CF is checked against its stored condition in DuckDB, against its immutable
features, and against the model's output recomputed by loading the model from the database
(which must also equal the text stored in ``CFs.Label``). ``nearest`` is checked against a
brute-force search of the pool, one row at a time.
"""

from __future__ import annotations

import numpy as np
import pytest

import cfdb
from cfdb.engine.handlers.models import columns_of, load_model
from cfdb.generators import GENERATORS, Generator
from tests.engine.test_models_sql import price_frame
from tests.generators.helpers import row_distance

REGRESSION_GENERATORS = [n for n in GENERATORS.names() if GENERATORS.get(n).supports_regression]
CLASSIFIER_ONLY = [n for n in GENERATORS.names() if not GENERATORS.get(n).supports_regression]

Q_PRED = (
    "SELECT PredictionId FROM Predictions P JOIN Instances I USING (InstanceId) "
    "WHERE I.split = 'test' AND I.InstanceId < 140"
)
Q_CF = (
    "SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId "
    "AND C.home = I.home AND (C.income <> I.income OR C.amount < I.amount)"
)


@pytest.fixture(scope="module")
def prices():
    db = cfdb.connect()
    db.load_instances(
        price_frame(), id="applicant", label="price", split="part", immutable=["student"]
    )
    db.sql(
        "CREATE MODEL r AS random_forest_regressor WITH (n_estimators = 8, max_depth = 5) "
        "TRAIN ON (SELECT * FROM Instances WHERE split = 'train');"
        "PREDICT r ON (SELECT * FROM Instances)"
    )
    yield db
    db.close()


def foreach(generator: str, options: str, q_pred: str = Q_PRED, q_cf: str = Q_CF) -> str:
    return f"FOREACH pred IN ({q_pred}) GENERATE ({q_cf}) USING {generator} WITH ({options})"


def last_query(db) -> int:
    return db.sql("SELECT max(QueryId) FROM CFQueries").fetchall()[0][0]


def moved(delta: np.ndarray, direction: str, min_change: float) -> np.ndarray:
    if direction == "up":
        return delta >= min_change
    if direction == "down":
        return -delta >= min_change
    return np.abs(delta) >= min_change


def check_regression_cfs(db, query_id: int, min_change: float, direction: str) -> int:
    """Every CF linked by ``query_id``: condition (in DuckDB), immutables, and the output
    moved enough (recomputed by the loaded model, and in SQL from the stored text)."""
    for pred, cond in db.sql(
        "SELECT PredictionId, Condition FROM Conditions WHERE QueryId = ? AND "
        "Status IN ('satisfied', 'reused')",
        params=[query_id],
    ).fetchall():
        bad = db.sql(
            f"SELECT count(*) FROM CFs C JOIN Prediction_CFs PC USING (CfId) "
            f"WHERE PC.QueryId = {query_id} AND PC.PredictionId = {pred} AND NOT ({cond})"
        ).fetchall()
        assert bad == [(0,)], cond
    rows = db.sql(
        "SELECT C.*, P.Score AS original, I.student AS inst_student, "
        "CAST(C.Label AS DOUBLE) AS stored FROM CFs C JOIN Prediction_CFs PC USING (CfId) "
        "JOIN Predictions P USING (PredictionId) JOIN Instances I ON I.InstanceId = P.InstanceId "
        f"WHERE PC.QueryId = {query_id}"
    ).to_arrow_table()
    if not rows.num_rows:
        return 0
    _, model = load_model(db.session, "r")
    cols = columns_of(rows)
    values = model.predict_value(cols)
    assert np.array_equal(values, cols["stored"].astype(float))
    assert moved(values - cols["original"].astype(float), direction, min_change).all()
    assert (cols["student"] == cols["inst_student"]).all()
    # The same check in plain SQL, as a BI tool would run it.
    sign = {"up": "", "down": "-", "any": "abs"}[direction]
    failing = db.sql(
        f"SELECT count(*) FROM CFs C JOIN Prediction_CFs PC USING (CfId) JOIN Predictions P "
        f"USING (PredictionId) WHERE PC.QueryId = {query_id} AND NOT "
        f"({sign}(CAST(C.Label AS DOUBLE) - P.Score) >= {min_change})"
    ).fetchall()
    assert failing == [(0,)]
    return rows.num_rows


@pytest.mark.parametrize("direction", ["up", "down", "any"])
@pytest.mark.parametrize("generator", REGRESSION_GENERATORS)
def test_every_regression_generator_stores_only_verified_cfs(prices, generator, direction):
    min_change = 15.0
    result = prices.sql(
        foreach(generator, f"min_change = {min_change}, direction = '{direction}', n = 2, seed = 3")
    ).fetchall()
    query_id = last_query(prices)
    stored = check_regression_cfs(prices, query_id, min_change, direction)
    assert stored == len(result) > 0
    statuses = dict(
        prices.sql(
            "SELECT Status, count(*) FROM Conditions WHERE QueryId = ? GROUP BY ALL",
            params=[query_id],
        ).fetchall()
    )
    assert statuses.get("satisfied", 0) > 0


def test_nearest_finds_the_closest_valid_pool_row(prices):
    """Brute force: every instance, its output, its condition in DuckDB, one at a time; the
    home that Q_CF forces (``C.home = I.home``) is pinned on every pool row first."""
    min_change, direction = 10.0, "up"
    prices.sql(foreach("nearest", f"min_change = {min_change}, direction = '{direction}'"))
    query_id = last_query(prices)
    from cfdb.engine.handlers.models import model_features

    features = model_features(prices.session.store)
    names = [f.name for f in features]
    pool = prices.sql(f"SELECT {', '.join(names)} FROM Instances").to_arrow_table().to_pylist()
    _, model = load_model(prices.session, "r")
    records = prices.sql(
        "SELECT C.PredictionId, C.Condition, C.Status, P.Score, I.* FROM Conditions C "
        "JOIN Predictions P USING (PredictionId) JOIN Instances I ON I.InstanceId = P.InstanceId "
        "WHERE C.QueryId = ? ORDER BY 1",
        params=[query_id],
    ).to_arrow_table()
    for rec in records.to_pylist():
        x = {n: rec[n] for n in names}
        pinned = prices.sql(
            "SELECT * REPLACE (CAST(? AS VARCHAR) AS home) FROM Instances", params=[x["home"]]
        ).to_arrow_table()
        prices.session.store.register("pinned_pool", pinned)
        holds = prices.sql(
            f"SELECT list(ok) FROM (SELECT ({rec['Condition']}) AS ok FROM pinned_pool)"
        ).fetchall()[0][0]
        prices.session.store.unregister("pinned_pool")
        best = None
        for row, ok in zip(pool, holds, strict=True):
            row = {**row, "home": x["home"]}
            if not ok or row["student"] != x["student"]:
                continue
            value = model.predict_value({n: np.array([row[n]], dtype=object) for n in names})[0]
            if value - rec["Score"] >= min_change:
                d = row_distance("tabular", x, row, features)
                best = d if best is None else min(best, d)
        got = prices.sql(
            "SELECT min(Distance) FROM Prediction_CFs WHERE QueryId = ? AND PredictionId = ?",
            params=[query_id, rec["PredictionId"]],
        ).fetchall()[0][0]
        if best is None:
            assert rec["Status"] == "failed" and got is None
        else:
            assert rec["Status"] == "satisfied"
            assert got == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize(
    ("options", "error", "message", "pointed_at"),
    [
        ("n = 1", cfdb.CfdbDataError, "give the least change in WITH \\(min_change", "SELECT"),
        ("min_change = 0", cfdb.CfdbDataError, "positive number, not 0", "min_change = 0"),
        ("min_change = -2", cfdb.CfdbDataError, "positive number", "min_change = -2"),
        ("min_change = 'big'", cfdb.CfdbDataError, "positive number", "min_change = 'big'"),
        (
            "min_change = 5, direction = 'sideways'",
            cfdb.CfdbDataError,
            "direction must be one of up, down, any",
            "direction = 'sideways'",
        ),
        ("min_change = 5, target = '3'", cfdb.CfdbDataError, "target names a class", "target"),
    ],
)
def test_bad_regression_options_are_clear_errors_that_change_nothing(
    prices, options, error, message, pointed_at
):
    before = prices.sql("SELECT count(*) FROM CFQueries").fetchall()
    for explain in ("", "EXPLAIN "):
        with pytest.raises(error, match=message) as info:
            prices.sql("SELECT 1;\n" + explain + foreach("growing_spheres", options))
        assert info.value.sql[info.value.start :].startswith(pointed_at), info.value.render()
    assert prices.sql("SELECT count(*) FROM CFQueries").fetchall() == before


def test_regression_options_on_classifiers_are_refused(toy):
    toy.sql(
        "CREATE MODEL t AS decision_tree TRAIN ON (SELECT * FROM Instances);"
        "PREDICT t ON (SELECT * FROM Instances)"
    )
    with pytest.raises(cfdb.CfdbDataError, match="min_change applies to regression models"):
        toy.sql(
            "FOREACH pred IN (SELECT PredictionId FROM Predictions LIMIT 2) "
            "GENERATE (SELECT C.* FROM CFs C) WITH (min_change = 3)"
        )


@pytest.mark.parametrize("generator", CLASSIFIER_ONLY)
def test_classifier_only_generators_refuse_regressors(prices, generator):
    with pytest.raises(cfdb.CfdbUnsupportedError, match="supports classifiers only"):
        prices.sql(foreach(generator, "min_change = 5"))


class LabelsOnly(Generator):
    """A third-party generator that never declared regression support."""

    name = "labels_only_test_generator"

    def generate(self, task):  # pragma: no cover - fit refuses first
        raise AssertionError("not reached")


def test_a_third_party_generator_refuses_regressors_by_default(prices):
    GENERATORS.register(LabelsOnly.name, LabelsOnly)
    try:
        with pytest.raises(cfdb.CfdbUnsupportedError, match="generators for regressors: ") as e:
            prices.sql(foreach(LabelsOnly.name, "min_change = 5"))
        assert "growing_spheres" in str(e.value)
        assert e.value.start is not None
    finally:
        del GENERATORS._items[LabelsOnly.name]


def test_batch_reuse_is_verified_against_each_members_own_output(prices):
    """Two queries over the same predictions, the second's condition weaker: with a large
    reuse threshold CFs flow from the first to the second, and from the stored pool; every
    reused CF still moves *its* prediction's output enough."""
    q_cf_weak = (
        "SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId "
        "AND (C.income <> I.income OR C.amount < I.amount)"
    )
    q_pred = "SELECT PredictionId FROM Predictions WHERE InstanceId BETWEEN 100 AND 130"
    options = "min_change = 12, direction = 'any', seed = 2"
    summary = prices.sql(
        "BEGIN BATCH WITH (reuse_threshold = 100);"
        f"{foreach('growing_spheres', options, q_pred)};"
        f"{foreach('growing_spheres', options, q_pred, q_cf_weak)};"
        "END BATCH"
    ).to_arrow_table()
    assert summary.num_rows == 2
    batch = prices.sql(
        "SELECT BatchId, GeneratorCalls, Reused FROM CFBatches ORDER BY BatchId DESC LIMIT 1"
    ).fetchall()[0]
    assert batch[2] > 0  # reuse happened
    for query_id in prices.sql(
        "SELECT QueryId FROM CFQueries WHERE BatchId = ?", params=[batch[0]]
    ).fetchall():
        check_regression_cfs(prices, query_id[0], 12.0, "any")
    # A later query with a larger threshold reuses stored CFs only where they still qualify.
    stronger = foreach("growing_spheres", "min_change = 30", q_pred, q_cf_weak)
    prices.sql(f"BEGIN BATCH WITH (reuse_threshold = 100); {stronger}; END BATCH")
    query_id = last_query(prices)
    assert check_regression_cfs(prices, query_id, 30.0, "any") > 0


def test_a_regression_prediction_without_score_is_a_clear_error(db):
    db.sql(
        "CREATE TABLE Instances (InstanceId BIGINT, Income DOUBLE, Home VARCHAR, "
        "GroundTruth VARCHAR);"
        "INSERT INTO Instances VALUES (1, 20, 'rent', '3.5'), (2, 60, 'own', '7.0');"
        "INSERT INTO Models (ModelId, Name, Kind, Task) VALUES (1, 'hand', 'ridge', 'regression');"
        "INSERT INTO Predictions (PredictionId, ModelId, InstanceId, Label, Score) VALUES "
        "(1, 1, 1, NULL, NULL), (2, 1, 2, NULL, 7.1)"
    )
    with pytest.raises(cfdb.CfdbDataError, match="prediction 1 of a regression model has no Score"):
        db.sql(
            "EXPLAIN FOREACH pred IN (SELECT PredictionId FROM Predictions) "
            "GENERATE (SELECT C.* FROM CFs C WHERE C.Income > 10) WITH (min_change = 1)"
        )
    # The paper's Classifiers relation does not list the hand-entered regressor.
    assert db.sql("SELECT count(*) FROM Classifiers").fetchall() == [(0,)]
