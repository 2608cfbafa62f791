"""The counterfactual-generator protocol (CFDB paper, section 3.2 step 3) and its registry.

A generator follows the estimator contract: ``__init__`` stores parameters only; ``fit(model,
features, pool)`` prepares for one model (e.g. reads the pool of database instances, builds an
encoding) and returns ``self``; ``generate(task)`` returns up to ``task.n`` candidate CFs for one
instance. The engine verifies every candidate (the model's label changes as required, the
condition holds, immutable features are unchanged) before storing it, so a generator may
return invalid candidates; it just wastes its budget.

Generators are seeded (``task.seed``) and deterministic for a given seed, and should return
by ``task.deadline`` (a ``time.monotonic()`` value; sampling loops check it). A generator that
raises or overruns is recorded as ``failed`` for that prediction and the query goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from cfdb.ctable.condition import Cond, evaluate
from cfdb.errors import CfdbNotFittedError
from cfdb.models import Model
from cfdb.registry import Registry
from cfdb.types import Columns, FeatureSpec


@dataclass(frozen=True)
class GenerationTask:
    """One request: CFs for one instance under one condition.

    Attributes:
        instance: the instance's raw feature values, by feature name.
        original_label: the model's label for the instance.
        target: the label a CF must get; ``None`` means any label other than the original.
        condition: the normalized condition every CF must satisfy.
        n: how many CFs to return at most.
        seed: the random seed for this task.
        deadline: ``time.monotonic()`` value to return by, or ``None``.
        distance: the distance to minimize (``l0``, ``l1`` or ``tabular``).
        params: generator-specific options from the statement's ``WITH``.
    """

    instance: dict[str, Any]
    original_label: str
    target: str | None
    condition: Cond
    n: int = 1
    seed: int = 0
    deadline: float | None = None
    distance: str = "tabular"
    params: dict[str, Any] = field(default_factory=dict)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


class Generator:
    """Base class of CF generators; see the module docstring for the contract.

    Subclasses set ``name`` and implement :meth:`_fit` (optional) and :meth:`generate`.
    """

    name = "generator"

    def __init__(self, **params: Any) -> None:
        self.params = params

    def fit(self, model: Model, features: list[FeatureSpec], pool: Columns | None = None) -> Self:
        """Prepare for ``model`` over ``features``; ``pool`` holds database instances.

        Returns:
            ``self``.
        """
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


def valid_mask(
    model: Model, features: list[FeatureSpec], task: GenerationTask, rows: Columns
) -> np.ndarray:
    """Which candidate rows are valid CFs for ``task``: the condition holds, immutable
    features keep the instance's values, and the model's label changes as required."""
    n = len(next(iter(rows.values()))) if rows else 0
    if n == 0:
        return np.zeros(0, dtype=bool)
    ok = evaluate(task.condition, rows, n)
    for f in features:
        if not f.mutable:
            values = np.asarray(rows[f.name])
            ok &= _equal(values, task.instance[f.name])
    if ok.any():
        labels = model.predict({k: np.asarray(v)[ok] for k, v in rows.items()})
        good = (
            labels.astype(str) != task.original_label
            if task.target is None
            else (labels.astype(str) == task.target)
        )
        idx = np.flatnonzero(ok)
        ok[idx[~good]] = False
    return ok


def _equal(values: np.ndarray, target: Any) -> np.ndarray:
    if values.dtype == object or isinstance(target, str):
        return np.array([v == target for v in values.tolist()], dtype=bool)
    return np.isclose(values.astype(float), float(target), rtol=0, atol=0)


def take(rows: Columns, index: np.ndarray) -> dict[str, np.ndarray]:
    """The rows of ``rows`` at ``index``."""
    return {k: np.asarray(v)[index] for k, v in rows.items()}
