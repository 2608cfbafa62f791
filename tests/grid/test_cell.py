"""The cell trainer: agrees with training scikit-learn directly; empty-set and single-class
utilities; failures recorded; what-if edits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from cfdb.grid.cell import CellTask, GridData, run_cell
from cfdb.types import FeatureSpec


def _data(
    n=120,
    seed=0,
    kind="logistic_regression",
    metrics=("accuracy", "log_loss", "auc"),
    task="classification",
):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = (x1 + 0.5 * x2 + rng.normal(0, 0.5, n) > 0).astype(np.int64)
    if task == "regression":
        y = 2.0 * x1 - x2 + rng.normal(0, 0.1, n)
    ev = n // 3
    return GridData(
        kind=kind,
        params={},
        features=[FeatureSpec("x1", "numeric"), FeatureSpec("x2", "numeric")],
        task=task,
        classes=["0", "1"] if task == "classification" else [],
        positive=1,
        train={"x1": x1[ev:], "x2": x2[ev:]},
        train_y=y[ev:],
        unit_rows=[np.array([i]) for i in range(n - ev)],
        eval={"x1": x1[:ev], "x2": x2[:ev]},
        eval_y=y[:ev],
        slices=[(0, np.arange(ev)), (1, np.arange(ev // 2))],
        groups=None,
        metrics=list(metrics),
        target_mean=float(np.mean(y[ev:])) if task == "regression" else 0.0,
    )


def _values(result):
    assert result.status == "ok", result.error
    return {(sid, m): v for sid, m, v in result.values}


def test_a_cell_equals_scikit_learn_trained_directly_on_the_subset():
    data = _data()
    units = np.arange(0, 70, 2)
    got = _values(run_cell(data, CellTask(7, units)))
    x = np.column_stack([data.train["x1"][units], data.train["x2"][units]])
    mean, std = x.mean(axis=0), x.std(axis=0)
    model = LogisticRegression(max_iter=1000, random_state=0).fit(
        (x - mean) / std, data.train_y[units]
    )
    xe = (np.column_stack([data.eval["x1"], data.eval["x2"]]) - mean) / std
    assert got[(0, "accuracy")] == pytest.approx(np.mean(model.predict(xe) == data.eval_y))
    half = np.arange(len(data.eval_y) // 2)
    assert got[(1, "accuracy")] == pytest.approx(
        np.mean(model.predict(xe[half]) == data.eval_y[half])
    )
    p = model.predict_proba(xe)[np.arange(len(xe)), data.eval_y]
    assert got[(0, "log_loss")] == pytest.approx(-np.mean(np.log(p)))


def test_empty_subset_scores_the_expected_uniform_guess():
    data = _data()
    got = _values(run_cell(data, CellTask(0, np.zeros(0, np.int64))))
    share = np.mean(data.eval_y == 1)
    assert got[(0, "accuracy")] == pytest.approx(((1 - share) + share) / 2)
    assert got[(0, "auc")] == pytest.approx(0.5)
    assert got[(0, "log_loss")] == pytest.approx(np.log(2))
    data.empty_value = 0.0
    assert set(_values(run_cell(data, CellTask(0, np.zeros(0, np.int64)))).values()) == {0.0}


def test_single_class_subset_is_the_constant_predictor():
    data = _data()
    ones = np.flatnonzero(data.train_y == 1)[:5]
    got = _values(run_cell(data, CellTask(1, ones)))
    assert got[(0, "accuracy")] == pytest.approx(np.mean(data.eval_y == 1))
    assert got[(0, "auc")] == pytest.approx(0.5)


def test_a_failing_cell_is_recorded_not_raised():
    data = _data(kind="knn")
    units = np.concatenate([np.flatnonzero(data.train_y == c)[:2] for c in (0, 1)])
    result = run_cell(data, CellTask(3, units))
    assert result.status == "failed" and "n_neighbors" in result.error
    assert result.values == []


def test_flip_and_weights_change_the_training_data_as_stated():
    data = _data()
    units = np.arange(60)
    base = _values(run_cell(data, CellTask(0, units)))
    flipped = _values(run_cell(data, CellTask(1, units, flip=np.arange(60))))
    # Flipping every label mirrors the classifier: accuracy becomes 1 - accuracy.
    assert flipped[(0, "accuracy")] == pytest.approx(1 - base[(0, "accuracy")])
    zero = _values(run_cell(data, CellTask(2, units, weights=(np.arange(30, 60), np.zeros(30)))))
    assert zero != base


def test_regression_cells_and_empty_set():
    data = _data(kind="linear_regression", metrics=("mse", "r2"), task="regression")
    units = np.arange(50)
    got = _values(run_cell(data, CellTask(0, units)))
    x = np.column_stack([data.train["x1"][units], data.train["x2"][units]])
    model = LinearRegression().fit(x, data.train_y[units])
    pred = model.predict(np.column_stack([data.eval["x1"], data.eval["x2"]]))
    assert got[(0, "mse")] == pytest.approx(np.mean((pred - data.eval_y) ** 2))
    empty = _values(run_cell(data, CellTask(1, np.zeros(0, np.int64))))
    assert empty[(0, "mse")] == pytest.approx(np.mean((data.target_mean - data.eval_y) ** 2))


@pytest.mark.parametrize("encoding", ["onehot", "target"])
@pytest.mark.parametrize("kind", ["logistic_regression", "random_forest", "xgboost"])
def test_cells_equal_cfdb_models_train_on_mixed_features(kind, encoding):
    """The cell's pre-encoded fast path (and its target-encoding path) agree with
    cfdb.models.train + predict_proba on the same subset."""
    from cfdb.grid.metrics import log_loss
    from cfdb.models import train

    rng = np.random.default_rng(5)
    n = 150
    cols = {
        "x": rng.normal(size=n),
        "k": rng.integers(0, 9, n),
        "color": rng.choice(np.array(["red", "green", "blue"], dtype=object), n),
        "flag": rng.random(n) < 0.4,
    }
    y = (
        (cols["x"] + (cols["color"] == "red") + cols["flag"] + rng.normal(0, 0.7, n)) > 0.8
    ).astype(np.int64)
    features = [
        FeatureSpec("x", "numeric"),
        FeatureSpec("k", "integer"),
        FeatureSpec("color", "categorical", ("blue", "green", "red")),
        FeatureSpec("flag", "boolean", ("false", "true")),
    ]
    train_rows, eval_rows = np.arange(100), np.arange(100, n)
    params = {"n_estimators": 5, "max_depth": 3} if kind != "logistic_regression" else {"C": 0.3}
    data = GridData(
        kind=kind,
        params=params,
        features=features,
        task="classification",
        classes=["0", "1"],
        positive=1,
        train={k: v[train_rows] for k, v in cols.items()},
        train_y=y[train_rows],
        unit_rows=[np.array([i]) for i in range(100)],
        eval={k: v[eval_rows] for k, v in cols.items()},
        eval_y=y[eval_rows],
        slices=[(0, np.arange(50))],
        groups=None,
        metrics=["accuracy", "log_loss"],
        encoding=encoding,
    )
    units = np.arange(5, 85, 1)
    got = _values(run_cell(data, CellTask(0, units)))
    model = train(
        kind,
        params,
        features,
        {k: v[units] for k, v in data.train.items()},
        np.array([str(v) for v in data.train_y[units]], dtype=object),
        name="m",
        encoding=encoding,
        seed=0,
    )
    proba = model.predict_proba(data.eval)
    from cfdb.grid.metrics import Scored

    expected = log_loss(Scored(data.eval_y, np.argmax(proba, axis=1), proba, 1))
    assert got[(0, "log_loss")] == pytest.approx(expected, rel=1e-6)
    assert got[(0, "accuracy")] == pytest.approx(np.mean(np.argmax(proba, axis=1) == data.eval_y))
