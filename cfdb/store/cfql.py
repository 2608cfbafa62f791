"""Reads and writes for CFQL: selected predictions, the base query, CFQueries, Conditions,
CFs and Prediction_CFs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from cfdb.store.catalog import insert_arrow, next_id, quote
from cfdb.store.connection import Store

SELECTED = "__cfdb_selected"


def select_predictions(store: Store, q_pred: str, script: str, offset: int) -> list[str]:
    """Run Q_pred once into a temp table; returns its column names (checked by the caller)."""
    rel = store.run_script_text(q_pred, script, offset)
    columns = list(rel.columns)
    if len(columns) == 1:
        store.execute(
            f"CREATE OR REPLACE TEMP TABLE {SELECTED} AS SELECT DISTINCT "
            f"CAST({quote(columns[0])} AS BIGINT) AS PredictionId FROM ({q_pred}) "
            f"WHERE {quote(columns[0])} IS NOT NULL"
        )
    return columns


def unknown_prediction(store: Store) -> int | None:
    rows = store.execute(
        f"SELECT PredictionId FROM {SELECTED} WHERE PredictionId NOT IN "
        "(SELECT PredictionId FROM Predictions) LIMIT 1"
    )
    return int(rows[0][0]) if rows else None


def selected_predictions(store: Store) -> pa.Table:
    """PredictionId, ModelId, InstanceId, Label of every selected prediction."""
    return store.arrow(
        f"SELECT P.PredictionId, P.ModelId, P.InstanceId, P.Label FROM Predictions P "
        f"JOIN {SELECTED} S USING (PredictionId) ORDER BY P.PredictionId"
    )


def base_query(
    from_items: Sequence[str], join_where: Sequence[str], slots: Sequence[str], pred_name: str
) -> str:
    """The one query that computes every slot for every (prediction, row) of Q_CF."""
    cols = ", ".join(
        [f"{quote(pred_name)}.PredictionId AS __pid"]
        + [f"({s}) AS __s{i}" for i, s in enumerate(slots)]
    )
    sources = [
        f"(SELECT * FROM Predictions WHERE PredictionId IN (SELECT PredictionId FROM "
        f"{SELECTED})) AS {quote(pred_name)}",
        *from_items,
    ]
    where = f" WHERE {' AND '.join(f'({w})' for w in join_where)}" if join_where else ""
    return f"SELECT {cols} FROM {', '.join(sources)}{where}"


def instances(store: Store, ids: Sequence[int], features: Sequence[str]) -> pa.Table:
    """The feature values of the given instances."""
    cols = ", ".join(quote(f) for f in features)
    store.register("__cfdb_ids", pa.table({"id": pa.array(list(ids), pa.int64())}))
    try:
        return store.arrow(
            f"SELECT InstanceId, {cols} FROM Instances WHERE InstanceId IN "
            "(SELECT id FROM __cfdb_ids)"
        )
    finally:
        store.unregister("__cfdb_ids")


def insert_query(
    store: Store,
    *,
    text: str,
    generator: str | None,
    params: Mapping[str, Any],
    mode: str,
    batch_id: int | None = None,
    position: int | None = None,
) -> int:
    query_id = next_id(store, "CFQueries", "QueryId")
    store.execute(
        "INSERT INTO CFQueries (QueryId, BatchId, Position, Text, Mode, Generator, Params) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [query_id, batch_id, position, text, mode, generator, json.dumps(params, default=str)],
    )
    return query_id


def insert_batch(store: Store, summary: Mapping[str, Any]) -> None:
    names = list(summary)
    store.execute(
        f"INSERT INTO CFBatches ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join('?' for _ in names)})",
        [summary[n] for n in names],
    )


def insert_edges(store: Store, batch_id: int, edges: Sequence[Sequence[Any]]) -> None:
    """Implication edges as blocks of four equal-length id arrays (from query, from
    prediction, to query, to prediction)."""
    columns = [
        np.concatenate([np.asarray(block[k], np.int64) for block in edges]) for k in range(4)
    ]
    insert_arrow(
        store,
        "ImplicationEdges",
        pa.table(
            {
                "BatchId": pa.array(np.full(len(columns[0]), batch_id, np.int64)),
                "FromQueryId": pa.array(columns[0]),
                "FromPredictionId": pa.array(columns[1]),
                "ToQueryId": pa.array(columns[2]),
                "ToPredictionId": pa.array(columns[3]),
            }
        ),
    )


def earlier_links(store: Store, prediction_ids: Sequence[int], features: Sequence[str]) -> pa.Table:
    """CFs linked to these predictions by earlier queries, with the condition hash they
    served and the generator that made them."""
    cols = ", ".join(f"CF.{quote(f)}" for f in features)
    store.register("__cfdb_pids", pa.table({"id": pa.array(list(prediction_ids), pa.int64())}))
    try:
        return store.arrow(
            f"SELECT PC.PredictionId, C.Hash, Q.Generator, PC.CfId, PC.Distance, "
            f"CF.Label AS Label, {cols} FROM Prediction_CFs PC "
            "JOIN Conditions C ON C.QueryId = PC.QueryId AND C.PredictionId = PC.PredictionId "
            "JOIN CFQueries Q ON Q.QueryId = PC.QueryId JOIN CFs CF ON CF.CfId = PC.CfId "
            "WHERE PC.PredictionId IN (SELECT id FROM __cfdb_pids)"
        )
    finally:
        store.unregister("__cfdb_pids")


def stored_cfs(
    store: Store,
    model_id: int,
    original: Any,
    target: str | None,
    condition: str,
    features: Sequence[str],
) -> pa.Table:
    """Stored CFs of ``model_id`` with the target label (or any label but ``original``) that
    satisfy ``condition`` (a stored condition text)."""
    cols = ", ".join(quote(f) for f in features)
    label = "Label = ?" if target is not None else "Label <> ?"
    return store.arrow(
        f"SELECT CfId, Label, {cols} FROM CFs WHERE ModelId = ? AND {label} AND ({condition})",
        [model_id, target if target is not None else str(original)],
    )


def finish_query(store: Store, query_id: int, stats: Mapping[str, Any]) -> None:
    names = list(stats)
    store.execute(
        f"UPDATE CFQueries SET {', '.join(f'{quote(n)} = ?' for n in names)} WHERE QueryId = ?",
        [*(stats[n] for n in names), query_id],
    )


def insert_conditions(store: Store, table: pa.Table) -> None:
    insert_arrow(store, "Conditions", table)


def insert_cfs(store: Store, cfs: pa.Table | None, links: pa.Table | None) -> None:
    if cfs is not None:
        insert_arrow(store, "CFs", cfs)
    if links is not None:
        insert_arrow(store, "Prediction_CFs", links)
