"""Tests of model kinds and training: registry, parameters, labels, predictions."""

from __future__ import annotations

import numpy as np
import pytest

from cfdb.errors import CfdbDataError, CfdbPluginError, CfdbUnsupportedError
from cfdb.models.kinds import MODEL_KINDS, ModelKind
from cfdb.models.model import Model, encode_labels, train
from cfdb.types import FeatureSpec

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FEATURES = [
    FeatureSpec("color", "categorical", domain=("blue", "green", "red")),
    FeatureSpec("flag", "boolean"),
    FeatureSpec("x", "numeric"),
    FeatureSpec("z", "numeric"),
]

#: Small settings so every kind trains in well under a second.
FAST_PARAMS: dict[str, dict] = {
    "random_forest": {"n_estimators": 5, "max_depth": 4},
    "gradient_boosting": {"n_estimators": 5, "max_depth": 2, "learning_rate": 0.5},
    "hist_gradient_boosting": {"max_iter": 5},
    "xgboost": {"n_estimators": 5, "max_depth": 3},
    "mlp": {"hidden_layer_sizes": [8], "max_iter": 300},
    "linear_svm": {"cv": 3},
}

BUILTIN_KINDS = [
    "logistic_regression",
    "random_forest",
    "decision_tree",
    "xgboost",
    "knn",
    "mlp",
    "linear_svm",
    "gradient_boosting",
    "hist_gradient_boosting",
]


def make_data(n: int, seed: int, n_classes: int = 2) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One categorical, one boolean and two numeric features; string labels."""
    rng = np.random.default_rng(seed)
    color = rng.choice(["blue", "green", "red"], n).astype(object)
    flag = rng.random(n) < 0.4
    x = rng.normal(size=n)
    z = rng.uniform(0, 100, size=n)
    score = x + 1.5 * (color == "red") - 1.0 * flag + (z - 50) / 40 + rng.normal(0, 0.3, n)
    if n_classes == 2:
        labels = np.where(score > 0.2, "yes", "no").astype(object)
    else:
        labels = np.array(["low", "mid", "high"], dtype=object)[np.digitize(score, [-0.5, 0.8])]
    return {"color": color, "flag": flag, "x": x, "z": z}, labels


def train_kind(kind: str, n_classes: int = 2, **kwargs: object) -> Model:
    cols, labels = make_data(150, 0, n_classes)
    return train(
        kind, FAST_PARAMS.get(kind, {}), FEATURES, cols, labels, name=f"m_{kind}", **kwargs
    )


def test_builtin_kinds_registered() -> None:
    assert set(BUILTIN_KINDS) <= set(MODEL_KINDS.names())
    for name in BUILTIN_KINDS:
        kind = MODEL_KINDS.get(name)
        assert isinstance(kind, ModelKind)
        assert kind.name == name
        assert kind.doc
    scaled = {n for n in BUILTIN_KINDS if MODEL_KINDS.get(n).scale}
    assert scaled == {"logistic_regression", "knn", "mlp", "linear_svm"}


def test_unknown_kind() -> None:
    cols, labels = make_data(20, 0)
    with pytest.raises(CfdbPluginError, match="'deep_forest'"):
        train("deep_forest", {}, FEATURES, cols, labels, name="m")


@pytest.mark.parametrize("kind", BUILTIN_KINDS)
def test_unknown_param_is_named(kind: str) -> None:
    cols, labels = make_data(20, 0)
    with pytest.raises(CfdbDataError, match=rf"'bogus_param'.*'{kind}'"):
        train(kind, {"bogus_param": 1}, FEATURES, cols, labels, name="m")


@pytest.mark.parametrize(("kind", "n_classes"), [(k, c) for k in BUILTIN_KINDS for c in (2, 3)])
def test_train_and_predict(kind: str, n_classes: int) -> None:
    model = train_kind(kind, n_classes)
    cols, labels = make_data(80, 1, n_classes)
    proba = model.predict_proba(cols)
    pred = model.predict(cols)
    assert model.mode == "featurized"
    assert model.labels == sorted(set(labels))
    assert proba.shape == (80, n_classes)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert pred.dtype == object
    assert set(pred) <= set(model.labels)
    assert np.array_equal(pred, np.array(model.labels, dtype=object)[model.predict_codes(cols)])
    assert np.mean(pred == labels) > 1.0 / n_classes + 0.1
    assert model.transform(cols).shape == (80, model.featurizer.n_outputs)


def test_defaults_and_seed() -> None:
    lr = MODEL_KINDS.get("logistic_regression").make({}, 2, seed=7)
    assert lr.max_iter == 1000
    assert lr.random_state == 7
    rf = MODEL_KINDS.get("random_forest").make({"random_state": 3}, 2, seed=7)
    assert rf.random_state == 3
    svm = MODEL_KINDS.get("linear_svm").make({"C": 0.5}, 2, seed=1)
    assert svm.estimator.C == 0.5
    assert svm.estimator.random_state == 1
    assert svm.ensemble is False
    knn = MODEL_KINDS.get("knn").make({}, 2, seed=1)
    assert "random_state" not in knn.get_params()


def test_param_names_case_folded() -> None:
    svm = MODEL_KINDS.get("linear_svm").make({"c": 2.0}, 2, seed=None)
    assert svm.estimator.C == 2.0
    with pytest.raises(CfdbDataError, match="'estimator'"):
        MODEL_KINDS.get("linear_svm").make({"estimator": "x"}, 2, seed=None)


def test_xgboost_objective_by_classes() -> None:
    kind = MODEL_KINDS.get("xgboost")
    assert kind.make({}, 2, 0).objective == "binary:logistic"
    assert kind.make({}, 3, 0).objective == "multi:softprob"


def test_same_seed_same_model() -> None:
    a = train_kind("random_forest")
    b = train_kind("random_forest")
    cols, _ = make_data(50, 2)
    assert np.array_equal(a.predict_proba(cols), b.predict_proba(cols))


def test_bad_param_value_is_a_data_error() -> None:
    cols, labels = make_data(30, 0)
    with pytest.raises(CfdbDataError, match="'random_forest'"):
        train("random_forest", {"n_estimators": -1}, FEATURES, cols, labels, name="m")


def test_single_class_labels() -> None:
    cols, _ = make_data(10, 0)
    with pytest.raises(CfdbDataError, match="label column has a single class 'yes'"):
        train("decision_tree", {}, FEATURES, cols, np.array(["yes"] * 10), name="m")


def test_null_labels() -> None:
    cols, labels = make_data(10, 0)
    labels[[1, 4]] = None
    with pytest.raises(CfdbDataError, match="2 NULL rows"):
        train("decision_tree", {}, FEATURES, cols, labels, name="m")
    with pytest.raises(CfdbDataError, match="1 NULL row"):
        encode_labels(np.array([1.0, np.nan, 0.0]))


def test_labels_of_any_type_become_sorted_strings() -> None:
    assert encode_labels(np.array([10, 2, 2]))[0] == ["10", "2"]
    labels, codes = encode_labels(np.array([True, False, True]))
    assert labels == ["false", "true"]
    assert codes.tolist() == [1, 0, 1]
    cols, text = make_data(60, 0)
    model = train("decision_tree", {}, FEATURES, cols, (text == "yes").astype(int), name="m")
    assert model.labels == ["0", "1"]
    assert set(model.predict(cols)) <= {"0", "1"}


def test_null_feature_names_column() -> None:
    cols, labels = make_data(10, 0)
    cols["x"] = cols["x"].copy()
    cols["x"][3] = np.nan
    with pytest.raises(CfdbDataError, match=r"'x' has 1 NULL row"):
        train("decision_tree", {}, FEATURES, cols, labels, name="m")


def test_target_encoding_model() -> None:
    model = train_kind("logistic_regression", 3, encoding="target")
    assert model.featurizer.encoding == "target"
    assert model.featurizer.output_names_[:3] == ["te(color)[0]", "te(color)[1]", "te(color)[2]"]


def test_decision_function() -> None:
    cols, _ = make_data(30, 3)
    lr = train_kind("logistic_regression")
    assert np.array_equal(lr.decision_function(cols) > 0, lr.predict_codes(cols) == 1)
    svm = train_kind("linear_svm")
    inner = svm.estimator.calibrated_classifiers_[0].estimator
    assert np.array_equal(svm.decision_function(cols), inner.decision_function(svm.transform(cols)))
    with pytest.raises(CfdbUnsupportedError):
        train_kind("decision_tree").decision_function(cols)


def test_empty_input() -> None:
    model = train_kind("decision_tree")
    cols, _ = make_data(0, 0)
    assert model.predict(cols).shape == (0,)
    assert model.predict_proba(cols).shape == (0, 2)
