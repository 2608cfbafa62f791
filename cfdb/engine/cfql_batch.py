"""CFQL evaluation, one batch at a time (CFDB paper, sections 3.2 and 4).

A lone ``FOREACH`` is a batch of one; ``BEGIN BATCH; FOREACH …; …; END BATCH;`` optimizes
several together. :func:`run_batch` runs the phases of a query planner, each a function over
typed, immutable plan objects:

compile → dedupe → graph → condense → order → execute → record

1. compile (:func:`~cfdb.engine.cfql_compile.compile_batch`): Q_pred runs once; one base query
   computes every constant for every selected prediction; the template is instantiated per
   row and the rows of a prediction OR-ed into one normalized condition; z3 checks it over
   the active domains with the instance's immutable features held (``infeasible``
   otherwise). Each (query, prediction) is a :class:`~cfdb.engine.cfql_plan.Request`;
2. dedupe (:mod:`cfdb.engine.cfql_optimize`, as phases 3–5): feasible requests are grouped by model, original label and target (CFs are only
   interchangeable within a group; for a regression model, by model, ``direction`` and
   ``min_change``: the target is a change of the output, section 4.4, and every reused CF is
   verified against the member's own original output), identical conditions merged;
3. graph and 4. condense: the implication graph (``naive`` or ``atoms``) and its equivalence
   classes (:mod:`cfdb.ctable.graph`), the :class:`~cfdb.engine.cfql_plan.LogicalPlan`;
   ``Conditions`` gets batch and class ids, ``ImplicationEdges`` the edges, ``CFBatches`` the
   plan's statistics;
5. order: the :class:`~cfdb.engine.cfql_plan.PhysicalPlan`, classes in topological order,
   each to GENERATE, REUSE CFs of stronger classes, or read the persistent POOL;
6. execute (unless explained, :mod:`cfdb.engine.cfql_execute`): Algorithm 2 of
   :mod:`cfdb.generators.reuse`: a member reuses a pool CF within ``reuse_threshold`` of its
   instance, else calls the generator. The pool holds the class's own CFs, those of stronger
   classes, and — the persistent pool — CFs stored by earlier queries for the same model and
   label that satisfy the condition (checked in SQL with its stored text). A prediction
   whose identical condition was already served by the same generator in an earlier query
   reuses that CF at no cost, whatever the threshold. With ``reuse_threshold = 0`` (the
   default) nothing else is reused, and generation runs in parallel over predictions
   (``n_jobs``);
7. record (:mod:`cfdb.engine.cfql_record`): CFs, links, conditions and statistics are
   written.

``EXPLAIN PLAN`` renders the plans as a tree (:mod:`cfdb.engine.cfql_explain`).

Batch options (``BEGIN BATCH WITH (...)``, or a lone FOREACH's WITH): ``reuse_threshold``,
``max_pool_checks``, ``construction`` (``atoms`` default, ``naive``, or ``both`` to compare
them in EXPLAIN), ``persistent_pool`` (default true). Per-query options are in
:mod:`cfdb.engine.handlers.cfql`; for predictions of regression models (``Models.Task =
'regression'``) two more: ``min_change`` (required, > 0: a CF must move the output by at
least that much from the prediction's ``Score``) and ``direction`` (``up``, ``down`` or
``any``, the default). A regression CF's ``CFs.Label`` holds its output as text.

Bounds on ``C.Score`` in Q_CF (the model's output on the CF, the paper's "result" attribute of
section 4.4) become each request's :class:`~cfdb.generators.base.ScoreBound`: shown at the end
of its condition text, part of its hash and of its group, and checked on every CF. A request
whose generator *proves* that no CF exists is ``infeasible``, not ``failed``; the generator's
per-CF proof of optimality is stored in ``Prediction_CFs.Optimal`` (NULL for heuristics and
reuse).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cfdb.engine import cfql_distributed as distributed
from cfdb.engine.cfql_compile import compile_batch, score_bounds
from cfdb.engine.cfql_execute import execute
from cfdb.engine.cfql_optimize import dedupe, order, plan_logical
from cfdb.engine.cfql_plan import BATCH_OPTIONS, CONSTRUCTIONS, LogicalPlan, PhysicalPlan, Query
from cfdb.engine.cfql_record import BatchResult, record
from cfdb.errors import CfdbSyntaxError
from cfdb.lang.cfql import Foreach
from cfdb.lang.parse import Statement
from cfdb.store import catalog

if TYPE_CHECKING:
    from cfdb.engine.session import Session

__all__ = ["BATCH_OPTIONS", "BatchPlan", "plan_batch", "run_batch", "score_bounds"]


@dataclass(frozen=True)
class BatchPlan:
    """A planned batch: its compiled queries, logical plan and (when built) physical plan."""

    batch_id: int
    queries: tuple[Query, ...]
    options: Mapping[str, Any]
    logical: LogicalPlan
    physical: PhysicalPlan | None


def plan_batch(
    session: Session,
    items: Sequence[tuple[Foreach, Statement]],
    options: Mapping[str, Any],
    explain: bool,
    physical: bool,
) -> BatchPlan:
    """Phases 1–5; the physical plan (which reads earlier answers and persistent pools) only
    when ``physical``. Writes only the queries' ``CFQueries`` rows (their ids)."""
    store = session.store
    construction = str(options.get("construction", "atoms")).lower()
    if construction not in CONSTRUCTIONS:
        raise CfdbSyntaxError(f"construction must be atoms, naive or both, not {construction!r}")
    batch_id = catalog.next_id(store, "CFBatches", "BatchId")
    queries = compile_batch(session, items, batch_id, explain)
    options = {**options, **{k: v for k, v in queries[0].params.items() if k in BATCH_OPTIONS}}
    features = queries[0].features
    groups = dedupe(session, queries)
    logical = plan_logical(session, groups, features, construction)
    plan = order(session, queries, logical, features, options) if physical else None
    return BatchPlan(batch_id, queries, options, logical, plan)


def run_batch(
    session: Session,
    items: Sequence[tuple[Foreach, Statement]],
    options: Mapping[str, Any],
    explain: bool,
    explain_plan: bool = False,
) -> tuple[BatchPlan, BatchResult]:
    """Compile, plan and (unless ``explain``) execute a batch of FOREACH statements, and
    record it. ``explain_plan`` builds the physical plan without executing it."""
    started = time.perf_counter()
    plan = plan_batch(session, items, options, explain, physical=not explain or explain_plan)
    execution = None
    if not explain:
        assert plan.physical is not None
        gen_started = time.perf_counter()
        where = distributed.where([q.params for q in plan.queries], plan.options)
        execution = execute(session, plan.queries, plan.physical, plan.queries[0].features, where)
        execution.seconds = time.perf_counter() - gen_started
    construction = str(plan.options.get("construction", "atoms")).lower()
    header = {
        "Mode": "explain" if explain else "run",
        "Construction": "naive" if construction == "naive" else "atoms",
        "ReuseThreshold": float(plan.options.get("reuse_threshold", 0) or 0),
    }
    result = record(
        session,
        plan.batch_id,
        plan.queries,
        plan.logical,
        execution,
        header,
        started,
        time.perf_counter,
    )
    return plan, result
