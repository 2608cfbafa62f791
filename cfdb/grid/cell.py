"""The cell trainer: fit the grid's model on one training subset, score every slice.

Pure: in-memory columns in, values out; it runs in the engine's process or in executor
workers (process pool, Ray), which receive the :class:`GridData` once and then small
:class:`CellTask` values. Results go back to the engine, the only writer of the database.

The empty-set utility (documented, and the same for every design):

* **empty subset** (no training rows): a classifier guesses one class uniformly at random
  with uniform probabilities; the cell holds that guess's *expected* score (the mean over
  classes ``c`` of the score of always predicting ``c``): accuracy ``1/k``-like values, AUC
  0.5, log loss ``ln k``. A regressor predicts the mean target of the whole training universe.
  The grid option ``empty_value = x`` replaces this with the constant ``x`` for every metric.
* **single-class subset**: the model is the constant predictor of that class (probability 1).
* any other failure to train (e.g. ``knn`` with fewer rows than neighbours) is recorded as a
  failed cell with its error; the batch goes on.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cfdb.errors import CfdbError
from cfdb.grid.metrics import METRICS, Scored
from cfdb.models import MODEL_KINDS, Featurizer, label_string
from cfdb.models.regressors import REGRESSION_KINDS
from cfdb.types import FeatureSpec


@dataclass
class GridData:
    """Everything a worker needs, shipped once per run.

    Attributes:
        kind: model kind (a classifier in ``MODEL_KINDS``, or a regressor).
        params: the model's parameters.
        features: the features the model reads.
        task: ``"classification"`` or ``"regression"``.
        classes: the grid's class labels (sorted strings); codes index them.
        positive: the positive class's code.
        train: training-universe feature columns.
        train_y: training labels (class codes, or float targets).
        unit_rows: for each unit, the indices of its rows in ``train``.
        eval: evaluation feature columns.
        eval_y: evaluation labels (codes, -1 for unseen labels; or float targets).
        slices: ``(slice id, row indices)`` of each evaluation slice.
        groups: the sensitive column's values on the evaluation rows, or None.
        metrics: metric names.
        encoding: ``onehot`` or ``target``.
        seed: the estimator's ``random_state``.
        empty_value: a constant for the empty subset (None: the documented guess).
        target_mean: mean training target (regression's empty-set prediction).
    """

    kind: str
    params: dict[str, Any]
    features: list[FeatureSpec]
    task: str
    classes: list[str]
    positive: int
    train: dict[str, np.ndarray]
    train_y: np.ndarray
    unit_rows: list[np.ndarray]
    eval: dict[str, np.ndarray]
    eval_y: np.ndarray
    slices: list[tuple[int, np.ndarray]]
    groups: np.ndarray | None
    metrics: list[str]
    encoding: str = "onehot"
    seed: int | None = 0
    empty_value: float | None = None
    target_mean: float = 0.0


@dataclass
class CellTask:
    """One cell to train: a subset of units, optionally edited (what-ifs).

    Attributes:
        subset_id: the subset's id in the grid.
        units: unit indices of the subset.
        flip: training-row indices whose (binary) label is flipped.
        weights: (row indices, weights) of rows given a sample weight (others weigh 1).
        extra: (columns, labels) of rows added to the training data.
    """

    subset_id: int
    units: np.ndarray
    flip: np.ndarray | None = None
    weights: tuple[np.ndarray, np.ndarray] | None = None
    extra: tuple[dict[str, np.ndarray], np.ndarray] | None = None


@dataclass
class CellResult:
    """What a cell produced: ``(slice id, metric, value)`` rows, or an error."""

    subset_id: int
    values: list[tuple[int, str, float | None]] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "ok"
    error: str | None = None
    rows: int = 0


def _take(columns: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in columns.items()}


def _concat(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([a[k], np.asarray(b[k], dtype=a[k].dtype)]) for k in a}


def training_rows(data: GridData, units: np.ndarray) -> np.ndarray:
    """The training-row indices of a subset of units, in row order."""
    if not len(units):
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate([data.unit_rows[int(u)] for u in units]))


def _constant_scores(data: GridData, code: int, proba_row: np.ndarray) -> dict[str, Any]:
    n = len(data.eval_y)
    pred = np.full(n, code, dtype=np.int64)
    proba = np.tile(proba_row, (n, 1))
    return {"pred": pred, "proba": proba}


def _score(
    data: GridData, pred: np.ndarray, proba: np.ndarray | None
) -> dict[tuple[int, str], float]:
    out = {}
    for slice_id, rows in data.slices:
        scored = Scored(
            data.eval_y[rows],
            pred[rows],
            None if proba is None else proba[rows],
            data.positive,
            None if data.groups is None else data.groups[rows],
        )
        for name in data.metrics:
            out[(slice_id, name)] = METRICS.get(name).fn(scored)
    return out


@dataclass
class _Encoded:
    """The universe and evaluation rows featurized once (unscaled), shared by every cell."""

    x_train: np.ndarray
    x_eval: np.ndarray
    numeric: np.ndarray  # indices of the columns a scaling kind standardizes
    raw: Featurizer  # the unscaled featurizer, for rows added by a what-if
    scale: bool


def _encoded(data: GridData) -> _Encoded | None:
    """Pre-encoded matrices (cached on ``data``), or None when the encoding depends on the
    subset (target encoding of categorical features)."""
    cache = data.__dict__.setdefault("_cache", {})
    if "encoded" in cache:
        return cache["encoded"]
    registry = MODEL_KINDS if data.task == "classification" else REGRESSION_KINDS
    kind = registry.get(data.kind)
    kind.factory()  # import the estimator's library before threads are limited
    encoded = None
    needs_labels = data.encoding == "target" and any(f.type == "categorical" for f in data.features)
    fixed = all(f.domain is not None for f in data.features if f.type == "categorical")
    if not needs_labels and fixed and len(data.train_y):
        # One-hot columns come from the declared domains and booleans are 0/1, so only the
        # standardization of numeric columns depends on the subset: encode once, scale per cell
        # (the same arithmetic as Featurizer with scale=True).
        raw = Featurizer(data.features, encoding="onehot", scale=False).fit(data.train)
        numeric = [b.start for b in raw.blocks() if b.encoding == "numeric"]
        encoded = _Encoded(
            raw.transform(data.train),
            raw.transform(data.eval),
            np.asarray(numeric, np.int64),
            raw,
            kind.scale,
        )
    cache["encoded"] = encoded
    return encoded


def _matrices(
    data: GridData, rows: np.ndarray, extra: dict[str, np.ndarray] | None, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(training matrix, evaluation matrix) for a subset's rows (+ added rows)."""
    enc = _encoded(data)
    if enc is None:
        registry = MODEL_KINDS if data.task == "classification" else REGRESSION_KINDS
        columns = _take(data.train, rows)
        if extra is not None:
            columns = _concat(columns, extra)
        featurizer = Featurizer(
            data.features, encoding=data.encoding, scale=registry.get(data.kind).scale
        )
        return featurizer.fit_transform(columns, codes), featurizer.transform(data.eval), True
    x = enc.x_train[rows]
    if extra is not None:
        x = np.vstack([x, enc.raw.transform(extra)])
    x_eval = enc.x_eval
    if enc.scale and len(enc.numeric):
        cols = x[:, enc.numeric]
        mean = cols.mean(axis=0)
        std = cols.std(axis=0)
        std[~(std > 0) | ~np.isfinite(std)] = 1.0
        x = x.copy()
        x[:, enc.numeric] = (cols - mean) / std
        x_eval = x_eval.copy()
        x_eval[:, enc.numeric] = (x_eval[:, enc.numeric] - mean) / std
    return x, x_eval, False


def _estimator(data: GridData, n_classes: int) -> Any:
    registry = MODEL_KINDS if data.task == "classification" else REGRESSION_KINDS
    kind = registry.get(data.kind)
    estimator = kind.make(data.params, n_classes, data.seed)
    # One thread per fit unless the user asked otherwise: parallelism is across cells. BLAS
    # pools are limited by threadpoolctl; XGBoost's own thread count is set here.
    if type(estimator).__module__.startswith("xgboost") and not any(
        k.lower() in ("n_jobs", "nthread") for k in data.params
    ):
        estimator.set_params(n_jobs=1)
    return estimator


def _fit_classifier(
    data: GridData,
    rows: np.ndarray,
    extra: dict[str, np.ndarray] | None,
    codes: np.ndarray,
    weights: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train on the rows and return (predicted codes, probabilities) on the eval rows.

    The predicted class is the most probable one (the first on ties).
    """
    k = len(data.classes)
    present = np.unique(codes)
    if len(present) == 1:
        row = np.zeros(k)
        row[present[0]] = 1.0
        c = _constant_scores(data, int(present[0]), row)
        return c["pred"], c["proba"]
    # Codes relative to the classes this subset has (estimators want 0..k'-1).
    local = np.searchsorted(present, codes)
    x, x_eval, _ = _matrices(data, rows, extra, local)
    estimator = _estimator(data, len(present))
    if weights is None:
        estimator.fit(x, local)
    else:
        estimator.fit(x, local, sample_weight=weights)
    proba = np.zeros((len(data.eval_y), k))
    if len(data.eval_y):
        proba[:, present] = np.asarray(estimator.predict_proba(x_eval), np.float64)
    return np.argmax(proba, axis=1).astype(np.int64), proba


def _fit_regressor(
    data: GridData,
    rows: np.ndarray,
    extra: dict[str, np.ndarray] | None,
    y: np.ndarray,
    weights: np.ndarray | None,
) -> np.ndarray:
    x, x_eval, _ = _matrices(data, rows, extra, np.zeros(len(y), np.int64))
    estimator = _estimator(data, 1)
    if weights is None:
        estimator.fit(x, y)
    else:
        estimator.fit(x, y, sample_weight=weights)
    if not len(data.eval_y):
        return np.zeros(0)
    return np.asarray(estimator.predict(x_eval), np.float64)


_THREADS: Any = None


def _one_thread() -> Any:
    """A context limiting BLAS/OpenMP pools to one thread.

    Cells run in parallel across processes; letting each fit spread over every core as well
    oversubscribes the machine (measured: an XGBoost fit on 60 rows took 1.5 s instead of 6 ms
    on a busy two-core machine, a logistic regression 70 ms instead of 4 ms).
    """
    global _THREADS
    if _THREADS is None:
        from threadpoolctl import ThreadpoolController

        _THREADS = ThreadpoolController()
    return _THREADS.limit(limits=1)


def run_cell(data: GridData, task: CellTask) -> CellResult:
    """Train the grid's model on ``task``'s subset and score every slice with every metric.

    Never raises for a bad subset: a failure is returned as a ``failed`` result.
    """
    _encoded(data)
    with _one_thread():
        return _run_cell(data, task)


def _run_cell(data: GridData, task: CellTask) -> CellResult:
    started = time.perf_counter()
    result = CellResult(task.subset_id)
    try:
        rows = training_rows(data, task.units)
        y = data.train_y[rows].copy()
        weights = None
        extra = None
        if task.flip is not None and len(task.flip):
            if data.task != "classification" or len(data.classes) != 2:
                raise CfdbError("FLIP LABELS needs a binary classification grid")
            flip = np.isin(rows, task.flip)
            y[flip] = 1 - y[flip]
        if task.weights is not None:
            weights = np.ones(len(rows))
            where = {int(r): i for i, r in enumerate(rows)}
            for r, w in zip(*task.weights):
                if int(r) in where:
                    weights[where[int(r)]] = float(w)
        if task.extra is not None:
            extra, extra_y = task.extra
            y = np.concatenate([y, np.asarray(extra_y, dtype=y.dtype)])
            if weights is not None:
                weights = np.concatenate([weights, np.ones(len(extra_y))])
        result.rows = len(y)
        values = _train_and_score(data, rows, extra, y, weights)
        result.values = [
            (sid, name, None if v is None or np.isnan(v) else float(v))
            for (sid, name), v in values.items()
        ]
    except Exception as exc:  # a failing cell is recorded, never fatal to the batch
        result.status = "failed"
        message = exc.message if isinstance(exc, CfdbError) else f"{type(exc).__name__}: {exc}"
        result.error = (
            message
            if isinstance(exc, CfdbError | ValueError)
            else (message + "\n" + traceback.format_exc(limit=3))
        )
    result.seconds = time.perf_counter() - started
    return result


def _train_and_score(
    data: GridData,
    rows: np.ndarray,
    extra: dict[str, np.ndarray] | None,
    y: np.ndarray,
    weights: np.ndarray | None,
) -> dict[tuple[int, str], float]:
    if not len(y):
        if data.empty_value is not None:
            return {(sid, m): data.empty_value for sid, _ in data.slices for m in data.metrics}
        if data.task == "regression":
            pred = np.full(len(data.eval_y), data.target_mean)
            return _score(data, pred, None)
        k = len(data.classes)
        totals: dict[tuple[int, str], list[float]] = {}
        for code in range(k):
            c = _constant_scores(data, code, np.full(k, 1.0 / k))
            for key, v in _score(data, c["pred"], c["proba"]).items():
                totals.setdefault(key, []).append(v)
        return {key: float(np.mean(v)) for key, v in totals.items()}
    if data.task == "regression":
        return _score(data, _fit_regressor(data, rows, extra, y, weights), None)
    pred, proba = _fit_classifier(data, rows, extra, y.astype(np.int64), weights)
    return _score(data, pred, proba)


def encode_classes(values: Sequence[Any], classes: Sequence[str]) -> np.ndarray:
    """Class codes of ``values`` in ``classes`` (label strings); -1 for unknown labels."""
    index = {c: i for i, c in enumerate(classes)}
    return np.fromiter(
        (index.get(label_string(v), -1) if v is not None else -1 for v in values),
        np.int64,
        len(values),
    )


def run_cells(data: GridData, tasks: Sequence[CellTask]) -> list[CellResult]:
    """Run several cells in order (the unit of work an executor ships)."""
    _encoded(data)
    with _one_thread():
        return [_run_cell(data, t) for t in tasks]
