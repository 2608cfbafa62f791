"""The counterfactual-generator protocol (CFDB paper, section 3.2 step 3) and its registry.

A generator follows the estimator contract: ``__init__`` stores parameters only; ``fit(model,
features, pool)`` prepares for one model (e.g. reads the pool of database instances, builds an
encoding) and returns ``self``; ``generate(task)`` returns up to ``task.n`` candidate CFs for one
instance. The engine verifies every candidate (the model's output changes as required, the
condition holds, immutable features are unchanged) before storing it, so a generator may
return invalid candidates; it just wastes its budget.

Targets. For a classifier the output is a label: a CF must get ``task.target``, or any label
but ``task.original_label`` when the target is None. For a regressor (the CFDB paper, section
4.4: CFs as changes of a numeric output beyond a threshold) the task carries the instance's
output ``original_value``, a threshold ``min_change > 0`` and a ``direction``: a CF ``c`` is
valid iff ``f(c) - f(x) >= min_change`` (``up``), ``f(x) - f(c) >= min_change`` (``down``) or
``|f(c) - f(x)| >= min_change`` (``any``). :func:`target_mask` is that test on outputs, and
:func:`valid_mask` the whole check.

Output bounds. A task may also bound the model's *score* on a CF (``task.score``, a
:class:`ScoreBound`; the ``C.Score`` of a CFQL query, the "result" attribute the CFDB paper's
section 4.4 proposes): a classifier's probability of the CF's label, or a regressor's output
(:func:`output_scores`, stored as ``CFs.Score``). :func:`valid_mask` checks it on every
candidate, so a generator that ignores it merely filters; an exact one encodes it.

Flags. A generator may return its columns as a mapping with two more attributes, as the ``smt``
generator does: ``extra`` (per-row arrays; ``__optimal``: the CF is proven closest) and
``info`` (per-task facts; ``status == "infeasible"``: it *proved* that no CF exists under the
condition, the domains and the target). The engine stores the first as
``Prediction_CFs.Optimal`` and records the second as an ``infeasible`` request, not a failed
one; a generator without them is a heuristic (``Optimal`` NULL, nothing found = ``failed``).

Generators that support regressors set ``supports_regression = True``; :meth:`Generator.fit`
refuses a regression model for the others with :class:`~cfdb.errors.CfdbUnsupportedError`
(so a classifier-only generator needs no check of its own). ``task.is_regression`` and
``model.is_regression`` tell which kind of target a task has.

Generators are seeded (``task.seed``) and deterministic for a given seed, and should return
by ``task.deadline`` (a ``time.monotonic()`` value; sampling loops check it). A generator that
raises or overruns is recorded as ``failed`` for that prediction and the query goes on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from cfdb.ctable.condition import Cond, evaluate
from cfdb.errors import CfdbDataError, CfdbNotFittedError, CfdbUnsupportedError
from cfdb.models import Model
from cfdb.registry import Registry
from cfdb.types import Columns, FeatureSpec

#: Directions a regressor's output may be asked to move in.
DIRECTIONS = ("up", "down", "any")


@dataclass(frozen=True)
class ScoreBound:
    """Bounds on a CF's score: ``low <= score <= high`` (``<`` where strict; None: unbounded).

    The score is a classifier's probability of the CF's label or a regressor's output
    (:func:`output_scores`).
    """

    low: float | None = None
    high: float | None = None
    low_strict: bool = False
    high_strict: bool = False

    def __post_init__(self) -> None:
        for value in (self.low, self.high):
            if value is not None and not math.isfinite(value):
                raise CfdbDataError(f"a bound on a CF's Score must be a finite number, not {value}")

    def mask(self, scores: np.ndarray) -> np.ndarray:
        """Which scores lie within the bounds."""
        s = np.asarray(scores, dtype=np.float64)
        ok = np.ones(len(s), dtype=bool)
        if self.low is not None:
            ok &= s > self.low if self.low_strict else s >= self.low
        if self.high is not None:
            ok &= s < self.high if self.high_strict else s <= self.high
        return ok

    def sql(self, column: str = "Score") -> str:
        """The bounds as a DuckDB predicate over ``column``."""
        parts = []
        if self.low is not None:
            parts.append(f"{column} {'>' if self.low_strict else '>='} {self.low!r}")
        if self.high is not None:
            parts.append(f"{column} {'<' if self.high_strict else '<='} {self.high!r}")
        return " AND ".join(parts) or "TRUE"

    def key(self) -> tuple[Any, ...]:
        return (self.low, self.low_strict, self.high, self.high_strict)


@dataclass(frozen=True)
class GenerationTask:
    """One request: CFs for one instance under one condition.

    Attributes:
        instance: the instance's raw feature values, by feature name.
        original_label: the model's label for the instance (None for a regressor).
        target: the label a CF must get; ``None`` means any label other than the original
            (always None for a regressor).
        condition: the normalized condition every CF must satisfy.
        n: how many CFs to return at most.
        seed: the random seed for this task.
        deadline: ``time.monotonic()`` value to return by, or ``None``.
        distance: the distance to minimize (``l0``, ``l1`` or ``tabular``).
        params: generator-specific options from the statement's ``WITH``.
        original_value: a regressor's output on the instance; ``None`` for a classifier.
        min_change: how far a CF must move a regressor's output (> 0).
        direction: which way it must move: ``up``, ``down`` or ``any``.
        diversity: weight of the diversity term when choosing ``n > 1`` CFs among the
            verified candidates (0: the closest ``n``; see :mod:`cfdb.generators.diversity`).
        decimals: numeric features' decimals in the data; CF values are rounded to them.
        score: bounds on the model's score on a CF (:class:`ScoreBound`), or ``None``.

    Raises:
        CfdbDataError: a regression task without a positive finite ``min_change`` or with an
            unknown direction, or regression options on a classification task.
    """

    instance: dict[str, Any]
    original_label: str | None
    target: str | None
    condition: Cond
    n: int = 1
    seed: int = 0
    deadline: float | None = None
    distance: str = "tabular"
    params: dict[str, Any] = field(default_factory=dict)
    original_value: float | None = None
    min_change: float | None = None
    direction: str = "any"
    diversity: float = 0.0
    decimals: dict[str, int] = field(default_factory=dict)
    score: ScoreBound | None = None

    def __post_init__(self) -> None:
        if self.original_value is None:
            if self.min_change is not None or self.direction != "any":
                raise CfdbDataError("min_change and direction apply to regression tasks only")
            return
        if self.target is not None:
            raise CfdbDataError("a regression task has no target label")
        if self.min_change is None or not (math.isfinite(self.min_change) and self.min_change > 0):
            raise CfdbDataError(f"a regression task needs min_change > 0, got {self.min_change!r}")
        if self.direction not in DIRECTIONS:
            raise CfdbDataError(
                f"direction must be one of {', '.join(DIRECTIONS)}, not {self.direction!r}"
            )

    @property
    def is_regression(self) -> bool:
        """Whether the target is a change of a numeric output (a regressor's task)."""
        return self.original_value is not None

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


class Generator:
    """Base class of CF generators; see the module docstring for the contract.

    Subclasses set ``name`` and implement :meth:`_fit` (optional) and :meth:`generate`.
    """

    name = "generator"
    #: Whether the generator serves regression models (tasks with ``original_value``).
    supports_regression = False

    def __init__(self, **params: Any) -> None:
        self.params = params

    def fit(self, model: Model, features: list[FeatureSpec], pool: Columns | None = None) -> Self:
        """Prepare for ``model`` over ``features``; ``pool`` holds database instances.

        Returns:
            ``self``.

        Raises:
            CfdbUnsupportedError: ``model`` is a regressor and the generator does not support
                regressors.
        """
        if is_regression(model) and not self.supports_regression:
            able = [n for n in GENERATORS.names() if GENERATORS.get(n).supports_regression]
            raise CfdbUnsupportedError(
                f"generator {self.name!r} supports classifiers only, and model "
                f"{model.name!r} is a regression model; generators for regressors: "
                f"{', '.join(able) or 'none'}"
            )
        self.model_ = model
        self.features_ = list(features)
        self.pool_ = pool
        self._fit()
        return self

    def _fit(self) -> None:
        """Subclass hook run at the end of :meth:`fit`."""

    def check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise CfdbNotFittedError(f"generator {self.name!r} is used before fit()")

    def generate(self, task: GenerationTask) -> Columns:
        """Up to ``task.n`` candidate CFs as feature columns (each array of equal length)."""
        raise NotImplementedError


#: Generators by name; entry-point group ``cfdb.generators`` for third parties.
GENERATORS: Registry[type[Generator]] = Registry("generator", "cfdb.generators")


def is_regression(model: Any) -> bool:
    """Whether ``model`` outputs numbers (a regressor); models without a task classify."""
    return bool(getattr(model, "is_regression", False))


def target_mask(task: GenerationTask, outputs: np.ndarray) -> np.ndarray:
    """Which model outputs meet the task's target.

    Args:
        task: the task.
        outputs: class labels (as str) for a classification task, float values for a
            regression one.
    """
    if task.is_regression:
        delta = np.asarray(outputs, dtype=np.float64) - float(task.original_value)
        if task.direction == "up":
            return delta >= task.min_change
        if task.direction == "down":
            return -delta >= task.min_change
        return np.abs(delta) >= task.min_change
    labels = np.asarray(outputs).astype(str)
    if task.target is None:
        return labels != task.original_label
    return labels == task.target


def model_outputs(model: Model, rows: Columns) -> np.ndarray:
    """The model's output on ``rows``: labels (object array of str) for a classifier, values
    (float64) for a regressor."""
    if is_regression(model):
        return model.predict_value(rows)
    return model.predict(rows)


def output_scores(model: Model, rows: Columns) -> np.ndarray:
    """The model's score on ``rows`` (float64): a classifier's probability of its predicted
    label, a regressor's output (what ``CFs.Score`` stores)."""
    if is_regression(model):
        return np.asarray(model.predict_value(rows), dtype=np.float64)
    n = len(next(iter(rows.values()))) if rows else 0
    if n == 0:
        return np.zeros(0)
    codes = model.predict_codes(rows)
    return np.asarray(model.predict_proba(rows), dtype=np.float64)[np.arange(n), codes]


def output_text(model: Model, outputs: np.ndarray) -> np.ndarray:
    """Outputs as stored in ``CFs.Label``: the label, or a regressor's value as the shortest
    text that reads back as the same double (``CAST(Label AS DOUBLE)`` recovers it)."""
    if is_regression(model):
        return np.array([repr(float(v)) for v in np.asarray(outputs).tolist()], dtype=object)
    return np.asarray(outputs, dtype=object)


def valid_mask(
    model: Model, features: list[FeatureSpec], task: GenerationTask, rows: Columns
) -> np.ndarray:
    """Which candidate rows are valid CFs for ``task``: the condition holds, immutable
    features keep the instance's values, the model's output changes as required
    (:func:`target_mask`) and its score lies within ``task.score``.

    Raises:
        CfdbDataError: a regression task for a classifier, or the reverse.
    """
    if task.is_regression != is_regression(model):
        what = "regression" if is_regression(model) else "classification"
        wanted = "a change of value" if task.is_regression else "a label"
        raise CfdbDataError(
            f"model {model.name!r} is a {what} model, but the task's target is {wanted}"
        )
    n = len(next(iter(rows.values()))) if rows else 0
    if n == 0:
        return np.zeros(0, dtype=bool)
    ok = evaluate(task.condition, rows, n)
    for f in features:
        if not f.mutable:
            values = np.asarray(rows[f.name])
            ok &= _equal(values, task.instance[f.name])
    if ok.any():
        good = target_mask(
            task, model_outputs(model, {k: np.asarray(v)[ok] for k, v in rows.items()})
        )
        idx = np.flatnonzero(ok)
        ok[idx[~good]] = False
    if task.score is not None and ok.any():
        idx = np.flatnonzero(ok)
        scores = output_scores(model, {k: np.asarray(v)[idx] for k, v in rows.items()})
        ok[idx[~task.score.mask(scores)]] = False
    return ok


def _equal(values: np.ndarray, target: Any) -> np.ndarray:
    if values.dtype == object or isinstance(target, str):
        return np.array([v == target for v in values.tolist()], dtype=bool)
    return np.isclose(values.astype(float), float(target), rtol=0, atol=0)


def take(rows: Columns, index: np.ndarray) -> dict[str, np.ndarray]:
    """The rows of ``rows`` at ``index``."""
    return {k: np.asarray(v)[index] for k, v in rows.items()}
