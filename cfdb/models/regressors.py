"""Regression model kinds: ``CREATE MODEL`` regressors and grids scored with MSE, MAE, R².

:data:`~cfdb.models.kinds.MODEL_KINDS` holds *classifiers*. Regressors live in their own
registry, :data:`REGRESSION_KINDS` (entry-point group ``cfdb.regressors``): ``CREATE MODEL``
trains a regression :class:`~cfdb.models.model.Model` (task ``regression``) when its kind is
registered here, and the data-counterfactual grid uses them when its metrics are regression
metrics. They reuse :class:`~cfdb.models.kinds.ModelKind` (parameter checking, defaults, seed)
and cfdb's :class:`~cfdb.models.featurizer.Featurizer` (one-hot encoding only: target encoding
needs classes). :func:`fit_regressor` is the one training routine both use.

Built-in kinds: ``linear_regression``, ``ridge`` (scaled), ``decision_tree_regressor``,
``random_forest_regressor``, ``gradient_boosting_regressor``, ``knn_regressor`` (scaled),
``xgboost_regressor`` (stored as the booster's UBJ bytes, like ``xgboost``).

A regression target (the training label) must be numeric: NULL or non-numeric values raise
:class:`~cfdb.errors.CfdbDataError` naming the column (:func:`regression_targets`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cfdb.errors import CfdbDataError
from cfdb.models.featurizer import Featurizer
from cfdb.models.kinds import ModelKind, xgboost_from_bytes, xgboost_to_ubj
from cfdb.registry import Registry
from cfdb.types import Columns, FeatureSpec

#: The regression model kinds a grid can train.
REGRESSION_KINDS: Registry[ModelKind] = Registry("regression model kind", "cfdb.regressors")


@dataclass
class Regressor:
    """A fitted regressor: cfdb's featurizer plus an estimator.

    Attributes:
        kind: the registry name.
        featurizer: the fitted featurizer.
        estimator: the fitted estimator.
    """

    kind: str
    featurizer: Featurizer
    estimator: Any

    def predict(self, columns: Columns) -> np.ndarray:
        """Predicted values (float64)."""
        x = self.featurizer.transform(columns)
        if not len(x):
            return np.zeros(0)
        return np.asarray(self.estimator.predict(x), np.float64)


def regression_targets(values: Any, what: str = "the regression target") -> np.ndarray:
    """Training targets as float64.

    Args:
        values: one target per row: numbers, or text holding numbers (``GroundTruth`` is
            stored as text).
        what: how messages name the column (e.g. ``"label column 'price'"``).

    Raises:
        CfdbDataError: no rows, a NULL, a non-numeric or a non-finite value, naming ``what``.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise CfdbDataError(f"{what} must be 1-D, got shape {arr.shape}")
    if not len(arr):
        raise CfdbDataError("cannot train a regressor on zero rows")
    if arr.dtype.kind in "iuf":
        out = arr.astype(np.float64)
        nulls = int(np.count_nonzero(np.isnan(out)))
        arr = arr[:0]  # nothing left to read one value at a time
    else:
        out = np.empty(len(arr), dtype=np.float64)
        nulls = 0
    for i, v in enumerate(arr.tolist()):
        if v is None or (isinstance(v, float) and v != v):
            nulls += 1
            continue
        if isinstance(v, bool):
            raise CfdbDataError(f"{what} holds a boolean value {v!r}; a regressor needs numbers")
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise CfdbDataError(
                f"{what} holds a non-numeric value {v!r}; a regressor needs numbers"
            ) from None
    if nulls:
        raise CfdbDataError(
            f"{what} has {nulls} NULL row{'s' if nulls != 1 else ''}; every training row "
            "needs a target"
        )
    if not np.all(np.isfinite(out)):
        raise CfdbDataError(f"{what} holds a non-finite value {out[~np.isfinite(out)][0]!r}")
    return out


def fit_regressor(
    model_kind: ModelKind,
    params: Mapping[str, Any],
    features: Sequence[FeatureSpec],
    columns: Columns,
    y: np.ndarray,
    *,
    seed: int | None = 0,
    sample_weight: np.ndarray | None = None,
    what: str | None = None,
) -> tuple[Featurizer, Any]:
    """Fit a one-hot featurizer and an estimator of ``model_kind`` on float64 targets ``y``.

    Returns:
        ``(featurizer, estimator)``, both fitted.

    Raises:
        CfdbDataError: bad feature data, unknown or invalid parameters.
    """
    featurizer = Featurizer(features, encoding="onehot", scale=model_kind.scale)
    x = featurizer.fit_transform(columns)
    estimator = model_kind.make(params, 1, seed)
    try:
        if sample_weight is None:
            estimator.fit(x, y)
        else:
            estimator.fit(x, y, sample_weight=sample_weight)
    except (ValueError, TypeError) as exc:
        raise CfdbDataError(
            f"cannot train {what or f'a {model_kind.name!r} regressor'}: {exc}"
        ) from exc
    return featurizer, estimator


def train_regressor(
    kind: str,
    params: Mapping[str, Any],
    features: Sequence[FeatureSpec],
    columns: Columns,
    targets: np.ndarray,
    *,
    seed: int | None = 0,
    sample_weight: np.ndarray | None = None,
) -> Regressor:
    """Fit a regressor of a kind in :data:`REGRESSION_KINDS` on raw feature columns.

    Raises:
        CfdbPluginError: unknown kind.
        CfdbDataError: no rows, NULL or non-numeric targets, bad feature data or parameters.
    """
    model_kind = REGRESSION_KINDS.get(kind)
    y = regression_targets(targets)
    featurizer, estimator = fit_regressor(
        model_kind, params, features, columns, y, seed=seed, sample_weight=sample_weight
    )
    return Regressor(model_kind.name, featurizer, estimator)


def _xgboost_regressor_from_bytes(blob: bytes, n_classes: int | None = None) -> Any:
    return xgboost_from_bytes(blob, task="regression")


def _factory(module: str, cls: str) -> Any:
    def make() -> Any:
        import importlib

        return getattr(importlib.import_module(module), cls)()

    return make


for _kind in (
    ModelKind(
        "linear_regression",
        "Ordinary least squares (scikit-learn LinearRegression).",
        _factory("sklearn.linear_model", "LinearRegression"),
    ),
    ModelKind(
        "ridge",
        "L2-regularized least squares on standardized features (scikit-learn Ridge).",
        _factory("sklearn.linear_model", "Ridge"),
        scale=True,
    ),
    ModelKind(
        "decision_tree_regressor",
        "A CART regression tree (scikit-learn DecisionTreeRegressor).",
        _factory("sklearn.tree", "DecisionTreeRegressor"),
    ),
    ModelKind(
        "random_forest_regressor",
        "Random forest of regression trees (scikit-learn RandomForestRegressor).",
        _factory("sklearn.ensemble", "RandomForestRegressor"),
    ),
    ModelKind(
        "gradient_boosting_regressor",
        "Gradient-boosted regression trees (scikit-learn GradientBoostingRegressor).",
        _factory("sklearn.ensemble", "GradientBoostingRegressor"),
    ),
    ModelKind(
        "knn_regressor",
        "k-nearest-neighbour regression on standardized features (KNeighborsRegressor).",
        _factory("sklearn.neighbors", "KNeighborsRegressor"),
        scale=True,
    ),
    ModelKind(
        "xgboost_regressor",
        "Gradient-boosted trees (xgboost XGBRegressor, squared error), stored as UBJ "
        "booster bytes.",
        _factory("xgboost", "XGBRegressor"),
        storage="xgboost-ubj",
        dump_estimator=xgboost_to_ubj,
        load_estimator=_xgboost_regressor_from_bytes,
    ),
):
    REGRESSION_KINDS.register(_kind.name, _kind)
