"""KNN-Shapley over a one-to-many join in one vectorized sweep: O(Q·M·|Γ|²) per validation row.

The players are fact tuples ``f`` and dimension tuples ``d``; a training row ``a_f · a_d`` is
present when both are. :mod:`cfdb.valuation.knn_join` explains the Shapley integral
``φ_x = ∫₀¹ ∂E_t[u]/∂p_x dt`` (every player present independently with probability ``t``,
Gauss–Legendre nodes in ``t``) and the factorization over dimension tuples. This module
computes the same integrand for *every* player at *every* node with array operations along
the distance order, instead of per-row leave-one-out products. Per validation row and node:

**Series.** ``y`` marks present rows before a position: ``y`` alone counts them (``soft``:
the utility is linear in the rows, ``u(S) = Σ_i (h_i/K)·1[i present, < K present before i]``)
or ``y_c`` counts them per class (``vote``: label tallies). Series are truncated below total
degree K. A fact of class ``c`` contributes ``φ_c = (1−t) + t·y_c``; a dimension tuple whose
facts before position ``i`` have class counts ``n`` contributes ``F(n) = (1−t) + t·A(n)``,
``A(n) = Π_c φ_c^{n_c}`` (closed form by the binomial theorem).

**Event probabilities.** Row ``i`` (fact ``f_i``, dimension ``g_i``, class ``c_i``) is the
boundary with tally ``γ`` of the present rows before it with probability
``[y^γ] P_i``, ``P_i = t²·A_{g_i}·R_i``, ``R_i = Π_{d ≠ g_i} F_d`` (the boundary's own
dimension is present, not a factor). ``E_t[u] = Σ_i Λ_i(P_i) + Λ_∞(Φ)``: ``Λ_i`` weighs the
tallies by the utility (``soft``: ``h_i/K`` for every count below K; ``vote``: ``u(γ + e_{c_i})``
for ``|γ| = K − 1``) and the tail ``Λ_∞`` (``vote`` only) scores coalitions with fewer than K
present rows, ``Φ = Π_d F_d`` over all rows.

**Products as sums of logarithms.** ``log R_i = Σ_d log F_d − log F_{g_i}``; along the
distance order only one dimension's factor changes per row, so ``Σ_d log F_d`` is a
cumulative sum of per-row differences — vectorized over all rows at once. Each
``log F(n)`` is split into ``log F(n)(0)`` (a number; its sums are exponentiated at the end,
underflow meaning a negligible event) and ``log(1 + G(n))``, ``G`` without constant term.
Logarithm, exponential and inverse of truncated series come from the Euler-operator
recurrences ``θ log(1+G) = θG − θlog(1+G)·G``, ``θ exp(ℓ) = θℓ·exp(ℓ)``, ``I = 1 − G·I``.
To keep ``G``'s coefficients bounded (so that the series arithmetic does not cancel), ``y`` is
rescaled by ``s = 1 − t`` at nodes ``t > 1/2``: then ``|[y^γ] G| ≤ 2^{|γ|}`` at every node.

**Derivatives.** With ``D_i`` the dual of ``P_i`` under ``Λ_i``
(``⟨W, D_i⟩ = Λ_i(W·P_i)`` for every series ``W``), the partial derivatives are:

* ``∂/∂p_{f_i}`` and ``∂/∂p_{g_i}`` of ``Λ_i(P_i)``: ``Λ_i(P_i)/t`` (the row's own term);
* a fact ``f`` of class ``c`` in ``g_i`` before ``i``: ``Λ_i(t²·(A_{g_i}/φ_c)·(y_c − 1)·R_i)``;
* a dimension ``d ≠ g_i`` with facts before ``i``: ``⟨(A_d − 1)/F_d, D_i⟩``, and a fact of
  class ``c`` of such a ``d``: ``⟨t·A_d·(y_c − 1)/(φ_c·F_d), D_i⟩``.

``F_d`` and ``A_d`` are constant between two facts of ``d`` in the distance order, so the
last two are inner products with *stretch sums* of ``D`` (differences of one cumulative sum,
the tail included), and each fact accumulates the stretches after it by a suffix sum within
its dimension. Everything is linear in the node's integrand, so node weights are applied
before the per-tuple sums.

**Precision.** Taking a factor out of a product through its inverse series is
ill-conditioned when the factor is nearly a monomial of positive degree, which happens near
``t = 1``: a fact's ``φ_c`` (constant ``1 − t``, slope ``t``) and a dimension with fewer than K
facts (constant ≈ ``1 − t``, top coefficient ≈ 1). So ``A/φ_c`` is formed in closed form (the
counts with one class-c fact less), and the stretches of dimensions with 1..K−1 facts are
summed pair by pair with the factor removed in log space (``exp(ℓ_i − log F_d)``; O(Σ of those
stretches) extra work). Dimensions with K or more facts still go through ``1/F_d``; the loss
grows with K (values sum to the utility to 1e-13 for K <= 3 with hundreds of tuples, 1e-10 for
K = 4, 1e-7 for K = 5), hence :data:`cfdb.valuation.knn_join.SWEEP_MAX_K`.

Complexity per validation row: O(N log N) to rank plus O(Q·M·|Γ|²) for M rows, Q nodes and
|Γ| tallies below K (K for ``soft``, ``C(K − 1 + C, C)`` for ``vote`` with C classes).
Covers joins where every training row is a fact × dimension pair and every fact has one row;
other one-to-many shapes use :func:`cfdb.valuation.knn_join.join_values_general`.
"""

from __future__ import annotations

import numpy as np

from cfdb.valuation.knn_join import _within_group
from cfdb.valuation.neighbors import Ranker, chunk_rows, chunks
from cfdb.valuation.quadrature import Nodes
from cfdb.valuation.utilities import Tallies

#: (node, position) cells per array: bounds the sweep's memory (about 40 arrays of this many
#: float64 values times the number of tallies).
_CELLS = 1 << 17


class _Series:
    """Truncated series over the tallies of total size below K, stored tally-first (T, ...)."""

    def __init__(self, n_classes: int, k: int) -> None:
        self.tallies = Tallies(n_classes, k - 1)
        self.t = len(self.tallies)
        self.deg = self.tallies.sizes.astype(np.float64)
        ii, jj, kk = self.tallies.product_table()
        self.pairs = list(zip(ii.tolist(), jj.tolist(), kk.tolist()))
        # pairs grouped by target, targets by increasing degree (recurrences need that order)
        self.into: dict[int, list[tuple[int, int]]] = {}
        for i, j, t in self.pairs:
            self.into.setdefault(t, []).append((i, j))
        self.order = sorted(range(self.t), key=lambda x: (self.tallies.sizes[x], x))
        self.unit = [
            [self.tallies.index(np.eye(n_classes, dtype=np.int64)[c] * p) for p in range(k)]
            for c in range(n_classes)
        ]

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast_shapes(a.shape, b.shape), dtype=np.result_type(a, b))
        for i, j, t in self.pairs:
            out[t] += a[i] * b[j]
        return out

    def exp(self, f: np.ndarray) -> np.ndarray:
        """``exp(f)`` for ``f`` without constant term."""
        out = np.zeros_like(f)
        out[0] = 1.0
        for t in self.order[1:]:
            acc = np.zeros_like(f[0])
            for i, j in self.into[t]:
                if i:
                    acc += self.deg[i] * f[i] * out[j]
            out[t] = acc / self.deg[t]
        return out

    def log1p(self, g: np.ndarray) -> np.ndarray:
        """``log(1 + g)`` for ``g`` without constant term."""
        out = np.zeros_like(g)
        for t in self.order[1:]:
            acc = np.zeros_like(g[0])
            for i, j in self.into[t]:
                if i and j:
                    acc += self.deg[i] * out[i] * g[j]
            out[t] = g[t] - acc / self.deg[t]
        return out

    def inv1p(self, g: np.ndarray) -> np.ndarray:
        """``1/(1 + g)`` for ``g`` without constant term."""
        out = np.zeros_like(g)
        out[0] = 1.0
        for t in self.order[1:]:
            acc = np.zeros_like(g[0])
            for i, j in self.into[t]:
                if i:
                    acc += g[i] * out[j]
            out[t] = -acc
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


def _group_counts(groups: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
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


def _suffix_in_group(
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


def _danger_pairs(rows: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p, i)`` for every row ``p`` of ``rows`` and every position ``p < i < stop[p]``."""
    lengths = stop[rows] - rows - 1
    keep = lengths > 0
    rows, lengths = rows[keep], lengths[keep]
    total = int(lengths.sum())
    pp = np.repeat(rows, lengths)
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return pp, pp + 1 + (np.arange(total) - first)


def _excl_cumsum(x: np.ndarray, extra: int = 0) -> np.ndarray:
    """Exclusive cumulative sum along the last axis, with ``extra`` trailing totals."""
    out = np.zeros((*x.shape[:-1], x.shape[-1] + 1 + extra), dtype=x.dtype)
    np.cumsum(x, axis=-1, out=out[..., 1 : x.shape[-1] + 1])
    if extra:
        out[..., x.shape[-1] + 1 :] = out[..., x.shape[-1] : x.shape[-1] + 1]
    return out


def sweep_row(
    ser: _Series,
    g: np.ndarray,
    c: np.ndarray,
    lam_y: np.ndarray,
    t: np.ndarray,
    w: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Node-weighted derivatives for one validation row and a batch of nodes.

    Args:
        ser: the series ring (``soft``: one variable; ``vote``: one per class).
        g: dimension of the row at each position (distance order), any integer ids.
        c: class of the row at each position in ``ser``'s variables (0 for ``soft``).
        lam_y: ``Λ_i`` per position as weights of the tallies (T × (M + 1)); the last column
            is the tail's functional ``Λ_∞``.
        t, w: nodes and weights.

    Returns:
        Per position: the derivative credited to its fact, and to its dimension.
    """
    m = len(g)
    n_cls = ser.tallies.n_classes
    u = 1.0 - t
    big = t > 0.5
    s = np.where(big, u**1, 1.0)
    r = t * s / u  # φ_c = u·(1 + r·x_c) in the rescaled variable x = y/s
    log_u, log_t = np.log(u), np.log(t)
    _, nxt, gorder = _within_group(g)
    before = _group_counts(g, c, n_cls)  # class counts of the dimension before each row
    after = before.copy()
    after[np.arange(m), c] += 1.0
    size_after = after.sum(axis=1)
    # prev[i]: the previous row of the same dimension (m: none)
    prev = np.full(m, m, dtype=np.int64)
    has_next = nxt < m
    prev[nxt[has_next]] = np.nonzero(has_next)[0]
    rdeg = r[None, :] ** ser.deg[:, None]  # (T, Q)
    a_after = ser.binomials(after)[:, None, :] * rdeg[:, :, None]  # (T, Q, M): A/u^|n|
    un_after = np.exp(size_after[None, :] * log_u[:, None])  # u^|n|
    f0_after = u[:, None] + t[:, None] * un_after
    g_after = a_after * (t[:, None] * un_after / f0_after)[None]
    g_after[0] = 0.0
    l_after = ser.log1p(g_after)
    lf0_after = np.log(f0_after)
    # state before each row = state after the previous row of its dimension (or empty)
    l_before = np.concatenate([l_after, np.zeros((ser.t, len(t), 1), dtype=t.dtype)], axis=2)[
        :, :, prev
    ]
    lf0_before = np.concatenate([lf0_after, np.zeros((len(t), 1), dtype=t.dtype)], axis=1)[:, prev]
    a_before = np.concatenate([a_after, np.zeros((ser.t, len(t), 1), dtype=t.dtype)], axis=2)[
        :, :, prev
    ]
    a_before[0][:, prev == m] = 1.0
    size_before = size_after - 1.0
    cl = _excl_cumsum(l_after - l_before)  # Σ_d log(1 + G_d) before each row, and in total
    cc = _excl_cumsum(lf0_after - lf0_before)
    ell = cl[:, :, :m] - l_before
    scale = cc[:, :m] - lf0_before + 2 * log_t[:, None] + size_before[None, :] * log_u[:, None]
    p = np.empty((ser.t, len(t), m + 1), dtype=t.dtype)
    e_rest = ser.exp(ell)
    p[:, :, :m] = ser.mul(a_before, e_rest) * np.exp(scale)[None]
    p[:, :, m] = ser.exp(cl[:, :, m]) * np.exp(cc[:, m])[None]
    # Λ in the rescaled variable: [x^γ] = [y^γ]·s^|γ|
    sdeg = s[None, :] ** -ser.deg[:, None]  # (T, Q)
    lam = lam_y[:, None, :] * sdeg[:, :, None]
    d = ser.dual(p, lam)  # (T, Q, M + 1)
    own = w @ (d[0, :, :m] / t[:, None])
    fact_vals = own.copy()
    dim_vals = own.copy()
    # A fact's factor φ_c = (1 − t) + t·y_c is taken out of A in closed form (one fact of class
    # c fewer), never divided out: dividing by φ_c is ill-conditioned for t near 1.
    ym1 = np.zeros((n_cls, ser.t, len(t)), dtype=t.dtype)  # y_c − 1 = s·x_c − 1
    for cls in range(n_cls):
        ym1[cls, 0] = -1.0
        if len(ser.unit[cls]) > 1:
            ym1[cls, ser.unit[cls][1]] = s
    eye = np.eye(n_cls)

    def a_minus(counts: np.ndarray, cls: int) -> np.ndarray:
        """``A/(u^(|n|−1)·φ_c)``: the factor series of the counts with one class-c fact less."""
        return ser.binomials(counts - eye[cls])[:, None, :] * rdeg[:, :, None]

    # facts of the boundary's dimension before it: Λ_i(t²·A^(−c)·(y_c − 1)·R_i)
    v_same = np.zeros((n_cls, m))
    for cls in range(n_cls):
        pm = ser.mul(a_minus(before, cls), e_rest) * np.exp(scale - log_u[:, None])[None]
        v_same[cls] = w @ np.sum(lam[:, :, :m] * ser.mul(ym1[cls][:, :, None], pm), axis=0)
    # stretches after each row: Σ D over positions (i, next row of the dimension), tail included
    cd = _excl_cumsum(d)
    stop = np.where(has_next, nxt, m + 1)
    stretch = cd[:, :, stop] - cd[:, :, np.arange(m) + 1]
    # Dimensions with 1..K-1 facts: F's constant term (≈ 1 − t) is small against its top
    # coefficient (≈ 1) near t = 1, and dividing F out of a product through its inverse series
    # is ill-conditioned there. Their stretches are summed pair by pair instead, with F removed
    # in log space (a subtraction of bounded logarithms), not through the inverse.
    danger = (size_after >= 1) & (size_after <= ser.tallies.max_size)
    pairs = _danger_pairs(np.nonzero(danger)[0], stop)
    stretch[:, :, danger] = 0.0
    inv = ser.inv1p(g_after)
    scaled = a_after * un_after[None]
    scaled[0] -= 1.0
    x_dim = ser.mul(scaled, inv) / f0_after[None]
    dim_vals += w @ np.sum(x_dim * stretch, axis=0)
    z = np.zeros((n_cls, m))
    fact_series = []
    for cls in range(n_cls):
        # t·A^(−c)·(y_c − 1) per row's after-state; over a stretch, divided by F
        fs = ser.mul(a_minus(after, cls), ym1[cls][:, :, None])
        fs *= (t[:, None] * np.exp((size_after[None, :] - 1.0) * log_u[:, None]))[None]
        fact_series.append(fs)
        y_fact = ser.mul(fs, inv) / f0_after[None]
        z[cls] = w @ np.sum(y_fact * stretch, axis=0)
    if len(pairs[0]):
        ell_ext = np.concatenate([ell, cl[:, :, m : m + 1]], axis=2)
        scale_ext = np.concatenate([scale, cc[:, m : m + 1]], axis=1)
        a_ext = np.concatenate([a_before, np.zeros((ser.t, len(t), 1), dtype=t.dtype)], axis=2)
        a_ext[0, :, m] = 1.0
        batch = max(1, _CELLS // len(t))
        for start in range(0, len(pairs[0]), batch):
            pp = pairs[0][start : start + batch]
            pi = pairs[1][start : start + batch]
            rest = ser.exp(ell_ext[:, :, pi] - l_after[:, :, pp])
            rest = ser.mul(a_ext[:, :, pi], rest)
            rest *= np.exp(scale_ext[:, pi] - lf0_after[:, pp])[None]
            lam_b = lam[:, :, pi]
            dim_term = np.sum(ser.mul(scaled[:, :, pp], rest) * lam_b, axis=0)
            dim_vals += np.bincount(pp, weights=w @ dim_term, minlength=m)
            for cls in range(n_cls):
                fact_term = np.sum(ser.mul(fact_series[cls][:, :, pp], rest) * lam_b, axis=0)
                z[cls] += np.bincount(pp, weights=w @ fact_term, minlength=m)
    # a class the dimension has no fact of (yet) has no factor to differentiate: the terms
    # above are meaningless there (and large), so they are dropped before the suffix sums
    v_same[before.T == 0] = 0.0
    z[after.T == 0] = 0.0
    for cls in range(n_cls):
        mine = c == cls
        if not mine.any():
            continue
        fact_vals[mine] += _suffix_in_group(v_same[cls], gorder, g, inclusive=False)[mine]
        fact_vals[mine] += _suffix_in_group(z[cls], gorder, g, inclusive=True)[mine]
    return fact_vals, dim_vals


def join_values_sweep(
    ranker: Ranker,
    row_fact: np.ndarray,
    row_group: np.ndarray,
    labels: np.ndarray,
    val: np.ndarray,
    gain: np.ndarray,
    n_vars: int,
    k: int,
    knn_utility: str,
    nodes: Nodes,
) -> np.ndarray:
    """Exact (with exact nodes) KNN-Shapley values of the facts and dimensions of a join.

    Every row must be a fact × dimension pair and every fact must have one row.
    """
    n_classes = gain.shape[1]
    soft = knn_utility == "soft"
    ser = _Series(1 if soft else n_classes, k)
    values = np.zeros(n_vars)
    m = ranker.n
    node_batch = max(1, _CELLS // max(m, 1))
    full = Tallies(n_classes, k) if not soft else None
    for part in chunks(len(gain), chunk_rows(m)):
        order = ranker.order(val[part])
        for j, rows in enumerate(order):
            f, g, y = row_fact[rows], row_group[rows], labels[rows].astype(np.int64)
            gains = gain[part][j]
            if soft:
                lam = np.zeros((ser.t, m + 1))
                lam[:, :m] = gains[y][None, :] / k
                cls = np.zeros(m, dtype=np.int64)
            else:
                lam = _vote_functionals(ser, full, gains, y, k)
                cls = y
            fv = np.zeros(m)
            dv = np.zeros(m)
            for s in range(0, len(nodes.t), node_batch):
                a, b = sweep_row(
                    ser, g, cls, lam, nodes.t[s : s + node_batch], nodes.w[s : s + node_batch]
                )
                fv += a
                dv += b
            values += np.bincount(f, weights=fv, minlength=n_vars)
            values += np.bincount(g, weights=dv, minlength=n_vars)
    return values


def _vote_functionals(
    ser: _Series, full: Tallies, gains: np.ndarray, y: np.ndarray, k: int
) -> np.ndarray:
    """``Λ_i`` per position (``u(γ + e_{y_i})`` on ``|γ| = K − 1``) and the tail ``Λ_∞``."""
    small = ser.tallies
    n_classes = small.n_classes
    u_full = np.zeros(len(full))
    nonempty = full.vote >= 0
    u_full[nonempty] = gains[full.vote[nonempty]]
    eye = np.eye(n_classes, dtype=np.int64)
    per_class = np.zeros((n_classes, len(small)))
    top = small.sizes == k - 1
    for c in range(n_classes):
        idx = np.array([full.index(v + eye[c]) for v in small.vectors])
        per_class[c, top] = u_full[idx[top]]
    lam = np.zeros((len(small), len(y) + 1))
    lam[:, : len(y)] = per_class[y].T
    same = np.array([full.index(v) for v in small.vectors])
    lam[:, len(y)] = u_full[same]
    return lam
