"""Fitted cfdb models: a cfdb featurizer plus an estimator, trained or adopted.

A :class:`Model` is used in one of two modes:

* ``featurized`` (models trained by :func:`train`): the estimator was fitted on the matrix of
  the model's :class:`~cfdb.models.featurizer.Featurizer`, with integer label codes
  ``0..k-1`` that index :attr:`Model.labels` (the class labels as sorted strings).
* ``raw`` (models adopted by :func:`from_estimator`): the estimator is a user's fitted object,
  typically an scikit-learn ``Pipeline`` with its own preprocessing, that receives a pandas
  ``DataFrame`` of the raw feature columns. Label codes index ``estimator.classes_``.

Either way callers hand in raw feature columns; NULLs and missing features raise
:class:`~cfdb.errors.CfdbDataError` naming the feature.

A model's *task* is ``classification`` or ``regression`` (the CFDB paper, section 4.4: CFs of
models whose output is a number). A classifier answers :meth:`Model.predict` (labels) and
:meth:`Model.predict_proba`; a regressor has no labels (``labels == []``) and answers
:meth:`Model.predict_value` (float64 outputs) only: the class methods raise
:class:`~cfdb.errors.CfdbUnsupportedError` for it, and :meth:`Model.predict_value` does for a
classifier. :func:`train` picks the task from the kind's registry (:data:`MODEL_KINDS` or
:data:`~cfdb.models.regressors.REGRESSION_KINDS`); :func:`from_estimator` from the estimator
(``classes_`` or scikit-learn's ``is_regressor``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cfdb.errors import CfdbDataError, CfdbNotFittedError, CfdbPluginError, CfdbUnsupportedError
from cfdb.models.featurizer import (
    Featurizer,
    check_no_nulls,
    get_column,
    to_numeric,
)
from cfdb.models.kinds import MODEL_KINDS, ModelKind, decision_estimator
from cfdb.models.regressors import REGRESSION_KINDS, fit_regressor, regression_targets
from cfdb.types import Columns, FeatureSpec

MODES = ("featurized", "raw")
#: What a model's output is: a class label, or a number.
TASKS = ("classification", "regression")


def resolve_kind(kind: str) -> tuple[str, ModelKind]:
    """The task and the :class:`ModelKind` of a kind name, classifiers first.

    Raises:
        CfdbPluginError: the name is in neither registry (listing both).
    """
    if kind in MODEL_KINDS:
        return "classification", MODEL_KINDS.get(kind)
    if kind in REGRESSION_KINDS:
        return "regression", REGRESSION_KINDS.get(kind)
    known = ", ".join([*MODEL_KINDS.names(), *REGRESSION_KINDS.names()])
    raise CfdbPluginError(f"unknown model kind {kind!r}; known: {known}")


def label_string(value: Any) -> str:
    """A class label as cfdb spells it: ``str(value)``, booleans as ``"true"``/``"false"``."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return str(value.item() if isinstance(value, np.generic) else value)


def encode_labels(labels: Any) -> tuple[list[str], np.ndarray]:
    """Class labels (sorted strings) and the int64 code of each value of ``labels``.

    Raises:
        CfdbDataError: NULL labels (with their count), no rows, or a single class.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise CfdbDataError(f"the label column must be 1-D, got shape {arr.shape}")
    if len(arr) == 0:
        raise CfdbDataError("cannot train a model on zero rows")
    if arr.dtype.kind not in "biuUS":
        nulls = int(np.count_nonzero(pd.isna(arr)))
        if nulls:
            raise CfdbDataError(
                f"label column has {nulls} NULL row{'s' if nulls != 1 else ''}; "
                "every training row needs a label"
            )
    strings = np.array([label_string(v) for v in arr], dtype=object)
    classes, codes = np.unique(strings, return_inverse=True)
    if len(classes) < 2:
        raise CfdbDataError(f"label column has a single class {str(classes[0])!r}")
    return [str(c) for c in classes], codes.astype(np.int64)


@dataclass
class Model:
    """A fitted model: what cfdb stores, predicts with and explains.

    Attributes:
        name: the model's name in the catalog.
        kind: the model kind (``random_forest``...) or, in raw mode, the estimator's class.
        params: the user's parameters (plain JSON values).
        features: the features the model reads, in featurizer order.
        labels: class labels as strings; code ``i`` is ``labels[i]`` (empty for a regressor).
        featurizer: the fitted featurizer (None in raw mode).
        estimator: the fitted estimator.
        mode: ``"featurized"`` or ``"raw"``.
        seed: the default random seed used to train (None if none).
        task: ``"classification"`` or ``"regression"``.
    """

    name: str
    kind: str
    params: dict[str, Any]
    features: list[FeatureSpec]
    labels: list[str]
    featurizer: Featurizer | None
    estimator: Any
    mode: str = "featurized"
    seed: int | None = None
    task: str = "classification"
    _code_of: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise CfdbDataError(f"model {self.name!r} has unknown mode {self.mode!r}")
        if self.task not in TASKS:
            raise CfdbDataError(
                f"model {self.name!r} has unknown task {self.task!r}; known: {', '.join(TASKS)}"
            )
        if self.task == "regression" and len(self.labels):
            raise CfdbDataError(f"regression model {self.name!r} cannot have class labels")
        if self.mode == "featurized" and self.featurizer is None:
            raise CfdbDataError(f"featurized model {self.name!r} needs a featurizer")
        self.features = list(self.features)
        self.labels = [str(v) for v in self.labels]
        self._code_of = {}
        classes = getattr(self.estimator, "classes_", None) if self.mode == "raw" else None
        if self.task == "regression":
            pass
        elif classes is not None:
            self._code_of = {label_string(c): i for i, c in enumerate(classes)}
        else:
            self._code_of = {label: i for i, label in enumerate(self.labels)}

    @property
    def n_classes(self) -> int:
        """Number of classes (0 for a regressor)."""
        return len(self.labels)

    @property
    def is_regression(self) -> bool:
        """Whether the model outputs a number rather than a class label."""
        return self.task == "regression"

    def _classifier_only(self, what: str) -> None:
        if self.task == "regression":
            raise CfdbUnsupportedError(
                f"model {self.name!r} is a regression model: it has no {what}; "
                "its output is predict_value (PREDICT stores it as Score)"
            )

    @property
    def feature_names(self) -> list[str]:
        """Names of the features the model reads."""
        return [f.name for f in self.features]

    # ---- inputs ------------------------------------------------------------------------------

    def _n_rows(self, columns: Columns) -> int:
        lengths = {len(get_column(columns, f.name)) for f in self.features}
        if len(lengths) > 1:
            raise CfdbDataError(f"feature columns of model {self.name!r} differ in length")
        return lengths.pop() if lengths else 0

    def transform(self, columns: Columns) -> np.ndarray:
        """The featurized matrix the estimator sees (featurized mode only)."""
        if self.featurizer is None:
            raise CfdbUnsupportedError(
                f"model {self.name!r} wraps a user estimator with its own preprocessing; "
                "it has no cfdb featurizer"
            )
        return self.featurizer.transform(columns)

    def frame(self, columns: Columns) -> pd.DataFrame:
        """The raw feature columns as a DataFrame, as a raw-mode estimator receives them.

        Numeric features become float64, integer features int64 when integral; categorical
        and boolean columns are passed as given (after the NULL check). Columns follow the
        estimator's ``feature_names_in_`` when it has one, else the features' order.
        """
        data: dict[str, np.ndarray] = {}
        for spec in self.features:
            arr = get_column(columns, spec.name)
            if spec.type in ("numeric", "integer"):
                x = to_numeric(spec.name, arr)
                if spec.type == "integer" and np.all(np.floor(x) == x):
                    x = x.astype(np.int64)
                data[spec.name] = x
            else:
                check_no_nulls(spec.name, arr)
                data[spec.name] = arr
        self._n_rows(columns)
        order = getattr(self.estimator, "feature_names_in_", None)
        names = [str(n) for n in order] if order is not None else self.feature_names
        return pd.DataFrame({n: data[n] for n in names})

    def _inputs(self, columns: Columns) -> Any:
        return self.frame(columns) if self.mode == "raw" else self.transform(columns)

    # ---- predictions -------------------------------------------------------------------------

    def predict_codes(self, columns: Columns) -> np.ndarray:
        """Predicted class codes (int64, indexes into :attr:`labels`).

        These are the estimator's own ``predict`` decisions (for a ``linear_svm``, the argmax
        of its calibrated probabilities).

        Raises:
            CfdbUnsupportedError: the model is a regressor.
        """
        self._classifier_only("class labels")
        if self._n_rows(columns) == 0:
            return np.zeros(0, dtype=np.int64)
        pred = np.asarray(self.estimator.predict(self._inputs(columns)))
        if self.mode == "featurized":
            return pred.astype(np.int64)
        try:
            return np.fromiter((self._code_of[label_string(v)] for v in pred), np.int64, len(pred))
        except KeyError as exc:
            raise CfdbDataError(
                f"model {self.name!r} predicted {exc.args[0]!r}, which is not one of its "
                f"labels {self.labels}"
            ) from None

    def predict(self, columns: Columns) -> np.ndarray:
        """Predicted class labels (object array of str); regressors raise
        :class:`CfdbUnsupportedError` (use :meth:`predict_value`)."""
        return np.array(self.labels, dtype=object)[self.predict_codes(columns)]

    def predict_proba(self, columns: Columns) -> np.ndarray:
        """Class probabilities (n x k float64), column ``i`` for ``labels[i]``.

        Raises:
            CfdbUnsupportedError: the model is a regressor, or its estimator gives no
                probabilities.
        """
        self._classifier_only("class probabilities")
        if self._n_rows(columns) == 0:
            return np.zeros((0, self.n_classes))
        if not hasattr(self.estimator, "predict_proba"):
            raise CfdbUnsupportedError(f"model {self.name!r} does not give probabilities")
        proba = np.asarray(self.estimator.predict_proba(self._inputs(columns)), np.float64)
        if proba.ndim != 2 or proba.shape[1] != self.n_classes:
            raise CfdbDataError(
                f"model {self.name!r} returned probabilities of shape {proba.shape} "
                f"for {self.n_classes} classes"
            )
        return proba

    def decision_function(self, columns: Columns) -> np.ndarray:
        """The estimator's decision scores (linear models and ``linear_svm``'s LinearSVC)."""
        self._classifier_only("decision function")
        inner = decision_estimator(self.estimator)
        if inner is None:
            raise CfdbUnsupportedError(f"model {self.name!r} has no decision function")
        return np.asarray(inner.decision_function(self._inputs(columns)), np.float64)

    def predict_value(self, columns: Columns) -> np.ndarray:
        """A regressor's predicted values (float64, one per row).

        Raises:
            CfdbUnsupportedError: the model is a classifier (use :meth:`predict`).
            CfdbDataError: the estimator returned the wrong shape or a non-finite value.
        """
        if self.task != "regression":
            raise CfdbUnsupportedError(
                f"model {self.name!r} is a classifier: its output is a label (predict), not a value"
            )
        n = self._n_rows(columns)
        if n == 0:
            return np.zeros(0)
        values = np.asarray(self.estimator.predict(self._inputs(columns)), np.float64)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.shape != (n,):
            raise CfdbDataError(
                f"model {self.name!r} returned predictions of shape {values.shape} for {n} rows"
            )
        if not np.all(np.isfinite(values)):
            raise CfdbDataError(f"model {self.name!r} predicted a non-finite value")
        return values


def train(
    kind: str,
    params: Mapping[str, Any],
    features: Sequence[FeatureSpec],
    columns: Columns,
    labels: np.ndarray,
    *,
    name: str,
    encoding: str = "onehot",
    seed: int | None = 0,
    smoothing: float = 10.0,
    label_name: str = "label",
) -> Model:
    """Train a model of a registered kind on raw feature columns.

    Args:
        kind: a name in :data:`~cfdb.models.kinds.MODEL_KINDS` (a classifier) or in
            :data:`~cfdb.models.regressors.REGRESSION_KINDS` (a regressor).
        params: estimator parameters by plain name.
        features: the features to read, in order.
        columns: raw feature columns.
        labels: one label per row: of any type for a classifier (compared as strings);
            numbers (or text holding numbers) for a regressor.
        name: the model's name, for messages and the catalog.
        encoding: ``"onehot"`` or ``"target"`` for categorical features (classifiers only).
        seed: default ``random_state`` of the estimator (None leaves it unset).
        smoothing: target-encoding smoothing.
        label_name: the label column's name, for messages.

    Returns:
        The fitted :class:`Model` (mode ``featurized``).

    Raises:
        CfdbPluginError: unknown kind.
        CfdbDataError: NULL or single-class labels, non-numeric regression targets, bad
            feature data, unknown or invalid parameters.
    """
    task, model_kind = resolve_kind(kind)
    if task == "regression":
        if encoding != "onehot":
            raise CfdbDataError(
                f"encoding {encoding!r} needs class labels; regression model {name!r} of "
                f"kind {kind!r} uses onehot"
            )
        y = regression_targets(labels, f"label column {label_name!r}")
        featurizer, estimator = fit_regressor(
            model_kind,
            params,
            features,
            columns,
            y,
            seed=seed,
            what=f"model {name!r} of kind {kind!r}",
        )
        return Model(
            name=name,
            kind=model_kind.name,
            params=dict(params),
            features=list(features),
            labels=[],
            featurizer=featurizer,
            estimator=estimator,
            mode="featurized",
            seed=seed,
            task="regression",
        )
    label_values, codes = encode_labels(labels)
    featurizer = Featurizer(
        features, encoding=encoding, scale=model_kind.scale, smoothing=smoothing
    )
    x = featurizer.fit_transform(columns, codes)
    estimator = model_kind.make(params, len(label_values), seed)
    try:
        estimator.fit(x, codes)
    except (ValueError, TypeError) as exc:
        raise CfdbDataError(f"cannot train model {name!r} of kind {kind!r}: {exc}") from exc
    return Model(
        name=name,
        kind=model_kind.name,
        params=dict(params),
        features=list(features),
        labels=label_values,
        featurizer=featurizer,
        estimator=estimator,
        mode="featurized",
        seed=seed,
    )


def from_estimator(
    estimator: Any,
    features: Sequence[FeatureSpec],
    *,
    name: str,
    labels: Sequence[Any] | None = None,
    task: str | None = None,
) -> Model:
    """Adopt a user's fitted estimator that takes a DataFrame of raw features (mode ``raw``).

    Args:
        estimator: a fitted classifier with ``predict`` (and ideally ``predict_proba``), or a
            fitted regressor, e.g. an scikit-learn Pipeline with its own ColumnTransformer.
        features: the features it reads; they must cover its ``feature_names_in_``.
        name: the model's name.
        labels: class labels in code order; defaults to ``estimator.classes_`` as strings.
        task: ``"classification"`` or ``"regression"``; by default a regressor when the
            estimator has no ``classes_``, no labels are given and scikit-learn's
            ``is_regressor`` says so.

    Returns:
        The :class:`Model`.
    """
    if not hasattr(estimator, "predict"):
        raise CfdbDataError(f"estimator for model {name!r} has no predict method")
    try:
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(estimator)
    except NotFittedError:
        raise CfdbNotFittedError(f"estimator for model {name!r} is not fitted") from None
    except TypeError:
        pass  # not a scikit-learn estimator: trust the caller
    classes = getattr(estimator, "classes_", None)
    if task is None:
        task = (
            "regression"
            if classes is None and labels is None and _is_regressor(estimator)
            else "classification"
        )
    if task not in TASKS:
        raise CfdbDataError(f"unknown task {task!r} for model {name!r}; known: {', '.join(TASKS)}")
    _check_fitted_on(estimator, features, name)
    if task == "regression":
        if labels or classes is not None:
            raise CfdbDataError(
                f"regression model {name!r} cannot have class labels (the estimator "
                f"{'has classes_' if classes is not None else 'got labels'})"
            )
        return _raw_model(estimator, features, name, [], "regression")
    if labels is None:
        if classes is None:
            raise CfdbDataError(
                f"estimator for model {name!r} has no classes_; give the labels explicitly, "
                "or task = 'regression' for a regressor"
            )
        labels = [label_string(c) for c in classes]
    labels = [label_string(v) for v in labels]
    if classes is not None and len(classes) != len(labels):
        raise CfdbDataError(
            f"model {name!r} got {len(labels)} labels for an estimator with {len(classes)} classes"
        )
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise CfdbDataError(f"model {name!r} needs at least two distinct labels, got {labels}")
    return _raw_model(estimator, features, name, labels, "classification")


def _is_regressor(estimator: Any) -> bool:
    try:
        from sklearn.base import is_regressor

        return bool(is_regressor(estimator))
    except Exception:  # an object scikit-learn cannot inspect is no known regressor
        return False


def _check_fitted_on(estimator: Any, features: Sequence[FeatureSpec], name: str) -> None:
    fitted_on = getattr(estimator, "feature_names_in_", None)
    if fitted_on is not None:
        have = {f.name for f in features}
        missing = [str(n) for n in fitted_on if str(n) not in have]
        if missing:
            raise CfdbDataError(
                f"estimator for model {name!r} was fitted on feature {missing[0]!r}, "
                "which the model's features lack"
            )


def _raw_model(
    estimator: Any, features: Sequence[FeatureSpec], name: str, labels: list[str], task: str
) -> Model:
    cls = type(estimator)
    return Model(
        name=name,
        kind=f"{cls.__module__}.{cls.__qualname__}",
        params={},
        features=list(features),
        labels=labels,
        featurizer=None,
        estimator=estimator,
        mode="raw",
        seed=None,
        task=task,
    )
