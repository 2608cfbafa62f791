"""KNN-Shapley over provenance: the valuation method behind ``USING knn_shapley``.

Given featurized training and validation rows, the training rows' provenance over base
tuples and an additive utility, :class:`KnnShapley` recognizes the canonical pipeline
(:mod:`cfdb.valuation.structure`) and computes the exact Shapley value of every base tuple
for a K-nearest-neighbour proxy of the model (DataScope, Karlaš et al., section 5):

* map — :mod:`cfdb.valuation.knn_map` (Jia et al. 2019's recursion for ``soft``);
* fork — :mod:`cfdb.valuation.knn_fork`;
* one-to-many join — :mod:`cfdb.valuation.knn_join`.

Values are summed over validation rows as the metric is (the gain matrix carries the
weights), so they add up to ``u(all) − u(∅)``; ``u(∅) = 0`` unless some rows are always
present.

``Problem.players`` makes only the tuples of some relations players; the others are
exogenous, always present (:func:`cfdb.valuation.structure.restrict_players`), which turns a
star join with players = the fact table and one dimension table into a one-to-many join.
Rows left with no player variable are in every coalition: the pipeline runs through the
general join algorithm (:func:`cfdb.valuation.knn_join.join_values_general`, which counts
them as present with probability 1), and ``u(∅)`` is the utility of those rows alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from cfdb.errors import CfdbDataError, CfdbNotFittedError, CfdbUnsupportedError
from cfdb.valuation import knn_map
from cfdb.valuation.neighbors import Ranker, chunk_rows, chunks
from cfdb.valuation.structure import (
    FORK,
    GENERAL,
    JOIN,
    MAP,
    Lineage,
    Pipeline,
    classify,
    restrict_players,
)
from cfdb.valuation.utilities import check_knn_utility
from cfdb.valuation.validation_parts import fork_part, join_part, values_over_parts

#: Largest number of label tallies a counting oracle may track.
MAX_TALLIES = 50_000


@dataclass(frozen=True)
class Problem:
    """What a valuation needs, in memory.

    Attributes:
        train: featurized training rows (N × d), dense or scipy sparse.
        labels: class codes of the training rows (``0..C-1``).
        lineage: the training rows' provenance over base-tuple variables.
        val: featurized validation rows.
        gain: the additive utility's gain matrix (validation rows × C).
        players: relation codes (``lineage.var_relation``) whose tuples are players; the
            tuples of every other relation are exogenous (always present). ``None``: all.
    """

    train: Any
    labels: np.ndarray
    lineage: Lineage
    val: Any
    gain: np.ndarray
    players: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Result:
    """Values of base-tuple variables and what was computed.

    Attributes:
        values: one value per variable.
        pipeline: the recognized pipeline class.
        utility_all: the proxy's utility on the full training set (the values' sum).
        info: method details (quadrature, counts), stored with the run.
        std_errors: one standard error per variable for estimates; ``None`` when exact.
    """

    values: np.ndarray
    pipeline: Pipeline
    utility_all: float
    info: dict[str, Any] = field(default_factory=dict)
    std_errors: np.ndarray | None = None


def proxy_predictions(
    train: Any, labels: np.ndarray, val: Any, k: int, n_classes: int, knn_utility: str
) -> np.ndarray:
    """``P[j, c]``: how much the KNN proxy trained on all rows predicts class ``c`` for ``j``.

    ``soft``: the share of the K nearest rows with label ``c`` (count / K); ``vote``: 1 for
    the majority label (ties to the first class), 0 elsewhere.
    """
    ranker = Ranker(train)
    out = np.zeros((val.shape[0], n_classes))
    for part in chunks(val.shape[0], chunk_rows(ranker.n)):
        near = ranker.nearest(val[part], k)
        counts = np.zeros((near.shape[0], n_classes))
        np.add.at(
            counts, (np.repeat(np.arange(near.shape[0]), near.shape[1]), labels[near].ravel()), 1.0
        )
        if knn_utility == "soft":
            out[part] = counts / k
        else:
            out[part][np.arange(len(counts)), np.argmax(counts, axis=1)] = 1.0
    return out


def present_utility(
    train: Any,
    labels: np.ndarray,
    val: Any,
    gain: np.ndarray,
    k: int,
    knn_utility: str,
    present: np.ndarray,
) -> float:
    """The KNN proxy's utility trained on the rows ``present`` (a boolean mask) only; 0 when
    no row is present."""
    rows = np.nonzero(present)[0]
    if len(rows) == 0:
        return 0.0
    p = proxy_predictions(train[rows], labels[rows], val, k, gain.shape[1], knn_utility)
    return float(np.sum(p * gain))


def _check_tallies(n_classes: int, size: int, knn_utility: str, k: int) -> None:
    count = comb(size + n_classes, n_classes)
    if count > MAX_TALLIES:
        raise CfdbUnsupportedError(
            f"k = {k} with {n_classes} classes means {count:,} label tallies to track; "
            f"use a smaller k{' or knn_utility = soft' if knn_utility == 'vote' else ''}"
        )


def check_rows(problem: Problem) -> None:
    """Refuse a problem with no training or no validation rows (every KNN method)."""
    if problem.lineage.n_rows == 0:
        raise CfdbDataError("the training query returns no rows")
    if problem.gain.shape[0] == 0:
        raise CfdbDataError("the validation query returns no rows")


class KnnShapley:
    """Exact KNN-Shapley values of base tuples over map, fork and one-to-many-join pipelines.

    Args:
        k: the K of the nearest-neighbour proxy.
        knn_utility: ``soft`` (Jia et al. 2019) or ``vote`` (DataScope eq. 13).
        n_jobs: worker threads for the map path.
        executor: a :class:`cfdb.exec.Executor` running the validation parts of every
            pipeline (worker processes, Ray) instead of this process; the values are the same
            bit for bit (:mod:`cfdb.valuation.validation_parts`).
        max_nodes: largest exact quadrature rule for joins (see
            :func:`cfdb.valuation.quadrature.shapley_nodes`).

    Attributes:
        values_: one value per variable (after :meth:`fit`).
        pipeline_: the recognized pipeline.
        utility_all_: the proxy's utility on the full training set.
        info_: details stored with the run.
    """

    name = "knn_shapley"

    def __init__(
        self,
        k: int = 5,
        knn_utility: str = "soft",
        n_jobs: int = 2,
        max_nodes: int = 2048,
        executor: Any = None,
    ) -> None:
        self.k = k
        self.knn_utility = knn_utility
        self.n_jobs = n_jobs
        self.max_nodes = max_nodes
        self.executor = executor

    def fit(self, problem: Problem) -> Self:
        """Compute the values; returns ``self``.

        Raises:
            CfdbUnsupportedError: the provenance is not a canonical pipeline (the message
                says why), or the tallies to track are too many.
            CfdbDataError: bad parameters or empty inputs.
        """
        k = int(self.k)
        if k < 1:
            raise CfdbDataError(f"k must be a positive integer, got {self.k!r}")
        kind = check_knn_utility(self.knn_utility)
        check_rows(problem)
        pipeline = classify(restrict_players(problem.lineage, problem.players))
        if pipeline.kind == GENERAL:
            raise CfdbUnsupportedError(
                f"knn_shapley needs a map, fork or one-to-many join pipeline: {pipeline.reason}"
            )
        train, val = problem.train, problem.val
        if not sp.issparse(train):
            train = np.asarray(train, dtype=np.float64)
            val = np.asarray(val, dtype=np.float64)
        labels = np.asarray(problem.labels, dtype=np.int64)
        gain = np.asarray(problem.gain, dtype=np.float64)
        n_classes = gain.shape[1]
        n_vars = problem.lineage.n_vars
        info: dict[str, Any] = {"pipeline": pipeline.kind, "k": k, "knn_utility": kind}
        u_empty = 0.0
        if pipeline.constants:
            # rows with no player variable are in every coalition, including the empty one
            always = (pipeline.row_fact < 0) & (pipeline.row_group < 0)
            u_empty = present_utility(train, labels, val, gain, k, kind, always)
            info["constant_rows"] = pipeline.constants
        if pipeline.constants == problem.lineage.n_rows:
            values = np.zeros(n_vars)  # no player reaches a training row
        elif pipeline.constants:
            _check_tallies(n_classes, k - 1, kind, k)
            args = (pipeline.row_fact, pipeline.row_group, labels, n_vars, k, kind, self.max_nodes)
            values, quadrature = values_over_parts(
                join_part, train, val, gain, args, n_vars, executor=self.executor
            )
            info.update(quadrature)
        elif pipeline.kind == MAP:
            if kind == "soft":
                row_values = knn_map.soft_values(
                    train, labels, val, gain, k, n_jobs=self.n_jobs, executor=self.executor
                )
            else:
                _check_tallies(n_classes, k, kind, k)
                row_values = knn_map.vote_values(
                    train,
                    labels,
                    val,
                    gain,
                    k,
                    knn_utility=kind,
                    n_jobs=self.n_jobs,
                    executor=self.executor,
                )
            values = np.zeros(n_vars)
            values[pipeline.row_group] = row_values
        elif pipeline.kind == FORK:
            _check_tallies(n_classes, k, kind, k)
            # the fork counting weighs coalitions by the number of groups: only groups with
            # rows are players (exogenous tuples are not)
            groups = pipeline.players
            args = (np.searchsorted(groups, pipeline.row_group), labels, len(groups), k, kind)
            compact, _ = values_over_parts(
                fork_part, train, val, gain, args, len(groups), executor=self.executor
            )
            values = np.zeros(n_vars)
            values[groups] = compact
        else:
            assert pipeline.kind == JOIN
            _check_tallies(n_classes, k - 1, kind, k)
            args = (pipeline.row_fact, pipeline.row_group, labels, n_vars, k, kind, self.max_nodes)
            values, quadrature = values_over_parts(
                join_part, train, val, gain, args, n_vars, executor=self.executor
            )
            info.update(quadrature)
        self.values_ = values
        self.pipeline_ = pipeline
        # Efficiency: the values add up to u(all) − u(∅); u(∅) is 0 unless rows are always
        # present (tests check the direct computation with :func:`proxy_predictions`).
        self.utility_all_ = float(np.sum(values)) + u_empty
        self.info_ = info
        return self

    def result(self) -> Result:
        """The fitted values as a :class:`Result`."""
        if not hasattr(self, "values_"):
            raise CfdbNotFittedError("KnnShapley is not fitted")
        return Result(self.values_, self.pipeline_, self.utility_all_, dict(self.info_))
