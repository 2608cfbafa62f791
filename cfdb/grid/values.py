"""Pure references for the grid's aggregations (the SQL macros compute the same in DuckDB).

A utility is given as ``v: dict[frozenset[int], float]`` over subsets of units ``0..n-1``.
These functions are the slow, obvious definitions: exact semivalues by enumerating every
subset, Monte-Carlo Shapley from permutations. Tests check the macros against them, and
they serve small in-memory uses.

Semivalue weights by the size ``s`` of the coalition without the unit (``n`` units):
Shapley ``1/(n·C(n−1, s))``; Banzhaf ``1/2^(n−1)``; Beta(α, β) Shapley (Kwon & Zou 2022, the
paper's naming: Beta(16, 1) favours small coalitions) ``B(s+β, n−1−s+α)/B(α, β)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from math import comb, exp, lgamma

import numpy as np

Utility = Mapping[frozenset[int], float]


def _semivalue(v: Utility, n: int, weight: Callable[[int], float]) -> np.ndarray:
    out = np.zeros(n)
    for i in range(n):
        others = [u for u in range(n) if u != i]
        for s in range(n):
            for coalition in combinations(others, s):
                c = frozenset(coalition)
                out[i] += weight(s) * (v[c | {i}] - v[c])
    return out


def shapley(v: Utility, n: int) -> np.ndarray:
    """Exact Shapley values."""
    return _semivalue(v, n, lambda s: 1.0 / (n * comb(n - 1, s)))


def banzhaf(v: Utility, n: int) -> np.ndarray:
    """Exact Banzhaf values."""
    return _semivalue(v, n, lambda s: 1.0 / 2 ** (n - 1))


def beta_weight(n: int, s: int, alpha: float, beta: float) -> float:
    """Weight of one coalition of size ``s`` in Beta(α, β) Shapley over ``n`` units."""
    log_b = lgamma(s + beta) + lgamma(n - 1 - s + alpha) - lgamma(n - 1 + alpha + beta)
    log_b0 = lgamma(alpha) + lgamma(beta) - lgamma(alpha + beta)
    return exp(log_b - log_b0)


def beta_shapley(v: Utility, n: int, alpha: float, beta: float) -> np.ndarray:
    """Exact Beta(α, β) Shapley values."""
    return _semivalue(v, n, lambda s: beta_weight(n, s, alpha, beta))


def loo(v: Utility, n: int) -> np.ndarray:
    """Leave-one-out values ``v(all) − v(all ∖ i)``."""
    full = frozenset(range(n))
    return np.array([v[full] - v[full - {i}] for i in range(n)])


def monte_carlo_shapley(
    v: Callable[[frozenset[int]], float], permutations: Sequence[Sequence[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo Shapley: mean marginal contribution over permutations, and its standard
    error (NaN with one permutation)."""
    perms = [list(p) for p in permutations]
    n = len(perms[0])
    deltas = np.zeros((len(perms), n))
    for d, perm in enumerate(perms):
        prefix: frozenset[int] = frozenset()
        for unit in perm:
            deltas[d, unit] = v(prefix | {unit}) - v(prefix)
            prefix = prefix | {unit}
    se = deltas.std(axis=0, ddof=1) / np.sqrt(len(perms)) if len(perms) > 1 else np.full(n, np.nan)
    return deltas.mean(axis=0), se
