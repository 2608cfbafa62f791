"""Reads and writes of the grid tables (``sql/schema/002_grid.sql``).

Grids, their units, subsets (members, edits, pairs), slices, metrics, cells and scaling
fits. Bulk rows travel as pyarrow tables. The per-grid view (named after the grid) is created
here because its name is data: it only calls the ``grid_cells`` macro.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from cfdb.errors import CfdbCatalogError
from cfdb.store.catalog import insert_arrow, literal, quote
from cfdb.store.connection import Store

GRIDS = "Grids"
GRID_TABLES = (
    "GridCells",
    "SubsetPairs",
    "TrainSubsetEdits",
    "TrainSubsetMembers",
    "TrainSubsets",
    "EvalSlices",
    "GridMetrics",
    "GridUnits",
    "GridScalingFits",
    "UnitScalingLaws",  # individualized scaling laws (sql/schema/004_scaling_laws.sql)
)


def grid_row(store: Store, name: str) -> dict[str, Any] | None:
    """The ``Grids`` row called ``name`` (case-insensitive), JSON columns decoded."""
    rel = store.query("SELECT * FROM Grids WHERE lower(Name) = lower(?)", [name])
    rows = rel.fetchall()
    if not rows:
        return None
    row = dict(zip(rel.columns, rows[0], strict=True))
    for key in ("DesignArgs", "ModelParams", "Options"):
        row[key] = json.loads(row[key]) if row[key] else {}
    return row


def grid_names(store: Store, kind: str | None = None) -> list[str]:
    if kind is None:
        return [r[0] for r in store.execute("SELECT Name FROM Grids ORDER BY Name")]
    return [
        r[0] for r in store.execute("SELECT Name FROM Grids WHERE Kind = ? ORDER BY Name", [kind])
    ]


def insert_grid(store: Store, row: Mapping[str, Any]) -> None:
    values = dict(row)
    for key in ("DesignArgs", "ModelParams", "Options"):
        if key in values and not isinstance(values[key], str | type(None)):
            values[key] = json.dumps(values[key])
    names = list(values)
    store.execute(
        f"INSERT INTO Grids ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join('?' for _ in names)})",
        [values[n] for n in names],
    )


def create_view(store: Store, name: str) -> None:
    """The grid's view: ``SELECT * FROM name`` lists its cells (``grid_cells`` macro)."""
    store.execute(f"CREATE VIEW {quote(name)} AS SELECT * FROM grid_cells({literal(name)})")


def delete_grid(store: Store, name: str, *, view: bool = True) -> None:
    """Remove a grid, every row of it, and its view."""
    for table in GRID_TABLES:
        store.execute(f"DELETE FROM {table} WHERE Grid = ?", [name])
    store.execute("DELETE FROM Grids WHERE Name = ?", [name])
    if view:
        store.execute(f"DROP VIEW IF EXISTS {quote(name)}")


def insert_rows(store: Store, table: str, columns: Mapping[str, Any]) -> int:
    """Append column data (name -> list/array) to ``table``."""
    data = pa.table(dict(columns))
    if data.num_rows == 0:
        return 0
    return insert_arrow(store, table, data)


def next_subset_id(store: Store, grid: str) -> int:
    return int(
        store.execute(
            "SELECT coalesce(max(SubsetId), -1) + 1 FROM TrainSubsets WHERE Grid = ?", [grid]
        )[0][0]
    )


def next_pair_id(store: Store, grid: str) -> int:
    return int(
        store.execute(
            "SELECT coalesce(max(PairId), -1) + 1 FROM SubsetPairs WHERE Grid = ?", [grid]
        )[0][0]
    )


def units(store: Store, grid: str) -> tuple[list[str], list[int]]:
    """(UnitId, Rows) of a grid's units, by UnitIndex."""
    rows = store.execute(
        "SELECT UnitId, Rows FROM GridUnits WHERE Grid = ? ORDER BY UnitIndex", [grid]
    )
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def slices(store: Store, grid: str) -> list[dict[str, Any]]:
    rel = store.query(
        "SELECT SliceId, Name, SliceColumn, SliceValue, Predicate FROM EvalSlices "
        "WHERE Grid = ? ORDER BY SliceId",
        [grid],
    )
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def subsets(store: Store, grid: str, ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """``TrainSubsets`` rows of a grid (all, or ``ids``), by SubsetId."""
    where = "Grid = ?"
    params: list[Any] = [grid]
    if ids is not None:
        if not ids:
            return []
        where += f" AND SubsetId IN ({', '.join(str(int(i)) for i in ids)})"
    rel = store.query(f"SELECT * FROM TrainSubsets WHERE {where} ORDER BY SubsetId", params)
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def missing_subsets(store: Store, grid: str) -> list[int]:
    """Subsets without cells that the grid still needs (not only behind truncated pairs)."""
    rows = store.execute(
        """
        SELECT s.SubsetId FROM TrainSubsets s
        WHERE s.Grid = ?
          AND NOT EXISTS (SELECT 1 FROM GridCells c WHERE c.Grid = s.Grid AND c.SubsetId = s.SubsetId)
          AND (NOT EXISTS (SELECT 1 FROM SubsetPairs p WHERE p.Grid = s.Grid
                           AND (p.WithId = s.SubsetId OR p.WithoutId = s.SubsetId))
               OR EXISTS (SELECT 1 FROM SubsetPairs p WHERE p.Grid = s.Grid AND NOT p.Truncated
                          AND (p.WithId = s.SubsetId OR p.WithoutId = s.SubsetId)))
        ORDER BY s.SubsetId
        """,
        [grid],
    )
    return [int(r[0]) for r in rows]


def members(
    store: Store, grid: str, rows: Sequence[Mapping[str, Any]], n_units: int
) -> dict[int, np.ndarray]:
    """Unit indices of each subset in ``rows`` (``TrainSubsets`` dicts), resolving its
    representation (members, complement, permutation prefix)."""
    out: dict[int, np.ndarray] = {}
    ids = [int(r["SubsetId"]) for r in rows if r["Representation"] in ("members", "complement")]
    listed: dict[int, list[int]] = {i: [] for i in ids}
    if ids:
        data = store.arrow(
            f"SELECT SubsetId, UnitIndex FROM TrainSubsetMembers WHERE Grid = ? AND SubsetId IN "
            f"({', '.join(str(i) for i in ids)})",
            [grid],
        )
        for sid, unit in zip(
            data.column("SubsetId").to_pylist(), data.column("UnitIndex").to_pylist(), strict=True
        ):
            listed[int(sid)].append(int(unit))
    draws = sorted({int(r["Draw"]) for r in rows if r["Representation"] == "prefix"})
    orders = {}
    if draws:
        data = store.arrow(
            f"SELECT Draw, Position, UnitIndex FROM SubsetPairs WHERE Grid = ? AND Kind = 'unit' "
            f"AND Draw IN ({', '.join(str(d) for d in draws)}) ORDER BY Draw, Position",
            [grid],
        )
        for d in draws:
            orders[d] = []
        for d, _, unit in zip(
            *(data.column(c).to_pylist() for c in ("Draw", "Position", "UnitIndex")), strict=True
        ):
            orders[int(d)].append(int(unit))
    for r in rows:
        sid = int(r["SubsetId"])
        rep = r["Representation"]
        if rep == "members":
            out[sid] = np.sort(np.asarray(listed[sid], dtype=np.int64))
        elif rep == "complement":
            keep = np.ones(n_units, dtype=bool)
            keep[listed[sid]] = False
            out[sid] = np.flatnonzero(keep)
        else:
            out[sid] = np.sort(np.asarray(orders[int(r["Draw"])][: int(r["Size"])], dtype=np.int64))
    return out


def edits(store: Store, grid: str, subset_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(unit indices, weights) of a what-if row's edits (weights NaN for flips)."""
    data = store.arrow(
        "SELECT UnitIndex, Weight FROM TrainSubsetEdits WHERE Grid = ? AND SubsetId = ? "
        "ORDER BY UnitIndex",
        [grid, subset_id],
    )
    idx = np.asarray(data.column("UnitIndex").to_pylist(), dtype=np.int64)
    w = np.asarray(
        [np.nan if v is None else v for v in data.column("Weight").to_pylist()], dtype=float
    )
    return idx, w


def cell_values(
    store: Store, grid: str, subset_ids: Iterable[int], slice_id: int, metric: str
) -> dict[int, float | None]:
    ids = [int(i) for i in subset_ids]
    if not ids:
        return {}
    rows = store.execute(
        f"SELECT SubsetId, Value FROM GridCells WHERE Grid = ? AND SliceId = ? AND Metric = ? "
        f"AND SubsetId IN ({', '.join(str(i) for i in ids)})",
        [grid, slice_id, metric],
    )
    return {int(r[0]): r[1] for r in rows}


def truncate_after(store: Store, grid: str, draw_positions: Mapping[int, int]) -> None:
    """Mark the pairs of each draw after its truncation position as truncated (TMC)."""
    for draw, position in draw_positions.items():
        store.execute(
            "UPDATE SubsetPairs SET Truncated = TRUE WHERE Grid = ? AND Draw = ? AND Position > ? "
            "AND NOT Truncated",
            [grid, draw, position],
        )


def replace_scaling_fits(store: Store, grid: str, fits: Mapping[str, list[Any]]) -> None:
    store.execute("DELETE FROM GridScalingFits WHERE Grid = ?", [grid])
    insert_rows(store, "GridScalingFits", fits)


def cell_count(store: Store, grid: str) -> tuple[int, int]:
    """(trained subsets, subsets) of a grid."""
    row = store.execute(
        "SELECT (SELECT count(DISTINCT SubsetId) FROM GridCells WHERE Grid = ?), "
        "(SELECT count(*) FROM TrainSubsets WHERE Grid = ?)",
        [grid, grid],
    )[0]
    return int(row[0]), int(row[1])


def primary_key(store: Store, table: str, schema: str = "") -> list[str]:
    """The primary-key columns of a base table (empty if none or not a table)."""
    rows = store.execute(
        "SELECT constraint_column_names FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' "
        "AND lower(table_name) = lower(?) AND (? = '' OR lower(schema_name) = lower(?)) "
        "AND database_name = current_database()",
        [table, schema, schema],
    )
    return list(rows[0][0]) if rows else []


def require_grid(store: Store, name: str) -> dict[str, Any]:
    row = grid_row(store, name)
    if row is None:
        known = ", ".join(grid_names(store, "grid")) or "none"
        raise CfdbCatalogError(f"grid {name!r} does not exist (grids: {known})")
    return row
