"""FOREACH, EXPLAIN FOREACH and batches: CFQL statements (CFDB paper, sections 3–4).

A lone ``FOREACH`` is evaluated as a batch of one (:mod:`cfdb.engine.cfql_batch`) and returns
Q_CF's result over the filled tables; ``EXPLAIN FOREACH`` returns one row per (query,
prediction) with its condition and status. ``BEGIN BATCH [WITH (...)]`` opens a batch: the
following ``FOREACH`` statements (in one script or over several REPL inputs) are queued, and
``END BATCH`` optimizes and runs them together, returning one summary row per query;
``EXPLAIN BEGIN BATCH`` makes ``END BATCH`` plan without generating and return the plan's
summary. Only FOREACH statements are allowed inside a batch.

Per-query options (``WITH``): ``n`` (CFs per prediction, default 1), ``distance``
(``tabular``, ``l0``, ``l1``), ``time_limit`` (seconds per prediction, default 10), ``seed``,
``n_jobs``, ``executor`` and ``address`` (where generation runs, also as batch options:
:mod:`cfdb.engine.cfql_distributed`), ``target`` (for multi-class models), ``pool`` (for
``nearest``), ``min_change`` and ``direction`` (for regression models: the output must move
by at least ``min_change``, ``up``, ``down`` or ``any``); a lone FOREACH also takes the batch
options; any other option goes to the generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from cfdb.engine.cfql_batch import BATCH_OPTIONS, run_batch
from cfdb.engine.handlers import handles
from cfdb.errors import CfdbDataError, CfdbSyntaxError
from cfdb.exec import EXEC_OPTIONS, exec_options
from cfdb.lang.cfql import BeginBatch, EndBatch, Foreach
from cfdb.lang.parse import Statement


@dataclass
class OpenBatch:
    """The FOREACH statements queued since ``BEGIN BATCH``."""

    options: dict[str, Any]
    explain: bool
    items: list[tuple[Foreach, Statement]] = field(default_factory=list)

    def accepts(self, statement: Statement) -> bool:
        return isinstance(statement.node, Foreach | EndBatch)


@handles(Foreach)
def foreach(session: Any, node: Foreach, stmt: Statement) -> Any:
    block = getattr(session, "open_block", None)
    if isinstance(block, OpenBatch):
        if node.args.get("explain"):
            raise CfdbSyntaxError(
                "EXPLAIN FOREACH inside a batch: use EXPLAIN BEGIN BATCH to explain a batch"
            )
        block.items.append((node, stmt))
        return pa.table({"Batch": ["queued"], "Position": [len(block.items)]})
    explain = bool(node.args.get("explain"))
    params = {k.lower(): v for k, v in node.params().items()}
    options = {k: v for k, v in params.items() if k in BATCH_OPTIONS}
    result = run_batch(session, [(node, stmt)], options, explain)
    (query,) = result["queries"]
    if explain:
        records = query["compiled"]["records"]
        return pa.table(
            {
                "QueryId": pa.array([query["QueryId"]] * len(records), pa.int64()),
                "PredictionId": pa.array([r["PredictionId"] for r in records], pa.int64()),
                "InstanceId": pa.array([r["InstanceId"] for r in records], pa.int64()),
                "Condition": pa.array([r["Condition"] for r in records], pa.string()),
                "Status": pa.array([r["Status"] for r in records], pa.string()),
            }
        )
    # Read the result inside the statement's transaction: an error found while reading it
    # (e.g. a cast in Q_CF) rolls the whole statement back.
    return session.store.arrow(query["compiled"]["plan"].result_sql(query["QueryId"]))


@handles(BeginBatch)
def begin_batch(session: Any, node: BeginBatch, stmt: Statement) -> pa.Table:
    if getattr(session, "open_block", None) is not None:
        raise CfdbSyntaxError("a batch is already open (END BATCH closes it)")
    options = {k.lower(): v for k, v in node.params().items()}
    known = BATCH_OPTIONS | set(EXEC_OPTIONS)  # the executor: for the whole batch's generation
    for key in options:
        if key not in known:
            raise CfdbSyntaxError(
                f"unknown batch option {key!r}; known: {', '.join(sorted(known))}"
            ).located(stmt.script, *node.param(key).span)
    try:
        exec_options(options)
    except CfdbDataError as err:
        raise err.located(stmt.script, *node.param(err.option).span) from None
    session.open_block = OpenBatch(options, bool(node.args.get("explain")))
    return pa.table({"Batch": ["open"], "Explain": [bool(node.args.get("explain"))]})


@handles(EndBatch)
def end_batch(session: Any, node: EndBatch, stmt: Statement) -> pa.Table:
    block = getattr(session, "open_block", None)
    if not isinstance(block, OpenBatch):
        raise CfdbSyntaxError("END BATCH without BEGIN BATCH")
    session.open_block = None
    if not block.items:
        raise CfdbSyntaxError("the batch holds no FOREACH statement")
    result = run_batch(session, block.items, block.options, block.explain)
    s = result["summary"]
    if block.explain:
        rows = [
            (
                "atoms" if s["Construction"] == "atoms" else "naive",
                s["SolverCalls"],
                s["GraphSeconds"],
            )
        ]
        if s["NaiveSolverCalls"] is not None:
            rows.append(("naive", s["NaiveSolverCalls"], s["NaiveSeconds"]))
        return pa.table(
            {
                "BatchId": [s["BatchId"]] * len(rows),
                "Construction": [r[0] for r in rows],
                "Nodes": [s["Nodes"]] * len(rows),
                "UniqueConditions": [s["UniqueConditions"]] * len(rows),
                "Classes": [s["Classes"]] * len(rows),
                "Edges": [s["Edges"]] * len(rows),
                "SolverCalls": [r[1] for r in rows],
                "Seconds": [r[2] for r in rows],
            }
        )
    queries = result["queries"]
    return pa.table(
        {
            "BatchId": pa.array([s["BatchId"]] * len(queries), pa.int64()),
            "QueryId": pa.array([q["QueryId"] for q in queries], pa.int64()),
            "Position": pa.array([q["Position"] for q in queries], pa.int32()),
            "Predictions": pa.array([q["stats"]["Predictions"] for q in queries], pa.int64()),
            "Infeasible": pa.array([q["stats"]["Infeasible"] for q in queries], pa.int64()),
            "GeneratorCalls": pa.array([q["stats"]["GeneratorCalls"] for q in queries], pa.int64()),
            "Reused": pa.array([q["stats"]["Reused"] for q in queries], pa.int64()),
            "Failed": pa.array([q["stats"]["Failed"] for q in queries], pa.int64()),
            "MeanDistance": pa.array([q["stats"]["MeanDistance"] for q in queries], pa.float64()),
        }
    )
