"""The anytime search for closest counterfactuals over an :class:`~.smt_encode.Encoding`.

One job is one instance: its constraints go in a solver scope (``push``/``pop``) on top of the
model's encoding. The objectives:

* ``l0``: the number of changed features. Linear search downwards with cardinality bounds as
  assumptions: each model with ``k`` changes is followed by ``AtMost(changes, k - 1)``; an
  unsatisfiable bound proves the last one optimal.
* ``l1`` (Σ |y − x| / MAD over numeric features plus changed categoricals) and ``tabular``
  (the same terms weighted by ``n_num/n`` and ``n_cat/n``): a search on the cost. After each
  model, the facts its Booleans activate form a linear program (see :mod:`~.smt_encode`); its
  optimum, the best CF of that region, is found by clamping each feature into its interval
  when every fact bounds one feature (trees), else exactly with ``z3.Optimize`` over reals plus
  branch and bound on integer features (z3's own integer optimization is ~100 times slower
  here). The next check asks for a cost at most halfway between the best cost and a lower
  bound (bisection) until they are within 1%, then strictly below the best, so each region is
  visited at most once and the final unsatisfiable check proves optimality.
* ``l0_l1``: ``l0`` first, then ``l1`` among the CFs with the fewest changes.

z3's ``Optimize`` over the whole formula was much slower here (3 to 7 seconds per instance of
a 10-tree forest on UCI Adult, against tenths of a second) and gives no intermediate answers;
this loop yields an improving sequence, each CF emitted as soon as found, which is what a time
limit keeps.

For ``n > 1`` the search repeats under blocking clauses: each later CF must change another set
of features, or give a changed categorical feature another value, than every earlier one; each
is optimal among the CFs not blocked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import z3

from cfdb.ctable.condition import Cond, value_string
from cfdb.generators.smt_encode import (
    Encoding,
    Fact,
    TaskTerms,
    cost_term,
    instance_terms,
    truth,
    weights,
)

OBJECTIVES = ("l0", "l1", "tabular", "l0_l1")
#: The cost search bisects until the bounds are this close (relatively), then descends.
BISECT_UNTIL = 0.01


@dataclass(frozen=True)
class Job:
    """One instance to solve.

    Attributes:
        instance: the instance's raw values by feature.
        condition: the normalized condition.
        original: the class code of the instance's label.
        target: the class code a CF must get (None: any other).
        n: how many CFs.
        objective: one of :data:`OBJECTIVES`.
        margin: how much a winning score must exceed the others.
        ties: whether exact ties count for the class the estimator breaks them for.
        regression: for a regressor, ``(original output, min_change, direction)``; the class
            codes are then unused.
        score: ``(lowest, highest)`` encoded score (None: unbounded), from a bound on the
            CF's score (:mod:`~.smt_output`); None: no bound.
    """

    instance: dict[str, Any]
    condition: Cond
    original: int
    target: int | None
    n: int
    objective: str
    margin: float
    ties: bool = True
    regression: tuple[float, float, str] | None = None
    score: tuple[Fraction | None, Fraction | None] | None = None


@dataclass
class Found:
    """One CF, possibly improved later.

    Attributes:
        index: which CF of the job (0 is the closest).
        values: raw values by feature (float, int, or str for categoricals).
        l0: its number of changed features.
        cost: its objective value (exact).
        optimal: whether it is proven optimal (given the earlier CFs).
    """

    index: int
    values: dict[str, Any]
    l0: int
    cost: Fraction
    optimal: bool = False


class OutOfTime(Exception):
    """The in-process search ran out of time (or z3 answered unknown)."""


class Search:
    """Runs jobs on one encoding; ``deadline`` bounds each check when solving in-process."""

    def __init__(self, enc: Encoding) -> None:
        self.enc = enc
        self.deadline: float | None = None
        self._lp_cache: tuple[TaskTerms, list[Fact], dict[str, Any]] | None = None

    def _check(self, assumptions: list[Any]) -> bool:
        solver = self.enc.solver
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise OutOfTime
            solver.set("timeout", max(1, int(left * 1000)))
        answer = solver.check(*assumptions)
        if answer == z3.unknown:
            raise OutOfTime
        return answer == z3.sat

    def run(self, job: Job, emit: Callable[[Found], None]) -> str:
        """Solve ``job``, calling ``emit`` with every improvement.

        Returns:
            ``"done"`` (every CF found proven optimal, or fewer exist), or ``"infeasible"``
            (no CF at all).
        """
        enc = self.enc
        enc.solver.push()
        try:
            terms = instance_terms(enc, job.instance)
            if terms is None:
                return "infeasible"
            if job.regression is not None:
                enc.regression_target(*job.regression, Fraction(job.margin), terms.facts)
            else:
                enc.decision(job.original, job.target, Fraction(job.margin), job.ties, terms.facts)
            if job.score is not None:
                _score_bounds(enc, job.score, Fraction(job.margin), terms.facts)
            enc.solver.add(enc.condition(job.condition, terms.facts))
            for index in range(job.n):
                best = self._one(job, terms, index, emit)
                if best is None:
                    return "infeasible" if index == 0 else "done"
                best.optimal = True
                emit(best)
                if index + 1 < job.n:
                    enc.solver.add(self._block(terms, job.instance, best))
            return "done"
        finally:
            enc.solver.pop()

    def _one(
        self, job: Job, terms: TaskTerms, index: int, emit: Callable[[Found], None]
    ) -> Found | None:
        enc = self.enc
        changed = list(terms.changed.values())
        l1 = weights(enc, terms, "l1")
        held: list[Any] = []
        if not self._check(held):
            return None
        if job.objective in ("l0", "l0_l1"):
            best = self._polish(job, terms, index, l1, count=job.objective == "l0")
            emit(best)
            while best.l0 > 0:
                bound = enc.fresh("l0")
                enc.solver.add(z3.Implies(bound, z3.AtMost(*changed, best.l0 - 1)))
                if not self._check([*held, bound]):
                    break
                best = self._polish(job, terms, index, l1, count=job.objective == "l0")
                emit(best)
            if job.objective == "l0":
                return best
            if changed:
                keep = enc.fresh("l0")
                enc.solver.add(z3.Implies(keep, z3.AtMost(*changed, best.l0)))
                held.append(keep)
        w = l1 if job.objective in ("l1", "l0_l1") else weights(enc, terms, "tabular")
        cost = cost_term(enc, terms, w)
        if job.objective != "l0_l1":  # (l0_l1 goes on from the L0 phase's best, L1-polished)
            best = self._polish(job, terms, index, w)
            emit(best)
        # `low` only steers the bisection (no CF was found at or below it); optimality rests on
        # the final strict check alone.
        low = Fraction(0)
        while True:
            # Bisect while the gap is wide, then ask for anything strictly better.
            strict = best.cost - low <= BISECT_UNTIL * best.cost
            limit = best.cost if strict else (low + best.cost) / 2
            bound = enc.fresh("cost")
            atom = cost < _real(enc, limit) if strict else cost <= _real(enc, limit)
            enc.solver.add(z3.Implies(bound, atom))
            if self._check([*held, bound]):
                best = self._polish(job, terms, index, w)
                emit(best)
            elif strict:
                return best
            else:
                low = limit

    def _polish(
        self,
        job: Job,
        terms: TaskTerms,
        index: int,
        w: dict[str, Fraction],
        count: bool = False,
    ) -> Found:
        """The best CF with the Boolean skeleton of the solver's model: the optimum of the
        linear program its active facts form (by clamping when every fact bounds one
        feature). ``count`` reports the number of changes as the cost."""
        enc = self.enc
        m = enc.solver.model()
        candidates, decls = self._lp_facts(terms)
        t = truth(m, decls)
        facts = [f for f in candidates if f.holds(t)]
        values: dict[str, Any] = {}
        for f in enc.features:
            if f.is_categorical:
                names = enc.indicator_name[f.name]
                values[f.name] = next(
                    (v for v, name in names.items() if t.get(name, False)),
                    value_string(job.instance[f.name]),
                )
        numbers = _clamp(enc, terms, facts)
        if numbers is None:
            numbers = self._program(terms, facts, w, m)
        values.update(numbers)
        l0 = sum(
            1
            for f in enc.features
            if f.name in terms.changed and not _same(values[f.name], job.instance[f.name], f.type)
        )
        if count:
            return Found(index, _floats(values), l0, Fraction(l0))
        cost = Fraction(0)
        for name, weight in w.items():
            if name in terms.x:
                cost += weight * abs(values[name] - terms.x[name])
            elif values[name] != value_string(job.instance[name]):
                cost += weight
        return Found(index, _floats(values), l0, cost)

    def _lp_facts(self, terms: TaskTerms) -> tuple[list[Fact], dict[str, Any]]:
        """The facts a polish may need and the Boolean constants to read (cached per job)."""
        if self._lp_cache is None or self._lp_cache[0] is not terms:
            facts = [f for f in (*self.enc.facts, *terms.facts) if f.lp]
            names = {f.guard for f in facts if f.guard is not None}
            for per_value in self.enc.indicator_name.values():
                names.update(per_value.values())
            decls = {name: self.enc.decls[name] for name in sorted(names)}
            self._lp_cache = (terms, facts, decls)
        return self._lp_cache[1], self._lp_cache[2]

    def _program(
        self, terms: TaskTerms, facts: list[Fact], w: dict[str, Fraction], m: Any
    ) -> dict[str, Fraction]:
        """The linear program's optimum, exactly: auxiliary variables the Booleans fix are
        substituted, each feature keeps its tightest bounds, integer features are relaxed to
        reals and branched on (z3's ``Optimize`` over integers is ~100 times slower here)."""
        enc = self.enc
        ctx = enc.ctx
        swap = [(f.fixes[0], _real(enc, f.fixes[1])) for f in facts if f.fixes is not None]
        reals = {}
        for name, y in enc.numeric.items():
            if y.is_int():
                reals[name] = z3.Real(f"lp!y!{name}", ctx)
                swap.append((z3.ToReal(y), reals[name]))
            else:
                reals[name] = y
        lo: dict[str, Fraction] = {}
        hi: dict[str, Fraction] = {}
        atoms = []
        for f in facts:
            if f.bound is not None:
                name, op, v = f.bound
                if op != "<=" and (name not in lo or v > lo[name]):
                    lo[name] = v
                if op != ">=" and (name not in hi or v < hi[name]):
                    hi[name] = v
            elif not f.aux:
                atoms.append(z3.simplify(z3.substitute(f.atom, *swap)))
        # Every integer should appear as ToReal(y); should one not, tie it to its relaxation.
        left = _constants(atoms) & {y.get_id() for y in enc.numeric.values() if y.is_int()}
        for name, y in enc.numeric.items():
            if y.get_id() in left:
                atoms.append(z3.ToReal(y) == reals[name])
        cost = []
        for name, y in reals.items():
            if name in lo:
                atoms.append(y >= _real(enc, lo[name]))
            if name in hi:
                atoms.append(y <= _real(enc, hi[name]))
            if name in w:
                d = z3.Real(f"lp!d!{name}", ctx)
                x = _real(enc, terms.x[name])
                atoms += [d >= y - x, d >= x - y]
                cost.append(_real(enc, w[name]) * d)
        objective = z3.Sum(cost) if cost else _real(enc, Fraction(0))
        integers = [name for name, y in enc.numeric.items() if y.is_int()]

        def relaxed(extra: list[Any]) -> tuple[Fraction, dict[str, Fraction]] | None:
            opt = z3.Optimize(ctx=ctx)
            if self.deadline is not None:
                opt.set("timeout", max(1, int((self.deadline - time.monotonic()) * 1000)))
            opt.add(atoms + extra)
            opt.minimize(objective)
            answer = opt.check()
            if answer == z3.unknown:
                raise OutOfTime
            if answer == z3.unsat:
                return None
            pm = opt.model()
            value = _number(pm.eval(objective, model_completion=True))
            return value, {n: _number(pm.eval(r, model_completion=True)) for n, r in reals.items()}

        def fractional(point: dict[str, Fraction]) -> str | None:
            return next((n for n in integers if point[n].denominator != 1), None)

        root = relaxed([])
        if root is None:  # pragma: no cover - the solver's own model is feasible
            return {n: _number(m.eval(y, model_completion=True)) for n, y in enc.numeric.items()}
        if fractional(root[1]) is None:
            return root[1]
        # An incumbent first: round every fractional integer away from the instance (moving
        # further keeps a crossed boundary crossed), then branch and bound below it.
        away = []
        for n in integers:
            v, x = root[1][n], terms.x[n]
            if v.denominator != 1:
                k = math.ceil(v) if v > x else math.floor(v)
                away.append(reals[n] == _real(enc, Fraction(k)))
        best = relaxed(away)
        if best is not None and fractional(best[1]) is not None:
            best = None
        stack: list[list[Any]] = [[]]
        while stack:
            branch = stack.pop()
            node = root if not branch else relaxed(branch)
            if node is None or (best is not None and node[0] >= best[0]):
                continue
            split = fractional(node[1])
            if split is None:
                best = node
                continue
            r, v = reals[split], node[1][split]
            down = [*branch, r <= _real(enc, Fraction(math.floor(v)))]
            up = [*branch, r >= _real(enc, Fraction(math.ceil(v)))]
            # Depth first, the side nearer the relaxed value first.
            nearer_up = v - math.floor(v) >= Fraction(1, 2)
            stack += [down, up] if nearer_up else [up, down]
        if best is None:  # pragma: no cover - the solver's own model is feasible
            return {n: _number(m.eval(y, model_completion=True)) for n, y in enc.numeric.items()}
        return best[1]

    def _block(self, terms: TaskTerms, x: dict[str, Any], best: Found) -> Any:
        enc = self.enc
        lits = []
        for f in enc.features:
            if f.name not in terms.changed:
                continue
            if _same(best.values[f.name], x[f.name], f.type):
                lits.append(terms.changed[f.name])
            elif f.is_categorical:
                lits.append(z3.Not(enc.indicator[f.name][best.values[f.name]]))
            else:
                lits.append(z3.Not(terms.changed[f.name]))
        return z3.Or(lits) if lits else z3.BoolVal(False, enc.ctx)


def _score_bounds(
    enc: Encoding, bounds: tuple[Fraction | None, Fraction | None], margin: Fraction, into: list
) -> None:
    """Assert ``low <= score <= high`` on the single encoded score, with ``margin`` (and the
    rounding slack of linear coefficients) to spare on each side."""
    s = enc.scores[0]
    lp = enc.compiled.is_linear  # tree scores are fixed by the leaves
    low, high = bounds
    for value, above in ((low, True), (high, False)):
        if value is None:
            continue
        spare = margin + enc.slack + Fraction(1e-12) * (1 + abs(value))
        atom = s >= _real(enc, value + spare) if above else s <= _real(enc, value - spare)
        enc.fact(None, atom, into, lp=lp)


def _real(enc: Encoding, q: Fraction) -> Any:
    return z3.RealVal(f"{q.numerator}/{q.denominator}", enc.ctx)


def _number(term: Any) -> Fraction:
    if z3.is_int_value(term):
        return Fraction(term.as_long())
    if z3.is_rational_value(term):
        return Fraction(term.numerator_as_long(), term.denominator_as_long())
    raise ValueError(f"not a number: {term}")  # pragma: no cover - the encoding is linear


def _constants(terms: list[Any]) -> set[int]:
    """The ids of the uninterpreted constants in z3 terms."""
    seen: set[int] = set()
    out: set[int] = set()
    stack = list(terms)
    while stack:
        t = stack.pop()
        if t.get_id() in seen:
            continue
        seen.add(t.get_id())
        if z3.is_const(t) and t.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            out.add(t.get_id())
        stack.extend(t.children())
    return out


def _clamp(enc: Encoding, terms: TaskTerms, facts: list[Fact]) -> dict[str, Fraction] | None:
    """The separable optimum: each numeric feature at the point of its interval closest to the
    instance; None when some fact ties several features (then a linear program decides)."""
    lo: dict[str, Fraction] = {}
    hi: dict[str, Fraction] = {}
    for f in facts:
        if f.bound is None:
            if f.aux:
                continue
            return None
        name, op, v = f.bound
        if op != "<=" and (name not in lo or v > lo[name]):
            lo[name] = v
        if op != ">=" and (name not in hi or v < hi[name]):
            hi[name] = v
    out = {}
    for f in enc.features:
        if f.is_categorical:
            continue
        name = f.name
        low, high = lo.get(name), hi.get(name)
        if f.type == "integer":
            low = None if low is None else Fraction(math.ceil(low))
            high = None if high is None else Fraction(math.floor(high))
        if low is not None and high is not None and low > high:
            return None  # pragma: no cover - the solver's model lies in the interval
        y = terms.x.get(name, Fraction(0) if low is None else low)
        if low is not None and y < low:
            y = low
        if high is not None and y > high:
            y = high
        out[name] = y
    return out


def _floats(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, Fraction) else v) for k, v in values.items()}


def _same(value: Any, x: Any, kind: str) -> bool:
    if kind in ("categorical", "boolean"):
        return value == value_string(x)
    return value == Fraction(float(x))
