"""FOREACH and EXPLAIN FOREACH: CFQL's basic evaluation (CFDB paper, section 3.2).

1. Q_pred runs once; its ids must be predictions.
2. Q_CF is compiled (:mod:`cfdb.lang.cfql`); one base query computes every constant for every
   selected prediction in one DuckDB pass; the template is instantiated per row and the rows of
   a prediction OR-ed (:mod:`cfdb.ctable.instantiate`) into one normalized condition.
3. Each condition is checked with z3 over the active domains, with the instance's immutable
   features held: unsatisfiable ones are ``infeasible`` and never reach a generator.
4. ``EXPLAIN`` stops here and returns the conditions. Otherwise the generator runs for each
   feasible prediction; verified CFs go to ``CFs`` and ``Prediction_CFs``; statistics to
   ``CFQueries``; the statement returns Q_CF over the filled tables.

Options (``WITH``): ``n`` (CFs per prediction, default 1), ``distance`` (``tabular``, ``l0``,
``l1``), ``time_limit`` (seconds per prediction, default 10), ``seed``, ``n_jobs``, ``target``
(for multi-class models: the label CFs must get; default any other label), ``pool`` (for
``nearest``: a query whose rows are the candidate pool; default all instances); any other
option goes to the generator.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
import pyarrow as pa

from cfdb.ctable.condition import Domains, condition_hash, to_sql
from cfdb.ctable.instantiate import conditions as instantiate_conditions
from cfdb.ctable.solve import Solver
from cfdb.engine.handlers import handles
from cfdb.engine.handlers.models import columns_of, load_model, model_features
from cfdb.errors import CfdbDataError, CfdbError, CfdbSyntaxError, CfdbUnsupportedError
from cfdb.generators import GENERATORS, GenerationTask
from cfdb.generators.run import run_tasks
from cfdb.lang.cfql import Analyzer, Foreach
from cfdb.lang.parse import Statement
from cfdb.store import catalog
from cfdb.store import cfql as store_cfql
from cfdb.types import FeatureSpec

DEFAULT_GENERATOR = "growing_spheres"
_ENGINE_OPTIONS = {"n", "distance", "time_limit", "seed", "n_jobs", "target", "pool"}
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


def _compile(session: Any, node: Foreach, stmt: Statement) -> dict[str, Any]:
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
        records.append(
            {
                "PredictionId": int(pid),
                "ModelId": int(mid),
                "InstanceId": int(iid),
                "Label": label,
                "cond": cond,
                "Condition": to_sql(cond, types),
                "Hash": condition_hash(cond),
                "Status": "pending" if feasible else "infeasible",
                "instance": instance,
            }
        )
    return {"plan": plan, "features": features, "records": records, "solver_calls": solver.calls}


def _name_span(message: str, script: str, span: tuple[int, int]) -> tuple[int, int]:
    """Where in Q_CF a name quoted in DuckDB's message occurs (the base query DuckDB saw is
    generated, so its positions mean nothing to the user)."""
    text = script[span[0] : span[1]]
    for name in reversed(re.findall(r'"([^"]+)"', message.split("\n")[0])):
        found = re.search(rf"(\w+\.)?\b{re.escape(name)}\b", text)
        if found:
            return span[0] + found.start(), span[0] + found.end()
    return span


def _conditions_table(
    query_id: int, records: list[dict[str, Any]], batch_id: int | None = None
) -> pa.Table:
    return pa.table(
        {
            "QueryId": pa.array([query_id] * len(records), pa.int64()),
            "PredictionId": pa.array([r["PredictionId"] for r in records], pa.int64()),
            "InstanceId": pa.array([r["InstanceId"] for r in records], pa.int64()),
            "Condition": pa.array([r["Condition"] for r in records], pa.string()),
            "Hash": pa.array([r["Hash"] for r in records], pa.string()),
            "Status": pa.array([r["Status"] for r in records], pa.string()),
            "Error": pa.array([r.get("Error") for r in records], pa.string()),
            "BatchId": pa.array([batch_id] * len(records), pa.int64()),
        }
    )


@handles(Foreach)
def foreach(session: Any, node: Foreach, stmt: Statement) -> Any:
    started = time.perf_counter()
    store, script = session.store, stmt.script
    params = {k.lower(): v for k, v in node.params().items()}
    generator_name = str(node.args.get("using") or DEFAULT_GENERATOR).lower()
    try:
        generator_cls = GENERATORS.get(generator_name)
    except CfdbError as err:
        raise err.located(script, *node.span("using")) from None
    compiled = _compile(session, node, stmt)
    records, features = compiled["records"], compiled["features"]
    explain = bool(node.args.get("explain"))
    query_id = store_cfql.insert_query(
        store,
        text=stmt.text,
        generator=generator_name,
        params=params,
        mode="explain" if explain else "run",
    )
    if explain:
        store_cfql.insert_conditions(store, _conditions_table(query_id, records))
        store_cfql.finish_query(store, query_id, _stats(records, started, compiled, 0))
        return pa.table(
            {
                "QueryId": pa.array([query_id] * len(records), pa.int64()),
                "PredictionId": pa.array([r["PredictionId"] for r in records], pa.int64()),
                "InstanceId": pa.array([r["InstanceId"] for r in records], pa.int64()),
                "Condition": pa.array([r["Condition"] for r in records], pa.string()),
                "Status": pa.array([r["Status"] for r in records], pa.string()),
            }
        )
    calls = _generate(session, node, stmt, generator_cls, params, records, features, query_id)
    store_cfql.insert_conditions(store, _conditions_table(query_id, records))
    store_cfql.finish_query(store, query_id, _stats(records, started, compiled, calls))
    return store.query(compiled["plan"].result_sql(query_id))


def _stats(
    records: list[dict[str, Any]], started: float, compiled: dict[str, Any], calls: int
) -> dict[str, Any]:
    status = [r["Status"] for r in records]
    return {
        "Predictions": len(records),
        "ModelIds": sorted({r["ModelId"] for r in records}),
        "GeneratorCalls": calls,
        "Generated": sum(r.get("generated", 0) for r in records),
        "Reused": 0,
        "Infeasible": status.count("infeasible"),
        "Failed": status.count("failed"),
        "Seconds": time.perf_counter() - started,
    }


def _target(model: Any, label: str, wanted: Any) -> str | None:
    labels = [str(v) for v in model.labels]
    if wanted is not None:
        if str(wanted) not in labels:
            raise CfdbDataError(
                f"target {wanted!r} is not a label of model {model.name!r} ({', '.join(labels)})"
            )
        return str(wanted)
    if len(labels) == 2:
        return labels[1] if label == labels[0] else labels[0]
    return None  # multi-class: any other label


def _generate(
    session: Any,
    node: Foreach,
    stmt: Statement,
    generator_cls: Any,
    params: dict[str, Any],
    records: list[dict[str, Any]],
    features: list[FeatureSpec],
    query_id: int,
) -> int:
    """Run the generator for every pending record; write CFs and links; returns calls made."""
    store = session.store
    options = {k: v for k, v in params.items() if k in _ENGINE_OPTIONS}
    gen_params = {k: v for k, v in params.items() if k not in _ENGINE_OPTIONS}
    n = int(options.get("n", 1))
    distance = str(options.get("distance", "tabular")).lower()
    time_limit = float(options.get("time_limit", 10.0))
    seed = int(options.get("seed", session.seed))
    n_jobs = int(options.get("n_jobs", 1))
    pool = None
    if generator_cls.__dict__.get("uses_pool", True):
        pool_sql = str(options["pool"]) if "pool" in options else "SELECT * FROM Instances"
        pool_table = store.arrow(pool_sql)
        pool = {
            f.name: columns_of(pool_table)[f.name]
            for f in features
            if f.name in pool_table.column_names
        }
    calls = 0
    by_model: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        if r["Status"] == "pending":
            by_model.setdefault(r["ModelId"], []).append(r)
    next_cf = catalog.next_id(store, catalog.CFS, "CfId")
    cf_rows: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    for model_id, todo in by_model.items():
        name = store.execute("SELECT Name FROM Models WHERE ModelId = ?", [model_id])[0][0]
        _, model = load_model(session, name)
        try:
            generator = generator_cls(**gen_params).fit(model, features, pool)
        except TypeError as exc:
            raise CfdbDataError(f"generator {generator_cls.name!r}: {exc}") from None
        items = []
        for r in todo:
            target = _target(model, r["Label"], options.get("target"))
            if target is not None and target == r["Label"]:
                r["Status"], r["Error"] = "failed", "the prediction already has the target label"
                continue
            task = GenerationTask(
                instance=r["instance"],
                original_label=str(r["Label"]),
                target=target,
                condition=r["cond"],
                n=n,
                seed=seed + r["PredictionId"],
                distance=distance,
                params=gen_params,
            )
            items.append((r["PredictionId"], task))
        calls += len(items)
        with session.progress(f"{generator_cls.name} ({name})", len(items)) as advance:
            outcomes = run_tasks(
                generator, items, time_limit=time_limit, n_jobs=n_jobs, progress=advance
            )
        by_pid = {r["PredictionId"]: r for r in todo}
        for outcome in outcomes:
            r = by_pid[outcome.key]
            if outcome.error is not None or not outcome.count:
                r["Status"], r["Error"] = "failed", outcome.error or "no counterfactual found"
                continue
            r["Status"], r["generated"] = "satisfied", outcome.count
            for i in range(outcome.count):
                row = {f.name: _raw_value(f, outcome.rows[f.name][i]) for f in features}
                row.update(
                    CfId=next_cf,
                    ModelId=model_id,
                    Label=str(outcome.labels[i]),
                    Generator=generator_cls.name,
                )
                cf_rows.append(row)
                links.append(
                    {
                        "PredictionId": r["PredictionId"],
                        "CfId": next_cf,
                        "QueryId": query_id,
                        "Distance": float(outcome.distances[i]),
                        "Reused": False,
                    }
                )
                next_cf += 1
    if cf_rows:
        store_cfql.insert_cfs(store, pa.Table.from_pylist(cf_rows), pa.Table.from_pylist(links))
    return calls
