"""CFQL batch planning: typed plan objects and the planning phases (CFDB paper, sections 3.2,
4.1 and 4.3).

A batch is planned like a database query, one pure-ish function per phase:

1. :func:`compile_batch` — each ``FOREACH`` becomes a :class:`Query` whose :class:`Request`
   objects (one per selected prediction) hold the prediction's normalized condition, its
   text and hash, and whether z3 finds it feasible with the instance's immutable features
   held (:func:`compile_query`: Q_pred runs once, one base query computes every constant);
2. :func:`dedupe` — feasible requests get their target (the other label, ``target``, or for
   a regressor ``min_change`` and ``direction``, section 4.4) and are grouped by model,
   original label, target and bound on ``C.Score`` (CFs are interchangeable only within a
   group); identical conditions (same hash) are merged: a :class:`Group` holds its members
   and its distinct conditions;
3. :func:`graph` — the implication graph over a group's distinct conditions
   (:mod:`cfdb.ctable.graph`, ``atoms`` or ``naive``; ``both`` checks they agree);
4. :func:`condense` — strongly connected components are the equivalence classes
   (:class:`PlanClass`), the condensation a DAG; a :class:`LogicalPlan` holds every group's
   classes and edges;
5. :func:`order` — the :class:`PhysicalPlan`: classes in topological order (strongest
   first), each a :class:`ClassStep` that says how its members are served (``GENERATE``,
   ``REUSE`` CFs pushed from stronger classes, or read the persistent ``POOL``), and which
   requests an earlier query already answered (memo). Its :class:`CallEstimate` bounds the
   generator calls.

Execution and recording are in :mod:`cfdb.engine.cfql_execute`; the orchestration in
:mod:`cfdb.engine.cfql_batch`; EXPLAIN's tree in :mod:`cfdb.engine.cfql_explain`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from cfdb.ctable.condition import Cond, Domains, condition_hash, to_sql
from cfdb.ctable.graph import build as build_graph
from cfdb.ctable.graph import condense as condense_graph
from cfdb.ctable.instantiate import conditions as instantiate_conditions
from cfdb.ctable.solve import Solver
from cfdb.engine.handlers.models import model_features
from cfdb.errors import CfdbDataError, CfdbError, CfdbSyntaxError, CfdbUnsupportedError
from cfdb.exec import exec_options
from cfdb.generators import GENERATORS
from cfdb.generators.base import DIRECTIONS, ScoreBound
from cfdb.generators.reuse import PoolCF
from cfdb.lang.cfql import Analyzer, CfqlPlan, Foreach
from cfdb.lang.parse import Statement
from cfdb.store import catalog
from cfdb.store import cfql as store_cfql
from cfdb.types import FeatureSpec

if TYPE_CHECKING:
    from cfdb.engine.session import Session
    from cfdb.generators.base import Generator

DEFAULT_GENERATOR = "growing_spheres"
#: Weight of the diversity term when a query asks for n > 1 CFs (DiCE's default weight).
DEFAULT_DIVERSITY = 1.0
QUERY_OPTIONS = frozenset(
    {
        "n",
        "distance",
        "time_limit",
        "seed",
        "n_jobs",
        "target",
        "pool",
        "min_change",
        "direction",
        "executor",
        "address",
        "diversity",
    }
)
BATCH_OPTIONS = {"reuse_threshold", "max_pool_checks", "construction", "persistent_pool"}
CONSTRUCTIONS = ("atoms", "naive", "both")
#: Base-query rows allowed per prediction: more means Q_CF joins a relation not tied to pred.
MAX_ROWS_PER_PREDICTION = 1000


# -- plan objects ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One (query, prediction): the condition its CFs must satisfy and what they must reach.

    ``feasible`` is z3's verdict on the condition (with the instance's immutable features
    held, and a bound on ``C.Score`` that some score meets); ``error`` says why not when the
    bound is the reason. The target fields are set by :func:`dedupe` for feasible requests:
    ``target`` for a classifier (None: any other label), ``min_change``, ``direction`` and
    ``original_value`` (the prediction's Score) for a regressor.
    """

    query_id: int
    prediction_id: int
    model_id: int
    instance_id: int
    label: Any
    cond: Cond
    condition: str
    hash: str
    feasible: bool
    error: str | None
    score: ScoreBound | None
    instance: Mapping[str, Any] = field(repr=False)
    regression: bool = False
    target: str | None = None
    min_change: float | None = None
    direction: str = "any"
    original_value: float | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.query_id, self.prediction_id)

    def bound_key(self) -> tuple[Any, ...] | None:
        """CFs are interchangeable only under the same bound on their score."""
        return self.score.key() if self.score is not None else None


@dataclass(frozen=True)
class Query:
    """One FOREACH of the batch, compiled: its statement, options, generator and requests."""

    query_id: int
    position: int
    node: Foreach
    stmt: Statement
    params: Mapping[str, Any]
    generator: type[Generator]
    analysis: CfqlPlan
    features: tuple[FeatureSpec, ...]
    requests: tuple[Request, ...]
    solver_calls: int

    def option(self, name: str, default: Any) -> Any:
        return self.params.get(name, default)


@dataclass(frozen=True)
class Group:
    """Requests whose CFs are interchangeable (same model, original label or regression
    change, target and score bound), and their distinct conditions (first request per hash)."""

    key: tuple[Any, ...]
    regression: bool
    members: tuple[Request, ...]
    distinct: tuple[Request, ...]

    @property
    def model_id(self) -> int:
        return int(self.key[0])


@dataclass(frozen=True)
class GroupGraph:
    """The implication graph over a group's distinct conditions (indices into ``distinct``)."""

    edge_from: np.ndarray
    edge_to: np.ndarray
    edge_count: int
    solver_calls: int
    seconds: float
    naive_solver_calls: int | None = None
    naive_seconds: float | None = None


@dataclass(frozen=True)
class PlanClass:
    """An equivalence class of conditions (a strongly connected component).

    ``representative`` is the request whose condition text reads the persistent pool;
    ``successors`` the classes it implies directly, ``predecessors`` those implying it.
    """

    class_id: int
    representative: Request
    members: tuple[Request, ...]
    successors: frozenset[int]
    predecessors: frozenset[int]


@dataclass(frozen=True)
class LogicalGroup:
    """A group with its graph, classes and a topological order of the classes."""

    group: Group
    graph: GroupGraph
    classes: Mapping[int, PlanClass]
    order: tuple[int, ...]
    class_of_hash: Mapping[str, int]


@dataclass(frozen=True)
class LogicalPlan:
    """Every group's classes and edges, and the plan's statistics (``CFBatches``)."""

    groups: tuple[LogicalGroup, ...]
    construction: str

    def stats(self) -> dict[str, Any]:
        naive = [g.graph.naive_solver_calls for g in self.groups]
        naive_s = [g.graph.naive_seconds for g in self.groups]
        return {
            "Nodes": sum(len(g.group.members) for g in self.groups),
            "UniqueConditions": sum(len(g.group.distinct) for g in self.groups),
            "Classes": sum(len(g.classes) for g in self.groups),
            "Edges": sum(g.graph.edge_count for g in self.groups),
            "SolverCalls": sum(g.graph.solver_calls for g in self.groups),
            "GraphSeconds": sum(g.graph.seconds for g in self.groups),
            "NaiveSolverCalls": sum(c for c in naive if c is not None)
            if any(c is not None for c in naive)
            else None,
            "NaiveSeconds": sum(s for s in naive_s if s is not None)
            if any(s is not None for s in naive_s)
            else None,
        }

    def class_of(self) -> dict[tuple[int, int], int]:
        """The class of every feasible request, by ``(query_id, prediction_id)``."""
        return {r.key: lg.class_of_hash[r.hash] for lg in self.groups for r in lg.group.members}


class Access(Enum):
    """How a class's members are served, at best: the generator runs for a member whose
    class pool holds no valid CF within the reuse threshold."""

    GENERATE = "GENERATE"  # the pool starts empty: the first member calls the generator
    REUSE = "REUSE"  # CFs pushed from stronger classes (reuse_from) may serve members
    POOL = "POOL"  # CFs stored by earlier queries satisfy the condition


@dataclass(frozen=True)
class ClassStep:
    """One class in execution order: its members still to serve (memo hits removed), its
    access path, the stronger classes whose CFs may reach it, and its persistent pool."""

    class_id: int
    access: Access
    members: tuple[Request, ...]
    reuse_from: tuple[int, ...] = ()
    pool: tuple[PoolCF, ...] = ()


@dataclass(frozen=True)
class PhysicalGroup:
    """A group's classes in topological order (strongest first)."""

    logical: LogicalGroup
    steps: tuple[ClassStep, ...]


@dataclass(frozen=True)
class CallEstimate:
    """Generator calls the plan will make: ``low <= actual <= high``.

    ``high`` counts the members still to serve (each calls the generator at most once);
    ``low`` the GENERATE classes with members (their first member finds an empty pool, so it
    calls). With ``reuse_threshold = 0`` nothing is reused and ``low == high``: the estimate
    is exact. With a positive threshold it is exact only when every class with members is a
    GENERATE class of one member; otherwise the true count depends on distances between
    instances and CFs, known only once CFs exist. Both bounds assume that an earlier answer
    (memo) verifies again, which holds unless the stored CF or the model changed.
    """

    low: int
    high: int

    @property
    def exact(self) -> bool:
        return self.low == self.high


@dataclass(frozen=True)
class PhysicalPlan:
    """The executable plan: per group the ordered class steps, the reuse settings, and the
    requests an earlier query answered with an identical condition and generator (memo)."""

    groups: tuple[PhysicalGroup, ...]
    threshold: float
    max_pool_checks: int | None
    persistent: bool
    memo: Mapping[tuple[int, int], tuple[Mapping[str, Any], ...]]

    def estimate(self) -> CallEstimate:
        steps = [s for g in self.groups for s in g.steps]
        high = sum(len(s.members) for s in steps)
        if self.threshold <= 0:
            return CallEstimate(high, high)
        low = sum(1 for s in steps if s.access is Access.GENERATE and s.members)
        return CallEstimate(low, high)

    def pool_hits(self) -> int:
        """Persistent-pool CFs available to the classes (before any reuse check)."""
        return sum(len(s.pool) for g in self.groups for s in g.steps)


# -- phase 1: compile ------------------------------------------------------------------------


def _raw_value(spec: FeatureSpec, value: Any) -> Any:
    if value is None:
        return None
    if spec.type == "categorical":
        return str(value)
    if spec.type == "boolean":
        return bool(value)
    if spec.type == "integer":
        return int(value)
    return float(value)


raw_value = _raw_value


@dataclass(frozen=True)
class Compiled:
    """A compiled FOREACH before it has a query id."""

    analysis: CfqlPlan
    features: tuple[FeatureSpec, ...]
    requests: tuple[Request, ...]
    solver_calls: int


def compile_query(session: Session, node: Foreach, stmt: Statement) -> Compiled:
    """The selected predictions and their conditions, with feasibility (query id 0)."""
    store, script = session.store, stmt.script
    features = model_features(store)
    catalog.ensure_cfs_table(store, features)
    names = [f.name for f in features]

    def columns_of_table(name: str) -> list[str] | None:
        return [c for c, _ in store.columns(name)] if store.table_exists(name) else None

    plan = Analyzer(
        node,
        script,
        cf_columns=[c for c, _ in store.columns(catalog.CFS)],
        features=names,
        columns_of=columns_of_table,
        prediction_columns=[c for c, _ in store.columns(catalog.PREDICTIONS)],
    ).plan()

    pred = node.args["pred"]
    columns = store_cfql.select_predictions(store, pred.text, script, pred.start)
    if len(columns) != 1 or columns[0].lower() != "predictionid":
        raise CfdbSyntaxError(
            f"Q_pred must return exactly one column named PredictionId, not ({', '.join(columns)})",
            sql=script,
            start=pred.start,
            end=pred.end,
        )
    unknown = store_cfql.unknown_prediction(store)
    if unknown is not None:
        raise CfdbDataError(
            f"Q_pred returns PredictionId {unknown}, which is not in Predictions"
        ).located(script, pred.start, pred.end)
    selected = store_cfql.selected_predictions(store)
    pids = selected.column("PredictionId").to_pylist()

    sql = store_cfql.base_query(plan.from_items, plan.join_where, plan.slots, plan.pred_name)
    try:
        base = store.arrow(sql)
    except CfdbError as err:
        err.sql, err.start, err.end = None, None, None
        raise err.located(script, *_name_span(err.message, script, node.span("generate"))) from None
    row_pids = base.column("__pid").to_pylist()
    if row_pids:
        counts = np.unique(np.asarray(row_pids), return_counts=True)[1]
        if counts.max() > MAX_ROWS_PER_PREDICTION:
            raise CfdbUnsupportedError(
                f"Q_CF yields {int(counts.max())} rows for one prediction (limit "
                f"{MAX_ROWS_PER_PREDICTION}): tie its relations to pred (e.g. "
                "I.InstanceId = pred.InstanceId)"
            ).located(script, *node.span("generate"))
    domains = Domains(features)
    slot_cols = [base.column(f"__s{i}").to_pylist() for i in range(len(plan.slots))]
    conds = instantiate_conditions(plan.template, row_pids, slot_cols, domains, pids)
    bounds = score_bounds(plan.score, row_pids, slot_cols, script, node.span("generate"))

    instance_ids = selected.column("InstanceId").to_pylist()
    inst = store_cfql.instances(store, sorted(set(instance_ids)), names)
    by_id = {
        row["InstanceId"]: {f.name: _raw_value(f, row[f.name]) for f in features}
        for row in inst.to_pylist()
    }
    solver = Solver(features)
    types = {f.name: f.type for f in features}
    immutable = [f.name for f in features if not f.mutable]
    requests = []
    for pid, mid, iid, label in zip(
        pids,
        selected.column("ModelId").to_pylist(),
        instance_ids,
        selected.column("Label").to_pylist(),
        strict=True,
    ):
        cond = conds[int(pid)]
        instance = by_id.get(iid)
        if instance is None:
            raise CfdbDataError(
                f"prediction {pid} refers to InstanceId {iid}, which is not in Instances"
            ).located(script, pred.start, pred.end)
        fixed = {n: instance[n] for n in immutable if instance[n] is not None}
        feasible = solver.satisfiable(cond, fixed)
        text, digest = to_sql(cond, types), condition_hash(cond)
        bound = bounds.get(int(pid)) if plan.score else None
        if plan.score:
            # The bound on C.Score is part of the request: shown, hashed, and checked in SQL
            # (CFs.Score) when the persistent pool is read.
            shown = bound.sql() if isinstance(bound, ScoreBound) else "FALSE"
            text = f"({text}) AND {shown}"
            digest = hashlib.sha1(f"{digest}|{shown}".encode()).hexdigest()[:16]
            feasible = feasible and isinstance(bound, ScoreBound)
        requests.append(
            Request(
                query_id=0,
                prediction_id=int(pid),
                model_id=int(mid),
                instance_id=int(iid),
                label=label,
                cond=cond,
                condition=text,
                hash=digest,
                feasible=feasible,
                error=bound if isinstance(bound, str) else None,
                score=bound if isinstance(bound, ScoreBound) else None,
                instance=instance,
            )
        )
    return Compiled(plan, tuple(features), tuple(requests), solver.calls)


def compile_batch(
    session: Session,
    items: Sequence[tuple[Foreach, Statement]],
    batch_id: int,
    explain: bool,
) -> tuple[Query, ...]:
    """Phase 1: validate each FOREACH's options, compile it and register it in CFQueries."""
    queries = []
    for position, (node, stmt) in enumerate(items, 1):
        params = {k.lower(): v for k, v in node.params().items()}
        for key in params:
            if key in BATCH_OPTIONS and len(items) > 1:
                raise CfdbSyntaxError(
                    f"{key} applies to the whole batch: give it in BEGIN BATCH WITH (...)"
                ).located(stmt.script, *node.param(key).span)
        try:
            exec_options(params)
        except CfdbDataError as err:
            raise err.located(stmt.script, *node.param(err.option).span) from None
        name = str(node.args.get("using") or DEFAULT_GENERATOR).lower()
        try:
            generator_cls = GENERATORS.get(name)
        except CfdbError as err:
            raise err.located(stmt.script, *node.span("using")) from None
        compiled = compile_query(session, node, stmt)
        query_id = store_cfql.insert_query(
            session.store,
            text=stmt.text,
            generator=name,
            params=params,
            mode="explain" if explain else "run",
            batch_id=batch_id,
            position=position,
        )
        queries.append(
            Query(
                query_id=query_id,
                position=position,
                node=node,
                stmt=stmt,
                params=params,
                generator=generator_cls,
                analysis=compiled.analysis,
                features=compiled.features,
                requests=tuple(replace(r, query_id=query_id) for r in compiled.requests),
                solver_calls=compiled.solver_calls,
            )
        )
    if not queries:
        raise CfdbSyntaxError("the batch holds no FOREACH statement")
    return tuple(queries)


def score_bounds(
    score: list[tuple[str, int]],
    row_pids: list[Any],
    slot_cols: list[list[Any]],
    script: str,
    span: tuple[int, int],
) -> dict[int, ScoreBound | str]:
    """Each prediction's bounds on ``C.Score`` from its base-query rows: a
    :class:`ScoreBound`, or why no score can meet them (a NULL bound, low above high).

    Raises:
        CfdbDataError: a bound that is not a number.
        CfdbUnsupportedError: rows of one prediction that give different bounds (they would
            be alternatives; a bound on the output takes one value per prediction).
    """
    if not score:
        return {}
    seen: dict[int, tuple[Any, ...]] = {}
    for row, pid in enumerate(row_pids):
        values = tuple(slot_cols[slot][row] for _, slot in score)
        if seen.setdefault(int(pid), values) != values:
            raise CfdbUnsupportedError(
                f"the bound on C.Score differs between the rows of prediction {pid}: tie the "
                "relations of Q_CF to pred so that each prediction has one bound"
            ).located(script, *span)
    out: dict[int, ScoreBound | str] = {}
    for pid, values in seen.items():
        low: tuple[float, bool] | None = None
        high: tuple[float, bool] | None = None
        out[pid] = "the bound on C.Score is NULL"
        if any(v is None for v in values):
            continue
        for (op, _), raw in zip(score, values, strict=True):
            if isinstance(raw, bool) or not isinstance(raw, (int, float, Decimal)):
                raise CfdbDataError(
                    f"C.Score is compared with {raw!r}; the model's output is a number"
                ).located(script, *span)
            v, strict = float(raw), op in ("<", ">")
            if op in (">", ">="):
                if low is None or (v, strict) > low:
                    low = (v, strict)
            elif high is None or (v, not strict) < (high[0], not high[1]):
                high = (v, strict)
        if low and high and (low[0] > high[0] or (low[0] == high[0] and (low[1] or high[1]))):
            out[pid] = "no score meets the bounds on C.Score"
            continue
        out[pid] = ScoreBound(
            low=low[0] if low else None,
            high=high[0] if high else None,
            low_strict=bool(low and low[1]),
            high_strict=bool(high and high[1]),
        )
    return out


def _name_span(message: str, script: str, span: tuple[int, int]) -> tuple[int, int]:
    """Where in Q_CF a name quoted in DuckDB's message occurs (the base query DuckDB saw is
    generated, so its positions mean nothing to the user)."""
    text = script[span[0] : span[1]]
    for name in reversed(re.findall(r'"([^"]+)"', message.split("\n")[0])):
        found = re.search(rf"(\w+\.)?\b{re.escape(name)}\b", text)
        if found:
            return span[0] + found.start(), span[0] + found.end()
    return span


# -- phase 2: targets, groups and de-duplication ---------------------------------------------


def _target(labels: list[str] | None, label: str, wanted: Any) -> str | None:
    """The label a CF must get: the other one for binary models, ``wanted`` if named."""
    if wanted is not None:
        if labels is not None and str(wanted) not in labels:
            raise CfdbDataError(
                f"target {wanted!r} is not a label of the model ({', '.join(labels)})"
            )
        return str(wanted)
    if labels is not None and len(labels) == 2:
        return labels[1] if label == labels[0] else labels[0]
    return None  # multi-class (or unknown labels): any other label


def _regression_target(q: Query) -> tuple[float, str]:
    """``(min_change, direction)`` of a query that selected predictions of a regressor."""
    params, node, script = q.params, q.node, q.stmt.script
    if "min_change" not in params:
        pred = node.args["pred"]
        raise CfdbDataError(
            "Q_pred selects predictions of a regression model, whose counterfactuals are "
            "changes of its output: give the least change in WITH (min_change = t)"
        ).located(script, pred.start, pred.end)
    raw = params["min_change"]
    try:
        min_change = float(raw)
    except (TypeError, ValueError):
        min_change = float("nan")
    if not (min_change > 0 and min_change < float("inf")) or isinstance(raw, bool):
        raise CfdbDataError(f"min_change must be a positive number, not {raw!r}").located(
            script, *node.param("min_change").span
        )
    direction = str(params.get("direction", "any")).lower()
    if direction not in DIRECTIONS:
        raise CfdbDataError(
            f"direction must be one of {', '.join(DIRECTIONS)}, not {params['direction']!r}"
        ).located(script, *node.param("direction").span)
    return min_change, direction


def _check_task_options(q: Query, tasks: Mapping[int, str]) -> None:
    """Refuse ``target`` for regressors and ``min_change``/``direction`` for classifiers."""
    params, node, script = q.params, q.node, q.stmt.script
    kinds = {tasks.get(r.model_id, "classification") for r in q.requests}
    if "target" in params and "regression" in kinds:
        raise CfdbDataError(
            "target names a class label, and Q_pred selects predictions of a regression "
            "model: use min_change and direction"
        ).located(script, *node.param("target").span)
    if kinds == {"classification"}:
        for key in ("min_change", "direction"):
            if key in params:
                raise CfdbDataError(
                    f"{key} applies to regression models, and Q_pred selects predictions of "
                    "classifiers only"
                ).located(script, *node.param(key).span)


def _original_values(
    session: Session, requests: Sequence[Request], script: str, span: Any
) -> dict[int, float]:
    """Regression requests' original outputs: their prediction's stored Score."""
    pids = [r.prediction_id for r in requests]
    if not pids:
        return {}
    scores = dict(
        session.store.execute(
            "SELECT PredictionId, Score FROM Predictions WHERE list_contains(?, PredictionId)",
            [pids],
        )
    )
    out = {}
    for r in requests:
        score = scores.get(r.prediction_id)
        if score is None:
            raise CfdbDataError(
                f"prediction {r.prediction_id} of a regression model has no Score (the "
                "model's output, which a counterfactual must move)"
            ).located(script, *span)
        out[r.prediction_id] = float(score)
    return out


def dedupe(session: Session, queries: Sequence[Query]) -> tuple[Group, ...]:
    """Phase 2: each feasible request's target, the groups of interchangeable requests, and
    their distinct conditions."""
    labels_of: dict[int, list[str] | None] = {}
    tasks: dict[int, str] = {}
    for mid, labels, task in session.store.execute("SELECT ModelId, Labels, Task FROM Models"):
        labels_of[int(mid)] = list(labels) if labels is not None else None
        tasks[int(mid)] = str(task)
    for q in queries:
        _check_task_options(q, tasks)
    groups: dict[tuple[Any, ...], list[Request]] = {}
    for q in queries:
        pending = [r for r in q.requests if r.feasible]
        regression = [r for r in pending if tasks.get(r.model_id) == "regression"]
        if regression:
            min_change, direction = _regression_target(q)
            pred = q.node.args["pred"]
            originals = _original_values(session, regression, q.stmt.script, (pred.start, pred.end))
        for r in pending:
            if tasks.get(r.model_id) == "regression":
                # CFs are interchangeable across original values: each reuse is verified.
                r = replace(
                    r,
                    regression=True,
                    min_change=min_change,
                    direction=direction,
                    original_value=originals[r.prediction_id],
                )
                key = (r.model_id, direction, min_change, r.bound_key())
            else:
                try:
                    target = _target(
                        labels_of.get(r.model_id), str(r.label), q.params.get("target")
                    )
                except CfdbError as err:
                    raise err.located(q.stmt.script, *q.node.span("generate")) from None
                r = replace(r, target=target)
                key = (r.model_id, r.label, target, r.bound_key())
            groups.setdefault(key, []).append(r)
    out = []
    for key, members in groups.items():
        distinct: dict[str, Request] = {}
        for r in members:
            distinct.setdefault(r.hash, r)
        out.append(Group(key, members[0].regression, tuple(members), tuple(distinct.values())))
    return tuple(out)


# -- phases 3 and 4: implication graph and condensation --------------------------------------


def graph(
    group: Group, features: Sequence[FeatureSpec], construction: str, seed: int
) -> GroupGraph:
    """Phase 3: the implication graph over the group's distinct conditions."""
    conds = [r.cond for r in group.distinct]
    built = build_graph(
        conds, list(features), "naive" if construction == "naive" else "atoms", seed=seed
    )
    naive_calls = naive_seconds = None
    if construction == "both":
        naive = build_graph(conds, list(features), "naive")
        if naive.edges != built.edges:
            raise CfdbUnsupportedError("internal error: the two graph constructions differ")
        naive_calls, naive_seconds = naive.solver_calls, naive.seconds
    edge_from, edge_to = built.edge_arrays()
    return GroupGraph(
        np.asarray(edge_from, np.int64),
        np.asarray(edge_to, np.int64),
        built.edge_count(),
        built.solver_calls,
        built.seconds,
        naive_calls,
        naive_seconds,
    )


def condense(group: Group, g: GroupGraph, first_class: int) -> LogicalGroup:
    """Phase 4: equivalence classes (ids from ``first_class``) and a topological order."""
    cond = condense_graph(len(group.distinct), (g.edge_from, g.edge_to))
    class_of_hash = {r.hash: first_class + cond.classes[i] for i, r in enumerate(group.distinct)}
    # The last distinct condition of a class reads its persistent pool (all are equivalent).
    representative = {first_class + cond.classes[i]: r for i, r in enumerate(group.distinct)}
    members: dict[int, list[Request]] = {c: [] for c in representative}
    for r in group.members:
        members[class_of_hash[r.hash]].append(r)
    successors = {
        first_class + c: {first_class + s for s in succ} for c, succ in cond.successors.items()
    }
    predecessors: dict[int, set[int]] = {c: set() for c in representative}
    for c, succ in successors.items():
        for s in succ:
            predecessors[s].add(c)
    classes = {
        c: PlanClass(
            c,
            representative[c],
            tuple(members[c]),
            frozenset(successors.get(c, ())),
            frozenset(predecessors[c]),
        )
        for c in sorted(representative)
    }
    order = tuple(first_class + c for c in cond.order)
    return LogicalGroup(group, g, classes, order, class_of_hash)


def plan_logical(
    session: Session,
    groups: Sequence[Group],
    features: Sequence[FeatureSpec],
    construction: str,
) -> LogicalPlan:
    """Phases 3 and 4 over every group; class ids are unique within the batch."""
    if construction not in CONSTRUCTIONS:
        raise CfdbSyntaxError(f"construction must be atoms, naive or both, not {construction!r}")
    out, next_class = [], 1
    for group in groups:
        lg = condense(group, graph(group, features, construction, session.seed), next_class)
        out.append(lg)
        next_class += len(lg.classes)
    return LogicalPlan(tuple(out), construction)


def edge_blocks(logical: LogicalPlan) -> list[tuple[np.ndarray, ...]]:
    """``ImplicationEdges`` rows per group: (from query, from prediction, to query, to
    prediction) arrays."""
    blocks = []
    for lg in logical.groups:
        g = lg.graph
        if len(g.edge_from):
            qids = np.array([r.query_id for r in lg.group.distinct], dtype=np.int64)
            pids = np.array([r.prediction_id for r in lg.group.distinct], dtype=np.int64)
            blocks.append((qids[g.edge_from], pids[g.edge_from], qids[g.edge_to], pids[g.edge_to]))
    return blocks


# -- phase 5: order (the physical plan) ------------------------------------------------------


def memo_key(r: Request, generator: str) -> tuple[Any, ...]:
    """An earlier answer serves a request with the same prediction, condition and generator
    (for a regressor also the same change asked for)."""
    key: tuple[Any, ...] = (r.prediction_id, r.hash, generator)
    if r.regression:
        key += (r.min_change, r.direction)
    return key


def order(
    session: Session,
    queries: Sequence[Query],
    logical: LogicalPlan,
    features: Sequence[FeatureSpec],
    options: Mapping[str, Any],
) -> PhysicalPlan:
    """Phase 5: per group the classes in topological order, each with its access path, the
    earlier answers (memo) and the persistent pools (both read here, read-only)."""
    max_checks = options.get("max_pool_checks")
    threshold = float(options.get("reuse_threshold", 0) or 0)
    persistent = bool(options.get("persistent_pool", True))
    by_id = {q.query_id: q for q in queries}
    memo_rows = read_memo(session, queries, logical, features) if persistent else {}
    memo = {}
    for lg in logical.groups:
        for r in lg.group.members:
            hit = memo_rows.get(memo_key(r, by_id[r.query_id].generator.name))
            if hit is not None:
                memo[r.key] = tuple(hit)
    groups = []
    for lg in logical.groups:
        pools = read_pools(session, lg, features) if threshold > 0 and persistent else {}
        supplied: set[int] = set()  # classes whose pool may hold CFs when they run
        steps = []
        for c in lg.order:
            cls = lg.classes[c]
            members = tuple(r for r in cls.members if r.key not in memo)
            pool = tuple(pools.get(c, ()))
            reuse_from = tuple(sorted(p for p in cls.predecessors if p in supplied))
            if threshold <= 0 or not (pool or reuse_from):
                access = Access.GENERATE
            else:
                access = Access.POOL if pool else Access.REUSE
            if threshold > 0 and (members or pool or reuse_from):
                supplied.add(c)
            steps.append(ClassStep(c, access, members, reuse_from, pool))
        groups.append(PhysicalGroup(lg, tuple(steps)))
    return PhysicalPlan(
        tuple(groups),
        threshold,
        int(max_checks) if max_checks is not None else None,
        persistent,
        memo,
    )


def read_memo(
    session: Session,
    queries: Sequence[Query],
    logical: LogicalPlan,
    features: Sequence[FeatureSpec],
) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Earlier answers for the same prediction, identical condition and generator."""
    store = session.store
    pids = sorted({r.prediction_id for q in queries for r in q.requests})
    if not pids:
        return {}
    table = store_cfql.earlier_links(store, pids, [f.name for f in features])
    memo: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in table.to_pylist():
        key = (row["PredictionId"], row["Hash"], row["Generator"])
        memo.setdefault(key, []).append(row)
    # Regression answers also depend on the change asked for: key them by it too.
    regression = sorted(
        {r.prediction_id for lg in logical.groups for r in lg.group.members if r.regression}
    )
    if regression:
        cols = ", ".join(f"CF.{catalog.quote(f.name)}" for f in features)
        rows = store.arrow(
            "SELECT PC.PredictionId, C.Hash, Q.Generator, Q.Params, PC.CfId, PC.Distance, "
            f"CF.Label AS Label, {cols} FROM Prediction_CFs PC JOIN Conditions C ON "
            "C.QueryId = PC.QueryId AND C.PredictionId = PC.PredictionId JOIN CFQueries Q ON "
            "Q.QueryId = PC.QueryId JOIN CFs CF ON CF.CfId = PC.CfId "
            "WHERE list_contains(?, PC.PredictionId)",
            [regression],
        )
        for row in rows.to_pylist():
            params = json.loads(row.pop("Params") or "{}")
            try:
                change = float(params["min_change"])
            except (KeyError, TypeError, ValueError):
                continue
            direction = str(params.get("direction", "any")).lower()
            key = (row["PredictionId"], row["Hash"], row["Generator"], change, direction)
            memo.setdefault(key, []).append(row)
    return memo


def read_pools(
    session: Session, lg: LogicalGroup, features: Sequence[FeatureSpec]
) -> dict[int, list[PoolCF]]:
    """Stored CFs of the same model and label satisfying each class's condition (in SQL).

    For a regression model every stored CF of the model satisfying the condition is a
    candidate: whether it moves a member's output enough is verified per member on reuse.
    """
    store = session.store
    model_id, original, target = lg.group.key[:3]
    pools: dict[int, list[PoolCF]] = {}
    names = [f.name for f in features]
    for c, cls in lg.classes.items():
        text = cls.representative.condition
        if lg.group.regression:
            cols = ", ".join(catalog.quote(n) for n in names)
            table = store.arrow(
                f"SELECT CfId, Label, {cols} FROM CFs WHERE ModelId = ? AND ({text})",
                [model_id],
            )
        else:
            table = store_cfql.stored_cfs(store, model_id, original, target, text, names)
        pools[c] = [PoolCF(int(row["CfId"]), row, str(row["Label"])) for row in table.to_pylist()]
    return pools
