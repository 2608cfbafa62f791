"""Subset designs: which training subsets (rows of the grid) to measure, and how they pair up.

A design turns ``n`` units (indexed ``0..n-1``) into a :class:`Plan`: distinct subsets, and
*pairs* ``(unit, S, S ∪ {unit})`` whose value difference is the unit's marginal contribution
(the input of leave-one-out, Shapley, Beta Shapley and individualized scaling laws). Designs
are seeded: the same ``(n, arguments, seed)`` gives the same plan. They register in
:data:`DESIGNS`.

* ``exhaustive``: all ``2^n`` subsets and every pair; refused above ``max_units`` units.
* ``leave_one_out``: the full set and each unit removed.
* ``random``: ``m`` uniform subsets (each unit in with probability 1/2: the sampling of the
  maximum-sample-reuse Banzhaf estimator, Wang & Jia 2023), or ``m`` uniform subsets of each
  size in ``sizes``; with ``pairs``, each draw is a unit ``i`` (units taken in turn, in a
  seeded random order, so coverage is balanced) and a subset ``S`` of the other units (of
  each size in ``sizes``, else Bernoulli(1/2)), measured with and without ``i``.
* ``permutations``: ``m`` random permutations; every prefix is a subset and consecutive
  prefixes pair up (Monte-Carlo Shapley; with ``truncate``, TMC-Shapley, Ghorbani & Zou 2019,
  whose truncation happens while cells are trained).
* ``strikes``: the full set and, for each group of a column, the set without that group's
  units (a data strike); pairs are per group.

Subsets are stored compactly: explicit members, the complement of removed units, or the
prefix of a permutation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import comb
from typing import Any

import numpy as np

from cfdb.errors import CfdbDataError, CfdbUnsupportedError
from cfdb.registry import Registry

#: Default largest number of units for ``EXHAUSTIVE`` (2^14 = 16,384 subsets).
MAX_EXHAUSTIVE_UNITS = 14
#: The most ``max_units`` may raise that to (2^16 = 65,536 subsets, 524,288 pairs).
MAX_EXHAUSTIVE_LIMIT = 16
#: Largest number of training subsets (rows) of a grid, checked before planning.
MAX_GRID_SUBSETS = 1_000_000
#: Largest number of pairs (marginal contributions) of a grid, checked before planning.
MAX_GRID_PAIRS = 2_000_000


@dataclass(frozen=True)
class SubsetSpec:
    """One distinct training subset.

    Exactly one representation is set: ``units`` (explicit members), ``removed`` (every unit
    but these) or ``draw`` (the first ``size`` units of permutation ``draw``).
    """

    size: int
    role: str
    units: tuple[int, ...] | None = None
    removed: tuple[int, ...] | None = None
    draw: int | None = None
    tag: str | None = None


@dataclass(frozen=True)
class PairSpec:
    """A marginal contribution: ``subsets[with_]`` = ``subsets[without] ∪ {unit}``.

    ``kind`` is ``"unit"`` (``unit`` is a unit index) or ``"group"`` (``unit`` is a group
    name, ``with_`` the full set, as in a strike). ``draw`` and ``position`` place the pair
    in its sample or permutation.
    """

    kind: str
    unit: int | str
    without: int
    with_: int
    draw: int | None = None
    position: int | None = None


@dataclass
class DesignContext:
    """What a design knows: unit count, seed, grid options, groups of units (for strikes),
    and ``extra`` facts a design-specific preparer found in the data (target units, unit
    labels; see ``DESIGN_PREPARERS`` in the engine's grid handler)."""

    n_units: int
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, list[int]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """A design's output: distinct subsets, pairs, and permutations for prefix subsets."""

    n_units: int
    subsets: list[SubsetSpec] = field(default_factory=list)
    pairs: list[PairSpec] = field(default_factory=list)
    permutations: np.ndarray | None = None
    _index: dict[tuple[int, int, int], int] = field(default_factory=dict, repr=False)
    _zobrist: np.ndarray | None = field(default=None, repr=False)

    def _key(self, units: np.ndarray) -> tuple[int, int, int]:
        # Zobrist hashing: a subset's key is its size plus the XOR and the sum (mod 2^64) of
        # per-unit random words, so prefixes are keyed incrementally and duplicates merge.
        if self._zobrist is None:
            rng = np.random.default_rng(0x5EED)
            self._zobrist = rng.integers(0, 2**63, size=max(self.n_units, 1), dtype=np.uint64)
        words = self._zobrist[np.asarray(units, dtype=np.int64)]
        x = int(np.bitwise_xor.reduce(words)) if len(words) else 0
        s = int(np.sum(words, dtype=np.uint64)) if len(words) else 0
        return len(units), x, s

    def add(self, spec: SubsetSpec, units: np.ndarray | None = None) -> int:
        """Add ``spec`` (its members ``units`` if not explicit); returns its index."""
        members = units if units is not None else self.members(spec)
        key = self._key(members)
        found = self._index.get(key)
        if found is not None:
            return found
        self.subsets.append(spec)
        self._index[key] = len(self.subsets) - 1
        return len(self.subsets) - 1

    def members(self, spec: SubsetSpec) -> np.ndarray:
        """The sorted unit indices of ``spec``."""
        if spec.units is not None:
            return np.asarray(spec.units, dtype=np.int64)
        if spec.removed is not None:
            keep = np.ones(self.n_units, dtype=bool)
            keep[list(spec.removed)] = False
            return np.flatnonzero(keep)
        assert self.permutations is not None and spec.draw is not None
        return np.sort(self.permutations[spec.draw, : spec.size])


Design = Callable[[DesignContext, dict[str, Any]], Plan]

#: Subset designs by name.
DESIGNS: Registry[Design] = Registry("subset design", "cfdb.grid_designs")


def _full(plan: Plan) -> int:
    n = plan.n_units
    return plan.add(SubsetSpec(n, "full", removed=()), np.arange(n))


def exhaustive(ctx: DesignContext, args: dict[str, Any]) -> Plan:
    n = ctx.n_units
    limit = int(ctx.options.get("max_units", MAX_EXHAUSTIVE_UNITS))
    if n > limit:
        raise CfdbUnsupportedError(
            f"EXHAUSTIVE over {n} units needs 2^{n} = {2**n:,} subsets; the limit is "
            f"{limit} units (2^{limit} = {2**limit:,} subsets)",
            hint="use PERMUTATIONS m or RANDOM m, group rows with UNITS BY, or raise the "
            "limit with WITH (max_units = n)",
        )
    plan = Plan(n)
    index_of_mask = {}
    for mask in range(2**n):
        units = tuple(i for i in range(n) if mask >> i & 1)
        role = "full" if len(units) == n else ("empty" if not units else "exhaustive")
        index_of_mask[mask] = plan.add(SubsetSpec(len(units), role, units=units))
    for mask in range(2**n):
        for i in range(n):
            if not mask >> i & 1:
                plan.pairs.append(
                    PairSpec("unit", i, index_of_mask[mask], index_of_mask[mask | 1 << i])
                )
    return plan


def leave_one_out(ctx: DesignContext, args: dict[str, Any]) -> Plan:
    n = ctx.n_units
    plan = Plan(n)
    full = _full(plan)
    for i in range(n):
        without = plan.add(SubsetSpec(n - 1, "loo", removed=(i,), tag=str(i)))
        plan.pairs.append(PairSpec("unit", i, without, full))
    return plan


def _sizes(ctx: DesignContext, args: dict[str, Any], largest: int) -> list[int] | None:
    sizes = args.get("sizes")
    if sizes is None:
        return None
    too_big = [s for s in sizes if s > largest]
    if too_big:
        raise CfdbDataError(
            f"subset size {too_big[0]} is larger than the {largest} units available to it"
        )
    return [int(s) for s in sizes]


def random(ctx: DesignContext, args: dict[str, Any]) -> Plan:
    n, m = ctx.n_units, int(args["m"])
    rng = np.random.default_rng(ctx.seed)
    plan = Plan(n)
    if not args.get("pairs"):
        sizes = _sizes(ctx, args, n)
        if sizes is None:
            for _ in range(m):
                units = np.flatnonzero(rng.random(n) < 0.5)
                plan.add(SubsetSpec(len(units), "sample", units=tuple(units.tolist())), units)
        else:
            for size in sizes:
                for _ in range(m):
                    units = np.sort(rng.choice(n, size=size, replace=False))
                    plan.add(SubsetSpec(size, "sample", units=tuple(units.tolist())), units)
        return plan
    if n < 1:
        raise CfdbDataError("RANDOM ... PAIRS needs at least one unit")
    sizes = _sizes(ctx, args, n - 1)
    order = rng.permutation(n)
    draw = 0
    for size in sizes if sizes is not None else [None]:
        for _ in range(m):
            unit = int(order[draw % n])
            others = np.delete(np.arange(n), unit)
            if size is None:
                chosen = others[rng.random(n - 1) < 0.5]
            else:
                chosen = rng.choice(others, size=size, replace=False)
            without_units = np.sort(chosen)
            with_units = np.sort(np.append(chosen, unit))
            without = plan.add(
                SubsetSpec(len(without_units), "pair", units=tuple(without_units.tolist())),
                without_units,
            )
            with_ = plan.add(
                SubsetSpec(len(with_units), "pair", units=tuple(with_units.tolist())), with_units
            )
            plan.pairs.append(PairSpec("unit", unit, without, with_, draw, len(without_units)))
            draw += 1
    return plan


def permutations(ctx: DesignContext, args: dict[str, Any]) -> Plan:
    n, m = ctx.n_units, int(args["m"])
    rng = np.random.default_rng(ctx.seed)
    plan = Plan(n)
    plan.permutations = np.stack([rng.permutation(n) for _ in range(m)]) if m else None
    if plan.permutations is None:
        return plan
    empty = plan.add(SubsetSpec(0, "empty", units=()))
    full = _full(plan)
    for d in range(m):
        perm = plan.permutations[d]
        previous = empty
        for k in range(n):
            if k + 1 == n:
                current = full
            else:
                spec = SubsetSpec(k + 1, "prefix", draw=d)
                current = plan.add(spec, perm[: k + 1])
            plan.pairs.append(PairSpec("unit", int(perm[k]), previous, current, d, k))
            previous = current
    return plan


def strikes(ctx: DesignContext, args: dict[str, Any]) -> Plan:
    n = ctx.n_units
    if not ctx.groups:
        raise CfdbDataError(f"STRIKES BY {args.get('by')} found no groups")
    plan = Plan(n)
    full = _full(plan)
    for tag, removed in sorted(ctx.groups.items()):
        units = tuple(sorted(set(removed)))
        spec = SubsetSpec(n - len(units), "strike", removed=units, tag=tag)
        without = plan.add(spec)
        plan.pairs.append(PairSpec("group", tag, without, full))
    return plan


def expected_subsets(design: str, n: int, args: dict[str, Any]) -> int | None:
    """An upper bound on the number of subsets a design makes (for messages); None if unknown."""
    if design == "exhaustive":
        return 2**n
    if design == "leave_one_out":
        return n + 1
    if design == "permutations":
        return int(args["m"]) * max(n - 1, 0) + 2
    if design == "random":
        per = len(args.get("sizes") or [None]) * int(args["m"])
        return per * (2 if args.get("pairs") else 1)
    if design == "marginal":
        return 2 * int(args["m"]) * len(args.get("sizes") or [None]) * n
    if design == "strikes":
        return n + 1
    return None


def expected_pairs(design: str, n: int, args: dict[str, Any]) -> int | None:
    """An upper bound on the number of pairs a design makes; None if unknown."""
    if design == "exhaustive":
        return n * 2 ** max(n - 1, 0)
    if design == "permutations":
        return int(args["m"]) * n
    subsets = expected_subsets(design, n, args)
    return None if subsets is None else subsets // 2 + n


def check_size(design: str, n: int, args: dict[str, Any]) -> None:
    """Refuse, before any planning, a design whose plan would exceed the grid limits.

    Raises:
        CfdbUnsupportedError: more than :data:`MAX_GRID_SUBSETS` subsets or
            :data:`MAX_GRID_PAIRS` pairs, with the size asked for.
    """
    if design == "exhaustive":
        return  # bounded by max_units (checked by the design, capped by its option spec)
    subsets, pairs = expected_subsets(design, n, args), expected_pairs(design, n, args)
    if subsets is not None and subsets > MAX_GRID_SUBSETS:
        raise CfdbUnsupportedError(
            f"this {design} design over {n} units would make up to {subsets:,} training "
            f"subsets; the limit is {MAX_GRID_SUBSETS:,}",
            hint="ask for fewer draws, or group rows with UNITS BY",
        )
    if pairs is not None and pairs > MAX_GRID_PAIRS:
        raise CfdbUnsupportedError(
            f"this {design} design over {n} units would make up to {pairs:,} marginal "
            f"contributions; the limit is {MAX_GRID_PAIRS:,}",
            hint="ask for fewer draws, or group rows with UNITS BY",
        )


def shapley_weight(n: int, s: int) -> float:
    """Shapley weight of one coalition of size ``s`` (without the unit) among ``n`` units."""
    return 1.0 / (n * comb(n - 1, s))


DESIGNS.register("exhaustive", exhaustive)
DESIGNS.register("leave_one_out", leave_one_out)
DESIGNS.register("random", random)
DESIGNS.register("permutations", permutations)
DESIGNS.register("strikes", strikes)
