"""The exact encodings agree with the estimators: on thousands of random points per model kind
(mixed real, integer, categorical and boolean features; binary and multi-class; one-hot and
target encoding), the compiled model's scores match ``decision_function`` (XGBoost's margins
to 1e-5) and its decisions match ``predict``; and the z3 encoding, with the inputs fixed,
reaches the same scores and admits exactly the predicted class. Points placed exactly on split
thresholds check the estimators' comparisons (``float32(x) <= t``, ``x < t``, ``x <= t``).
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import z3
from threadpoolctl import threadpool_limits

from cfdb.ctable.condition import value_string
from cfdb.errors import CfdbUnsupportedError
from cfdb.generators.smt import Smt
from cfdb.generators.smt_encode import Encoding
from cfdb.generators.smt_model import compile_model, decide, score_gap, scores
from cfdb.models import Model, from_estimator, train
from cfdb.types import FeatureSpec
from tests.generators.helpers import dataset, score, spec_of

KINDS = {
    "logistic_regression": {},
    "linear_svm": {},
    "decision_tree": {"max_depth": 6},
    "random_forest": {"n_estimators": 10, "max_depth": 5},
    "gradient_boosting": {"n_estimators": 10, "max_depth": 3},
    "hist_gradient_boosting": {"max_iter": 10, "max_leaf_nodes": 8},
    "xgboost": {"n_estimators": 20, "max_depth": 4},
    "mlp": {"hidden_layer_sizes": (8, 8), "max_iter": 200},
}
CASES = [(k, c, e) for k in KINDS for c in (2, 3) for e in ("onehot", "target")]
IDS = [f"{k}-{c}-{e}" for k, c, e in CASES]
# A network's exact encoding is checked point by point with big rationals, and three-class
# XGBoost has many trees: slow (the other cases cover every kind in the default suite).
Z3_CASES = [
    pytest.param(*c, marks=pytest.mark.slow) if c[0] == "mlp" or c[:2] == ("xgboost", 3) else c
    for c in CASES
]
N_NUMPY = 5000
N_Z3 = 150
#: Every how many points the decision itself is checked for each class (the slow part).
DECIDE_EVERY = 5


@functools.cache
def setup() -> tuple[dict[str, np.ndarray], list[FeatureSpec]]:
    data = dataset()
    features = [
        spec_of("income", "numeric", data["income"]),
        spec_of("age", "integer", data["age"]),
        spec_of("home", "categorical", data["home"]),
        spec_of("student", "boolean", data["student"]),
        spec_of("sex", "categorical", data["sex"], mutable=False),
    ]
    return data, features


@functools.cache
def model_for(kind: str, classes: int, encoding: str) -> Model:
    data, features = setup()
    s = score(data)
    cuts = np.quantile(s, np.linspace(0, 1, classes + 1)[1:-1])
    labels = np.array(["c0", "c1", "c2"], dtype=object)[np.digitize(s, cuts)]
    with threadpool_limits(1):  # OpenMP threads make small fits slow on a busy machine
        return train(kind, KINDS[kind], features, data, labels, name=kind, encoding=encoding)


def random_points(n: int, seed: int) -> dict[str, np.ndarray]:
    """Random rows over (and a little beyond) the data's ranges, with real incomes."""
    rng = np.random.default_rng(seed)
    return {
        "income": rng.uniform(0, 130, n),
        "age": rng.integers(15, 75, n).astype(np.int64),
        "home": rng.choice(["own", "rent", "mortgage"], n).astype(object),
        "student": rng.random(n) < 0.5,
        "sex": rng.choice(["female", "male"], n).astype(object),
    }


def threshold_points(model: Model, n: int, seed: int) -> dict[str, np.ndarray]:
    """Rows whose income or age sits exactly on (or one float32 step around) a split."""
    compiled = compile_model(model, setup()[1])
    cuts: list[float] = []
    for tree in compiled.trees:
        inner = tree.feature >= 0
        for f, t in zip(tree.feature[inner], tree.threshold[inner], strict=True):
            if compiled.columns[int(f)].feature == "income":
                t32 = np.float32(t)
                cuts += [float(t), float(t32), float(np.nextafter(t32, np.float32(np.inf)))]
                cuts.append(float(np.nextafter(t32, np.float32(-np.inf))))
    points = random_points(n, seed)
    if cuts:
        rng = np.random.default_rng(seed)
        points["income"] = rng.choice(np.array(cuts), n)
    return points


def one(points: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    return {k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in points.items()}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(("kind", "classes", "encoding"), CASES, ids=IDS)
def test_compiled_scores_match_the_estimator(kind: str, classes: int, encoding: str) -> None:
    model = model_for(kind, classes, encoding)
    _, features = setup()
    compiled = compile_model(model, features)
    for points in (random_points(N_NUMPY, 1), threshold_points(model, 1000, 2)):
        x = model.transform(points)
        s = scores(compiled, x)
        assert np.array_equal(decide(compiled, s), model.predict_codes(points))
        est = model.estimator
        if kind == "xgboost":
            margin = est.predict(x, output_margin=True).reshape(len(x), -1)
            np.testing.assert_allclose(s, margin, rtol=0, atol=1e-5)
        elif kind in ("logistic_regression", "gradient_boosting", "hist_gradient_boosting"):
            np.testing.assert_allclose(
                s, est.decision_function(x).reshape(len(x), -1), rtol=1e-9, atol=1e-9
            )
        elif kind == "mlp":
            proba = est.predict_proba(x)
            if classes == 2:
                np.testing.assert_allclose(1 / (1 + np.exp(-s[:, 0])), proba[:, 1], atol=1e-9)
            else:
                soft = np.exp(s - s.max(axis=1, keepdims=True))
                np.testing.assert_allclose(soft / soft.sum(1, keepdims=True), proba, atol=1e-9)
        elif kind == "linear_svm":
            d = model.decision_function(points).reshape(len(x), -1)
            calibrators = est.calibrated_classifiers_[0].calibrators
            a = np.array([c.a_ for c in calibrators])
            b = np.array([c.b_ for c in calibrators])
            np.testing.assert_allclose(s, -(a * d + b), rtol=1e-9, atol=1e-9)
        else:
            proba = model.predict_proba(points)
            expected = proba[:, 1:] - proba[:, :1] if classes == 2 else proba
            n_trees = len(compiled.trees)
            np.testing.assert_allclose(s / n_trees, expected, rtol=0, atol=1e-9)


def fix_inputs(enc: Encoding, x: dict[str, Any]) -> None:
    """Assert the inputs of ``x`` (in the solver's current scope)."""
    for f in enc.features:
        if f.is_categorical:
            enc.solver.add(enc.indicator[f.name][value_string(x[f.name])])
        else:
            value = z3.RealVal(str(Fraction(float(x[f.name]))), enc.ctx)
            enc.solver.add(enc.numeric[f.name] == value)


def encoded(enc: Encoding, x: dict[str, Any]) -> tuple[bool, list[Fraction]]:
    """Fix the encoding's inputs to ``x``: satisfiable? and the scores."""
    solver = enc.solver
    solver.push()
    try:
        fix_inputs(enc, x)
        if solver.check() != z3.sat:
            return False, []
        m = solver.model()
        values = [m.eval(t, model_completion=True) for t in enc.scores]
        return True, [Fraction(v.numerator_as_long(), v.denominator_as_long()) for v in values]
    finally:
        solver.pop()


def decided(enc: Encoding, x: dict[str, Any], label: int, margin: Fraction) -> bool:
    """Whether the encoding admits class ``label`` for input ``x``."""
    solver = enc.solver
    solver.push()
    try:
        into: list[Any] = []
        enc.decision(original=-1, target=label, margin=margin, ties=True, into=into)
        fix_inputs(enc, x)
        return solver.check() == z3.sat
    finally:
        solver.pop()


@pytest.mark.parametrize(("kind", "classes", "encoding"), Z3_CASES, ids=IDS)
def test_z3_encoding_matches_the_estimator(kind: str, classes: int, encoding: str) -> None:
    model = model_for(kind, classes, encoding)
    _, features = setup()
    compiled = compile_model(model, features)
    enc = Encoding(compiled, features)
    margin = Fraction(compiled.margin)
    for points in (random_points(N_Z3, 3), threshold_points(model, N_Z3 // 2, 4)):
        x = model.transform(points)
        s = scores(compiled, x)
        gap = score_gap(compiled, s)
        codes = model.predict_codes(points)
        for i in range(len(codes)):
            row = one(points, i)
            ok, got = encoded(enc, row)
            assert ok, (kind, row)
            # Linear coefficients are rounded; the encoding accounts for it in its slack.
            tolerance = float(enc.slack) + 1e-12 * (1 + np.abs(s[i]).max())
            assert np.abs(np.array([float(g) for g in got]) - s[i]).max() <= tolerance, (kind, row)
            if i % DECIDE_EVERY or gap[i] <= 10 * compiled.margin:
                continue  # (near a tie, floating point decides)
            for label in range(classes):
                assert decided(enc, row, label, margin) == (label == codes[i]), (kind, row, label)


def test_raw_mode_models_are_refused() -> None:
    from sklearn.linear_model import LogisticRegression

    data, features = setup()
    frame_cols = ["income", "age"]
    est = LogisticRegression().fit(np.column_stack([data[c] for c in frame_cols]), score(data) > 25)
    est.feature_names_in_ = np.array(frame_cols, dtype=object)
    model = from_estimator(est, [f for f in features if f.name in frame_cols], name="raw")
    with pytest.raises(CfdbUnsupportedError, match="raw mode"):
        Smt().fit(model, features)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    ("kind", "params", "match"),
    [("knn", {}, "knn"), ("mlp", {"max_iter": 50, "activation": "tanh"}, "ReLU")],
)
def test_kinds_without_an_encoding_are_refused(kind: str, params: dict, match: str) -> None:
    data, features = setup()
    labels = np.where(score(data) > 25, "yes", "no").astype(object)
    model = train(kind, params, features, data, labels, name=kind)
    with pytest.raises(CfdbUnsupportedError, match=match):
        Smt().fit(model, features)


REGRESSORS = {
    "linear_regression": {},
    "ridge": {},
    "decision_tree_regressor": {"max_depth": 6},
    "random_forest_regressor": {"n_estimators": 10, "max_depth": 5},
    "gradient_boosting_regressor": {"n_estimators": 20, "max_depth": 3},
    "xgboost_regressor": {"n_estimators": 20, "max_depth": 4},
}


@pytest.mark.parametrize("kind", list(REGRESSORS))
def test_regressors_encode_their_own_predictions(kind: str) -> None:
    data, features = setup()
    model = train(kind, REGRESSORS[kind], features, data, score(data), name=kind)
    compiled = compile_model(model, features)
    points = random_points(N_NUMPY, 5)
    s = scores(compiled, model.transform(points))[:, 0]
    atol = 1e-4 if kind == "xgboost_regressor" else 1e-9  # float32 sums of ~100-sized values
    np.testing.assert_allclose(s, model.predict_value(points), rtol=0, atol=atol)
    assert compiled.margin >= np.abs(s - model.predict_value(points)).max()
    enc = Encoding(compiled, features)
    few = random_points(N_Z3 // 3, 6)
    for i in range(N_Z3 // 3):
        ok, got = encoded(enc, one(few, i))
        assert ok
        tolerance = float(enc.slack) + 1e-9 * (1 + abs(s[i]))
        expected = scores(compiled, model.transform({k: v[i : i + 1] for k, v in few.items()}))
        assert abs(float(got[0]) - expected[0, 0]) <= tolerance
