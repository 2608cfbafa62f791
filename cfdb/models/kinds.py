"""Model kinds: the estimators cfdb trains, how they are built from parameters and stored.

A :class:`ModelKind` names an estimator family, says whether the featurizer should standardize
numeric columns for it, builds an unfitted estimator from a user's ``WITH (...)`` parameters
(checked against the estimator's ``get_params()``), and names the storage format of the
fitted estimator. Built-in kinds register in :data:`MODEL_KINDS` exactly as third-party kinds
do (entry-point group ``cfdb.models``).

Built-in kinds and their estimators:

* ``logistic_regression``: ``LogisticRegression`` (L2, ``max_iter=1000``), scaled.
* ``random_forest``: ``RandomForestClassifier``.
* ``decision_tree``: ``DecisionTreeClassifier``.
* ``gradient_boosting``: ``GradientBoostingClassifier``.
* ``hist_gradient_boosting``: ``HistGradientBoostingClassifier``.
* ``xgboost``: ``xgboost.XGBClassifier``, objective ``binary:logistic`` or ``multi:softprob``
  by the number of classes; stored as the booster's UBJ bytes.
* ``knn``: ``KNeighborsClassifier``, scaled.
* ``mlp``: ``MLPClassifier``, scaled.
* ``linear_svm``: ``CalibratedClassifierCV(LinearSVC(), ensemble=False)``, scaled. Parameters
  of ``LinearSVC`` are given by their plain names (``C``, ``max_iter``...), those of the
  calibration as ``cv``/``method``. The single fitted ``LinearSVC`` (trained on all rows) is
  ``estimator.calibrated_classifiers_[0].estimator``; see :func:`decision_estimator`.

Every kind supports binary and multi-class labels. Storage formats other than ``skops`` are
produced and read by the kind's own ``dump_estimator``/``load_estimator`` hooks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cfdb.errors import CfdbDataError, CfdbSchemaError
from cfdb.models.xgb_check import check_booster_bytes, first_line
from cfdb.registry import Registry


@dataclass(frozen=True)
class ModelKind:
    """One trainable family of estimators.

    Attributes:
        name: the registry name (``CREATE MODEL ... KIND name``).
        doc: a one-paragraph description for users.
        factory: builds the unfitted estimator with library defaults.
        scale: whether the featurizer standardizes numeric columns for this kind.
        defaults: parameter values cfdb uses unless the user gives them.
        param_prefix: prefix of nested parameters the user may give by their plain name
            (``"estimator__"`` lets ``C`` mean ``estimator__C``).
        configure: sets parameters that depend on the number of classes, given the resolved
            parameters (user values win) and ``n_classes``.
        storage: the storage format of a fitted estimator (``"skops"`` or a kind's own).
        dump_estimator: for formats other than skops, fitted estimator -> bytes.
        load_estimator: for formats other than skops, ``(bytes, n_classes)`` -> estimator.
            It must not execute code found in the bytes.
        multiclass: whether more than two classes are supported.
    """

    name: str
    doc: str
    factory: Callable[[], Any]
    scale: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    param_prefix: str = ""
    configure: Callable[[dict[str, Any], int], None] | None = None
    storage: str = "skops"
    dump_estimator: Callable[[Any], bytes] | None = None
    load_estimator: Callable[[bytes, int], Any] | None = None
    multiclass: bool = True

    def param_names(self) -> list[str]:
        """Parameter names a user may give, sorted (nested ones by their plain name)."""
        names = set()
        for key, default in self.factory().get_params(deep=True).items():
            if self.param_prefix and key.startswith(self.param_prefix):
                key = key[len(self.param_prefix) :]
            if "__" not in key and not hasattr(default, "get_params"):
                names.add(key)
        return sorted(names)

    def resolve_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Map user parameter names to the estimator's, rejecting unknown ones.

        Raises:
            CfdbDataError: a parameter the estimator does not have, naming it and the kind.
        """
        available = self.factory().get_params(deep=True)
        by_plain: dict[str, str] = {}
        prefix = self.param_prefix
        # top-level parameters first, so they win over a nested one of the same plain name
        items = sorted(available.items(), key=lambda kv: bool(prefix) and kv[0].startswith(prefix))
        for full, default in items:
            plain = full
            if self.param_prefix and full.startswith(self.param_prefix):
                plain = full[len(self.param_prefix) :]
            if "__" in plain or hasattr(default, "get_params"):
                continue  # nested estimators are not user parameters
            by_plain.setdefault(plain, full)
        folded: dict[str, list[str]] = {}
        for plain in by_plain:
            folded.setdefault(plain.lower(), []).append(plain)
        out: dict[str, Any] = {}
        for key, value in params.items():
            plain = key
            if plain not in by_plain and len(folded.get(key.lower(), [])) == 1:
                plain = folded[key.lower()][0]  # SQL identifiers may arrive case-folded
            if plain not in by_plain:
                raise CfdbDataError(
                    f"unknown parameter {key!r} for model kind {self.name!r}; "
                    f"known: {', '.join(self.param_names())}"
                )
            out[by_plain[plain]] = value
        return out

    def make(self, params: Mapping[str, Any], n_classes: int, seed: int | None) -> Any:
        """An unfitted estimator for ``params``.

        Args:
            params: user parameters (plain names).
            n_classes: number of label classes the estimator will see.
            seed: the default ``random_state`` (user values win); None leaves it unset.

        Returns:
            The configured, unfitted estimator.
        """
        if n_classes > 2 and not self.multiclass:
            raise CfdbDataError(
                f"model kind {self.name!r} supports two classes only, got {n_classes}"
            )
        estimator = self.factory()
        available = estimator.get_params(deep=True)
        resolved = {k: v for k, v in self.defaults.items() if k in available}
        resolved.update(self.resolve_params(params))
        if seed is not None:
            for key in ("random_state", self.param_prefix + "random_state"):
                if key in available:
                    resolved.setdefault(key, int(seed))
        if self.configure is not None:
            self.configure(resolved, n_classes)
        estimator.set_params(**resolved)
        return estimator


#: The model kinds cfdb can train.
MODEL_KINDS: Registry[ModelKind] = Registry("model kind", "cfdb.models")


def decision_estimator(estimator: Any) -> Any:
    """The object whose ``decision_function`` defines a fitted estimator's linear score.

    That is the estimator itself when it has ``decision_function``, and the single fitted
    ``LinearSVC`` inside a ``linear_svm`` (``CalibratedClassifierCV(ensemble=False)``).
    Returns None when there is no such function.
    """
    if hasattr(estimator, "decision_function"):
        return estimator
    calibrated = getattr(estimator, "calibrated_classifiers_", None)
    if calibrated is not None and len(calibrated) == 1:
        inner = calibrated[0].estimator
        if hasattr(inner, "decision_function"):
            return inner
    return None


# --------------------------------------------------------------------------------------------
# Built-in kinds
# --------------------------------------------------------------------------------------------


def _logistic_regression() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression()


def _random_forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier()


def _decision_tree() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier()


def _gradient_boosting() -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier()


def _hist_gradient_boosting() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier()


def _knn() -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier()


def _mlp() -> Any:
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier()


def _linear_svm() -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    return CalibratedClassifierCV(LinearSVC(), ensemble=False)


def _xgboost() -> Any:
    import xgboost

    return xgboost.XGBClassifier()


def _xgboost_configure(params: dict[str, Any], n_classes: int) -> None:
    params.setdefault("objective", "binary:logistic" if n_classes <= 2 else "multi:softprob")


def xgboost_to_ubj(estimator: Any) -> bytes:
    """The UBJSON bytes of a fitted ``XGBClassifier``'s or ``XGBRegressor``'s booster."""
    return bytes(estimator.get_booster().save_raw("ubj"))


#: XGBoost objective prefixes cfdb reads as classifiers and as regressors.
_XGB_CLASSIFICATION = ("binary:", "multi:")
_XGB_REGRESSION = ("reg:", "count:")


def xgboost_objective(blob: bytes) -> str:
    """The objective name stored in booster bytes (UBJSON or JSON); parsing runs no code."""
    import xgboost

    check_booster_bytes(blob)  # XGBoost's parser aborts or spins on some bad bytes
    booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(blob))
        return str(json.loads(booster.save_config())["learner"]["objective"]["name"])
    except (xgboost.core.XGBoostError, KeyError, ValueError, TypeError) as exc:
        raise CfdbSchemaError(f"stored xgboost model cannot be read: {first_line(exc)}") from None


def xgboost_from_bytes(
    blob: bytes, n_classes: int | None = None, *, task: str | None = None
) -> Any:
    """An ``XGBClassifier`` or ``XGBRegressor`` from booster bytes (UBJSON or JSON), chosen by
    the stored objective (``binary:``/``multi:`` classify, ``reg:``/``count:`` regress);
    parsing runs no code.

    Args:
        blob: what :func:`xgboost_to_ubj` (or ``save_raw``) produced.
        n_classes: the expected number of classes of a classifier, checked when given.
        task: the expected task (``classification`` or ``regression``), checked when given.

    Raises:
        CfdbSchemaError: unreadable bytes, another objective, or a mismatch with the
            expectations.
    """
    import xgboost

    objective = xgboost_objective(blob)
    if objective.startswith(_XGB_CLASSIFICATION):
        found = "classification"
    elif objective.startswith(_XGB_REGRESSION):
        found = "regression"
    else:
        raise CfdbSchemaError(
            f"stored xgboost model has objective {objective!r}, which is neither a "
            "classification nor a regression objective"
        )
    if task is not None and task != found:
        raise CfdbSchemaError(
            f"stored xgboost model is a {found} model (objective {objective!r}), expected {task}"
        )
    estimator = xgboost.XGBClassifier() if found == "classification" else xgboost.XGBRegressor()
    try:
        estimator.load_model(bytearray(blob))
    except xgboost.core.XGBoostError as exc:
        raise CfdbSchemaError(f"stored xgboost model cannot be read: {first_line(exc)}") from None
    if (
        found == "classification"
        and n_classes is not None
        and int(getattr(estimator, "n_classes_", 0)) != n_classes
    ):
        raise CfdbSchemaError(
            f"stored xgboost model has {getattr(estimator, 'n_classes_', None)} classes, "
            f"expected {n_classes}"
        )
    return estimator


def _register_builtins() -> None:
    kinds = [
        ModelKind(
            "logistic_regression",
            "L2-regularized logistic regression (scikit-learn LogisticRegression).",
            _logistic_regression,
            scale=True,
            defaults={"max_iter": 1000},
        ),
        ModelKind(
            "random_forest",
            "Random forest of decision trees (scikit-learn RandomForestClassifier).",
            _random_forest,
        ),
        ModelKind(
            "decision_tree",
            "A single CART decision tree (scikit-learn DecisionTreeClassifier).",
            _decision_tree,
        ),
        ModelKind(
            "gradient_boosting",
            "Gradient-boosted trees (scikit-learn GradientBoostingClassifier).",
            _gradient_boosting,
        ),
        ModelKind(
            "hist_gradient_boosting",
            "Histogram gradient boosting (scikit-learn HistGradientBoostingClassifier).",
            _hist_gradient_boosting,
        ),
        ModelKind(
            "xgboost",
            "Gradient-boosted trees (xgboost XGBClassifier), stored as UBJ booster bytes.",
            _xgboost,
            configure=_xgboost_configure,
            storage="xgboost-ubj",
            dump_estimator=xgboost_to_ubj,
            load_estimator=xgboost_from_bytes,
        ),
        ModelKind(
            "knn",
            "k-nearest neighbours on standardized features (scikit-learn KNeighborsClassifier).",
            _knn,
            scale=True,
        ),
        ModelKind(
            "mlp",
            "Multi-layer perceptron on standardized features (scikit-learn MLPClassifier).",
            _mlp,
            scale=True,
        ),
        ModelKind(
            "linear_svm",
            "Linear SVM (scikit-learn LinearSVC) with sigmoid-calibrated probabilities "
            "(CalibratedClassifierCV, ensemble=False); predictions are the argmax of the "
            "calibrated probabilities.",
            _linear_svm,
            scale=True,
            defaults={"estimator__max_iter": 10000},
            param_prefix="estimator__",
        ),
    ]
    for kind in kinds:
        MODEL_KINDS.register(kind.name, kind)


_register_builtins()
