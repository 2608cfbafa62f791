"""Regression models for the exact (SMT) generator: a regressor's output as one score (CFDB
paper, section 4.4: a CF moves a numeric output by at least ``min_change`` up, down or either
way).

Each regressor reduces to the :class:`~.smt_model.CompiledModel` shape with a single score, the
prediction itself, exactly as its own ``predict`` computes it:

* ``LinearRegression``, ``Ridge`` (any linear regressor with ``coef_``/``intercept_``):
  ``w·x + b``;
* ``DecisionTreeRegressor``: the leaf's value; ``RandomForestRegressor``: the mean of the
  trees' leaf values (each leaf value divided by the number of trees);
* ``GradientBoostingRegressor``: ``init + learning_rate · Σ leaves`` (a constant ``init``);
* ``XGBRegressor`` with an identity link (``reg:squarederror``, ``reg:absoluteerror``,
  ``reg:pseudohubererror``): ``Σ leaves + base_score``, added in float32.

The encoding then asks the score to move by ``min_change`` plus the model's margin
(:meth:`~.smt_encode.Encoding.regression_target`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cfdb.errors import CfdbUnsupportedError
from cfdb.generators.smt_model import (
    CompiledModel,
    InputColumn,
    check_width,
    sklearn_tree,
    xgboost_booster,
    xgboost_tree,
)
from cfdb.models import Model

#: XGBoost objectives whose prediction is the margin itself.
IDENTITY_OBJECTIVES = ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror")


def compile_regressor(model: Model, est: Any, columns: list[InputColumn]) -> CompiledModel:
    """The single-score description of a fitted regressor.

    Raises:
        CfdbUnsupportedError: an estimator without an exact encoding, naming it.
    """
    kind = type(est).__name__
    if kind in ("DecisionTreeRegressor", "ExtraTreeRegressor", "RandomForestRegressor",
                "ExtraTreesRegressor"):  # fmt: skip
        return _forest(model, est, columns)
    if kind == "GradientBoostingRegressor":
        return _gradient_boosting(model, est, columns)
    if kind == "XGBRegressor":
        return _xgboost(model, est, columns)
    if hasattr(est, "coef_") and hasattr(est, "intercept_"):
        return _linear(model, est, columns)
    raise CfdbUnsupportedError(
        f"the smt generator cannot encode regression model {model.name!r} of kind "
        f"{model.kind!r} ({kind}); it supports linear regressors, regression trees and forests, "
        "gradient boosting and XGBoost"
    )


def _regression(model: Model, columns: list[InputColumn], **parts: Any) -> CompiledModel:
    return CompiledModel(model.name, columns, 0, 1, regression=True, **parts)


def _linear(model: Model, est: Any, columns: list[InputColumn]) -> CompiledModel:
    coef = np.asarray(est.coef_, dtype=np.float64).reshape(1, -1)
    intercept = np.asarray(est.intercept_, dtype=np.float64).reshape(-1)[:1]
    check_width(model, coef.shape[1], columns)
    return _regression(model, columns, coef=coef, intercept=intercept)


def _forest(model: Model, est: Any, columns: list[InputColumn]) -> CompiledModel:
    trees = getattr(est, "estimators_", None) or [est]
    if getattr(est, "n_outputs_", 1) != 1:
        raise CfdbUnsupportedError(f"model {model.name!r} has several outputs")
    out = [
        sklearn_tree(t, t.tree_.value[:, 0, :1].astype(np.float64) / len(trees), (0,))
        for t in trees
    ]
    return _regression(model, columns, intercept=np.zeros(1), trees=out, split="le32")


def _gradient_boosting(model: Model, est: Any, columns: list[InputColumn]) -> CompiledModel:
    if est.init_ != "zero" and type(est.init_).__name__ != "DummyRegressor":
        raise CfdbUnsupportedError(
            f"the smt generator cannot encode model {model.name!r}: its initial estimator "
            f"{type(est.init_).__name__} depends on the input"
        )
    probe = np.zeros((1, len(columns)), dtype=np.float32)
    base = np.asarray(est._raw_predict_init(probe), dtype=np.float64).reshape(-1)[:1]
    lr = float(est.learning_rate)
    trees = [
        sklearn_tree(t, t.tree_.value[:, 0, :1].astype(np.float64) * lr, (0,))
        for stage in est.estimators_
        for t in stage
    ]
    return _regression(model, columns, intercept=base, trees=trees, split="le32")


def _xgboost(model: Model, est: Any, columns: list[InputColumn]) -> CompiledModel:
    booster = xgboost_booster(model, est, IDENTITY_OBJECTIVES)
    trees = [xgboost_tree(t, 0) for t, _ in booster["trees"]]
    base = booster["base"][:1].astype(np.float64)
    return _regression(model, columns, intercept=base, trees=trees, split="le32", float32_sums=True)
