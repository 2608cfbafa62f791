"""CFQL phases 2–5, the optimizer: dedupe → graph → condense → order (CFDB paper, sections
4.1–4.3).

:func:`dedupe` resolves each feasible request's target and groups interchangeable requests,
merging identical conditions; :func:`graph` builds a group's implication graph
(:mod:`cfdb.ctable.graph`, ``atoms`` or ``naive``; ``both`` checks they agree);
:func:`condense` makes its equivalence classes and a topological order; :func:`order` makes
the :class:`~cfdb.engine.cfql_plan.PhysicalPlan`, reading (read-only) the earlier answers to
identical requests (memo) and the persistent pools. All return frozen plan objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from cfdb.ctable.graph import build as build_graph
from cfdb.ctable.graph import condense as condense_graph
from cfdb.engine.cfql_plan import (
    CONSTRUCTIONS,
    Access,
    ClassStep,
    Group,
    GroupGraph,
    LogicalGroup,
    LogicalPlan,
    PhysicalGroup,
    PhysicalPlan,
    PlanClass,
    Query,
    Request,
)
from cfdb.errors import CfdbDataError, CfdbError, CfdbSyntaxError, CfdbUnsupportedError
from cfdb.generators.base import DIRECTIONS
from cfdb.generators.reuse import PoolCF
from cfdb.store import catalog
from cfdb.store import cfql as store_cfql
from cfdb.types import FeatureSpec

if TYPE_CHECKING:
    from cfdb.engine.session import Session


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
