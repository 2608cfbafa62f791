"""Grid metrics against scikit-learn's and against the definitions, on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from cfdb.grid.metrics import METRICS, Scored


def _random(seed: int, n: int, k: int = 2) -> Scored:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    proba = rng.dirichlet(np.ones(k), n)
    pred = np.argmax(proba, axis=1)
    groups = rng.choice(np.array(["a", "b", "c"], dtype=object), n)
    return Scored(y, pred, proba, 1, groups)


def _m(name: str, s: Scored) -> float:
    return METRICS.get(name).fn(s)


@given(st.integers(0, 10_000), st.integers(5, 60))
@settings(max_examples=40, deadline=None)
def test_binary_metrics_match_scikit_learn(seed, n):
    s = _random(seed, n)
    assert _m("accuracy", s) == pytest.approx(skm.accuracy_score(s.y_true, s.y_pred))
    assert _m("log_loss", s) == pytest.approx(skm.log_loss(s.y_true, s.proba, labels=[0, 1]))
    if len(set(s.y_true)) == 2:
        assert _m("auc", s) == pytest.approx(skm.roc_auc_score(s.y_true, s.proba[:, 1]))
    else:
        assert np.isnan(_m("auc", s))
    assert _m("f1", s) == pytest.approx(
        skm.f1_score(s.y_true, s.y_pred, zero_division=np.nan), nan_ok=True
    )
    if (s.y_true == 1).any():
        assert _m("tpr", s) == pytest.approx(skm.recall_score(s.y_true, s.y_pred))
        assert _m("fnr", s) == pytest.approx(1 - skm.recall_score(s.y_true, s.y_pred))
    if (s.y_true == 0).any():
        tn = np.sum((s.y_true == 0) & (s.y_pred == 0))
        assert _m("fpr", s) == pytest.approx(1 - tn / np.sum(s.y_true == 0))
        assert _m("tnr", s) == pytest.approx(tn / np.sum(s.y_true == 0))


@given(st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_multiclass_auc_is_the_mean_one_versus_rest(seed):
    s = _random(seed, 80, k=3)
    if len(set(s.y_true)) == 3:
        expected = skm.roc_auc_score(s.y_true, s.proba, multi_class="ovr", average="macro")
        assert _m("auc", s) == pytest.approx(expected)


@given(st.integers(0, 10_000), st.integers(6, 80))
@settings(max_examples=40, deadline=None)
def test_equalized_odds_difference_by_definition(seed, n):
    s = _random(seed, n)
    tprs, fprs = [], []
    for g in ("a", "b", "c"):
        rows = s.groups == g
        pos, neg = rows & (s.y_true == 1), rows & (s.y_true == 0)
        if pos.any():
            tprs.append(np.mean(s.y_pred[pos] == 1))
        if neg.any():
            fprs.append(np.mean(s.y_pred[neg] == 1))
    spreads = [max(v) - min(v) for v in (tprs, fprs) if v]
    assert _m("equalized_odds", s) == pytest.approx(max(spreads))


def test_unknown_labels_count_as_wrong_with_the_smallest_probability():
    s = Scored(np.array([-1, 1]), np.array([1, 1]), np.array([[0.5, 0.5], [0.2, 0.8]]), 1)
    assert _m("accuracy", s) == 0.5
    assert _m("log_loss", s) == pytest.approx((-np.log(1e-15) - np.log(0.8)) / 2)


@given(st.integers(0, 10_000), st.integers(3, 50))
@settings(max_examples=30, deadline=None)
def test_regression_metrics_match_scikit_learn(seed, n):
    rng = np.random.default_rng(seed)
    y, p = rng.normal(size=n), rng.normal(size=n)
    s = Scored(y, p)
    assert _m("mse", s) == pytest.approx(skm.mean_squared_error(y, p))
    assert _m("mae", s) == pytest.approx(skm.mean_absolute_error(y, p))
    assert _m("r2", s) == pytest.approx(skm.r2_score(y, p))


def test_a_perfect_model_scores_each_metric_s_best_value():
    y = np.array([0, 1, 1, 0, 1, 0])
    proba = np.eye(2)[y]
    groups = np.array(["a", "a", "b", "b", "a", "b"], dtype=object)
    yv = np.array([0.5, 2.0, -1.0])
    for name in METRICS.names():
        metric = METRICS.get(name)
        if metric.task == "classification":
            s = Scored(y, y.copy(), proba, 1, groups)
        else:
            s = Scored(yv, yv.copy())
        assert metric.fn(s) == pytest.approx(metric.best, abs=1e-12), name
