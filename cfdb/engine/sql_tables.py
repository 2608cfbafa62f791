"""Table-valued cfdb functions: ``counterfactuals``, ``whatif_remove``, ``knn_shapley``.

DuckDB's Python client cannot define table functions, so each is a TEMP table macro that
unnests the ``LIST<STRUCT>`` returned by one UDF call. The UDF runs the statement that the
function stands for — ``PREDICT`` then ``FOREACH ... GENERATE``, ``WHATIF REMOVE``,
``VALUATE ... USING knn_shapley`` — in a session over a cursor of the calling connection, so
the results go through the same code paths into the same tables (``CFs``,
``Prediction_CFs``, ``Conditions``; the what-if's hidden grid; ``ValuationRuns`` and
``DataValues``) and are read back from them. What is stored is reused as by the statements:
CFs from the persistent pool, what-if cells already trained, predictions already made.

A counterfactual's feature columns follow the feature space, so ``counterfactuals``' result
type is built from ``CFs`` when the functions are registered and rebuilt when ``Features``
changes (:meth:`cfdb.engine.functions.SqlFunctions.refresh`).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from cfdb.errors import CfdbDataError
from cfdb.store import catalog
from cfdb.store.catalog import literal, quote
from cfdb.store.connection import Store

#: The fixed columns of each function's result (name, SQL type).
CF_COLUMNS = [
    ("PredictionId", "BIGINT"),
    ("InstanceId", "BIGINT"),
    ("CfId", "BIGINT"),
    ("QueryId", "BIGINT"),
    ("Distance", "DOUBLE"),
    ("Reused", "BOOLEAN"),
    ("Label", "VARCHAR"),
]
WHATIF_COLUMNS = [
    ("Slice", "VARCHAR"),
    ("Metric", "VARCHAR"),
    ("Baseline", "DOUBLE"),
    ("Counterfactual", "DOUBLE"),
    ("Difference", "DOUBLE"),
    ("Status", "VARCHAR"),
    ("Error", "VARCHAR"),
    ("Grid", "VARCHAR"),
    ("SubsetId", "BIGINT"),
    ("Reused", "BOOLEAN"),
    ("RowsChanged", "BIGINT"),
]
VALUES_COLUMNS = [
    ("RunId", "BIGINT"),
    ("Relation", "VARCHAR"),
    ("TupleId", "BIGINT"),
    ("TupleKey", "VARCHAR"),
    ("Method", "VARCHAR"),
    ("Value", "DOUBLE"),
    ("Benefit", "DOUBLE"),
    ("Rank", "BIGINT"),
]


def list_type(columns: list[tuple[str, str]]) -> str:
    """``STRUCT(a T, ...)[]``: a UDF result holding a table."""
    return "STRUCT(" + ", ".join(f"{quote(n)} {t}" for n, t in columns) + ")[]"


def cf_columns(store: Store) -> list[tuple[str, str]]:
    """The columns of ``counterfactuals``: the fixed ones, then one per feature (CFs types)."""
    if not store.table_exists(catalog.CFS):
        return list(CF_COLUMNS)
    features = {f.name.lower() for f in catalog.read_features(store)}
    fixed = {n.lower() for n, _ in CF_COLUMNS}
    extra = [(c, t) for c, t in store.columns(catalog.CFS) if c.lower() in features - fixed]
    return [*CF_COLUMNS, *extra]


def macros() -> list[str]:
    """The TEMP table macros over the UDFs."""
    return [
        "CREATE OR REPLACE TEMP MACRO counterfactuals(model_name, instances, n := 1, "
        "generator := 'growing_spheres', distance := 'tabular', time_limit := 10) AS TABLE "
        "SELECT unnest(__cfdb_counterfactuals(model_name, instances, n, generator, distance, "
        "time_limit), recursive := true)",
        "CREATE OR REPLACE TEMP MACRO whatif_remove(removed, model_kind, train, evaluate, "
        "metric_name := 'accuracy') AS TABLE "
        "SELECT unnest(__cfdb_whatif_remove(removed, model_kind, train, evaluate, metric_name), "
        "recursive := true)",
        "CREATE OR REPLACE TEMP MACRO knn_shapley(train, evaluate, k := 5, "
        "utility_name := 'accuracy', label := 'GroundTruth') AS TABLE "
        "SELECT unnest(__cfdb_knn_shapley(train, evaluate, k, utility_name, label), "
        "recursive := true)",
    ]


def _one(values: Any) -> Any:
    # Table macros call these UDFs once, on constant arguments.
    return values[0].as_py() if len(values) else None


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CfdbDataError(f"{what} must be a query as text, e.g. 'SELECT * FROM Instances'")
    return value


def instance_ids(store: Store, instances: Any) -> list[int]:
    """InstanceIds from what ``counterfactuals`` accepts: a row (STRUCT with InstanceId), a
    list of rows, ids, or a query as text."""
    value = instances.as_py() if hasattr(instances, "as_py") else instances
    if isinstance(value, str):
        rel = store.query(value)
        if "instanceid" not in {c.lower() for c in rel.columns}:
            raise CfdbDataError("counterfactuals: the instance query returns no InstanceId")
        return [int(r[0]) for r in store.execute(f"SELECT InstanceId FROM ({value})")]
    items = value if isinstance(value, list) else [value]
    ids: list[int] = []
    for item in items:
        if isinstance(item, dict):
            key = next((k for k in item if k.lower() == "instanceid"), None)
            if key is None or item[key] is None:
                raise CfdbDataError(
                    "counterfactuals: a row needs its InstanceId (rows of Instances, e.g. "
                    "(SELECT I FROM Instances I WHERE InstanceId = 7))"
                )
            ids.append(int(item[key]))
        elif isinstance(item, int) and not isinstance(item, bool):
            ids.append(item)
        elif item is not None:
            raise CfdbDataError(
                "counterfactuals takes instances as a row, a list of rows, InstanceIds or a "
                f"query as text, not {type(item).__name__}"
            )
    return sorted(set(ids))


def run_counterfactuals(session: Any, args: tuple[Any, ...], columns: list[str]) -> list[dict]:
    """``PREDICT`` and ``FOREACH ... GENERATE`` for the instances; the CFs linked to them."""
    model, instances, n, generator, distance, time_limit = args
    store = session.store
    name = _one(model)
    ids = instance_ids(store, instances[0])
    if not ids:
        return []
    id_list = ", ".join(str(i) for i in ids)
    session.execute(
        f"PREDICT {quote(str(name))} ON (SELECT * FROM Instances WHERE InstanceId IN ({id_list}))"
    )
    model_id = catalog.model_row(store, str(name))["ModelId"]  # type: ignore[index]
    options = {
        "n": int(_one(n) or 1),
        "distance": _one(distance),
        "time_limit": _one(time_limit),
    }
    with_ = ", ".join(f"{k} = {literal(v)}" for k, v in options.items() if v is not None)
    session.execute(
        f"FOREACH pred IN (SELECT PredictionId FROM Predictions WHERE ModelId = {int(model_id)} "
        f"AND InstanceId IN ({id_list})) GENERATE (SELECT C.* FROM CFs C) "
        f"USING {_ident(_one(generator))} WITH ({with_})"
    )
    query_id = store.execute("SELECT max(QueryId) FROM CFQueries")[0][0]
    features = ", ".join(f"C.{quote(c)}" for c in columns[len(CF_COLUMNS) :])
    table = store.arrow(
        "SELECT PC.PredictionId, P.InstanceId, PC.CfId, PC.QueryId, PC.Distance, PC.Reused, "
        f"C.Label{', ' + features if features else ''} FROM Prediction_CFs PC "
        "JOIN Predictions P USING (PredictionId) JOIN CFs C USING (CfId) "
        "WHERE PC.QueryId = ? ORDER BY P.InstanceId, PC.Distance, PC.CfId",
        [query_id],
    )
    return _records(table, columns)


def run_whatif_remove(session: Any, args: tuple[Any, ...]) -> list[dict]:
    """``WHATIF REMOVE (removed) MODEL kind TRAIN ON (train) EVALUATE ON (evaluate) METRIC m``."""
    removed, kind, train, evaluate, metric = (_one(a) for a in args)
    results = session.execute(
        f"WHATIF REMOVE ({_text(removed, 'whatif_remove: the removed rows')}) "
        f"MODEL {_ident(kind)} TRAIN ON ({_text(train, 'whatif_remove: train')}) "
        f"EVALUATE ON ({_text(evaluate, 'whatif_remove: evaluate')}) METRIC {_ident(metric)}"
    )
    table = results[-1].relation.to_arrow_table()
    return _records(table, [n for n, _ in WHATIF_COLUMNS])


def run_knn_shapley(session: Any, args: tuple[Any, ...]) -> list[dict]:
    """``VALUATE (train) EVALUATE ON (evaluate) USING knn_shapley WITH (k, label) UTILITY u``;
    the run's values as ``data_values(run)`` gives them."""
    train, evaluate, k, utility, label = (_one(a) for a in args)
    results = session.execute(
        f"VALUATE ({_text(train, 'knn_shapley: train')}) "
        f"EVALUATE ON ({_text(evaluate, 'knn_shapley: evaluate')}) USING knn_shapley "
        f"WITH (k = {int(k)}, label = {literal(label)}) UTILITY {_ident(utility)}"
    )
    run_id = int(results[-1].relation.fetchall()[0][0])
    table = session.store.arrow(
        "SELECT ? AS RunId, * FROM data_values(?) ORDER BY Relation, Rank, TupleId",
        [run_id, run_id],
    )
    return _records(table, [n for n, _ in VALUES_COLUMNS])


def _ident(value: Any) -> str:
    text = str(value or "")
    if not text.replace("_", "").isalnum():
        raise CfdbDataError(f"not a name: {text!r}")
    return text


def _records(table: pa.Table, columns: list[str]) -> list[dict]:
    by_lower = {c.lower(): c for c in table.column_names}
    data = {c: table.column(by_lower[c.lower()]).to_pylist() for c in columns}
    return [{c: data[c][i] for c in columns} for i in range(table.num_rows)]
