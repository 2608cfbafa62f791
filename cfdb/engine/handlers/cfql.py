"""FOREACH, EXPLAIN FOREACH and batches: CFQL statements (CFDB paper, sections 3–4).

A lone ``FOREACH`` is evaluated as a batch of one (:mod:`cfdb.engine.cfql_batch`) and returns
Q_CF's result over the filled tables; ``EXPLAIN FOREACH`` returns one row per (query,
prediction) with its condition and status. ``BEGIN BATCH [WITH (...)]`` opens a batch: the
following ``FOREACH`` statements (in one script or over several REPL inputs) are queued, and
``END BATCH`` optimizes and runs them together, returning one summary row per query;
``EXPLAIN BEGIN BATCH`` makes ``END BATCH`` plan without generating and return the plan's
summary. ``EXPLAIN PLAN FOREACH`` and ``EXPLAIN PLAN BEGIN BATCH`` return the plan as a tree
(one row ``explain_key, explain_value`` as DuckDB's EXPLAIN, :mod:`cfdb.engine.cfql_explain`),
with the estimated generator calls. Only FOREACH statements are allowed inside a batch.

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
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from cfdb.engine.cfql_batch import BATCH_OPTIONS, BatchPlan, run_batch
from cfdb.engine.cfql_explain import render
from cfdb.engine.handlers import handles
from cfdb.errors import CfdbSyntaxError
from cfdb.exec import EXEC_OPTIONS, located_exec_options
from cfdb.lang.cfql import BeginBatch, EndBatch, Foreach
from cfdb.lang.parse import Statement

if TYPE_CHECKING:
    from cfdb.engine.session import Session


@dataclass
class OpenBatch:
    """The FOREACH statements queued since ``BEGIN BATCH``."""

    options: dict[str, Any]
    explain: bool
    plan: bool = False
    items: list[tuple[Foreach, Statement]] = field(default_factory=list)

    def accepts(self, statement: Statement) -> bool:
        return isinstance(statement.node, Foreach | EndBatch)


@handles(Foreach)
def foreach(session: Session, node: Foreach, stmt: Statement) -> Any:
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
    plan, result = run_batch(session, [(node, stmt)], options, explain, bool(node.args.get("plan")))
    if node.args.get("plan"):
        return _plan_table(plan)
    (query,) = result.queries
    if explain:
        records = [x.request for x in query.records]
        return pa.table(
            {
                "QueryId": pa.array([query.query.query_id] * len(records), pa.int64()),
                "PredictionId": pa.array([r.prediction_id for r in records], pa.int64()),
                "InstanceId": pa.array([r.instance_id for r in records], pa.int64()),
                "Condition": pa.array([r.condition for r in records], pa.string()),
                "Status": pa.array([x.answer.status for x in query.records], pa.string()),
            }
        )
    # Read the result inside the statement's transaction: an error found while reading it
    # (e.g. a cast in Q_CF) rolls the whole statement back.
    return session.store.arrow(query.query.analysis.result_sql(query.query.query_id))


@handles(BeginBatch)
def begin_batch(session: Session, node: BeginBatch, stmt: Statement) -> pa.Table:
    if getattr(session, "open_block", None) is not None:
        raise CfdbSyntaxError("a batch is already open (END BATCH closes it)")
    options = {k.lower(): v for k, v in node.params().items()}
    known = BATCH_OPTIONS | set(EXEC_OPTIONS)  # the executor: for the whole batch's generation
    for key in options:
        if key not in known:
            raise CfdbSyntaxError(
                f"unknown batch option {key!r}; known: {', '.join(sorted(known))}"
            ).located(stmt.script, *node.param(key).span)
    located_exec_options(stmt.script, lambda name: node.param(name).span, options)
    session.open_block = OpenBatch(
        options, bool(node.args.get("explain")), bool(node.args.get("plan"))
    )
    return pa.table({"Batch": ["open"], "Explain": [bool(node.args.get("explain"))]})


@handles(EndBatch)
def end_batch(session: Session, node: EndBatch, stmt: Statement) -> pa.Table:
    block = getattr(session, "open_block", None)
    if not isinstance(block, OpenBatch):
        raise CfdbSyntaxError("END BATCH without BEGIN BATCH")
    session.open_block = None
    if not block.items:
        raise CfdbSyntaxError("the batch holds no FOREACH statement")
    plan, result = run_batch(session, block.items, block.options, block.explain, block.plan)
    if block.plan:
        return _plan_table(plan)
    s = result.summary
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
    queries = result.queries

    def column(name: str) -> list[Any]:
        return [q.stats[name] for q in queries]

    return pa.table(
        {
            "BatchId": pa.array([s["BatchId"]] * len(queries), pa.int64()),
            "QueryId": pa.array([q.query.query_id for q in queries], pa.int64()),
            "Position": pa.array([q.query.position for q in queries], pa.int32()),
            "Predictions": pa.array(column("Predictions"), pa.int64()),
            "Infeasible": pa.array(column("Infeasible"), pa.int64()),
            "GeneratorCalls": pa.array(column("GeneratorCalls"), pa.int64()),
            "Reused": pa.array(column("Reused"), pa.int64()),
            "Failed": pa.array(column("Failed"), pa.int64()),
            "MeanDistance": pa.array(column("MeanDistance"), pa.float64()),
        }
    )


def _plan_table(plan: BatchPlan) -> pa.Table:
    """``EXPLAIN PLAN``'s result, shaped as DuckDB's EXPLAIN."""
    return pa.table({"explain_key": ["physical_plan"], "explain_value": [render(plan)]})
