"""Grid data: checking CREATE GRID / WHATIF options, running their queries once, fixing the
units, features, classes and slices, writing a grid's definition and design, and loading a
grid's data back for training (the cell trainer's :class:`~cfdb.grid.cell.GridData`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from cfdb.engine.features import default_features
from cfdb.errors import CfdbDataError, CfdbError, CfdbPluginError, CfdbSyntaxError
from cfdb.exec import located_exec_options
from cfdb.grid import designs as designs_mod
from cfdb.grid import prepare
from cfdb.grid.cell import GridData
from cfdb.grid.metrics import METRICS
from cfdb.lang.grid_syntax import CreateGrid, WhatIf, referenced_relations
from cfdb.models import MODEL_KINDS
from cfdb.models import label_string as catalog_label
from cfdb.models.regressors import REGRESSION_KINDS
from cfdb.store import catalog
from cfdb.store import grid as gstore
from cfdb.store.catalog import quote
from cfdb.types import FeatureSpec

#: Options of the trailing ``WITH (...)`` of CREATE GRID / WHATIF.
GRID_OPTIONS = {
    "label",
    "key",
    "features",
    "encoding",
    "seed",
    "sensitive",
    "positive",
    "empty_value",
    "max_units",
    "lazy",
    "relation",
    "n_jobs",
    "executor",
    "address",
}
#: Options that may also be given among the model's parameters (as in CREATE MODEL).
_MODEL_SIDE = ("label", "features", "encoding", "seed")


# -- options ----------------------------------------------------------------------------------
def _options(node: CreateGrid | WhatIf, script: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model parameters, grid options), checked; model-side cfdb options moved over."""
    params = node.params()
    options = {k.lower(): v for k, v in node.options().items()}
    for key in list(params):
        if key.lower() in _MODEL_SIDE:
            options.setdefault(key.lower(), params.pop(key))
    for key in options:
        if key not in GRID_OPTIONS:
            p = node.option(key)
            raise CfdbSyntaxError(
                f"unknown grid option {key!r}; known: {', '.join(sorted(GRID_OPTIONS))}"
            ).located(script, *(p.span if p else node.span("metrics")))

    def span_of(name: str) -> tuple[int, int]:
        p = node.option(name)
        return p.span if p else node.span("metrics")

    located_exec_options(script, span_of, options)
    return params, options


def _task_of(node: Any, kind: str, metrics: list[str], script: str) -> str:
    tasks = set()
    for m in metrics:
        try:
            tasks.add(METRICS.get(m).task)
        except CfdbPluginError as err:
            raise err.located(script, *node.span("metrics")) from None
    if len(tasks) > 1:
        raise CfdbDataError(
            "a grid's metrics must be all classification or all regression metrics"
        ).located(script, *node.span("metrics"))
    task = tasks.pop()
    registry = MODEL_KINDS if task == "classification" else REGRESSION_KINDS
    if kind.lower() not in registry:
        try:
            registry.get(kind)
        except CfdbPluginError as err:
            err.hint = (
                "regression metrics need a regression kind"
                if task == "regression"
                else "classification metrics need a classifier kind"
            )
            raise err.located(script, *node.span("kind")) from None
    return task


# -- loading the data -------------------------------------------------------------------------
def _lookup(names: Sequence[str], name: str) -> str | None:
    for n in names:
        if n.lower() == name.lower():
            return n
    return None


def _columns(table: pa.Table) -> dict[str, np.ndarray]:
    return {n: table.column(n).to_numpy(zero_copy_only=False) for n in table.column_names}


def _run(store: Any, text: str, script: str, start: int) -> tuple[pa.Table, list[tuple[str, str]]]:
    rel = store.run_script_text(text, script, start)
    if rel is None:
        raise CfdbDataError("expected a query that returns rows").located(
            script, start, start + len(text)
        )
    types = [(c, str(t)) for c, t in zip(rel.columns, rel.types, strict=True)]
    return rel.to_arrow_table(), types


def _key_column(store: Any, train_text: str, columns: Sequence[str], option: Any) -> str | None:
    if option:
        found = _lookup(columns, str(option))
        if found is None:
            raise CfdbDataError(f"key column {option!r} is not returned by the training query")
        return found
    found = _lookup(columns, "InstanceId")
    if found:
        return found
    tables = [r for r in referenced_relations(train_text) if not r.function]
    if len(tables) == 1:
        for col in gstore.primary_key(store, tables[0].name, tables[0].schema):
            found = _lookup(columns, col)
            if found:
                return found
    return None


def _feature_specs(
    store: Any,
    types: list[tuple[str, str]],
    option: Any,
    choose: dict[str, Any],
    script: str,
    span: tuple[int, int],
) -> tuple[list[FeatureSpec], list[str]]:
    """The grid's features (the option, else :func:`default_features` with ``choose``) and
    the columns left out, with why."""
    names = [c for c, _ in types]
    notes: list[str] = []
    declared = {f.name.lower(): f for f in catalog.read_features(store)}
    type_of = {c.lower(): t for c, t in types}
    if option is not None:
        wanted = [option] if isinstance(option, str) else list(option)
        missing = [w for w in wanted if _lookup(names, str(w)) is None]
        if missing:
            raise CfdbDataError(
                f"feature {missing[0]!r} is not returned by the training query"
            ).located(script, *span)
        chosen = [_lookup(names, str(w)) for w in wanted]
    else:
        # Over Instances (every declared feature returned), the feature space is Features.
        use_declared = bool(declared) and all(_lookup(names, n) for n in declared)
        choice = default_features(
            [(c, catalog.feature_type_of(t)) for c, t in types],
            declared=[f.name for f in declared.values()] if use_declared else None,
            **choose,
        )
        chosen, notes = list(choice.features), choice.notes()
    specs = []
    for c in chosen:
        assert c is not None
        spec = declared.get(c.lower())
        if spec is not None:
            specs.append(FeatureSpec(c, spec.type, spec.domain, mutable=spec.mutable))
            continue
        ftype = catalog.feature_type_of(type_of[c.lower()])
        if ftype is None:
            raise CfdbDataError(f"column {c!r} ({type_of[c.lower()]}) cannot be a feature").located(
                script, *span
            )
        specs.append(FeatureSpec(c, ftype))
    if not specs:
        raise CfdbDataError("the training query returns no feature columns").located(script, *span)
    return specs, notes


class GridDataChanged(CfdbDataError):
    """The training query no longer returns the units the grid was created with."""


@dataclass
class Prepared:
    """A grid's data, loaded: what the cell trainer needs plus the unit bookkeeping."""

    data: GridData
    units: prepare.Units
    key_values: np.ndarray | None
    columns: dict[str, np.ndarray]


def _prepare(
    session: Any, row: dict[str, Any], script: str = "", span: tuple[int, int] = (0, 0)
) -> Prepared:
    """Load a grid's training universe and evaluation data as stored in its ``Grids`` row."""
    store = session.store
    options = row["Options"]
    train, _ = _run(store, row["TrainQuery"], row["TrainQuery"], 0)
    evaluation, _ = _run(store, row["EvalQuery"], row["EvalQuery"], 0)
    cols, ecols = _columns(train), _columns(evaluation)
    features = _specs_from_row(row)
    label = _lookup(list(cols), row["LabelColumn"])
    elabel = _lookup(list(ecols), row["LabelColumn"])
    if label is None or elabel is None:
        raise CfdbDataError(
            f"the grid's label column {row['LabelColumn']!r} is gone from its queries"
        )
    for f in features:
        if f.name not in ecols:
            found = _lookup(list(ecols), f.name)
            if found is None:
                raise CfdbDataError(
                    f"the evaluation query does not return feature {f.name!r}"
                ).located(script, *span)
            ecols[f.name] = ecols[found]
    unit_col = row["UnitsBy"] or row["KeyColumn"]
    key_values = cols[_lookup(list(cols), unit_col)] if unit_col else None
    units = prepare.make_units(
        key_values, train.num_rows, grouped=bool(row["UnitsBy"]), what=str(unit_col)
    )
    if units.ids != gstore.units(store, row["Name"])[0]:
        raise GridDataChanged(
            f"the training data of grid {row['Name']!r} changed since it was created (its units "
            "differ)",
            hint="drop and create the grid again",
        )
    task = row["Task"]
    if task == "classification":
        classes = list(row["Classes"])
        index = {c: i for i, c in enumerate(classes)}
        train_y = np.fromiter(
            (index[catalog_label(v)] for v in cols[label]), np.int64, train.num_rows
        )
        _, _, eval_y = prepare.class_codes(np.array(classes, dtype=object), ecols[elabel])
        positive = prepare.positive_code(classes, options.get("positive"))
        target_mean = 0.0
    else:
        classes, positive = [], 0
        train_y = cols[label].astype(float)
        eval_y = ecols[elabel].astype(float)
        target_mean = float(np.mean(train_y)) if len(train_y) else 0.0
    slice_defs = gstore.slices(store, row["Name"])
    slice_col = _lookup(list(ecols), row["SliceBy"]) if row["SliceBy"] else None
    by_value = {
        name: rows
        for name, _, rows in prepare.slice_rows(
            ecols[slice_col] if slice_col else None, evaluation.num_rows
        )
    }
    slices = [
        (int(s["SliceId"]), by_value.get(s["Name"], np.zeros(0, dtype=np.int64)))
        for s in slice_defs
    ]
    sensitive = options.get("sensitive")
    groups = None
    if sensitive:
        found = _lookup(list(ecols), str(sensitive))
        if found is None:
            raise CfdbDataError(
                f"the evaluation query does not return the sensitive column {sensitive!r}"
            )
        groups = np.array([catalog_label(v) for v in ecols[found]], dtype=object)
    data = GridData(
        kind=row["ModelKind"],
        params=row["ModelParams"],
        features=features,
        task=task,
        classes=classes,
        positive=positive,
        train={f.name: cols[f.name] for f in features},
        train_y=train_y,
        unit_rows=units.rows,
        eval={f.name: ecols[f.name] for f in features},
        eval_y=eval_y,
        slices=slices,
        groups=groups,
        metrics=list(row["Metrics"]),
        encoding=str(options.get("encoding") or "onehot"),
        seed=int(row["Seed"]) if row["Seed"] is not None else None,
        empty_value=None if options.get("empty_value") is None else float(options["empty_value"]),
        target_mean=target_mean,
    )
    return Prepared(data, units, key_values, cols)


def _specs_from_row(row: dict[str, Any]) -> list[FeatureSpec]:
    specs = row["Options"].get("feature_specs") or []
    return [FeatureSpec.from_dict(d) for d in specs]


# -- CREATE GRID ------------------------------------------------------------------------------
def _define_grid(
    session: Any,
    node: CreateGrid | WhatIf,
    script: str,
    *,
    name: str,
    kind: str,
    design: str,
    design_args: dict[str, Any],
    units_by: str | None,
    grid_kind: str = "grid",
) -> tuple[dict[str, Any], prepare.Units, dict[str, np.ndarray]]:
    """Validate, run the queries once, and write the Grids/GridUnits/GridMetrics/EvalSlices rows."""
    store = session.store
    params, options = _options(node, script)
    metrics = list(dict.fromkeys(node.args["metrics"]))
    task = _task_of(node, kind, metrics, script)
    train_q, eval_q = node.args["train"], node.args["evaluate"]
    train, train_types = _run(store, train_q.text, script, train_q.start)
    evaluation, eval_types = _run(store, eval_q.text, script, eval_q.start)
    names = [c for c, _ in train_types]
    tspan, espan = node.span("train"), node.span("evaluate")
    label = _lookup(names, str(options.get("label") or "GroundTruth"))
    if label is None:
        raise CfdbDataError(
            f"the training query returns no label column {options.get('label') or 'GroundTruth'!r}",
            hint="name it with WITH (label = 'column')",
        ).located(script, *tspan)
    if _lookup([c for c, _ in eval_types], label) is None:
        raise CfdbDataError(f"the evaluation query returns no label column {label!r}").located(
            script, *espan
        )
    if train.num_rows == 0:
        raise CfdbDataError("the training query returns no rows").located(script, *tspan)
    if evaluation.num_rows == 0:
        raise CfdbDataError("the evaluation query returns no rows").located(script, *espan)
    units_col = None
    if units_by:
        units_col = _lookup(names, units_by)
        if units_col is None:
            raise CfdbDataError(
                f"UNITS BY column {units_by!r} is not returned by the training query"
            ).located(script, *node.span("units_by"))
    try:
        key = _key_column(store, train_q.text, names, options.get("key"))
    except CfdbError as err:
        p = node.option("key")
        raise err.located(script, *(p.span if p else tspan)) from None
    choose: dict[str, Any] = {
        "label": label,
        "keys": [key] if key else [],
        "units": units_col,
        "available": [c for c, _ in eval_types],
    }
    if design == "strikes":
        choose["excluded"] = {str(design_args["by"]): "STRIKES BY column"}
    fspan = node.option("features").span if node.option("features") else tspan
    specs, not_features = _feature_specs(
        store, train_types, options.get("features"), choose, script, fspan
    )
    cols, ecols = _columns(train), _columns(evaluation)
    specs = prepare.with_domains(specs, cols, ecols)
    slice_by = node.args.get("slice_by")
    slice_col = None
    if slice_by:
        slice_col = _lookup([c for c, _ in eval_types], slice_by)
        if slice_col is None:
            raise CfdbDataError(
                f"SLICE BY column {slice_by!r} is not returned by the evaluation query"
            ).located(script, *node.span("slice_by"))
    sensitive = options.get("sensitive")
    if any(METRICS.get(m).needs_sensitive for m in metrics) and not sensitive:
        raise CfdbDataError(
            "metric equalized_odds needs a sensitive column", hint="add WITH (sensitive = 'column')"
        ).located(script, *node.span("metrics"))
    if sensitive and _lookup([c for c, _ in eval_types], str(sensitive)) is None:
        raise CfdbDataError(
            f"the evaluation query returns no sensitive column {sensitive!r}"
        ).located(script, *node.option("sensitive").span)
    classes: list[str] | None = None
    if task == "classification":
        try:
            classes, _, _ = prepare.class_codes(cols[label], ecols[_lookup(list(ecols), label)])
            prepare.positive_code(classes, options.get("positive"))
        except CfdbError as err:
            raise err.located(script, *tspan) from None
    try:
        unit_keys = cols[units_col or key] if (units_col or key) else None
        units = prepare.make_units(
            unit_keys, train.num_rows, grouped=bool(units_col), what=str(units_col or key)
        )
    except CfdbError as err:
        raise err.located(script, *(node.span("units_by") if units_col else tspan)) from None
    relation = options.get("relation")
    if relation is None:
        tables = [r.name for r in referenced_relations(train_q.text) if not r.function]
        base = tables[0] if tables else None
        relation = f"{base}.{units_col}" if base and units_col else base
    seed = int(options.get("seed", session.seed))
    stored_options = {k: v for k, v in options.items() if k != "features"}
    stored_options["feature_specs"] = [s.to_dict() for s in specs]
    stored_options["not_features"] = not_features
    gstore.insert_grid(
        store,
        {
            "Name": name,
            "Kind": grid_kind,
            "TrainQuery": train_q.text,
            "UnitsBy": units_col,
            "KeyColumn": key,
            "LabelColumn": label,
            "Relation": relation,
            "NUnits": len(units.ids),
            "NRows": train.num_rows,
            "Design": design,
            "DesignArgs": design_args,
            "EvalQuery": eval_q.text,
            "SliceBy": slice_col,
            "ModelKind": kind.lower(),
            "ModelParams": params,
            "Features": [s.name for s in specs],
            "Metrics": metrics,
            "Task": task,
            "Classes": classes,
            "Options": stored_options,
            "Seed": seed,
            "Statement": script[node.start : node.end],
        },
    )
    gstore.insert_rows(
        store,
        "GridUnits",
        {
            "Grid": [name] * len(units.ids),
            "UnitIndex": pa.array(range(len(units.ids)), pa.int32()),
            "UnitId": units.ids,
            "TupleId": pa.array(units.tuple_ids, pa.int64()),
            "Rows": pa.array([len(r) for r in units.rows], pa.int64()),
        },
    )
    gstore.insert_rows(
        store,
        "GridMetrics",
        {
            "Grid": [name] * len(metrics),
            "Metric": metrics,
            "HigherIsBetter": [METRICS.get(m).higher_is_better for m in metrics],
            "Best": [float(METRICS.get(m).best) for m in metrics],
        },
    )
    slice_values = ecols[slice_col] if slice_col else None
    slice_list = prepare.slice_rows(slice_values, evaluation.num_rows)
    gstore.insert_rows(
        store,
        "EvalSlices",
        {
            "Grid": [name] * len(slice_list),
            "SliceId": pa.array(range(len(slice_list)), pa.int64()),
            "Name": [s[0] for s in slice_list],
            "SliceColumn": [slice_col if s[1] is not None else None for s in slice_list],
            "SliceValue": [s[1] for s in slice_list],
            "Predicate": [
                None if s[1] is None else f"{quote(slice_col or '')} = {catalog.literal(s[1])}"
                for s in slice_list
            ],
            "Rows": pa.array([len(s[2]) for s in slice_list], pa.int64()),
        },
    )
    row = gstore.grid_row(store, name)
    assert row is not None
    return row, units, cols


def _write_plan(store: Any, grid: str, design: str, seed: int, plan: designs_mod.Plan) -> int:
    """Write a plan's subsets, members and pairs; returns the number of subsets."""
    first = gstore.next_subset_id(store, grid)
    sub: dict[str, list[Any]] = {
        k: [] for k in ("SubsetId", "Role", "Size", "Representation", "Draw", "Tag")
    }
    mem_ids: list[np.ndarray] = []
    mem_units: list[np.ndarray] = []
    for i, spec in enumerate(plan.subsets):
        sid = first + i
        sub["SubsetId"].append(sid)
        sub["Role"].append(spec.role)
        sub["Size"].append(spec.size)
        sub["Draw"].append(spec.draw)
        sub["Tag"].append(spec.tag)
        if spec.units is not None:
            sub["Representation"].append("members")
            listed = spec.units
        elif spec.removed is not None:
            sub["Representation"].append("complement")
            listed = spec.removed
        else:
            sub["Representation"].append("prefix")
            listed = ()
        if listed:
            mem_ids.append(np.full(len(listed), sid, dtype=np.int64))
            mem_units.append(np.asarray(listed, dtype=np.int32))
    n = len(plan.subsets)
    gstore.insert_rows(
        store,
        "TrainSubsets",
        {
            "Grid": [grid] * n,
            "SubsetId": pa.array(sub["SubsetId"], pa.int64()),
            "Design": [design] * n,
            "Role": sub["Role"],
            "Size": pa.array(sub["Size"], pa.int64()),
            "Seed": pa.array([seed] * n, pa.int64()),
            "Representation": sub["Representation"],
            "Draw": pa.array(sub["Draw"], pa.int32()),
            "Tag": pa.array(sub["Tag"], pa.string()),
        },
    )
    if mem_ids:
        ids = np.concatenate(mem_ids)
        gstore.insert_rows(
            store,
            "TrainSubsetMembers",
            {
                "Grid": pa.array(np.full(len(ids), grid, dtype=object), pa.string()),
                "SubsetId": ids,
                "UnitIndex": np.concatenate(mem_units),
            },
        )
    if plan.pairs:
        p = plan.pairs
        first_pair = gstore.next_pair_id(store, grid)
        sizes = [plan.subsets[x.without].size for x in p]
        gstore.insert_rows(
            store,
            "SubsetPairs",
            {
                "Grid": pa.array([grid] * len(p), pa.string()),
                "PairId": pa.array(range(first_pair, first_pair + len(p)), pa.int64()),
                "Kind": [x.kind for x in p],
                "UnitIndex": pa.array(
                    [x.unit if x.kind == "unit" else None for x in p], pa.int32()
                ),
                "GroupName": pa.array(
                    [x.unit if x.kind == "group" else None for x in p], pa.string()
                ),
                "WithoutId": pa.array([first + x.without for x in p], pa.int64()),
                "WithId": pa.array([first + x.with_ for x in p], pa.int64()),
                "Size": pa.array(sizes, pa.int64()),
                "Draw": pa.array([x.draw for x in p], pa.int32()),
                "Position": pa.array([x.position for x in p], pa.int32()),
                "Truncated": pa.array([False] * len(p), pa.bool_()),
            },
        )
    return n


def _strike_groups(
    cols: dict[str, np.ndarray], units: prepare.Units, by: str, script: str, span: tuple[int, int]
) -> dict[str, list[int]]:
    column = _lookup(list(cols), by)
    if column is None:
        raise CfdbDataError(
            f"STRIKES BY column {by!r} is not returned by the training query"
        ).located(script, *span)
    values = np.array(
        ["NULL" if v is None else catalog_label(v) for v in cols[column]], dtype=object
    )
    groups: dict[str, set[int]] = {}
    for unit, rows in enumerate(units.rows):
        for value in set(values[rows].tolist()):
            groups.setdefault(value, set()).add(unit)
    return {g: sorted(u) for g, u in groups.items()}
