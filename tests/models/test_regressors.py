"""Regression models (CFDB paper, section 4.4): training, refusals, storage round trips,
adopted regressors, and the grid's regressor built on the same training routine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from cfdb.errors import CfdbDataError, CfdbPluginError, CfdbSchemaError, CfdbUnsupportedError
from cfdb.models import (
    MODEL_KINDS,
    REGRESSION_KINDS,
    Model,
    dump,
    from_estimator,
    read_estimator,
    regression_targets,
    resolve_kind,
    train,
    write_estimator,
)
from cfdb.models.regressors import train_regressor

from .test_kinds import FEATURES, make_data
from .test_serialize import reload

#: Small settings so every kind trains in well under a second.
FAST: dict[str, dict] = {
    "random_forest_regressor": {"n_estimators": 5, "max_depth": 4},
    "gradient_boosting_regressor": {"n_estimators": 5, "max_depth": 2},
    "xgboost_regressor": {"n_estimators": 5, "max_depth": 3},
}


def targets(cols: dict[str, np.ndarray]) -> np.ndarray:
    return 3 * cols["x"] + 2 * (cols["color"] == "red") - cols["flag"] + cols["z"] / 10


def train_regression(kind: str, **kwargs: object) -> tuple[Model, dict[str, np.ndarray]]:
    cols, _ = make_data(120, 1)
    return train(kind, FAST.get(kind, {}), FEATURES, cols, targets(cols), name="r", **kwargs), cols


def test_registries_are_disjoint_and_resolve_kind_picks_the_task() -> None:
    assert not set(MODEL_KINDS.names()) & set(REGRESSION_KINDS.names())
    assert resolve_kind("ridge")[0] == "regression"
    assert resolve_kind("RANDOM_FOREST")[0] == "classification"
    with pytest.raises(CfdbPluginError, match=r"'deep_ridge'.*linear_regression"):
        resolve_kind("deep_ridge")


@pytest.mark.parametrize("kind", REGRESSION_KINDS.names())
def test_every_regression_kind_trains_and_round_trips_exactly(kind: str) -> None:
    model, cols = train_regression(kind)
    assert model.task == "regression" and model.is_regression
    assert model.labels == [] and model.n_classes == 0
    values = model.predict_value(cols)
    assert values.dtype == np.float64 and values.shape == (120,)
    # The estimator sees exactly the featurizer's matrix.
    assert np.array_equal(values, np.asarray(model.estimator.predict(model.transform(cols)), float))
    again = reload(model)
    assert again.task == "regression" and again.kind == kind and again.labels == []
    assert np.array_equal(again.predict_value(cols), values)
    assert dump(model).meta["task"] == "regression"
    if kind == "xgboost_regressor":
        assert dump(model).format == "xgboost-ubj"


def test_a_regressor_refuses_class_methods_and_a_classifier_refuses_values() -> None:
    model, cols = train_regression("ridge")
    for method in (model.predict, model.predict_proba, model.predict_codes):
        with pytest.raises(CfdbUnsupportedError, match="'r' is a regression model"):
            method(cols)
    with pytest.raises(CfdbUnsupportedError, match="regression model"):
        model.decision_function(cols)
    cols2, labels = make_data(60, 0)
    classifier = train("logistic_regression", {}, FEATURES, cols2, labels, name="c")
    with pytest.raises(CfdbUnsupportedError, match="'c' is a classifier"):
        classifier.predict_value(cols2)
    assert classifier.task == "classification" and not classifier.is_regression


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.array(["1.5", "x", "2"], dtype=object), "label column 'price' holds a non-numeric"),
        (np.array([1.0, None, 2.0], dtype=object), "label column 'price' has 1 NULL row"),
        (np.array([1.0, np.nan, 2.0]), "label column 'price' has 1 NULL row"),
        (np.array([True, False, True]), "boolean"),
        (np.array([1.0, np.inf, 2.0]), "non-finite"),
    ],
)
def test_bad_regression_targets_name_the_column(values: np.ndarray, message: str) -> None:
    cols = {k: v[:3] for k, v in make_data(3, 0)[0].items()}
    with pytest.raises(CfdbDataError, match=message):
        train("ridge", {}, FEATURES, cols, values, name="r", label_name="price")


def test_text_targets_read_as_numbers() -> None:
    assert np.array_equal(
        regression_targets(np.array(["1.5", "-2", "3e2"], dtype=object)), [1.5, -2.0, 300.0]
    )
    cols, _ = make_data(80, 2)
    y = targets(cols)
    as_text = np.array([repr(float(v)) for v in y], dtype=object)
    a = train("linear_regression", {}, FEATURES, cols, y, name="a")
    b = train("linear_regression", {}, FEATURES, cols, as_text, name="b")
    assert np.array_equal(a.predict_value(cols), b.predict_value(cols))


def test_target_encoding_and_unknown_parameters_are_refused_for_regressors() -> None:
    cols, _ = make_data(40, 0)
    with pytest.raises(CfdbDataError, match="encoding 'target' needs class labels"):
        train("ridge", {}, FEATURES, cols, targets(cols), name="r", encoding="target")
    with pytest.raises(CfdbDataError, match="unknown parameter 'C' for model kind 'ridge'"):
        train("ridge", {"C": 1.0}, FEATURES, cols, targets(cols), name="r")


def test_the_grid_regressor_and_train_agree() -> None:
    # Both go through fit_regressor: same featurizer, same estimator, same predictions.
    cols, _ = make_data(90, 3)
    y = targets(cols)
    params = {"n_estimators": 5, "max_depth": 3}
    grid = train_regressor("random_forest_regressor", params, FEATURES, cols, y, seed=4)
    model = train("random_forest_regressor", params, FEATURES, cols, y, name="m", seed=4)
    assert np.array_equal(grid.predict(cols), model.predict_value(cols))


def _frame(cols: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({k: cols[k] for k in ("color", "x", "z")})


def test_adopted_sklearn_pipeline_regressor_round_trips() -> None:
    cols, _ = make_data(100, 4)
    y = targets(cols)
    pipe = make_pipeline(
        ColumnTransformer([("oh", OneHotEncoder(), ["color"])], remainder="passthrough"),
        Ridge(alpha=0.5),
    ).fit(_frame(cols), y)
    model = from_estimator(pipe, FEATURES, name="pipe")
    assert model.task == "regression" and model.mode == "raw" and model.labels == []
    expected = pipe.predict(_frame(cols))
    assert np.array_equal(model.predict_value(cols), expected)
    assert np.array_equal(reload(model).predict_value(cols), expected)
    with pytest.raises(CfdbUnsupportedError):
        model.predict_proba(cols)


def test_adopted_xgboost_regressor_is_stored_as_ubj_and_read_back_as_a_regressor() -> None:
    cols, _ = make_data(100, 5)
    y = targets(cols)
    xgb = xgboost.XGBRegressor(n_estimators=4, max_depth=2).fit(_frame(cols)[["x", "z"]], y)
    fmt, blob = write_estimator(xgb)
    assert fmt == "xgboost-ubj"
    back = read_estimator(blob, fmt)
    assert isinstance(back, xgboost.XGBRegressor)
    with pytest.raises(CfdbSchemaError, match=r"is a regression model.*expected classification"):
        read_estimator(blob, fmt, task="classification")
    model = from_estimator(back, FEATURES, name="xgb")
    assert model.task == "regression"
    expected = xgb.predict(_frame(cols)[["x", "z"]]).astype(np.float64)
    assert np.array_equal(model.predict_value(cols), expected)
    assert np.array_equal(reload(model).predict_value(cols), expected)


def test_explicit_tasks_and_their_conflicts() -> None:
    cols, labels = make_data(60, 6)
    lin = LinearRegression().fit(_frame(cols)[["x", "z"]], targets(cols))
    assert from_estimator(lin, FEATURES, name="l", task="regression").is_regression
    with pytest.raises(CfdbDataError, match=r"has no classes_.*task = 'regression'"):
        from_estimator(lin, FEATURES, name="l", task="classification")
    with pytest.raises(CfdbDataError, match="unknown task 'ranking'"):
        from_estimator(lin, FEATURES, name="l", task="ranking")
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression().fit(_frame(cols)[["x", "z"]], labels)
    with pytest.raises(CfdbDataError, match="cannot have class labels"):
        from_estimator(clf, FEATURES, name="c", task="regression")
    with pytest.raises(CfdbDataError, match="cannot have class labels"):
        Model("m", "ridge", {}, FEATURES, ["a", "b"], None, lin, mode="raw", task="regression")
