"""The ``MARGINAL`` subset design: marginal contributions of target units over dataset sizes.

The input of individualized data scaling laws (Covert, Ji, Hashimoto & Zou, ICML 2024,
sections 3 and 5): for each target unit ``z``, datasets ``D`` of size ``k`` drawn from the
other units, each measured with and without ``z``. Every draw is a pair of grid rows
``(D, D ∪ {z})``, so the grid's executors train them, cells are committed as they finish and
an interrupted run resumes with only the missing cells. ::

    SUBSETS MARGINAL m SIZES BETWEEN a AND b [GEOMETRIC s] [FOR (units query)]
        [BALANCED | STRATIFIED] [SHARED]
    SUBSETS MARGINAL m SIZES (k, ...) [FOR (units query)] [BALANCED | STRATIFIED] [SHARED]

* ``SIZES BETWEEN a AND b``: each of the ``m`` draws per unit has its own size, uniform on
  the integers ``a..b`` (the maximum-likelihood estimator's input: one sample per size is
  enough). Cost: ``2·m`` cells per target unit.
* ``GEOMETRIC s``: instead, the ``s`` sizes ``round(geomspace(a, b, s))`` with ``m`` draws
  at each (the paper's validation setting: a mean at each size). ``SIZES (k, ...)`` lists the
  sizes. Cost: ``2·m·s`` cells per target unit.
* ``FOR (query)``: the target units (default: every unit); the query returns their ids.
* ``BALANCED``: each ``D`` has the same number of units of each class (the remainder of
  ``k / classes`` goes to classes chosen at random); units must have one label each.
* ``STRATIFIED``: each ``D`` has the classes in the shares of the pool it is drawn from
  (``round(share · k)`` of each, the rounding's remainder to the largest class), as the
  paper's own sampler does; it removes the draw-to-draw variation of ``D``'s class mix, the
  largest part of the noise of a contribution at small ``k``. Excludes ``BALANCED``.
* ``SHARED``: one ``D`` per draw, drawn from the units that are not targets, serves every
  target: ``m·(targets + 1)`` cells per size instead of ``2·m·targets``. The draws of
  different units are then correlated, which leaves each unit's estimate unbiased; ``D`` is
  drawn from the non-target units instead of from every unit but ``z``.

Draws are seeded per target unit (``(seed, unit)``), so a unit's samples do not depend on
which other units are targets. Pairs carry ``Draw`` (the draw's number for its unit) and
``Position`` (= ``k``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cfdb.errors import CfdbDataError
from cfdb.grid.designs import DESIGNS, DesignContext, PairSpec, Plan, SubsetSpec


def sizes_of(args: dict[str, Any]) -> list[int] | None:
    """The fixed sizes of a ``MARGINAL`` design, or None when sizes are drawn uniformly."""
    if args.get("sizes") is not None:
        return sorted({int(s) for s in args["sizes"]})
    if args.get("geometric"):
        points = np.geomspace(float(args["low"]), float(args["high"]), int(args["geometric"]))
        return sorted({round(float(x)) for x in points})
    return None


def _draw(
    rng: np.random.Generator,
    pool: np.ndarray,
    k: int,
    labels: np.ndarray | None,
    strata: list[np.ndarray] | None,
    stratified: bool = False,
) -> np.ndarray:
    """``k`` units of ``pool``; class-balanced, or in the pool's class shares, with ``strata``."""
    if strata is None:
        return np.sort(rng.choice(pool, size=k, replace=False))
    n_classes = len(strata)
    if stratified:
        quota = proportional_quota(np.array([len(s) for s in strata]), k)
    else:
        quota = np.full(n_classes, k // n_classes)
        quota[rng.choice(n_classes, size=k % n_classes, replace=False)] += 1
    parts = [rng.choice(s, size=q, replace=False) for s, q in zip(strata, quota, strict=True)]
    return np.sort(np.concatenate(parts))


def proportional_quota(counts: np.ndarray, k: int) -> np.ndarray:
    """Units of each class in a stratified ``D`` of size ``k``: ``round(share · k)``, the
    remainder (positive or negative) to the largest class."""
    quota = np.round(counts / counts.sum() * k).astype(np.int64)
    quota[int(np.argmax(counts))] += k - int(quota.sum())
    return quota


def _strata(
    pool: np.ndarray,
    labels: np.ndarray | None,
    balanced: bool,
    largest: int,
    stratified: bool = False,
) -> list[np.ndarray] | None:
    """The pool split by class (None without ``BALANCED``/``STRATIFIED``), checked against the
    largest size."""
    if not (balanced or stratified):
        if largest > len(pool):
            raise CfdbDataError(
                f"subset size {largest} is larger than the {len(pool)} units available to it"
            )
        return None
    assert labels is not None
    classes = np.unique(labels)
    strata = [pool[labels[pool] == c] for c in classes]
    if stratified:
        if largest > len(pool):
            raise CfdbDataError(
                f"subset size {largest} is larger than the {len(pool)} units available to it"
            )
        return strata  # the quota of a class never exceeds its size (shares of this pool)
    need = -(-largest // len(classes))
    small = min(len(s) for s in strata)
    if need > small:
        raise CfdbDataError(
            f"a class-balanced subset of size {largest} needs {need} units of each of "
            f"{len(classes)} classes; the smallest class has {small}"
        )
    return strata


def marginal(ctx: DesignContext, args: dict[str, Any]) -> Plan:
    """The ``MARGINAL`` design (see the module docstring)."""
    n, m = ctx.n_units, int(args["m"])
    targets = np.asarray(ctx.extra.get("targets", range(n)), dtype=np.int64)
    labels = ctx.extra.get("labels")
    balanced, stratified = bool(args.get("balanced")), bool(args.get("stratified"))
    if balanced and stratified:
        raise CfdbDataError("BALANCED and STRATIFIED exclude each other")
    if (balanced or stratified) and labels is None:
        word = "BALANCED" if balanced else "STRATIFIED"
        raise CfdbDataError(f"{word} needs a label for every unit")
    labels = None if labels is None else np.asarray(labels)
    fixed = sizes_of(args)
    low, high = (min(fixed), max(fixed)) if fixed else (int(args["low"]), int(args["high"]))
    if low < 0 or high < low:
        raise CfdbDataError(f"SIZES BETWEEN {low} AND {high} is an empty range")
    if len(targets) == 0:
        raise CfdbDataError("MARGINAL has no target units")
    plan = Plan(n)
    if args.get("shared"):
        _shared(plan, ctx, targets, m, fixed, (low, high), labels, balanced, stratified)
        return plan
    everyone = np.arange(n)
    for unit in targets.tolist():
        rng = np.random.default_rng([ctx.seed, unit])
        pool = np.delete(everyone, unit)
        strata = _strata(pool, labels, balanced, high, stratified)
        sizes = fixed if fixed else rng.integers(low, high + 1, size=m).tolist()
        draw = 0
        for size in sizes:
            for _ in range(m if fixed else 1):
                d = _draw(rng, pool, int(size), labels, strata, stratified)
                _pair(plan, unit, d, draw)
                draw += 1
    return plan


def _shared(
    plan: Plan,
    ctx: DesignContext,
    targets: np.ndarray,
    m: int,
    fixed: list[int] | None,
    bounds: tuple[int, int],
    labels: np.ndarray | None,
    balanced: bool,
    stratified: bool = False,
) -> None:
    rng = np.random.default_rng([ctx.seed, ctx.n_units])
    is_target = np.zeros(ctx.n_units, dtype=bool)
    is_target[targets] = True
    pool = np.flatnonzero(~is_target)
    strata = _strata(pool, labels, balanced, bounds[1], stratified)
    sizes = fixed if fixed else rng.integers(bounds[0], bounds[1] + 1, size=m).tolist()
    draw = 0
    for size in sizes:
        for _ in range(m if fixed else 1):
            base = _draw(rng, pool, int(size), labels, strata, stratified)
            for unit in targets.tolist():
                _pair(plan, unit, base, draw)
            draw += 1


def _pair(plan: Plan, unit: int, base: np.ndarray, draw: int) -> None:
    without = plan.add(SubsetSpec(len(base), "pair", units=tuple(base.tolist())), base)
    joined = np.sort(np.append(base, unit))
    with_ = plan.add(SubsetSpec(len(joined), "pair", units=tuple(joined.tolist())), joined)
    plan.pairs.append(PairSpec("unit", unit, without, with_, draw, len(base)))


DESIGNS.register("marginal", marginal)
