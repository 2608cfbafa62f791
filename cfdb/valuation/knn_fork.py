"""Exact KNN-Shapley for fork pipelines: a base tuple may feed several training rows.

The players are the *groups* (base tuples, e.g. data providers); a coalition's training set
is the union of its groups' rows.

**K = 1** (DataScope section 5.3, corollary 5.1.5): only each group's nearest row can ever
be the nearest present row, so per validation row the groups, ordered by their nearest row,
form a map pipeline and the Jia et al. recursion applies (O(N log N)).

**K ≥ 2**: a group's rows beyond its K-th nearest never reach a top K, so each validation
row keeps ``Σ_g min(|rows_g|, K)`` rows. A counting oracle in the spirit of DataScope's
additive decision diagrams then sweeps them in distance order. A coalition's utility is
decided by its *boundary*, the K-th present row ``b``, and the label tally ``γ`` of the
present rows up to ``b`` (or by the whole tally when fewer than K rows are present). At
``b`` the *relevant* groups are those with a row at or before ``b``; a group's *type* is the
tally of those rows. A coalition with boundary ``b`` chooses relevant groups whose types add
up to ``γ`` with ``|γ| = K``: at most K groups, so every other relevant group is excluded and
every irrelevant group is free. Summing the Shapley weights over the free groups leaves
``a!·(r−a)!/(r+1)!`` for ``a`` chosen out of ``r`` relevant others (the probability that, in
a random permutation, the valued group follows the chosen and precedes the excluded ones).
The number of ways to choose is a coefficient of the generating polynomial
``Z = Π_types (1 + z·y^τ)^{m_τ}`` in ``z`` (groups chosen) and ``y`` (tally), truncated at
tally size K. Moving the boundary one row changes one group's type, i.e. one factor of
``Z``: a division and a multiplication by ``1 + z·y^τ``, each O(K·|Γ|). A group ``x`` of type
``τ_x`` changes the boundary event by the factor ``(y^{τ_x} − 1)/(1 + z·y^{τ_x})`` applied to
the coalitions containing the boundary row's group, which gives its marginal contribution at
``b``; these are summed per type and credited to each group over the stretches where its
type is constant. The whole sweep runs for a chunk of validation rows in lock-step.
Complexity: O(N log N + K·|Γ|·T·Σ_g min(|rows_g|, K)) per validation row, ``T`` the number
of group types (tallies of size 1..K).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from cfdb.valuation.neighbors import Ranker, chunk_rows, chunks
from cfdb.valuation.utilities import Tallies, tally_utility


def shapley_weight_table(n: int, k: int) -> np.ndarray:
    """``W[r, a] = a!·(r−a)!/(r+1)!`` for ``0 <= r <= n`` and ``0 <= a <= k`` (0 if a > r)."""
    r = np.arange(n + 1, dtype=np.float64)[:, None]
    a = np.arange(k + 1, dtype=np.float64)[None, :]
    with np.errstate(invalid="ignore"):
        logw = gammaln(a + 1) + gammaln(r - a + 1) - gammaln(r + 2)
    w = np.exp(np.where(a <= r, logw, -np.inf))
    return w


def kept_positions(order: np.ndarray, row_group: np.ndarray, k: int) -> np.ndarray:
    """Per validation row: the sorted positions of each group's first ``k`` rows (B × M')."""
    groups = row_group[order]
    if len(row_group) and int(row_group.max()) < 2**16:
        groups = groups.astype(np.uint16)  # a stable sort of 16-bit keys is a radix sort
    out = []
    for gs in groups:
        idx = np.argsort(gs, kind="stable")
        sorted_groups = gs[idx]
        starts = np.r_[0, np.nonzero(sorted_groups[1:] != sorted_groups[:-1])[0] + 1]
        run_start = np.repeat(starts, np.diff(np.r_[starts, len(gs)]))
        rank = np.empty(len(gs), dtype=np.int64)
        rank[idx] = np.arange(len(gs)) - run_start
        out.append(np.nonzero(rank < k)[0])
    return np.array(out, dtype=np.int64).reshape(len(groups), -1)


def _soft_sequence(h: np.ndarray, k: int) -> np.ndarray:
    """Jia et al.'s recursion over sequences ``h`` (B × N, nearest first), vectorized."""
    n = h.shape[1]
    ranks = np.arange(1, n + 1, dtype=np.float64)
    c = np.minimum(k, ranks) / (k * ranks)
    s_n = h[:, -1] * min(k, n) / (k * n)
    c[-1] = 0.0
    delta = np.zeros(n)
    delta[1:] = c[1:] - c[:-1]
    f = np.cumsum(h * delta, axis=1)
    return h * c - f + f[:, -1:] + s_n[:, None]


def fork_values_1nn(
    ranker: Ranker,
    row_group: np.ndarray,
    labels: np.ndarray,
    val: np.ndarray,
    gain: np.ndarray,
    n_groups: int,
) -> np.ndarray:
    """Exact 1-NN Shapley values of the groups (DataScope corollary 5.1.5)."""
    values = np.zeros(n_groups)
    for part in chunks(len(gain), chunk_rows(ranker.n)):
        order = ranker.order(val[part])
        kept = kept_positions(order, row_group, 1)
        rows = np.take_along_axis(order, kept, axis=1)
        h = np.take_along_axis(gain[part], labels[rows].astype(np.intp), axis=1)
        s = _soft_sequence(h, 1)
        np.add.at(values, row_group[rows].ravel(), s.ravel())
    return values


class _Ring:
    """Index tables for polynomials in z (groups chosen, degree <= K) and y (tallies)."""

    def __init__(self, tallies: Tallies) -> None:
        self.tallies = tallies
        t = len(tallies)
        self.zero = t  # an extra always-zero column
        vec = tallies.vectors
        # minus[τ, γ] = index of γ − τ (zero column when negative); minus[0] = all zero column
        self.minus = np.full((t, t), self.zero, dtype=np.int64)
        for i in range(1, t):
            for j in range(t):
                d = vec[j] - vec[i]
                if d.min() >= 0:
                    self.minus[i, j] = tallies.index(d)
        self.plus = np.stack(
            [
                tallies.shift(np.eye(tallies.n_classes, dtype=np.int64)[c])
                for c in range(tallies.n_classes)
            ]
        )
        self.plus[self.plus < 0] = self.zero

    def divide(self, z: np.ndarray, minus: np.ndarray) -> np.ndarray:
        """``z / (1 + z·y^τ)`` along the last two axes; ``minus`` selects ``γ − τ`` per row."""
        out = z.copy()
        for a in range(1, z.shape[-2]):
            out[..., a, :-1] -= np.take_along_axis(out[..., a - 1, :], minus, axis=-1)
        return out

    @staticmethod
    def shift(z: np.ndarray, minus: np.ndarray, raise_z: bool) -> np.ndarray:
        """``z·y^τ`` (times ``z`` when ``raise_z``)."""
        out = np.zeros_like(z)
        src = z[..., :-1, :] if raise_z else z
        moved = np.take_along_axis(src, minus[..., None, :], axis=-1)
        if raise_z:
            out[..., 1:, :-1] = moved
        else:
            out[..., :-1] = moved
        return out


def fork_values(
    ranker: Ranker,
    row_group: np.ndarray,
    labels: np.ndarray,
    val: np.ndarray,
    gain: np.ndarray,
    n_groups: int,
    k: int,
    knn_utility: str,
) -> np.ndarray:
    """Exact KNN-Shapley values of the groups of a fork pipeline.

    Args:
        ranker: ranks the training rows.
        row_group: the group (variable) of each training row.
        labels: class codes of the training rows.
        val: featurized validation rows.
        gain: the gain matrix (validation rows × classes).
        n_groups: number of groups.
        k: the K of the KNN proxy.
        knn_utility: ``soft`` or ``vote``.

    Returns:
        One value per group.
    """
    if k == 1:
        return fork_values_1nn(ranker, row_group, labels, val, gain, n_groups)
    n_classes = gain.shape[1]
    tallies = Tallies(n_classes, k)
    ring = _Ring(tallies)
    weights = shapley_weight_table(n_groups, k)
    values = np.zeros(n_groups)
    values += _small_coalitions(row_group, labels, gain, n_groups, k, knn_utility, ring, weights)
    per_row = max(1, min(chunk_rows(ranker.n), 4_000_000 // max(n_groups, 1)))
    for part in chunks(len(gain), per_row):
        values += _sweep(
            ranker,
            row_group,
            labels,
            val[part],
            gain[part],
            n_groups,
            k,
            knn_utility,
            ring,
            weights,
        )
    return values


def _sweep(
    ranker: Ranker,
    row_group: np.ndarray,
    labels: np.ndarray,
    val: np.ndarray,
    gain: np.ndarray,
    n_groups: int,
    k: int,
    knn_utility: str,
    ring: _Ring,
    weights: np.ndarray,
) -> np.ndarray:
    tallies = ring.tallies
    b = len(val)
    rows_b = np.arange(b)
    order = ranker.order(val)
    kept = kept_positions(order, row_group, k)
    rows = np.take_along_axis(order, kept, axis=1)
    grp, lab = row_group[rows], labels[rows].astype(np.int64)
    utility = tally_utility(gain, tallies, knn_utility, k)
    top = tallies.of_size(k)
    u_top = utility[:, top]  # (B, |Γ_K|)
    types = np.arange(1, len(tallies))  # every non-empty tally can be a group type
    t = len(tallies)
    z = np.zeros((b, k + 1, t + 1))
    z[:, 0, 0] = 1.0
    gtype = np.zeros((b, n_groups), dtype=np.int64)
    snap = np.zeros((b, n_groups))
    phi = np.zeros((b, n_groups))
    cum = np.zeros((b, t))
    n_rel = np.zeros(b, dtype=np.int64)
    minus_types = ring.minus[types]  # (T', T)
    for step in range(rows.shape[1]):
        g, c = grp[:, step], lab[:, step]
        old = gtype[rows_b, g]
        new = ring.plus[c, old]
        fresh = old == 0
        # close the group's stretch at its old type
        phi[rows_b, g] += np.where(fresh, 0.0, cum[rows_b, old] - snap[rows_b, g])
        n_rel += fresh
        zp = ring.divide(z, ring.minus[old])  # Z without the boundary row's group
        y = ring.shift(zp, ring.minus[new], raise_z=True)  # ... with it, at its new type
        z = zp + y
        w = weights[n_rel - 1]  # (B, K+1): r = relevant groups other than the valued one
        # other groups x of each type τ: coalitions through Y, x's factor (y^τ − 1)/(1 + z·y^τ)
        q = ring.divide(
            np.broadcast_to(y[:, None], (b, len(types), k + 1, t + 1)),
            np.broadcast_to(minus_types[None], (b, len(types), t)),
        )
        q_top = np.take_along_axis(q, ring.minus[types][:, top][None, :, None, :], axis=-1)
        diff = q_top - q[..., top]  # (B, T', K+1, |Γ_K|)
        d = np.einsum("btag,bg,ba->bt", diff, u_top, w)
        cum[:, types] += d
        # the boundary row's own group: forced in, not counted among the chosen
        own = np.take_along_axis(zp, ring.minus[new][:, top][:, None, :], axis=-1)
        phi[rows_b, g] += np.einsum("bag,bg,ba->b", own, u_top, w)
        gtype[rows_b, g] = new
        snap[rows_b, g] = cum[rows_b, new]
    live = gtype > 0
    phi += np.where(live, np.take_along_axis(cum, gtype, axis=1) - snap, 0.0)
    return phi.sum(axis=0)


def _small_coalitions(
    row_group: np.ndarray,
    labels: np.ndarray,
    gain: np.ndarray,
    n_groups: int,
    k: int,
    knn_utility: str,
    ring: _Ring,
    weights: np.ndarray,
) -> np.ndarray:
    """Shapley mass of coalitions with fewer than K rows in total (the whole tally counts)."""
    tallies = ring.tallies
    t = len(tallies)
    counts = np.zeros((n_groups, tallies.n_classes), dtype=np.int64)
    np.add.at(counts, (row_group, labels.astype(np.int64)), 1)
    sizes = counts.sum(axis=1)
    full_type = np.array(
        [tallies.index(v) if s < k else -1 for v, s in zip(counts, sizes)], dtype=np.int64
    )
    z = np.zeros((k + 1, t + 1))
    z[0, 0] = 1.0
    for ty in full_type[full_type > 0]:
        z = z + ring.shift(z, ring.minus[ty], raise_z=True)
    utility = tally_utility(gain, tallies, knn_utility, k)
    small = tallies.sizes < k
    w = weights[n_groups - 1]  # every group is fixed: r = n − 1
    out = np.zeros(n_groups)
    blocked_value = -np.einsum("ag,jg,a->", z[:, :t][:, small], utility[:, small], w)
    out[full_type < 0] = blocked_value
    for ty in np.unique(full_type[full_type > 0]):
        zx = ring.divide(z, ring.minus[ty])
        p = ring.shift(zx, ring.minus[ty], raise_z=False) - zx
        out[full_type == ty] = np.einsum("ag,jg,a->", p[:, :t][:, small], utility[:, small], w)
    return out
