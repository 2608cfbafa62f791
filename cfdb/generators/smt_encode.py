"""The z3 encoding of a compiled model over raw feature values, built once per model, and the
per-instance constraints added on top of it (CFDB paper, section 3.2: conditions as
constraints; exact counterfactuals in the spirit of MACE, Karimi et al. 2020).

Variables are the raw values a CF stores: an ``Int`` per integer feature, a ``Real`` per
numeric one, and one ``Bool`` indicator per value of a categorical/boolean feature's active
domain (exactly one true). The featurizer is folded in: a scaled column is a linear term of its
feature, a one-hot or target-encoded column a table over the feature's values.

Every arithmetic constraint is a *fact* (:class:`Fact`): an atom that always holds, or one
guarded by a single Boolean literal (``guard → atom``); everything else is Boolean. So once a
model of the formula fixes the Booleans, the facts whose guards hold form a linear program
whose optimum is the best CF with the same Boolean skeleton; the search
(:mod:`~.smt_search`) uses that to jump to the best point of each region it visits. Atoms are
non-strict: strict comparisons of real features use a resolution of 1e-6 MAD, so every region
is closed and its optimum attained.

Trees: each distinct split of a numeric column is a Boolean ``a`` with facts ``a → y <= L`` and
``¬a → y >= R``, where ``L`` and ``R`` are the float64 values on either side of the point where
the estimator's own comparison flips (:func:`split_bounds`; no float64 lies between them, so a
CF stored as float64 is classified as encoded); the splits of one feature are chained (left of
a smaller point implies left of a larger one). A split of a categorical column is the set of
values that go left (a single literal for one-hot columns). Each leaf is a Boolean implying its
path, one leaf per tree holds, and each tree adds a real ``p`` with facts ``leaf → p = value``.

Linear models: the score is a linear term over numeric features and 0/1 shadows of the
categorical indicators, with coefficients rounded to 12 significant digits (exact binary
fractions slow every check down); the rounding error is bounded and added to the decision
margin (:attr:`Encoding.slack`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np
import z3
from z3 import z3core

from cfdb.ctable.condition import (
    And,
    Cmp,
    Cond,
    Const,
    Member,
    Not,
    Or,
    VarCmp,
    compare,
    value_string,
)
from cfdb.errors import CfdbUnsupportedError
from cfdb.generators.smt_model import (
    CompiledModel,
    InputColumn,
    domain_of,
    input_ranges,
    layer_ranges,
)
from cfdb.types import FeatureSpec

#: Relative resolution of strict comparisons on real features, in MADs.
RESOLUTION = 1e-6
#: Relative widening of a split's band on scaled columns (float64 rounding of the scaling).
SPLIT_GUARD = 1e-12
#: Relative rounding of linear coefficients (12 significant digits).
ROUNDING = Fraction(1, 10**11)
#: z3 options, measured on random forests: relevancy filtering off and the older arithmetic
#: solver roughly halve the time per check here.
SOLVER_OPTIONS = {"smt.relevancy": 0, "smt.arith.solver": 2}


class Fact(NamedTuple):
    """An arithmetic atom, always asserted or guarded by one Boolean literal.

    Attributes:
        guard: the guard's Boolean constant (None: unguarded).
        negated: the guard is the constant's negation.
        atom: the z3 atom.
        bound: ``(feature, op, value)`` when the atom bounds one feature (op ``<=``, ``>=``
            or ``=``), else None.
        lp: whether the polishing linear program needs it (leaf values of trees do not: the
            Booleans already fix them and they bind no feature).
        aux: it only defines an auxiliary variable (a change's cost, a category's 0/1 shadow),
            which a separable polish computes directly.
        fixes: ``(variable, value)`` when the atom fixes an auxiliary variable.
    """

    guard: str | None
    negated: bool
    atom: Any
    bound: tuple[str, str, Fraction] | None = None
    lp: bool = True
    aux: bool = False
    fixes: tuple[Any, Fraction] | None = None

    def holds(self, truth: dict[str, bool]) -> bool:
        """Whether the guard holds under Boolean values ``truth``."""
        return self.guard is None or truth.get(self.guard, False) != self.negated


def real(ctx: z3.Context, value: float | Fraction) -> Any:
    """The exact rational of a float (or Fraction) as a z3 real."""
    q = Fraction(value)
    return z3.RealVal(f"{q.numerator}/{q.denominator}", ctx)


def split_bounds(threshold: float, split: str) -> tuple[Fraction, Fraction]:
    """The float64 values on either side of a split, for the estimator's own comparison: a
    featurized value ``x <= left`` goes left and ``x >= right`` goes right, and no float64 lies
    strictly between (so a CF stored as float64 is classified exactly as encoded).

    ``le64`` (``x <= t``): ``t`` and the next float64. ``le32`` (``float32(x) <= t``): the
    float32 values ``f1 <= t < f2`` around ``t`` flip where float64 rounding to float32 does,
    at their midpoint (ties to even).
    """
    if split == "le64":
        return Fraction(threshold), Fraction(float(np.nextafter(threshold, np.inf)))
    f1 = np.float32(threshold)
    if float(f1) > threshold:
        f1 = np.nextafter(f1, np.float32(-np.inf))
    f2 = np.nextafter(f1, np.float32(np.inf))
    mid = (float(f1) + float(f2)) / 2  # exact: float32 midpoints fit in a float64
    if np.float32(mid) == f1:
        left, right = mid, float(np.nextafter(mid, np.inf))
    else:
        left, right = float(np.nextafter(mid, -np.inf)), mid
    return Fraction(left), Fraction(right)


def goes_left(value: float, threshold: float, split: str) -> bool:
    """The estimator's own comparison on one featurized value."""
    if split == "le32":
        return float(np.float32(value)) <= threshold
    return value <= threshold


class Encoding:
    """The z3 encoding of one model over the raw features (built once, reused per task).

    Args:
        compiled: the model (see :mod:`cfdb.generators.smt_model`).
        features: the raw features (types, domains, bounds, mutability).

    Attributes:
        solver: a ``z3.Solver`` holding the model's constraints.
        scores: the model's scores as z3 terms.
        facts: the arithmetic facts of the model (see the module docstring).
    """

    def __init__(self, compiled: CompiledModel, features: list[FeatureSpec]) -> None:
        self.compiled = compiled
        self.features = list(features)
        self.by_name = {f.name.lower(): f for f in features}
        self.ctx = z3.Context()
        self.solver = z3.Solver(ctx=self.ctx)
        for key, value in SOLVER_OPTIONS.items():
            self.solver.set(key, value)
        self.facts: list[Fact] = []
        self.numeric: dict[str, Any] = {}
        self.indicator: dict[str, dict[str, Any]] = {}
        #: The z3 name of each indicator, by feature and value.
        self.indicator_name: dict[str, dict[str, str]] = {}
        #: The Boolean constants that guard facts or name categories, by name.
        self.decls: dict[str, Any] = {}

        self._shadows: dict[tuple[str, str], Any] = {}
        self._fresh = 0
        #: Added to every decision margin: how far rounded scores may be from exact ones.
        self.slack = Fraction(0)
        for i, f in enumerate(features):
            self._declare(i, f)
        #: Networks: per numeric feature, the range the ReLU analysis assumed (tasks whose
        #: instance lies outside it are not representable).
        self.network_range: dict[str, tuple[float, float]] = {}
        if compiled.is_network:
            self.scores = self._network_scores()
        elif compiled.is_linear:
            self.scores = self._linear_scores()
        else:
            self.scores = self._tree_scores()
        # Internalize once, so each task starts from a solver that has seen the model.
        self.solver.check()

    # -- building blocks --------------------------------------------------------------------
    def fresh(self, prefix: str) -> Any:
        self._fresh += 1
        return z3.Bool(f"{prefix}#{self._fresh}", self.ctx)  # "#": no fixed name has one

    def fact(
        self,
        guard: Any,
        atom: Any,
        into: list[Fact] | None = None,
        bound: tuple[str, str, Fraction] | None = None,
        lp: bool = True,
        aux: bool = False,
        fixes: tuple[Any, Fraction] | None = None,
    ) -> None:
        """Assert ``guard → atom`` (``atom`` if ``guard`` is None) and record the fact.

        Args:
            guard: a Boolean constant or its negation, or None.
            into: the list to record the fact in (default: the model's facts).
            bound: the atom as ``(feature, op, value)`` if it bounds one feature.
            lp: whether the polishing linear program needs the fact.
            aux: whether the fact only defines an auxiliary variable.
            fixes: the auxiliary variable the atom sets, and its value.
        """
        name, negated = None, False
        if guard is not None:
            negated = z3.is_not(guard)
            const = guard.arg(0) if negated else guard
            if z3.is_true(const) or z3.is_false(const):
                if z3.is_true(const) == negated:
                    return  # guarded by False: the fact never applies
            else:
                decl = const.decl()
                name = decl.name()
                self.decls.setdefault(name, decl)
        record = Fact(name, negated if name else False, atom, bound, lp, aux or bool(fixes), fixes)
        (self.facts if into is None else into).append(record)
        self.solver.add(atom if guard is None else z3.Implies(guard, atom))

    def _declare(self, i: int, f: FeatureSpec) -> None:
        # Names by position: feature names and values may hold any character.
        if f.is_categorical:
            values = domain_of(f)
            names = {v: f"c!{i}!{j}" for j, v in enumerate(values)}
            bools = {v: z3.Bool(names[v], self.ctx) for v in values}
            self.indicator[f.name] = bools
            self.indicator_name[f.name] = names
            for v, b in bools.items():
                self.decls[names[v]] = b.decl()
            if bools:
                self.solver.add(z3.PbEq([(b, 1) for b in bools.values()], 1))
            else:
                self.solver.add(z3.BoolVal(False, self.ctx))
        elif f.type == "integer":
            self.numeric[f.name] = z3.Int(f"y!{i}", self.ctx)
        else:
            self.numeric[f.name] = z3.Real(f"y!{i}", self.ctx)

    def real_of(self, name: str) -> Any:
        """Numeric feature ``name`` as a real term (``ToReal(y)`` for an integer feature)."""
        y = self.numeric[name]
        return z3.ToReal(y) if y.is_int() else y

    def shadow(self, name: str, value: str) -> Any:
        """A real that is 1 when categorical ``name`` takes ``value``, else 0."""
        key = (name, value)
        if key not in self._shadows:
            z = z3.Real(f"z!{self.indicator_name[name][value]}", self.ctx)
            b = self.indicator[name][value]
            self.fact(b, z == 1, fixes=(z, Fraction(1)))
            self.fact(z3.Not(b), z == 0, fixes=(z, Fraction(0)))
            self._shadows[key] = z
        return self._shadows[key]

    # -- linear models ------------------------------------------------------------------------
    def _linear_scores(self) -> list[Any]:
        c = self.compiled
        assert c.coef is not None
        out = []
        for k in range(c.n_scores):
            const = Fraction(float(c.intercept[k]))
            terms: list[Any] = []
            per_numeric: dict[str, Fraction] = {}
            per_value: dict[tuple[str, str], Fraction] = {}
            for j, col in enumerate(c.columns):
                w = Fraction(float(c.coef[k, j]))
                if w == 0:
                    continue
                if col.table is None:
                    scale = w / Fraction(col.std)
                    per_numeric[col.feature] = per_numeric.get(col.feature, Fraction(0)) + scale
                    const -= scale * Fraction(col.mean)
                else:
                    for v, x in col.table:
                        if x != 0:
                            key = (col.feature, v)
                            per_value[key] = per_value.get(key, Fraction(0)) + w * Fraction(x)
            # Coefficients rounded to 12 digits: bignum rationals from exact floats slow each
            # check by ~40%; the rounding error is bounded and added to the decision margin.
            error = abs(const) * ROUNDING
            for name, w in per_numeric.items():
                spec = self.by_name[name.lower()]
                reach = max(
                    (abs(Fraction(float(v))) for v in (spec.min, spec.max) if v is not None),
                    default=Fraction(10**6),
                )
                error += abs(w) * ROUNDING * (reach + 1)
                terms.append(real(self.ctx, _short(w)) * self.numeric[name])
            for (name, v), w in per_value.items():
                if w != 0:
                    error += abs(w) * ROUNDING
                    terms.append(real(self.ctx, _short(w)) * self.shadow(name, v))
            out.append(z3.Sum([*terms, real(self.ctx, _short(const))]))
            self.slack = max(self.slack, 2 * error)
        return out

    # -- ReLU networks ------------------------------------------------------------------------
    def _network_scores(self) -> list[Any]:
        """Scores of a ReLU network (as in MACE): every hidden unit is a real ``h`` tied to
        its pre-activation ``p`` (a linear term of the layer below); a unit that interval
        propagation over the features' ranges shows always active is ``h = p``, always
        inactive ``h = 0``, and any other gets a Boolean ``a`` with facts ``a → h = p``,
        ``a → p ≥ 0``, ``¬a → h = 0``, ``¬a → p ≤ 0``. Once the Booleans are fixed every
        fact is linear, so the search polishes each activation region with its linear
        program. Weights are used exactly (no rounding), so the scores are exact."""
        c = self.compiled
        assert c.coef is not None
        ctx = self.ctx
        for col in c.columns:
            if col.table is None:
                spec = self.by_name[col.feature.lower()]
                self.network_range[col.feature] = (
                    float(spec.min) if spec.min is not None else -math.inf,
                    float(spec.max) if spec.max is not None else math.inf,
                )
        # The input columns as terms.
        inputs: list[Any] = []
        for col in c.columns:
            if col.table is None:
                scale = 1 / Fraction(col.std)
                inputs.append(
                    real(ctx, scale) * self.real_of(col.feature)
                    - real(ctx, scale * Fraction(col.mean))
                )
            else:
                parts = [
                    real(ctx, Fraction(x)) * self.shadow(col.feature, v)
                    for v, x in col.table
                    if x != 0
                ]
                inputs.append(z3.Sum(parts) if parts else real(ctx, Fraction(0)))
        ranges = input_ranges(c.columns, self.features)
        for layer, (w, b) in enumerate(c.hidden):
            lo, hi = layer_ranges(w, b, ranges)
            # Float rounding of the bounds themselves: only trust a clear sign.
            eps = 1e-9 * (1.0 + np.maximum(np.abs(np.nan_to_num(lo)), np.abs(np.nan_to_num(hi))))
            units: list[Any] = []
            for u in range(w.shape[1]):
                pre = _affine(ctx, inputs, w[:, u], b[u])
                if lo[u] > eps[u]:
                    h = z3.Real(f"h!{layer}!{u}", ctx)
                    self.fact(None, h == pre)
                elif hi[u] < -eps[u]:
                    h = real(ctx, Fraction(0))
                else:
                    h = z3.Real(f"h!{layer}!{u}", ctx)
                    a = z3.Bool(f"relu!{layer}!{u}", ctx)
                    self.fact(a, h == pre)
                    self.fact(a, pre >= 0)
                    self.fact(z3.Not(a), h == 0)
                    self.fact(z3.Not(a), pre <= 0)
                units.append(h)
            inputs = units
            ranges = np.stack([np.maximum(lo, 0.0), np.maximum(hi, 0.0)], axis=1)
        return [_affine(ctx, inputs, c.coef[k], c.intercept[k]) for k in range(c.n_scores)]

    # -- tree models --------------------------------------------------------------------------
    def _tree_scores(self) -> list[Any]:
        c = self.compiled
        splits: dict[tuple[int, float], Any] = {}
        numeric_points: dict[str, dict[tuple[Fraction, Fraction], Any]] = {}
        for tree in c.trees:
            for node in np.flatnonzero(tree.feature >= 0):
                key = (int(tree.feature[node]), float(tree.threshold[node]))
                if key not in splits:
                    splits[key] = self._split(key[0], key[1], numeric_points)
        for points in numeric_points.values():
            ordered = [points[p] for p in sorted(points)]
            for a, b in itertools.pairwise(ordered):  # left of a smaller point: left of b too
                self.solver.add(z3.Or(z3.Not(a), b))
        totals: list[list[Any]] = [[] for _ in range(c.n_scores)]
        for t, tree in enumerate(c.trees):
            ps = [z3.Real(f"p!{t}!{o}", self.ctx) for o in range(len(tree.outputs))]
            leaves = []
            stack: list[tuple[int, list[Any]]] = [(0, [])]
            while stack:
                node, path = stack.pop()
                if tree.feature[node] < 0:
                    leaf = z3.Bool(f"leaf!{t}!{node}", self.ctx)
                    leaves.append(leaf)
                    for lit in path:
                        self.solver.add(z3.Implies(leaf, lit))
                    for o, p in enumerate(ps):
                        value = real(self.ctx, float(tree.value[node, o]))
                        self.fact(leaf, p == value, lp=False)
                    continue
                lit = splits[(int(tree.feature[node]), float(tree.threshold[node]))]
                stack.append((int(tree.right[node]), [*path, z3.Not(lit)]))
                stack.append((int(tree.left[node]), [*path, lit]))
            self.solver.add(z3.Or(leaves))
            for o, p in zip(tree.outputs, ps, strict=True):
                totals[o].append(p)
        return [
            z3.Sum([*totals[o], real(self.ctx, float(c.intercept[o]))]) for o in range(c.n_scores)
        ]

    def _split(
        self, column: int, threshold: float, points: dict[str, dict[tuple[Fraction, Fraction], Any]]
    ) -> Any:
        """The literal "goes left" of a split on one featurized column."""
        col: InputColumn = self.compiled.columns[column]
        split = self.compiled.split
        if col.table is not None:
            bools = self.indicator[col.feature]
            left = [bools[v] for v, x in col.table if goes_left(x, threshold, split)]
            right = [bools[v] for v, x in col.table if not goes_left(x, threshold, split)]
            # Exactly one value holds, so the shorter side is enough (a one-hot column's
            # split is a single literal).
            if len(right) < len(left):
                return z3.Not(z3.Or(right)) if len(right) > 1 else z3.Not(right[0])
            if not left:
                return z3.BoolVal(False, self.ctx)
            return z3.Or(left) if len(left) > 1 else left[0]
        left, right = split_bounds(threshold, split)
        if not col.identity:
            # (y - mean) / std is rounded in float64 before the estimator compares it.
            left -= Fraction(SPLIT_GUARD) * abs(left)
            right += Fraction(SPLIT_GUARD) * abs(right)
        left = left * Fraction(col.std) + Fraction(col.mean)
        right = right * Fraction(col.std) + Fraction(col.mean)
        mine = points.setdefault(col.feature, {})
        if (left, right) in mine:
            return mine[(left, right)]
        a = z3.Bool(f"split!{self.numeric[col.feature]}!{len(mine)}", self.ctx)
        mine[(left, right)] = a
        y = self.numeric[col.feature]
        self.fact(a, y <= real(self.ctx, left), bound=(col.feature, "<=", left))
        self.fact(z3.Not(a), y >= real(self.ctx, right), bound=(col.feature, ">=", right))
        return a

    # -- the model's decision -------------------------------------------------------------------
    def beats(self, k: int, j: int, margin: Fraction, ties: bool) -> Any:
        """The atom "class ``k`` beats class ``j``" for the predicted label.

        Args:
            margin: how much the winner's score must exceed the loser's.
            ties: whether an exact tie counts when the estimator breaks it for ``k``.
        """
        c = self.compiled
        m = real(self.ctx, margin + self.slack)
        zero = real(self.ctx, self.slack)
        if c.n_scores == 1:
            s = self.scores[0]
            wins_ties = (k == 1) == c.inclusive
            need = zero if (ties and wins_ties) else m
            return s >= need if k == 1 else s <= -need
        need = zero if (ties and k < j) else m
        return self.scores[k] - self.scores[j] >= need

    def decision(
        self, original: int, target: int | None, margin: Fraction, ties: bool, into: list[Fact]
    ) -> None:
        """Assert that the predicted class is ``target`` (any other than ``original`` if None)."""
        classes = range(self.compiled.n_classes)
        # Tree scores are fixed by the leaves; linear and network scores need the LP.
        lp = self.compiled.is_linear or self.compiled.is_network
        if target is not None:
            for k in classes:
                if k != target:
                    self.fact(None, self.beats(target, k, margin, ties), into, lp=lp)
            return
        if self.compiled.n_classes == 2:
            self.fact(None, self.beats(1 - original, original, margin, ties), into, lp=lp)
            return
        guards = []
        for k in classes:
            if k != original:
                g = self.fresh("wins")
                self.fact(g, self.beats(k, original, margin, ties), into, lp=lp)
                guards.append(g)
        self.solver.add(z3.Or(guards))

    def regression_target(
        self, original: float, change: float, direction: str, margin: Fraction, into: list[Fact]
    ) -> None:
        """Assert that a regressor's output moves from ``original`` by at least ``change``
        (``up``, ``down`` or ``any``), with ``margin`` to spare for floating point."""
        s = self.scores[0]
        lp = self.compiled.is_linear  # tree outputs are fixed by the leaves
        step = Fraction(change) + margin + self.slack
        # The check subtracts float outputs: leave room for rounding at the original's size.
        step += Fraction(1e-12) * (abs(Fraction(original)) + Fraction(change))
        up = s >= real(self.ctx, Fraction(original) + step)
        down = s <= real(self.ctx, Fraction(original) - step)
        if direction == "up":
            self.fact(None, up, into, lp=lp)
        elif direction == "down":
            self.fact(None, down, into, lp=lp)
        else:
            guards = [self.fresh("up"), self.fresh("down")]
            self.fact(guards[0], up, into, lp=lp)
            self.fact(guards[1], down, into, lp=lp)
            self.solver.add(z3.Or(guards))

    # -- conditions ---------------------------------------------------------------------------
    def spec(self, var: str) -> FeatureSpec:
        try:
            return self.by_name[var.lower()]
        except KeyError:
            raise CfdbUnsupportedError(f"the condition mentions unknown feature {var!r}") from None

    def condition(self, cond: Cond, into: list[Fact], positive: bool = True) -> Any:
        """The Boolean term of a condition; its arithmetic atoms become guarded facts."""
        if isinstance(cond, Const):
            return z3.BoolVal(cond.value == positive, self.ctx)
        if isinstance(cond, Not):
            return self.condition(cond.item, into, not positive)
        if isinstance(cond, And | Or):
            items = [self.condition(c, into, positive) for c in cond.items]
            conj = isinstance(cond, And) == positive
            return z3.And(items) if conj else z3.Or(items)
        if isinstance(cond, Member):
            spec = self.spec(cond.var)
            bools = self.indicator[spec.name]
            inside = cond.values if not cond.negated else frozenset(bools) - cond.values
            keep = inside if positive else frozenset(bools) - inside
            chosen = [bools[v] for v in sorted(keep) if v in bools]
            return z3.Or(chosen) if chosen else z3.BoolVal(False, self.ctx)
        if isinstance(cond, Cmp):
            spec = self.spec(cond.var)
            op = cond.op if positive else _NEGATE[cond.op]
            return self._compare(spec, op, Fraction(float(cond.value)), into)
        if isinstance(cond, VarCmp):
            left, right = self.spec(cond.left), self.spec(cond.right)
            op = cond.op if positive else _NEGATE[cond.op]
            return self._var_compare(left, op, right, into)
        raise TypeError(f"not a condition: {cond!r}")

    def _guarded(
        self, atom: Any, into: list[Fact], bound: tuple[str, str, Fraction] | None = None
    ) -> Any:
        g = self.fresh("atom")
        self.fact(g, atom, into, bound=bound)
        return g

    def _compare(self, spec: FeatureSpec, op: str, c: Fraction, into: list[Fact]) -> Any:
        if spec.is_categorical:
            raise CfdbUnsupportedError(f"feature {spec.name!r} is compared with a number")
        y = self.numeric[spec.name]
        step = resolution(spec, c)
        if spec.type == "integer":
            lo = Fraction(math.ceil(c)) if op in (">=",) else Fraction(math.floor(c) + 1)
            hi = Fraction(math.floor(c)) if op in ("<=",) else Fraction(math.ceil(c) - 1)
        else:
            lo, hi = (c if op == ">=" else c + step), (c if op == "<=" else c - step)
        name = spec.name
        if op == "=":
            if not _fits(spec, c):
                return _false(self)
            return self._guarded(y == real(self.ctx, c), into, (name, "=", c))
        parts = []
        if op in ("<", "<=", "<>"):
            parts.append(self._guarded(y <= real(self.ctx, hi), into, (name, "<=", hi)))
        if op in (">", ">=", "<>"):
            parts.append(self._guarded(y >= real(self.ctx, lo), into, (name, ">=", lo)))
        return parts[0] if len(parts) == 1 else z3.Or(parts)

    def _var_compare(self, left: FeatureSpec, op: str, right: FeatureSpec, into: list[Fact]) -> Any:
        if left.is_categorical != right.is_categorical:
            raise CfdbUnsupportedError(
                f"features {left.name!r} and {right.name!r} are compared but differ in type"
            )
        if left.is_categorical:
            li, ri = self.indicator[left.name], self.indicator[right.name]
            pairs = [z3.And(li[a], ri[b]) for a in li for b in ri if compare(a, op, b)]
            return z3.Or(pairs) if pairs else z3.BoolVal(False, self.ctx)
        # As reals variable by variable: the polish relaxes integers through ToReal(y).
        diff = self.real_of(left.name) - self.real_of(right.name)
        both_int = left.type == right.type == "integer"
        step = Fraction(1) if both_int else min(resolution(left, 0), resolution(right, 0))
        zero = real(self.ctx, 0)
        if op == "=":
            return self._guarded(diff == zero, into)
        if op == "<>":
            return z3.Or(
                self._guarded(diff >= real(self.ctx, step), into),
                self._guarded(diff <= real(self.ctx, -step), into),
            )
        bound = {">": step, ">=": 0, "<": -step, "<=": 0}[op]
        atom = diff >= real(self.ctx, bound) if op in (">", ">=") else diff <= real(self.ctx, bound)
        return self._guarded(atom, into)


_NEGATE = {"=": "<>", "<>": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


def _affine(ctx: z3.Context, terms: list[Any], weights: np.ndarray, bias: float) -> Any:
    """``Σ w·t + b`` with the float weights as exact fractions (zero weights left out)."""
    parts = [real(ctx, Fraction(float(w))) * t for t, w in zip(terms, weights, strict=True) if w]
    return z3.Sum([*parts, real(ctx, Fraction(float(bias)))])


def _false(enc: Encoding) -> Any:
    return z3.BoolVal(False, enc.ctx)


def _fits(spec: FeatureSpec, c: Fraction) -> bool:
    return spec.type != "integer" or c.denominator == 1


def _short(q: Fraction) -> Fraction:
    """``q`` rounded to 12 significant digits (relative error below :data:`ROUNDING`)."""
    return Fraction(f"{float(q):.12g}")


def mad(spec: FeatureSpec) -> float:
    """The MAD that scales a numeric feature (1 when unknown or zero), as in the distances."""
    return float(spec.mad) if spec.mad else 1.0


def resolution(spec: FeatureSpec, near: float | Fraction) -> Fraction:
    """The smallest move a strict comparison on a real feature asks for near ``near``."""
    if spec.type == "integer":
        return Fraction(1)
    return Fraction(max(RESOLUTION * mad(spec), 1e-12 * abs(float(near))))


@dataclass
class TaskTerms:
    """What one task adds on top of the model's encoding.

    Attributes:
        facts: the task's arithmetic facts.
        changed: per mutable feature, the literal "the CF changes it".
        cost: per mutable feature, the real term of its change (``|y - x|`` or 0/1).
        x: the instance's numeric values, exactly.
    """

    facts: list[Fact] = field(default_factory=list)
    changed: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    x: dict[str, Fraction] = field(default_factory=dict)


def instance_terms(enc: Encoding, x: dict[str, Any]) -> TaskTerms | None:
    """Assert the per-instance constraints (in the solver's current scope): immutable features
    keep their values, numeric features stay within their observed range (widened to contain
    the instance), and change literals and change costs for the mutable features.

    Returns:
        The task's terms, or None when the instance cannot be represented (an immutable
        categorical value outside the active domain).
    """
    out = TaskTerms()
    ctx = enc.ctx
    for i, f in enumerate(enc.features):
        value = x[f.name]
        if f.is_categorical:
            here = enc.indicator[f.name].get(value_string(value))
            if not f.mutable:
                if here is None:
                    return None
                enc.solver.add(here)
                continue
            e = z3.Real(f"e!{i}", ctx)
            if here is None:  # the instance's value is outside the domain: always changed
                ch = z3.BoolVal(True, ctx)
                enc.fact(None, e == 1, out.facts, fixes=(e, Fraction(1)))
            else:
                ch = z3.Not(here)
                enc.fact(ch, e == 1, out.facts, fixes=(e, Fraction(1)))
                enc.fact(here, e == 0, out.facts, fixes=(e, Fraction(0)))
            out.changed[f.name], out.cost[f.name] = ch, e
            continue
        y = enc.numeric[f.name]
        name = f.name
        v = Fraction(float(value))
        assumed = enc.network_range.get(name)
        if assumed is not None and not assumed[0] <= float(value) <= assumed[1]:
            return None  # the network's ReLU analysis assumed the observed range
        if f.type == "integer":
            v = Fraction(round(v))
        out.x[name] = v
        if not f.mutable:
            enc.fact(None, y == real(ctx, v), out.facts, bound=(name, "=", v))
            continue
        if f.min is not None:
            lo = min(Fraction(float(f.min)), v)
            lo = Fraction(math.floor(lo)) if f.type == "integer" else lo
            enc.fact(None, y >= real(ctx, lo), out.facts, bound=(name, ">=", lo))
        if f.max is not None:
            hi = max(Fraction(float(f.max)), v)
            hi = Fraction(math.ceil(hi)) if f.type == "integer" else hi
            enc.fact(None, y <= real(ctx, hi), out.facts, bound=(name, "<=", hi))
        ch = z3.Bool(f"changed!{i}", ctx)
        step = resolution(f, v)
        up, down = z3.Bool(f"up!{i}", ctx), z3.Bool(f"down!{i}", ctx)
        enc.fact(z3.Not(ch), y == real(ctx, v), out.facts, bound=(name, "=", v))
        enc.fact(up, y >= real(ctx, v + step), out.facts, bound=(name, ">=", v + step))
        enc.fact(down, y <= real(ctx, v - step), out.facts, bound=(name, "<=", v - step))
        enc.solver.add(z3.Implies(ch, z3.Or(up, down)))
        d = z3.Real(f"d!{i}", ctx)
        enc.fact(None, d >= y - real(ctx, v), out.facts, aux=True)
        enc.fact(None, d >= real(ctx, v) - y, out.facts, aux=True)

        out.changed[name], out.cost[name] = ch, d
    return out


def weights(enc: Encoding, terms: TaskTerms, objective: str) -> dict[str, Fraction]:
    """The weight of each mutable feature's change term in an objective (``l1``, ``tabular``):
    1/MAD per unit of a numeric feature (times ``n_num/n`` for tabular), 1 per changed
    categorical (``n_cat/n`` for tabular)."""
    n = len(enc.features)
    n_cat = sum(f.is_categorical for f in enc.features)
    out = {}
    for f in enc.features:
        if f.name not in terms.cost:
            continue
        if f.is_categorical:
            out[f.name] = Fraction(1) if objective == "l1" else Fraction(n_cat, n)
        else:
            w = Fraction(1) / Fraction(mad(f))
            out[f.name] = w * Fraction(n - n_cat, n) if objective == "tabular" else w
    return out


def cost_term(enc: Encoding, terms: TaskTerms, w: dict[str, Fraction]) -> Any:
    """The linear cost ``Σ w_f · change_f`` as a z3 term."""
    parts = [real(enc.ctx, w[name]) * terms.cost[name] for name in w]
    return z3.Sum(parts) if parts else real(enc.ctx, 0)


def truth(model: Any, decls: dict[str, Any]) -> dict[str, bool]:
    """The values of Boolean constants ``decls`` (by name) in a z3 model; a constant the model
    leaves free is False (z3's model completion). Uses the C API: the Python layer costs ~100
    times more per lookup."""
    ctx, ref = model.ctx.ref(), model.model
    out = {}
    for name, decl in decls.items():
        value = z3core.Z3_model_get_const_interp(ctx, ref, decl.ast)
        out[name] = bool(value) and z3core.Z3_get_bool_value(ctx, value) == z3.Z3_L_TRUE
    return out
