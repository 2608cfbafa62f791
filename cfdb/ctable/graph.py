"""The implication graph over CFQL conditions (CFDB paper, sections 4.1–4.2).

Nodes are distinct conditions (identical canonical forms are merged before the graph is built:
the paper's pre-construction de-duplication); an edge ``a → b`` means ``a ⇒ b`` over the
features' domains, i.e. ``a ∧ ¬b`` is unsatisfiable. Two constructions give the same graph:

- ``naive``: every ordered pair goes to z3 (one incremental solver, push/pop);
- ``atoms``: the paper's Algorithm 1 made semantic and exact. Conditions are bucketed by the
  variables of their atoms; a satisfiable condition can only imply a non-valid one it shares
  a variable with (otherwise change the other condition's variables freely). Each remaining
  pair is first refuted cheaply when a *witness* — a sample point that satisfies ``a`` but not
  ``b`` — exists among points drawn from the atoms' own constants and the active domains
  (evaluated in bulk with numpy, bit-packed); then decided exactly without z3 when both sides
  are conjunctions of single-variable atoms (set inclusion and interval containment); only
  the rest goes to z3. Every step is exact, so the graph equals the naive one (tested).

Strongly connected components (equivalent conditions) are contracted into classes of the
condensation, which is ordered topologically, strongest conditions first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from cfdb.ctable.condition import (
    FALSE,
    TRUE,
    And,
    Cmp,
    Cond,
    Domains,
    Member,
    Not,
    Or,
    VarCmp,
    evaluate,
    is_simple_conjunction,
    variables,
)
from cfdb.ctable.solve import Solver
from cfdb.types import FeatureSpec

CONSTRUCTIONS = ("naive", "atoms")


@dataclass
class Graph:
    """An implication graph over ``nodes`` (indices into the caller's condition list).

    Attributes:
        edges: ``(i, j)`` pairs with ``cond[i] ⇒ cond[j]``, ``i != j``.
        solver_calls: z3 checks made.
        pairs_considered: ordered pairs examined at all.
        witness_refuted: pairs refuted by a sample point.
        exact_prechecks: pairs decided by set/interval containment.
        seconds: construction time.
    """

    n: int
    edges: set[tuple[int, int]] = field(default_factory=set)
    solver_calls: int = 0
    pairs_considered: int = 0
    witness_refuted: int = 0
    exact_prechecks: int = 0
    seconds: float = 0.0


def build(
    conditions: Sequence[Cond],
    features: Sequence[FeatureSpec],
    construction: str = "atoms",
    seed: int = 0,
) -> Graph:
    """The implication graph of normalized, satisfiable ``conditions``.

    Args:
        conditions: one per node; already normalized and de-duplicated.
        features: the feature space.
        construction: ``naive`` or ``atoms``.
        seed: for the witness sample points.
    """
    if construction not in CONSTRUCTIONS:
        raise ValueError(f"unknown construction {construction!r}")
    started = time.perf_counter()
    solver = Solver(features)
    terms: dict[int, Any] = {}
    graph = Graph(len(conditions))

    def implies(i: int, j: int) -> bool:
        a, b = conditions[i], conditions[j]
        for k, c in ((i, a), (j, b)):
            if k not in terms:
                terms[k] = solver.encode(c)
        return solver.implies_terms(terms[i], terms[j], variables(a) | variables(b))

    if construction == "naive":
        for i in range(graph.n):
            for j in range(graph.n):
                if i != j:
                    graph.pairs_considered += 1
                    if implies(i, j):
                        graph.edges.add((i, j))
    else:
        _atoms(conditions, features, graph, implies, seed, solver)
    graph.solver_calls = solver.calls
    graph.seconds = time.perf_counter() - started
    return graph


def _atoms(
    conditions: Sequence[Cond],
    features: Sequence[FeatureSpec],
    graph: Graph,
    implies: Any,
    seed: int,
    solver: Solver,
) -> None:
    domains = Domains(features)
    n = len(conditions)
    # A valid condition (true in every world, e.g. ``c <> d`` over disjoint domains) is
    # implied by everything; the variable buckets below rely on knowing which ones are.
    valid = [c == TRUE or not solver.satisfiable(Not(c)) for c in conditions]
    # Buckets: variable -> nodes whose condition mentions it (Algorithm 1's map B).
    buckets: dict[str, list[int]] = {}
    var_sets = [variables(c) for c in conditions]
    for i, vs in enumerate(var_sets):
        for v in vs:
            buckets.setdefault(v.lower(), []).append(i)
    sat = witnesses(conditions, features, seed)
    packed = np.packbits(sat, axis=1) if sat.size else np.zeros((n, 0), np.uint8)
    for i in range(n):
        # Candidates: nodes sharing a variable with i, plus valid conditions (TRUE).
        candidates: set[int] = set()
        for v in var_sets[i]:
            candidates.update(buckets[v.lower()])
        candidates.update(j for j in range(n) if valid[j])
        candidates.discard(i)
        if not candidates:
            continue
        cand = np.fromiter(sorted(candidates), dtype=np.int64)
        graph.pairs_considered += len(cand)
        # A sample point satisfying cond[i] but not cond[j] refutes i ⇒ j.
        refuted = (
            (packed[i][None, :] & ~packed[cand]).any(axis=1)
            if packed.shape[1]
            else (np.zeros(len(cand), dtype=bool))
        )
        graph.witness_refuted += int(refuted.sum())
        for j in cand[~refuted].tolist():
            if valid[j]:
                graph.edges.add((i, j))
                continue
            decided = simple_implies(conditions[i], conditions[j], domains)
            if decided is not None:
                graph.exact_prechecks += 1
                if decided:
                    graph.edges.add((i, j))
            elif implies(i, j):
                graph.edges.add((i, j))


# ---------------------------------------------------------------------------------------------
# Witness points
# ---------------------------------------------------------------------------------------------


def _constants(conditions: Sequence[Cond]) -> dict[str, set[float]]:
    out: dict[str, set[float]] = {}

    def walk(c: Cond) -> None:
        if isinstance(c, Cmp):
            out.setdefault(c.var, set()).add(c.value)
        elif isinstance(c, And | Or):
            for item in c.items:
                walk(item)

    for c in conditions:
        walk(c)
    return out


def witnesses(
    conditions: Sequence[Cond],
    features: Sequence[FeatureSpec],
    seed: int = 0,
    per_node: int = 6,
    shared: int = 256,
) -> np.ndarray:
    """A boolean matrix: does sample point ``p`` satisfy condition ``i``?

    The points mix values around every constant of every condition (each constant, ±1 and
    ±0.5 for numbers) and every domain value, drawn at random, plus points built from each
    condition's own atoms so that narrow conditions have satisfying points. Whether a point
    satisfies a condition is always evaluated, so the points only need to be diverse.
    """
    domains = Domains(features)
    rng = np.random.default_rng(seed)
    consts = _constants(conditions)
    pools: dict[str, list[Any]] = {}
    for f in features:
        if f.is_categorical:
            pools[f.name] = sorted(domains.domain(f.name)) or [""]
        else:
            values: set[float] = {0.0, -1e9, 1e9}
            for c in consts.get(f.name, ()):
                values.update((c, c - 1, c + 1, c - 0.5, c + 0.5))
            if f.type == "integer":
                values = {float(math.floor(v)) for v in values} | {
                    float(math.ceil(v)) for v in values
                }
            pools[f.name] = sorted(values)
    rows: list[dict[str, Any]] = []
    for _ in range(shared):
        rows.append({k: v[rng.integers(len(v))] for k, v in pools.items()})
    for cond in conditions:
        for _ in range(per_node):
            row = {k: v[rng.integers(len(v))] for k, v in pools.items()}
            _satisfy(cond, row, domains, rng)
            rows.append(row)
    if not rows or not features:
        return np.zeros((len(conditions), 0), dtype=bool)
    columns = {}
    for f in features:
        values = [r[f.name] for r in rows]
        if f.type == "boolean":
            columns[f.name] = np.array([v == "true" for v in values], dtype=bool)
        elif f.is_categorical:
            columns[f.name] = np.array(values, dtype=object)
        else:
            columns[f.name] = np.array(values, dtype=float)
    return (
        np.stack([evaluate(c, columns, len(rows)) for c in conditions])
        if conditions
        else (np.zeros((0, len(rows)), dtype=bool))
    )


def _satisfy(cond: Cond, row: dict[str, Any], domains: Domains, rng: np.random.Generator) -> None:
    """Move ``row`` towards satisfying ``cond`` (best effort: the caller evaluates)."""
    if isinstance(cond, Member):
        if cond.values:
            row[domains.spec(cond.var).name] = sorted(cond.values)[rng.integers(len(cond.values))]
    elif isinstance(cond, Cmp):
        name = domains.spec(cond.var).name
        step = 1.0 if domains.is_integer(cond.var) else 0.5
        row[name] = {
            "=": cond.value,
            "<>": cond.value + step,
            "<": cond.value - step,
            "<=": cond.value,
            ">": cond.value + step,
            ">=": cond.value,
        }[cond.op]
    elif isinstance(cond, And):
        for item in cond.items:
            _satisfy(item, row, domains, rng)
    elif isinstance(cond, Or) and cond.items:
        _satisfy(cond.items[rng.integers(len(cond.items))], row, domains, rng)
    elif isinstance(cond, VarCmp):
        pass  # left to chance: the row is evaluated anyway


# ---------------------------------------------------------------------------------------------
# Exact containment for conjunctions of single-variable atoms
# ---------------------------------------------------------------------------------------------


@dataclass
class _Range:
    lo: float = -math.inf
    lo_strict: bool = False
    hi: float = math.inf
    hi_strict: bool = False
    excluded: set[float] = field(default_factory=set)


def _ranges(cond: Cond) -> tuple[dict[str, frozenset[str]], dict[str, _Range]] | None:
    items = cond.items if isinstance(cond, And) else (cond,)
    sets: dict[str, frozenset[str]] = {}
    ranges: dict[str, _Range] = {}
    for item in items:
        if isinstance(item, Member):
            sets[item.var] = item.values
        elif isinstance(item, Cmp):
            r = ranges.setdefault(item.var, _Range())
            if item.op == "=":
                r.lo = r.hi = item.value
            elif item.op == "<>":
                r.excluded.add(item.value)
            elif item.op in (">", ">="):
                r.lo, r.lo_strict = item.value, item.op == ">"
            else:
                r.hi, r.hi_strict = item.value, item.op == "<"
        elif item != TRUE:
            return None
    return sets, ranges


def _tighten(r: _Range, integer: bool) -> _Range:
    # Excluded end points make the range open there (integers: move past them).
    out = _Range(r.lo, r.lo_strict, r.hi, r.hi_strict, set(r.excluded))
    if integer:
        while out.lo in out.excluded:
            out.lo += 1
        while out.hi in out.excluded:
            out.hi -= 1
    else:
        if out.lo in out.excluded:
            out.lo_strict = True
        if out.hi in out.excluded:
            out.hi_strict = True
    return out


def _inside(a: _Range, b: _Range) -> bool:
    """Every value of ``a`` is a value of ``b`` (both tightened)."""
    lower_ok = a.lo > b.lo or (a.lo == b.lo and (a.lo_strict or not b.lo_strict))
    upper_ok = a.hi < b.hi or (a.hi == b.hi and (a.hi_strict or not b.hi_strict))
    if not (lower_ok and upper_ok):
        return False
    for e in b.excluded:
        in_a = (e > a.lo or (e == a.lo and not a.lo_strict)) and (
            e < a.hi or (e == a.hi and not a.hi_strict)
        )
        if in_a and e not in a.excluded:
            return False
    return True


def simple_implies(a: Cond, b: Cond, domains: Domains) -> bool | None:
    """``a ⇒ b`` for satisfiable conjunctions of single-variable atoms (normalized);
    ``None`` when either side is of another shape."""
    if a == FALSE or b == TRUE:
        return True
    if not (is_simple_conjunction(a) and is_simple_conjunction(b)):
        return None
    pa, pb = _ranges(a), _ranges(b)
    if pa is None or pb is None:
        return None
    sets_a, ranges_a = pa
    sets_b, ranges_b = pb
    for var, values in sets_b.items():
        if not sets_a.get(var, domains.domain(var)) <= values:
            return False
    for var, rb in ranges_b.items():
        integer = domains.is_integer(var)
        ra = _tighten(ranges_a.get(var, _Range()), integer)
        if not _inside(ra, _tighten(rb, integer)):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Condensation
# ---------------------------------------------------------------------------------------------


@dataclass
class Condensation:
    """Equivalence classes and their DAG.

    Attributes:
        classes: the class of each node.
        order: class ids in topological order (a class before every class it implies).
        successors: class -> classes it implies (direct edges of the condensation).
    """

    classes: list[int]
    order: list[int]
    successors: dict[int, set[int]]


def condense(n: int, edges: set[tuple[int, int]]) -> Condensation:
    """Strongly connected components, the condensation's edges and a topological order."""
    if n == 0:
        return Condensation([], [], {})
    rows = [i for i, _ in edges]
    cols = [j for _, j in edges]
    matrix = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    count, labels = connected_components(matrix, directed=True, connection="strong")
    # Renumber classes by their first node so ids are stable and readable.
    first: dict[int, int] = {}
    for label in labels.tolist():
        first.setdefault(label, len(first))
    classes = [first[label] for label in labels.tolist()]
    successors: dict[int, set[int]] = {c: set() for c in range(count)}
    indegree = dict.fromkeys(range(count), 0)
    for i, j in edges:
        ci, cj = classes[i], classes[j]
        if ci != cj and cj not in successors[ci]:
            successors[ci].add(cj)
            indegree[cj] += 1
    ready = sorted(c for c, d in indegree.items() if d == 0)
    order = []
    while ready:
        c = ready.pop(0)
        order.append(c)
        for s in sorted(successors[c]):
            indegree[s] -= 1
            if indegree[s] == 0:
                ready.append(s)
        ready.sort()
    return Condensation(classes, order, successors)
