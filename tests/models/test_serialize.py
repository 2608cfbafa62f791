"""Tests of model storage: round trips per kind, raw-mode estimators and the trust checks."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import skops.io
import xgboost
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from cfdb.errors import (
    CfdbDataError,
    CfdbNotFittedError,
    CfdbSchemaError,
    CfdbSecurityError,
    CfdbUnsupportedError,
)
from cfdb.models import (
    Model,
    StoredModel,
    dump,
    format_for_path,
    from_estimator,
    load,
    read_estimator,
    refused_types,
    write_estimator,
)

from .test_kinds import BUILTIN_KINDS, FEATURES, make_data, train_kind

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


class Doubler(BaseEstimator, TransformerMixin):
    """A user-defined transformer: not in any allowlist."""

    def fit(self, x: object, y: object = None) -> Doubler:
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x) * 2


def reload(model: Model, **kwargs: bool) -> Model:
    """dump, then pass every field through JSON/bytes as a database would, then load."""
    stored = dump(model, **kwargs)
    copy = StoredModel(
        format=str(stored.format),
        featurizer_json=json.loads(json.dumps(stored.featurizer_json)),
        blob=bytes(bytearray(stored.blob)),
        meta_json=str(stored.meta_json),
    )
    return load(copy, **kwargs)


# ---- featurized models ------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "n_classes"), [(k, c) for k in BUILTIN_KINDS for c in (2, 3)])
def test_round_trip_every_kind(kind: str, n_classes: int) -> None:
    model = train_kind(kind, n_classes)
    stored = dump(model)
    assert stored.format == ("xgboost-ubj" if kind == "xgboost" else "skops")
    loaded = load(stored)
    fresh, _ = make_data(60, 42, n_classes)
    assert loaded.name == model.name
    assert loaded.kind == kind
    assert loaded.labels == model.labels
    assert loaded.features == model.features
    assert loaded.params == json.loads(json.dumps(model.params))
    assert loaded.mode == "featurized"
    assert np.array_equal(loaded.transform(fresh), model.transform(fresh))
    assert np.array_equal(loaded.predict(fresh), model.predict(fresh))
    assert np.array_equal(loaded.predict_codes(fresh), model.predict_codes(fresh))
    assert np.allclose(loaded.predict_proba(fresh), model.predict_proba(fresh), rtol=0, atol=0)


def test_round_trip_target_encoding() -> None:
    model = train_kind("random_forest", 3, encoding="target")
    loaded = reload(model)
    fresh, _ = make_data(40, 5, 3)
    fresh["color"][:3] = "purple"  # unseen category
    assert loaded.featurizer.encoding == "target"
    assert np.array_equal(loaded.predict_proba(fresh), model.predict_proba(fresh))


def test_stored_fields_are_plain_values() -> None:
    model = train_kind("logistic_regression")
    stored = dump(model)
    assert isinstance(stored.blob, bytes)
    assert json.loads(stored.featurizer_json)["format"] == "cfdb-featurizer"
    meta = stored.meta
    assert meta["kind"] == "logistic_regression"
    assert meta["mode"] == "featurized"
    assert meta["labels"] == ["no", "yes"]
    assert meta["features"][0] == FEATURES[0].to_dict() | {"domain": ["blue", "green", "red"]}
    assert {"numpy", "sklearn", "xgboost", "skops"} <= set(meta["versions"])


def test_unknown_format_and_bad_blob() -> None:
    stored = dump(train_kind("decision_tree"))
    with pytest.raises(CfdbSchemaError, match="'onnx'"):
        load(StoredModel("onnx", stored.featurizer_json, stored.blob, stored.meta_json))
    with pytest.raises(CfdbSchemaError, match="skops"):
        load(StoredModel("skops", stored.featurizer_json, b"not a zip", stored.meta_json))
    xgb = dump(train_kind("xgboost"))
    with pytest.raises(CfdbSchemaError, match="xgboost"):
        load(StoredModel(xgb.format, xgb.featurizer_json, b"{garbage", xgb.meta_json))


# ---- trust checks -----------------------------------------------------------------------------


def test_refused_types() -> None:
    assert refused_types(
        [
            "sklearn.tree._tree.Tree",
            "numpy.ndarray",
            "builtins.slice",
            "builtins.eval",
            "os.system",
            "numpy.load",
            "numpy.ctypeslib.load_library",
            "sklearn.datasets._openml.fetch_openml",
            "numpy.f2py.__main__.main",
            "sklearn.no_such_thing.Klass",
            f"{__name__}.Doubler",
        ]
    ) == sorted(
        [
            "builtins.eval",
            "os.system",
            "numpy.load",
            "numpy.ctypeslib.load_library",
            "sklearn.datasets._openml.fetch_openml",
            "numpy.f2py.__main__.main",
            "sklearn.no_such_thing.Klass",
            f"{__name__}.Doubler",
        ]
    )


def test_skops_blob_with_untrusted_type_is_refused() -> None:
    stored = dump(train_kind("logistic_regression"))
    evil = Pipeline([("double", Doubler()), ("lr", LogisticRegression())])
    x, labels = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    evil.fit(x, labels)
    forged = StoredModel("skops", stored.featurizer_json, skops.io.dumps(evil), stored.meta_json)
    with pytest.raises(CfdbSecurityError, match="Doubler") as info:
        load(forged)
    assert "allow_pickle" in (info.value.hint or "")
    loaded = load(forged, allow_pickle=True)
    assert isinstance(loaded.estimator, Pipeline)


def test_skops_blob_with_builtin_function_is_refused() -> None:
    stored = dump(train_kind("logistic_regression"))
    sneaky = FunctionTransformer(func=eval).fit(np.ones((2, 2)))
    forged = StoredModel("skops", stored.featurizer_json, skops.io.dumps(sneaky), stored.meta_json)
    with pytest.raises(CfdbSecurityError, match=r"builtins\.eval"):
        load(forged)


def test_pickle_needs_opt_in_on_dump_and_load() -> None:
    cols, labels = make_data(60, 0)
    frame = pd.DataFrame({"x": cols["x"], "z": cols["z"]})
    pipe = Pipeline([("double", Doubler()), ("lr", LogisticRegression())]).fit(frame, labels)
    model = from_estimator(pipe, FEATURES[2:], name="custom")
    with pytest.raises(CfdbSecurityError, match="Doubler") as info:
        dump(model)
    assert "allow_pickle=True" in (info.value.hint or "")
    stored = dump(model, allow_pickle=True)
    assert stored.format == "pickle"
    with pytest.raises(CfdbSecurityError, match="pickle"):
        load(stored)
    loaded = load(stored, allow_pickle=True)
    assert np.array_equal(loaded.predict_proba(cols), model.predict_proba(cols))


# ---- raw-mode estimators ----------------------------------------------------------------------


def fitted_pipeline(labels_kind: str = "str") -> tuple[Pipeline, dict[str, np.ndarray]]:
    cols, labels = make_data(120, 0)
    frame = pd.DataFrame({f.name: cols[f.name] for f in FEATURES})
    pre = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["color", "flag"]),
            ("num", StandardScaler(), ["x", "z"]),
        ]
    )
    y = labels if labels_kind == "str" else (labels == "yes").astype(int)
    pipe = Pipeline([("pre", pre), ("lr", LogisticRegression())]).fit(frame, y)
    return pipe, cols


def test_from_estimator_pipeline_round_trip() -> None:
    pipe, _ = fitted_pipeline()
    model = from_estimator(pipe, FEATURES, name="user_lr")
    assert model.mode == "raw"
    assert model.featurizer is None
    assert model.labels == ["no", "yes"]
    assert model.kind == "sklearn.pipeline.Pipeline"
    fresh, _ = make_data(50, 9)
    frame = pd.DataFrame({f.name: fresh[f.name] for f in FEATURES})
    assert np.array_equal(model.predict_proba(fresh), pipe.predict_proba(frame))
    assert np.array_equal(model.predict(fresh), pipe.predict(frame).astype(object))
    stored = dump(model)
    assert stored.format == "skops"
    loaded = reload(model)
    assert loaded.mode == "raw"
    assert loaded.labels == model.labels
    assert np.array_equal(loaded.predict_proba(fresh), model.predict_proba(fresh))
    assert np.array_equal(loaded.predict(fresh), model.predict(fresh))


def test_from_estimator_numeric_classes_and_column_order() -> None:
    pipe, _ = fitted_pipeline("int")
    model = from_estimator(pipe, list(reversed(FEATURES)), name="user_lr")
    assert model.labels == ["0", "1"]
    fresh, _ = make_data(30, 4)
    assert set(model.predict(fresh)) <= {"0", "1"}
    assert list(model.frame(fresh).columns) == ["color", "flag", "x", "z"]
    with pytest.raises(CfdbUnsupportedError, match="featurizer"):
        model.transform(fresh)


def test_from_estimator_errors() -> None:
    with pytest.raises(CfdbNotFittedError, match="'m'"):
        from_estimator(LogisticRegression(), FEATURES, name="m")
    pipe, cols = fitted_pipeline()
    with pytest.raises(CfdbDataError, match="'z'"):
        from_estimator(pipe, FEATURES[:3], name="m")
    with pytest.raises(CfdbDataError, match="3 labels"):
        from_estimator(pipe, FEATURES, name="m", labels=["a", "b", "c"])
    model = from_estimator(pipe, FEATURES, name="m")
    cols = dict(cols)
    del cols["x"]
    with pytest.raises(CfdbDataError, match="model needs feature 'x', which the input lacks"):
        model.predict(cols)


# ---- single estimators ------------------------------------------------------------------------


def test_format_for_path() -> None:
    assert format_for_path("m.skops") == "skops"
    assert format_for_path("dir/M.UBJ") == "xgboost-ubj"
    assert format_for_path("m.json") == "xgboost-json"
    assert format_for_path("m.pkl") == "pickle"
    with pytest.raises(CfdbDataError, match=r"'m\.onnx'"):
        format_for_path("m.onnx")


def test_write_and_read_estimator() -> None:
    pipe, cols = fitted_pipeline()
    fmt, blob = write_estimator(pipe)
    assert fmt == "skops"
    again = read_estimator(blob, fmt)
    frame = pd.DataFrame({f.name: cols[f.name] for f in FEATURES})
    assert np.array_equal(again.predict_proba(frame), pipe.predict_proba(frame))
    with pytest.raises(CfdbSecurityError):
        read_estimator(pickle.dumps(pipe), "pickle")
    with pytest.raises(CfdbSchemaError, match="'onnx'"):
        read_estimator(blob, "onnx")


def test_raw_xgboost_classifier_round_trip() -> None:
    cols, labels = make_data(100, 0)
    frame = pd.DataFrame({"z": cols["z"], "x": cols["x"]})
    est = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(frame, labels == "yes")
    fmt, blob = write_estimator(est)
    assert fmt == "xgboost-ubj"
    model = from_estimator(read_estimator(blob, fmt), FEATURES, name="user_xgb")
    assert model.labels == ["0", "1"]
    assert np.array_equal(model.predict_proba(cols), est.predict_proba(frame))
    stored = dump(model)
    assert stored.format == "xgboost-ubj"
    loaded = load(stored)
    assert loaded.mode == "raw"
    assert np.array_equal(loaded.predict_proba(cols), model.predict_proba(cols))
    json_blob = bytes(est.get_booster().save_raw("json"))
    from_json = read_estimator(json_blob, "xgboost-json")
    assert np.array_equal(from_json.predict_proba(frame), est.predict_proba(frame))
