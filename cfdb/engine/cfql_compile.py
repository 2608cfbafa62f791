"""CFQL phase 1, compile: each FOREACH's requests (CFDB paper, section 3.2).

Q_pred runs once; one base query computes every constant for every selected prediction; the
template is instantiated per row and the rows of a prediction OR-ed into one normalized
condition; z3 checks it over the active domains with the instance's immutable features held
(``infeasible`` otherwise). Bounds on ``C.Score`` become each request's
:class:`~cfdb.generators.base.ScoreBound`, shown in and hashed with its condition. Every
query is registered in ``CFQueries``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from cfdb.ctable.condition import Domains, condition_hash, to_sql
from cfdb.ctable.instantiate import conditions as instantiate_conditions
from cfdb.ctable.solve import Solver
from cfdb.engine.cfql_plan import (
    BATCH_OPTIONS,
    DEFAULT_GENERATOR,
    MAX_ROWS_PER_PREDICTION,
    Query,
    Request,
)
from cfdb.engine.handlers.models import model_features
from cfdb.errors import CfdbDataError, CfdbError, CfdbSyntaxError, CfdbUnsupportedError
from cfdb.exec import located_exec_options
from cfdb.generators import GENERATORS
from cfdb.generators.base import ScoreBound
from cfdb.lang.cfql import Analyzer, CfqlPlan, Foreach
from cfdb.lang.parse import Statement
from cfdb.store import catalog
from cfdb.store import cfql as store_cfql
from cfdb.types import FeatureSpec

if TYPE_CHECKING:
    from cfdb.engine.session import Session


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
        located_exec_options(stmt.script, lambda name, node=node: node.param(name).span, params)
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
