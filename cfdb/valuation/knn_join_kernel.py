"""Compiled loops (numba) of the one-to-many join sweep; the only module that imports numba.

* :func:`log_nodes` — the log-domain path (:mod:`cfdb.valuation.knn_join_logs`). The array
  version makes a dozen passes over (tallies × positions × nodes) arrays per node batch and is
  bound by memory traffic; here the positions are walked once per tile of nodes, a position's
  series — one (tallies × nodes) tile — stay in cache, and the loops over the tallies keep the
  nodes innermost (contiguous, so they vectorize).
* :func:`direct_nodes` — the same sums at any ``t`` by leave-one-out products over the
  dimensions met: no logarithm, no division; for few dimensions or short pruned prefixes.
* :func:`first_below` — the pruning bound's scan (:func:`cfdb.valuation.knn_join_sweep.cutoffs`).

The outputs of the first two are the node-weighted sums before the suffix sums that credit
each fact; tests hold them to the array version and to the segment tree node by node. The
machine code is cached on disk (``cache=True``): the first use on a machine compiles it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: float64 cells of the prefix sums of one tile (positions × tallies × nodes): 32 MB
_PREFIX_CELLS = 1 << 22


def tile_size(length: int, n_tallies: int) -> int:
    """Nodes per tile: as many as keep the prefix sums within :data:`_PREFIX_CELLS` (up to 64:
    wider tiles amortize the loops over tallies, a position's tile stays in cache; a multiple
    of 8 where that fits, down to one node for very many tallies)."""
    fit = _PREFIX_CELLS // max(1, (length + 1) * n_tallies)
    return int(min(64, fit // 8 * 8 if fit >= 8 else max(1, fit)))


@njit(cache=True, nogil=True, error_model="numpy")
def _log(f, out, head, deg, ptr, pi, pj, nq):  # pragma: no cover - compiled
    """``out = log f``: ``θf = f·θ(log f)`` on total degree (targets in degree order);
    ``head`` is ``log f[0]`` (from a table: a logarithm per cell would dominate the loop)."""
    for q in range(nq):
        out[0, q] = head[q]
    for k in range(1, f.shape[0]):
        for q in range(nq):
            out[k, q] = deg[k] * f[k, q]
        for p in range(ptr[k], ptr[k + 1]):
            i = pi[p]
            if deg[i] < deg[k]:
                j = pj[p]
                c = deg[i]
                for q in range(nq):
                    out[k, q] -= c * out[i, q] * f[j, q]
        for q in range(nq):
            out[k, q] /= deg[k] * f[0, q]


@njit(cache=True, nogil=True, error_model="numpy")
def _exp(a, out, head, deg, ptr, pi, pj, nq):  # pragma: no cover - compiled
    """``out = exp a`` by the same recurrence; ``head`` is ``exp a[0]``."""
    for q in range(nq):
        out[0, q] = head[q]
    for k in range(1, a.shape[0]):
        for q in range(nq):
            out[k, q] = 0.0
        for p in range(ptr[k], ptr[k + 1]):
            i = pi[p]
            j = pj[p]
            c = deg[i] / deg[k]
            for q in range(nq):
                out[k, q] += c * a[i, q] * out[j, q]


@njit(cache=True, nogil=True, error_model="numpy")
def _mul(a, b, out, ii, jj, kk, nq):  # pragma: no cover - compiled
    out[:, :nq] = 0.0
    for p in range(len(ii)):
        i, j, k = ii[p], jj[p], kk[p]
        for q in range(nq):
            out[k, q] += a[i, q] * b[j, q]


@njit(cache=True, nogil=True, error_model="numpy")
def _dual(a, lam, out, ii, jj, kk, nq):  # pragma: no cover - compiled
    """``out[δ] = Σ_γ a[γ]·lam[γ + δ]`` (``⟨W, out⟩ = ⟨W·a, lam⟩``); ``lam`` per tally."""
    out[:, :nq] = 0.0
    for p in range(len(ii)):
        i, j, k = ii[p], jj[p], kk[p]
        c = lam[k]
        if c != 0.0:
            for q in range(nq):
                out[j, q] += a[i, q] * c


@njit(cache=True, nogil=True, error_model="numpy")
def _dual_tile(a, lam, out, ii, jj, kk, nq):  # pragma: no cover - compiled
    """:func:`_dual` with ``lam`` per tally and node."""
    out[:, :nq] = 0.0
    for p in range(len(ii)):
        i, j, k = ii[p], jj[p], kk[p]
        for q in range(nq):
            out[j, q] += a[i, q] * lam[k, q]


@njit(cache=True, nogil=True, error_model="numpy")
def _factor(binom, size, r, ratio, powers, out, nq):  # pragma: no cover - compiled
    """``A(n)`` of row ``r``: binomials × (t/(1 − t))^|γ| × (1 − t)^|n|."""
    s = size[r]
    for g in range(out.shape[0]):
        b = binom[g, r]
        for q in range(nq):
            out[g, q] = b * ratio[g, q] * powers[s, q]


@njit(cache=True, nogil=True, error_model="numpy")
def _times_y_minus_1(a, down, out, nq):  # pragma: no cover - compiled
    """``out = a·(y_c − 1)``: ``out[γ] = a[γ − e_c] − a[γ]`` (truncation drops the top)."""
    for g in range(a.shape[0]):
        src = down[g]
        for q in range(nq):
            out[g, q] = (a[src, q] if src >= 0 else 0.0) - a[g, q]


@njit(cache=True, nogil=True, error_model="numpy")
def _dot_into(a, b, scale, w, acc, nq):  # pragma: no cover - compiled
    """``acc += Σ_q w_q·scale_q·Σ_γ a[γ, q]·b[γ, q]``."""
    total = 0.0
    for q in range(nq):
        s = 0.0
        for g in range(a.shape[0]):
            s += a[g, q] * b[g, q]
        total += w[q] * scale[q] * s
    return acc + total


@njit(cache=True, nogil=True, error_model="numpy")
def _load_tile(t_nodes, w_nodes, start, deg, t, u, w, t2, inv_t, powers, ratio):  # pragma: no cover
    """Nodes ``start ..`` of a tile: ``t``, ``1 − t``, weights, ``t²``, ``1/t``, the powers
    ``(1 − t)^s`` by dimension size and ``(t/(1 − t))^|γ|`` by tally; returns the node count."""
    nq = min(t.shape[0], len(t_nodes) - start)
    for q in range(nq):
        t[q] = t_nodes[start + q]
        w[q] = w_nodes[start + q]
        u[q] = 1.0 - t[q]
        t2[q] = t[q] * t[q]
        inv_t[q] = 1.0 / t[q]
        lu = math.log(u[q])
        lt = math.log(t[q])
        for s in range(powers.shape[0]):
            powers[s, q] = math.exp(s * lu)
        for g in range(ratio.shape[0]):
            ratio[g, q] = math.exp(deg[g] * (lt - lu))
    return nq


@njit(cache=True, nogil=True, error_model="numpy")
def log_nodes(
    binom,  # (keys, T, rows): before, after, before − e_c (C keys), after − e_c (C keys)
    size,  # (keys, rows): |counts|, clipped at 0
    lam,  # (length, T): Λ_i as tally weights, the tail last when length = M + 1
    stop,  # (rows,): end (exclusive) of row p's factor range
    lo,  # (rows,): start of that range
    down,  # (C, T): index of γ − e_c, −1 where γ_c = 0 (multiplying by y_c − 1 is a shift)
    m,  # rows in the whole order (the tail is position m)
    t_nodes,
    w_nodes,
    deg,
    ii,
    jj,
    kk,
    ptr,
    pi,
    pj,
    tile,
):  # pragma: no cover - compiled
    """Node-weighted sums per position: own term, dimension term, same-dimension facts'
    terms by class (``v``) and factor-range terms by class (``z``)."""
    n_keys, n_t, rows = binom.shape
    n_cls = (n_keys - 2) // 2
    length = lam.shape[0]
    own = np.zeros(rows)
    dim = np.zeros(rows)
    v = np.zeros((n_cls, rows))
    z = np.zeros((n_cls, rows))
    max_size = size.max() if rows else 0
    powers = np.empty((max_size + 1, tile))
    log_f0 = np.empty((max_size + 1, tile))  # log F's constant term by dimension size
    inv_f0 = np.empty((max_size + 1, tile))
    head = np.empty(tile)
    ratio = np.empty((n_t, tile))
    prefix = np.zeros((length + 1, n_t, tile))
    a_b = np.empty((n_t, tile))
    a_a = np.empty((n_t, tile))
    f = np.empty((n_t, tile))
    l_b = np.empty((n_t, tile))
    l_a = np.empty((n_t, tile))
    run = np.empty((n_t, tile))
    x = np.empty((n_t, tile))
    rest = np.empty((n_t, tile))
    prob = np.empty((n_t, tile))
    d = np.empty((n_t, tile))
    tmp = np.empty((n_t, tile))
    tmp2 = np.empty((n_t, tile))
    ones = np.ones(tile)
    t = np.empty(tile)
    u = np.empty(tile)
    w = np.empty(tile)
    t2 = np.empty(tile)
    inv_t = np.empty(tile)
    for start in range(0, len(t_nodes), tile):
        nq = _load_tile(t_nodes, w_nodes, start, deg, t, u, w, t2, inv_t, powers, ratio)
        for q in range(nq):
            for s in range(max_size + 1):
                f0 = u[q] + t[q] * powers[s, q]  # F = (1 − t) + t·A, A's constant (1 − t)^s
                log_f0[s, q] = math.log(f0)
                inv_f0[s, q] = 1.0 / f0
        run[:, :nq] = 0.0
        prefix[0, :, :nq] = 0.0
        for i in range(rows):
            _factor(binom[0], size[0], i, ratio, powers, a_b, nq)
            _factor(binom[1], size[1], i, ratio, powers, a_a, nq)
            for g in range(n_t):
                for q in range(nq):
                    f[g, q] = t[q] * a_b[g, q]
            for q in range(nq):
                f[0, q] += u[q]
            _log(f, l_b, log_f0[size[0, i]], deg, ptr, pi, pj, nq)
            for g in range(n_t):
                for q in range(nq):
                    f[g, q] = t[q] * a_a[g, q]
            for q in range(nq):
                f[0, q] += u[q]
            _log(f, l_a, log_f0[size[1, i]], deg, ptr, pi, pj, nq)
            # R_i = exp(L(i) − log F_own(before)), P_i = t²·A(before)·R_i
            for g in range(n_t):
                for q in range(nq):
                    x[g, q] = run[g, q] - l_b[g, q]
                    a_b[g, q] *= t2[q]
                    run[g, q] += l_a[g, q] - l_b[g, q]
            for q in range(nq):
                head[q] = math.exp(x[0, q])
            _exp(x, rest, head, deg, ptr, pi, pj, nq)
            # dr = dual(R_i, Λ_i) (⟨W, dr⟩ = Λ_i(W·R_i)); the boundary dual of P_i = lead·R_i
            # is then dual(lead, dr): two duals instead of a product and a dual
            _dual(rest, lam[i], prob, ii, jj, kk, nq)
            _dual_tile(a_b, prob, d, ii, jj, kk, nq)
            for q in range(nq):
                own[i] += w[q] * d[0, q] * inv_t[q]
            for g in range(n_t):
                for q in range(nq):
                    prefix[i + 1, g, q] = prefix[i, g, q] + d[g, q]
            # facts of the boundary's dimension before it: Λ_i(t²·A^(−c)·(y_c − 1)·R_i)
            for c in range(n_cls):
                _factor(binom[2 + c], size[2 + c], i, ratio, powers, tmp, nq)
                _times_y_minus_1(tmp, down[c], tmp2, nq)
                v[c, i] = _dot_into(tmp2, prob, t2, w, v[c, i], nq)
        if length > m:  # the tail: every dimension's factor, no boundary
            for q in range(nq):
                head[q] = math.exp(run[0, q])
            _exp(run, rest, head, deg, ptr, pi, pj, nq)
            _dual(rest, lam[m], d, ii, jj, kk, nq)
            for g in range(n_t):
                for q in range(nq):
                    prefix[m + 1, g, q] = prefix[m, g, q] + d[g, q]
        # ∂E/∂F over row p's range: the dual of exp(−log F) applied to a range sum of D
        for p in range(rows):
            if stop[p] <= lo[p]:
                continue
            _factor(binom[1], size[1], p, ratio, powers, a_a, nq)
            for g in range(n_t):
                for q in range(nq):
                    f[g, q] = t[q] * a_a[g, q]
                    tmp[g, q] = prefix[stop[p], g, q] - prefix[lo[p], g, q]
            for q in range(nq):
                f[0, q] += u[q]
            _log(f, l_a, log_f0[size[1, p]], deg, ptr, pi, pj, nq)
            for g in range(n_t):
                for q in range(nq):
                    x[g, q] = -l_a[g, q]
            _exp(x, rest, inv_f0[size[1, p]], deg, ptr, pi, pj, nq)
            _dual_tile(rest, tmp, d, ii, jj, kk, nq)  # the gradient functional
            for q in range(nq):
                a_a[0, q] -= 1.0  # ∂F/∂p_d = A − 1
            dim[p] = _dot_into(a_a, d, ones, w, dim[p], nq)
            for c in range(n_cls):
                _factor(binom[2 + n_cls + c], size[2 + n_cls + c], p, ratio, powers, tmp, nq)
                _times_y_minus_1(tmp, down[c], tmp2, nq)
                z[c, p] = _dot_into(tmp2, d, t, w, z[c, p], nq)
    return own, dim, v, z


@njit(cache=True, nogil=True, error_model="numpy")
def first_below(steps, pos, limits):  # pragma: no cover - compiled
    """Per node: the first position where a Chernoff bound (a running sum of ``steps`` along
    the order, minimum over λ) falls below its limit; ``M + 1`` when it never does.

    Args:
        steps: (λ, nodes, sizes): the bound's change when a dimension with ``n`` rows before
            gains one.
        pos: (M,): the rows of each position's dimension before it.
        limits: (λ, nodes).
    """
    n_lam, n_nodes, _ = steps.shape
    m = len(pos)
    out = np.full(n_nodes, m + 1)
    bound = np.empty(n_lam)
    for q in range(n_nodes):
        bound[:] = 0.0
        for i in range(m):
            # the bound at position i + 1 (position 0 holds 0, never below a negative limit)
            hit = False
            for j in range(n_lam):
                bound[j] += steps[j, q, pos[i]]
                if bound[j] < limits[j, q]:
                    hit = True
            if hit:
                out[q] = i + 1
                break
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def direct_nodes(
    binom,  # (keys, T, rows): as for log_nodes
    size,  # (keys, rows)
    lam,  # (length, T)
    dim_of,  # (rows,): the row's dimension among the n_dims met in the prefix
    n_dims,
    down,  # (C, T)
    m,
    t_nodes,
    w_nodes,
    deg,
    ii,
    jj,
    kk,
    tile,
):  # pragma: no cover - compiled
    """:func:`log_nodes`'s sums for nodes of any ``t``, without logarithms or division.

    Every dimension's current factor is kept; at each position the product of the *other*
    dimensions' factors and, for each of them, the product of all but it and the boundary's
    own come from prefix and suffix products over the dimensions: O(N·D·|Γ|²) per node, D the
    dimensions met, which beats the segment tree's O(N·log N·|Γ|²) in arrays when D is small
    (few dimension tuples, or the short prefixes pruning leaves near ``t = 1``).
    """
    n_keys, n_t, rows = binom.shape
    n_cls = (n_keys - 2) // 2
    length = lam.shape[0]
    own = np.zeros(rows)
    dim = np.zeros(rows)
    v = np.zeros((n_cls, rows))
    z = np.zeros((n_cls, rows))
    max_size = size.max() if rows else 0
    powers = np.empty((max_size + 1, tile))
    ratio = np.empty((n_t, tile))
    fac = np.empty((n_dims, n_t, tile))  # every dimension's current factor
    piece = np.empty(n_dims, dtype=np.int64)  # the row whose after-factor that is (−1: none)
    pre = np.empty((n_dims + 1, n_t, tile))
    suf = np.empty((n_dims + 1, n_t, tile))
    grad = np.zeros((rows, n_t, tile))
    a_b = np.empty((n_t, tile))
    xl = np.empty((n_t, tile))
    dr = np.empty((n_t, tile))
    d = np.empty((n_t, tile))
    tmp = np.empty((n_t, tile))
    tmp2 = np.empty((n_t, tile))
    ones = np.ones(tile)
    t = np.empty(tile)
    u = np.empty(tile)
    w = np.empty(tile)
    t2 = np.empty(tile)
    inv_t = np.empty(tile)
    for start in range(0, len(t_nodes), tile):
        nq = _load_tile(t_nodes, w_nodes, start, deg, t, u, w, t2, inv_t, powers, ratio)
        fac[:, :, :nq] = 0.0
        fac[:, 0, :nq] = 1.0  # a dimension with no row yet: F = (1 − t) + t·1 = 1
        piece[:] = -1
        grad[:, :, :nq] = 0.0
        for i in range(length):
            tail = i == m
            own_dim = -1 if tail else dim_of[i]
            # prefix and suffix products over the dimensions, the boundary's own left out
            pre[0, :, :nq] = 0.0
            pre[0, 0, :nq] = 1.0
            for j in range(n_dims):
                if j == own_dim:
                    pre[j + 1, :, :nq] = pre[j, :, :nq]
                else:
                    _mul(pre[j], fac[j], pre[j + 1], ii, jj, kk, nq)
            suf[n_dims, :, :nq] = 0.0
            suf[n_dims, 0, :nq] = 1.0
            for j in range(n_dims - 1, -1, -1):
                if j == own_dim:
                    suf[j, :, :nq] = suf[j + 1, :, :nq]
                else:
                    _mul(suf[j + 1], fac[j], suf[j], ii, jj, kk, nq)
            if tail:
                # no boundary row: Λ_∞ of every dimension's factor
                for g in range(n_t):
                    for q in range(nq):
                        xl[g, q] = lam[m, g]
            else:
                _factor(binom[0], size[0], i, ratio, powers, a_b, nq)
                for g in range(n_t):
                    for q in range(nq):
                        a_b[g, q] *= t2[q]  # the boundary's lead t²·A(before)
                _dual(a_b, lam[i], xl, ii, jj, kk, nq)  # W ↦ Λ_i(W·lead)
                # the row's own term and its dimension's earlier facts, as in log_nodes
                _dual(pre[n_dims], lam[i], dr, ii, jj, kk, nq)
                _dual_tile(a_b, dr, d, ii, jj, kk, nq)
                for q in range(nq):
                    own[i] += w[q] * d[0, q] * inv_t[q]
                for c in range(n_cls):
                    _factor(binom[2 + c], size[2 + c], i, ratio, powers, tmp, nq)
                    _times_y_minus_1(tmp, down[c], tmp2, nq)
                    v[c, i] = _dot_into(tmp2, dr, t2, w, v[c, i], nq)
            # each other dimension's factor: Λ(W·lead·Π of the rest), credited to its row
            for j in range(n_dims):
                if j == own_dim or piece[j] < 0:
                    continue
                _mul(pre[j], suf[j + 1], tmp, ii, jj, kk, nq)
                _dual_tile(tmp, xl, d, ii, jj, kk, nq)
                p = piece[j]
                for g in range(n_t):
                    for q in range(nq):
                        grad[p, g, q] += d[g, q]
            if not tail:
                _factor(binom[1], size[1], i, ratio, powers, tmp, nq)
                for g in range(n_t):
                    for q in range(nq):
                        fac[own_dim, g, q] = t[q] * tmp[g, q]
                for q in range(nq):
                    fac[own_dim, 0, q] += u[q]
                piece[own_dim] = i
        for p in range(min(rows, length)):
            _factor(binom[1], size[1], p, ratio, powers, tmp, nq)
            for q in range(nq):
                tmp[0, q] -= 1.0  # ∂F/∂p_d = A − 1
            dim[p] = _dot_into(tmp, grad[p], ones, w, dim[p], nq)
            for c in range(n_cls):
                _factor(binom[2 + n_cls + c], size[2 + n_cls + c], p, ratio, powers, tmp, nq)
                _times_y_minus_1(tmp, down[c], tmp2, nq)
                z[c, p] = _dot_into(tmp2, grad[p], t, w, z[c, p], nq)
    return own, dim, v, z
