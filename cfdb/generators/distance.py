"""Distances between an instance and candidate CFs, over raw feature values.

- ``l0``: the number of features that differ;
- ``l1``: Σ |x − c| / MAD over numeric features plus the number of differing categoricals;
- ``tabular``: CERTIFAI's distance (Sharma et al. 2020) as used for the CFDB paper's burden
  experiment: ``(n_cat/n)·Σ_cat 1[x≠c] + (n_num/n)·Σ_num |x−c|/MAD`` (MAD ×1.4826 from
  the training data, 0 replaced by 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cfdb.errors import CfdbPluginError
from cfdb.types import Columns, FeatureSpec

DISTANCES = ("l0", "l1", "tabular")


def _differs(values: np.ndarray, x: Any) -> np.ndarray:
    if values.dtype == object or isinstance(x, str):
        # numpy compares object arrays element-wise with the values' own ==.
        return np.asarray(values != x, dtype=bool)
    return values.astype(float) != float(x)


def _check(kind: str) -> None:
    if kind not in DISTANCES:
        raise CfdbPluginError(f"unknown distance {kind!r}; known: {', '.join(DISTANCES)}")


def _combine(kind: str, cat: np.ndarray, num: np.ndarray, n_cat: int, n_num: int) -> np.ndarray:
    """The distance from its categorical and numeric parts (tabular weighs them by count)."""
    if kind in ("l0", "l1"):
        return cat + num
    total = max(1, n_cat + n_num)
    return (n_cat / total) * cat + (n_num / total) * num


def distance(
    kind: str, instance: Mapping[str, Any], rows: Columns, features: list[FeatureSpec]
) -> np.ndarray:
    """Distance of each row of ``rows`` to ``instance``.

    Raises:
        CfdbPluginError: an unknown distance name.
    """
    _check(kind)
    n = len(next(iter(rows.values()))) if rows else 0
    cat = np.zeros(n)
    num = np.zeros(n)
    n_cat = n_num = 0
    for f in features:
        values = np.asarray(rows[f.name])
        if f.is_categorical:
            n_cat += 1
            cat += _differs(values, instance[f.name])
        else:
            n_num += 1
            if kind == "l0":
                num += _differs(values, instance[f.name])
            else:
                mad = f.mad if f.mad else 1.0
                num += np.abs(values.astype(float) - float(instance[f.name])) / mad
    return _combine(kind, cat, num, n_cat, n_num)


def pairwise(kind: str, a: Columns, b: Columns, features: list[FeatureSpec]) -> np.ndarray:
    """Distance of ``a[i]`` to ``b[i]`` for every ``i`` (the same formulas as :func:`distance`,
    vectorized over pairs; what ``cf_distance(a, b, kind)`` computes in SQL).

    Raises:
        CfdbPluginError: an unknown distance name.
    """
    _check(kind)
    n = len(next(iter(a.values()))) if a else 0
    cat = np.zeros(n)
    num = np.zeros(n)
    n_cat = n_num = 0
    for f in features:
        x, y = np.asarray(a[f.name]), np.asarray(b[f.name])
        if f.is_categorical:
            n_cat += 1
            cat += _pair_differs(x, y)
        else:
            n_num += 1
            if kind == "l0":
                num += x.astype(float) != y.astype(float)
            else:
                num += np.abs(x.astype(float) - y.astype(float)) / (f.mad if f.mad else 1.0)
    return _combine(kind, cat, num, n_cat, n_num)


def _pair_differs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.dtype == object or y.dtype == object:
        return np.asarray(x != y, dtype=bool)
    return x != y
