"""Helpers shared by the generators: raw columns, feature boxes, parameters, de-duplication,
the feature-selection (sparsity) step and the final choice of the closest candidates.

Candidates are always kept in cfdb's raw representation (float64 for numeric features, int64
for integer ones, object arrays of ``str`` for categoricals, ``bool`` for booleans), so that the
model's featurizer, :func:`~cfdb.ctable.condition.evaluate` and the engine's checks see
exactly what DuckDB stores in ``CFs``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cfdb.ctable.condition import And, Cmp, Cond, Member, value_string
from cfdb.errors import CfdbDataError
from cfdb.generators.base import GenerationTask, take, valid_mask
from cfdb.generators.distance import distance
from cfdb.models import Model
from cfdb.types import Columns, FeatureSpec

_DTYPES = {"numeric": np.float64, "integer": np.int64, "boolean": np.bool_}
_TRUE = frozenset({"true", "t", "1", "yes", "y"})


def raw_column(spec: FeatureSpec, values: Any) -> np.ndarray:
    """``values`` as a 1-D array in the raw representation of ``spec``'s type.

    Raises:
        CfdbDataError: a value that cannot be read as the feature's type.
    """
    arr = np.atleast_1d(np.asarray(values, dtype=object if spec.is_categorical else None))
    try:
        if spec.type == "categorical":
            return np.array([value_string(v) for v in arr.tolist()], dtype=object)
        if spec.type == "boolean":
            if arr.dtype == np.bool_:
                return arr.astype(np.bool_)
            return np.array([_as_bool(v) for v in arr.tolist()], dtype=np.bool_)
        if spec.type == "integer":
            return np.rint(arr.astype(np.float64)).astype(np.int64)
        return arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise CfdbDataError(f"feature {spec.name!r} has a value of the wrong type: {exc}") from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


def raw_columns(features: list[FeatureSpec], columns: Columns) -> dict[str, np.ndarray]:
    """The feature columns of ``columns`` (matched by name, case-insensitively) in raw form.

    Raises:
        CfdbDataError: a feature missing from ``columns``.
    """
    lower = {k.lower(): k for k in columns}
    out = {}
    for f in features:
        key = f.name if f.name in columns else lower.get(f.name.lower())
        if key is None:
            raise CfdbDataError(f"the pool lacks feature {f.name!r}")
        out[f.name] = raw_column(f, columns[key])
    return out


def empty_columns(features: list[FeatureSpec]) -> dict[str, np.ndarray]:
    """Zero rows with the raw dtype of each feature."""
    return {f.name: np.zeros(0, dtype=_DTYPES.get(f.type, object)) for f in features}


def instance_row(features: list[FeatureSpec], task: GenerationTask) -> dict[str, Any]:
    """The task's instance with each value in raw form (a scalar per feature)."""
    missing = [f.name for f in features if f.name not in task.instance]
    if missing:
        raise CfdbDataError(f"the instance lacks feature {missing[0]!r}")
    return {f.name: raw_column(f, [task.instance[f.name]])[0] for f in features}


def repeat_instance(
    features: list[FeatureSpec], x: Mapping[str, Any], m: int
) -> dict[str, np.ndarray]:
    """``m`` copies of the instance ``x`` as raw columns."""
    return {f.name: np.repeat(raw_column(f, [x[f.name]]), m) for f in features}


def n_rows(rows: Columns) -> int:
    return len(next(iter(rows.values()))) if rows else 0


def concat(parts: list[dict[str, np.ndarray]], features: list[FeatureSpec]) -> dict[str, Any]:
    if not parts:
        return empty_columns(features)
    return {f.name: np.concatenate([p[f.name] for p in parts]) for f in features}


def scale(spec: FeatureSpec) -> float:
    """The MAD used to scale a numeric feature (1 when unknown or zero)."""
    return float(spec.mad) if spec.mad else 1.0


def box(spec: FeatureSpec, x: Any, margin: float) -> tuple[float, float]:
    """Sampling bounds of a numeric/integer feature: the observed ``[min, max]`` widened by
    ``margin`` times its width on each side, always containing the instance's value ``x``;
    integer bounds are rounded outwards. Unknown bounds stay infinite."""
    lo = -math.inf if spec.min is None else float(spec.min)
    hi = math.inf if spec.max is None else float(spec.max)
    if math.isfinite(lo) and math.isfinite(hi):
        widen = margin * (hi - lo)
        lo, hi = lo - widen, hi + widen
    lo, hi = min(lo, float(x)), max(hi, float(x))
    if spec.type == "integer":
        lo = math.floor(lo) if math.isfinite(lo) else lo
        hi = math.ceil(hi) if math.isfinite(hi) else hi
    return lo, hi


def forced_values(cond: Cond, features: list[FeatureSpec]) -> dict[str, Any]:
    """The values a normalized condition forces on mutable features: its top-level conjuncts
    ``var = c`` (a one-value membership, or an equality with a number), in raw form.

    Samplers pin these features to their forced values instead of waiting for a random draw
    to hit them (which, for a numeric equality, would never happen); every sample still goes
    through the full condition.
    """
    by_name = {f.name.lower(): f for f in features}
    out: dict[str, Any] = {}
    for item in cond.items if isinstance(cond, And) else (cond,):
        if isinstance(item, Member) and not item.negated and len(item.values) == 1:
            var, value = item.var, next(iter(item.values))
        elif isinstance(item, Cmp) and item.op == "=":
            var, value = item.var, item.value
        else:
            continue
        f = by_name.get(var.lower())
        if f is not None and f.mutable:
            out[f.name] = raw_column(f, [value])[0]
    return out


def pin(rows: dict[str, np.ndarray], values: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Set each column named in ``values`` to its value on every row (in place)."""
    for name, value in values.items():
        rows[name] = np.full(len(rows[name]), value, dtype=rows[name].dtype)
    return rows


def resolve_params(
    name: str, defaults: Mapping[str, Any], *given: Mapping[str, Any]
) -> dict[str, Any]:
    """``defaults`` updated by each of ``given`` in turn, each value coerced to the default's
    type.

    Raises:
        CfdbDataError: an unknown parameter name or a value of the wrong type.
    """
    out = dict(defaults)
    for params in given:
        for key, value in params.items():
            k = key.lower()
            if k not in defaults:
                known = ", ".join(sorted(defaults)) or "none"
                raise CfdbDataError(f"generator {name!r} has no parameter {key!r}; known: {known}")
            default = defaults[k]
            try:
                if isinstance(default, bool):
                    if isinstance(value, str):
                        if value.lower() not in ("true", "false"):
                            raise ValueError(value)
                        value = value.lower() == "true"
                    out[k] = bool(value)
                elif isinstance(default, int):
                    if float(value) != int(float(value)):
                        raise ValueError(value)
                    out[k] = int(float(value))
                elif isinstance(default, float):
                    out[k] = float(value)
                else:
                    out[k] = value
            except (TypeError, ValueError):
                kind = type(default).__name__
                raise CfdbDataError(
                    f"parameter {key!r} of generator {name!r} must be {kind}, got {value!r}"
                ) from None
    return out


def positive(name: str, params: Mapping[str, Any], *keys: str) -> None:
    """Raise :class:`CfdbDataError` unless each of ``keys`` is > 0."""
    for key in keys:
        if not params[key] > 0:
            raise CfdbDataError(f"parameter {key!r} of generator {name!r} must be positive")


def unique_index(rows: Columns, features: list[FeatureSpec]) -> np.ndarray:
    """Sorted indices of the first occurrence of each distinct row (over ``features``)."""
    m = n_rows(rows)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    codes = np.empty((m, len(features)), dtype=np.int64)
    for j, f in enumerate(features):
        values = np.asarray(rows[f.name])
        _, codes[:, j] = np.unique(
            values.astype(str) if values.dtype == object else values, return_inverse=True
        )
    _, first = np.unique(codes, axis=0, return_index=True)
    return np.sort(first)


def closest(
    model: Model,
    features: list[FeatureSpec],
    task: GenerationTask,
    x: Mapping[str, Any],
    rows: Columns,
    n: int,
) -> dict[str, np.ndarray]:
    """The ``n`` closest distinct rows of ``rows`` by ``task.distance`` (ties: earlier rows
    first), sorted by distance."""
    rows = take(rows, unique_index(rows, features))
    if n_rows(rows) == 0:
        return empty_columns(features)
    d = distance(task.distance, x, rows, features)
    order = np.lexsort((np.arange(len(d)), d))[:n]
    return take(rows, order)


def moves(features: list[FeatureSpec], x: Mapping[str, Any], rows: Columns) -> np.ndarray:
    """How far each row moved each feature from ``x`` (m x d): ``|c - x| / MAD`` for numeric
    features, 1 for a changed categorical, 0 for an unchanged feature."""
    m = n_rows(rows)
    out = np.zeros((m, len(features)))
    for j, f in enumerate(features):
        values = np.asarray(rows[f.name])
        if f.is_categorical:
            out[:, j] = values != x[f.name]
        else:
            out[:, j] = np.abs(values.astype(np.float64) - float(x[f.name])) / scale(f)
    return out


def sparsify(
    model: Model,
    features: list[FeatureSpec],
    task: GenerationTask,
    x: Mapping[str, Any],
    rows: Columns,
) -> dict[str, np.ndarray]:
    """The feature-selection step of growing spheres (Laugel et al. 2018),
    vectorized over candidates: each row puts its changed features back to the instance's
    values, smallest move first, keeping a change only when the row would stop being valid
    (condition, immutables, the model's output) without it. Never increases any row's L0 distance.

    Rows are expected valid; an invalid row stays as it is unless a revert makes it valid.
    Stops early, returning the rows as far as they got, when ``task`` expires.
    """
    out = {k: np.array(v, copy=True) for k, v in rows.items()}
    m = n_rows(out)
    if m == 0:
        return out
    mv = moves(features, x, out)
    changed = mv > 0
    order = np.argsort(np.where(changed, mv, np.inf), axis=1, kind="stable")
    counts = changed.sum(axis=1)
    names = [f.name for f in features]
    for step in range(int(counts.max(initial=0))):
        if task.expired():
            break
        active = np.flatnonzero(counts > step)
        target = order[active, step]
        trial = take(out, active)
        for j, name in enumerate(names):
            hit = target == j
            if hit.any():
                trial[name][hit] = x[name]
        ok = valid_mask(model, features, task, trial)
        for name in names:
            out[name][active[ok]] = trial[name][ok]
    return out
