"""Helpers of the generator tests: a small mixed-type dataset, tasks, and a slow
row-at-a-time validity and distance oracle."""

from __future__ import annotations

from typing import Any

import numpy as np

from cfdb.ctable.condition import (
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
    value_string,
)
from cfdb.generators import GenerationTask
from cfdb.models import Model
from cfdb.types import FeatureSpec

N_ROWS = 300


def dataset(seed: int = 0) -> dict[str, np.ndarray]:
    """Loan-like rows: numeric income, integer age, categorical home, boolean student, and an
    immutable categorical sex."""
    rng = np.random.default_rng(seed)
    return {
        "income": np.round(rng.uniform(10, 120, N_ROWS), 1),
        "age": rng.integers(18, 70, N_ROWS).astype(np.int64),
        "home": rng.choice(["own", "rent", "mortgage"], N_ROWS).astype(object),
        "student": rng.random(N_ROWS) < 0.3,
        "sex": rng.choice(["female", "male"], N_ROWS).astype(object),
    }


def score(cols: dict[str, np.ndarray]) -> np.ndarray:
    return (
        cols["income"]
        - 0.8 * cols["age"]
        + np.where(cols["home"] == "own", 20, 0)
        - 15 * cols["student"]
        + np.where(cols["sex"] == "male", 5, 0)
    )


def spec_of(name: str, kind: str, values: np.ndarray, mutable: bool = True) -> FeatureSpec:
    if kind in ("categorical", "boolean"):
        domain = ("false", "true") if kind == "boolean" else tuple(sorted(set(values.tolist())))
        return FeatureSpec(name, kind, domain=domain, mutable=mutable)
    x = values.astype(float)
    mad = float(np.median(np.abs(x - np.median(x))) * 1.4826) or 1.0
    return FeatureSpec(name, kind, min=float(x.min()), max=float(x.max()), mad=mad, mutable=mutable)


def instance(data: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    """Row ``i`` as Python values, the way the engine reads an instance."""
    return {k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in data.items()}


def make_task(
    model: Model,
    features: list[FeatureSpec],
    x: dict[str, Any],
    cond: Cond = TRUE,
    **kw: Any,
) -> GenerationTask:
    label = str(
        model.predict(
            {k: np.array([v], dtype=object if isinstance(v, str) else None) for k, v in x.items()}
        )[0]
    )
    return GenerationTask(
        instance=x,
        original_label=label,
        target=kw.pop("target", None),
        condition=normalize(cond, Domains(features)),
        **kw,
    )


# ---- a slow oracle: one row at a time, plain Python -------------------------------------------


def holds(cond: Cond, row: dict[str, Any]) -> bool:
    """Whether one row (raw Python values by feature) satisfies ``cond``."""
    if isinstance(cond, Const):
        return cond.value
    if isinstance(cond, Member):
        return (value_string(row[cond.var]) in cond.values) != cond.negated
    if isinstance(cond, Cmp):
        return compare(float(row[cond.var]), cond.op, cond.value)
    if isinstance(cond, VarCmp):
        return compare(row[cond.left], cond.op, row[cond.right])
    if isinstance(cond, Not):
        return not holds(cond.item, row)
    if isinstance(cond, And):
        return all(holds(c, row) for c in cond.items)
    if isinstance(cond, Or):
        return any(holds(c, row) for c in cond.items)
    raise TypeError(cond)


def row_distance(
    kind: str, x: dict[str, Any], row: dict[str, Any], features: list[FeatureSpec]
) -> float:
    """The l0/l1/tabular distance of one row, written out from the definitions."""
    cat = sum(float(row[f.name] != x[f.name]) for f in features if f.is_categorical)
    nums = [f for f in features if not f.is_categorical]
    if kind == "l0":
        return cat + sum(float(row[f.name] != x[f.name]) for f in nums)
    num = sum(abs(float(row[f.name]) - float(x[f.name])) / (f.mad or 1.0) for f in nums)
    if kind == "l1":
        return cat + num
    n = len(features)
    n_cat = len(features) - len(nums)
    return n_cat / n * cat + len(nums) / n * num


def rows_of(cols: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    n = len(next(iter(cols.values()))) if cols else 0
    return [
        {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in cols.items()}
        for i in range(n)
    ]


def one_row(row: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.array([v], dtype=object if isinstance(v, str) else None) for k, v in row.items()}


def row_valid(
    model: Model, features: list[FeatureSpec], task: GenerationTask, row: dict[str, Any]
) -> bool:
    """The slow validity check: condition, immutables, label, one row at a time."""
    if not holds(task.condition, row):
        return False
    x = task.instance
    if any(row[f.name] != x[f.name] for f in features if not f.mutable):
        return False
    label = str(model.predict(one_row({f.name: row[f.name] for f in features}))[0])
    return label != task.original_label if task.target is None else label == task.target


def random_condition(rng: np.random.Generator, features: list[FeatureSpec], depth: int = 2) -> Cond:
    """A random condition over ``features``: memberships (possibly negated), comparisons with
    constants, a comparison between the two numeric variables, under AND/OR/NOT."""
    if depth == 0 or rng.random() < 0.3:
        f = features[rng.integers(len(features))]
        if f.is_categorical:
            domain = ["false", "true"] if f.type == "boolean" else list(f.domain or ())
            size = int(rng.integers(1, len(domain) + 1))
            values = frozenset(rng.choice(domain, size, replace=False).tolist())
            return Member(f.name, values, negated=bool(rng.random() < 0.3))
        if rng.random() < 0.1:
            return VarCmp("income", str(rng.choice(["<", ">", "<=", ">="])), "age")
        value = float(rng.uniform(f.min, f.max))
        if f.type == "integer":
            value = float(round(value))
        return Cmp(f.name, str(rng.choice(["=", "<>", "<", "<=", ">", ">="])), value)
    kind = rng.choice(["and", "or", "not"])
    if kind == "not":
        return Not(random_condition(rng, features, depth - 1))
    items = tuple(random_condition(rng, features, depth - 1) for _ in range(rng.integers(2, 4)))
    return And(items) if kind == "and" else Or(items)
