"""Satisfiability of conditions with z3 over the features' domains (CFDB paper, section 4.1).

Categorical variables range over their active domain (an integer index into the sorted
domain, so ``y_Home ≠ rent ⇒ y_Home = own`` holds for a binary domain), booleans over
{false, true}, integer features over the integers and numeric ones over the reals. One solver
is kept per :class:`Solver` and reused with push/pop (a fresh solver per check is ~10× slower).
Cheap exact pre-checks come first: a normalized condition that is a constant, or a
conjunction of single-variable atoms, needs no solver call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import z3

from cfdb.ctable.condition import (
    FALSE,
    TRUE,
    And,
    Cmp,
    Cond,
    Const,
    Domains,
    Member,
    Not,
    Or,
    VarCmp,
    compare,
    normalize,
    quick_satisfiable,
    substitute,
    to_sql,
    variables,
)
from cfdb.errors import CfdbSolverError
from cfdb.types import FeatureSpec


class Solver:
    """z3 over one feature space; counts solver calls.

    Args:
        features: the feature space (types and active domains).
        timeout_ms: z3's per-check timeout; an ``unknown`` answer raises CfdbSolverError.
    """

    def __init__(self, features: Iterable[FeatureSpec], timeout_ms: int = 10_000) -> None:
        self.domains = Domains(features)
        self.context = z3.Context()
        self.solver = z3.Solver(ctx=self.context)
        self.solver.set("timeout", timeout_ms)
        self.calls = 0
        self._vars: dict[str, Any] = {}
        self._index: dict[str, dict[str, int]] = {}
        self._cache: dict[tuple[Any, ...], bool] = {}

    # -- encoding ---------------------------------------------------------------------------
    def var(self, name: str) -> Any:
        key = name.lower()
        if key not in self._vars:
            spec = self.domains.spec(name)
            if spec.is_categorical:
                values = sorted(self.domains.domain(name))
                self._index[key] = {v: i for i, v in enumerate(values)}
                self._vars[key] = z3.Int(f"y_{spec.name}", self.context)
            elif spec.type == "integer":
                self._vars[key] = z3.Int(f"y_{spec.name}", self.context)
            else:
                self._vars[key] = z3.Real(f"y_{spec.name}", self.context)
        return self._vars[key]

    def domain_bounds(self, names: Iterable[str]) -> list[Any]:
        """The domain constraints of the variables ``names`` (categorical index ranges)."""
        out = []
        for name in names:
            if self.domains.spec(name).is_categorical:
                v = self.var(name)
                size = len(self._index[name.lower()])
                out.append(z3.And(v >= 0, v < size))
        return out

    def encode(
        self,
        cond: Cond,
        constant: Callable[[Cmp], Any] | None = None,
        member: Callable[[Member, Any], Any] | None = None,
    ) -> Any:
        """The z3 term of a condition.

        For shapes of conditions (constants as parameters): ``constant`` gives the term that
        stands for each numeric comparison's constant, and ``member`` the term of a
        categorical membership (given the variable's index term), or ``None`` to encode it
        as usual.
        """
        ctx = self.context
        if isinstance(cond, Const):
            return z3.BoolVal(cond.value, ctx)
        if isinstance(cond, Member):
            v = self.var(cond.var)
            if member is not None and (term := member(cond, v)) is not None:
                return term
            index = self._index[cond.var.lower()]
            terms = [v == index[x] for x in sorted(cond.values) if x in index]
            inside = z3.Or(terms) if terms else z3.BoolVal(False, ctx)
            return z3.Not(inside) if cond.negated else inside
        if isinstance(cond, Cmp):
            value = constant(cond) if constant is not None else _num(cond.value, ctx)
            return _op(self.var(cond.var), cond.op, value)
        if isinstance(cond, VarCmp):
            left, right = self.var(cond.left), self.var(cond.right)
            if self.domains.spec(cond.left).is_categorical:
                # Compare values, not domain indices: the two domains may differ.
                li, ri = self._index[cond.left.lower()], self._index[cond.right.lower()]
                pairs = [
                    z3.And(left == li[a], right == ri[b])
                    for a in li
                    for b in ri
                    if compare(a, cond.op, b)
                ]
                return z3.Or(pairs) if pairs else z3.BoolVal(False, ctx)
            return _op(left, cond.op, right)
        if isinstance(cond, Not):
            return z3.Not(self.encode(cond.item, constant, member))
        if isinstance(cond, And):
            return z3.And([self.encode(c, constant, member) for c in cond.items])
        if isinstance(cond, Or):
            return z3.Or([self.encode(c, constant, member) for c in cond.items])
        raise TypeError(f"not a condition: {cond!r}")

    # -- questions --------------------------------------------------------------------------
    def _check(self, term: Any, names: Iterable[str]) -> bool:
        self.calls += 1
        self.solver.push()
        try:
            self.solver.add(*self.domain_bounds(names), term)
            answer = self.solver.check()
        finally:
            self.solver.pop()
        if answer == z3.unknown:
            raise CfdbSolverError(
                f"z3 could not decide a condition: {self.solver.reason_unknown()}"
            )
        return answer == z3.sat

    def satisfiable(self, cond: Cond, fixed: Mapping[str, Any] | None = None) -> bool:
        """Whether some CF in the domains satisfies ``cond`` with ``fixed`` variables held."""
        mentioned = variables(cond)
        fixed = {k: v for k, v in (fixed or {}).items() if k in mentioned}
        key = (to_sql(cond), tuple(sorted((k, str(v)) for k, v in fixed.items())))
        if key in self._cache:
            return self._cache[key]
        cond = substitute(cond, fixed, self.domains) if fixed else normalize(cond, self.domains)
        answer = quick_satisfiable(cond)
        if answer is None:
            answer = self._check(self.encode(cond), variables(cond))
        self._cache[key] = answer
        return answer

    def implies(self, a: Cond, b: Cond) -> bool:
        """Whether every CF satisfying ``a`` satisfies ``b`` (``a ∧ ¬b`` unsatisfiable)."""
        a, b = normalize(a, self.domains), normalize(b, self.domains)
        if a == FALSE or b == TRUE:
            return True
        return self.implies_terms(self.encode(a), self.encode(b), variables(a) | variables(b))

    def implies_terms(self, a: Any, b: Any, names: Iterable[str]) -> bool:
        """``a ⇒ b`` for already encoded conditions over the variables ``names``."""
        return not self._check(z3.And(a, z3.Not(b)), names)


def _num(value: float, ctx: Any) -> Any:
    v = float(value)
    return z3.IntVal(int(v), ctx) if v.is_integer() else z3.RealVal(repr(v), ctx)


def _op(a: Any, op: str, b: Any) -> Any:
    if op == "=":
        return a == b
    if op == "<>":
        return a != b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b
