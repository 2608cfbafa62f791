"""The ``random`` generator: DiCE-style random sampling of diverse CFs (Mothilal, Sharma and Tan,
"Explaining Machine Learning Classifiers through Diverse Counterfactual Explanations", FAT*
2020; the ``random`` method of the dice_ml package), with CFQL conditions as a filter.

Sampling proceeds in batches of ``n_samples`` copies of the instance. In batch ``i`` each copy
gets ``k = 1 + (i mod K)`` of its ``K`` mutable features, chosen at random, set to random
values: a categorical from its domain, a boolean at random, a numeric uniform in the feature's
observed ``[min, max]`` (widened by ``margin · (max - min)``), an integer uniform among the
integers of that range. So the first batches change one feature, the next two, and so on, as
dice_ml grows the number of varied features; after ``K`` batches the cycle restarts with fresh
values. Valid samples (condition, immutables, label as required) are kept; sampling stops
when ``candidates_per_cf · n`` distinct valid samples were found, after ``max_iter`` batches,
or at ``task.deadline``. Values the condition forces (top-level conjuncts ``f = c``) are pinned
in every sample, since a random draw would rarely or never hit them.

Choice of the ``n`` CFs (dice_ml picks them at random and then runs a post-hoc sparsity
pass; we keep its sparsity step and make the choice deterministic and diverse):

1. *Sparsity.* Every valid sample puts its changed features back to the instance's values,
   smallest move first, whenever it stays valid
   (:func:`~cfdb.generators.sampling.sparsify`); duplicates are then dropped.
2. *Diversity.* Greedy max-min: the valid sample closest to the instance first, then
   repeatedly the one whose smallest distance (``task.distance``) to those already chosen is
   largest (ties: the one closer to the instance). The chosen CFs are pairwise distinct.

The result is sorted by distance to the instance. With a regressor, a sample is valid when
the model's output moves from the instance's by ``min_change`` in the task's direction
(:func:`~cfdb.generators.base.valid_mask`). Parameters (``WITH``): ``n_samples``
(default 1000, dice_ml's ``sample_size``), ``max_iter`` (50), ``candidates_per_cf`` (10), ``margin`` (0.0), ``sparse``
(true). Sampling is seeded by ``task.seed``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cfdb.errors import CfdbDataError
from cfdb.generators.base import GENERATORS, GenerationTask, Generator, take, valid_mask
from cfdb.generators.distance import distance
from cfdb.generators.sampling import (
    box,
    concat,
    empty_columns,
    forced_values,
    instance_row,
    n_rows,
    pin,
    positive,
    repeat_instance,
    resolve_params,
    scale,
    sparsify,
    unique_index,
)
from cfdb.types import Columns, FeatureSpec


@GENERATORS.decorator("random")
class RandomSampling(Generator):
    """DiCE-style random sampling with a diverse, sparse choice (see the module docstring)."""

    name = "random"
    #: Whether the engine must pass a pool of instances to ``fit``.
    uses_pool = False
    supports_regression = True
    #: Parameters and their defaults.
    defaults: dict[str, Any] = {
        "n_samples": 1000,
        "max_iter": 50,
        "candidates_per_cf": 10,
        "margin": 0.0,
        "sparse": True,
    }

    def _fit(self) -> None:
        self._options(self.params)
        self.mutable_ = [
            f for f in self.features_ if f.mutable and (not f.is_categorical or _values(f))
        ]

    def _options(self, *given: dict[str, Any]) -> dict[str, Any]:
        p = resolve_params(self.name, self.defaults, *given)
        positive(self.name, p, "n_samples", "max_iter", "candidates_per_cf")
        if p["margin"] < 0:
            raise CfdbDataError(f"parameter 'margin' of generator {self.name!r} must be >= 0")
        return p

    def generate(self, task: GenerationTask) -> Columns:
        """Up to ``task.n`` valid, pairwise distinct CFs, closest first."""
        self.check_fitted()
        p = self._options(self.params, task.params)
        x = instance_row(self.features_, task)
        if task.n <= 0 or not self.mutable_:
            return empty_columns(self.features_)
        rng = task.rng()
        wanted = p["candidates_per_cf"] * task.n
        forced = forced_values(task.condition, self.features_)
        found: list[dict[str, np.ndarray]] = []
        count = 0
        for i in range(p["max_iter"]):
            if task.expired():
                break
            k = 1 + i % len(self.mutable_)
            rows = pin(self._batch(x, k, p, rng), forced)
            ok = valid_mask(self.model_, self.features_, task, rows)
            if ok.any():
                found.append(take(rows, np.flatnonzero(ok)))
                count += int(ok.sum())
                if count >= wanted:
                    found = [_distinct(concat(found, self.features_), self.features_)]
                    count = n_rows(found[0])
                    if count >= wanted:
                        break
        if not found:
            return empty_columns(self.features_)
        rows = _distinct(concat(found, self.features_), self.features_)
        if p["sparse"]:
            rows = sparsify(self.model_, self.features_, task, x, rows)
            keep = valid_mask(self.model_, self.features_, task, rows)
            rows = _distinct(take(rows, np.flatnonzero(keep)), self.features_)
        return self._diverse(task, x, rows)

    def _batch(
        self, x: dict[str, Any], k: int, p: dict[str, Any], rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """``n_samples`` copies of ``x``, each with ``k`` random mutable features resampled."""
        m = p["n_samples"]
        rows = repeat_instance(self.features_, x, m)
        # A random k-subset per row: the k smallest of a row of uniform keys.
        keys = rng.random((m, len(self.mutable_)))
        chosen = np.argsort(keys, axis=1)[:, :k]
        mask = np.zeros(keys.shape, dtype=bool)
        np.put_along_axis(mask, chosen, True, axis=1)
        for j, f in enumerate(self.mutable_):
            # Draw a full column for every feature so the stream does not depend on the mask.
            values = _draw(f, x[f.name], m, p["margin"], rng)
            rows[f.name] = np.where(mask[:, j], values, rows[f.name])
            if f.type == "categorical":
                rows[f.name] = rows[f.name].astype(object)
        return rows

    def _diverse(self, task: GenerationTask, x: dict[str, Any], rows: Columns) -> Columns:
        """Greedy max-min choice of ``task.n`` rows, then sorted by distance to ``x``."""
        m = n_rows(rows)
        if m == 0:
            return empty_columns(self.features_)
        d = distance(task.distance, x, rows, self.features_)
        # Candidates in order of distance to the instance, so argmax ties favour closer ones.
        order = np.lexsort((np.arange(m), d))
        rows, d = take(rows, order), d[order]
        chosen = [0]
        gap = np.full(m, np.inf)
        while len(chosen) < min(task.n, m) and not task.expired():
            last = {name: np.asarray(col)[chosen[-1]] for name, col in rows.items()}
            gap = np.minimum(gap, distance(task.distance, last, rows, self.features_))
            gap[chosen] = -np.inf
            best = int(np.argmax(gap))
            if gap[best] <= 0:
                break  # only duplicates left (cannot happen after de-duplication)
            chosen.append(best)
        return take(rows, np.sort(np.array(chosen)))


def _values(f: FeatureSpec) -> list[str]:
    return ["false", "true"] if f.type == "boolean" else list(f.domain or ())


def _draw(f: FeatureSpec, x: Any, m: int, margin: float, rng: np.random.Generator) -> np.ndarray:
    """``m`` random values of feature ``f`` in its raw representation."""
    if f.type == "boolean":
        return rng.random(m) < 0.5
    if f.type == "categorical":
        return np.array(_values(f), dtype=object)[rng.integers(0, len(_values(f)), m)]
    lo, hi = box(f, x, margin)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        # Unknown bounds: three MADs around the instance.
        lo, hi = float(x) - 3 * scale(f), float(x) + 3 * scale(f)
    if f.type == "integer":
        return rng.integers(int(np.floor(lo)), int(np.ceil(hi)) + 1, m).astype(np.int64)
    return rng.uniform(lo, hi, m)


def _distinct(rows: Columns, features: list[FeatureSpec]) -> dict[str, np.ndarray]:
    return take(rows, unique_index(rows, features))
