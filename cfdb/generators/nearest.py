"""The ``nearest`` generator: the closest valid instances of a pool (CFDB paper, section 3.2
step 3, with a database-backed generator in the spirit of nearest-unlike-neighbour
explanations).

A CF is taken from a pool of real rows (by default the database's ``Instances``, or the rows of
a user-given pool query): a pool row qualifies when the model labels it as the target (any
label other than the instance's when ``task.target`` is None) or, for a regressor, its output
moves from the instance's by ``task.min_change`` in ``task.direction``; it satisfies the
task's condition, and it keeps the instance's values of the immutable features. The ``n`` qualifying
rows closest to the instance by ``task.distance`` are returned, closest first, ties broken by
pool order. Duplicate pool rows count once; rows with a NULL feature are skipped.

Values the condition forces (top-level conjuncts ``f = c``, e.g. ``C.Amount = I.Amount``) are
pinned on the pool rows before the search, as the sampling generators do, and the pinned rows
are labelled again: otherwise only the rare pool rows that already hold the forced value could
qualify.

:meth:`Nearest.fit` de-duplicates the pool and labels it (or computes a regressor's outputs)
with one vectorized call, so
:meth:`Nearest.generate` is a vectorized filter plus a partial sort. The condition is checked
with :func:`~cfdb.ctable.condition.evaluate`, which agrees with DuckDB evaluating the stored
condition text. The generator has no parameters and is deterministic (the seed is unused).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfdb.ctable.condition import evaluate
from cfdb.errors import CfdbDataError
from cfdb.generators.base import (
    GENERATORS,
    GenerationTask,
    Generator,
    is_regression,
    model_outputs,
    output_scores,
    take,
    target_mask,
)
from cfdb.generators.distance import distance
from cfdb.generators.sampling import (
    empty_columns,
    forced_values,
    instance_row,
    n_rows,
    pin,
    raw_columns,
    resolve_params,
    unique_index,
)
from cfdb.types import Columns, FeatureSpec


@GENERATORS.decorator("nearest")
class Nearest(Generator):
    """The closest pool rows that are valid CFs.

    ``fit`` needs ``pool``: feature columns of candidate rows (extra columns are ignored).
    """

    name = "nearest"
    #: Whether the engine must pass a pool of instances to ``fit``.
    uses_pool = True
    supports_regression = True
    #: Parameters and their defaults (none).
    defaults: dict[str, object] = {}

    def _fit(self) -> None:
        resolve_params(self.name, self.defaults, self.params)
        if self.pool_ is None:
            raise CfdbDataError(f"generator {self.name!r} needs a pool of instances to search")
        rows = raw_columns(self.features_, _complete(self.features_, self.pool_))
        rows = take(rows, unique_index(rows, self.features_))
        self.rows_ = rows
        self.n_ = n_rows(rows)
        outputs = model_outputs(self.model_, rows)
        # Labels as a fixed-width str array compare fast; a regressor's outputs are float64.
        self.outputs_ = outputs if is_regression(self.model_) else outputs.astype(str)
        self.scores_: np.ndarray | None = None

    def generate(self, task: GenerationTask) -> Columns:
        """The ``task.n`` closest valid pool rows, closest first."""
        self.check_fitted()
        resolve_params(self.name, self.defaults, task.params)
        x = instance_row(self.features_, task)
        rows, outputs = self.rows_, self.outputs_
        forced = forced_values(task.condition, self.features_)
        if forced and task.n > 0:
            rows, outputs = self._pinned(x, forced)
        ok = target_mask(task, outputs)
        for f in self.features_:
            if not f.mutable and ok.any():
                ok &= rows[f.name] == x[f.name]
        idx = np.flatnonzero(ok)
        if len(idx) and task.n > 0:
            idx = idx[evaluate(task.condition, take(rows, idx), len(idx))]
        if len(idx) and task.n > 0 and task.score is not None:
            # A bound on the output's score filters the pool (scored once per generator;
            # pinned rows are scored afresh).
            if rows is self.rows_:
                if self.scores_ is None:
                    self.scores_ = output_scores(self.model_, self.rows_)
                scores = self.scores_
            else:
                scores = output_scores(self.model_, rows)
            idx = idx[task.score.mask(scores[idx])]
        if len(idx) == 0 or task.n <= 0:
            return empty_columns(self.features_)
        d = distance(task.distance, x, take(rows, idx), self.features_)
        if len(idx) > task.n:
            # Keep every row tied with the n-th smallest distance, then order exactly.
            kth = np.partition(d, task.n - 1)[task.n - 1]
            near = d <= kth
            idx, d = idx[near], d[near]
        order = np.lexsort((idx, d))[: task.n]
        return take(rows, idx[order])

    def _pinned(
        self, x: dict[str, object], forced: dict[str, object]
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The pool rows that keep the immutable features, with the forced values set,
        de-duplicated and labelled again (one vectorized model call)."""
        keep = np.ones(self.n_, dtype=bool)
        for f in self.features_:
            if not f.mutable:
                keep &= self.rows_[f.name] == x[f.name]
        rows = pin(take(self.rows_, np.flatnonzero(keep)), forced)
        rows = take(rows, unique_index(rows, self.features_))
        if n_rows(rows) == 0:
            return rows, self.outputs_[:0]
        outputs = model_outputs(self.model_, rows)
        return rows, outputs if is_regression(self.model_) else outputs.astype(str)


def _complete(features: list[FeatureSpec], pool: Columns) -> dict[str, np.ndarray]:
    """The pool without rows that have a NULL (None/NaN) feature: no model can label them."""
    lower = {k.lower(): k for k in pool}
    cols = {}
    for f in features:
        key = f.name if f.name in pool else lower.get(f.name.lower())
        if key is None:
            raise CfdbDataError(f"the pool lacks feature {f.name!r}")
        cols[f.name] = np.asarray(pool[key])
    n = n_rows(cols)
    keep = np.ones(n, dtype=bool)
    for values in cols.values():
        if values.dtype.kind in "fc":
            keep &= ~np.isnan(values)
        elif values.dtype == object:
            keep &= ~pd.isna(values)
    return cols if keep.all() else {k: v[keep] for k, v in cols.items()}
