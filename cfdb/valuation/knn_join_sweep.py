"""KNN-Shapley over a one-to-many join, division-free: O(Q·N·log N·|Γ|²) per validation row.

The players are fact tuples ``f`` and dimension tuples ``d``; a training row ``a_f · a_d`` is
present when both are. :mod:`cfdb.valuation.knn_join` explains the Shapley integral
``φ_x = ∫₀¹ ∂E_t[u]/∂p_x dt`` (every player present independently with probability ``t``,
Gauss–Legendre nodes in ``t``) and the factorization over dimension tuples. This module
computes the same integrand for *every* player at *every* node with array operations along
the distance order. Per validation row and node:

**Series.** ``y`` marks present rows before a position: ``y`` alone counts them (``soft``:
the utility is linear in the rows, ``u(S) = Σ_i (h_i/K)·1[i present, < K present before i]``)
or ``y_c`` counts them per class (``vote``: label tallies). Series are truncated below total
degree K. A fact of class ``c`` contributes ``φ_c = (1−t) + t·y_c``; a dimension tuple whose
facts before position ``i`` have class counts ``n`` contributes ``F(n) = (1−t) + t·A(n)``,
``A(n) = Π_c φ_c^{n_c}``, whose coefficients ``Π_c C(n_c, γ_c)·t^|γ|·(1−t)^(|n|−|γ|)`` come
in closed form.

**Event probabilities.** Row ``i`` (fact ``f_i``, dimension ``g_i``, class ``c_i``) is the
boundary with tally ``γ`` of the present rows before it with probability
``[y^γ] P_i``, ``P_i = t²·A_{g_i}·R_i``, ``R_i = Π_{d ≠ g_i} F_d`` (the boundary's own
dimension is present, not a factor). ``E_t[u] = Σ_i Λ_i(P_i) + Λ_∞(Φ)``: ``Λ_i`` weighs the
tallies by the utility (``soft``: ``h_i/K`` for every count below K; ``vote``: ``u(γ + e_{c_i})``
for ``|γ| = K − 1``) and the tail ``Λ_∞`` (``vote`` only) scores coalitions with fewer than K
present rows, ``Φ = Π_d F_d`` over all rows (the tail is position M).

**Products without division.** Row ``p``'s dimension has the factor ``F`` of its counts after
``p`` at the positions ``p+1 .. q−1``, ``q`` the dimension's next row (or the tail): exactly
the positions whose boundary lies in another dimension. So ``R_i`` is the product of the
factors whose range covers ``i``. Each range is cut into the ``O(log M)`` canonical nodes of a
segment tree over the positions; a node's factors multiply into ``M_v`` (prefix products
within the node), ``R_i`` is the product of ``M_v`` over leaf ``i``'s ancestors (top-down).
Every series in these products has nonnegative coefficients, so each coefficient is formed
to a few ulps whatever ``t``: no inverse series, no logarithms, no rescaling of ``y``.

**Derivatives.** With ``D_i`` the dual of ``P_i`` under ``Λ_i``
(``⟨W, D_i⟩ = Λ_i(W·P_i)``, :meth:`Series.dual`), the partial derivatives are:

* ``∂/∂p_{f_i}`` and ``∂/∂p_{g_i}`` of ``Λ_i(P_i)``: ``Λ_i(P_i)/t`` (the row's own term);
* a fact ``f`` of class ``c`` in ``g_i`` before ``i``: ``Λ_i(t²·A^{(−c)}_{g_i}·(y_c − 1)·R_i)``,
  ``A^{(−c)}`` the closed form with one class-``c`` fact fewer (never a division by ``φ_c``);
* a factor ``F`` (a range): ``∂E/∂F`` is the functional ``W ↦ Σ_{i in range} Λ_i(W·P_i/F)``.
  Per tree node, ``Φ_v(W) = Σ_{i under v} Λ_i(W·L_i·Π_{nodes strictly between} M)``
  (``L_i = t²·A_{g_i}``) is built bottom-up as a dual vector; a factor stored at ``v`` gets
  ``Φ_v(W·above_v·(the other factors at v))``, pushed through the node's other factors as
  duals (a backward chain and the prefix products), again without division. The dimension's
  derivative is ``⟨A − 1, ∂E/∂F⟩``, its class-``c`` facts' ``⟨t·A^{(−c)}·(y_c − 1), ∂E/∂F⟩``;
  each fact accumulates the ranges after it by a suffix sum within its dimension.

Everything is linear in the node's integrand, so node weights are applied before the per-tuple
sums.

**Pruning.** At node ``t`` every term at position ``i`` concerns coalitions with fewer than K
present rows before ``i``; :func:`cutoffs` bounds that probability (Chernoff, per node) and
drops the positions where the bound, even conditioned on one player, is below 1e-18 of the
utility weights. Near ``t = 1`` only a short prefix of the order remains (a few dozen positions
for K ≤ 10); near ``t = 0`` every position counts, and with few dimension tuples (each absent
with probability ``1 − t``) nothing can be dropped.

Complexity per validation row: O(N log N) to rank plus O(Q·M·log M·|Γ|²) for M rows, Q nodes
and |Γ| tallies below K (K for ``soft``, ``C(K − 1 + C, C)`` for ``vote`` with C classes),
less where pruning applies. Covers joins where every training row is a fact × dimension pair
and every fact has one row; other one-to-many shapes use
:func:`cfdb.valuation.knn_join.join_values_general`.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from cfdb.valuation.join_series import Series, factor_series, group_counts, suffix_in_group
from cfdb.valuation.knn_join import _within_group
from cfdb.valuation.knn_join_kernel import first_below
from cfdb.valuation.knn_join_logs import (
    LogOrder,
    LogSeries,
    compiled_row,
    direct_row,
    log_row,
    split_for,
)
from cfdb.valuation.neighbors import Ranker, chunk_rows, chunks
from cfdb.valuation.quadrature import Nodes
from cfdb.valuation.utilities import Tallies

#: float64 values per array of the sweep (tallies × nodes × tree cells): bounds its memory
#: (a dozen such arrays live at once).
_CELLS = 1 << 22


def _cover(lo: np.ndarray, hi: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical segment-tree nodes of the ranges ``[lo, hi]``: (node, range index) pairs.

    Nodes are numbered as a heap (root 1, leaf of position i at ``size + i``); each range is
    the disjoint union of at most ``2·log2(size)`` nodes.
    """
    left, right, which = lo + size, hi + size + 1, np.arange(len(lo))
    nodes, owners = [], []
    while len(left):
        keep = left < right
        left, right, which = left[keep], right[keep], which[keep]
        odd = (left & 1) == 1
        nodes.append(left[odd])
        owners.append(which[odd])
        left = left + odd
        odd = (right & 1) == 1
        right = right - odd
        nodes.append(right[odd])
        owners.append(which[odd])
        left, right = left >> 1, right >> 1
    return np.concatenate(nodes), np.concatenate(owners)


class _Plan:
    """One validation row's distance order, cut after ``length`` positions: dimension states,
    the ranges where each dimension factor holds, and their segment tree."""

    def __init__(self, ser: Series, g: np.ndarray, c: np.ndarray, length: int) -> None:
        m = len(g)
        rows = min(length, m)  # rows kept; ``length == m + 1`` keeps the tail (position m)
        self.m, self.rows, self.length = m, rows, length
        self.g, self.c = g[:rows], c[:rows]
        n_cls = ser.tallies.n_classes
        _, nxt, self.gorder = _within_group(self.g)
        self.before = group_counts(self.g, self.c, n_cls)  # the dimension's counts before i
        self.after = self.before.copy()
        self.after[np.arange(rows), self.c] += 1.0
        # The factor of row p's dimension after p holds at positions p+1 .. next row of the
        # dimension − 1 (the tail, position m, included when p is the dimension's last row):
        # exactly the positions whose boundary lies in another dimension.
        stop = np.minimum(np.where(nxt < rows, nxt, m + 1), length)
        self.size = 1 << max(1, int(length - 1).bit_length())  # leaves 0..length−1
        live = np.nonzero(stop > np.arange(rows) + 1)[0]
        node, owner = _cover(live + 1, stop[live] - 1, self.size)
        piece = live[owner]
        idx = np.lexsort((piece, node))
        self.node, self.piece = node[idx], piece[idx]
        n_inc = len(idx)
        first = np.r_[True, self.node[1:] != self.node[:-1]]
        last = np.r_[self.node[1:] != self.node[:-1], True]
        start = np.maximum.accumulate(np.where(first, np.arange(n_inc), 0))
        rank = np.arange(n_inc) - start
        end = np.minimum.accumulate(np.where(last, np.arange(n_inc), n_inc)[::-1])[::-1]
        back = end - np.arange(n_inc)
        top = int(rank.max()) if n_inc else 0
        self.fwd = [np.nonzero(rank == j)[0] for j in range(1, top + 1)]
        self.bwd = [np.nonzero(back == j)[0] for j in range(1, top + 1)]
        self.last = np.nonzero(last)[0]
        self.pieces, column = np.unique(self.piece, return_inverse=True)
        # sums a per-node array (incidences × nodes) into one row per factor
        self.gather = csr_matrix(
            (np.ones(n_inc), (column, np.arange(n_inc))), shape=(len(self.pieces), n_inc)
        )

    @property
    def cells(self) -> int:
        """Series cells per node of the largest arrays."""
        return max(len(self.node), 2 * self.size)


def cutoffs(g: np.ndarray, k: int, t: np.ndarray, tol: float = 1e-18) -> np.ndarray:
    """Per node: how many positions (the tail is position M) can carry a top-K event.

    Every term at position i is an event "fewer than K present rows before i", possibly
    conditioned on one tuple (and on the boundary's own two), so it is at most
    ``P(S_i < K)/min(t, 1 − t)²``, ``S_i`` the present rows before i. ``S_i = Σ_d B_d`` over
    dimensions, independent, ``B_d`` = (dimension present) × Binomial(n_d, t), so Chernoff's
    bound ``P(S_i < K) ≤ e^{λK}·Π_d E[e^{−λB_d}] = e^{λK}·Π_d ((1 − t) + t(1 − t + t·e^{−λ})^{n_d})``
    (a cumulative sum of logarithms along the order; minimum over a few λ). Positions from the
    first one whose bound is below ``tol/(M + 1)`` contribute less than ``tol`` times the
    largest utility weight in all, and are skipped; the bound only falls along the order.
    """
    m = len(g)
    out = np.full(len(t), m + 1)
    # With fewer than K joined rows expected in the whole order (t²·M ≤ K) the bound cannot
    # fall below tol: those nodes keep every position and skip the work.
    live = np.nonzero(t * t * m > k)[0]
    if not len(live):
        return out
    t = t[live]
    counts = group_counts(g, np.zeros(m, dtype=np.int64), 1)[:, 0]  # dimension's rows before
    u = 1.0 - t
    log_u, log_t = np.log(u)[:, None], np.log(t)[:, None]
    limit = np.log(tol / (m + 1)) + 2 * np.log(np.minimum(t, u))
    n = np.arange(int(counts.max(initial=0)) + 2, dtype=np.float64)[None, :]
    pos = counts.astype(np.int64)
    lams = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
    log_e = np.log(u[None, :] + t[None, :] * np.exp(-lams)[:, None])[:, :, None]
    # log E[e^{−λB}] by λ, node and dimension size, and its steps as a dimension gains a row
    table = np.logaddexp(log_u[None], log_t[None] + n[None] * log_e)
    steps = np.ascontiguousarray(np.diff(table, axis=2))
    first = first_below(steps, pos, limit[None, :] - lams[:, None] * k)
    out[live] = first
    return out


def sweep_row(
    ser: Series,
    plan: _Plan,
    lam_y: np.ndarray,
    t: np.ndarray,
    w: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Node-weighted derivatives for one validation row and a batch of nodes.

    Args:
        ser: the series ring (``soft``: one variable; ``vote``: one per class).
        plan: the row's distance order (:class:`_Plan`), cut where the batch's nodes allow.
        lam_y: ``Λ_i`` per position as weights of the tallies (T × (M + 1)); the last column
            is the tail's functional ``Λ_∞``.
        t, w: nodes and weights.

    Returns:
        Per position (M): the derivative credited to its fact, and to its dimension.
    """
    m, rows, length, size = plan.m, plan.rows, plan.length, plan.size
    c, g = plan.c, plan.g
    n_cls = ser.tallies.n_classes
    q = len(t)
    u = 1.0 - t
    log_u, log_t = np.log(u), np.log(t)
    one = np.zeros((ser.t, 1, q))
    one[0] = 1.0
    a_after = factor_series(ser, plan.after, log_t, log_u)
    f_after = t[None, None, :] * a_after
    f_after[0] += u[None, :]  # F = (1 − t) + t·A: the dimension's factor after row p
    # M_v: product of the factors stored at tree node v, by prefix products within the node
    f_inc = f_after[:, plan.piece]
    pre = np.empty_like(f_inc)
    pre[0], pre[1:] = 1.0, 0.0
    for idx in plan.fwd:
        pre[:, idx] = ser.mul(pre[:, idx - 1], f_inc[:, idx - 1])
    prod = np.repeat(one, 2 * size, axis=1)
    held = plan.node[plan.last]
    prod[:, held] = ser.mul(pre[:, plan.last], f_inc[:, plan.last])
    # top-down: above[v] = product of M over v's strict ancestors
    above = np.repeat(one, 2 * size, axis=1)
    level = 1
    while level < size:
        v = np.arange(level, 2 * level)
        both = ser.mul(above[:, v], prod[:, v])
        above[:, 2 * v] = both
        above[:, 2 * v + 1] = both
        level *= 2
    leaves = size + np.arange(length)
    rest = ser.mul(above[:, leaves], prod[:, leaves])  # R_i: every other dimension
    # boundary factor L_i = t²·A(before) (the tail: 1); leaf functional Φ_i(W) = Λ_i(W·L_i)
    lam = lam_y[:, :length, None]
    lead = factor_series(ser, plan.before, log_t, log_u) * (t * t)[None, None, :]
    if length > m:
        lead = np.concatenate([lead, one], axis=1)
    phi = np.zeros((ser.t, 2 * size, q))
    phi[:, leaves] = ser.dual(lead, lam)
    # bottom-up: Φ_v(W) = Σ_children Φ_child(W·M_child)
    level = size // 2
    while level >= 1:
        v = np.arange(level, 2 * level)
        phi[:, v] = ser.dual(prod[:, 2 * v], phi[:, 2 * v]) + ser.dual(
            prod[:, 2 * v + 1], phi[:, 2 * v + 1]
        )
        level //= 2
    own = (np.sum(rest[:, :rows] * phi[:, size : size + rows], axis=0) / t[None, :]) @ w
    fact_vals = own.copy()
    dim_vals = own.copy()
    ym1 = ser.y_minus_1()  # y_c − 1
    eye = np.eye(n_cls)
    # facts of the boundary's dimension before it: Λ_i(t²·A^(−c)·(y_c − 1)·R_i), A^(−c) the
    # factor series with one class-c fact fewer (closed form, no division by φ_c)
    dual_rest = ser.dual(rest[:, :rows], lam[:, :rows])
    v_same = np.zeros((n_cls, rows))
    for cls in range(n_cls):
        lead_c = ser.mul(factor_series(ser, plan.before - eye[cls], log_t, log_u), ym1[cls])
        v_same[cls] = (np.sum(lead_c * dual_rest, axis=0) * t[None, :] ** 2) @ w
    # A factor F stored at node v: ∂E/∂F = Φ_v(·× above_v × the other factors at v). As a
    # dual vector: the node's ψ_v = dual(above_v, φ_v), pushed through the later factors of the
    # node (a backward chain) and then through the earlier ones (the prefix product).
    back = np.empty_like(f_inc)
    back[:, plan.last] = ser.dual(above[:, held], phi[:, held])
    for idx in plan.bwd:
        back[:, idx] = ser.dual(f_inc[:, idx + 1], back[:, idx + 1])
    grad = ser.dual(pre, back)
    grad = np.stack([plan.gather @ x for x in grad])  # per factor: the sum over its nodes
    held_rows = plan.pieces
    scaled = a_after[:, held_rows]
    scaled[0] -= 1.0  # ∂F/∂p_d = A − 1
    dim_vals[held_rows] += np.sum(scaled * grad, axis=0) @ w
    z = np.zeros((n_cls, rows))
    for cls in range(n_cls):
        # ∂F/∂p_f = t·A^(−c)·(y_c − 1) for a fact of class c of the dimension
        a_minus = factor_series(ser, plan.after[held_rows] - eye[cls], log_t, log_u)
        fs = ser.mul(a_minus, ym1[cls]) * t[None, None, :]
        z[cls, held_rows] = np.sum(fs * grad, axis=0) @ w
    # a class the dimension has no fact of (yet) has no factor to differentiate: the terms
    # above are meaningless there, so they are dropped before the suffix sums
    v_same[plan.before.T == 0] = 0.0
    z[plan.after.T == 0] = 0.0
    for cls in range(n_cls):
        mine = c == cls
        if not mine.any():
            continue
        fact_vals[mine] += suffix_in_group(v_same[cls], plan.gorder, g, inclusive=False)[mine]
        fact_vals[mine] += suffix_in_group(z[cls], plan.gorder, g, inclusive=True)[mine]
    pad = (0, m - rows)
    return np.pad(fact_vals, pad), np.pad(dim_vals, pad)


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
    *,
    prune: bool = True,
    split: float | None = None,
    compiled: bool = True,
    direct: bool | None = None,
) -> np.ndarray:
    """Exact (with exact nodes) KNN-Shapley values of the facts and dimensions of a join.

    Every row must be a fact × dimension pair and every fact must have one row. ``prune``
    skips, per node, the positions :func:`cutoffs` bounds as negligible. Nodes ``t ≤ split``
    (default :func:`~cfdb.valuation.knn_join_logs.split_for` K) take the log-domain path
    (:mod:`cfdb.valuation.knn_join_logs`); ``split = 0`` sends every node elsewhere. ``compiled`` runs the log-domain
    path as one compiled loop (:mod:`cfdb.valuation.knn_join_kernel`) rather than in arrays.
    Nodes above the split take compiled leave-one-out products over the dimensions met
    (``direct``) when those are few (at most 4·log₂ of the positions kept), else the tree;
    ``direct = True`` / ``False`` forces one.
    """
    n_classes = gain.shape[1]
    soft = knn_utility == "soft"
    split = split_for(k) if split is None else split
    ser = Series(1 if soft else n_classes, k)
    logs = LogSeries(ser)
    values = np.zeros(n_vars)
    m = ranker.n
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
            for length, sel in _buckets(cutoffs(g, k, nodes.t) if prune else None, m, nodes):
                small = nodes.t[sel] <= split
                if small.any():
                    low = sel[small]
                    log_order = LogOrder(ser, g, cls, length)
                    if compiled:
                        a, d = compiled_row(ser, log_order, lam, nodes.t[low], nodes.w[low])
                        fv += a
                        dv += d
                    else:
                        batch = max(1, _CELLS // (ser.t * 2 * length))
                        for s in range(0, len(low), batch):
                            b = low[s : s + batch]
                            a, d = log_row(ser, logs, log_order, lam, nodes.t[b], nodes.w[b])
                            fv += a
                            dv += d
                    sel = sel[~small]
                if not len(sel):
                    continue
                met = len(np.unique(g[: min(length, m)]))
                if direct if direct is not None else met <= 4 * max(1, int(length).bit_length()):
                    # few dimensions met: leave-one-out products beat the tree's log N
                    a, d = direct_row(
                        ser, LogOrder(ser, g, cls, length), lam, nodes.t[sel], nodes.w[sel]
                    )
                    fv += a
                    dv += d
                    continue
                plan = _Plan(ser, g, cls, length)
                batch = max(1, _CELLS // (ser.t * plan.cells))
                for s in range(0, len(sel), batch):
                    b = sel[s : s + batch]
                    a, d = sweep_row(ser, plan, lam, nodes.t[b], nodes.w[b])
                    fv += a
                    dv += d
            values += np.bincount(f, weights=fv, minlength=n_vars)
            values += np.bincount(g, weights=dv, minlength=n_vars)
    return values


def _buckets(cut: np.ndarray | None, m: int, nodes: Nodes) -> list[tuple[int, np.ndarray]]:
    """Nodes grouped by the positions they need, rounded up to powers of two (few plans)."""
    if cut is None:
        return [(m + 1, np.arange(len(nodes.t)))]
    length = np.minimum(m + 1, 1 << np.ceil(np.log2(np.maximum(cut, 2))).astype(np.int64))
    return [(int(x), np.nonzero(length == x)[0]) for x in np.unique(length)]


def _vote_functionals(
    ser: Series, full: Tallies, gains: np.ndarray, y: np.ndarray, k: int
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
