"""Truncated series in label tallies for the one-to-many join sweeps.

A coalition's top-K event is recorded by the tally of present rows before a position,
truncated below total degree K: :class:`Series` multiplies such series and forms the duals
that carry derivatives back (:mod:`cfdb.valuation.knn_join_sweep`,
:mod:`cfdb.valuation.knn_join_logs`); :func:`factor_series` is a dimension tuple's closed-form
factor, and the two position helpers count a dimension's rows along the distance order.
"""

from __future__ import annotations

import numpy as np

from cfdb.valuation.utilities import Tallies


class Series:
    """Truncated series over the tallies of total size below K, stored tally-first (T, ...)."""

    def __init__(self, n_classes: int, k: int) -> None:
        self.tallies = Tallies(n_classes, k - 1)
        self.t = len(self.tallies)
        self.deg = self.tallies.sizes.astype(np.float64)
        ii, jj, kk = self.tallies.product_table()
        self.pairs = list(zip(ii.tolist(), jj.tolist(), kk.tolist()))
        self.unit = [
            [self.tallies.index(np.eye(n_classes, dtype=np.int64)[c] * p) for p in range(k)]
            for c in range(n_classes)
        ]

    def y_minus_1(self) -> np.ndarray:
        """The series ``y_c − 1`` per class, shaped (C, T, 1, 1) to multiply (T, rows, nodes)."""
        out = np.zeros((self.tallies.n_classes, self.t, 1, 1))
        out[:, 0] = -1.0
        for cls, units in enumerate(self.unit):
            if len(units) > 1:
                out[cls, units[1]] = 1.0
        return out

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast_shapes(a.shape, b.shape), dtype=np.result_type(a, b))
        for i, j, t in self.pairs:
            out[t] += a[i] * b[j]
        return out

    def dual(self, p: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """``D[δ] = Σ_γ p[γ]·lam[γ + δ]``, so that ``⟨W, D⟩ = ⟨W·p, lam⟩``."""
        out = np.zeros(np.broadcast_shapes(p.shape, lam.shape), dtype=np.result_type(p, lam))
        for i, j, t in self.pairs:
            out[j] += p[i] * lam[t]
        return out

    def binomials(self, counts: np.ndarray) -> np.ndarray:
        """``B[γ, r] = Π_c C(counts[r, c], γ_c)`` (T × rows)."""
        out = np.ones((self.t, counts.shape[0]))
        for t, vec in enumerate(self.tallies.vectors):
            for c, g in enumerate(vec.tolist()):
                for step in range(g):
                    out[t] *= (counts[:, c] - step) / (step + 1)
        return out


def group_counts(groups: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """``N[i, c]``: rows of class ``c`` in row i's group strictly before position i."""
    n = len(groups)
    idx = np.argsort(groups, kind="stable")
    sg = groups[idx]
    hot = np.zeros((n, n_classes))
    hot[np.arange(n), classes[idx]] = 1.0
    cum = np.cumsum(hot, axis=0) - hot  # exclusive
    starts = np.r_[True, sg[1:] != sg[:-1]]
    run_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    cum -= cum[run_start]
    out = np.empty_like(cum)
    out[idx] = cum
    return out


def suffix_in_group(
    values: np.ndarray, groups_order: np.ndarray, groups: np.ndarray, inclusive: bool
) -> np.ndarray:
    """For each position: the sum of ``values`` over later (or equal) positions of its group."""
    v = values[groups_order]
    g = groups[groups_order]
    rc = np.cumsum(v[::-1])[::-1]
    last = np.r_[g[1:] != g[:-1], True]
    ends = np.nonzero(last)[0]
    after_end = np.r_[rc[1:], 0.0][ends]
    run_id = np.cumsum(np.r_[True, g[1:] != g[:-1]]) - 1
    out_sorted = rc - after_end[run_id]
    if not inclusive:
        out_sorted = out_sorted - v
    out = np.empty(len(v))
    out[groups_order] = out_sorted
    return out


def factor_series(
    ser: Series,
    counts: np.ndarray,
    log_t: np.ndarray,
    log_u: np.ndarray,
    binomials: np.ndarray | None = None,
) -> np.ndarray:
    """``A(n) = Π_c ((1 − t) + t·y_c)^{n_c}`` truncated below degree K (T × rows × nodes).

    Coefficients ``Π_c C(n_c, γ_c) · t^{|γ|} · (1 − t)^{|n| − |γ|}``: nonnegative, each
    formed to a few ulps (no cancellation anywhere). ``binomials`` is ``ser.binomials(counts)``
    when the caller keeps it across batches of nodes.
    """
    size = counts.sum(axis=1)
    # t^|γ|·(1 − t)^(|n| − |γ|) as (t/(1 − t))^|γ| times (1 − t)^|n|: two small tables instead
    # of an exponential per cell; where (1 − t)^|n| underflows the coefficient is negligible
    # (below 1e-230 even after the binomial), and |γ| > |n| has a zero binomial
    ratio = np.exp(ser.deg[:, None] * (log_t - log_u)[None, :])  # (T, nodes)
    # sizes are small integers: one power table per node, gathered (an exp per cell is slower)
    size = np.clip(size, 0, None).astype(np.int64)
    powers = np.exp(np.arange(int(size.max(initial=0)) + 1)[:, None] * log_u[None, :])
    base = powers[size]  # (rows, nodes)
    if binomials is None:
        binomials = ser.binomials(counts)
    return binomials[:, :, None] * ratio[:, None, :] * base[None, :, :]
