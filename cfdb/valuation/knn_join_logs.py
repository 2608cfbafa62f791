"""KNN-Shapley over a one-to-many join away from ``t = 1``, in the log domain: O(Q·N·|Γ|²).

:mod:`cfdb.valuation.knn_join_sweep` computes the Shapley integrand of a one-to-many join at a
node ``t`` with a segment tree, because the product ``R_i`` of the *other* dimensions' factors
at position ``i`` cannot be had by dividing the product of all factors by the boundary's own
factor: near ``t = 1`` a factor ``F = (1 − t) + t·A`` has a constant term ``1 − t`` far below its
other coefficients, and inverse series lose them (its docstring tells the story). Away from
``t = 1`` that cannot happen: ``F``'s constant term is at least ``1 − t`` and every other
coefficient at most ``t·P(Binomial = j) ≤ t``, so ``log F`` and ``exp`` of sums of such logs
amplify rounding by at most about ``(t/(1 − t))^(K−1)`` over the tallies of size below K.
:func:`split_for` keeps that below 100 (and ``t ≤ 3/4``): ``t ≤ 3/4`` for K ≤ 5, ``0.63`` for
K = 10, never below 1/2. On random joins (K up to 10) the path agrees with the segment tree to
10⁻¹⁴ of the utility weights at ``t = 3/4``, 10⁻¹³ at 0.8 and only 10⁻¹⁰ at 0.9.
Then, per validation row and node, along the distance order:

* ``L(i) = Σ_{j < i} (log F_{g_j}(after j) − log F_{g_j}(before j))`` — a running sum, so
  ``Π_d F_d`` at position ``i`` is ``exp L(i)`` and ``R_i = exp(L(i) − log F_{g_i}(before i))``;
* ``P_i = t²·A_{g_i}(before i)·R_i`` and its dual ``D_i`` under ``Λ_i`` (``⟨W, D_i⟩ = Λ_i(W·P_i)``);
* the derivative with respect to the factor row ``p``'s dimension has over its range
  ``p+1 .. q−1`` (``q`` the dimension's next row) is ``W ↦ Σ_{i in range} Λ_i(W·P_i/F)``: the
  dual of ``exp(−log F)`` applied to a range sum of ``D``, i.e. a difference of prefix sums.

Everything else (the row's own term, the facts of the boundary's dimension, the suffix sums that
credit each fact) is the segment-tree sweep's, reused. The series logarithm and exponential
are the usual recursions on total degree (``θ F = F·θ log F`` with ``θ`` multiplying a tally's
coefficient by its size), so ``vote`` tallies over several classes work too. Tests hold this
path to the segment-tree sweep node by node, and the combined sweep to subset enumeration.
"""

from __future__ import annotations

import numpy as np

from cfdb.valuation.join_series import Series, factor_series, group_counts, suffix_in_group
from cfdb.valuation.knn_join import _within_group


def split_for(k: int) -> float:
    """The largest node ``t`` the log-domain path takes for a given K (see the module text)."""
    if k <= 1:
        return 0.75
    ratio = 100.0 ** (1.0 / (k - 1))  # (t/(1 − t))^(K−1) ≤ 100
    return float(min(0.75, max(0.5, ratio / (1.0 + ratio))))


class LogSeries:
    """Series logarithm and exponential in a truncated tally ring (:class:`Series`)."""

    def __init__(self, ser: Series) -> None:
        self.ser = ser
        deg = ser.tallies.sizes
        top = int(deg.max(initial=0))
        # per total degree s ≥ 1: the targets of degree s and the pairs (i, j, t) feeding them
        self.levels = []
        for s in range(1, top + 1):
            targets = np.nonzero(deg == s)[0]
            pairs = [(i, j, k) for i, j, k in ser.pairs if deg[k] == s and deg[i] >= 1]
            self.levels.append((targets, pairs))
        self.deg = deg.astype(np.float64)

    def log(self, f: np.ndarray) -> np.ndarray:
        """``log f`` for ``f`` with a positive constant term (tally-first arrays)."""
        out = np.empty_like(f)
        out[0] = np.log(f[0])
        inv0 = 1.0 / f[0]
        deg = self.deg
        for targets, pairs in self.levels:
            acc = {int(k): deg[k] * f[k] for k in targets}
            for i, j, k in pairs:
                if deg[i] < deg[k]:  # i = k (j = 0) is the unknown itself
                    acc[k] = acc[k] - deg[i] * out[i] * f[j]
            for k in targets:
                out[k] = acc[int(k)] * inv0 / deg[k]
        return out

    def exp(self, a: np.ndarray) -> np.ndarray:
        """``exp a`` (tally-first arrays)."""
        out = np.empty_like(a)
        out[0] = np.exp(a[0])
        deg = self.deg
        for targets, pairs in self.levels:
            acc = {int(k): np.zeros_like(a[0]) for k in targets}
            for i, j, k in pairs:
                acc[k] = acc[k] + deg[i] * a[i] * out[j]
            for k in targets:
                out[k] = acc[int(k)] / deg[k]
        return out


class LogOrder:
    """One validation row's distance order cut after ``length`` positions, with everything
    the log-domain path reuses across batches of nodes (counts, binomials, ranges)."""

    def __init__(self, ser: Series, g: np.ndarray, c: np.ndarray, length: int) -> None:
        m = len(g)
        rows = min(length, m)
        self.m, self.rows, self.length = m, rows, length
        self.g, self.c = g[:rows], c[:rows]
        n_cls = ser.tallies.n_classes
        _, nxt, self.gorder = _within_group(self.g)
        self.before = group_counts(self.g, self.c, n_cls)
        self.after = self.before.copy()
        self.after[np.arange(rows), self.c] += 1.0
        # the factor of row p's dimension after p holds at p+1 .. stop_p − 1 (the tail
        # included when p is the dimension's last row)
        self.stop = np.minimum(np.where(nxt < rows, nxt, m + 1), length)
        self.lo = np.minimum(np.arange(rows) + 1, self.stop)
        eye = np.eye(n_cls)
        self.counts = {"before": self.before, "after": self.after}
        for cls in range(n_cls):
            self.counts[f"before-{cls}"] = self.before - eye[cls]
            self.counts[f"after-{cls}"] = self.after - eye[cls]
        self.binomials = {key: ser.binomials(v) for key, v in self.counts.items()}

    def kernel_tables(self, ser: Series) -> dict[str, np.ndarray]:
        """Binomials and sizes by key (before, after, before − e_c…, after − e_c…) and the
        shifts by ``e_c`` (multiplying by ``y_c − 1``), as the compiled loop takes them."""
        if not hasattr(self, "_kernel"):
            n_cls = ser.tallies.n_classes
            keys = ["before", "after"] + [f"before-{c}" for c in range(n_cls)]
            keys += [f"after-{c}" for c in range(n_cls)]
            down = np.full((n_cls, ser.t), -1, dtype=np.int64)
            eye = np.eye(n_cls, dtype=np.int64)
            for g, vec in enumerate(ser.tallies.vectors):
                for c in range(n_cls):
                    if vec[c] >= 1:
                        down[c, g] = ser.tallies.index(vec - eye[c])
            self._kernel = {
                "binom": np.ascontiguousarray(np.stack([self.binomials[k] for k in keys])),
                "size": np.stack(
                    [np.clip(self.counts[k].sum(axis=1), 0, None).astype(np.int64) for k in keys]
                ),
                "down": down,
            }
        return self._kernel

    def factor(self, ser: Series, key: str, log_t: np.ndarray, log_u: np.ndarray) -> np.ndarray:
        """:func:`factor_series` of the counts ``key`` (``before``, ``after-1``, ...)."""
        return factor_series(ser, self.counts[key], log_t, log_u, self.binomials[key])


def log_row(
    ser: Series,
    logs: LogSeries,
    order: LogOrder,
    lam_y: np.ndarray,
    t: np.ndarray,
    w: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Node-weighted derivatives for one validation row and nodes ``t ≤ split_for(K)``.

    Args:
        ser: the series ring (``soft``: one variable; ``vote``: one per class).
        logs: its logarithm and exponential.
        order: the row's distance order (:class:`LogOrder`).
        lam_y: ``Λ_i`` per position as tally weights (T × (M + 1)), the tail last.
        t, w: nodes and weights.

    Returns:
        Per position (M): the derivative credited to its fact, and to its dimension.
    """
    m, rows, length = order.m, order.rows, order.length
    n_cls = ser.tallies.n_classes
    q = len(t)
    u = 1.0 - t
    log_u, log_t = np.log(u), np.log(t)

    a_before = order.factor(ser, "before", log_t, log_u)
    a_after = order.factor(ser, "after", log_t, log_u)
    l_before = logs.log(_dimension_factor(a_before, t, u))
    l_after = logs.log(_dimension_factor(a_after, t, u))
    # L(i): the log of every dimension's factor at position i (an exclusive running sum)
    run = np.zeros((ser.t, length, q))
    np.cumsum((l_after - l_before)[:, : length - 1], axis=1, out=run[:, 1:])
    rest = np.empty_like(run)
    rest[:, :rows] = logs.exp(run[:, :rows] - l_before)
    if length > m:
        rest[:, m] = logs.exp(run[:, m])
    lam = lam_y[:, :length, None]
    lead = a_before * (t * t)[None, None, :]
    prob = np.empty_like(rest)
    prob[:, :rows] = ser.mul(lead, rest[:, :rows])
    if length > m:
        prob[:, m] = rest[:, m]
    dual = ser.dual(prob, lam)  # ⟨W, D_i⟩ = Λ_i(W·P_i)
    own = (dual[0, :rows] / t[None, :]) @ w

    ym1 = ser.y_minus_1()  # y_c − 1
    dual_rest = ser.dual(rest[:, :rows], lam[:, :rows])
    v_same = np.zeros((n_cls, rows))
    for cls in range(n_cls):
        lead_c = ser.mul(order.factor(ser, f"before-{cls}", log_t, log_u), ym1[cls])
        v_same[cls] = (np.sum(lead_c * dual_rest, axis=0) * t[None, :] ** 2) @ w

    # ∂E/∂F over row p's range: the dual of 1/F = exp(−log F) applied to a range sum of D
    prefix = np.zeros((ser.t, length + 1, q))
    np.cumsum(dual, axis=1, out=prefix[:, 1:])
    ranged = prefix[:, order.stop] - prefix[:, order.lo]
    grad = ser.dual(logs.exp(-l_after), ranged)
    scaled = a_after.copy()
    scaled[0] -= 1.0  # ∂F/∂p_d = A − 1
    dim = np.sum(scaled * grad, axis=0) @ w
    z = np.zeros((n_cls, rows))
    for cls in range(n_cls):
        a_minus = order.factor(ser, f"after-{cls}", log_t, log_u)
        fs = ser.mul(a_minus, ym1[cls]) * t[None, None, :]
        z[cls] = np.sum(fs * grad, axis=0) @ w
    return _credit(order, own, dim, v_same, z)


def _credit(
    order: LogOrder, own: np.ndarray, dim: np.ndarray, v_same: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per position: fact and dimension credit from the node-weighted terms (``own``: the
    row's own; ``dim``: its dimension's factor ranges; ``v_same``/``z``: per class, the terms
    each earlier fact of the dimension collects by a suffix sum)."""
    c, g = order.c, order.g
    v_same = v_same.copy()
    z = z.copy()
    v_same[order.before.T == 0] = 0.0  # no fact of that class yet: no factor to differentiate
    z[order.after.T == 0] = 0.0
    fact_vals = own.copy()
    for cls in range(len(v_same)):
        mine = c == cls
        if not mine.any():
            continue
        fact_vals[mine] += suffix_in_group(v_same[cls], order.gorder, g, inclusive=False)[mine]
        fact_vals[mine] += suffix_in_group(z[cls], order.gorder, g, inclusive=True)[mine]
    pad = (0, order.m - order.rows)
    return np.pad(fact_vals, pad), np.pad(own + dim, pad)


def compiled_row(
    ser: Series, order: LogOrder, lam_y: np.ndarray, t: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`log_row` through the compiled loop (:mod:`cfdb.valuation.knn_join_kernel`)."""
    from cfdb.valuation.knn_join_kernel import log_nodes, tile_size

    tables = order.kernel_tables(ser)
    lam = np.ascontiguousarray(lam_y[:, : order.length].T)
    own, dim, v_same, z = log_nodes(
        tables["binom"],
        tables["size"],
        lam,
        order.stop,
        order.lo,
        tables["down"],
        order.m,
        np.ascontiguousarray(t, dtype=np.float64),
        np.ascontiguousarray(w, dtype=np.float64),
        *ser_tables(ser),
        tile_size(order.length, ser.t),
    )
    return _credit(order, own, dim, v_same, z)


def ser_tables(ser: Series) -> tuple[np.ndarray, ...]:
    """The ring's tables for the compiled loop: sizes, product pairs, and per target tally the
    pairs ``(i, j)`` with ``|γ_i| ≥ 1`` feeding it (targets in order of size)."""
    cached = getattr(ser, "_kernel_tables", None)
    if cached is not None:
        return cached
    deg = ser.tallies.sizes.astype(np.float64)
    if np.any(np.diff(deg) < 0):
        raise AssertionError("tallies must be ordered by size")
    ii, jj, kk = (np.asarray(x, dtype=np.int64) for x in zip(*ser.pairs))
    keep = deg[ii] >= 1
    order = np.argsort(kk[keep], kind="stable")
    pi, pj, pk = ii[keep][order], jj[keep][order], kk[keep][order]
    ptr = np.searchsorted(pk, np.arange(ser.t + 1)).astype(np.int64)
    tables = (deg, ii, jj, kk, ptr, pi, pj)
    ser._kernel_tables = tables
    return tables


def _dimension_factor(a: np.ndarray, t: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``F = (1 − t) + t·A``."""
    f = t[None, None, :] * a
    f[0] += u[None, :]
    return f


def direct_row(
    ser: Series, order: LogOrder, lam_y: np.ndarray, t: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The same terms at any ``t`` by leave-one-out products over the dimensions met
    (:func:`cfdb.valuation.knn_join_kernel.direct_nodes`): no logarithm, no division."""
    from cfdb.valuation.knn_join_kernel import direct_nodes, tile_size

    tables = order.kernel_tables(ser)
    _, dim_of = np.unique(order.g, return_inverse=True)
    deg, ii, jj, kk, *_ = ser_tables(ser)
    own, dim, v_same, z = direct_nodes(
        tables["binom"],
        tables["size"],
        np.ascontiguousarray(lam_y[:, : order.length].T),
        dim_of.astype(np.int64),
        int(dim_of.max(initial=-1)) + 1,
        tables["down"],
        order.m,
        np.ascontiguousarray(t, dtype=np.float64),
        np.ascontiguousarray(w, dtype=np.float64),
        deg,
        ii,
        jj,
        kk,
        tile_size(order.length, ser.t),
    )
    return _credit(order, own, dim, v_same, z)
