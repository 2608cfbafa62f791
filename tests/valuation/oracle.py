"""Slow exact oracles: Shapley values of base tuples by enumerating every coalition.

Independent of ``cfdb.valuation``: distances are computed directly, the K nearest present
rows come from a stable sort, the KNN proxy's prediction is formed as defined, and the
metric is computed from the predictions (not from a gain matrix).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from math import comb

import numpy as np

#: ``metric(P) -> float`` where ``P[j, c]`` is how much validation row j is predicted as c.
Metric = Callable[[np.ndarray], float]


def orders(train: np.ndarray, val: np.ndarray) -> list[np.ndarray]:
    """Training rows by distance to each validation row, ties by row index."""
    out = []
    for v in val:
        d = np.sum((train - v) ** 2, axis=1)
        out.append(np.lexsort((np.arange(len(train)), d)))
    return out


def predictions(
    present: np.ndarray,
    order: list[np.ndarray],
    labels: np.ndarray,
    n_classes: int,
    k: int,
    kind: str,
) -> np.ndarray:
    """``P[j, c]``: soft — share of the K nearest present rows with label c (count / K);
    vote — 1 for the majority label of the (up to) K nearest, ties to the lowest class.
    No present row: all zeros."""
    out = np.zeros((len(order), n_classes))
    for j, o in enumerate(order):
        top = [r for r in o if present[r]][:k]
        if not top:
            continue
        counts = np.bincount(labels[top], minlength=n_classes).astype(float)
        if kind == "soft":
            out[j] = counts / k
        else:
            out[j, int(np.argmax(counts))] = 1.0
    return out


def accuracy(y: np.ndarray) -> Metric:
    return lambda p: float(np.mean(p[np.arange(len(y)), y]))


def rate(y: np.ndarray, pos: int, truth_positive: bool, predict_positive: bool) -> Metric:
    rows = (y == pos) if truth_positive else (y != pos)

    def metric(p: np.ndarray) -> float:
        if not rows.any():
            return 0.0
        predicted = p[rows, pos] if predict_positive else p[rows].sum(axis=1) - p[rows, pos]
        return float(predicted.sum() / rows.sum())

    return metric


def equalized_odds(y: np.ndarray, pos: int, groups: np.ndarray, p_all: np.ndarray) -> Metric:
    """The additive approximation: dominant rate and group pair fixed on the full data."""
    best = None
    for truth in (True, False):
        rows = (y == pos) if truth else (y != pos)
        rates = {}
        for g in sorted({str(x) for x in groups[rows]}):
            sel = rows & (groups.astype(str) == g)
            rates[g] = p_all[sel, pos].mean()
        if len(rates) < 2:
            continue
        hi = max(rates, key=lambda key: (rates[key], key))
        lo = min(rates, key=lambda key: (rates[key], key))
        if best is None or rates[hi] - rates[lo] > best[0]:
            best = (rates[hi] - rates[lo], truth, hi, lo)
    assert best is not None
    _, truth, hi, lo = best
    rows = (y == pos) if truth else (y != pos)
    sel_hi = rows & (groups.astype(str) == hi)
    sel_lo = rows & (groups.astype(str) == lo)
    return lambda p: float(p[sel_hi, pos].mean() - p[sel_lo, pos].mean())


def shapley_by_enumeration(
    train: np.ndarray,
    labels: np.ndarray,
    monomials: list[list[frozenset[int]]],
    n_vars: int,
    val: np.ndarray,
    metric: Metric,
    n_classes: int,
    k: int,
    kind: str,
) -> np.ndarray:
    """Shapley value of each variable, by enumerating all ``2^n`` coalitions.

    A training row is present in a coalition when one of its monomials (sets of variables)
    is contained in it; the empty training set scores 0.
    """
    order = orders(train, val)
    utility = {}
    for size in range(n_vars + 1):
        for subset in combinations(range(n_vars), size):
            s = frozenset(subset)
            present = np.array([any(m <= s for m in row) for row in monomials], dtype=bool)
            utility[s] = (
                metric(predictions(present, order, labels, n_classes, k, kind))
                if (present.any())
                else 0.0
            )
    values = np.zeros(n_vars)
    for x in range(n_vars):
        others = [v for v in range(n_vars) if v != x]
        for size in range(n_vars):
            weight = 1.0 / (n_vars * comb(n_vars - 1, size))
            for subset in combinations(others, size):
                s = frozenset(subset)
                values[x] += weight * (utility[s | {x}] - utility[s])
    return values


def jia_soft_map(
    train: np.ndarray, labels: np.ndarray, val: np.ndarray, y_val: np.ndarray, k: int
) -> np.ndarray:
    """Jia et al. 2019, Theorem 1, written out plainly: accuracy, mean over validation rows."""
    n = len(train)
    values = np.zeros(n)
    for v, yv in zip(val, y_val):
        d = np.linalg.norm(train - v, axis=1)
        alpha = np.argsort(d, kind="stable")
        s = np.zeros(n)
        hit = (labels[alpha] == yv).astype(float)
        s[n - 1] = hit[n - 1] * min(k, n) / (k * n)
        for i in range(n - 2, -1, -1):
            s[i] = s[i + 1] + (hit[i] - hit[i + 1]) / k * min(k, i + 1) / (i + 1)
        values[alpha] += s / len(val)
    return values


def shapley_of_players(
    train: np.ndarray,
    labels: np.ndarray,
    row_vars: list[list[int]],
    players: list[int],
    val: np.ndarray,
    gain: np.ndarray,
    k: int,
    kind: str,
) -> tuple[np.ndarray, float, float]:
    """Shapley values of the variables ``players`` by enumerating every subset of them, the
    other variables always present (exogenous).

    A row is present when its player variables are all in the coalition (a row without one
    is always present). The utility is ``Σ_j gain[j, ·]`` at the KNN proxy's prediction.

    Returns:
        The values (indexed by position in ``players``), ``u(all players)`` and ``u(∅)``.
    """
    order = orders(train, val)
    index = {v: i for i, v in enumerate(players)}
    masks = [sum(1 << index[v] for v in set(r) if v in index) for r in row_vars]
    n = len(players)
    utility = np.zeros(1 << n)
    for s in range(1 << n):
        present = np.array([(m & s) == m for m in masks], dtype=bool)
        p = predictions(present, order, labels, gain.shape[1], k, kind)
        utility[s] = float(np.sum(p * gain))
    values = np.zeros(n)
    for x in range(n):
        for s in range(1 << n):
            if s >> x & 1:
                continue
            size = bin(s).count("1")
            weight = 1.0 / (n * comb(n - 1, size))
            values[x] += weight * (utility[s | 1 << x] - utility[s])
    return values, float(utility[-1]), float(utility[0])
