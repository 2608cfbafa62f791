"""The log-domain join sweep (:mod:`cfdb.valuation.knn_join_logs`) as one compiled loop.

The array version makes a dozen passes over (tallies × positions × nodes) arrays per node batch
and is bound by memory traffic. Here numba runs the same recurrences position by position with
a node's series in registers: the running log-sum, the series logarithm and exponential, the
duals and the prefix sums of the boundary duals are scalar loops over the tallies (|Γ| ≤ a few
dozen), fused per position. The outputs are the node-weighted sums the array version returns
before its suffix sums; tests hold both to each other and to the segment tree.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _log(f, out, deg, ptr, pi, pj):  # pragma: no cover - compiled
    """``out = log f``: ``θf = f·θ(log f)`` on total degree (targets in degree order)."""
    out[0] = math.log(f[0])
    for k in range(1, len(f)):
        acc = deg[k] * f[k]
        for p in range(ptr[k], ptr[k + 1]):
            i = pi[p]
            if deg[i] < deg[k]:
                acc -= deg[i] * out[i] * f[pj[p]]
        out[k] = acc / (deg[k] * f[0])


@njit(cache=True, nogil=True)
def _exp(a, out, deg, ptr, pi, pj):  # pragma: no cover - compiled
    """``out = exp a`` by the same recurrence."""
    out[0] = math.exp(a[0])
    for k in range(1, len(a)):
        acc = 0.0
        for p in range(ptr[k], ptr[k + 1]):
            i = pi[p]
            acc += deg[i] * a[i] * out[pj[p]]
        out[k] = acc / deg[k]


@njit(cache=True, nogil=True)
def _mul(a, b, out, ii, jj, kk):  # pragma: no cover - compiled
    out[:] = 0.0
    for p in range(len(ii)):
        out[kk[p]] += a[ii[p]] * b[jj[p]]


@njit(cache=True, nogil=True)
def _dual(a, lam, out, ii, jj, kk):  # pragma: no cover - compiled
    """``out[δ] = Σ_γ a[γ]·lam[γ + δ]`` (``⟨W, out⟩ = ⟨W·a, lam⟩``)."""
    out[:] = 0.0
    for p in range(len(ii)):
        out[jj[p]] += a[ii[p]] * lam[kk[p]]


@njit(cache=True, nogil=True)
def _factor(binom, size, r, ratio, powers, out):  # pragma: no cover - compiled
    """``A(n)`` of row ``r``: binomials × (t/(1 − t))^|γ| × (1 − t)^|n|."""
    base = powers[size[r]]
    for g in range(len(out)):
        out[g] = binom[g, r] * ratio[g] * base


@njit(cache=True, nogil=True)
def log_nodes(
    binom,  # (keys, T, rows): before, after, before − e_c (C keys), after − e_c (C keys)
    size,  # (keys, rows): |counts|, clipped at 0
    lam,  # (length, T): Λ_i as tally weights, the tail last when length = M + 1
    stop,  # (rows,): end (exclusive) of row p's factor range
    lo,  # (rows,): start of that range
    ym1,  # (C, T): the series y_c − 1
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
    max_size = 0
    for key in range(n_keys):
        for r in range(rows):
            max_size = max(max_size, size[key, r])
    powers = np.empty(max_size + 1)
    ratio = np.empty(n_t)
    prefix = np.zeros((length + 1, n_t))
    l_after = np.empty((rows, n_t))
    a_b = np.empty(n_t)
    a_a = np.empty(n_t)
    f = np.empty(n_t)
    l_b = np.empty(n_t)
    run = np.empty(n_t)
    x = np.empty(n_t)
    rest = np.empty(n_t)
    lead = np.empty(n_t)
    prob = np.empty(n_t)
    d = np.empty(n_t)
    tmp = np.empty(n_t)
    tmp2 = np.empty(n_t)
    for q in range(len(t_nodes)):
        t = t_nodes[q]
        w = w_nodes[q]
        u = 1.0 - t
        lu = math.log(u)
        lt = math.log(t)
        for s in range(max_size + 1):
            powers[s] = math.exp(s * lu)
        for g in range(n_t):
            ratio[g] = math.exp(deg[g] * (lt - lu))
        run[:] = 0.0
        prefix[0, :] = 0.0
        for i in range(rows):
            _factor(binom[0], size[0], i, ratio, powers, a_b)
            _factor(binom[1], size[1], i, ratio, powers, a_a)
            for g in range(n_t):
                f[g] = t * a_b[g]
            f[0] += u
            _log(f, l_b, deg, ptr, pi, pj)
            for g in range(n_t):
                f[g] = t * a_a[g]
            f[0] += u
            _log(f, l_after[i], deg, ptr, pi, pj)
            # R_i = exp(L(i) − log F_own(before)), P_i = t²·A(before)·R_i
            for g in range(n_t):
                x[g] = run[g] - l_b[g]
                lead[g] = t * t * a_b[g]
            _exp(x, rest, deg, ptr, pi, pj)
            _mul(lead, rest, prob, ii, jj, kk)
            _dual(prob, lam[i], d, ii, jj, kk)
            own[i] += w * d[0] / t
            for g in range(n_t):
                prefix[i + 1, g] = prefix[i, g] + d[g]
                run[g] += l_after[i, g] - l_b[g]
            # facts of the boundary's dimension before it: Λ_i(t²·A^(−c)·(y_c − 1)·R_i)
            _dual(rest, lam[i], d, ii, jj, kk)
            for c in range(n_cls):
                _factor(binom[2 + c], size[2 + c], i, ratio, powers, tmp)
                _mul(tmp, ym1[c], tmp2, ii, jj, kk)
                acc = 0.0
                for g in range(n_t):
                    acc += tmp2[g] * d[g]
                v[c, i] += w * t * t * acc
        if length > m:  # the tail: every dimension's factor, no boundary
            _exp(run, rest, deg, ptr, pi, pj)
            _dual(rest, lam[m], d, ii, jj, kk)
            for g in range(n_t):
                prefix[m + 1, g] = prefix[m, g] + d[g]
        # ∂E/∂F over row p's range: the dual of exp(−log F) applied to a range sum of D
        for p in range(rows):
            if stop[p] <= lo[p]:
                continue
            for g in range(n_t):
                x[g] = -l_after[p, g]
                tmp[g] = prefix[stop[p], g] - prefix[lo[p], g]
            _exp(x, rest, deg, ptr, pi, pj)
            _dual(rest, tmp, d, ii, jj, kk)  # the gradient functional
            _factor(binom[1], size[1], p, ratio, powers, a_a)
            a_a[0] -= 1.0  # ∂F/∂p_d = A − 1
            acc = 0.0
            for g in range(n_t):
                acc += a_a[g] * d[g]
            dim[p] += w * acc
            for c in range(n_cls):
                _factor(binom[2 + n_cls + c], size[2 + n_cls + c], p, ratio, powers, tmp)
                _mul(tmp, ym1[c], tmp2, ii, jj, kk)
                acc = 0.0
                for g in range(n_t):
                    acc += tmp2[g] * d[g]
                z[c, p] += w * t * acc
    return own, dim, v, z
