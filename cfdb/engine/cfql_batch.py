"""CFQL evaluation, one batch at a time (CFDB paper, sections 3.2 and 4).

A lone ``FOREACH`` is a batch of one; ``BEGIN BATCH; FOREACH …; …; END BATCH;`` optimizes
several together:

1. each query is compiled (:func:`compile_query`): Q_pred runs once; one base query computes
   every constant for every selected prediction; the template is instantiated per row and
   the rows of a prediction OR-ed into one normalized condition; z3 checks it over the active
   domains with the instance's immutable features held (``infeasible`` otherwise);
2. feasible (query, prediction) nodes are grouped by model, original label and target (CFs
   are only interchangeable within a group; for a regression model, by model, ``direction``
   and ``min_change``: the target is a change of the output, section 4.4, and every reused CF
   is verified against the member's own original output), identical conditions merged, the
   implication
   graph built (``naive`` or ``atoms``) and condensed into equivalence classes
   (:mod:`cfdb.ctable.graph`); ``Conditions`` gets batch and class ids, ``ImplicationEdges``
   the edges, ``CFBatches`` the plan's statistics;
3. unless explained, CFs are found class by class in topological order
   (:mod:`cfdb.generators.reuse`, Algorithm 2): reused from the class's pool when one lies
   within ``reuse_threshold`` of the instance, else generated. The pool holds the class's
   own CFs, those of stronger classes, and — the persistent pool — CFs stored by earlier
   queries for the same model and label that satisfy the condition (checked in SQL with its
   stored text). A prediction whose identical condition was already served by the same
   generator in an earlier query reuses that CF at no cost, whatever the threshold.
   With ``reuse_threshold = 0`` (the default) nothing else is reused, and generation runs in
   parallel over predictions (``n_jobs``).

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

import hashlib
import json
import re
import time
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from cfdb.ctable.condition import Domains, condition_hash, to_sql
from cfdb.ctable.graph import build as build_graph
from cfdb.ctable.graph import condense
from cfdb.ctable.instantiate import conditions as instantiate_conditions
from cfdb.ctable.solve import Solver
from cfdb.engine import cfql_distributed as distributed
from cfdb.engine.handlers.models import columns_of, load_model, model_features
from cfdb.errors import CfdbDataError, CfdbError, CfdbSyntaxError, CfdbUnsupportedError
from cfdb.exec import exec_options
from cfdb.generators import GENERATORS, GenerationTask
from cfdb.generators.base import DIRECTIONS, ScoreBound
from cfdb.generators.reuse import Member, PoolCF
from cfdb.lang.cfql import Analyzer, Foreach
from cfdb.lang.parse import Statement
from cfdb.store import catalog
from cfdb.store import cfql as store_cfql
from cfdb.types import FeatureSpec

DEFAULT_GENERATOR = "growing_spheres"
#: Weight of the diversity term when a query asks for n > 1 CFs (DiCE's default weight).
DEFAULT_DIVERSITY = 1.0
_QUERY_OPTIONS = {
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
BATCH_OPTIONS = {"reuse_threshold", "max_pool_checks", "construction", "persistent_pool"}
#: Base-query rows allowed per prediction: more means Q_CF joins a relation not tied to pred.
MAX_ROWS_PER_PREDICTION = 1000


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


def compile_query(session: Any, node: Foreach, stmt: Statement) -> dict[str, Any]:
    """Steps 1–3: the selected predictions and their conditions, with statuses."""
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
    records = []
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
        records.append(
            {
                "PredictionId": int(pid),
                "ModelId": int(mid),
                "InstanceId": int(iid),
                "Label": label,
                "cond": cond,
                "Condition": text,
                "Hash": digest,
                "Status": "pending" if feasible else "infeasible",
                "Error": bound if isinstance(bound, str) else None,
                "score": bound if isinstance(bound, ScoreBound) else None,
                "instance": instance,
            }
        )
    return {"plan": plan, "features": features, "records": records, "solver_calls": solver.calls}


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


def _conditions_table(records: list[dict[str, Any]], batch_id: int) -> pa.Table:
    return pa.table(
        {
            "QueryId": pa.array([r["QueryId"] for r in records], pa.int64()),
            "PredictionId": pa.array([r["PredictionId"] for r in records], pa.int64()),
            "InstanceId": pa.array([r["InstanceId"] for r in records], pa.int64()),
            "Condition": pa.array([r["Condition"] for r in records], pa.string()),
            "Hash": pa.array([r["Hash"] for r in records], pa.string()),
            "Status": pa.array([r["Status"] for r in records], pa.string()),
            "Error": pa.array([r.get("Error") for r in records], pa.string()),
            "BatchId": pa.array([batch_id] * len(records), pa.int64()),
            "ClassId": pa.array([r.get("ClassId") for r in records], pa.int64()),
        }
    )


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


def _regression_target(q: dict[str, Any]) -> tuple[float, str]:
    """``(min_change, direction)`` of a query that selected predictions of a regressor."""
    params, node, script = q["params"], q["node"], q["stmt"].script
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


def _check_task_options(q: dict[str, Any], tasks: dict[int, str]) -> None:
    """Refuse ``target`` for regressors and ``min_change``/``direction`` for classifiers."""
    params, node, script = q["params"], q["node"], q["stmt"].script
    kinds = {tasks.get(r["ModelId"], "classification") for r in q["compiled"]["records"]}
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


def _original_values(store: Any, records: list[dict[str, Any]], script: str, span: Any) -> None:
    """Set ``original_value`` of regression records: their prediction's stored Score."""
    pids = [r["PredictionId"] for r in records]
    if not pids:
        return
    scores = dict(
        store.execute(
            "SELECT PredictionId, Score FROM Predictions WHERE list_contains(?, PredictionId)",
            [pids],
        )
    )
    for r in records:
        score = scores.get(r["PredictionId"])
        if score is None:
            raise CfdbDataError(
                f"prediction {r['PredictionId']} of a regression model has no Score (the "
                "model's output, which a counterfactual must move)"
            ).located(script, *span)
        r["original_value"] = float(score)


def _decimals(store: Any, features: list[FeatureSpec]) -> dict[str, int]:
    """Per numeric feature, the most decimals its values have in ``Instances`` (a column
    stored with one decimal gets CFs with one), when that is fewer than 6."""
    numeric = [f.name for f in features if f.type == "numeric"]
    if not numeric or not store.table_exists(catalog.INSTANCES):
        return {}
    have = {c.lower(): c for c, _ in store.columns(catalog.INSTANCES)}
    numeric = [have[n.lower()] for n in numeric if n.lower() in have]
    if not numeric:
        return {}
    parts = [
        f"max(CASE WHEN contains(lower(CAST({catalog.quote(n)} AS VARCHAR)), 'e') THEN 99 "
        f"ELSE length(split_part(CAST({catalog.quote(n)} AS VARCHAR), '.', 2)) END)"
        for n in numeric
    ]
    row = store.execute(f"SELECT {', '.join(parts)} FROM Instances")[0]
    return {n: int(d) for n, d in zip(numeric, row, strict=True) if d is not None and d < 6}


def _bound_key(r: dict[str, Any]) -> tuple[Any, ...] | None:
    """CFs are interchangeable only under the same bound on their score."""
    return r["score"].key() if r.get("score") is not None else None


def _option(params: dict[str, Any], options: dict[str, Any], name: str, default: Any) -> Any:
    return params.get(name, options.get(name, default))


def run_batch(
    session: Any, items: list[tuple[Foreach, Statement]], options: dict[str, Any], explain: bool
) -> dict[str, Any]:
    """Compile, plan and (unless ``explain``) evaluate a batch of FOREACH statements.

    Returns a dict with ``batch_id``, ``queries`` (per-query dicts with ``QueryId``,
    ``plan`` and statistics) and ``summary`` (the ``CFBatches`` row).
    """
    started = time.perf_counter()
    store = session.store
    construction = str(options.get("construction", "atoms")).lower()
    if construction not in ("atoms", "naive", "both"):
        raise CfdbSyntaxError(f"construction must be atoms, naive or both, not {construction!r}")
    batch_id = catalog.next_id(store, "CFBatches", "BatchId")
    queries: list[dict[str, Any]] = []
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
            store,
            text=stmt.text,
            generator=name,
            params=params,
            mode="explain" if explain else "run",
            batch_id=batch_id,
            position=position,
        )
        for r in compiled["records"]:
            r["QueryId"] = query_id
        queries.append(
            {
                "node": node,
                "stmt": stmt,
                "params": params,
                "generator": generator_cls,
                "compiled": compiled,
                "QueryId": query_id,
                "Position": position,
            }
        )
    if not queries:
        raise CfdbSyntaxError("the batch holds no FOREACH statement")
    options = {**options, **{k: v for k, v in queries[0]["params"].items() if k in BATCH_OPTIONS}}
    features = queries[0]["compiled"]["features"]
    labels_of, tasks = {}, {}
    for mid, labels, task in store.execute("SELECT ModelId, Labels, Task FROM Models"):
        labels_of[int(mid)] = list(labels) if labels is not None else None
        tasks[int(mid)] = str(task)
    for q in queries:
        _check_task_options(q, tasks)

    # -- the plan: groups, de-duplication, implication graph, condensation --------------------
    groups: dict[tuple[Any, ...], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for q in queries:
        pending = [r for r in q["compiled"]["records"] if r["Status"] == "pending"]
        regression = [r for r in pending if tasks.get(r["ModelId"]) == "regression"]
        if regression:
            min_change, direction = _regression_target(q)
            pred = q["node"].args["pred"]
            _original_values(store, regression, q["stmt"].script, (pred.start, pred.end))
        for r in pending:
            if tasks.get(r["ModelId"]) == "regression":
                # CFs are interchangeable across original values: each reuse is verified.
                r["target"], r["min_change"], r["direction"] = None, min_change, direction
                groups.setdefault((r["ModelId"], direction, min_change, _bound_key(r)), []).append(
                    (q, r)
                )
                continue
            try:
                r["target"] = _target(
                    labels_of.get(r["ModelId"]), str(r["Label"]), q["params"].get("target")
                )
            except CfdbError as err:
                raise err.located(q["stmt"].script, *q["node"].span("generate")) from None
            groups.setdefault((r["ModelId"], r["Label"], r["target"], _bound_key(r)), []).append(
                (q, r)
            )
    plan_stats = {
        "Nodes": 0,
        "UniqueConditions": 0,
        "Classes": 0,
        "Edges": 0,
        "SolverCalls": 0,
        "GraphSeconds": 0.0,
        "NaiveSolverCalls": None,
        "NaiveSeconds": None,
    }
    edges: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    plans: list[dict[str, Any]] = []
    next_class = 1
    for key, members in groups.items():
        reps: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for q, r in members:
            reps.setdefault(r["Hash"], (q, r))
        unique = list(reps.values())
        conds = [r["cond"] for _, r in unique]
        graph = build_graph(
            conds, features, "naive" if construction == "naive" else "atoms", seed=session.seed
        )
        if construction == "both":
            naive = build_graph(conds, features, "naive")
            if naive.edges != graph.edges:
                raise CfdbUnsupportedError("internal error: the two graph constructions differ")
            plan_stats["NaiveSolverCalls"] = (
                plan_stats["NaiveSolverCalls"] or 0
            ) + naive.solver_calls
            plan_stats["NaiveSeconds"] = (plan_stats["NaiveSeconds"] or 0.0) + naive.seconds
        edge_from, edge_to = graph.edge_arrays()
        cond = condense(len(unique), (edge_from, edge_to))
        class_of_hash = {}
        for idx, (_, r) in enumerate(unique):
            class_of_hash[r["Hash"]] = next_class + cond.classes[idx]
        for _, r in members:
            r["ClassId"] = class_of_hash[r["Hash"]]
        if len(edge_from):
            query_ids = np.array([q["QueryId"] for q, _ in unique], dtype=np.int64)
            prediction_ids = np.array([r["PredictionId"] for _, r in unique], dtype=np.int64)
            edges.append(
                (
                    query_ids[edge_from],
                    prediction_ids[edge_from],
                    query_ids[edge_to],
                    prediction_ids[edge_to],
                )
            )
        n_classes = len(set(cond.classes))
        plans.append(
            {
                "key": key,
                "regression": tasks.get(key[0]) == "regression",
                "members": members,
                "order": [next_class + c for c in cond.order],
                "successors": {
                    next_class + c: {next_class + s for s in succ}
                    for c, succ in cond.successors.items()
                },
                "representative": {
                    next_class + cond.classes[i]: r for i, (_, r) in enumerate(unique)
                },
            }
        )
        next_class += n_classes
        plan_stats["Nodes"] += len(members)
        plan_stats["UniqueConditions"] += len(unique)
        plan_stats["Classes"] += n_classes
        plan_stats["Edges"] += graph.edge_count()
        plan_stats["SolverCalls"] += graph.solver_calls
        plan_stats["GraphSeconds"] += graph.seconds
    if edges:
        store_cfql.insert_edges(store, batch_id, edges)

    threshold = float(options.get("reuse_threshold", 0) or 0)
    gen = {"GeneratorCalls": 0, "Reused": 0, "GenerationSeconds": 0.0, "CallsSaved": 0}
    if not explain:
        gen_started = time.perf_counter()
        _evaluate(session, queries, plans, features, options, threshold, gen)
        gen["GenerationSeconds"] = time.perf_counter() - gen_started

    records = [r for q in queries for r in q["compiled"]["records"]]
    store_cfql.insert_conditions(store, _conditions_table(records, batch_id))
    distances = [d for r in records for d in r.get("distances", [])]
    summary = {
        "BatchId": batch_id,
        "Mode": "explain" if explain else "run",
        "Queries": len(queries),
        **plan_stats,
        "Construction": "naive" if construction == "naive" else "atoms",
        "ReuseThreshold": threshold,
        **gen,
        "MeanDistance": float(np.mean(distances)) if distances else None,
        "Seconds": time.perf_counter() - started,
    }
    store_cfql.insert_batch(store, summary)
    for q in queries:
        recs = q["compiled"]["records"]
        status = [r["Status"] for r in recs]
        dists = [d for r in recs for d in r.get("distances", [])]
        q["stats"] = {
            "Predictions": len(recs),
            "ModelIds": sorted({r["ModelId"] for r in recs}),
            "GeneratorCalls": sum(1 for r in recs if r.get("called")),
            "Generated": sum(r.get("generated", 0) for r in recs),
            "Reused": status.count("reused"),
            "Infeasible": status.count("infeasible"),
            "Failed": status.count("failed"),
            "MeanDistance": float(np.mean(dists)) if dists else None,
            "SolverCalls": plan_stats["SolverCalls"],
            "GraphSeconds": plan_stats["GraphSeconds"],
            "GenerationSeconds": gen["GenerationSeconds"],
            "Seconds": time.perf_counter() - started,
        }
        store_cfql.finish_query(store, q["QueryId"], q["stats"])
    return {"batch_id": batch_id, "queries": queries, "summary": summary}


def _evaluate(
    session: Any,
    queries: list[dict[str, Any]],
    plans: list[dict[str, Any]],
    features: list[FeatureSpec],
    options: dict[str, Any],
    threshold: float,
    gen: dict[str, Any],
) -> None:
    """Find CFs for every planned member and write them (Algorithm 2 or plain generation)."""
    store = session.store
    max_checks = options.get("max_pool_checks")
    max_checks = int(max_checks) if max_checks is not None else None
    persistent = bool(options.get("persistent_pool", True))
    models: dict[int, Any] = {}
    generators: dict[tuple[int, int], Any] = {}
    pools_cache: dict[str, Any] = {}

    def model_of(mid: int) -> Any:
        if mid not in models:
            name = store.execute("SELECT Name FROM Models WHERE ModelId = ?", [mid])[0][0]
            models[mid] = load_model(session, name)[1]
        return models[mid]

    def generator_of(q: dict[str, Any], mid: int) -> Any:
        key = (q["QueryId"], mid)
        if key not in generators:
            cls = q["generator"]
            gen_params = _generator_params(q["params"])
            pool = None
            if getattr(cls, "uses_pool", True):
                pool_sql = str(q["params"].get("pool", "SELECT * FROM Instances"))
                if pool_sql not in pools_cache:
                    table = store.arrow(pool_sql)
                    pools_cache[pool_sql] = {
                        f.name: columns_of(table)[f.name]
                        for f in features
                        if f.name in table.column_names
                    }
                pool = pools_cache[pool_sql]
            node = q["node"]
            where = node.args.get("params") or []
            span = (where[0].span[0], where[-1].span[1]) if where else node.span("using")
            try:
                generators[key] = cls(**gen_params).fit(model_of(mid), features, pool)
            except TypeError as exc:
                raise CfdbDataError(f"generator {cls.name!r}: {exc}").located(
                    q["stmt"].script, *span
                ) from None
            except CfdbError as err:
                raise err.located(q["stmt"].script, *span) from None
        return generators[key]

    memo = _memo(store, queries, features) if persistent else {}
    decimals = _decimals(store, features)
    next_cf = catalog.next_id(store, catalog.CFS, "CfId")
    new_ids: dict[Any, int] = {}
    cf_rows: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []

    session.last_generation = distributed.GenerationStats()  # where generation ran, how
    for plan in plans:
        model_id = plan["key"][0]
        members_by_class: dict[int, list[Member]] = {}
        record_of: dict[Any, dict[str, Any]] = {}
        for q, r in plan["members"]:
            generator = generator_of(q, model_id)
            task = GenerationTask(
                instance=r["instance"],
                original_label=None if plan["regression"] else str(r["Label"]),
                target=r["target"],
                original_value=r.get("original_value"),
                min_change=r.get("min_change"),
                direction=r.get("direction", "any"),
                score=r.get("score"),
                condition=r["cond"],
                n=int(_option(q["params"], {}, "n", 1)),
                seed=int(_option(q["params"], {}, "seed", session.seed)) + r["PredictionId"],
                distance=str(_option(q["params"], {}, "distance", "tabular")).lower(),
                params=_generator_params(q["params"]),
                diversity=float(_option(q["params"], {}, "diversity", DEFAULT_DIVERSITY)),
                decimals=decimals,
            )
            member = Member(
                key=(r["QueryId"], r["PredictionId"]),
                task=task,
                generator=generator,
                threshold=threshold,
                max_pool_checks=max_checks,
                time_limit=float(_option(q["params"], {}, "time_limit", 10.0)),
            )
            record_of[member.key] = r
            r["generator_name"] = q["generator"].name
            memo_key = (r["PredictionId"], r["Hash"], q["generator"].name)
            if plan["regression"]:
                # The same condition with another change asked for is another request.
                memo_key += (r["min_change"], r["direction"])
            hit = memo.get(memo_key)
            if hit is not None:
                choice = _reuse_memo(member, hit)
                if choice is not None:
                    _record(r, choice, reused=True)
                    r["memo_links"] = [
                        {
                            "PredictionId": r["PredictionId"],
                            "CfId": cf.ref,
                            "QueryId": r["QueryId"],
                            "Distance": float(d),
                            "Reused": True,
                            "Optimal": None,
                        }
                        for cf, d in zip(choice.cfs, choice.distances, strict=True)
                    ]
                    continue
            members_by_class.setdefault(r["ClassId"], []).append(member)
        total = sum(len(m) for m in members_by_class.values())
        with session.progress(f"counterfactuals (model {model_id})", total) as advance:
            # -- generation of the classes: in this process as Algorithm 2 is written, or on
            # the batch's executor in waves with the same decisions (cfql_distributed).
            pools = _persistent_pools(store, plan, features) if threshold > 0 and persistent else {}
            choices = distributed.generate(
                plan["order"],
                members_by_class,
                plan["successors"],
                pools,
                threshold=threshold,
                seed=session.seed,
                options=distributed.where(queries, options),
                stats=session.last_generation,
                progress=advance,
            )
        for key, choice in choices.items():
            _record(record_of[key], choice, reused=choice.reused)
        # Assign ids to the CFs generated now and link every choice.
        for key, choice in choices.items():
            r = record_of[key]
            flags = choice.optimal if len(choice.optimal) == len(choice.cfs) else []
            for i, (cf, dist) in enumerate(zip(choice.cfs, choice.distances, strict=True)):
                ref = (id(plan), cf.ref) if not isinstance(cf.ref, int) else cf.ref
                if not isinstance(cf.ref, int) and ref not in new_ids:
                    new_ids[ref] = next_cf
                    row = {f.name: _raw_value(f, cf.row[f.name]) for f in features}
                    row.update(
                        CfId=next_cf,
                        ModelId=model_id,
                        Label=cf.label,
                        Generator=record_of[key]["generator_name"],
                        Score=cf.score,
                    )
                    cf_rows.append(row)
                    next_cf += 1
                links.append(
                    {
                        "PredictionId": r["PredictionId"],
                        "CfId": new_ids[ref] if not isinstance(cf.ref, int) else cf.ref,
                        "QueryId": r["QueryId"],
                        "Distance": float(dist),
                        "Reused": bool(choice.reused),
                        # Proven closest for *this* request only when generated for it.
                        "Optimal": None if choice.reused or not flags else flags[i],
                    }
                )
    # Memo hits were recorded directly.
    for q in queries:
        for r in q["compiled"]["records"]:
            if r.get("memo_links"):
                links.extend(r["memo_links"])
    if cf_rows or links:
        store_cfql.insert_cfs(
            store,
            pa.Table.from_pylist(cf_rows) if cf_rows else None,
            pa.Table.from_pylist(links) if links else None,
        )
    records = [r for q in queries for r in q["compiled"]["records"]]
    gen["GeneratorCalls"] = sum(1 for r in records if r.get("called"))
    gen["Reused"] = sum(1 for r in records if r["Status"] == "reused")
    gen["CallsSaved"] = gen["Reused"]


def _generator_params(params: dict[str, Any]) -> dict[str, Any]:
    """The WITH options meant for the generator itself."""
    return {k: v for k, v in params.items() if k not in _QUERY_OPTIONS and k not in BATCH_OPTIONS}


def _record(r: dict[str, Any], choice: Any, reused: bool) -> None:
    r["called"] = bool(getattr(choice, "generator_called", False))
    if choice.error is not None or not choice.cfs:
        # A generator's proof that no CF exists is an answer, not a failure.
        r["Status"] = "infeasible" if getattr(choice, "infeasible", False) else "failed"
        r["Error"] = choice.error or "no counterfactual found"
        return
    r["Status"] = "reused" if reused else "satisfied"
    r["generated"] = 0 if reused else len(choice.cfs)
    r["distances"] = [float(d) for d in choice.distances]


def _memo(store: Any, queries: list[dict[str, Any]], features: list[FeatureSpec]) -> dict[Any, Any]:
    """Earlier answers for the same prediction, identical condition and generator."""
    pids = sorted({r["PredictionId"] for q in queries for r in q["compiled"]["records"]})
    if not pids:
        return {}
    table = store_cfql.earlier_links(store, pids, [f.name for f in features])
    memo: dict[Any, Any] = {}
    for row in table.to_pylist():
        key = (row["PredictionId"], row["Hash"], row["Generator"])
        memo.setdefault(key, []).append(row)
    # Regression answers also depend on the change asked for: key them by it too.
    regression = sorted(
        {
            r["PredictionId"]
            for q in queries
            for r in q["compiled"]["records"]
            if r.get("min_change") is not None
        }
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


def _reuse_memo(member: Member, rows: list[dict[str, Any]]) -> Any:
    from cfdb.generators.reuse import Choice, _try_reuse

    pool = [PoolCF(int(row["CfId"]), row, str(row["Label"])) for row in rows]
    # Verify exactly as for any reuse; the threshold is the largest earlier distance.
    limit = max(float(row["Distance"] or 0) for row in rows) + 1e-9
    probe = Member(member.key, member.task, member.generator, threshold=limit)
    choice = _try_reuse(probe, pool, np.random.default_rng(0))
    return choice if isinstance(choice, Choice) else None


def _persistent_pools(
    store: Any, plan: dict[str, Any], features: list[FeatureSpec]
) -> dict[int, list[PoolCF]]:
    """Stored CFs of the same model and label satisfying each class's condition (in SQL).

    For a regression model every stored CF of the model satisfying the condition is a
    candidate: whether it moves a member's output enough is verified per member on reuse.
    """
    model_id, original, target = plan["key"][:3]
    pools: dict[int, list[PoolCF]] = {}
    names = [f.name for f in features]
    for cls, r in plan["representative"].items():
        if plan["regression"]:
            cols = ", ".join(catalog.quote(n) for n in names)
            table = store.arrow(
                f"SELECT CfId, Label, {cols} FROM CFs WHERE ModelId = ? AND ({r['Condition']})",
                [model_id],
            )
        else:
            table = store_cfql.stored_cfs(store, model_id, original, target, r["Condition"], names)
        pools[cls] = [PoolCF(int(row["CfId"]), row, str(row["Label"])) for row in table.to_pylist()]
    return pools
