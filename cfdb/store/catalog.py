"""Reads and writes of cfdb's own tables: features, the feature-space tables, models, ids.

Table names are constants here. The fixed schema lives in ``sql/schema``; the two tables whose
columns follow the feature space (``Instances`` and ``CFs``) are created here from ``Features``
because their columns are data, not code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cfdb.errors import CfdbCatalogError, CfdbDataError, CfdbSchemaError
from cfdb.store.connection import Store
from cfdb.types import FeatureSpec

INSTANCES = "Instances"
FEATURES = "Features"
MODELS = "Models"
PREDICTIONS = "Predictions"
CFS = "CFs"
PREDICTION_CFS = "Prediction_CFs"

#: Columns of ``Instances`` that are never features.
RESERVED_COLUMNS = ("InstanceId", "GroundTruth", "split")

#: Feature type -> the DuckDB type used when cfdb creates a column for it.
FEATURE_SQL_TYPES = {
    "numeric": "DOUBLE",
    "integer": "BIGINT",
    "categorical": "VARCHAR",
    "boolean": "BOOLEAN",
}

_INTEGER_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
}
_NUMERIC_TYPES = {"FLOAT", "DOUBLE", "REAL"}


def quote(name: str) -> str:
    """A DuckDB identifier, always quoted."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A SQL literal for a Python value (strings quoted, None as NULL)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def feature_type_of(duckdb_type: str) -> str | None:
    """The feature type a DuckDB column type maps to; ``None`` when it cannot be a feature."""
    t = duckdb_type.upper()
    if t in _INTEGER_TYPES:
        return "integer"
    if t in _NUMERIC_TYPES or t.startswith("DECIMAL"):
        return "numeric"
    if t == "BOOLEAN":
        return "boolean"
    if t == "VARCHAR" or t.startswith("ENUM"):
        return "categorical"
    return None


def is_reserved(column: str) -> bool:
    return column.lower() in {c.lower() for c in RESERVED_COLUMNS}


# -- features ----------------------------------------------------------------------------------
def key_instances(store: Store) -> bool:
    """Declare ``Instances.InstanceId`` the primary key, if the table has none and its ids are
    unique and not NULL (a hand-built table may break that; it is then left alone).

    With the key, every statement sees ``InstanceId`` as the rows' identity, never a feature,
    and ``VALUATE`` over ``Instances`` writes values keyed by ``InstanceId``.
    """
    if not store.table_exists(INSTANCES):
        return False
    has_key = store.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'Instances' "
        "AND schema_name = current_schema() AND constraint_type = 'PRIMARY KEY'"
    )[0][0]
    if has_key:
        return True
    if not any(c.lower() == "instanceid" for c, _ in store.columns(INSTANCES)):
        return False
    bad = store.execute(
        "SELECT count(*) - count(DISTINCT InstanceId) + count(*) - count(InstanceId) FROM Instances"
    )[0][0]
    if bad:
        return False
    store.execute("ALTER TABLE Instances ADD PRIMARY KEY (InstanceId)")
    return True


def read_features(store: Store) -> list[FeatureSpec]:
    """The ``Features`` rows, in position order."""
    rows = store.execute(
        "SELECT Name, Type, Domain, Min, Max, MAD, Mutable FROM Features ORDER BY Position, Name"
    )
    return [
        FeatureSpec(
            name=r[0],
            type=r[1],
            domain=tuple(r[2]) if r[2] is not None else None,
            min=r[3],
            max=r[4],
            mad=r[5],
            mutable=bool(r[6]),
        )
        for r in rows
    ]


def require_instances(store: Store) -> list[tuple[str, str]]:
    if not store.table_exists(INSTANCES):
        raise CfdbCatalogError(
            "there is no Instances table",
            hint="load data with LOAD INSTANCES FROM ... or LOAD DATASET adult",
        )
    cols = store.columns(INSTANCES)
    if not any(c.lower() == "instanceid" for c, _ in cols):
        raise CfdbSchemaError("the Instances table has no InstanceId column")
    return cols


def derive_features(
    store: Store,
    *,
    types: Mapping[str, str] | None = None,
    immutable: Iterable[str] = (),
    only: Sequence[str] | None = None,
) -> list[FeatureSpec]:
    """Fill ``Features`` from ``Instances`` (the CFDB paper's feature space, section 2.2).

    Columns of ``Instances`` without a ``Features`` row get one (only when ``Features`` is
    empty: once the user has a feature list, cfdb does not grow it). For every row, statistics
    still NULL are computed: the active domain of categorical/boolean features (distinct
    non-NULL values, as strings, sorted), and min, max and MAD (×1.4826, 0 → 1) of numeric ones.
    Values already present are kept: they may be the user's overrides.

    Args:
        types: feature type overrides by column name.
        immutable: features to mark not mutable.
        only: restrict new rows to these columns (in this order).
    """
    types = {k.lower(): v for k, v in (types or {}).items()}
    immutable_set = {c.lower() for c in immutable}
    cols = require_instances(store)
    by_lower = {c.lower(): (c, t) for c, t in cols}
    existing = {f.name.lower() for f in read_features(store)}
    if not existing:
        wanted = (
            [by_lower[c.lower()] for c in only]
            if only
            else [(c, t) for c, t in cols if not is_reserved(c)]
        )
        position = 0
        for column, duck_type in wanted:
            ftype = types.get(column.lower()) or feature_type_of(duck_type)
            if ftype is None:
                continue  # e.g. a DATE or LIST column: kept in Instances, not a feature
            store.execute(
                "INSERT INTO Features (Name, Position, Type, Mutable) VALUES (?, ?, ?, ?)",
                [column, position, ftype, column.lower() not in immutable_set],
            )
            position += 1
    _fill_statistics(store, by_lower)
    return read_features(store)


def _fill_statistics(store: Store, by_lower: Mapping[str, tuple[str, str]]) -> None:
    for f in read_features(store):
        if f.name.lower() not in by_lower:
            continue  # a feature the user declared without data yet
        col = quote(by_lower[f.name.lower()][0])
        if f.is_categorical and f.domain is None:
            store.execute(
                f"UPDATE Features SET Domain = (SELECT list_sort(list_distinct("
                f"list(CAST({col} AS VARCHAR)))) FROM Instances) WHERE Name = ?",
                [f.name],
            )
        elif not f.is_categorical and None in (f.min, f.max, f.mad):
            x = f"CAST({col} AS DOUBLE)"
            store.execute(
                f"UPDATE Features SET "
                f"Min = coalesce(Min, (SELECT min({x}) FROM Instances)), "
                f"Max = coalesce(Max, (SELECT max({x}) FROM Instances)), "
                f"MAD = coalesce(MAD, (SELECT CASE WHEN coalesce(mad({x}), 0) = 0 THEN 1.0 "
                f"ELSE mad({x}) * 1.4826 END FROM Instances)) WHERE Name = ?",
                [f.name],
            )


def ensure_cfs_table(store: Store, features: Sequence[FeatureSpec]) -> None:
    """Create ``CFs`` with one column per feature (types as in ``Instances``) if absent.

    An existing empty ``CFs`` whose columns no longer match the features is recreated; a
    non-empty one is left alone (its rows would be lost).
    """
    inst_types = (
        {c.lower(): t for c, t in store.columns(INSTANCES)} if store.table_exists(INSTANCES) else {}
    )
    wanted = [
        (f.name, inst_types.get(f.name.lower()) or FEATURE_SQL_TYPES[f.type]) for f in features
    ]
    if store.table_exists(CFS):
        have = {c.lower() for c, _ in store.columns(CFS)}
        if all(name.lower() in have for name, _ in wanted):
            if "score" not in have:  # made by hand, or by a cfdb before schema v5
                store.execute("ALTER TABLE CFs ADD COLUMN Score DOUBLE")
            return
        if store.execute("SELECT count(*) FROM CFs")[0][0]:
            return
        store.execute("DROP TABLE CFs")
    cols = ", ".join(f"{quote(n)} {t}" for n, t in wanted)
    store.execute(
        f"CREATE TABLE CFs (CfId BIGINT PRIMARY KEY, {cols}, ModelId INTEGER, "
        f"Label VARCHAR, Generator VARCHAR, Score DOUBLE)"
    )
    create_counterfactuals_view(store, [f.name for f in features])


COUNTERFACTUALS = "Counterfactuals"


def create_counterfactuals_view(store: Store, features: Sequence[str] | None = None) -> None:
    """(Re)create the ``Counterfactuals`` view: one row per (prediction, CF) with the
    prediction, its instance's and the CF's feature values side by side, and what changed.

    A plain SQL view over ``Prediction_CFs``, ``Predictions``, ``Models``, ``CFs`` and
    ``Instances`` (no UDF), so stock DuckDB and BI tools read it. Its columns name the features,
    so it is rewritten whenever ``CFs`` is created.
    """
    if features is None:
        features = [f.name for f in read_features(store)]
    if not features or not store.table_exists(CFS) or not store.table_exists(INSTANCES):
        return
    have = {c.lower() for c, _ in store.columns(CFS)} & {
        c.lower() for c, _ in store.columns(INSTANCES)
    }
    features = [f for f in features if f.lower() in have]
    original = ", ".join(f"{quote(f)} := i.{quote(f)}" for f in features)
    cf = ", ".join(f"{quote(f)} := c.{quote(f)}" for f in features)
    changes = ", ".join(
        f"CASE WHEN c.{quote(f)} IS DISTINCT FROM i.{quote(f)} THEN "
        f"{{'Feature': {literal(f)}, 'Original': CAST(i.{quote(f)} AS VARCHAR), "
        f"'Counterfactual': CAST(c.{quote(f)} AS VARCHAR)}} END"
        for f in features
    )
    store.execute(
        f"""CREATE OR REPLACE VIEW {COUNTERFACTUALS} AS
SELECT pc.PredictionId, p.ModelId, m.Name AS Model, p.InstanceId, p.Label, p.Score,
       pc.CfId, c.Label AS CfLabel, pc.QueryId, pc.Distance, pc.Reused, c.Generator,
       list_transform(ch, lambda cfdb_change: cfdb_change.Feature) AS Changed, ch AS Changes,
       struct_pack({original}) AS Instance, struct_pack({cf}) AS CF
FROM (SELECT pc.*, list_filter([{changes}], lambda cfdb_change: cfdb_change IS NOT NULL) AS ch
      FROM Prediction_CFs pc
      JOIN Predictions p ON p.PredictionId = pc.PredictionId
      JOIN CFs c ON c.CfId = pc.CfId
      JOIN Instances i ON i.InstanceId = p.InstanceId) pc
JOIN Predictions p ON p.PredictionId = pc.PredictionId
JOIN Models m ON m.ModelId = p.ModelId
JOIN CFs c ON c.CfId = pc.CfId
JOIN Instances i ON i.InstanceId = p.InstanceId"""
    )


# -- ids, models, predictions ---------------------------------------------------------------
def next_id(store: Store, table: str, column: str) -> int:
    """One more than the largest id in ``table.column`` (ids entered by hand are respected)."""
    return int(
        store.execute(f"SELECT coalesce(max({quote(column)}), 0) + 1 FROM {quote(table)}")[0][0]
    )


def model_row(store: Store, name: str) -> dict[str, Any] | None:
    """The ``Models`` row called ``name`` (case-insensitive), as a dict."""
    rel = store.query("SELECT * FROM Models WHERE lower(Name) = lower(?)", [name])
    rows = rel.fetchall()
    if not rows:
        return None
    return dict(zip(rel.columns, rows[0], strict=True))


def model_names(store: Store) -> list[str]:
    return [r[0] for r in store.execute("SELECT Name FROM Models ORDER BY ModelId")]


def insert_model(store: Store, row: Mapping[str, Any]) -> int:
    """Insert a ``Models`` row (JSON columns given as Python values); returns its id."""
    model_id = next_id(store, MODELS, "ModelId")
    values = dict(row)
    values["ModelId"] = model_id
    for key in ("Params", "Featurizer", "Meta", "Metrics"):
        if key in values and not isinstance(values[key], str | type(None)):
            values[key] = json.dumps(values[key])
    names = list(values)
    store.execute(
        f"INSERT INTO Models ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join('?' for _ in names)})",
        [values[n] for n in names],
    )
    return model_id


def delete_model(store: Store, model_id: int) -> None:
    """Remove a model, its predictions, and the links of those predictions to CFs."""
    store.execute(
        "DELETE FROM Prediction_CFs WHERE PredictionId IN "
        "(SELECT PredictionId FROM Predictions WHERE ModelId = ?)",
        [model_id],
    )
    store.execute("DELETE FROM Predictions WHERE ModelId = ?", [model_id])
    store.execute("DELETE FROM Models WHERE ModelId = ?", [model_id])


def insert_arrow(store: Store, table: str, data: Any) -> int:
    """Append a pyarrow table to ``table`` by column name; returns the row count."""
    name = "__cfdb_insert"
    store.register(name, data)
    try:
        store.execute(f"INSERT INTO {quote(table)} BY NAME SELECT * FROM {name}")
    finally:
        store.unregister(name)
    return int(data.num_rows)


def check_columns(available: Iterable[str], needed: Iterable[str], what: str) -> None:
    """Raise naming the first of ``needed`` missing from ``available`` (case-insensitive)."""
    have = {c.lower() for c in available}
    for column in needed:
        if column.lower() not in have:
            raise CfdbDataError(f"{what} needs column {column!r}, which the query does not return")
