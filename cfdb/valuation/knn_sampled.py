"""Sampled KNN-Shapley with standard errors for any conjunctive provenance (star joins).

Exact KNN-Shapley over a star join (a fact table with several dimension tables) is #P-hard
in general (Livshits et al., ICDT 2020; :mod:`cfdb.valuation.structure`). This module
estimates the values of every base tuple instead, for any provenance whose rows are single
monomials: star joins with any number of dimension tables, many-to-many joins, self-joins on
distinct tuples, and map, fork and one-to-many-join pipelines too.

**Estimator.** Owen's multilinear extension (:mod:`cfdb.valuation.quadrature`):

    φ_x = ∫₀¹ E_{S ~ Bernoulli(t)}[u(S ∪ x) − u(S \\ x)] dt.

Sample ``j`` of ``m`` draws ``t_j = (j + U_j)/m`` (one point in each of ``m`` equal strata of
``[0, 1]``) and a coalition ``S_j`` with every player present independently with probability
``t_j`` (Okhrati & Lipani 2021, "A multilinear sampling algorithm to estimate Shapley
values"). One coalition serves every player at once: ``Δ_x(S) = u(S ∪ x) − u(S \\ x)`` is
computed for all ``x`` from the same ``S``, and the estimate of ``φ_x`` is the mean of
``Δ_x(S_j)`` over the samples: unbiased, since ``t_j`` is uniform on ``[0, 1]`` marginally.

**Marginal contributions in a few vectorized passes.** The utility is a sum over validation
rows (the gain matrix, as for :class:`~cfdb.valuation.KnnShapley`), and for one validation row
only the top K present rows decide it. With ``L`` the present rows in distance order and
``l_K`` the position of the K-th:

* ``x ∉ S`` adds the rows whose only absent variable is ``x``; only those before ``l_K`` can
  enter the top K, and only the first K of them. The new top K merges them with ``L``'s top K:
  ``n_in`` of them enter, where ``n_in = #{i : q_i < l_{K−i+1}}``, and the new label tally is
  the tally of ``L``'s first ``K − n_in`` rows plus that of the first ``n_in`` added rows.
* ``x ∈ S`` matters only if it is a variable of a row of ``L``'s top K: removing it leaves the
  first K rows of ``L`` that do not contain ``x``.

Both are array operations over the validation rows of a part and the candidates (never a
Python loop per player); the distance order of a part is computed once and reused by every
sample, and each sample reads only the rows it needs: those with at most one absent
variable, or a prefix of the order (:func:`_coalition_order`).

**Standard errors.** Per part of the validation rows (:mod:`cfdb.valuation.validation_parts`)
the samples give a mean and a sample variance per player; the reported standard error is the
sample standard deviation over ``√m``. Under stratification that is *conservative*: with
independent samples from strata of means ``μ_j``, ``E[s²/m] = Var(mean) + Σ_j (μ_j − μ̄)² /
(m(m − 1))``, so it over-states the variance by the spread of the stratum means. Each part
draws its own coalitions from a seed derived from ``seed`` and the part's index (the
partition depends only on the input sizes), so parts are independent: the values add up over
parts and so do the variances, and the result is the same on every executor.

Conservative *in expectation*: the estimated variance is itself random. A tuple that changes
the utility only in rare coalitions (a fact tuple among thousands, whose row must be among
the K nearest present rows, which happens mostly at small ``t``) may matter in none or a
handful of the ``m`` samples; its standard error then rests on those few and can be far too
small (0 when none). ``info["rarely_seen"]`` counts such tuples (fewer than :data:`RARELY`
samples); more samples, or fewer validation rows per estimate, help.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from cfdb.errors import CfdbDataError, CfdbNotFittedError, CfdbUnsupportedError
from cfdb.valuation.knn_shapley import Problem, Result, check_rows, present_utility
from cfdb.valuation.neighbors import Ranker, chunk_rows
from cfdb.valuation.structure import classify, monomial_vars, restrict_players
from cfdb.valuation.utilities import check_knn_utility, count_utility
from cfdb.valuation.validation_parts import part_size, values_over_parts

#: Most samples a run may draw (each is a few passes over validation rows × training rows).
MAX_SAMPLES = 100_000
#: Fewer samples than this in which a tuple mattered: its standard error is unreliable.
RARELY = 10
#: Validation rows per part, at most (see :func:`part_rows`).
PART_ROWS = 128


def _present_ranked(
    present: np.ndarray, cum: np.ndarray, order: np.ndarray, width: int
) -> np.ndarray:
    """Per validation row, the first ``width`` present rows in distance order (-1 padded)."""
    b, pos = np.nonzero(present & (cum <= width))
    out = np.full((present.shape[0], width), -1, dtype=np.int64)
    out[b, cum[b, pos] - 1] = order[b, pos]
    return out


def _tally_prefix(rows: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``P[..., i, c]``: class-``c`` count among the first ``i`` of ``rows`` (-1: none)."""
    onehot = np.zeros((*rows.shape, n_classes))
    valid = rows >= 0
    idx = np.nonzero(valid)
    onehot[(*idx, labels[rows[valid]])] = 1.0
    out = np.zeros((*rows.shape[:-1], rows.shape[-1] + 1, n_classes))
    np.cumsum(onehot, axis=-2, out=out[..., 1:, :])
    return out


def absent_counts(mono_t: np.ndarray, in_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per training row: how many of its variables are not in ``S``, and the largest such
    variable (-1: none). ``mono_t`` is the rows' variables transposed (J × M), so that the
    reductions run over contiguous rows."""
    has = mono_t >= 0
    absent = has & ~in_s[np.where(has, mono_t, 0)]
    miss = np.add.reduce(absent, axis=0, dtype=np.int64)
    return miss, np.where(absent, mono_t, -1).max(axis=0)


def sample_deltas(
    order: np.ndarray,
    gain: np.ndarray,
    mono: np.ndarray,
    labels: np.ndarray,
    in_s: np.ndarray,
    n_vars: int,
    k: int,
    knn_utility: str,
    *,
    prefix: bool = False,
    absent: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray | None:
    """``Σ_j Δ_x(S)`` over validation rows ``j``, for every variable ``x``, at one coalition.

    ``order`` may leave out rows that are neither present nor one variable short of present
    (they never matter), or be a prefix of the distance order (``prefix``) holding each
    validation row's top K present rows; when removing a variable then needs present rows
    beyond the prefix, the result is ``None`` (call again with the whole order).
    ``absent``: :func:`absent_counts` of ``in_s``, if already computed.

    Args:
        order: training rows by distance, per validation row (B × M).
        gain: the gain rows of those validation rows (B × C).
        mono: each training row's distinct variables (M × J, -1 padded).
        labels: class codes of the training rows.
        in_s: whether each variable is in the coalition ``S``.
        n_vars: number of variables.
        k: the K of the proxy.
        knn_utility: ``soft`` or ``vote``.
    """
    n_b, n_rows = order.shape
    n_classes = gain.shape[1]
    if n_rows == 0:
        return np.zeros(n_vars)  # no row present or one tuple short: no tuple matters
    miss, missing_var = absent if absent is not None else absent_counts(mono.T.copy(), in_s)
    miss_sorted = miss.astype(np.int8)[order]
    present = miss_sorted == 0
    cum = np.cumsum(present, axis=1, dtype=np.int32)
    n_present = cum[:, -1]
    top = _present_ranked(present, cum, order, k)  # L's top K (B × K)
    top_tally = _tally_prefix(top, labels, n_classes)  # B × (K+1) × C
    u_s = count_utility(gain, top_tally[:, k], knn_utility, k)
    # position of the K-th present row (the row count when fewer are present)
    l_k = np.where(n_present >= k, np.argmax(cum >= k, axis=1), n_rows)
    top_pos = np.full((n_b, k), n_rows, dtype=np.int64)
    b_idx, pos = np.nonzero(present & (cum <= k))
    top_pos[b_idx, cum[b_idx, pos] - 1] = pos
    out = np.zeros(n_vars)

    # -- x ∉ S: the rows whose only absent variable is x join in --------------------------
    b_idx, pos = np.nonzero((miss_sorted == 1) & (np.arange(n_rows)[None, :] < l_k[:, None]))
    if len(b_idx):
        xs = missing_var[order[b_idx, pos]]
        srt = np.lexsort((pos, xs, b_idx))
        b_idx, pos, xs = b_idx[srt], pos[srt], xs[srt]
        new = np.r_[True, (b_idx[1:] != b_idx[:-1]) | (xs[1:] != xs[:-1])]
        group = np.cumsum(new) - 1
        starts = np.nonzero(new)[0]
        rank = np.arange(len(b_idx)) - starts[group]
        keep = rank < k
        n_groups = len(starts)
        q_pos = np.full((n_groups, k), n_rows + 1, dtype=np.int64)
        q_rows = np.full((n_groups, k), -1, dtype=np.int64)
        q_pos[group[keep], rank[keep]] = pos[keep]
        q_rows[group[keep], rank[keep]] = order[b_idx[keep], pos[keep]]
        gb, gx = b_idx[starts], xs[starts]
        # n_in = #{i : q_i < l_{K−i}} (0-based): the merge of two sorted lists
        n_in = np.sum(q_pos < top_pos[gb][:, ::-1], axis=1)
        merged = (
            top_tally[gb, k - n_in]
            + _tally_prefix(q_rows, labels, n_classes)[np.arange(n_groups), n_in]
        )
        delta = count_utility(gain[gb], merged, knn_utility, k) - u_s[gb]
        out += np.bincount(gx, weights=delta, minlength=n_vars)

    # -- x ∈ S: x's rows leave the top K ---------------------------------------------------
    cand = np.where(top[:, :, None] >= 0, mono[np.maximum(top, 0)], -1).reshape(n_b, -1)
    cand.sort(axis=1)
    cand[:, 1:][cand[:, 1:] == cand[:, :-1]] = -1  # each variable once per validation row
    pb, pc = np.nonzero(cand >= 0)
    if len(pb):
        px = cand[pb, pc]
        tally = np.zeros((len(pb), n_classes))
        pending = np.arange(len(pb))
        width = 2 * k
        while len(pending):
            ranked = _present_ranked(present, cum, order, min(width, n_rows))
            rows = ranked[pb[pending]]  # P × W
            contains = np.any(mono[np.maximum(rows, 0)] == px[pending][:, None, None], axis=2)
            free = (rows >= 0) & ~contains
            taken = free & (np.cumsum(free, axis=1) <= k)
            onehot = np.zeros((*rows.shape, n_classes))
            onehot[(*np.nonzero(taken), labels[rows[taken]])] = 1.0
            tally[pending] = onehot.sum(axis=1)
            # not yet K rows without x, and more present rows beyond the window
            lacking = taken.sum(axis=1) < k
            if prefix and np.any(lacking & (n_present[pb[pending]] <= width)):
                return None  # the rows without x continue past the prefix
            pending = pending[lacking & (n_present[pb[pending]] > width)]
            width *= 4
        delta = u_s[pb] - count_utility(gain[pb], tally, knn_utility, k)
        out += np.bincount(px, weights=delta, minlength=n_vars)
    return out


def _coalition_order(
    order: np.ndarray, rank: np.ndarray, miss: np.ndarray, k: int
) -> tuple[np.ndarray, bool]:
    """The part of the distance order one coalition needs, and whether it is a prefix.

    Only rows with at most one absent variable can be in a top K (present) or enter it
    (toggled by their absent variable). When they are few (small inclusion probabilities and
    several tuples per row), their order is sorted out of the precomputed positions ``rank``;
    otherwise present rows are many and the top K sit early, so a prefix of the order holding
    at least 2K present rows per validation row suffices (almost always).
    """
    n = order.shape[1]
    relevant = np.nonzero(miss <= 1)[0]
    if len(relevant) * 8 <= n:
        return relevant[np.argsort(rank[:, relevant], axis=1)], False
    share = max(float(np.mean(miss == 0)), 1.0 / n)
    width = max(64, int(16 * k / share))
    while width < n:
        head = order[:, :width]
        if (miss[head] == 0).sum(axis=1).min() >= 2 * k:
            return head, True
        width *= 4
    return order, False


def part_rows(n_val: int, n_train: int) -> int:
    """Validation rows per part: larger parts than the exact methods' (each sample has a fixed
    cost per part, drawing the coalition), within the ranking memory budget; a function of the
    sizes only, so the parts and their seeds are the same on every executor."""
    return max(part_size(n_val, n_train), min(chunk_rows(n_train), PART_ROWS))


def sampled_part(
    ranker: Ranker,
    val: Any,
    gain: np.ndarray,
    mono: np.ndarray,
    labels: np.ndarray,
    n_vars: int,
    k: int,
    knn_utility: str,
    samples: int,
    seed: int,
    *,
    part_index: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One part's estimates: ``[means (n), variances of the means (n), samples in which each
    variable mattered (n), the sum's mean and variance]`` concatenated, so that parts add up
    (:func:`values_over_parts`)."""
    rng = np.random.default_rng([seed, part_index])
    order = ranker.order(val)
    rank = np.empty(order.shape, dtype=np.int32)  # each row's position, per validation row
    np.put_along_axis(rank, order, np.arange(order.shape[1], dtype=np.int32)[None, :], axis=1)
    mono_t = np.ascontiguousarray(mono.T)
    t = (np.arange(samples) + rng.random(samples)) / samples
    mean, m2 = np.zeros(n_vars), np.zeros(n_vars)
    total_mean = total_m2 = 0.0
    seen = np.zeros(n_vars)
    for j in range(samples):
        in_s = rng.random(n_vars) < t[j]
        absent = absent_counts(mono_t, in_s)
        args = (gain, mono, labels, in_s, n_vars, k, knn_utility)
        sub, prefix = _coalition_order(order, rank, absent[0], k)
        d = sample_deltas(sub, *args, prefix=prefix, absent=absent)
        if d is None:
            d = sample_deltas(order, *args, absent=absent)
        # Welford's running mean and sum of squared deviations
        step = d - mean
        mean += step / (j + 1)
        m2 += step * (d - mean)
        seen += d != 0.0
        total = float(d.sum())
        total_step = total - total_mean
        total_mean += total_step / (j + 1)
        total_m2 += total_step * (total - total_mean)
    scale = 1.0 / ((samples - 1) * samples)
    out = np.concatenate([mean, m2 * scale, seen, [total_mean, total_m2 * scale]])
    return out, {}


sampled_part.indexed = True  # type: ignore[attr-defined]


class KnnShapleySampled:
    """Monte Carlo KNN-Shapley values of every base tuple, with standard errors.

    Args:
        k: the K of the nearest-neighbour proxy.
        knn_utility: ``soft`` or ``vote``.
        samples: coalitions ``m`` drawn per part of the validation rows (2 to
            :data:`MAX_SAMPLES`).
        seed: the random seed; the same seed gives the same values on every executor.
        n_jobs: unused (the parts run on ``executor``); accepted for a uniform signature.
        max_nodes: unused; accepted for a uniform signature.
        executor: a :class:`cfdb.exec.Executor` running the validation parts.

    Attributes:
        values_: one estimate per variable; 0 for exogenous tuples and tuples of no row.
        std_errors_: one standard error per variable.
        pipeline_: the provenance's class (``general`` for a star join).
        utility_all_: the proxy's utility on the full training set, computed directly.
        info_: details stored with the run (samples, seed, the largest and median standard
            error, the sum of the estimates and its standard error, and ``rarely_seen``: how
            many tuples changed the utility in fewer than :data:`RARELY` samples — their
            standard errors rest on those few samples and understate the error, and a
            standard error of 0 means no sample saw the tuple matter).
        seen_: per variable, the number of samples (summed over parts) in which it changed
            the utility.
    """

    name = "knn_shapley_sampled"

    def __init__(
        self,
        k: int = 5,
        knn_utility: str = "soft",
        samples: int = 64,
        seed: int = 0,
        n_jobs: int = 2,
        max_nodes: int = 2048,
        executor: Any = None,
    ) -> None:
        self.k = k
        self.knn_utility = knn_utility
        self.samples = samples
        self.seed = seed
        self.n_jobs = n_jobs
        self.max_nodes = max_nodes
        self.executor = executor

    def _check(self, problem: Problem) -> tuple[int, str, int, int]:
        k, samples, seed = self.k, self.samples, self.seed
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
            raise CfdbDataError(f"k must be a positive integer, got {k!r}")
        if (
            not isinstance(samples, int | np.integer)
            or isinstance(samples, bool)
            or not 2 <= samples <= MAX_SAMPLES
        ):
            raise CfdbDataError(
                f"samples must be an integer from 2 to {MAX_SAMPLES:,}, got {samples!r}"
            )
        if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
            raise CfdbDataError(f"seed must be a non-negative integer, got {seed!r}")
        kind = check_knn_utility(self.knn_utility)
        check_rows(problem)
        if problem.lineage.sums:
            raise CfdbUnsupportedError(
                f"knn_shapley_sampled needs one monomial per training row: training row "
                f"{problem.lineage.sums[0]} has a provenance sum (a deduplicating UNION merged "
                "rows from different tuples, so the row is present when any of them is); "
                "write UNION ALL"
            )
        return int(k), kind, int(samples), int(seed)

    def fit(self, problem: Problem) -> Self:
        """Estimate the values; returns ``self``.

        Raises:
            CfdbUnsupportedError: a training row's provenance is a sum of monomials.
            CfdbDataError: bad parameters or empty inputs.
        """
        k, kind, samples, seed = self._check(problem)
        lineage = restrict_players(problem.lineage, problem.players)
        pipeline = classify(lineage)
        train, val = problem.train, problem.val
        if not sp.issparse(train):
            train = np.asarray(train, dtype=np.float64)
            val = np.asarray(val, dtype=np.float64)
        labels = np.asarray(problem.labels, dtype=np.int64)
        gain = np.asarray(problem.gain, dtype=np.float64)
        n_vars = lineage.n_vars
        mono = monomial_vars(lineage)
        mono = mono[:, mono.shape[1] - max(1, int((mono >= 0).sum(axis=1).max())) :]
        args = (mono, labels, n_vars, k, kind, samples, seed)
        packed, _ = values_over_parts(
            sampled_part,
            train,
            val,
            gain,
            args,
            3 * n_vars + 2,
            executor=self.executor,
            size=part_rows(len(gain), len(labels)),
        )
        values, variances = packed[:n_vars], packed[n_vars : 2 * n_vars]
        seen = packed[2 * n_vars : 3 * n_vars]
        std_errors = np.sqrt(np.maximum(variances, 0.0))
        players = np.unique(mono[mono >= 0])
        always = ~(mono >= 0).any(axis=1)
        u_all = present_utility(train, labels, val, gain, k, kind, np.ones(len(labels), bool))
        u_empty = present_utility(train, labels, val, gain, k, kind, always)
        played = std_errors[players] if len(players) else np.zeros(1)
        self.values_ = values
        self.std_errors_ = std_errors
        self.seen_ = seen
        self.pipeline_ = pipeline
        self.utility_all_ = u_all
        self.info_ = {
            "pipeline": pipeline.kind,
            "k": k,
            "knn_utility": kind,
            "samples": samples,
            "seed": seed,
            "players_in_rows": len(players),
            "std_error_max": float(played.max()),
            "std_error_median": float(np.median(played)),
            "sum_of_estimates": float(values.sum()),
            "sum_std_error": float(np.sqrt(max(packed[-1], 0.0))),
            # a standard error from a handful of non-zero samples is itself unreliable
            "rarely_seen": int(np.sum(seen[players] < RARELY)) if len(players) else 0,
            "utility_empty": u_empty,
        }
        if int(always.sum()):
            self.info_["constant_rows"] = int(always.sum())
        return self

    def result(self) -> Result:
        """The fitted estimates as a :class:`Result` (with ``std_errors``)."""
        if not hasattr(self, "values_"):
            raise CfdbNotFittedError("KnnShapleySampled is not fitted")
        return Result(
            self.values_, self.pipeline_, self.utility_all_, dict(self.info_), self.std_errors_
        )
