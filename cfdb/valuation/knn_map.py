"""Exact KNN-Shapley for map pipelines: one base tuple per training row (the hot path).

For one validation row, order the N training rows by distance (ties by row order) and let
``h_i`` be the gain of the label of the i-th nearest (``G[j, y_i]``).

``soft`` utility — Jia et al. 2019, Theorem 1 (the exact recursion, O(N log N))::

    s_N = h_N · min(K, N) / (K · N)          (h_N / N when N ≥ K)
    s_i = s_{i+1} + (h_i − h_{i+1}) · min(K, i) / (K · i)

Unrolled with ``c_i = min(K, i)/(K·i)`` (``c_N := 0``) and ``δ_m = c_m − c_{m−1}``:
``s_i = s_N + h_i·c_i + Σ_{m>i} h_m·δ_m`` — one reverse cumulative sum per validation row,
vectorized over a chunk of validation rows; the per-row values are scattered back to their
training rows with one ``bincount``. With two classes ``h`` is affine in the label, so the
cumulative sum runs over the 0/1 labels directly.

``vote`` utility — majority of the K nearest present rows. A row ``i`` changes the top-K of
a coalition ``S`` only if it is nearer than the K-th nearest row ``p`` of ``S`` (which it then
evicts), or if ``|S| < K``. Summing the Shapley weights over the rows beyond ``p`` (free: any
of them may be in ``S``) gives ``1/(p·C(p−1, K))`` — the probability, in a random
permutation, that ``i`` comes after the K fixed rows and before the ``p−1−K`` excluded
ones. Hence, with ``n_c(p)`` the class-c rows among the first ``p−1``::

    φ_i = T(y_i) + Σ_{p>i} K/(p(p−1)) · Σ_{|γ|=K−1} H(γ; n(p) − e_{y_i}) · (u(γ+e_{y_i}) − u(γ+e_{y_p}))

where ``H`` is the multivariate hypergeometric probability of drawing tally ``γ`` from
``p − 2`` rows, and ``T(a) = (1/N)·Σ_{s<K} Σ_{|γ|=s} H(γ; N − e_a) (u(γ+e_a) − u(γ))``
covers coalitions smaller than K. The inner sum depends on ``i`` only through its class, so
each class needs one reverse cumulative sum: O(N·C·|Γ|) per validation row after sorting.
The same formula holds for any tally utility, including ``soft`` (tests check both ways).

**Chunks of validation rows.** Both utilities are sums over validation rows, so the values are
a sum of per-part contributions. ``VALUATE`` runs :func:`soft_values` / :func:`vote_values`,
which split the validation rows into parts (:func:`part_rows`), run them on threads or on an
executor (``cfdb.exec``) and add them in part order, so every executor gets bit-identical
values. :func:`values_for_validation_chunk` and :func:`map_values` expose the same
decomposition as a pure API for callers that distribute chunks themselves.
Memory is bounded by the chunking: at most ``chunk_rows(N)`` validation rows (~64 MB of
distances per array) are ranked at once per thread, whatever the number of validation rows.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from math import factorial
from typing import Any

import numpy as np
from scipy.special import gammaln

from cfdb.valuation.neighbors import Ranker, chunk_rows, chunks
from cfdb.valuation.utilities import Tallies, tally_utility


def _soft_coefficients(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    ranks = np.arange(1, n + 1, dtype=np.float64)
    c = np.minimum(k, ranks) / (k * ranks)
    c[-1] = 0.0
    delta = np.zeros(n)
    delta[1:] = c[1:] - c[:-1]
    return c, delta


class _Workspace:
    """Per-thread buffers, reused across chunks: fresh large arrays cost page faults."""

    def __init__(self, rows: int, n: int) -> None:
        self.keys = np.empty((rows, n))
        self.values = np.empty((rows, n))
        self.labels = np.empty(n, dtype=np.int8)
        self.cum = np.empty(n)


def _soft_chunk(
    ranker: Ranker,
    val: np.ndarray,
    labels: np.ndarray,
    gain: np.ndarray,
    k: int,
    coef: tuple[np.ndarray, np.ndarray],
    ws: _Workspace,
) -> tuple[np.ndarray, float]:
    """Per-training-row values summed over the chunk's validation rows, plus a constant.

    Rows are processed one at a time after the chunk's matrix product, so that every pass
    after the sort runs on data still in cache; one ``bincount`` per run of equal gain
    differences scatters the chunk's values back to training rows.
    """
    n = ranker.n
    b = len(val)
    c, delta = coef
    keys = ranker.packed(val, out=ws.keys[:b])
    values = ws.values[:b]
    f = ws.cum
    s_n = min(k, n) / (k * n)
    binary = gain.shape[1] == 2
    dg = gain[:, 1] - gain[:, 0] if binary else np.ones(b)
    constant = 0.0
    ys = ws.labels if labels.dtype == np.int8 else np.empty(n, dtype=labels.dtype)
    for row in range(b):
        key = keys[row]
        key.sort()
        order = ranker.indices(key, out=key)
        np.take(labels, order, out=ys, mode="clip")
        w = values[row]
        if binary:
            # h = g0 + dg*y: s_i = s_N + dg*(y_i c_i + F_N - F_i) with F = cumsum(y*delta)
            np.multiply(ys, delta, out=f)
            np.cumsum(f, out=f)
            np.multiply(ys, c, out=w)
            np.subtract(w, f, out=w)
            constant += dg[row] * f[-1] + (gain[row, 0] + dg[row] * ys[-1]) * s_n
        else:
            h = np.take(gain[row], ys)
            np.multiply(h, delta, out=f)
            np.cumsum(f, out=f)
            np.multiply(h, c, out=w)
            np.subtract(w, f, out=w)
            constant += f[-1] + h[-1] * s_n
    order = keys.view(np.int64)
    out = np.zeros(n)
    start = 0
    while start < b:  # validation rows come grouped by dg: one bincount per run
        stop = start + 1
        while stop < b and dg[stop] == dg[start]:
            stop += 1
        if dg[start] != 0.0:
            out += dg[start] * np.bincount(
                order[start:stop].ravel(), weights=values[start:stop].ravel(), minlength=n
            )
        start = stop
    return out, float(constant)


def part_rows(n_val: int, n_train: int, chunk: int | None = None) -> int:
    """Validation rows per part: about :data:`_PARTS` parts of at least :data:`_MIN_PART`
    rows, within the memory budget. A function of the sizes only (never of the executor or
    its workers), so every executor sums the same parts in the same order and the values do
    not depend on where the parts ran (bit for bit)."""
    if chunk:
        return chunk
    spread = max(_MIN_PART, -(-n_val // _PARTS))
    return max(1, min(chunk_rows(n_train), spread))


#: Fewest validation rows in a part worth shipping on its own.
_MIN_PART = 64
#: Parts a large validation set is cut into: enough to keep a dozen workers busy.
_PARTS = 16


def _soft_setup(
    train: np.ndarray, labels: np.ndarray, gain: np.ndarray, k: int
) -> tuple[Ranker, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    ranker = Ranker(train)
    labels = np.asarray(labels).astype(np.int8 if gain.shape[1] <= 127 else np.int32)
    return ranker, labels, _soft_coefficients(ranker.n, k)


#: Per worker process: the shared value being computed on, and what was built from it.
_STATE: dict[str, Any] = {}


def worker_state(shared: Any, make: Any) -> Any:
    """``make()``, built once per shared value in a worker process (one valuation at a time).

    The shared value is held, not only its ``id``: a worker may free one valuation's value
    before it receives the next, which can then get the same ``id`` (Ray's workers do).
    """
    if _STATE.get("shared") is not shared:
        _STATE.clear()
        _STATE["shared"] = shared
        _STATE["state"] = make()
    return _STATE["state"]


def _soft_parts(shared: tuple[Any, ...], indices: Sequence[int]) -> list[tuple[int, Any, float]]:
    """Executor task: the soft values of validation parts ``indices`` (see soft_values)."""
    train, labels, val, gain, k, size = shared

    def make() -> tuple[Any, ...]:
        ranker, codes, coef = _soft_setup(train, labels, gain, k)
        return ranker, codes, coef, _Workspace(size, ranker.n)

    ranker, codes, coef, ws = worker_state(shared, make)
    out = []
    for i in indices:
        part = slice(i * size, min(len(gain), (i + 1) * size))
        values, constant = _soft_chunk(ranker, val[part], codes, gain[part], k, coef, ws)
        out.append((i, values, constant))
    return out


def gather_parts(executor: Any, fn: Any, shared: tuple[Any, ...], n_parts: int) -> list[Any]:
    """Run ``fn`` over every part on ``executor``; per-part results in part order."""
    import time

    from cfdb.exec.progress import Progress

    results: list[Any] = [None] * n_parts
    stream = executor.map_chunks(
        fn,
        shared,
        [[i] for i in range(n_parts)],
        describe=lambda i: f"validation rows part {i + 1} of {n_parts}",
    )
    started = time.perf_counter()
    try:
        with Progress("valuation", n_parts, unit="parts") as progress:
            for done in stream:
                for item in done:
                    results[item[0]] = item[1:]
                progress.advance(len(done), time.perf_counter() - started)
    finally:
        stream.close()
    return results


def soft_values(
    train: np.ndarray,
    labels: np.ndarray,
    val: np.ndarray,
    gain: np.ndarray,
    k: int,
    *,
    n_jobs: int = 2,
    chunk: int | None = None,
    executor: Any = None,
) -> np.ndarray:
    """Exact KNN-Shapley values (soft utility) of each training row of a map pipeline.

    Args:
        train: featurized training rows (N × d).
        labels: class codes of the training rows.
        val: featurized validation rows.
        gain: the additive utility's gain matrix (validation rows × classes).
        k: the K of the KNN proxy.
        n_jobs: worker threads (sorting and BLAS release the GIL).
        chunk: validation rows ranked at once (default: :func:`part_rows`).
        executor: a :class:`cfdb.exec.Executor` running the parts in other processes or on
            Ray (its ``n_jobs`` replaces ``n_jobs``); the values equal the threads' bit for
            bit.

    Returns:
        One value per training row; they sum to the utility of the full training set.
    """
    remote = executor is not None and not executor.in_process
    size = part_rows(len(gain), train.shape[0], chunk)
    if gain.shape[1] == 2:  # group validation rows by gain difference (see _soft_chunk)
        perm = np.argsort(gain[:, 1] - gain[:, 0], kind="stable")
        gain, val = gain[perm], val[perm]
    parts = list(chunks(len(gain), size))
    if remote:
        per_part = gather_parts(
            executor, _soft_parts, (train, labels, val, gain, k, size), len(parts)
        )
    else:
        ranker, codes, coef = _soft_setup(train, labels, gain, k)
        local = threading.local()

        def run(part: slice) -> tuple[np.ndarray, float]:
            ws = getattr(local, "ws", None)
            if ws is None:
                ws = local.ws = _Workspace(size, ranker.n)
            return _soft_chunk(ranker, val[part], codes, gain[part], k, coef, ws)

        with ThreadPoolExecutor(max(1, min(n_jobs, len(parts)))) as pool:
            per_part = list(pool.map(run, parts))
    # summed in part order, wherever the parts ran
    total = np.zeros(train.shape[0])
    constant = 0.0
    for out, const in per_part:
        total += out
        constant += const
    total += constant
    return total


# -- vote -------------------------------------------------------------------------------------
def _log_comb(n: np.ndarray | float, k: np.ndarray | float) -> np.ndarray:
    n = np.asarray(n, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    return np.where((k < 0) | (k > n), -np.inf, out)


def _small_coalitions(
    utility: np.ndarray, tallies: Tallies, class_counts: np.ndarray, k: int
) -> np.ndarray:
    """``T[j, a]``: the Shapley mass of coalitions smaller than K, for a row of class a."""
    n = int(class_counts.sum())
    n_classes = len(class_counts)
    out = np.zeros((utility.shape[0], n_classes))
    for a in range(n_classes):
        others = class_counts - (np.arange(n_classes) == a)
        for size in range(min(k, n)):
            log_total = _log_comb(n - 1, size)
            plus = tallies.shift(np.eye(n_classes, dtype=np.int64)[a])
            for t in tallies.of_size(size):
                gamma = tallies.vectors[t]
                log_h = float(np.sum(_log_comb(others, gamma))) - float(log_total)
                if not np.isfinite(log_h):
                    continue
                gained = utility[:, plus[t]] - (utility[:, t] if size else 0.0)
                out[:, a] += np.exp(log_h) * gained / n
    return out


def _vote_chunk(
    ranker: Ranker,
    val: np.ndarray,
    labels: np.ndarray,
    utility: np.ndarray,
    tallies: Tallies,
    k: int,
    small: np.ndarray,
) -> np.ndarray:
    n = ranker.n
    n_classes = tallies.n_classes
    order = ranker.order(val)
    ys = labels[order].astype(np.intp)
    b = len(order)
    pos = np.arange(1, n + 1, dtype=np.float64)  # 1-based rank p
    # counts of each class among the first p-1 rows
    counts = np.zeros((n_classes, b, n))
    for cls in range(n_classes):
        hit = (ys == cls).astype(np.float64)
        np.cumsum(hit, axis=1, out=counts[cls])
        counts[cls] -= hit
    valid = pos >= k + 1
    scale = np.zeros(n)
    scale[valid] = k / (pos[valid] * (pos[valid] - 1))
    # denominators p-2-j for the hypergeometric ratio, as reciprocals
    inv_den = []
    for j in range(k - 1):
        d = pos - 2 - j
        inv = np.zeros(n)
        ok = valid & (d > 0)
        inv[ok] = 1.0 / d[ok]
        inv_den.append(inv)
    eye = np.eye(n_classes, dtype=np.int64)
    gammas = tallies.of_size(k - 1)
    values = np.zeros((b, n))
    for a in range(n_classes):
        q = np.zeros((b, n))
        for t in gammas:
            gamma = tallies.vectors[t]
            coef = factorial(k - 1) / np.prod([factorial(int(x)) for x in gamma])
            hyp = np.full((b, n), coef)
            j = 0
            for cls in range(n_classes):
                base = counts[cls] - (1.0 if cls == a else 0.0)
                for step in range(int(gamma[cls])):
                    hyp *= (base - step) * inv_den[j]
                    j += 1
            with_a = utility[:, tallies.index(gamma + eye[a])]
            with_other = utility[:, [tallies.index(gamma + eye[c]) for c in range(n_classes)]]
            delta = with_a[:, None] - np.take_along_axis(with_other, ys, axis=1)
            q += hyp * delta
        q *= scale
        # exclusive reverse cumulative sum: R[i] = sum_{p > i} q[p]
        rev = np.cumsum(q[:, ::-1], axis=1)[:, ::-1]
        rev[:, :-1] = rev[:, 1:].copy()
        rev[:, -1] = 0.0
        mine = ys == a
        values[mine] += rev[mine] + np.broadcast_to(small[:, a : a + 1], (b, n))[mine]
    return np.bincount(order.ravel(), weights=values.ravel(), minlength=n)


def _vote_setup(
    labels: np.ndarray, gain: np.ndarray, k: int, knn_utility: str
) -> tuple[np.ndarray, Tallies, np.ndarray]:
    labels = np.asarray(labels, dtype=np.intp)
    tallies = Tallies(gain.shape[1], k)
    return labels, tallies, np.bincount(labels, minlength=gain.shape[1])


def _vote_part(
    ranker: Ranker,
    setup: tuple[np.ndarray, Tallies, np.ndarray],
    val: np.ndarray,
    gain: np.ndarray,
    k: int,
    knn_utility: str,
) -> np.ndarray:
    labels, tallies, class_counts = setup
    utility = tally_utility(gain, tallies, knn_utility, k)
    small = _small_coalitions(utility, tallies, class_counts, k)
    return _vote_chunk(ranker, val, labels, utility, tallies, k, small)


def _vote_parts(shared: tuple[Any, ...], indices: Sequence[int]) -> list[tuple[int, Any]]:
    """Executor task: the values of validation parts ``indices`` (see vote_values)."""
    train, labels, val, gain, k, knn_utility, size = shared
    ranker, setup = worker_state(
        shared, lambda: (Ranker(train), _vote_setup(labels, gain, k, knn_utility))
    )
    out = []
    for i in indices:
        part = slice(i * size, min(len(gain), (i + 1) * size))
        out.append((i, _vote_part(ranker, setup, val[part], gain[part], k, knn_utility)))
    return out


def vote_values(
    train: np.ndarray,
    labels: np.ndarray,
    val: np.ndarray,
    gain: np.ndarray,
    k: int,
    *,
    knn_utility: str = "vote",
    n_jobs: int = 2,
    chunk: int | None = None,
    executor: Any = None,
) -> np.ndarray:
    """Exact KNN-Shapley values of each training row of a map pipeline, any tally utility.

    Args:
        train: featurized training rows (N × d).
        labels: class codes of the training rows.
        val: featurized validation rows.
        gain: the additive utility's gain matrix (validation rows × classes).
        k: the K of the KNN proxy.
        knn_utility: ``vote`` (majority) or ``soft`` (slower than :func:`soft_values`).
        n_jobs: worker threads.
        chunk: validation rows ranked at once.
        executor: as in :func:`soft_values`.

    Returns:
        One value per training row.
    """
    remote = executor is not None and not executor.in_process
    n_classes = gain.shape[1]
    budget = max(1, chunk_rows(train.shape[0]) // (2 * n_classes + 4))
    size = chunk or min(budget, part_rows(len(gain), train.shape[0]))
    parts = list(chunks(len(gain), size))
    if remote:
        shared = (train, labels, val, gain, k, knn_utility, size)
        per_part = [r[0] for r in gather_parts(executor, _vote_parts, shared, len(parts))]
    else:
        ranker = Ranker(train)
        setup = _vote_setup(labels, gain, k, knn_utility)

        def run(part: slice) -> np.ndarray:
            return _vote_part(ranker, setup, val[part], gain[part], k, knn_utility)

        if n_jobs > 1 and len(parts) > 1:
            with ThreadPoolExecutor(n_jobs) as pool:
                per_part = list(pool.map(run, parts))
        else:
            per_part = [run(part) for part in parts]
    total = np.zeros(train.shape[0])
    for out in per_part:
        total += out
    return total


# -- chunks of validation rows ------------------------------------------------------------------
#: Validation rows per unit of work of :func:`map_values` (a fixed partition, so that any
#: executor reproduces the local sums bit for bit).
VALIDATION_CHUNK = 1024


def validation_chunks(n_val: int, size: int = VALIDATION_CHUNK) -> list[slice]:
    """The fixed partition of ``range(n_val)`` into units of work, in summation order."""
    return list(chunks(n_val, size))


def values_for_validation_chunk(
    train: np.ndarray,
    labels: np.ndarray,
    val: np.ndarray,
    gain: np.ndarray,
    k: int,
    *,
    knn_utility: str = "soft",
    n_jobs: int = 1,
) -> np.ndarray:
    """The additive contribution of validation rows ``val`` to every training row's value.

    A pure function of its arguments (no shared state), so it can run in another process or
    on another machine; :func:`map_values` is the sum of its results over
    :func:`validation_chunks` in order.

    Args:
        train: featurized training rows (N × d).
        labels: class codes of the training rows.
        val: the chunk's featurized validation rows.
        gain: the chunk's rows of the gain matrix.
        k: the K of the KNN proxy.
        knn_utility: ``soft`` or ``vote``.
        n_jobs: threads within the chunk.
    """
    if knn_utility == "soft":
        return soft_values(train, labels, val, gain, k, n_jobs=n_jobs)
    return vote_values(train, labels, val, gain, k, knn_utility=knn_utility, n_jobs=n_jobs)


def map_values(
    train: np.ndarray,
    labels: np.ndarray,
    val: np.ndarray,
    gain: np.ndarray,
    k: int,
    *,
    knn_utility: str = "soft",
    n_jobs: int = 2,
    chunk_size: int = VALIDATION_CHUNK,
) -> np.ndarray:
    """Exact KNN-Shapley values of a map pipeline: chunk contributions summed in order."""
    total = np.zeros(train.shape[0])
    for part in validation_chunks(len(gain), chunk_size):
        total += values_for_validation_chunk(
            train, labels, val[part], gain[part], k, knn_utility=knn_utility, n_jobs=n_jobs
        )
    return total
