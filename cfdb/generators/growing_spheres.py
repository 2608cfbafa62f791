"""The ``growing_spheres`` generator: Laugel, Lesot, Marsala, Renard and Detyniecki, "Comparison-
Based Inverse Classification for Interpretability in Machine Learning" (IPMU 2018), adapted to
mixed tabular data and to CFQL conditions as the CFDB paper (section 5.1) did.

The search space is the instance's mutable numeric and integer features, each scaled by its
MAD, so that a unit of radius is one MAD on every axis. Around the instance:

1. *Shrink.* Sample ``n_samples`` points uniformly in the ball of radius ``first_radius``; while
   the ball brings valid CFs closer than those found so far, divide the radius by
   ``decrease_radius`` (down to a floor of ``first_radius / 1000``).
2. *Grow.* From the largest radius ``r`` whose ball held none, sample spherical layers
   ``[low, low + step]`` with ``step = (decrease_radius - 1) · r / 5`` (Laugel's schedule)
   until ``n`` distinct valid CFs have been seen. Unlike Laugel's linear growth, a layer that
   brings no new valid CF doubles the next layer's width (a found one resets it), so that a
   search that shrank to a tiny radius does not crawl outwards.
3. *Feature selection.* Each of the closest valid samples puts its changed features back to the
   instance's values, smallest move first, whenever it stays valid
   (:func:`~cfdb.generators.sampling.sparsify`), so the CFs are sparse.

Adaptations:

- *Categorical and boolean features.* In a layer of outer radius ``r`` each mutable categorical
  feature is resampled with probability ``1 - exp(-r / categorical_scale)``, to a value of its
  domain other than the instance's, drawn uniformly (a boolean is flipped). Far layers thus
  change more categories, as moving one category costs as much as one MAD in L1.
- *Integer snapping and bounds.* Every sample is clipped to the feature's observed
  ``[min, max]`` widened by ``margin · (max - min)`` on each side (and always containing the
  instance's value), then integer features are rounded. The search stops once a layer lies
  wholly outside that box (every further sample would be clipped onto it) and, with
  categorical features, categories change almost surely (radius ``5 · categorical_scale``).
- *Conditions and immutables.* Immutable features keep the instance's values; samples that
  violate the condition are discarded before the model is asked (the condition is a filter,
  so a condition far from the instance may leave the generator empty-handed). Values the
  condition forces (top-level conjuncts ``f = c``) are pinned in every sample, since a random
  draw would rarely or never hit them.
- *Regressors.* A sample is an "enemy" when the model's output moves from the instance's by
  ``min_change`` in the task's direction (:func:`~cfdb.generators.base.valid_mask`); nothing
  else changes.
- *Budget.* At most ``max_iter`` layers are sampled; ``task.deadline`` is checked between
  layers and between feature-selection rounds, returning what was found so far.

Parameters (``WITH``): ``n_samples`` (points per layer, default 200), ``first_radius`` (2.0),
``decrease_radius`` (the divisor of the shrink phase, > 1; default 2.0, i.e. the CFDB paper's
reduction factor 0.5), ``max_iter`` (100), ``categorical_scale`` (2.0), ``margin`` (0.0),
``sparse`` (true: run the feature-selection step). Sampling is seeded by ``task.seed``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cfdb.errors import CfdbDataError
from cfdb.generators.base import GENERATORS, GenerationTask, Generator, take, valid_mask
from cfdb.generators.distance import distance
from cfdb.generators.sampling import (
    box,
    closest,
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
)
from cfdb.types import Columns


@GENERATORS.decorator("growing_spheres")
class GrowingSpheres(Generator):
    """Growing-spheres sampling around the instance (see the module docstring)."""

    name = "growing_spheres"
    #: Whether the engine must pass a pool of instances to ``fit``.
    uses_pool = False
    supports_regression = True
    #: Parameters and their defaults.
    defaults: dict[str, Any] = {
        "n_samples": 200,
        "first_radius": 2.0,
        "decrease_radius": 2.0,
        "max_iter": 100,
        "categorical_scale": 2.0,
        "margin": 0.0,
        "sparse": True,
    }

    def _fit(self) -> None:
        self._options(self.params)
        self.numeric_ = [f for f in self.features_ if f.mutable and not f.is_categorical]
        self.categorical_ = [
            f for f in self.features_ if f.mutable and f.is_categorical and _domain_size(f) > 1
        ]

    def _options(self, *given: dict[str, Any]) -> dict[str, Any]:
        p = resolve_params(self.name, self.defaults, *given)
        positive(self.name, p, "n_samples", "first_radius", "max_iter", "categorical_scale")
        if p["decrease_radius"] <= 1:
            raise CfdbDataError(
                f"parameter 'decrease_radius' of generator {self.name!r} must be > 1"
            )
        if p["margin"] < 0:
            raise CfdbDataError(f"parameter 'margin' of generator {self.name!r} must be >= 0")
        return p

    def generate(self, task: GenerationTask) -> Columns:
        """Up to ``task.n`` valid CFs, closest first."""
        self.check_fitted()
        p = self._options(self.params, task.params)
        x = instance_row(self.features_, task)
        if task.n <= 0:
            return empty_columns(self.features_)
        rng = task.rng()
        forced = forced_values(task.condition, self.features_)
        sampler = _Sampler(self, x, p, rng, forced)
        # The closest distinct valid CFs so far; a few more than n are sparsified, as two
        # candidates may collapse onto the same CF.
        keep = 4 * task.n
        found: list[dict[str, np.ndarray]] = []
        distinct, total = 0, 0.0

        def layer(low: float, high: float) -> bool:
            """Sample one layer; whether it improved the closest CFs kept so far."""
            nonlocal found, distinct, total
            rows = pin(sampler.layer(low, high), forced)
            ok = valid_mask(self.model_, self.features_, task, rows)
            if not ok.any():
                return False
            rows = concat([*found, take(rows, np.flatnonzero(ok))], self.features_)
            # Only the closest few matter in the end: keep the work per layer bounded.
            found = [closest(self.model_, self.features_, task, x, rows, keep)]
            before = (distinct, total)
            distinct = n_rows(found[0])
            total = float(distance(task.distance, x, found[0], self.features_).sum())
            return distinct > before[0] or total < before[1]

        iterations = 1
        radius = p["first_radius"]
        hits = layer(0.0, radius)
        # Shrink while the ball brings closer enemies; `radius` ends as the largest ball that
        # did not. (Laugel shrinks while the ball holds any enemy; with categorical changes
        # that are rare but never impossible near the centre, that would reach the floor.)
        floor = p["first_radius"] * _SHRINK_FLOOR
        while hits and radius > floor and iterations < p["max_iter"] and not task.expired():
            radius /= p["decrease_radius"]
            hits = layer(0.0, radius)
            iterations += 1
        base = step = (p["decrease_radius"] - 1) * radius / 5
        low = radius
        while (
            distinct < task.n
            and iterations < p["max_iter"]
            and low <= sampler.limit
            and not task.expired()
        ):
            better = layer(low, low + step)
            low += step
            # Widen the layers while they bring no new CF, so that the search never crawls.
            step = base if better else 2 * step
            iterations += 1
        if not found:
            return empty_columns(self.features_)
        rows = found[0]
        if p["sparse"]:
            rows = sparsify(self.model_, self.features_, task, x, rows)
            # A sparsification cut short by the deadline leaves only valid rows anyway.
            rows = take(rows, np.flatnonzero(valid_mask(self.model_, self.features_, task, rows)))
        return closest(self.model_, self.features_, task, x, rows, task.n)


#: The shrink phase stops at this fraction of ``first_radius``.
_SHRINK_FLOOR = 1e-3


def _domain_size(f: Any) -> int:
    return 2 if f.type == "boolean" else len(f.domain or ())


class _Sampler:
    """Draws layers around one instance for one task (raw columns out)."""

    def __init__(
        self,
        gen: GrowingSpheres,
        x: dict[str, Any],
        p: dict[str, Any],
        rng: np.random.Generator,
        forced: dict[str, Any],
    ) -> None:
        self.gen, self.x, self.p, self.rng = gen, x, p, rng
        self.m = p["n_samples"]
        # Pinned features are no search dimension.
        self.numeric = num = [f for f in gen.numeric_ if f.name not in forced]
        self.categorical = [f for f in gen.categorical_ if f.name not in forced]
        self.center = np.array([float(x[f.name]) for f in num])
        self.mads = np.array([scale(f) for f in num])
        bounds = [box(f, x[f.name], p["margin"]) for f in num]
        self.lo = np.array([b[0] for b in bounds])
        self.hi = np.array([b[1] for b in bounds])
        # The farthest point of the box from the instance, in MAD units: layers beyond it
        # would only be clipped back onto the box.
        far = np.maximum(self.center - self.lo, self.hi - self.center) / self.mads
        self.diameter = float(np.sqrt(np.sum(far**2))) if len(far) else 0.0
        if not math.isfinite(self.diameter):
            self.diameter = math.inf
        # Growth stops past the box, or once categories change almost surely (p > 0.99).
        self.limit = max(self.diameter, 5 * p["categorical_scale"] if self.categorical else 0.0)
        self.domains = {
            f.name: (["false", "true"] if f.type == "boolean" else list(f.domain or ()))
            for f in self.categorical
        }

    def layer(self, low: float, high: float) -> dict[str, np.ndarray]:
        """``n_samples`` points uniform in the spherical layer ``low <= |z| <= high``."""
        gen, m, rng = self.gen, self.m, self.rng
        rows = repeat_instance(gen.features_, self.x, m)
        d = len(self.numeric)
        if d:
            z = rng.normal(size=(m, d))
            z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-300)
            # Uniform in volume between the radii: r^d uniform in [low^d, high^d], computed
            # as a ratio so that high^d cannot overflow.
            u = rng.random(m)
            ratio = (low / high) ** d if high > 0 else 0.0
            r = high * (u + (1 - u) * ratio) ** (1.0 / d)
            values = np.clip(self.center + z * r[:, None] * self.mads, self.lo, self.hi)
            for j, f in enumerate(self.numeric):
                col = values[:, j]
                rows[f.name] = np.rint(col).astype(np.int64) if f.type == "integer" else col
        p_change = 1.0 - math.exp(-high / self.p["categorical_scale"])
        for f in self.categorical:
            flip = rng.random(m) < p_change
            domain = self.domains[f.name]
            if f.type == "boolean":
                rows[f.name] = np.where(flip, ~rows[f.name], rows[f.name])
                continue
            current = str(self.x[f.name])
            if current in domain:
                # Another value than the instance's: index i >= here maps to i + 1.
                here = domain.index(current)
                pick = rng.integers(0, len(domain) - 1, m)
                pick = np.where(pick >= here, pick + 1, pick)
            else:
                pick = rng.integers(0, len(domain), m)
            new = np.array(domain, dtype=object)[pick]
            rows[f.name] = np.where(flip, new, rows[f.name]).astype(object)
        return rows
