"""Shapley values as integrals: the multilinear extension and its Gauss–Legendre nodes.

For a game over ``n`` players, Owen (1972): with every other player present independently
with probability ``t``, the expected marginal contribution ``E_t[u(S ∪ x) − u(S)]`` is
``Σ_S t^|S| (1−t)^(n−1−|S|) (u(S ∪ x) − u(S))``, and since
``∫₀¹ t^s (1−t)^(n−1−s) dt = s!(n−1−s)!/n!`` (the Shapley weight),

    φ_x = ∫₀¹ E_t[u(S ∪ x) − u(S)] dt.

The integrand is a polynomial of degree ``n − 1`` in ``t``, so Gauss–Legendre quadrature with
``⌈n/2⌉`` nodes computes it exactly (up to floating point). At a fixed ``t`` the players are
independent, which is what makes the one-to-many-join counting oracles factorize over
dimension tuples (:mod:`cfdb.valuation.knn_join`).

When ``⌈n/2⌉`` exceeds a node budget, :func:`shapley_nodes` returns a composite rule instead:
Gauss–Legendre panels that shrink geometrically towards both ends of ``[0, 1]`` (where the
integrand of a nearest-neighbour game varies on the scale ``1/n``) and uniform panels in the
middle. That rule is not exact by construction: runs record ``quadrature_exact = false``, and
tests and benchmarks compare it with a refined rule (20 points per panel).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import roots_legendre


@dataclass(frozen=True)
class Nodes:
    """Quadrature nodes on ``[0, 1]``.

    Attributes:
        t: the nodes.
        w: their weights (summing to 1).
        exact: whether the rule integrates every polynomial of degree ``n − 1`` exactly.
    """

    t: np.ndarray
    w: np.ndarray
    exact: bool


def gauss_legendre(m: int, lo: float = 0.0, hi: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``m``-point Gauss–Legendre nodes and weights on ``[lo, hi]``."""
    # scipy's asymptotic formulas: as accurate as numpy's leggauss here, and O(m) instead of an
    # m × m eigenvalue problem (15 s for the 2,048-node rule)
    x, w = roots_legendre(m)
    half = (hi - lo) / 2
    return lo + half * (x + 1), half * w


def shapley_nodes(
    n_players: int, max_nodes: int = 2048, points: int = 10, near_zero: int | None = None
) -> Nodes:
    """Nodes for the Shapley integral of a game with ``n_players`` players.

    Args:
        n_players: number of players ``n``.
        max_nodes: largest exact rule (``⌈n/2⌉`` nodes) to use before going composite.
        points: Gauss–Legendre points per panel of the composite rule.
        near_zero: the largest number of players whose joint absence one term of the
            integrand can hinge on near ``t = 0`` (``(1 − t)^s`` varies on the scale ``1/s``);
            the panels shrink towards 0 down to ``4/s`` (rounded to a power of two) and one
            panel of ``2·points`` covers ``[0, 4/s]``, where such a term falls by ``e⁴`` at
            most — a smooth function a 20-point rule integrates to rounding. Default ``n``
            (the panels then shrink to ``1/(4n)``). A one-to-many join passes the size of its
            largest dimension tuple, its number of dimension tuples and ``√n``: below
            ``t ≈ 1/√n`` a coalition rarely holds two rows, so nothing varies faster there.
    """
    m = max(1, math.ceil(n_players / 2))
    if m <= max_nodes:
        t, w = gauss_legendre(m)
        return Nodes(t, w, True)
    levels = math.ceil(math.log2(n_players)) + 2
    low = levels
    if near_zero is not None:
        low = max(2, min(levels, math.ceil(math.log2(max(near_zero, 2))) - 2))
    edges = {0.0, 1.0}
    for j in range(2, levels + 1):
        if j <= low:
            edges.add(2.0**-j)
        edges.add(1.0 - 2.0**-j)
    # four panels across the middle: against a 20-point rule, values of joins of 10,000 to
    # 20,000 facts (K = 3, 5, 10) were as close as with the earlier 1/32 grid (within 1e-15
    # of the largest value)
    edges.update(np.linspace(0.25, 0.75, 5).tolist())
    grid = sorted(edges)
    ts, ws = [], []
    for lo, hi in itertools.pairwise(grid):
        t, w = gauss_legendre(2 * points if lo == 0.0 and near_zero is not None else points, lo, hi)
        ts.append(t)
        ws.append(w)
    return Nodes(np.concatenate(ts), np.concatenate(ws), False)
