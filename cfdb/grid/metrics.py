"""Grid metrics: how a cell scores a trained model on an evaluation slice.

Every metric is a function of a :class:`Scored` slice (true and predicted class codes, class
probabilities, the positive class, sensitive groups; or true and predicted values for
regression) and returns a float, NaN when undefined (e.g. AUC on a slice with one class).
Metrics register in :data:`METRICS` (entry-point group ``cfdb.grid_metrics``).

Classification (binary metrics are "positive class versus the rest"):

* ``accuracy``; ``log_loss`` (mean −ln p(true class), probabilities clipped to [1e-15, 1]);
* ``auc`` (ROC AUC of the positive class's probability; with more than two classes the
  unweighted mean of one-versus-rest AUCs over the classes present);
* ``f1``, ``precision``, ``tpr`` (recall), ``fnr``, ``fpr``, ``tnr`` of the positive class;
* ``equalized_odds``: the equalized-odds difference across the sensitive column's groups,
  ``max(max_g TPR_g − min_g TPR_g, max_g FPR_g − min_g FPR_g)`` (as in fairlearn), groups
  without positives (negatives) left out of the TPR (FPR) term.

Regression: ``mse``, ``mae``, ``r2``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cfdb.registry import Registry

EPS = 1e-15


@dataclass
class Scored:
    """One evaluation slice scored by one model.

    Attributes:
        y_true: true class codes (int64; -1 for a label the grid has never seen), or values.
        y_pred: predicted class codes, or predicted values.
        proba: class probabilities (n x k), or None for regression.
        positive: the positive class's code.
        groups: the sensitive column's values (strings), or None.
    """

    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None = None
    positive: int = 1
    groups: np.ndarray | None = None


@dataclass(frozen=True)
class Metric:
    """A grid metric.

    Attributes:
        name: the registry name (``METRIC name``).
        fn: ``Scored -> float`` (NaN when undefined).
        higher_is_better: whether larger values are better (scaling laws fit the error).
        task: ``"classification"`` or ``"regression"``.
        needs_sensitive: whether the grid must name a ``sensitive`` column.
        best: the value of a perfect model (the asymptote of a scaling law).
    """

    name: str
    fn: Callable[[Scored], float]
    higher_is_better: bool
    task: str = "classification"
    needs_sensitive: bool = False
    best: float = 1.0


METRICS: Registry[Metric] = Registry("grid metric", "cfdb.grid_metrics")


def _mean(mask: np.ndarray) -> float:
    return float(np.mean(mask)) if len(mask) else float("nan")


def _rates(s: Scored) -> tuple[int, int, int, int]:
    truth = s.y_true == s.positive
    pred = s.y_pred == s.positive
    tp = int(np.sum(truth & pred))
    fn = int(np.sum(truth & ~pred))
    fp = int(np.sum(~truth & pred))
    tn = int(np.sum(~truth & ~pred))
    return tp, fn, fp, tn


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def accuracy(s: Scored) -> float:
    return _mean(s.y_true == s.y_pred)


def log_loss(s: Scored) -> float:
    if s.proba is None or not len(s.y_true):
        return float("nan")
    p = np.full(len(s.y_true), EPS)
    known = s.y_true >= 0
    p[known] = s.proba[np.flatnonzero(known), s.y_true[known]]
    return float(-np.mean(np.log(np.clip(p, EPS, 1.0))))


def _binary_auc(truth: np.ndarray, score: np.ndarray) -> float:
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if not n_pos or not n_neg:
        return float("nan")
    # Mann-Whitney U with average ranks for ties.
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc(s: Scored) -> float:
    if s.proba is None:
        return float("nan")
    k = s.proba.shape[1]
    if k <= 2:
        return _binary_auc(s.y_true == s.positive, s.proba[:, s.positive])
    values = [_binary_auc(s.y_true == c, s.proba[:, c]) for c in range(k)]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def f1(s: Scored) -> float:
    tp, fn, fp, _ = _rates(s)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def precision(s: Scored) -> float:
    tp, _, fp, _ = _rates(s)
    return _ratio(tp, tp + fp)


def tpr(s: Scored) -> float:
    tp, fn, _, _ = _rates(s)
    return _ratio(tp, tp + fn)


def fnr(s: Scored) -> float:
    tp, fn, _, _ = _rates(s)
    return _ratio(fn, tp + fn)


def fpr(s: Scored) -> float:
    _, _, fp, tn = _rates(s)
    return _ratio(fp, fp + tn)


def tnr(s: Scored) -> float:
    _, _, fp, tn = _rates(s)
    return _ratio(tn, fp + tn)


def equalized_odds(s: Scored) -> float:
    if s.groups is None or not len(s.y_true):
        return float("nan")
    tprs, fprs = [], []
    for g in np.unique(s.groups):
        mask = s.groups == g
        part = Scored(s.y_true[mask], s.y_pred[mask], None, s.positive)
        t, f = tpr(part), fpr(part)
        if not np.isnan(t):
            tprs.append(t)
        if not np.isnan(f):
            fprs.append(f)
    spreads = [max(v) - min(v) for v in (tprs, fprs) if v]
    return float(max(spreads)) if spreads else float("nan")


def mse(s: Scored) -> float:
    if not len(s.y_true):
        return float("nan")
    return float(np.mean((s.y_true - s.y_pred) ** 2))


def mae(s: Scored) -> float:
    if not len(s.y_true):
        return float("nan")
    return float(np.mean(np.abs(s.y_true - s.y_pred)))


def r2(s: Scored) -> float:
    if len(s.y_true) < 2:
        return float("nan")
    total = float(np.sum((s.y_true - np.mean(s.y_true)) ** 2))
    if total == 0:
        return float("nan")
    return 1.0 - float(np.sum((s.y_true - s.y_pred) ** 2)) / total


for _metric in (
    Metric("accuracy", accuracy, True),
    Metric("log_loss", log_loss, False, best=0.0),
    Metric("auc", auc, True),
    Metric("f1", f1, True),
    Metric("precision", precision, True),
    Metric("tpr", tpr, True),
    Metric("fnr", fnr, False, best=0.0),
    Metric("fpr", fpr, False, best=0.0),
    Metric("tnr", tnr, True),
    Metric("equalized_odds", equalized_odds, False, needs_sensitive=True, best=0.0),
    Metric("mse", mse, False, task="regression", best=0.0),
    Metric("mae", mae, False, task="regression", best=0.0),
    Metric("r2", r2, True, task="regression"),
):
    METRICS.register(_metric.name, _metric)
