"""CFQL phase 7, record: the batch's rows and statistics (CFDB paper, section 4).

Writes the implication edges, the CFs and links an execution collected, one ``Conditions`` row per request (its
class, status and error; ``pending`` when explained), the ``CFBatches`` row and each query's
``CFQueries`` statistics, and returns them as typed :class:`BatchResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from cfdb.engine.cfql_execute import Answer, Execution
from cfdb.engine.cfql_optimize import edge_blocks
from cfdb.engine.cfql_plan import LogicalPlan, Query, Request
from cfdb.store import cfql as store_cfql

if TYPE_CHECKING:
    from cfdb.engine.session import Session


# -- record ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    """A request's row of ``Conditions``: its class and how it was served."""

    request: Request
    class_id: int | None
    answer: Answer


@dataclass(frozen=True)
class QueryResult:
    """A query of the batch with its records and its ``CFQueries`` statistics."""

    query: Query
    records: tuple[RequestRecord, ...]
    stats: Mapping[str, Any]


@dataclass(frozen=True)
class BatchResult:
    """The batch's id, its queries and its ``CFBatches`` row."""

    batch_id: int
    queries: tuple[QueryResult, ...]
    summary: Mapping[str, Any]


def records_of(
    queries: Sequence[Query], logical: LogicalPlan, execution: Execution | None
) -> list[tuple[Query, list[RequestRecord]]]:
    """Every request's record, infeasible ones included (``pending`` when not executed)."""
    class_of = logical.class_of()
    out = []
    for q in queries:
        recs = []
        for r in q.requests:
            if not r.feasible:
                answer = Answer("infeasible", r.error)
            elif execution is not None:
                answer = execution.answers[r.key]
            else:
                answer = Answer("pending", r.error)
            recs.append(RequestRecord(r, class_of.get(r.key), answer))
        out.append((q, recs))
    return out


def _conditions_table(records: Sequence[RequestRecord], batch_id: int) -> pa.Table:
    return pa.table(
        {
            "QueryId": pa.array([x.request.query_id for x in records], pa.int64()),
            "PredictionId": pa.array([x.request.prediction_id for x in records], pa.int64()),
            "InstanceId": pa.array([x.request.instance_id for x in records], pa.int64()),
            "Condition": pa.array([x.request.condition for x in records], pa.string()),
            "Hash": pa.array([x.request.hash for x in records], pa.string()),
            "Status": pa.array([x.answer.status for x in records], pa.string()),
            "Error": pa.array([x.answer.error for x in records], pa.string()),
            "BatchId": pa.array([batch_id] * len(records), pa.int64()),
            "ClassId": pa.array([x.class_id for x in records], pa.int64()),
        }
    )


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def record(
    session: Session,
    batch_id: int,
    queries: Sequence[Query],
    logical: LogicalPlan,
    execution: Execution | None,
    header: Mapping[str, Any],
    started: float,
    clock: Callable[[], float],
) -> BatchResult:
    """Phase 7: write the CFs and links, ``Conditions``, ``CFBatches`` and each query's
    statistics; ``header`` holds the batch's settings (mode, construction, threshold)."""
    store = session.store
    blocks = edge_blocks(logical)
    if blocks:
        store_cfql.insert_edges(store, batch_id, blocks)
    if execution is not None and (execution.cf_rows or execution.links):
        store_cfql.insert_cfs(
            store,
            pa.Table.from_pylist(execution.cf_rows) if execution.cf_rows else None,
            pa.Table.from_pylist([vars(x) for x in execution.links]) if execution.links else None,
        )
    per_query = records_of(queries, logical, execution)
    records = [x for _, recs in per_query for x in recs]
    store_cfql.insert_conditions(store, _conditions_table(records, batch_id))
    plan_stats = logical.stats()
    calls = sum(1 for x in records if x.answer.called)
    reused = sum(1 for x in records if x.answer.status == "reused")
    seconds = execution.seconds if execution is not None else 0.0
    summary = {
        "BatchId": batch_id,
        "Mode": header["Mode"],
        "Queries": len(queries),
        **plan_stats,
        "Construction": header["Construction"],
        "ReuseThreshold": header["ReuseThreshold"],
        "GeneratorCalls": calls,
        "Reused": reused,
        "GenerationSeconds": seconds,
        "CallsSaved": reused,
        "MeanDistance": _mean([d for x in records for d in x.answer.distances]),
        "Seconds": clock() - started,
    }
    store_cfql.insert_batch(store, summary)
    results = []
    for q, recs in per_query:
        status = [x.answer.status for x in recs]
        stats = {
            "Predictions": len(recs),
            "ModelIds": sorted({x.request.model_id for x in recs}),
            "GeneratorCalls": sum(1 for x in recs if x.answer.called),
            "Generated": sum(x.answer.generated for x in recs),
            "Reused": status.count("reused"),
            "Infeasible": status.count("infeasible"),
            "Failed": status.count("failed"),
            "MeanDistance": _mean([d for x in recs for d in x.answer.distances]),
            "SolverCalls": plan_stats["SolverCalls"],
            "GraphSeconds": plan_stats["GraphSeconds"],
            "GenerationSeconds": seconds,
            "Seconds": clock() - started,
        }
        store_cfql.finish_query(store, q.query_id, stats)
        results.append(QueryResult(q, tuple(recs), stats))
    return BatchResult(batch_id, tuple(results), summary)
