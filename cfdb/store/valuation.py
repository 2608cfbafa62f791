"""Reads and writes for data valuation: relations' keys, runs, provenance and data values.

The tables themselves are created by ``sql/schema/003_valuation.sql``. A base relation's
tuples are identified by their single-column integer primary key, else by ``rowid`` (then a
non-integer primary key is kept as text in ``DataValues.TupleKey``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from cfdb.errors import CfdbCatalogError
from cfdb.store.catalog import insert_arrow, next_id, quote
from cfdb.store.connection import Store

VALUATION_RUNS = "ValuationRuns"
PROVENANCE = "Provenance"
DATA_VALUES = "DataValues"

_INTEGER_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
}


@dataclass(frozen=True)
class RelationInfo:
    """What the catalog says about a name the training query reads.

    Attributes:
        name: canonical name (``table``, or ``schema.table`` outside ``main``).
        kind: ``table`` or ``view``.
        sql: a view's definition (``CREATE VIEW ... AS ...``).
        key: the single-column integer primary key, if any.
        text_key: a single-column non-integer primary key (kept as ``TupleKey``), if any.
        columns: the relation's column names.
    """

    name: str
    kind: str
    sql: str | None = None
    key: str | None = None
    text_key: str | None = None
    columns: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """The relation as a quoted SQL reference."""
        return ".".join(quote(p) for p in self.name.split("."))


def relation_info(store: Store, name: str) -> RelationInfo:
    """Look up a (possibly schema-qualified) table or view by name, case-insensitively.

    Raises:
        CfdbCatalogError: no such table or view.
    """
    parts = name.split(".")
    table, schema = parts[-1], (parts[-2] if len(parts) > 1 else None)
    where = "lower(table_name) = lower(?)"
    args: list[Any] = [table]
    if schema:
        where += " AND lower(schema_name) = lower(?)"
        args.append(schema)
    rows = store.execute(
        f"SELECT schema_name, table_name FROM duckdb_tables() WHERE {where} "
        "AND database_name IN (current_database(), 'temp') "
        "ORDER BY temporary DESC, schema_name = 'main' DESC",
        args,
    )
    if rows:
        schema_name, table_name = rows[0]
        canonical = table_name if schema_name == "main" else f"{schema_name}.{table_name}"
        columns = store.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = ? AND table_name = ? ORDER BY column_index",
            [schema_name, table_name],
        )
        types = {c.lower(): t for c, t in columns}
        pk = store.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE schema_name = ? AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [schema_name, table_name],
        )
        key = text_key = None
        if pk and len(pk[0][0]) == 1:
            column = pk[0][0][0]
            if types.get(column.lower(), "").upper() in _INTEGER_TYPES:
                key = column
            else:
                text_key = column
        return RelationInfo(
            canonical, "table", key=key, text_key=text_key, columns=tuple(c for c, _ in columns)
        )
    view_where = where.replace("table_name", "view_name")
    views = store.execute(
        f"SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal AND "
        f"{view_where} AND database_name IN (current_database(), 'temp') "
        "ORDER BY temporary DESC",
        args,
    )
    if views:
        schema_name, view_name, sql = views[0]
        canonical = view_name if schema_name == "main" else f"{schema_name}.{view_name}"
        return RelationInfo(canonical, "view", sql=sql)
    raise CfdbCatalogError(f"table {name!r} does not exist")


def key_columns(store: Store, names: list[str]) -> set[str]:
    """Lower-cased primary-key column names of the given base tables (views skipped)."""
    out: set[str] = set()
    for name in names:
        try:
            info = relation_info(store, name)
        except CfdbCatalogError:
            continue
        for column in (info.key, info.text_key):
            if column:
                out.add(column.lower())
    return out


def tuple_ids(store: Store, info: RelationInfo) -> tuple[np.ndarray, list[str] | None]:
    """Every tuple id of a base table, sorted, and the text keys when it has them."""
    ident = quote(info.key) if info.key else "rowid"
    if info.text_key:
        rows = store.arrow(
            f"SELECT rowid AS id, CAST({quote(info.text_key)} AS VARCHAR) AS k "
            f"FROM {info.ref} ORDER BY rowid"
        )
        ids = rows.column("id").to_numpy().astype(np.int64)
        return ids, rows.column("k").to_pylist()
    rows = store.arrow(f"SELECT {ident} AS id FROM {info.ref} ORDER BY 1")
    return rows.column("id").to_numpy().astype(np.int64), None


def next_run_id(store: Store) -> int:
    """One more than the largest ``RunId``."""
    return next_id(store, VALUATION_RUNS, "RunId")


def insert_run(store: Store, row: dict[str, Any]) -> None:
    """Insert a ``ValuationRuns`` row (``Params`` given as a Python value)."""
    values = dict(row)
    if not isinstance(values.get("Params"), str | type(None)):
        values["Params"] = json.dumps(values["Params"], default=_json_default)
    names = list(values)
    store.execute(
        f"INSERT INTO {VALUATION_RUNS} ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join('?' for _ in names)})",
        [values[n] for n in names],
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def insert_values(
    store: Store,
    run_id: int,
    method: str,
    relation: str,
    ids: np.ndarray,
    values: np.ndarray,
    keys: list[str] | None = None,
    std_errors: np.ndarray | None = None,
) -> int:
    """Append one ``DataValues`` row per tuple; returns the row count.

    ``std_errors``: the standard error of each estimated value (``None``: exact values, NULL).
    """
    n = len(ids)
    table = pa.table(
        {
            "RunId": pa.array(np.full(n, run_id, dtype=np.int64)),
            "Relation": pa.array([relation] * n, pa.string()),
            "TupleId": pa.array(np.asarray(ids, dtype=np.int64)),
            "Method": pa.array([method] * n, pa.string()),
            "Value": pa.array(np.asarray(values, dtype=np.float64)),
            "TupleKey": pa.array(keys if keys is not None else [None] * n, pa.string()),
            "StdError": pa.array(
                np.asarray(std_errors, dtype=np.float64) if std_errors is not None else [None] * n,
                pa.float64(),
            ),
        }
    )
    return insert_arrow(store, DATA_VALUES, table)


def insert_provenance(
    store: Store,
    run_id: int,
    rows: np.ndarray,
    monomials: np.ndarray,
    relations: list[str],
    codes: np.ndarray,
    ids: np.ndarray,
) -> int:
    """Append provenance factors ``(row, monomial, relation code, tuple id)``."""
    n = len(rows)
    names = pa.DictionaryArray.from_arrays(
        pa.array(np.asarray(codes, dtype=np.int32)), pa.array(relations, pa.string())
    )
    table = pa.table(
        {
            "RunId": pa.array(np.full(n, run_id, dtype=np.int64)),
            "RowId": pa.array(np.asarray(rows, dtype=np.int64)),
            "Monomial": pa.array(np.asarray(monomials, dtype=np.int32)),
            "Relation": names.cast(pa.string()),
            "TupleId": pa.array(np.asarray(ids, dtype=np.int64)),
        }
    )
    return insert_arrow(store, PROVENANCE, table)
