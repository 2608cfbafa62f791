"""CREATE MODEL / PREDICT / IMPORT MODEL / DROP MODEL through SQL, and bad input, for
classifiers and regressors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cfdb
from cfdb.errors import CfdbCatalogError, CfdbDataError, CfdbPluginError, CfdbSyntaxError
from cfdb.models import MODEL_KINDS, REGRESSION_KINDS
from tests.conftest import toy_frame

TRAIN = "SELECT * FROM Instances WHERE split = 'train'"


def _proba_in_db(db, name):
    from cfdb.engine.handlers.models import columns_of, load_model

    _, model = load_model(db.session, name)
    data = db.sql("SELECT * FROM Instances ORDER BY InstanceId").to_arrow_table()
    return model.predict_proba(columns_of(data))


@pytest.mark.parametrize("kind", MODEL_KINDS.names())
def test_every_kind_trains_predicts_and_round_trips_through_the_file(kind, tmp_path):
    path = str(tmp_path / "m.duckdb")
    with cfdb.connect(path) as db:
        db.load_instances(toy_frame(), id="applicant", label="decision", split="part")
        summary = db.sql(f"CREATE MODEL m AS {kind} TRAIN ON ({TRAIN})").fetchall()
        assert summary[0][1:4] == ("m", kind, 225)
        assert summary[0][4] > 0.6  # training accuracy
        db.sql("PREDICT m ON (SELECT * FROM Instances)")
        before = _proba_in_db(db, "m")
        labels = db.sql("SELECT Label FROM Predictions ORDER BY InstanceId").fetchall()
    with cfdb.connect(path) as db:
        after = _proba_in_db(db, "m")
        assert np.array_equal(before, after)
        assert np.array_equal(
            np.max(after, axis=1),
            np.array(
                db.sql("SELECT Score FROM Predictions ORDER BY InstanceId").fetchnumpy()["Score"]
            ),
        )
    assert {label for (label,) in labels} <= {"accepted", "rejected"}


def test_predict_is_idempotent_and_reports_accuracy(toy):
    toy.sql(
        f"CREATE MODEL rf AS random_forest WITH (n_estimators = 5, max_depth = 3) TRAIN ON ({TRAIN})"
    )
    first = toy.sql("PREDICT rf ON (SELECT * FROM Instances WHERE split = 'test')").fetchall()
    assert first[0][:3] == ("rf", 75, 0) and 0.5 < first[0][3] <= 1
    again = toy.sql("PREDICT rf ON (SELECT * FROM Instances)").fetchall()
    assert again[0][:3] == ("rf", 225, 75)
    assert toy.sql("SELECT count(*), count(DISTINCT PredictionId) FROM Predictions").fetchall() == [
        (300, 300)
    ]


def test_model_options_label_features_encoding(toy):
    toy.sql(
        "CREATE MODEL lr AS logistic_regression WITH (C = 0.5, features = ('income', 'home'), "
        f"encoding = 'target', label = 'GroundTruth', seed = 3) TRAIN ON ({TRAIN})"
    )
    row = toy.sql("SELECT FeatureNames, Labels, Encoding, Params FROM Models").fetchall()[0]
    assert row[0] == ["income", "home"] and row[1] == ["accepted", "rejected"]
    assert row[2] == "target" and '"C": 0.5' in row[3]
    # PREDICT needs only the model's features.
    toy.sql("PREDICT lr ON (SELECT InstanceId, income, home FROM Instances)")


def test_register_fitted_pipeline_and_xgboost(toy):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from xgboost import XGBClassifier

    frame = toy_frame()
    features = ["income", "amount", "home"]
    pipe = make_pipeline(
        ColumnTransformer(
            [("oh", OneHotEncoder(handle_unknown="ignore"), ["home"])], remainder="passthrough"
        ),
        LogisticRegression(max_iter=500),
    ).fit(frame[features], frame.decision)
    toy.register_model("pipe", pipe, features=features)
    assert toy.last_sql.startswith('IMPORT MODEL "pipe" FROM')
    toy.predict("pipe")
    expected = pipe.predict(frame.sort_values("applicant")[features])
    got = toy.sql(
        "SELECT Label FROM Predictions P JOIN Models M USING (ModelId) WHERE M.Name = 'pipe' "
        "ORDER BY InstanceId"
    ).fetchnumpy()["Label"]
    assert list(got) == list(expected)

    y = (frame.decision == "accepted").astype(int)
    xgb = XGBClassifier(n_estimators=5, max_depth=2).fit(frame[["income", "amount"]], y)
    toy.register_model("xgb", xgb, features=["income", "amount"])
    toy.predict("xgb")
    assert toy.sql("SELECT Labels FROM Models WHERE Name = 'xgb'").fetchall() == [(["0", "1"],)]


def test_drop_model_removes_its_predictions(toy):
    toy.sql(
        f"CREATE MODEL t AS decision_tree TRAIN ON ({TRAIN}); PREDICT t ON (SELECT * FROM Instances)"
    )
    toy.sql("DROP MODEL t")
    assert toy.sql("SELECT count(*) FROM Predictions").fetchall() == [(0,)]
    toy.sql("DROP MODEL IF EXISTS t")
    with pytest.raises(CfdbCatalogError, match="'t' does not exist"):
        toy.sql("DROP MODEL t")


def _models(db):
    return db.sql("SELECT count(*) FROM Models").fetchall()[0][0]


@pytest.mark.parametrize(
    ("statement", "error", "message", "pointed_at"),
    [
        (
            "PREDICT nope ON (SELECT * FROM Instances)",
            CfdbCatalogError,
            "model 'nope' does not exist",
            "nope",
        ),
        (
            f"CREATE MODEL m AS magic_forest TRAIN ON ({TRAIN})",
            CfdbPluginError,
            "unknown model kind 'magic_forest'",
            "magic_forest",
        ),
        (
            f"CREATE MODEL m AS random_forest WITH (n_trees = 3) TRAIN ON ({TRAIN})",
            cfdb.CfdbError,
            "n_trees",
            "n_trees = 3",
        ),
        (
            "CREATE MODEL m AS random_forest TRAIN ON (SELECT InstanceId, income, GroundTruth FROM Instances)",
            CfdbDataError,
            "needs feature 'amount'",
            "SELECT InstanceId",
        ),
        (
            "CREATE MODEL m AS random_forest WITH (label = 'verdict') TRAIN ON (SELECT * FROM Instances)",
            CfdbDataError,
            "returns no label column 'verdict'",
            "SELECT * FROM Instances",
        ),
        (
            "CREATE MODEL m AS random_forest TRAIN ON (SELECT * FROM Instances WHERE GroundTruth = 'accepted')",
            CfdbDataError,
            "single class",
            None,
        ),
        (
            "CREATE MODEL m AS random_forest TRAIN ON (SELECT * REPLACE (CASE WHEN InstanceId < 110 THEN NULL ELSE income END AS income) FROM Instances)",
            CfdbDataError,
            "NULL",
            None,
        ),
        (
            "CREATE MODEL m AS random_forest TRAIN ON (SELECT * FROM Instancez)",
            CfdbCatalogError,
            "Instancez",
            "Instancez",
        ),
        (
            "CREATE MODEL m AS random_forest TRAIN ON (SELECT * FROM Instances",
            CfdbSyntaxError,
            "unclosed",
            None,
        ),
        ("CREATE MODEL m AS random_forest", CfdbSyntaxError, "ended early", None),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(toy, statement, error, message, pointed_at):
    before = _models(toy)
    with pytest.raises(cfdb.CfdbError, match=message) as info:
        toy.sql("SELECT 1;\n" + statement)
    assert isinstance(info.value, error)
    assert info.value.line is not None
    if pointed_at is not None:
        script = info.value.sql
        assert script[info.value.start :].startswith(pointed_at), info.value.render()
    assert _models(toy) == before
    assert toy.sql("SELECT count(*) FROM Predictions").fetchall() == [(0,)]


def test_model_on_columns_the_instances_lack(toy):
    toy.sql(f"CREATE MODEL m AS decision_tree TRAIN ON ({TRAIN})")
    with pytest.raises(CfdbDataError, match="needs feature 'home'") as info:
        toy.sql("PREDICT m ON (SELECT InstanceId, income, amount, student FROM Instances)")
    assert "^" in info.value.render()


def test_failed_statement_in_a_script_keeps_earlier_ones(toy):
    with pytest.raises(cfdb.CfdbError):
        toy.sql(f"CREATE MODEL a AS decision_tree TRAIN ON ({TRAIN});\nPREDICT b ON (SELECT 1)")
    assert toy.sql("SELECT Name FROM Models").fetchall() == [("a",)]


def test_unpicklable_registration_needs_opt_in(toy):
    from sklearn.linear_model import LogisticRegression

    class Custom(LogisticRegression):
        pass

    frame = toy_frame()
    est = Custom(max_iter=200).fit(frame[["income", "amount"]], frame.decision)
    with pytest.raises(cfdb.CfdbSecurityError):
        toy.register_model("c", est, features=["income", "amount"])
    assert _models(toy) == 0


def test_pandas_frame_with_nulls_in_features_is_loaded_but_not_trainable(db):
    frame = pd.DataFrame({"x": [1.0, None, 3.0, 4.0], "y": ["a", "b", "a", "b"]})
    db.load_instances(frame, label="y")
    with pytest.raises(CfdbDataError, match=r"'x'.*NULL|NULL.*'x'"):
        db.sql("CREATE MODEL m AS knn WITH (n_neighbors = 1) TRAIN ON (SELECT * FROM Instances)")


# ---- regression models (CFDB paper, section 4.4) ----------------------------------------------

FAST_REGRESSION = {
    "random_forest_regressor": "WITH (n_estimators = 5, max_depth = 4) ",
    "gradient_boosting_regressor": "WITH (n_estimators = 5, max_depth = 2) ",
    "xgboost_regressor": "WITH (n_estimators = 5, max_depth = 3) ",
}


def price_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """The toy loans with a numeric label: a price that depends on every feature."""
    frame = toy_frame(n, seed).drop(columns=["decision"])
    rng = np.random.default_rng(seed + 1)
    frame["price"] = (
        2 * frame.income
        - frame.amount
        + np.where(frame.home == "own", 25, 0)
        - 10 * frame.student
        + rng.normal(0, 3, n)
    ).round(2)
    return frame


@pytest.fixture
def prices(db):
    db.load_instances(price_frame(), id="applicant", label="price", split="part")
    return db


def _values_in_db(db, name):
    from cfdb.engine.handlers.models import columns_of, load_model

    _, model = load_model(db.session, name)
    data = db.sql("SELECT * FROM Instances ORDER BY InstanceId").to_arrow_table()
    return model.predict_value(columns_of(data))


@pytest.mark.parametrize("kind", REGRESSION_KINDS.names())
def test_every_regression_kind_trains_predicts_and_round_trips_through_the_file(kind, tmp_path):
    path = str(tmp_path / "r.duckdb")
    frame = price_frame()
    with cfdb.connect(path) as db:
        db.load_instances(frame, id="applicant", label="price", split="part")
        summary = db.sql(
            f"CREATE MODEL r AS {kind} {FAST_REGRESSION.get(kind, '')}TRAIN ON ({TRAIN})"
        ).to_arrow_table()
        assert summary.column_names == [
            "ModelId", "Name", "Kind", "TrainRows", "TrainMSE", "TrainMAE", "Seconds"
        ]  # fmt: skip
        row = summary.to_pylist()[0]
        assert (row["Name"], row["Kind"], row["TrainRows"]) == ("r", kind, 150)
        assert db.sql("SELECT Task, Labels FROM Models").fetchall() == [("regression", None)]
        report = db.sql("PREDICT r ON (SELECT * FROM Instances)").to_arrow_table().to_pylist()[0]
        before = _values_in_db(db, "r")
        stored = db.sql(
            "SELECT Label, Score, GroundTruth FROM Predictions JOIN Instances USING (InstanceId) "
            "ORDER BY InstanceId"
        ).fetchall()
    assert all(label is None for label, _, _ in stored)
    scores = np.array([score for _, score, _ in stored])
    assert np.array_equal(scores, before)  # Score is the output, to the last bit
    truth = np.array([float(t) for _, _, t in stored])
    assert report["Predicted"] == 200 and report["AlreadyPredicted"] == 0
    assert report["MSE"] == pytest.approx(np.mean((scores - truth) ** 2), rel=1e-12)
    assert report["MAE"] == pytest.approx(np.mean(np.abs(scores - truth)), rel=1e-12)
    assert "Accuracy" not in report
    with cfdb.connect(path) as db:
        assert np.array_equal(_values_in_db(db, "r"), before)


def test_regression_training_metrics_are_stored(prices):
    prices.sql(f"CREATE MODEL r AS linear_regression TRAIN ON ({TRAIN})")
    metrics = prices.sql("SELECT Metrics->>'train_mse', Metrics->>'train_mae' FROM Models")
    mse, mae = (float(v) for v in metrics.fetchall()[0])
    from cfdb.engine.handlers.models import columns_of, load_model

    _, model = load_model(prices.session, "r")
    data = prices.sql(TRAIN).to_arrow_table()
    cols = columns_of(data)
    errors = model.predict_value(cols) - cols["GroundTruth"].astype(float)
    assert mse == pytest.approx(np.mean(errors**2)) and mae == pytest.approx(np.mean(abs(errors)))
    # The paper's Classifiers relation lists classifiers only.
    assert prices.sql("SELECT count(*) FROM Classifiers").fetchall() == [(0,)]


@pytest.mark.parametrize(
    ("statement", "message", "pointed_at"),
    [
        (
            f"CREATE MODEL r AS ridge WITH (label = 'home') TRAIN ON ({TRAIN})",
            "label column 'home' holds a non-numeric value",
            "SELECT * FROM Instances",
        ),
        (
            f"CREATE MODEL r AS ridge WITH (encoding = 'target') TRAIN ON ({TRAIN})",
            "encoding 'target' needs class labels",
            "SELECT * FROM Instances",
        ),
        (
            "CREATE MODEL r AS ridge TRAIN ON (SELECT * REPLACE (CASE WHEN InstanceId < 110 "
            "THEN NULL ELSE GroundTruth END AS GroundTruth) FROM Instances)",
            "label column 'GroundTruth' has 10 NULL rows",
            "SELECT * REPLACE",
        ),
        (
            f"CREATE MODEL r AS ridge WITH (n_estimators = 3) TRAIN ON ({TRAIN})",
            "unknown parameter 'n_estimators' for model kind 'ridge'",
            "n_estimators = 3",
        ),
    ],
)
def test_bad_regression_input_is_a_clear_error_and_changes_nothing(
    prices, statement, message, pointed_at
):
    with pytest.raises(CfdbDataError, match=message) as info:
        prices.sql("SELECT 1;\n" + statement)
    script = info.value.sql
    assert script[info.value.start :].startswith(pointed_at), info.value.render()
    assert _models(prices) == 0


def test_predict_with_non_numeric_ground_truth_is_refused_whole(prices):
    prices.sql(f"CREATE MODEL r AS ridge TRAIN ON ({TRAIN})")
    query = "SELECT * REPLACE ('n/a' AS GroundTruth) FROM Instances"
    with pytest.raises(CfdbDataError, match="GroundTruth holds a non-numeric value 'n/a'") as info:
        prices.sql(f"PREDICT r ON ({query})")
    assert info.value.sql[info.value.start :].startswith(query)
    assert prices.sql("SELECT count(*) FROM Predictions").fetchall() == [(0,)]
    # Without ground truth (or with NULLs) there are no metrics, and nothing is refused.
    report = prices.sql(
        "PREDICT r ON (SELECT * REPLACE (NULL AS GroundTruth) FROM Instances)"
    ).fetchall()
    assert report == [("r", 200, 0, None, None)]
    assert prices.sql("PREDICT r ON (SELECT * FROM Instances)").fetchall() == [
        ("r", 0, 200, None, None)
    ]


def test_import_fitted_regressors_in_raw_mode(prices, tmp_path):
    import xgboost
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = price_frame().sort_values("applicant")
    features = ["income", "amount", "home"]
    pipe = make_pipeline(
        ColumnTransformer([("oh", OneHotEncoder(), ["home"])], remainder="passthrough"),
        Ridge(alpha=1.0),
    ).fit(frame[features], frame.price)
    prices.register_model("pipe", pipe, features=features)
    xgb = xgboost.XGBRegressor(n_estimators=5, max_depth=2).fit(
        frame[["income", "amount"]], frame.price
    )
    prices.register_model("xgb", xgb, features=["income", "amount"])
    assert prices.sql("SELECT Name, Task, Labels, Format FROM Models ORDER BY 1").fetchall() == [
        ("pipe", "regression", None, "skops"),
        ("xgb", "regression", None, "xgboost-ubj"),
    ]
    for name, expected in (
        ("pipe", pipe.predict(frame[features])),
        ("xgb", xgb.predict(frame[["income", "amount"]]).astype(np.float64)),
    ):
        prices.predict(name)
        got = prices.sql(
            "SELECT Score FROM Predictions P JOIN Models M USING (ModelId) "
            f"WHERE M.Name = '{name}' ORDER BY InstanceId"
        ).fetchnumpy()["Score"]
        assert np.array_equal(np.asarray(got), expected)
    # An explicit task that contradicts the file is refused at the path.
    path = tmp_path / "x.ubj"
    path.write_bytes(bytes(xgb.get_booster().save_raw("ubj")))
    with pytest.raises(cfdb.CfdbSchemaError, match="expected classification"):
        prices.sql(f"IMPORT MODEL y FROM '{path}' WITH (task = 'classification')")
    with pytest.raises(CfdbSyntaxError, match="task must be one of") as info:
        prices.sql(f"IMPORT MODEL y FROM '{path}' WITH (task = 'ranking')")
    assert info.value.sql[info.value.start :].startswith("task = 'ranking'")
    assert _models(prices) == 2


def test_predict_scores_against_the_models_own_label_column(db):
    frame = toy_frame()
    frame["verdict"] = frame.decision
    frame["decision"] = "unknown"  # a misleading GroundTruth: PREDICT must not use it
    db.load_instances(frame, id="applicant", label="decision", features=["income", "amount"])
    db.sql(
        "CREATE MODEL t AS decision_tree WITH (label = 'verdict', max_depth = 3) "
        "TRAIN ON (SELECT * FROM Instances)"
    )
    (row,) = db.sql("PREDICT t ON (SELECT * FROM Instances)").fetchall()
    assert row[3] is not None and row[3] > 0.6
    assert db.sql("SELECT LabelColumn FROM Models").fetchall() == [("verdict",)]
