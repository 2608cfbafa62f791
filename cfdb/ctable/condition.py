"""Conditions over counterfactual variables: the local conditions of c-tables (CFDB paper,
Definition 2.3 and section 3.2).

A condition is an immutable tree whose leaves talk about one CF variable ``y_<feature>`` each
(or compare two of them):

- :class:`Member` — a categorical/boolean variable takes one of a set of values (every
  comparison on a categorical feature becomes one: with the active domain
  ``{own, rent}``, ``y_Home <> 'rent'`` *is* ``y_Home ∈ {own}``);
- :class:`Cmp` — a numeric/integer variable compared with a constant;
- :class:`VarCmp` — two variables compared with each other;
- :class:`And`, :class:`Or`, :class:`Not` and the constants :data:`TRUE`/:data:`FALSE`.

:func:`normalize` puts a condition in a canonical form over the features' domains (negations
pushed into atoms, integer bounds made inclusive, per-variable sets intersected/united,
numeric intervals tightened, children sorted and de-duplicated), so that equal conditions
have equal canonical text (:func:`to_sql`) and hash (:func:`condition_hash`). The canonical
text is a DuckDB boolean expression over the unqualified CF feature columns.
:func:`evaluate` checks conditions on rows with numpy; it agrees with DuckDB evaluating the
text (tested). This module is pure: no solver, no database.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cfdb.types import FeatureSpec

OPS = ("=", "<>", "<", "<=", ">", ">=")
NEGATED = {"=": "<>", "<>": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
FLIPPED = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


class Cond:
    """Base of condition nodes (immutable, hashable)."""

    __slots__ = ()

    def __and__(self, other: Cond) -> Cond:
        return And((self, other))

    def __or__(self, other: Cond) -> Cond:
        return Or((self, other))

    def __invert__(self) -> Cond:
        return Not(self)


@dataclass(frozen=True, slots=True)
class Const(Cond):
    value: bool


TRUE = Const(True)
FALSE = Const(False)


@dataclass(frozen=True, slots=True)
class Member(Cond):
    """``var`` takes one of ``values`` (strings; booleans as ``'true'``/``'false'``)."""

    var: str
    values: frozenset[str]
    negated: bool = False  # only before normalization: var takes none of values


@dataclass(frozen=True, slots=True)
class Cmp(Cond):
    """``var op value`` for a numeric or integer variable."""

    var: str
    op: str
    value: float


@dataclass(frozen=True, slots=True)
class VarCmp(Cond):
    """``left op right`` between two variables of comparable types."""

    left: str
    op: str
    right: str


@dataclass(frozen=True, slots=True)
class And(Cond):
    items: tuple[Cond, ...]


@dataclass(frozen=True, slots=True)
class Or(Cond):
    items: tuple[Cond, ...]


@dataclass(frozen=True, slots=True)
class Not(Cond):
    item: Cond


def conj(items: Iterable[Cond]) -> Cond:
    items = tuple(items)
    return items[0] if len(items) == 1 else And(items) if items else TRUE


def disj(items: Iterable[Cond]) -> Cond:
    items = tuple(items)
    return items[0] if len(items) == 1 else Or(items) if items else FALSE


def variables(cond: Cond) -> set[str]:
    """The variables a condition mentions."""
    if isinstance(cond, Member | Cmp):
        return {cond.var}
    if isinstance(cond, VarCmp):
        return {cond.left, cond.right}
    if isinstance(cond, And | Or):
        return set().union(*(variables(c) for c in cond.items)) if cond.items else set()
    if isinstance(cond, Not):
        return variables(cond.item)
    return set()


def value_string(value: Any) -> str:
    """How a categorical/boolean value is named inside conditions."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------------------------------
# Normalization
# ---------------------------------------------------------------------------------------------


class Domains:
    """The features a condition ranges over, by lower-cased name."""

    def __init__(self, features: Iterable[FeatureSpec]) -> None:
        self.features = {f.name.lower(): f for f in features}

    def spec(self, var: str) -> FeatureSpec:
        return self.features[var.lower()]

    def domain(self, var: str) -> frozenset[str]:
        spec = self.spec(var)
        if spec.type == "boolean":
            return frozenset(("false", "true"))
        return frozenset(spec.domain or ())

    def is_integer(self, var: str) -> bool:
        return self.spec(var).type == "integer"


def compare(a: Any, op: str, b: Any) -> bool:
    """``a op b`` for one of :data:`OPS`."""
    if op == "=":
        return bool(a == b)
    if op == "<>":
        return bool(a != b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def member_from_compare(var: str, op: str, value: str, domain: Iterable[str]) -> Member:
    """A categorical comparison as set membership over the active domain."""
    return Member(var, frozenset(v for v in domain if compare(v, op, value)))


def _integer_cmp(c: Cmp) -> Cond:
    # Integer variables: make bounds inclusive integers so equal conditions look equal.
    v = c.value
    if c.op == "=":
        return c if float(v).is_integer() else FALSE
    if c.op == "<>":
        return c if float(v).is_integer() else TRUE
    if c.op == ">":
        return Cmp(c.var, ">=", float(math.floor(v) + 1))
    if c.op == ">=":
        return Cmp(c.var, ">=", float(math.ceil(v)))
    if c.op == "<":
        return Cmp(c.var, "<=", float(math.ceil(v) - 1))
    return Cmp(c.var, "<=", float(math.floor(v)))


def _nnf(cond: Cond, negate: bool, domains: Domains) -> Cond:
    """Negation normal form with categorical atoms as Members over the domain."""
    if isinstance(cond, Const):
        return Const(cond.value != negate)
    if isinstance(cond, Not):
        return _nnf(cond.item, not negate, domains)
    if isinstance(cond, And | Or):
        items = tuple(_nnf(c, negate, domains) for c in cond.items)
        return (Or if isinstance(cond, And) == negate else And)(items)
    if isinstance(cond, Member):
        domain = domains.domain(cond.var)
        inside = frozenset(v for v in cond.values if v in domain)
        keep = cond.negated == negate  # not negated, or negated twice
        return Member(cond.var, inside if keep else domain - inside)
    if isinstance(cond, Cmp):
        op = NEGATED[cond.op] if negate else cond.op
        out = Cmp(cond.var, op, float(cond.value))
        return _integer_cmp(out) if domains.is_integer(cond.var) else out
    if isinstance(cond, VarCmp):
        return VarCmp(cond.left, NEGATED[cond.op] if negate else cond.op, cond.right)
    raise TypeError(f"not a condition: {cond!r}")


def _sort_key(cond: Cond) -> tuple[Any, ...]:
    return ((variables(cond) and min(variables(cond))) or "", to_sql(cond))


def _tighten_numeric(var: str, atoms: list[Cmp], integer: bool) -> list[Cond] | None:
    """Conjunction of ``var op c`` atoms as canonical atoms; ``None`` if unsatisfiable."""
    lo, lo_strict, hi, hi_strict = -math.inf, False, math.inf, False
    eqs: set[float] = set()
    neqs: set[float] = set()
    for a in atoms:
        if a.op == "=":
            eqs.add(a.value)
        elif a.op == "<>":
            neqs.add(a.value)
        elif a.op in (">", ">="):
            strict = a.op == ">"
            if a.value > lo or (a.value == lo and strict):
                lo, lo_strict = a.value, strict
        elif a.value < hi or (a.value == hi and a.op == "<"):
            hi, hi_strict = a.value, a.op == "<"
    if len(eqs) > 1:
        return None
    if eqs:
        (e,) = eqs
        ok = (e > lo or (e == lo and not lo_strict)) and (e < hi or (e == hi and not hi_strict))
        return [Cmp(var, "=", e)] if ok and e not in neqs else None
    if lo > hi or (lo == hi and (lo_strict or hi_strict)):
        return None
    if lo == hi:  # a single point left
        return [Cmp(var, "=", lo)] if lo not in neqs else None
    out: list[Cond] = []
    if lo > -math.inf:
        out.append(Cmp(var, ">" if lo_strict else ">=", lo))
    if hi < math.inf:
        out.append(Cmp(var, "<" if hi_strict else "<=", hi))
    for n in sorted(neqs):
        inside = (n > lo or (n == lo and not lo_strict)) and (n < hi or (n == hi and not hi_strict))
        if inside:
            out.append(Cmp(var, "<>", n))
    if integer and lo > -math.inf and hi < math.inf and int(hi) - int(lo) <= len(neqs):
        # Only a range that the excluded points could empty (or leave one point of) is
        # enumerated: a wide one is never walked (its bounds may be 2**63 apart).
        points = [p for p in range(int(lo), int(hi) + 1) if p not in neqs]
        if not points:
            return None
        if len(points) == 1:
            return [Cmp(var, "=", float(points[0]))]
    return out


def _simplify_and(items: list[Cond], domains: Domains) -> Cond:
    flat: list[Cond] = []
    for item in items:
        if isinstance(item, And):
            flat.extend(item.items)
        elif item == TRUE:
            continue
        elif item == FALSE:
            return FALSE
        else:
            flat.append(item)
    members: dict[str, frozenset[str]] = {}
    numeric: dict[str, list[Cmp]] = {}
    rest: list[Cond] = []
    for item in flat:
        if isinstance(item, Member):
            key = item.var
            members[key] = members[key] & item.values if key in members else item.values
        elif isinstance(item, Cmp):
            numeric.setdefault(item.var, []).append(item)
        else:
            rest.append(item)
    out: list[Cond] = []
    for var, values in members.items():
        if not values:
            return FALSE
        if values != domains.domain(var):
            out.append(Member(var, values))
    for var, atoms in numeric.items():
        tightened = _tighten_numeric(var, atoms, domains.is_integer(var))
        if tightened is None:
            return FALSE
        out.extend(tightened)
    out.extend(rest)
    return _finish(out, And, TRUE)


def _simplify_or(items: list[Cond], domains: Domains) -> Cond:
    flat: list[Cond] = []
    for item in items:
        if isinstance(item, Or):
            flat.extend(item.items)
        elif item == FALSE:
            continue
        elif item == TRUE:
            return TRUE
        else:
            flat.append(item)
    members: dict[str, frozenset[str]] = {}
    lower: dict[str, Cmp] = {}
    upper: dict[str, Cmp] = {}
    rest: list[Cond] = []
    for item in flat:
        if isinstance(item, Member):
            members[item.var] = members.get(item.var, frozenset()) | item.values
        elif isinstance(item, Cmp) and item.op in (">", ">="):
            best = lower.get(item.var)
            if (
                best is None
                or item.value < best.value
                or (item.value == best.value and item.op == ">=")
            ):
                lower[item.var] = item
        elif isinstance(item, Cmp) and item.op in ("<", "<="):
            best = upper.get(item.var)
            if (
                best is None
                or item.value > best.value
                or (item.value == best.value and item.op == "<=")
            ):
                upper[item.var] = item
        else:
            rest.append(item)
    # y = c OR y <> c, and y <> c OR y <> d (c ≠ d), cover every value.
    equal: dict[str, set[float]] = {}
    unequal: dict[str, set[float]] = {}
    for item in rest:
        if isinstance(item, Cmp):
            (equal if item.op == "=" else unequal).setdefault(item.var, set()).add(item.value)
    for var, values in unequal.items():
        if len(values) > 1 or values & equal.get(var, set()):
            return TRUE
    out: list[Cond] = []
    for var, values in members.items():
        if values == domains.domain(var):
            return TRUE
        if values:
            out.append(Member(var, values))
    for var in set(lower) & set(upper):
        lo, hi = lower[var], upper[var]
        # y >= a OR y <= b covers everything when the two rays overlap.
        if lo.value < hi.value or (lo.value == hi.value and "=" in lo.op + hi.op):
            return TRUE
        if domains.is_integer(var) and lo.op == ">=" and hi.op == "<=" and lo.value == hi.value + 1:
            return TRUE
    out.extend(lower.values())
    out.extend(upper.values())
    out.extend(rest)
    return _finish(out, Or, FALSE)


def _finish(items: list[Cond], kind: type, empty: Cond) -> Cond:
    unique = {to_sql(c): c for c in items}
    ordered = [unique[k] for k in sorted(unique, key=lambda k: _sort_key(unique[k]))]
    if not ordered:
        return empty
    return ordered[0] if len(ordered) == 1 else kind(tuple(ordered))


def _absorb(cond: Cond, domains: Domains) -> Cond:
    """Drop literals made redundant by a sibling atom, until nothing changes:
    ``x ∨ (y ∧ R) ≡ x ∨ R`` when ``x ∨ y`` is valid, and ``x ∧ (y ∨ R) ≡ x ∧ R`` when
    ``x ∧ y`` is unsatisfiable (x, y single-variable atoms on the same variable). E.g. the
    CFDB paper's "keep f1, or modify f1 and f2" becomes "keep f1, or modify f2"."""
    for _ in range(8):
        if not isinstance(cond, And | Or):
            return cond
        outer_or = isinstance(cond, Or)
        inner = And if outer_or else Or
        atoms = [c for c in cond.items if isinstance(c, Member | Cmp)]
        changed = False
        items: list[Cond] = []
        for child in cond.items:
            if isinstance(child, inner) and atoms:
                kept = []
                for y in child.items:
                    drop = isinstance(y, Member | Cmp) and any(
                        x.var == y.var
                        and (
                            _simplify_or([x, y], domains) == TRUE
                            if outer_or
                            else _simplify_and([x, y], domains) == FALSE
                        )
                        for x in atoms
                    )
                    changed |= drop
                    if not drop:
                        kept.append(y)
                child = inner(tuple(kept)) if len(kept) != 1 else kept[0]
                if not kept:
                    child = TRUE if outer_or else FALSE
            items.append(child)
        if not changed:
            return cond
        cond = (_simplify_or if outer_or else _simplify_and)(items, domains)
    return cond


def _simplify(cond: Cond, domains: Domains) -> Cond:
    if isinstance(cond, And):
        return _absorb(_simplify_and([_simplify(c, domains) for c in cond.items], domains), domains)
    if isinstance(cond, Or):
        return _absorb(_simplify_or([_simplify(c, domains) for c in cond.items], domains), domains)
    if isinstance(cond, Member):
        values = cond.values
        if not values:
            return FALSE
        return TRUE if values == domains.domain(cond.var) else cond
    if isinstance(cond, VarCmp) and cond.left == cond.right:
        return Const(cond.op in ("=", "<=", ">="))
    if isinstance(cond, VarCmp) and cond.left > cond.right:
        return VarCmp(cond.right, FLIPPED[cond.op], cond.left)
    return cond


def normalize(cond: Cond, domains: Domains) -> Cond:
    """The canonical form of ``cond`` over ``domains`` (equivalent on every CF in the domains).

    Categorical variables range over their active domain; numeric ones over the reals and
    integer ones over the integers (the paper's CFs may leave the observed min/max).
    """
    return _simplify(_nnf(cond, False, domains), domains)


def substitute(cond: Cond, values: Mapping[str, Any], domains: Domains) -> Cond:
    """Fix some variables to values (e.g. immutable features) and simplify."""

    def sub(c: Cond) -> Cond:
        if isinstance(c, Member) and c.var in values:
            return Const((value_string(values[c.var]) in c.values) != c.negated)
        if isinstance(c, Cmp) and c.var in values:
            return Const(compare(float(values[c.var]), c.op, c.value))
        if isinstance(c, VarCmp) and c.left in values and c.right in values:
            return Const(compare(values[c.left], c.op, values[c.right]))
        if isinstance(c, VarCmp) and (c.left in values or c.right in values):
            var, op, fixed = (
                (c.right, FLIPPED[c.op], values[c.left])
                if c.left in values
                else (c.left, c.op, values[c.right])
            )
            if domains.spec(var).is_categorical:
                return member_from_compare(var, op, value_string(fixed), domains.domain(var))
            return Cmp(var, op, float(fixed))
        if isinstance(c, And):
            return And(tuple(sub(i) for i in c.items))
        if isinstance(c, Or):
            return Or(tuple(sub(i) for i in c.items))
        if isinstance(c, Not):
            return Not(sub(c.item))
        return c

    return normalize(sub(cond), domains)


def is_simple_conjunction(cond: Cond) -> bool:
    """A conjunction of single-variable atoms: a normalized one is satisfiable exactly when it
    is not FALSE (normalization merged each variable's atoms into a non-empty set, or an
    interval that still holds a value besides its excluded points), so no solver is needed."""
    items = cond.items if isinstance(cond, And) else (cond,)
    return all(isinstance(i, Member | Cmp) or i == TRUE for i in items)


def quick_satisfiable(cond: Cond) -> bool | None:
    """Decide a normalized condition without a solver when it is easy; ``None`` otherwise."""
    if cond == TRUE:
        return True
    if cond == FALSE:
        return False
    if is_simple_conjunction(cond):
        return True
    if isinstance(cond, Or) and any(quick_satisfiable(c) for c in cond.items):
        return True
    return None


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {
    "and",
    "or",
    "not",
    "in",
    "is",
    "null",
    "true",
    "false",
    "between",
    "select",
    "from",
    "where",
    "like",
    "case",
    "when",
    "then",
    "else",
    "end",
    "as",
    "on",
}


def ident(name: str) -> str:
    """A feature name as written in condition text: bare unless it needs quotes."""
    if _BARE.match(name) and name.lower() not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def number(value: float) -> str:
    v = float(value)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _member_values(var_type: str | None, values: Iterable[str]) -> list[str]:
    if var_type == "boolean":
        return [v.upper() for v in sorted(values)]
    return ["'" + v.replace("'", "''") + "'" for v in sorted(values)]


_TYPES: dict[str, str] = {}


def to_sql(cond: Cond, types: Mapping[str, str] | None = None) -> str:
    """A DuckDB boolean expression over the unqualified feature columns.

    Args:
        types: feature types by variable name, so booleans render as TRUE/FALSE literals
            (defaults to strings).
    """
    types = types or _TYPES
    if isinstance(cond, Const):
        return "TRUE" if cond.value else "FALSE"
    if isinstance(cond, Member):
        vals = _member_values(types.get(cond.var), cond.values)
        name = ident(cond.var)
        if cond.negated:
            return f"{name} NOT IN ({', '.join(vals)})" if vals else "TRUE"
        if not vals:
            return "FALSE"
        return f"{name} = {vals[0]}" if len(vals) == 1 else f"{name} IN ({', '.join(vals)})"
    if isinstance(cond, Cmp):
        return f"{ident(cond.var)} {cond.op} {number(cond.value)}"
    if isinstance(cond, VarCmp):
        return f"{ident(cond.left)} {cond.op} {ident(cond.right)}"
    if isinstance(cond, Not):
        return f"NOT ({to_sql(cond.item, types)})"
    if isinstance(cond, And | Or):
        sep = " AND " if isinstance(cond, And) else " OR "
        parts = []
        for item in cond.items:
            text = to_sql(item, types)
            parts.append(f"({text})" if isinstance(item, And | Or) else text)
        return sep.join(parts)
    raise TypeError(f"not a condition: {cond!r}")


def condition_hash(cond: Cond) -> str:
    """A stable hash of the canonical text (normalize first)."""
    return hashlib.sha1(to_sql(cond).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Evaluation on rows
# ---------------------------------------------------------------------------------------------


def _column(columns: Mapping[str, np.ndarray], var: str) -> np.ndarray:
    if var in columns:
        return np.asarray(columns[var])
    for key, values in columns.items():
        if key.lower() == var.lower():
            return np.asarray(values)
    raise KeyError(var)


def _as_strings(values: np.ndarray) -> np.ndarray:
    if values.dtype == bool:
        return np.where(values, "true", "false").astype(object)
    if values.dtype.kind == "U":
        return values.astype(object)
    # Categorical columns usually hold strings already: then no conversion is needed.
    if values.dtype == object and all(isinstance(v, str) for v in values.tolist()):
        return values
    return np.array([value_string(v) for v in values.tolist()], dtype=object)


_NP_OPS = {
    "=": np.equal,
    "<>": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


def evaluate(cond: Cond, columns: Mapping[str, np.ndarray], n: int | None = None) -> np.ndarray:
    """Whether each row satisfies ``cond`` (a boolean array).

    Args:
        columns: feature name -> values (categoricals as strings, booleans as bools).
        n: the number of rows (needed only when ``cond`` mentions no variable).
    """
    if n is None:
        n = len(next(iter(columns.values()))) if columns else 0
    if isinstance(cond, Const):
        return np.full(n, cond.value, dtype=bool)
    if isinstance(cond, Member):
        inside = np.isin(_as_strings(_column(columns, cond.var)), list(cond.values))
        return ~inside if cond.negated else inside
    if isinstance(cond, Cmp):
        x = _column(columns, cond.var).astype(float)
        return _NP_OPS[cond.op](x, cond.value)
    if isinstance(cond, VarCmp):
        left, right = _column(columns, cond.left), _column(columns, cond.right)
        if left.dtype == object or right.dtype == object:
            left, right = _as_strings(left), _as_strings(right)
            return np.array(
                [compare(a, cond.op, b) for a, b in zip(left, right, strict=True)], dtype=bool
            )
        return _NP_OPS[cond.op](left.astype(float), right.astype(float))
    if isinstance(cond, Not):
        return ~evaluate(cond.item, columns, n)
    if isinstance(cond, And):
        out = np.ones(n, dtype=bool)
        for item in cond.items:
            out &= evaluate(item, columns, n)
        return out
    if isinstance(cond, Or):
        out = np.zeros(n, dtype=bool)
        for item in cond.items:
            out |= evaluate(item, columns, n)
        return out
    raise TypeError(f"not a condition: {cond!r}")
