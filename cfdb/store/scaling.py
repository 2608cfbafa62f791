"""Reads and writes of individualized scaling laws (``sql/schema/004_scaling_laws.sql``).

The marginal contributions a grid measured (through the ``marginal_contributions`` macro,
oriented so that positive helps), the ``UnitScalingLaws`` rows FIT SCALING LAWS writes, and
what PLOT SCALING LAWS draws (through the schema's macros).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from cfdb.store.catalog import insert_arrow
from cfdb.store.connection import Store

LAWS = "UnitScalingLaws"


def contributions(
    store: Store, grid: str, slice_name: str | None = None, metric: str | None = None
) -> pa.Table:
    """Every measured unit pair of ``grid``: UnitIndex, UnitId, SliceId, Slice, Metric, Size,
    Delta, with Delta in the metric's "better" direction (a loss decrease is positive)."""
    where, params = "", [grid, grid, grid]
    for column, value in (("Slice", slice_name), ("Metric", metric)):
        if value is not None:
            where += f" AND mc.{column} = ?"
            params.append(value)
    return store.arrow(
        f"""
        SELECT mc.UnitIndex, mc.UnitId, e.SliceId, mc.Slice, mc.Metric, mc.Size,
               CASE WHEN gm.HigherIsBetter THEN mc.Delta ELSE -mc.Delta END AS Delta
        FROM marginal_contributions(?) mc
        JOIN EvalSlices e ON e.Grid = ? AND e.Name = mc.Slice
        JOIN GridMetrics gm ON gm.Grid = ? AND gm.Metric = mc.Metric
        WHERE mc.Kind = 'unit' AND mc.Delta IS NOT NULL{where}
        ORDER BY e.SliceId, mc.Metric, mc.UnitIndex, mc.Size
        """,
        params,
    )


def replace_laws(
    store: Store,
    grid: str,
    methods: Sequence[str],
    slice_ids: Sequence[int],
    metrics: Sequence[str],
    rows: pa.Table,
) -> int:
    """Replace the laws of ``grid`` for ``methods`` × ``slice_ids`` × ``metrics`` by ``rows``."""
    for method in methods:
        for slice_id in slice_ids:
            for metric in metrics:
                store.execute(
                    f"DELETE FROM {LAWS} WHERE Grid = ? AND Method = ? AND SliceId = ? "
                    "AND Metric = ?",
                    [grid, method, slice_id, metric],
                )
    return insert_arrow(store, LAWS, rows) if rows.num_rows else 0


def laws(store: Store, grid: str, method: str | None, slice_name: str, metric: str) -> pa.Table:
    """The ``unit_scaling_laws`` rows of one slice and metric."""
    return store.arrow(
        "SELECT * FROM unit_scaling_laws(?, fit_method := ?) WHERE Slice = ? AND Metric = ? "
        "ORDER BY UnitIndex",
        [grid, method, slice_name, metric],
    )


def check(store: Store, grid: str, method: str | None, slice_name: str, metric: str) -> pa.Table:
    """The ``unit_scaling_check`` rows (measured against fitted) of one slice and metric."""
    return store.arrow(
        "SELECT * FROM unit_scaling_check(?, fit_method := ?) WHERE Slice = ? AND Metric = ? "
        "ORDER BY UnitId, Size",
        [grid, method, slice_name, metric],
    )


def r2(store: Store, grid: str, method: str | None, slice_name: str, metric: str) -> pa.Table:
    """The ``unit_scaling_r2`` rows of one slice and metric (overall last)."""
    return store.arrow(
        "SELECT * FROM unit_scaling_r2(?, fit_method := ?) WHERE Slice = ? AND Metric = ? "
        "ORDER BY Size NULLS LAST",
        [grid, method, slice_name, metric],
    )
