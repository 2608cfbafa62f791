"""Fork and join KNN-Shapley over parts of the validation rows, on any executor.

Every KNN-Shapley value is a sum over validation rows: the utility is additive (a gain per
validation row, DataScope section 3), and the Shapley value is linear in the utility, so
``φ = Σ_j φ^(j)`` with ``φ^(j)`` the values for validation row ``j`` alone (Jia et al. 2019,
section 4; DataScope section 5 computes each ``φ^(j)`` by one counting pass). A part of the
validation rows therefore has values of its own, and the values of the whole set are the sum
over parts. The fork and join algorithms (:mod:`cfdb.valuation.knn_fork`,
:mod:`cfdb.valuation.knn_join`) run unchanged on each part; this module owns

* the partition (:func:`part_size`): it depends only on the numbers of validation and
  training rows, never on the executor or its workers;
* the per-part functions (:func:`fork_part`, :func:`join_part`): pure functions of their
  arguments, so a worker process or a Ray node computes what this process would;
* the sum: per-part values are added in part order wherever they ran
  (:func:`values_over_parts`), so ``local``, ``process`` and ``ray`` give the same values
  bit for bit.

The map pipeline has its own parts (:mod:`cfdb.valuation.knn_map`: its threads share
per-thread buffers); the executor plumbing (:func:`cfdb.valuation.knn_map.gather_parts`) is
shared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cfdb.valuation import knn_fork, knn_join
from cfdb.valuation.knn_map import gather_parts, worker_state
from cfdb.valuation.neighbors import Ranker, chunk_rows, chunks

#: ``fn(ranker, val_part, gain_part, *args) -> (values, info)``: the values of one part, and
#: what the method reports about itself (the same for every part).
PartFn = Callable[..., tuple[np.ndarray, dict[str, Any]]]

#: Parts a validation set is cut into when it is large enough: enough for a few dozen workers
#: to share the work evenly, few enough that the per-part set-up stays negligible.
TARGET_PARTS = 32
#: Fewest validation rows in a part (fork and join cost milliseconds per validation row).
MIN_PART = 8


def part_size(n_val: int, n_train: int) -> int:
    """Validation rows per part: about :data:`TARGET_PARTS` parts of at least
    :data:`MIN_PART` rows, within the ranking memory budget (:func:`chunk_rows`).

    A function of the two sizes only, so that every executor sums the same parts.
    """
    spread = max(MIN_PART, -(-n_val // TARGET_PARTS))
    return max(1, min(chunk_rows(n_train), spread))


def fork_part(
    ranker: Ranker,
    val: np.ndarray,
    gain: np.ndarray,
    row_group: np.ndarray,
    labels: np.ndarray,
    n_groups: int,
    k: int,
    knn_utility: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The values of the groups of a fork pipeline for validation rows ``val`` alone."""
    values = knn_fork.fork_values(ranker, row_group, labels, val, gain, n_groups, k, knn_utility)
    return values, {}


def join_part(
    ranker: Ranker,
    val: np.ndarray,
    gain: np.ndarray,
    row_fact: np.ndarray,
    row_group: np.ndarray,
    labels: np.ndarray,
    n_vars: int,
    k: int,
    knn_utility: str,
    max_nodes: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The values of the tuples of a one-to-many join for validation rows ``val`` alone, and
    the quadrature rule used (it depends on the number of players only)."""
    values, nodes = knn_join.join_values(
        ranker,
        row_fact,
        row_group,
        labels,
        val,
        gain,
        n_vars,
        k,
        knn_utility,
        max_nodes=max_nodes,
    )
    return values, {"quadrature_nodes": len(nodes.t), "quadrature_exact": nodes.exact}


def _parts_task(shared: tuple[Any, ...], indices: Sequence[int]) -> list[tuple[Any, ...]]:
    """Executor task: the values of validation parts ``indices``."""
    fn, train, val, gain, size, args = shared
    ranker = worker_state(shared, lambda: Ranker(train))
    out = []
    for i in indices:
        part = slice(i * size, min(len(gain), (i + 1) * size))
        out.append((i, *fn(ranker, val[part], gain[part], *args, **_index(fn, i))))
    return out


def _index(fn: PartFn, i: int) -> dict[str, int]:
    """``{"part_index": i}`` for a part function that asks for it (``fn.indexed``): a sampled
    estimate seeds each part from its index, so that the result does not depend on where the
    part runs."""
    return {"part_index": i} if getattr(fn, "indexed", False) else {}


def values_over_parts(
    fn: PartFn,
    train: Any,
    val: Any,
    gain: np.ndarray,
    args: tuple[Any, ...],
    n_out: int,
    *,
    executor: Any = None,
    size: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """``Σ_parts fn(ranker, val[part], gain[part], *args)``, summed in part order.

    Args:
        fn: a module-level per-part function (workers import it by name), e.g.
            :func:`fork_part` or :func:`join_part`.
        train: featurized training rows (dense or scipy sparse).
        val: featurized validation rows.
        gain: the gain matrix (validation rows × classes).
        args: ``fn``'s further arguments (shipped once per worker).
        n_out: length of the values.
        executor: a :class:`cfdb.exec.Executor` running the parts in other processes or on
            Ray; ``None`` (or an in-process executor) runs them here, one after the other.
        size: validation rows per part (default :func:`part_size`).

    Returns:
        The values (the same bit for bit on every executor) and the first part's info.
    """
    size = size or part_size(len(gain), train.shape[0])
    parts = list(chunks(len(gain), size))
    if executor is not None and not executor.in_process:
        shared = (fn, train, val, gain, size, args)
        per_part = gather_parts(executor, _parts_task, shared, len(parts))
    else:
        ranker = Ranker(train)
        per_part = [
            fn(ranker, val[p], gain[p], *args, **_index(fn, i)) for i, p in enumerate(parts)
        ]
    total = np.zeros(n_out)
    for values, _ in per_part:
        total += values
    return total, (per_part[0][1] if per_part else {})
