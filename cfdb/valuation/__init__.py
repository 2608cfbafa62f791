"""Data valuation: exact KNN-Shapley over provenance (DataScope) and a TMC-Shapley baseline.

This layer is pure (numpy/scipy): featurized rows, provenance and a gain matrix in, values
out; it never opens a database.

* :mod:`cfdb.valuation.utilities` — additive utilities as gain matrices, KNN tally utilities.
* :mod:`cfdb.valuation.structure` — provenance variables and canonical pipeline classes.
* :mod:`cfdb.valuation.neighbors` — BLAS distances and packed-key sorting.
* :mod:`cfdb.valuation.knn_map`, :mod:`~cfdb.valuation.knn_fork`,
  :mod:`~cfdb.valuation.knn_join` — the exact algorithms per pipeline class.
* :mod:`cfdb.valuation.knn_shapley` — :class:`KnnShapley`, the method behind
  ``VALUATE ... USING knn_shapley``.
* :mod:`cfdb.valuation.knn_sampled` — :class:`KnnShapleySampled`, Monte Carlo estimates with
  standard errors for any conjunctive provenance (``USING knn_shapley_sampled``).
* :mod:`cfdb.valuation.tmc` — truncated Monte-Carlo Shapley over any utility function.
"""

from __future__ import annotations

from cfdb.registry import Registry
from cfdb.valuation.knn_sampled import KnnShapleySampled
from cfdb.valuation.knn_shapley import KnnShapley, Problem, Result, proxy_predictions
from cfdb.valuation.structure import Lineage, Pipeline, classify
from cfdb.valuation.utilities import (
    KNN_UTILITIES,
    UTILITIES,
    Gain,
    UtilitySpec,
    encode_labels,
    positive_class,
)

#: Valuation methods by name (``VALUATE ... USING name``).
VALUATIONS: Registry[type] = Registry("valuation method", "cfdb.valuations")
VALUATIONS.register("knn_shapley", KnnShapley)
VALUATIONS.register("knn_shapley_sampled", KnnShapleySampled)

__all__ = [
    "KNN_UTILITIES",
    "UTILITIES",
    "VALUATIONS",
    "Gain",
    "KnnShapley",
    "KnnShapleySampled",
    "Lineage",
    "Pipeline",
    "Problem",
    "Result",
    "UtilitySpec",
    "classify",
    "encode_labels",
    "positive_class",
    "proxy_predictions",
]
