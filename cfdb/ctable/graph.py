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

import bisect
import heapq
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
    normalize,
    variables,
)
from cfdb.ctable.shapes import decide_blocks
from cfdb.ctable.solve import Solver
from cfdb.types import FeatureSpec

CONSTRUCTIONS = ("naive", "atoms")
# Bulk decisions keep two n × n boolean matrices: 2 × 400 MB at this size.
_SYMBOLIC_MAX_NODES = 20_000


@dataclass
class Graph:
    """An implication graph over ``nodes`` (indices into the caller's condition list).

    Attributes:
        edges: ``(i, j)`` pairs with ``cond[i] ⇒ cond[j]``, ``i != j``.
        solver_calls: z3 checks made.
        pairs_considered: ordered pairs examined at all.
        witness_refuted: pairs refuted by a sample point.
        exact_prechecks: pairs decided by set/interval containment or structure.
        transitive: edges inferred by transitivity.
        symbolic: pairs decided in bulk per pair of condition shapes (see ``shapes``).
        eliminations: z3 quantifier eliminations run for those (one per pair of shapes).
        seconds: construction time.
    """

    n: int
    _edges: set[tuple[int, int]] = field(default_factory=set)
    solver_calls: int = 0
    pairs_considered: int = 0
    witness_refuted: int = 0
    exact_prechecks: int = 0
    transitive: int = 0
    symbolic: int = 0
    eliminations: int = 0
    seconds: float = 0.0
    adjacency: np.ndarray | None = None

    @property
    def edges(self) -> set[tuple[int, int]]:
        """The edges as a set of pairs (built from the adjacency matrix on first use)."""
        if self.adjacency is not None and not self._edges:
            rows, cols = np.nonzero(self.adjacency)
            self._edges = set(zip(rows.tolist(), cols.tolist(), strict=True))
        return self._edges

    def edge_count(self) -> int:
        return int(self.adjacency.sum()) if self.adjacency is not None else len(self._edges)

    def edge_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The edges as two index arrays, sorted by (from, to)."""
        if self.adjacency is not None:
            return np.nonzero(self.adjacency)
        if not self.edges:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        pairs = np.array(sorted(self.edges), dtype=np.int64)
        return pairs[:, 0], pairs[:, 1]


def build(
    conditions: Sequence[Cond],
    features: Sequence[FeatureSpec],
    construction: str = "atoms",
    seed: int = 0,
    symbolic_min_pairs: int | None = 64,
) -> Graph:
    """The implication graph of normalized, satisfiable ``conditions``.

    Args:
        conditions: one per node; already normalized and de-duplicated.
        features: the feature space.
        construction: ``naive`` or ``atoms``.
        seed: for the witness sample points.
        symbolic_min_pairs: ``atoms`` decides the pairs between two condition shapes in bulk
            (one quantifier elimination, then numpy) when the shapes have at least this many
            pairs of conditions between them; ``None`` turns it off.
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
        _atoms(conditions, features, graph, implies, seed, solver, symbolic_min_pairs)
    graph.solver_calls = solver.calls
    graph.seconds = time.perf_counter() - started
    _RANGES.clear()
    return graph


def _atoms(
    conditions: Sequence[Cond],
    features: Sequence[FeatureSpec],
    graph: Graph,
    implies: Any,
    seed: int,
    solver: Solver,
    symbolic_min_pairs: int | None,
) -> None:
    domains = Domains(features)
    n = len(conditions)
    # Pairs of shapes with many pairs of conditions between them are decided in bulk first;
    # the per-pair machinery below only sees what is left.
    blocks = (
        decide_blocks(conditions, solver, min_pairs=symbolic_min_pairs)
        if symbolic_min_pairs is not None and n <= _SYMBOLIC_MAX_NODES
        else None
    )
    if blocks is not None:
        graph.eliminations = blocks.eliminations
    # A valid condition (true in every world, e.g. ``c <> d`` over disjoint domains) is
    # implied by everything; the variable buckets below rely on knowing which ones are.
    known_valid = blocks.valid if blocks is not None else {}
    valid = [
        c == TRUE or (known_valid[i] if i in known_valid else not solver.satisfiable(Not(c)))
        for i, c in enumerate(conditions)
    ]
    # Buckets: variable -> nodes whose condition mentions it (Algorithm 1's map B).
    buckets: dict[str, list[int]] = {}
    var_sets = [variables(c) for c in conditions]
    for i, vs in enumerate(var_sets):
        for v in vs:
            buckets.setdefault(v.lower(), []).append(i)
    share = None
    needed = None
    if blocks is not None:
        # Candidate pairs as a matrix; witness points are only drawn for the nodes of pairs
        # that the bulk decisions left open.
        incidence = np.zeros((n, max(1, len(buckets))), dtype=np.float32)
        for k, members in enumerate(buckets.values()):
            incidence[members, k] = 1.0
        share = (incidence @ incidence.T) > 0
        share[:, np.flatnonzero(valid)] = True
        np.fill_diagonal(share, False)
        left_open = share & ~blocks.decided
        needed = np.flatnonzero(left_open.any(axis=1) | left_open.any(axis=0))
    sat = witnesses(conditions, features, seed, nodes=needed)
    packed = np.packbits(sat, axis=1) if sat.size else np.zeros((n, 0), np.uint8)
    pools = value_pools(conditions, features)
    rng = np.random.default_rng(seed + 1)
    negations: dict[int, Cond] = {}
    # Transitivity (i ⇒ j and j ⇒ k give i ⇒ k) decides many edges of dense graphs for free:
    # rows are computed weakest condition first (most satisfying points), and within a row
    # candidates are tried strongest first, so a proven i ⇒ j brings j's finished row along.
    weakness = sat.sum(axis=1) if sat.size else np.zeros(n)
    successors: dict[int, set[int]] = {}
    # With bulk decisions, finished rows live in a matrix (a Python set per row would cost
    # more than deciding the pairs did).
    adjacency = np.zeros((n, n), dtype=bool) if blocks is not None else None
    for i in sorted(range(n), key=lambda k: (-weakness[k], k)):
        # Candidates: nodes sharing a variable with i, plus valid conditions (TRUE).
        row: set[int] = set()
        successors[i] = row
        if share is not None:
            cand = np.flatnonzero(share[i])
        else:
            candidates: set[int] = set()
            for v in var_sets[i]:
                candidates.update(buckets[v.lower()])
            candidates.update(j for j in range(n) if valid[j])
            candidates.discard(i)
            cand = np.fromiter(sorted(candidates), dtype=np.int64)
        if not len(cand):
            continue
        graph.pairs_considered += len(cand)
        if adjacency is not None:
            known = blocks.decided[i, cand]
            if known.any():
                graph.symbolic += int(known.sum())
                adjacency[i, cand[known]] = blocks.edge[i, cand[known]]
                cand = cand[~known]
        # A sample point satisfying cond[i] but not cond[j] refutes i ⇒ j.
        refuted = (
            (packed[i][None, :] & ~packed[cand]).any(axis=1)
            if packed.shape[1]
            else (np.zeros(len(cand), dtype=bool))
        )
        graph.witness_refuted += int(refuted.sum())
        open_ = set(cand[~refuted].tolist())
        for j in sorted(open_, key=lambda k: (weakness[k], k)):
            if j in row:
                continue
            if valid[j]:
                edge = True
            else:
                decided = prove(conditions[i], conditions[j], domains)
                if decided is not None:
                    graph.exact_prechecks += 1
                    edge = decided
                else:
                    if j not in negations:
                        negations[j] = normalize(Not(conditions[j]), domains)
                    if refute(
                        conditions[i], negations[j], conditions[j], features, domains, pools, rng
                    ):
                        graph.witness_refuted += 1
                        edge = False
                    else:
                        edge = implies(i, j)
            if edge:
                row.add(j)
                if j in successors:
                    if adjacency is not None:
                        inferred = {k for k in open_ if adjacency[j, k]} - row - {i}
                    else:
                        inferred = (successors[j] & open_) - row - {i}
                    graph.transitive += len(inferred)
                    row |= inferred
        if adjacency is not None:
            adjacency[i, list(row)] = True
        else:
            graph.edges.update((i, j) for j in row)
    if adjacency is not None:
        graph.adjacency = adjacency


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
    per_node: int = 8,
    shared: int = 256,
    nodes: np.ndarray | None = None,
) -> np.ndarray:
    """A boolean matrix: does sample point ``p`` satisfy condition ``i``?

    With ``nodes``, points are drawn for those conditions only and the other rows are False
    (their pairs are decided elsewhere).

    The points mix values around every constant of every condition (each constant, ±1 and
    ±0.5 for numbers) and every domain value, drawn at random, plus points built from each
    condition's own atoms so that narrow conditions have satisfying points. Whether a point
    satisfies a condition is always evaluated, so the points only need to be diverse.
    """
    domains = Domains(features)
    rng = np.random.default_rng(seed)
    pools = value_pools(conditions, features)
    rows: list[dict[str, Any]] = []
    for _ in range(shared):
        rows.append({k: v[rng.integers(len(v))] for k, v in pools.items()})
    chosen = range(len(conditions)) if nodes is None else nodes.tolist()
    if nodes is not None and not len(nodes):
        return np.zeros((len(conditions), 0), dtype=bool)
    for index in chosen:
        cond = conditions[index]
        # Points meant to satisfy the condition, and points meant to violate it: a point that
        # violates b but satisfies a refutes a ⇒ b.
        negated = normalize(Not(cond), domains)
        for target in (cond, negated):
            for _ in range(per_node):
                row = {k: v[rng.integers(len(v))] for k, v in pools.items()}
                _satisfy(target, row, domains, rng, pools)
                rows.append(row)
    if not rows or not features:
        return np.zeros((len(conditions), 0), dtype=bool)
    columns = _columns(rows, features)
    out = np.zeros((len(conditions), len(rows)), dtype=bool)
    for index in chosen:
        out[index] = evaluate(conditions[index], columns, len(rows))
    return out


def value_pools(
    conditions: Sequence[Cond], features: Sequence[FeatureSpec]
) -> dict[str, list[Any]]:
    """Per variable, the values worth trying: every domain value of a categorical; for numbers
    each constant of every condition with its neighbours (±1, ±0.5), 0 and two extremes."""
    domains = Domains(features)
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
    return pools


def _columns(rows: list[dict[str, Any]], features: Sequence[FeatureSpec]) -> dict[str, np.ndarray]:
    columns = {}
    for f in features:
        values = [r[f.name] for r in rows]
        if f.type == "boolean":
            columns[f.name] = np.array([v == "true" for v in values], dtype=bool)
        elif f.is_categorical:
            columns[f.name] = np.array(values, dtype=object)
        else:
            columns[f.name] = np.array(values, dtype=float)
    return columns


def refute(
    a: Cond,
    not_b: Cond,
    b: Cond,
    features: Sequence[FeatureSpec],
    domains: Domains,
    pools: dict[str, list[Any]],
    rng: np.random.Generator,
    attempts: int = 4,
) -> bool:
    """Look for one point satisfying ``a`` and violating ``b`` (built for this pair): found
    means ``a ⇏ b``; not found decides nothing."""
    target = And((a, not_b))
    # Only the variables of a and b matter for this pair.
    names = {domains.spec(v).name for v in variables(a) | variables(b)}
    used = [f for f in features if f.name in names]
    rows = []
    for _ in range(attempts):
        row = {f.name: pools[f.name][rng.integers(len(pools[f.name]))] for f in used}
        _satisfy(target, row, domains, rng, pools)
        rows.append(row)
    columns = _columns(rows, used)
    return bool((evaluate(a, columns, attempts) & ~evaluate(b, columns, attempts)).any())


def _satisfy(
    cond: Cond,
    row: dict[str, Any],
    domains: Domains,
    rng: np.random.Generator,
    pools: dict[str, list[Any]],
) -> None:
    """Move ``row`` towards satisfying ``cond`` (best effort: the caller evaluates).

    Values are drawn from the variable's pool of interesting values (not just next to the
    atom's constant), so that one point can dodge the constants of many other conditions.
    """
    if isinstance(cond, Member):
        if cond.values:
            row[domains.spec(cond.var).name] = sorted(cond.values)[rng.integers(len(cond.values))]
    elif isinstance(cond, Cmp):
        name = domains.spec(cond.var).name
        pool = pools[name]
        if cond.op == "=":
            row[name] = cond.value
        elif cond.op == "<>":
            choice = pool[rng.integers(len(pool))]
            row[name] = choice if choice != cond.value else cond.value + 1.0
        else:
            if cond.op in ("<", "<="):
                end = (
                    bisect.bisect_left(pool, cond.value)
                    if cond.op == "<"
                    else (bisect.bisect_right(pool, cond.value))
                )
                options = pool[:end]
            else:
                start = (
                    bisect.bisect_right(pool, cond.value)
                    if cond.op == ">"
                    else (bisect.bisect_left(pool, cond.value))
                )
                options = pool[start:]
            step = 1.0 if domains.is_integer(cond.var) else 0.5
            default = cond.value + (step if cond.op in (">", ">=") else -step)
            row[name] = options[rng.integers(len(options))] if options else default
    elif isinstance(cond, And):
        # A random order: a later item overrides an earlier one on a shared variable, so
        # varying the order varies which combinations get built.
        for k in rng.permutation(len(cond.items)).tolist():
            _satisfy(cond.items[k], row, domains, rng, pools)
    elif isinstance(cond, Or) and cond.items:
        _satisfy(cond.items[rng.integers(len(cond.items))], row, domains, rng, pools)
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


_RANGES: dict[int, Any] = {}


def _ranges(cond: Cond) -> tuple[dict[str, frozenset[str]], dict[str, _Range]] | None:
    # Conditions are immutable and compared many times while a graph is built: cache by
    # identity (the cache is cleared when a build ends).
    key = id(cond)
    hit = _RANGES.get(key)
    if hit is not None and hit[0] is cond:
        return hit[1]
    out = _compute_ranges(cond)
    _RANGES[key] = (cond, out)
    return out


def _compute_ranges(cond: Cond) -> tuple[dict[str, frozenset[str]], dict[str, _Range]] | None:
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


def prove(a: Cond, b: Cond, domains: Domains) -> bool | None:
    """Decide ``a ⇒ b`` structurally when that is exact; ``None`` when z3 must decide.

    Exact rules: ``(a1 ∨ a2) ⇒ b`` iff each ``ai ⇒ b``; ``a ⇒ (b1 ∧ b2)`` iff ``a ⇒`` each
    ``bi``; conjunctions of single-variable atoms by containment. Sufficient rules (they can
    only prove): ``a ⇒ (b1 ∨ b2)`` if ``a ⇒`` some ``bi``; ``(a1 ∧ a2) ⇒ b`` if the part of
    ``a`` made of single-variable atoms implies ``b``.
    """
    decided = simple_implies(a, b, domains)
    if decided is not None:
        return decided
    if isinstance(a, Or):
        answers = [prove(x, b, domains) for x in a.items]
        if any(ans is False for ans in answers):
            return False
        return True if all(answers) else None
    if isinstance(b, And):
        answers = [prove(a, y, domains) for y in b.items]
        if any(ans is False for ans in answers):
            return False
        return True if all(answers) else None
    if isinstance(b, Or) and any(prove(a, y, domains) for y in b.items):
        return True
    if isinstance(a, And):
        simple = [x for x in a.items if isinstance(x, Member | Cmp)]
        if simple and len(simple) < len(a.items):
            part = simple[0] if len(simple) == 1 else And(tuple(simple))
            if prove(part, b, domains):
                return True
    return None


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


def condense(n: int, edges: set[tuple[int, int]] | tuple[np.ndarray, np.ndarray]) -> Condensation:
    """Strongly connected components, the condensation's edges and a topological order.

    ``edges`` is a set of pairs or two index arrays (``Graph.edge_arrays()``)."""
    if n == 0:
        return Condensation([], [], {})
    if isinstance(edges, tuple):
        rows, cols = np.asarray(edges[0], np.int64), np.asarray(edges[1], np.int64)
    elif edges:
        pairs = np.array(sorted(edges), dtype=np.int64)
        rows, cols = pairs[:, 0], pairs[:, 1]
    else:
        rows = cols = np.zeros(0, np.int64)
    matrix = csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    count, labels = connected_components(matrix, directed=True, connection="strong")
    # Renumber classes by their first node so ids are stable and readable.
    _, first_seen = np.unique(labels, return_index=True)
    renumber = np.empty(count, dtype=np.int64)
    renumber[np.argsort(first_seen, kind="stable")] = np.arange(count)
    class_of = renumber[labels]
    classes = class_of.tolist()
    # Edges between classes, de-duplicated.
    ci, cj = class_of[rows], class_of[cols]
    between = ci != cj
    # Sort-based de-duplication (numpy's hash-based unique is slow on these keys).
    keys = np.sort(ci[between] * count + cj[between])
    if len(keys):
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    class_pairs = np.stack([keys // count, keys % count], axis=1)
    successors: dict[int, set[int]] = {c: set() for c in range(count)}
    indegree = np.zeros(count, dtype=np.int64)
    if len(class_pairs):
        np.add.at(indegree, class_pairs[:, 1], 1)
        starts = np.searchsorted(class_pairs[:, 0], np.arange(count + 1))
        for c in np.unique(class_pairs[:, 0]).tolist():
            successors[c] = set(class_pairs[starts[c] : starts[c + 1], 1].tolist())
    # Kahn's algorithm, smallest ready class first (a deterministic order).
    ready = [c for c in range(count) if indegree[c] == 0]
    heapq.heapify(ready)
    degree = indegree.tolist()
    order = []
    while ready:
        c = heapq.heappop(ready)
        order.append(c)
        for s in successors[c]:
            degree[s] -= 1
            if degree[s] == 0:
                heapq.heappush(ready, s)
    return Condensation(classes, order, successors)
