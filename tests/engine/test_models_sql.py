"""CREATE MODEL / PREDICT / IMPORT MODEL / DROP MODEL through SQL, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cfdb
from cfdb.errors import CfdbCatalogError, CfdbDataError, CfdbPluginError, CfdbSyntaxError
from cfdb.models import MODEL_KINDS
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
