"""Exact KNN-Shapley for one-to-many join pipelines: fact tuples and dimension tuples.

A training row ``a_f · a_d`` is present when its fact tuple ``f`` and its dimension tuple
``d`` both are; both kinds of tuple are players. DataScope (section 5.2, corollary 5.1.1)
compiles the provenance into an additive decision diagram whose paths count coalitions by
size and top-K tally. Tracking the coalition size is what makes such counting expensive.
cfdb removes it with the Shapley integral (:mod:`cfdb.valuation.quadrature`): at a fixed
inclusion probability ``t`` every tuple is present independently, so the probability of a
top-K event *factorizes over dimension tuples* — a dimension tuple's factor is
``(1 − t) + t · Π_{its facts} ((1 − t) + t · y^{τ_f})`` in the label-tally variable ``y``,
``τ_f`` being the tally of the fact's rows before the boundary. The derivative of the
expected utility with respect to one tuple's probability is its expected marginal
contribution, and integrating it over ``t`` with exact Gauss–Legendre nodes gives the
Shapley value.

* :func:`join_values_1nn` — K = 1 with every row a fact × dimension pair: the factors are
  scalars, products are running sums of logarithms, and every tuple's derivative is a
  prefix-sum lookup: O(N log N + Q·N) per validation row for ``Q`` nodes.
* :func:`cfdb.valuation.knn_join_sweep.join_values_sweep` — any K with every row a fact ×
  dimension pair and one row per fact: division-free products over a segment tree on the
  distance order, O(Q·N·log N·|Γ|²) per validation row.
* :func:`join_values_general` — any K, any mix of fact-only, dimension-only and joined rows
  (and therefore fork and map pipelines too): at each boundary row, leave-one-out products
  of the dimension factors (prefix and suffix products, no division) give every tuple's
  derivative. Polynomial: O(Q·N·(D + F)·|Γ|²) per validation row, ``D``/``F`` the relevant
  dimension/fact tuples and ``|Γ|`` the tallies of size below K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cfdb.valuation.join_series import suffix_in_group
from cfdb.valuation.knn_fork import kept_positions
from cfdb.valuation.neighbors import Ranker, chunk_rows, chunks
from cfdb.valuation.quadrature import Nodes, shapley_nodes
from cfdb.valuation.utilities import Tallies, tally_utility

_NODE_CHUNK = 64


def _within_group(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a sequence of group ids: rank within its group, next same-group position, order."""
    n = len(groups)
    idx = np.argsort(groups, kind="stable")
    sg = groups[idx]
    new_run = np.r_[True, sg[1:] != sg[:-1]]
    starts = np.nonzero(new_run)[0]
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, dtype=np.int64)
    rank[idx] = np.arange(n) - run_start
    nxt_sorted = np.r_[idx[1:], n]
    last_of_run = np.r_[sg[1:] != sg[:-1], True]
    nxt_sorted[last_of_run] = n
    nxt = np.empty(n, dtype=np.int64)
    nxt[idx] = nxt_sorted
    return rank, nxt, idx


def _node_tables(t: np.ndarray, max_m: int) -> dict[str, np.ndarray]:
    """Per node (rows) and group size m = 0..max_m+1 (columns): the 1-NN join factors.

    ``F(m) = (1−t) + t(1−t)^m`` is the probability that a dimension tuple with ``m`` facts
    before the boundary contributes no present row.
    """
    u = 1.0 - t[:, None]
    m = np.arange(max_m + 2, dtype=np.float64)[None, :]
    um = u**m
    f = u + t[:, None] * um
    f_next = u + t[:, None] * um * u
    return {
        "ratio": f_next / f,  # F(m+1)/F(m): the boundary row's group gains a fact
        "lead": t[:, None] ** 2 * um / f,  # t²(1−t)^m / F(m): boundary present, siblings absent
        "rho": (um * u - 1.0) / f_next,  # ∂F/∂p_group / F after the row
        "sigma": -t[:, None] * um / f_next,  # ∂F/∂p_fact / F after the row
    }


def join_values_1nn(
    ranker: Ranker,
    row_fact: np.ndarray,
    row_group: np.ndarray,
    labels: np.ndarray,
    val: np.ndarray,
    gain: np.ndarray,
    n_vars: int,
    nodes: Nodes,
) -> np.ndarray:
    """Exact 1-NN Shapley values of fact and dimension tuples (every row joined).

    Per validation row: each fact's nearest row, in distance order, is a candidate
    nearest neighbour ``s`` with ``m_s`` earlier facts of its dimension tuple. At node ``t``
    the probability that no earlier row is present is a running product of the factor ratios
    ``F(m+1)/F(m)`` (positions major, nodes minor), so every tuple's derivative is a table
    lookup times prefix sums; positions past the point where that product underflows to 0
    are skipped.
    """
    values = np.zeros(n_vars)
    max_m = int(np.bincount(np.unique(np.c_[row_fact, row_group], axis=0)[:, 1]).max())
    for part in chunks(len(gain), chunk_rows(ranker.n)):
        order = ranker.order(val[part])
        for j, row_order in enumerate(order):
            facts_sorted = row_fact[row_order]
            _, first = np.unique(facts_sorted, return_index=True)
            rows = row_order[np.sort(first)]
            f, g = row_fact[rows], row_group[rows]
            h = gain[part][j][labels[rows]]
            rank, nxt, gorder = _within_group(g)
            group_acc, own_acc, tail_acc = _join_1nn_sums(h, rank, nxt, nodes, max_m)
            values += np.bincount(g, weights=group_acc, minlength=n_vars)
            fact_vals = own_acc + suffix_in_group(tail_acc, gorder, g, inclusive=True)
            values += np.bincount(f, weights=fact_vals, minlength=n_vars)
    return values


def _join_1nn_sums(
    h: np.ndarray, rank: np.ndarray, nxt: np.ndarray, nodes: Nodes, max_m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Node-weighted derivative sums per candidate position: group, own-fact and tail terms.

    Arrays are nodes × positions, so the running products and sums run along contiguous
    memory; positions past the point where every node's product underflowed are skipped.
    """
    n = len(h)
    has_next = nxt < n
    last = np.where(has_next, nxt - 1, n - 1)  # the segment after s ends here
    group_acc, own_acc, tail_acc = np.zeros(n), np.zeros(n), np.zeros(n)
    for s in range(0, len(nodes.t), _NODE_CHUNK):
        t, w = nodes.t[s : s + _NODE_CHUNK], nodes.w[s : s + _NODE_CHUNK]
        tab = _node_tables(t, max_m)
        p = np.empty((len(t), n))
        p[:, 0] = 1.0
        np.cumprod(
            np.take(tab["ratio"], rank[:-1], axis=1), axis=1, out=p[:, 1:]
        )  # no present row before s
        alive = np.nonzero(p[:, -1] > 0.0)[0]
        stop = n if len(alive) else int(np.argmax(np.all(p == 0.0, axis=0))) or n
        r = rank[:stop]
        e = p[:, :stop]
        e *= np.take(tab["lead"], r, axis=1)
        e *= h[None, :stop]
        ps = np.cumsum(e, axis=1)
        seg = np.take(ps, np.minimum(last[:stop], stop - 1), axis=1)
        seg -= ps  # E over the positions strictly between s and the next same-group row
        own = (w / t) @ e
        own_acc[:stop] += own
        group_acc[:stop] += own + np.einsum(
            "ql,ql->l", np.take(tab["rho"], r, axis=1) * w[:, None], seg
        )
        nxt_ok = has_next[:stop] & (nxt[:stop] < stop)
        nxt_e = (w / (1 - t)) @ np.take(e, np.minimum(nxt[:stop], stop - 1), axis=1)
        tail_acc[:stop] += np.einsum(
            "ql,ql->l", np.take(tab["sigma"], r, axis=1) * w[:, None], seg
        ) - np.where(nxt_ok, nxt_e, 0.0)
    return group_acc, own_acc, tail_acc


# -- general ----------------------------------------------------------------------------------
@dataclass
class _Entities:
    """Facts and groups of a join, with constant (always present) stand-ins where missing."""

    row_fact: np.ndarray  # fact entity of each row
    fact_group: np.ndarray  # group entity of each fact entity
    fact_var: np.ndarray  # player variable of each fact entity (-1: constant)
    group_var: np.ndarray  # player variable of each group entity (-1: constant)

    @classmethod
    def build(cls, row_fact: np.ndarray, row_group: np.ndarray) -> _Entities:
        keys = list(zip(row_fact.tolist(), row_group.tolist()))
        fact_index: dict[tuple[str, int], int] = {}
        group_index: dict[tuple[str, int], int] = {}
        fact_group: list[int] = []
        fact_var: list[int] = []
        group_var: list[int] = []
        row_fe = np.empty(len(keys), dtype=np.int64)
        for r, (f, g) in enumerate(keys):
            gkey = ("g", g) if g >= 0 else ("solo", f)
            if gkey not in group_index:
                group_index[gkey] = len(group_var)
                group_var.append(g)
            gi = group_index[gkey]
            fkey = ("f", f) if f >= 0 else ("pseudo", g)
            if fkey not in fact_index:
                fact_index[fkey] = len(fact_var)
                fact_var.append(f)
                fact_group.append(gi)
            row_fe[r] = fact_index[fkey]
        return cls(row_fe, np.array(fact_group), np.array(fact_var), np.array(group_var))


class _Poly:
    """Truncated polynomials in the label tally (sizes < K), one row per quadrature node."""

    def __init__(self, tallies: Tallies) -> None:
        self.tallies = tallies
        t = len(tallies)
        ii, jj, kk = tallies.product_table()
        scatter = np.zeros((t * t, t))
        scatter[ii * t + jj, kk] = 1.0
        self.scatter = scatter
        self.t = t
        self.ii, self.jj, self.kk = ii, jj, kk

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        q = a.shape[0]
        return (a[:, :, None] * b[:, None, :]).reshape(q, self.t * self.t) @ self.scatter

    def dual_matrix(self, v: np.ndarray) -> np.ndarray:
        """``M[i, j] = v[γ_i + γ_j]``: then ``Λ(A·X) = ⟨X, A @ M⟩`` for ``Λ(P) = ⟨P, v⟩``."""
        m = np.zeros((self.t, self.t))
        m[self.ii, self.jj] = v[self.kk]
        return m


def join_values_general(
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
    """Exact KNN-Shapley values of every tuple of a join (any K, tally utility, row mix)."""
    ent = _Entities.build(np.asarray(row_fact), np.asarray(row_group))
    n_classes = gain.shape[1]
    small = Tallies(n_classes, k - 1)
    full = Tallies(n_classes, k)
    poly = _Poly(small)
    eye = np.eye(n_classes, dtype=np.int64)
    # index in `full` of γ + e_c for every small γ, and of γ itself
    up = np.stack(
        [np.array([full.index(v + eye[c]) for v in small.vectors]) for c in range(n_classes)]
    )
    same = np.array([full.index(v) for v in small.vectors])
    plus_label = np.stack([small.shift(eye[c]) for c in range(n_classes)])
    values = np.zeros(n_vars)
    # rows of no player (fact and group both constant) are always present: once K of them
    # precede a row, that row never reaches the top K, so each sweep stops at the K-th
    always = (ent.fact_var[ent.row_fact] < 0) & (ent.group_var[ent.fact_group[ent.row_fact]] < 0)
    for part in chunks(len(gain), chunk_rows(ranker.n)):
        order = ranker.order(val[part])
        kept = kept_positions(order, ent.row_fact, k)
        utility = tally_utility(gain[part], full, knn_utility, k)
        for j in range(len(order)):
            rows = order[j][kept[j]]
            stop = np.nonzero(always[rows])[0]
            if len(stop) >= k:
                rows = rows[: stop[k - 1] + 1]
            values += _general_row(
                rows, ent, labels, utility[j], small, poly, up, same, plus_label, nodes, n_vars, k
            )
    return values


def _general_row(
    rows: np.ndarray,
    ent: _Entities,
    labels: np.ndarray,
    utility: np.ndarray,
    small: Tallies,
    poly: _Poly,
    up: np.ndarray,
    same: np.ndarray,
    plus_label: np.ndarray,
    nodes: Nodes,
    n_vars: int,
    k: int,
) -> np.ndarray:
    q, tsize = len(nodes.t), len(small)
    t = nodes.t[:, None]
    one = np.zeros((q, tsize))
    one[:, 0] = 1.0
    prob_fact = np.where(ent.fact_var >= 0, 1.0, 0.0)  # 1 for players (probability t)
    prob_group = np.where(ent.group_var >= 0, 1.0, 0.0)
    grad = np.zeros((q, n_vars))
    tau = np.zeros(len(ent.fact_var), dtype=np.int64)  # tally index in `small`; -1: >= K
    relevant: dict[int, list[int]] = {}

    def p_of(is_player: float) -> np.ndarray:
        return t if is_player else np.ones_like(t)

    def mono(index: int) -> np.ndarray:
        out = np.zeros((q, tsize))
        if index >= 0:
            out[:, index] = 1.0
        return out

    def fact_poly(f: int) -> np.ndarray:
        p = p_of(prob_fact[f])
        return (1.0 - p) * one + p * mono(tau[f])

    def shifted(dual: np.ndarray, index: int) -> np.ndarray:
        """``D[γ + τ] − D[γ]``: the dual of multiplying by ``y^τ − 1``."""
        moved = np.zeros_like(dual)
        if index >= 0:
            target = small.shift(small.vectors[index])
            ok = target >= 0
            moved[:, ok] = dual[:, target[ok]]
        return moved - dual

    def products(items: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        pre, suf = [one], [one]
        for x in items:
            pre.append(poly.mul(pre[-1], x))
        for x in reversed(items):
            suf.append(poly.mul(suf[-1], x))
        return pre, suf[::-1]

    def credit(var: int, amount: np.ndarray) -> None:
        if var >= 0:
            grad[:, var] += amount

    def spread(groups: list[int], inner: np.ndarray, dual_m: np.ndarray) -> None:
        """Credit every tuple of ``groups`` given the boundary factor ``inner``."""
        factors, fact_lists, fact_products = [], [], []
        for g in groups:
            fl = [fact_poly(f) for f in relevant[g]]
            pre, suf = products(fl)
            pg = p_of(prob_group[g])
            factors.append((1.0 - pg) * one + pg * pre[-1])
            fact_lists.append((fl, pre, suf))
            fact_products.append(pre[-1])
        pre_g, suf_g = products(factors)
        for i, g in enumerate(groups):
            loo = poly.mul(pre_g[i], suf_g[i + 1])
            dual = poly.mul(inner, loo) @ dual_m
            credit(ent.group_var[g], np.sum((fact_products[i] - one) * dual, axis=1))
            pg = p_of(prob_group[g])
            fl, pre, suf = fact_lists[i]
            for jf, f in enumerate(relevant[g]):
                if ent.fact_var[f] < 0:
                    continue
                others = poly.mul(pre[jf], suf[jf + 1])
                amount = np.sum(others * shifted(dual, tau[f]), axis=1)
                credit(ent.fact_var[f], pg[:, 0] * amount)

    for r in rows:
        f, g, c = int(ent.row_fact[r]), int(ent.fact_group[ent.row_fact[r]]), int(labels[r])
        # Λ_b(P) = Σ_{|δ| = K−1} P[δ]·u(δ + e_c)
        v = np.where(small.sizes == k - 1, utility[np.maximum(up[c], 0)], 0.0)
        v[up[c] < 0] = 0.0
        dual_m = poly.dual_matrix(v)
        pf, pg = p_of(prob_fact[f]), p_of(prob_group[g])
        siblings = [x for x in relevant.get(g, []) if x != f]
        sib = [fact_poly(x) for x in siblings]
        pre_s, suf_s = products(sib)
        base = poly.mul(mono(tau[f]), pre_s[-1])  # y^{τ_f} Π_{siblings} φ
        others = [x for x in relevant if x != g and relevant[x]]
        factors = []
        for x in others:
            pxg = p_of(prob_group[x])
            prod = one
            for ff in relevant[x]:
                prod = poly.mul(prod, fact_poly(ff))
            factors.append((1.0 - pxg) * one + pxg * prod)
        env = one
        for fac in factors:
            env = poly.mul(env, fac)
        lam = np.sum(poly.mul(base, env) @ dual_m * one, axis=1)  # Λ(base·env)
        credit(ent.fact_var[f], (pg * lam[:, None])[:, 0])
        credit(ent.group_var[g], (pf * lam[:, None])[:, 0])
        # siblings in the boundary row's group
        dual_env = poly.mul(poly.mul(mono(tau[f]), env), one) @ dual_m
        for i, x in enumerate(siblings):
            if ent.fact_var[x] < 0:
                continue
            rest = poly.mul(pre_s[i], suf_s[i + 1])
            amount = np.sum(rest * shifted(dual_env, tau[x]), axis=1)
            credit(ent.fact_var[x], (pf * pg)[:, 0] * amount)
        # every other group and its facts
        if others:
            inner = (pf * pg) * base
            spread(others, inner, dual_m)
        # advance the boundary row's fact
        if tau[f] >= 0:
            tau[f] = plus_label[c, tau[f]]
        if f not in relevant.setdefault(g, []):
            relevant[g].append(f)
    # coalitions with fewer than K present rows: Λ(P) = Σ_{|γ| < K} P[γ]·u(γ)
    v = np.where(same >= 0, utility[np.maximum(same, 0)], 0.0)
    dual_m = poly.dual_matrix(v)
    groups = [g for g in relevant if relevant[g]]
    if groups:
        spread(groups, one, dual_m)
    return grad.T @ nodes.w


def join_values(
    ranker: Ranker,
    row_fact: np.ndarray,
    row_group: np.ndarray,
    labels: np.ndarray,
    val: np.ndarray,
    gain: np.ndarray,
    n_vars: int,
    k: int,
    knn_utility: str,
    *,
    max_nodes: int = 2048,
) -> tuple[np.ndarray, Nodes]:
    """Exact KNN-Shapley values of the tuples of a one-to-many join pipeline.

    Args:
        ranker: ranks the training rows.
        row_fact: fact variable of each row (-1: none).
        row_group: dimension variable of each row (-1: none).
        labels: class codes of the rows.
        val: featurized validation rows.
        gain: the gain matrix.
        n_vars: number of variables.
        k: the K of the KNN proxy.
        knn_utility: ``soft`` or ``vote``.
        max_nodes: largest exact quadrature rule (see :func:`shapley_nodes`).

    Returns:
        One value per variable, and the quadrature nodes used (``nodes.exact``).
    """
    row_fact, row_group = np.asarray(row_fact), np.asarray(row_group)
    players = np.union1d(row_fact[row_fact >= 0], row_group[row_group >= 0])
    # near t = 0 a joined row is present with probability t², so a run of joined rows is absent
    # on the scale 1/√n; a dimension tuple's facts, the dimension tuples themselves and rows of
    # one tuple each are absent together on the scale 1/(their number)
    facts_per_dim = np.bincount(row_group[row_group >= 0])
    near_zero = max(
        int(facts_per_dim.max(initial=1)),
        int(np.count_nonzero(facts_per_dim)),
        math.isqrt(len(players)) + 1,
        int(np.count_nonzero((row_fact < 0) | (row_group < 0))),
    )
    nodes = shapley_nodes(len(players), max_nodes, near_zero=near_zero)
    joined = bool(np.all(row_fact >= 0) and np.all(row_group >= 0))
    if k == 1 and joined:
        return join_values_1nn(ranker, row_fact, row_group, labels, val, gain, n_vars, nodes), nodes
    if joined and len(np.unique(row_fact)) == len(row_fact):
        from cfdb.valuation.knn_join_sweep import join_values_sweep

        values = join_values_sweep(
            ranker, row_fact, row_group, labels, val, gain, n_vars, k, knn_utility, nodes
        )
        return values, nodes
    return join_values_general(
        ranker, row_fact, row_group, labels, val, gain, n_vars, k, knn_utility, nodes
    ), nodes
