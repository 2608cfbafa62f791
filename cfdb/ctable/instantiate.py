"""Evaluating Q_CF over the c-table of fresh CF tuples: one condition per prediction (CFDB
paper, section 3.2, steps 1–2).

The compiler (:mod:`cfdb.lang.cfql`) splits Q_CF into a base query, which DuckDB runs once for
all selected predictions, and a template over CF variables whose constants are the base
query's columns (slots). For each base-query row the template is instantiated into a
condition; the rows of one prediction are alternatives (a projection merges them), so the
prediction's condition is their disjunction, then normalized over the features' domains.

SQL's three-valued logic is respected: negations are pushed to the atoms first, and an atom
whose constant is NULL can then never be TRUE, so it becomes FALSE (a row is in a query's
result only when its condition is TRUE). ``IN`` lists follow SQL: ``y IN (a, NULL)`` holds only
for ``y = a``; ``y NOT IN (a, NULL)`` never holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cfdb.ctable.condition import (
    FALSE,
    NEGATED,
    Cmp,
    Cond,
    Const,
    Domains,
    Member,
    VarCmp,
    conj,
    disj,
    member_from_compare,
    normalize,
    value_string,
)
from cfdb.errors import CfdbDataError
from cfdb.lang.cfql import TAnd, TBool, TCmp, TConst, TIn, TInList, TNot, TOr, TVarCmp


def _number(var: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CfdbDataError(
            f"CF attribute {var!r} is numeric but is compared with {value!r}"
        ) from None


def _atom(var: str, op: str, value: Any, domains: Domains) -> Cond:
    if domains.spec(var).is_categorical:
        return member_from_compare(var, op, value_string(value), domains.domain(var))
    return Cmp(var, op, _number(var, value))


def _in(var: str, values: Sequence[Any], negate: bool, domains: Domains) -> Cond:
    present = [v for v in values if v is not None]
    if negate and len(present) < len(values):
        return FALSE  # y NOT IN (..., NULL) is never TRUE
    if domains.spec(var).is_categorical:
        chosen = frozenset(value_string(v) for v in present)
        return Member(var, chosen, negated=negate)
    atoms = [Cmp(var, "<>" if negate else "=", _number(var, v)) for v in present]
    return conj(atoms) if negate else disj(atoms)


def instantiate(template: Any, row: Sequence[Any], domains: Domains, negate: bool = False) -> Cond:
    """The condition of one base-query row (not yet normalized)."""
    if isinstance(template, TConst):
        return Const(template.value != negate)
    if isinstance(template, TBool):
        value = row[template.slot]
        return FALSE if value is None else Const(bool(value) != negate)
    if isinstance(template, TNot):
        return instantiate(template.item, row, domains, not negate)
    if isinstance(template, TAnd | TOr):
        items = [instantiate(t, row, domains, negate) for t in template.items]
        return conj(items) if isinstance(template, TAnd) != negate else disj(items)
    if isinstance(template, TCmp):
        value = row[template.slot]
        if value is None:
            return FALSE
        return _atom(template.var, NEGATED[template.op] if negate else template.op, value, domains)
    if isinstance(template, TVarCmp):
        return VarCmp(
            template.left, NEGATED[template.op] if negate else template.op, template.right
        )
    if isinstance(template, TIn):
        return _in(template.var, [row[s] for s in template.slots], negate, domains)
    if isinstance(template, TInList):
        values = row[template.slot]
        return _in(template.var, list(values or []), negate, domains)
    raise TypeError(f"not a template node: {template!r}")


def _hashable(value: Any) -> Any:
    if isinstance(value, list | np.ndarray):
        return tuple(_hashable(v) for v in value)
    return value


def conditions(
    template: Any,
    prediction_ids: Sequence[int],
    slot_columns: Sequence[Sequence[Any]],
    domains: Domains,
    selected: Sequence[int],
) -> dict[int, Cond]:
    """One normalized condition per selected prediction.

    Args:
        template: the CF part of Q_CF's condition.
        prediction_ids: the prediction of each base-query row.
        slot_columns: the base query's slot columns (one sequence per slot).
        domains: the features' domains.
        selected: every prediction Q_pred selected (those without rows get FALSE).
    """
    rows_by_pred: dict[int, list[Cond]] = {int(p): [] for p in selected}
    cache: dict[tuple[Any, ...], Cond] = {}
    rows = zip(*slot_columns, strict=True) if slot_columns else ((),) * len(prediction_ids)
    for pid, row in zip(prediction_ids, rows, strict=True):
        key = tuple(_hashable(v) for v in row)
        cond = cache.get(key)
        if cond is None:
            cond = normalize(instantiate(template, row, domains), domains)
            cache[key] = cond
        rows_by_pred[int(pid)].append(cond)
    return {
        pid: normalize(disj(conds), domains) if len(conds) != 1 else conds[0]
        for pid, conds in rows_by_pred.items()
    }
