"""Regression model kinds, for grids scored with regression metrics (MSE, MAE, R²).

:data:`~cfdb.models.kinds.MODEL_KINDS` is a registry of *classifiers*: ``CREATE MODEL``,
``PREDICT`` and counterfactual generators rely on class labels and probabilities. Regressors
therefore live in their own registry, :data:`REGRESSION_KINDS` (entry-point group
``cfdb.regressors``), used by the data-counterfactual grid when its metrics are regression
metrics. They reuse :class:`~cfdb.models.kinds.ModelKind` (parameter checking, defaults, seed)
and cfdb's :class:`~cfdb.models.featurizer.Featurizer` (one-hot encoding only: target encoding
needs classes).

Built-in kinds: ``linear_regression``, ``ridge`` (scaled), ``decision_tree_regressor``,
``random_forest_regressor``, ``gradient_boosting_regressor``, ``knn_regressor`` (scaled),
``xgboost_regressor``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cfdb.errors import CfdbDataError
from cfdb.models.featurizer import Featurizer, to_numeric
from cfdb.models.kinds import ModelKind
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
    y = to_numeric("the regression target", np.asarray(targets))
    if not len(y):
        raise CfdbDataError("cannot train a regressor on zero rows")
    featurizer = Featurizer(features, encoding="onehot", scale=model_kind.scale)
    x = featurizer.fit_transform(columns)
    estimator = model_kind.make(params, 1, seed)
    try:
        if sample_weight is None:
            estimator.fit(x, y)
        else:
            estimator.fit(x, y, sample_weight=sample_weight)
    except (ValueError, TypeError) as exc:
        raise CfdbDataError(f"cannot train a {kind!r} regressor: {exc}") from exc
    return Regressor(model_kind.name, featurizer, estimator)


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
        "Gradient-boosted trees (xgboost XGBRegressor, squared error).",
        _factory("xgboost", "XGBRegressor"),
    ),
):
    REGRESSION_KINDS.register(_kind.name, _kind)
