"""Diverse counterfactuals and the data's precision (DiCE, Mothilal et al. 2020, section 3).

With ``n > 1`` a user asks for *different* ways to change an instance, not ``n`` copies of the
closest one that differ in the sixth decimal. :func:`select_diverse` picks ``n`` of the verified
candidates greedily by DiCE's objective with the determinantal diversity term: each step adds
the candidate that maximizes ``−mean distance to the instance + diversity · log det K`` over
the chosen set, ``K_ij = 1 / (1 + dist(c_i, c_j))``. A near-duplicate makes ``det K`` vanish,
so it is chosen only when nothing else is left; ``diversity = 0`` keeps the closest ``n``.

:func:`round_to_data` writes numeric CF values with the decimals the column has in the data,
rounding away from the instance's value (so a CF moves at least as far as the generator
moved it); candidates are verified after rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cfdb.generators.distance import distance
from cfdb.types import FeatureSpec

#: Candidates asked of a generator per CF wanted when choosing diverse CFs.
CANDIDATES_PER_CF = 4
#: At most this many of the closest candidates enter the greedy selection.
MAX_CANDIDATES = 64


def round_to_data(
    rows: dict[str, np.ndarray],
    instance: Mapping[str, Any],
    decimals: Mapping[str, int],
    features: list[FeatureSpec],
) -> dict[str, np.ndarray]:
    """Numeric features rounded to their column's decimals, away from the instance's value."""
    out = dict(rows)
    for f in features:
        d = decimals.get(f.name)
        if d is None or f.type != "numeric" or f.name not in rows:
            continue
        values = np.asarray(rows[f.name], dtype=float)
        x = float(instance[f.name])
        scale = 10.0**d
        raw = np.abs(values - x) * scale
        # Whole steps of the data's precision, never fewer than the change needs (float noise
        # such as 0.30000000004 is not a step more), and at least one for any change at all.
        steps = np.ceil(raw - 1e-12 * np.maximum(1.0, raw))
        step = np.where(raw > 0, np.maximum(steps, 1.0), 0.0) / scale
        out[f.name] = np.round(x + np.sign(values - x) * step, d)
    return out


def select_diverse(
    rows: dict[str, np.ndarray],
    dist: np.ndarray,
    n: int,
    diversity: float,
    features: list[FeatureSpec],
    metric: str,
) -> np.ndarray:
    """Indices of ``n`` rows chosen by the greedy DiCE objective (closest first when
    ``diversity`` is 0 or there are at most ``n`` rows)."""
    m = len(dist)
    order = np.argsort(dist, kind="stable")
    if diversity <= 0 or m <= n or n <= 1:
        return order[:n]
    pool = order[:MAX_CANDIDATES]
    sub = {k: np.asarray(v)[pool] for k, v in rows.items()}
    k = len(pool)
    pair = np.zeros((k, k))
    for i in range(k):
        row = {
            name: sub[name][i].item() if hasattr(sub[name][i], "item") else sub[name][i]
            for name in sub
        }
        pair[i] = distance(metric, row, sub, features)
    kernel = 1.0 / (1.0 + pair)
    chosen = [0]  # the closest candidate
    while len(chosen) < n:
        best, best_score = -1, -np.inf
        for c in range(k):
            if c in chosen:
                continue
            idx = [*chosen, c]
            sign, logdet = np.linalg.slogdet(kernel[np.ix_(idx, idx)])
            det_term = logdet if sign > 0 else -np.inf
            score = -float(np.mean(dist[pool[idx]])) + diversity * det_term
            if score > best_score or best < 0:
                best, best_score = c, score
        chosen.append(best)
    return pool[chosen]


def mean_pairwise_distance(
    rows: dict[str, np.ndarray], features: list[FeatureSpec], metric: str
) -> float:
    """The mean distance over pairs of rows (DiCE's diversity measure); 0 for one row."""
    m = len(next(iter(rows.values()))) if rows else 0
    if m < 2:
        return 0.0
    total = 0.0
    for i in range(m):
        row = {k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in rows.items()}
        total += float(np.sum(distance(metric, row, rows, features)))
    return total / (m * (m - 1))
