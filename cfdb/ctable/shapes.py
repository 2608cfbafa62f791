"""Implication decided per pair of condition *shapes*, in bulk (CFDB paper, section 4.1, at scale).

The conditions of one CFQL query differ only in their constants: ``y_age ≠ 30 ∧ y_balance ≠
1200`` for one prediction, ``y_age ≠ 41 ∧ y_balance ≠ 88`` for the next. A *shape* is a
normalized condition with its numeric constants replaced by parameters (categorical value
sets, operators and structure stay part of the shape). For two shapes ``A(y, p)`` and
``B(y, q)``, z3's quantifier elimination turns

    ∀y. dom(y) ∧ A(y, p) ⇒ B(y, q)

into an equivalent quantifier-free formula ``Φ(p, q)`` over the parameters alone: one proof per
pair of shapes. ``Φ`` is then evaluated with numpy for every pair of parameter vectors at once,
so a block of ``|S| × |T|`` pairs costs one z3 call and a few vectorized comparisons instead of
``|S| · |T|`` solver calls.

Exactness: the elimination is exact (z3's ``qe`` tactic over linear integer and real
arithmetic). ``Φ`` is evaluated in float64 only where that is exact: linear atoms over integer
parameters whose values are integers below 2^50 in magnitude, or comparisons ``x op ±y`` and
``x op k`` between real parameters (the sign of a float difference is exact). A block whose
``Φ`` needs anything else — or whose elimination does not finish within its time budget — is
left undecided, and the caller decides those pairs one by one as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import z3

from cfdb.ctable.condition import TRUE, And, Cmp, Cond, Const, Domains, Member, Not, Or, VarCmp
from cfdb.ctable.solve import Solver

# Float64 represents every integer below 2^53 exactly. Integer parameters below 2^40, times
# coefficients below 64, summed over at most 16 terms, stay below 2^50: every partial sum exact.
_EXACT_INT = float(2**40)
_MAX_COEF = 64
_MAX_TERMS = 16
# Elements of one evaluated block at a time (bounded memory for big blocks).
_CHUNK = 1 << 21


@dataclass(frozen=True)
class Shape:
    """A condition with its numeric constants abstracted.

    Attributes:
        key: the structure (hashable), parameters marked by position.
        kinds: per parameter, ``'int'`` (an integer feature compared with an integer) or
            ``'real'``.
    """

    key: Any
    kinds: tuple[str, ...]


def member_parameter(member: Member, domains: Domains) -> tuple[str, int] | None:
    """A categorical set that is one value (``y = v``) or all values but one (``y ≠ v``) is
    a parameter: ``('=', index)`` or ``('<>', index)`` of ``v`` in the sorted domain. Other
    sets stay part of the shape."""
    if member.negated or not domains.spec(member.var).is_categorical:
        return None
    domain = sorted(domains.domain(member.var))
    if len(member.values) == 1:
        (value,) = member.values
        return ("=", domain.index(value)) if value in domain else None
    if len(domain) >= 3 and len(member.values) == len(domain) - 1:
        missing = set(domain) - member.values
        if len(missing) == 1:
            return "<>", domain.index(missing.pop())
    return None


def shape_of(cond: Cond, domains: Domains) -> tuple[Shape, tuple[float, ...]]:
    """The shape of a normalized condition and its parameter vector (constants in DFS order)."""
    params: list[float] = []
    kinds: list[str] = []

    def walk(c: Cond) -> Any:
        if isinstance(c, Cmp):
            value = float(c.value)
            kinds.append("int" if domains.is_integer(c.var) and value.is_integer() else "real")
            params.append(value)
            return ("C", c.var.lower(), c.op, kinds[-1])
        if isinstance(c, Member) and (found := member_parameter(c, domains)) is not None:
            kinds.append("int")
            params.append(float(found[1]))
            return ("P", c.var.lower(), found[0])
        if isinstance(c, And | Or):
            return ("A" if isinstance(c, And) else "O", tuple(walk(x) for x in c.items))
        if isinstance(c, Not):
            return ("N", walk(c.item))
        if isinstance(c, Member):
            return ("M", c.var.lower(), c.values, c.negated)
        if isinstance(c, VarCmp):
            return ("V", c.left.lower(), c.op, c.right.lower())
        if isinstance(c, Const):
            return ("K", c.value)
        raise TypeError(f"not a condition: {c!r}")

    key = walk(cond)
    return Shape(key, tuple(kinds)), tuple(params)


_TRUE_SHAPE = Shape(("K", True), ())


@dataclass
class Blocks:
    """Pairs decided in bulk.

    Attributes:
        decided: ``decided[i, j]``: the pair ``(i, j)`` was decided here.
        edge: ``edge[i, j]``: ``cond[i] ⇒ cond[j]`` (meaningful where decided).
        valid: per condition decided here, whether it holds in every world.
        shapes: distinct shapes among the conditions.
        blocks: shape pairs decided in bulk; ``eliminations``: z3 eliminations run (cached
            ones excluded); ``pairs``: condition pairs decided.
    """

    decided: np.ndarray
    edge: np.ndarray
    shapes: int = 0
    blocks: int = 0
    eliminations: int = 0
    pairs: int = 0
    valid: dict[int, bool] = field(default_factory=dict)
    undecided_blocks: list[tuple[int, int]] = field(default_factory=list)


class SymbolicImplication:
    """Quantifier elimination per pair of shapes, cached, over one solver's context.

    Args:
        solver: provides the z3 context, the feature variables and the domain encoding.
        budget_ms: time budget of one elimination; past it the block is left undecided.
    """

    def __init__(self, solver: Solver, budget_ms: int = 3000) -> None:
        self.solver = solver
        self.budget_ms = budget_ms
        self.eliminations = 0
        self._cache: dict[tuple[Any, Any], Callable[..., np.ndarray] | None] = {}

    def _encode(self, shape_cond: Cond, prefix: str, kinds: Sequence[str]) -> tuple[Any, list]:
        ctx = self.solver.context
        symbols = [
            (z3.Int if kind == "int" else z3.Real)(f"{prefix}{k}", ctx)
            for k, kind in enumerate(kinds)
        ]
        it = iter(symbols)
        domains = self.solver.domains

        def member(m: Member, var: Any) -> Any:
            found = member_parameter(m, domains)
            if found is None:
                return None
            param = next(it)
            return var == param if found[0] == "=" else var != param

        term = self.solver.encode(shape_cond, constant=lambda _cmp: next(it), member=member)
        return term, symbols

    def formula(
        self, a: Cond, shape_a: Shape, b: Cond, shape_b: Shape
    ) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
        """A vectorized ``Φ(p, q)`` for the shapes of ``a`` and ``b`` (representatives), or
        ``None`` when it cannot be evaluated exactly."""
        key = (shape_a, shape_b)
        if key in self._cache:
            return self._cache[key]
        ctx = self.solver.context
        term_a, ps = self._encode(a, "p", shape_a.kinds)
        term_b, qs = self._encode(b, "q", shape_b.kinds)
        names = sorted(_variables_of(a) | _variables_of(b))
        ys = [self.solver.var(n) for n in names]
        body = z3.Implies(z3.And(*self.solver.domain_bounds(names), term_a), term_b)
        goal = z3.Goal(ctx=ctx)
        goal.add(z3.ForAll(ys, body) if ys else body)
        self.eliminations += 1
        compiled = None
        try:
            tactic = z3.TryFor(
                z3.Then(z3.Tactic("qe", ctx), z3.Tactic("simplify", ctx)), self.budget_ms
            )
            result = tactic(goal)
            disjuncts = [z3.And(*g) if len(g) else z3.BoolVal(True, ctx) for g in result]
            phi = z3.Or(*disjuncts) if disjuncts else z3.BoolVal(False, ctx)
            params = {str(s): ("p", k, shape_a.kinds[k]) for k, s in enumerate(ps)}
            params.update({str(s): ("q", k, shape_b.kinds[k]) for k, s in enumerate(qs)})
            compiled = _compile(phi, params)
        except z3.Z3Exception:
            compiled = None
        self._cache[key] = compiled
        return compiled


def decide_blocks(
    conditions: Sequence[Cond],
    solver: Solver,
    symbolic: SymbolicImplication | None = None,
    min_pairs: int = 64,
) -> Blocks:
    """Decide ``cond[i] ⇒ cond[j]`` for every pair whose two shapes have at least
    ``min_pairs`` pairs of conditions between them (below that, per-pair checks are cheaper
    than an elimination)."""
    n = len(conditions)
    decided = np.zeros((n, n), dtype=bool)
    edge = np.zeros((n, n), dtype=bool)
    out = Blocks(decided, edge)
    if n < 2:
        return out
    symbolic = symbolic or SymbolicImplication(solver)
    groups: dict[Shape, list[int]] = {}
    vectors: list[tuple[float, ...]] = []
    for i, c in enumerate(conditions):
        shape, params = shape_of(c, solver.domains)
        groups.setdefault(shape, []).append(i)
        vectors.append(params)
    out.shapes = len(groups)
    before = symbolic.eliminations
    # Validity (true in every world) per shape: the implication from TRUE.
    for sb, cols in groups.items():
        if len(cols) < min_pairs:
            continue
        phi = symbolic.formula(TRUE, _TRUE_SHAPE, conditions[cols[0]], sb)
        q = np.array([vectors[j] for j in cols], dtype=float).reshape(len(cols), -1)
        if phi is None or not _exact(q, sb.kinds):
            continue
        values = np.broadcast_to(phi(np.zeros((1, 0)), q), (1, len(cols)))[0]
        out.valid.update(zip(cols, values.tolist(), strict=True))
    for sa, rows in groups.items():
        for sb, cols in groups.items():
            if len(rows) * len(cols) < min_pairs:
                continue
            phi = symbolic.formula(conditions[rows[0]], sa, conditions[cols[0]], sb)
            if phi is None:
                out.undecided_blocks.append((rows[0], cols[0]))
                continue
            p = np.array([vectors[i] for i in rows], dtype=float).reshape(len(rows), -1)
            q = np.array([vectors[j] for j in cols], dtype=float).reshape(len(cols), -1)
            if not (_exact(p, sa.kinds) and _exact(q, sb.kinds)):
                out.undecided_blocks.append((rows[0], cols[0]))
                continue
            r = np.asarray(rows)
            c = np.asarray(cols)
            step = max(1, _CHUNK // max(1, len(cols)))
            for start in range(0, len(rows), step):
                part = r[start : start + step]
                values = phi(p[start : start + step], q)
                block = np.broadcast_to(values, (len(part), len(cols)))
                edge[np.ix_(part, c)] = block
                decided[np.ix_(part, c)] = True
            out.blocks += 1
            out.pairs += len(rows) * len(cols)
    np.fill_diagonal(decided, False)
    np.fill_diagonal(edge, False)
    out.eliminations = symbolic.eliminations - before
    return out


def _exact(values: np.ndarray, kinds: Sequence[str]) -> bool:
    """Integer parameters hold integers small enough for exact float arithmetic."""
    for k, kind in enumerate(kinds):
        column = values[:, k]
        if not np.isfinite(column).all():
            return False
        if kind == "int" and (np.abs(column) >= _EXACT_INT).any():
            return False
    return True


def _variables_of(cond: Cond) -> set[str]:
    from cfdb.ctable.condition import variables

    return {v.lower() for v in variables(cond)}


# ---------------------------------------------------------------------------------------------
# Compiling Φ(p, q) to numpy
# ---------------------------------------------------------------------------------------------

# An evaluator takes the parameter vectors of a block's rows (R × kp) and columns (C × kq)
# and returns Φ for every pair (an R × C array, or a scalar that broadcasts).
Evaluator = Callable[[np.ndarray, np.ndarray], Any]


def _column(side: str, k: int, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return p[:, k, None] if side == "p" else q[None, :, k]


class _Inexact(Exception):
    """Φ has a part that float64 cannot evaluate exactly (or that we do not translate)."""


def _compile(phi: Any, params: dict[str, tuple[str, int, str]]) -> Evaluator | None:
    """Φ as a numpy evaluator, read from z3's s-expression text (one call into z3 instead of
    thousands of Python API calls per formula)."""
    try:
        return _bool(_read_sexpr(phi.sexpr()), params, {})
    except (_Inexact, ValueError, IndexError):
        return None


def _read_sexpr(text: str) -> Any:
    tokens = text.replace("(", " ( ").replace(")", " ) ").split()
    stack: list[list[Any]] = [[]]
    for token in tokens:
        if token == "(":
            stack.append([])
        elif token == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(token)
    if len(stack) != 1 or len(stack[0]) != 1:
        raise ValueError("unbalanced s-expression")
    return stack[0][0]


_BOOL_HEADS = {"and", "or", "not", "=>", "true", "false", "distinct", "<=", "<", ">=", ">"}
_CMP = {"<=": "<=", "<": "<", ">=": ">=", ">": ">", "=": "=", "distinct": "<>"}


def _is_bool(t: Any, env: dict[str, Any]) -> bool:
    if isinstance(t, str):
        if t in env:
            return _is_bool(env[t], env)
        return t in ("true", "false")
    head = t[0]
    if head == "let":
        return _is_bool(t[2], env)
    if head == "=":
        return _is_bool(t[1], env)
    return head in _BOOL_HEADS


def _bool(t: Any, params: dict[str, tuple[str, int, str]], env: dict[str, Any]) -> Evaluator:
    if isinstance(t, str):
        if t == "true":
            return lambda p, q: np.bool_(True)
        if t == "false":
            return lambda p, q: np.bool_(False)
        if t in env:
            return _bool(env[t], params, env)
        raise _Inexact(t)
    head, args = t[0], t[1:]
    if head == "let":
        scope = dict(env)
        for name, value in args[0]:
            scope[name] = value
        return _bool(args[1], params, scope)
    if head in ("and", "or"):
        parts = [_bool(a, params, env) for a in args]
        combine = np.logical_and if head == "and" else np.logical_or

        def junction(p: np.ndarray, q: np.ndarray) -> Any:
            acc = parts[0](p, q)
            for f in parts[1:]:
                acc = combine(acc, f(p, q))
            return acc

        return junction
    if head == "not":
        inner = _bool(args[0], params, env)
        return lambda p, q: np.logical_not(inner(p, q))
    if head == "=>":
        x, y = _bool(args[0], params, env), _bool(args[1], params, env)
        return lambda p, q: np.logical_or(np.logical_not(x(p, q)), y(p, q))
    if head == "=" and len(args) == 2 and _is_bool(args[0], env):
        x, y = _bool(args[0], params, env), _bool(args[1], params, env)
        return lambda p, q: np.equal(x(p, q), y(p, q))
    if head in _CMP and len(args) == 2:
        return _atom(
            _linear(args[0], params, env), _CMP[head], _linear(args[1], params, env), params
        )
    raise _Inexact(head)


Linear = tuple[dict[str, Fraction], Fraction]


def _linear(t: Any, params: dict[str, tuple[str, int, str]], env: dict[str, Any]) -> Linear:
    """An arithmetic term as (parameter → coefficient, constant)."""
    if isinstance(t, str):
        if t in params:
            return {t: Fraction(1)}, Fraction(0)
        if t in env:
            return _linear(env[t], params, env)
        return {}, Fraction(t)  # a numeral: "12", "1.5"; anything else raises ValueError
    head, args = t[0], t[1:]
    if head == "let":
        scope = dict(env)
        for name, value in args[0]:
            scope[name] = value
        return _linear(args[1], params, scope)
    if head == "to_real":
        return _linear(args[0], params, env)
    if head in ("+", "-"):
        parts = [_linear(a, params, env) for a in args]
        if head == "-" and len(parts) == 1:
            coefs, const = parts[0]
            return {k: -v for k, v in coefs.items()}, -const
        coefs = dict(parts[0][0])
        const = parts[0][1]
        sign = -1 if head == "-" else 1
        for c2, k2 in parts[1:]:
            for name, v in c2.items():
                coefs[name] = coefs.get(name, Fraction(0)) + sign * v
            const += sign * k2
        return coefs, const
    if head == "*":
        scale = Fraction(1)
        symbolic: Linear | None = None
        for a in args:
            part = _linear(a, params, env)
            if part[0]:
                if symbolic is not None:
                    raise _Inexact("non-linear")
                symbolic = part
            else:
                scale *= part[1]
        if symbolic is None:
            return {}, scale
        return {k: v * scale for k, v in symbolic[0].items()}, symbolic[1] * scale
    if head == "/" and len(args) == 2:
        num, den = _linear(args[0], params, env), _linear(args[1], params, env)
        if num[0] or den[0] or den[1] == 0:
            raise _Inexact("division")
        return {}, num[1] / den[1]
    raise _Inexact(head)


def _atom(
    left: Linear, op: str, right: Linear, params: dict[str, tuple[str, int, str]]
) -> Evaluator:
    cl, kl = left
    cr, kr = right
    exact = dict(cl)
    for name, v in cr.items():
        exact[name] = exact.get(name, Fraction(0)) - v
    exact = {k: v for k, v in exact.items() if v != 0}
    exact_bound = kr - kl  # Σ coef·param  op  bound
    # Only constants that float64 holds exactly (dyadic, within range) are evaluated.
    if not all(_dyadic(v) for v in (*exact.values(), exact_bound)):
        raise _Inexact("constant")
    bound = float(exact_bound)
    terms = [(params[name], float(v)) for name, v in sorted(exact.items())]
    integral = all(kind == "int" for (_, _, kind), _ in terms) and all(
        v.denominator == 1 and abs(v) < _MAX_COEF for v in exact.values()
    )
    if (
        integral
        and len(terms) <= _MAX_TERMS
        and exact_bound.denominator == 1
        and abs(exact_bound) < _EXACT_INT
    ):
        # Integer parameters below 2^50 and integer coefficients: every partial sum is exact.
        def linear(p: np.ndarray, q: np.ndarray) -> Any:
            acc: Any = 0.0
            for (side, k, _), v in terms:
                column = _column(side, k, p, q)
                acc = acc + (column if v == 1.0 else v * column)
            return _compare(acc, op, bound)

        return linear
    # Real parameters: only ``x op k`` and ``x ± y op 0`` (exact signs of float differences).
    if len(terms) == 1 and abs(terms[0][1]) == 1.0:
        (side, k, _), v = terms[0]

        def single(p: np.ndarray, q: np.ndarray) -> Any:
            column = _column(side, k, p, q)
            return _compare(column if v == 1.0 else -column, op, bound)

        return single
    if len(terms) == 2 and bound == 0.0 and all(abs(v) == 1.0 for _, v in terms):
        ((s1, k1, _), v1), ((s2, k2, _), v2) = terms

        def pair(p: np.ndarray, q: np.ndarray) -> Any:
            x = _column(s1, k1, p, q)
            y = _column(s2, k2, p, q)
            # v1·x + v2·y op 0  ⇔  v1·x op −v2·y  (negation is exact)
            return _compare(x if v1 == 1.0 else -x, op, -y if v2 == 1.0 else y)

        return pair
    raise _Inexact("inexact real arithmetic")


def _dyadic(v: Fraction) -> bool:
    d = v.denominator
    return d & (d - 1) == 0 and abs(v) < 2**50


def _compare(x: Any, op: str, y: Any) -> Any:
    if op == "<=":
        return x <= y
    if op == "<":
        return x < y
    if op == ">=":
        return x >= y
    if op == ">":
        return x > y
    if op == "=":
        return x == y
    return x != y
