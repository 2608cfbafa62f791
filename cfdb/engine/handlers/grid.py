"""CREATE GRID, MATERIALIZE GRID, DROP GRID, WHATIF and lazy filling: the data-counterfactual
grid as tables (Nick Vincent, "Exploring Data Counterfactuals").

``CREATE GRID`` runs the training query once to fix the units, writes the design's subsets
and pairs, the evaluation slices and a view named after the grid; it trains nothing.
``MATERIALIZE GRID`` trains the missing cells through an executor and writes each finished
chunk of cells in its own transaction (the documented exception to one transaction per
statement): an interrupted run (Ctrl-C, a killed process) keeps every committed cell and a
rerun trains only the rest. A Ctrl-C that lands while a chunk is being written is held until
the write commits. ``PERMUTATIONS m TRUNCATE t`` trains prefixes position by position and
truncates a permutation once its value is within ``t·|v(all)|`` of the full set's (first
metric, slice ``all``), as TMC-Shapley does.

Lazy filling: a hook runs before every plain SQL statement; if the statement's SELECTs read a
grid's view (``FROM g``) or call a grid macro on it (``FROM shapley('g')``), the grid's
missing cells are trained first (grid option ``lazy = false`` turns this off).

``WHATIF`` keeps one hidden grid per (training query, evaluation query, model, metrics):
its full set is the baseline and each what-if is one more row, found again by a key of its
edit, so repeating a what-if trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from cfdb.engine.handlers import handles
from cfdb.errors import (
    CfdbCatalogError,
    CfdbDataError,
    CfdbError,
    CfdbPluginError,
    CfdbSyntaxError,
)
from cfdb.exec import Executor, Progress, chunked, make_executor
from cfdb.grid import designs as designs_mod
from cfdb.grid import prepare, scaling
from cfdb.grid.cell import CellResult, CellTask, GridData, run_cells
from cfdb.grid.metrics import METRICS
from cfdb.lang.grid_syntax import (
    CreateGrid,
    DropGrid,
    MaterializeGrid,
    WhatIf,
    referenced_relations,
)
from cfdb.lang.parse import Statement
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
#: Options of MATERIALIZE GRID.
RUN_OPTIONS = {"n_jobs", "executor", "address", "progress", "retry_failed"}
#: Options that may also be given among the model's parameters (as in CREATE MODEL).
_MODEL_SIDE = ("label", "features", "encoding", "seed")
#: Table macros whose first argument names a grid (lazy filling looks for these).
GRID_MACROS = {
    "grid_cells",
    "marginal_contributions",
    "marginal_by_size",
    "loo",
    "shapley",
    "beta_shapley",
    "banzhaf",
    "strikes",
    "scaling_law",
    "grid_data_values",
}
#: Callables ``listener(grid, subsets_written)`` run after each committed chunk of cells.
COMMIT_LISTENERS: list[Callable[[str, int], None]] = []
#: Subsets handed to the executor at once (bounds memory on large grids).
_BLOCK = 2000


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
    exclude: set[str],
    script: str,
    span: tuple[int, int],
) -> list[FeatureSpec]:
    names = [c for c, _ in types]
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
    elif declared and all(_lookup(names, n) for n in declared):
        chosen = [_lookup(names, f.name) for f in declared.values()]
        chosen = [c for c in chosen if c and c.lower() not in exclude]
    else:
        chosen = [
            c
            for c in names
            if c.lower() not in exclude and catalog.feature_type_of(type_of[c.lower()]) is not None
        ]
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
    return specs


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
        raise CfdbDataError(
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
    exclude = {label.lower(), "split", "instanceid"} | {c.lower() for c in (key, units_col) if c}
    if design == "strikes":
        exclude.add(str(design_args["by"]).lower())
    fspan = node.option("features").span if node.option("features") else tspan
    specs = _feature_specs(store, train_types, options.get("features"), exclude, script, fspan)
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


@handles(CreateGrid)
def create_grid(session: Any, node: CreateGrid, stmt: Statement) -> pa.Table:
    store, script = session.store, stmt.script
    name = str(node.args["this"])
    existing = gstore.grid_row(store, name)
    if existing is not None:
        if not node.args.get("replace"):
            raise CfdbCatalogError(
                f"grid {name!r} already exists", hint="use CREATE OR REPLACE GRID, or DROP GRID"
            ).located(script, *node.span("name"))
        gstore.delete_grid(store, existing["Name"])
    elif store.table_exists(name):
        raise CfdbCatalogError(
            f"a table or view called {name!r} exists; a grid's view would replace it"
        ).located(script, *node.span("name"))
    design, args = str(node.args["design"]), dict(node.args.get("design_args") or {})
    try:
        design_fn = designs_mod.DESIGNS.get(design)
    except CfdbError as err:
        raise err.located(script, *node.span("design")) from None
    row, units, cols = _define_grid(
        session,
        node,
        script,
        name=name,
        kind=str(node.args["kind"]),
        design=design,
        design_args=args,
        units_by=node.args.get("units_by"),
    )
    groups = None
    if design == "strikes":
        groups = _strike_groups(cols, units, str(args["by"]), script, node.span("design"))
    ctx = designs_mod.DesignContext(len(units.ids), int(row["Seed"]), row["Options"], groups)
    try:
        plan = design_fn(ctx, args)
    except CfdbError as err:
        raise err.located(script, *node.span("design")) from None
    n = _write_plan(store, name, design, int(row["Seed"]), plan)
    gstore.create_view(store, name)
    n_slices = len(gstore.slices(store, name))
    return pa.table(
        {
            "Grid": [name],
            "Units": [len(units.ids)],
            "Subsets": [n],
            "Pairs": [len(plan.pairs)],
            "Slices": [n_slices],
            "Metrics": [len(row["Metrics"])],
            "Cells": [n * n_slices * len(row["Metrics"])],
        }
    )


@handles(DropGrid)
def drop_grid(session: Any, node: DropGrid, stmt: Statement) -> pa.Table | None:
    name = str(node.args["this"])
    row = gstore.grid_row(session.store, name)
    if row is None:
        if node.args.get("exists"):
            return None
        raise CfdbCatalogError(f"grid {name!r} does not exist").located(
            stmt.script, *node.span("name")
        )
    gstore.delete_grid(session.store, row["Name"])
    return pa.table({"Dropped": [row["Name"]]})


# -- training cells ---------------------------------------------------------------------------
@contextmanager
def _hold_interrupts() -> Iterator[None]:
    """Delay a Ctrl-C until the block ends, so a chunk of cells is written whole."""
    try:
        previous = signal.getsignal(signal.SIGINT)
        received: list[Any] = []
        signal.signal(signal.SIGINT, lambda *a: received.append(a))
    except ValueError:  # not the main thread: signals cannot be handled here anyway
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


def _cell_rows(
    grid: str, kind: str, results: Sequence[CellResult], data: GridData
) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {
        k: []
        for k in (
            "SubsetId",
            "SliceId",
            "Metric",
            "Value",
            "Seconds",
            "Status",
            "Error",
            "TrainRows",
        )
    }
    for r in results:
        values = (
            r.values
            if r.status == "ok"
            else [(sid, m, None) for sid, _ in data.slices for m in data.metrics]
        )
        for sid, metric, value in values:
            out["SubsetId"].append(r.subset_id)
            out["SliceId"].append(sid)
            out["Metric"].append(metric)
            out["Value"].append(value)
            out["Seconds"].append(r.seconds)
            out["Status"].append(r.status)
            out["Error"].append(r.error)
            out["TrainRows"].append(r.rows)
    n = len(out["SubsetId"])
    return {
        "Grid": pa.array([grid] * n, pa.string()),
        "SubsetId": pa.array(out["SubsetId"], pa.int64()),
        "SliceId": pa.array(out["SliceId"], pa.int64()),
        "Metric": pa.array(out["Metric"], pa.string()),
        "Value": pa.array(out["Value"], pa.float64()),
        "ModelKind": pa.array([kind] * n, pa.string()),
        "TrainRows": pa.array(out["TrainRows"], pa.int64()),
        "Seconds": pa.array(out["Seconds"], pa.float64()),
        "Status": pa.array(out["Status"], pa.string()),
        "Error": pa.array(out["Error"], pa.string()),
    }


def _tasks(
    session: Any, row: dict[str, Any], prepared: Prepared, ids: Sequence[int]
) -> list[CellTask]:
    store, grid = session.store, row["Name"]
    rows = gstore.subsets(store, grid, ids)
    members = gstore.members(store, grid, rows, len(prepared.units.ids))
    tasks = []
    for r in rows:
        sid = int(r["SubsetId"])
        task = CellTask(sid, members[sid])
        edit = r["Edit"]
        if edit in ("flip_labels", "reweight"):
            idx, weights = gstore.edits(store, grid, sid)
            unit_rows = (
                np.concatenate([prepared.units.rows[i] for i in idx])
                if len(idx)
                else np.zeros(0, np.int64)
            )
            if edit == "flip_labels":
                task.flip = unit_rows
            else:
                reps = [len(prepared.units.rows[i]) for i in idx]
                task.weights = (unit_rows, np.repeat(weights, reps))
        elif edit == "add":
            task.extra = _added_rows(session, row, prepared, r["EditQuery"])
        tasks.append(task)
    return tasks


def _added_rows(
    session: Any, row: dict[str, Any], prepared: Prepared, text: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    table, _ = _run(session.store, text, text, 0)
    cols = _columns(table)
    data = prepared.data
    out = {}
    for f in data.features:
        found = _lookup(list(cols), f.name)
        if found is None:
            raise CfdbDataError(f"the ADD query does not return feature {f.name!r}")
        out[f.name] = cols[found]
    label = _lookup(list(cols), row["LabelColumn"])
    if label is None:
        raise CfdbDataError(f"the ADD query returns no label column {row['LabelColumn']!r}")
    if data.task == "classification":
        index = {c: i for i, c in enumerate(data.classes)}
        unknown = [v for v in cols[label] if catalog_label(v) not in index]
        if unknown:
            raise CfdbDataError(
                f"the ADD query has label {catalog_label(unknown[0])!r}, unknown to the grid"
            )
        y = np.array([index[catalog_label(v)] for v in cols[label]], dtype=np.int64)
    else:
        y = cols[label].astype(float)
    return out, y


@dataclass
class RunConfig:
    executor: str
    n_jobs: int
    address: str | None
    progress: bool | None


def _run_config(session: Any, row: dict[str, Any], params: dict[str, Any]) -> RunConfig:
    options = row["Options"]

    def pick(key: str, default: Any) -> Any:
        for source in (params, options):
            if source.get(key) is not None:
                return source[key]
        return getattr(session, key, None) if getattr(session, key, None) is not None else default

    return RunConfig(
        executor=str(pick("executor", "local")),
        n_jobs=int(pick("n_jobs", 1)),
        address=pick("address", None),
        progress=params.get("progress"),
    )


def _train(
    session: Any,
    row: dict[str, Any],
    prepared: Prepared,
    ids: Sequence[int],
    executor: Executor,
    progress: Progress,
    started: float,
) -> int:
    """Train ``ids`` and write their cells chunk by chunk; returns the number written."""
    store, grid = session.store, row["Name"]
    written = 0
    if not ids:
        return 0
    # one block of subsets at a time bounds the memory of large grids
    for block_start in range(0, len(ids), _BLOCK):
        block = ids[block_start : block_start + _BLOCK]
        tasks = _tasks(session, row, prepared, block)
        # In-process, every cell is its own chunk: each is committed as soon as it finishes.
        chunks = chunked(tasks, executor.workers) if executor.workers > 1 else [[t] for t in tasks]
        results_iter = executor.map_chunks(run_cells, prepared.data, chunks)
        try:
            for results in results_iter:
                with _hold_interrupts(), store.transaction():
                    gstore.insert_rows(
                        store,
                        "GridCells",
                        _cell_rows(grid, row["ModelKind"], results, prepared.data),
                    )
                written += len(results)
                progress.advance(len(results), time.perf_counter() - started)
                for listener in COMMIT_LISTENERS:
                    listener(grid, written)
        finally:
            close = getattr(results_iter, "close", None)
            if close:
                close()
    return written


def fill(
    session: Any, grid: str, *, limit: int | None = None, params: dict[str, Any] | None = None
) -> pa.Table:
    """Train the missing cells of ``grid`` (at most ``limit`` subsets); the MATERIALIZE work."""
    store = session.store
    params = params or {}
    row = gstore.require_grid(store, grid)
    grid = row["Name"]
    if params.get("retry_failed"):
        with store.transaction():
            store.execute("DELETE FROM GridCells WHERE Grid = ? AND Status = 'failed'", [grid])
    missing = gstore.missing_subsets(store, grid)
    done_before, _ = gstore.cell_count(store, grid)
    started = time.perf_counter()
    written = 0
    if missing and (limit is None or limit > 0):
        config = _run_config(session, row, params)
        prepared = _prepare(session, row)
        budget = len(missing) if limit is None else min(limit, len(missing))
        executor = make_executor(config.executor, config.n_jobs, config.address)
        with executor, Progress(f"grid {grid}", budget, enabled=config.progress) as progress:
            if row["Design"] == "permutations" and row["DesignArgs"].get("truncate") is not None:
                written = _fill_truncated(
                    session, row, prepared, executor, progress, started, budget, set(missing)
                )
            else:
                written = _train(
                    session, row, prepared, missing[:budget], executor, progress, started
                )
        with store.transaction():
            _refresh_scaling_fits(store, row)
    seconds = time.perf_counter() - started
    failed = store.execute(
        "SELECT count(DISTINCT SubsetId) FROM GridCells WHERE Grid = ? AND Status = 'failed'",
        [grid],
    )[0][0]
    remaining = len(gstore.missing_subsets(store, grid))
    return pa.table(
        {
            "Grid": [grid],
            "Trained": [written],
            "AlreadyDone": [done_before],
            "Remaining": [remaining],
            "Failed": [int(failed)],
            "Seconds": [round(seconds, 3)],
            "CellsPerSecond": [round(written / seconds, 2) if seconds > 0 and written else None],
        }
    )


def _fill_truncated(
    session: Any,
    row: dict[str, Any],
    prepared: Prepared,
    executor: Executor,
    progress: Progress,
    started: float,
    budget: int,
    missing: set[int],
) -> int:
    """TMC-Shapley: train prefixes position by position, truncating converged permutations."""
    store, grid = session.store, row["Name"]
    tol = float(row["DesignArgs"]["truncate"])
    metric = row["Metrics"][0]
    full_id = int(
        store.execute("SELECT SubsetId FROM TrainSubsets WHERE Grid = ? AND Role = 'full'", [grid])[
            0
        ][0]
    )
    written = 0
    ends = {
        int(r[0])
        for r in store.execute(
            "SELECT SubsetId FROM TrainSubsets WHERE Grid = ? AND Role IN ('full', 'empty')", [grid]
        )
    }
    first = sorted(ends & missing)
    written += _train(session, row, prepared, first[:budget], executor, progress, started)
    missing -= set(first[:budget])
    full_value = gstore.cell_values(store, grid, [full_id], 0, metric).get(full_id)
    positions = store.execute(
        "SELECT DISTINCT Position FROM SubsetPairs WHERE Grid = ? ORDER BY 1", [grid]
    )
    for (position,) in positions:
        if written >= budget:
            break
        wave = store.execute(
            "SELECT Draw, WithId FROM SubsetPairs WHERE Grid = ? AND Position = ? AND NOT Truncated",
            [grid, position],
        )
        todo = sorted({int(w) for _, w in wave if int(w) in missing})[: budget - written]
        written += _train(session, row, prepared, todo, executor, progress, started)
        missing -= set(todo)
        if full_value is None:
            continue
        values = gstore.cell_values(store, grid, [w for _, w in wave], 0, metric)
        converged = {
            int(d): int(position)
            for d, w in wave
            if values.get(int(w)) is not None
            and abs(values[int(w)] - full_value) < tol * abs(full_value)
        }
        if converged:
            with store.transaction():
                gstore.truncate_after(store, grid, converged)
    return written


def _refresh_scaling_fits(store: Any, row: dict[str, Any]) -> None:
    grid = row["Name"]
    data = store.arrow(
        "SELECT c.SliceId, c.Metric, s.Size, c.Value FROM GridCells c JOIN TrainSubsets s "
        "ON s.Grid = c.Grid AND s.SubsetId = c.SubsetId WHERE c.Grid = ? AND c.Value IS NOT NULL "
        "AND s.Edit IS NULL AND s.Size >= 1",
        [grid],
    )
    fits: dict[str, list[Any]] = {
        k: []
        for k in (
            "Grid",
            "SliceId",
            "Metric",
            "Form",
            "A",
            "B",
            "C",
            "R2",
            "Points",
            "MinSize",
            "MaxSize",
        )
    }
    if data.num_rows:
        cols = _columns(data)
        for sid in np.unique(cols["SliceId"]):
            for metric in row["Metrics"]:
                mask = (cols["SliceId"] == sid) & (cols["Metric"] == metric)
                xs, ys = scaling.size_means(cols["Size"][mask], cols["Value"][mask])
                fit = scaling.power_fit(xs, ys, METRICS.get(metric).best)
                if fit is None:
                    continue
                for key, value in (
                    ("Grid", grid),
                    ("SliceId", int(sid)),
                    ("Metric", metric),
                    ("Form", fit.form),
                    ("A", fit.a),
                    ("B", fit.b),
                    ("C", fit.c),
                    ("R2", fit.r2),
                    ("Points", fit.points),
                    ("MinSize", int(xs.min())),
                    ("MaxSize", int(xs.max())),
                ):
                    fits[key].append(value)
    gstore.replace_scaling_fits(store, grid, fits)


@handles(MaterializeGrid, transactional=False)
def materialize_grid(session: Any, node: MaterializeGrid, stmt: Statement) -> pa.Table:
    params = {k.lower(): v for k, v in node.params().items()}
    for key in params:
        if key not in RUN_OPTIONS:
            raise CfdbSyntaxError(
                f"unknown MATERIALIZE option {key!r}; known: {', '.join(sorted(RUN_OPTIONS))}"
            ).located(stmt.script, *node.param(key).span)
    name = str(node.args["this"])
    try:
        row = gstore.require_grid(session.store, name)
    except CfdbError as err:
        raise err.located(stmt.script, *node.span("name")) from None
    return fill(session, row["Name"], limit=node.args.get("limit"), params=params)


# -- lazy filling -----------------------------------------------------------------------------
def fill_referenced_grids(session: Any, statement: Statement) -> None:
    """``session.before_plain_sql`` hook: fill the grids a plain SELECT is about to read."""
    store = session.store
    if store.read_only or not store.table_exists("Grids"):
        return
    names = {
        r[0].lower(): r[0] for r in store.execute("SELECT Name FROM Grids WHERE Kind = 'grid'")
    }
    text = statement.text.lower()
    if not names or not any(n in text for n in names):
        return  # cheap test first: most statements never mention a grid
    wanted: list[str] = []
    for rel in referenced_relations(statement.text):
        if rel.function and rel.name in GRID_MACROS and rel.args:
            candidate = rel.args[0].lower()
        elif not rel.function:
            candidate = rel.name.lower()
        else:
            continue
        if candidate in names and names[candidate] not in wanted:
            wanted.append(names[candidate])
    for grid in wanted:
        row = gstore.grid_row(store, grid)
        if (
            row is not None
            and row["Options"].get("lazy", True)
            and gstore.missing_subsets(store, grid)
        ):
            try:
                fill(session, grid)
            except CfdbError as err:
                raise err.located(statement.script, statement.start, statement.end) from None


# -- WHATIF -----------------------------------------------------------------------------------
def _family_name(node: WhatIf, params: dict[str, Any], options: dict[str, Any]) -> str:
    run_keys = {"n_jobs", "executor", "address"}
    spec = {
        "train": node.args["train"].text.strip(),
        "evaluate": node.args["evaluate"].text.strip(),
        "slice_by": (node.args.get("slice_by") or "").lower(),
        "kind": str(node.args["kind"]).lower(),
        "params": params,
        "metrics": list(node.args["metrics"]),
        "options": {k: v for k, v in sorted(options.items()) if k not in run_keys},
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    return f"whatif_{digest[:16]}"


def _matched_units(
    session: Any,
    row: dict[str, Any],
    prepared: Prepared,
    node: WhatIf,
    script: str,
    weight: str | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    target = node.args["target"]
    table, _ = _run(session.store, target.text, script, target.start)
    cols = _columns(table)
    span = node.span("target")
    key = row["KeyColumn"]
    if key is None:
        raise CfdbDataError(
            "cannot match what-if rows to training rows: the training query has no InstanceId "
            "or primary key",
            hint="name a key column with WITH (key = 'column')",
        ).located(script, *span)
    found = _lookup(list(cols), key)
    if found is None:
        raise CfdbDataError(f"the what-if query must return the key column {key!r}").located(
            script, *span
        )
    index = {uid: i for i, uid in enumerate(prepared.units.ids)}
    keys = [catalog_label(v) for v in cols[found]]
    units = np.array([index[k] for k in keys if k in index], dtype=np.int64)
    if not len(units):
        raise CfdbDataError("the what-if query matches no training row").located(script, *span)
    weights = None
    if weight is not None:
        wcol = _lookup(list(cols), weight)
        if wcol is None:
            raise CfdbDataError(f"the REWEIGHT query returns no weight column {weight!r}").located(
                script, *node.span("weight")
            )
        all_w = np.asarray(cols[wcol], dtype=float)
        weights = np.array([w for k, w in zip(keys, all_w, strict=True) if k in index])
        if np.isnan(weights).any() or (weights < 0).any():
            raise CfdbDataError("REWEIGHT weights must be non-negative numbers").located(
                script, *node.span("weight")
            )
    order = np.argsort(units, kind="stable")
    units = units[order]
    if weights is not None:
        weights = weights[order]
    keep = np.concatenate([[True], units[1:] != units[:-1]])
    return units[keep], None if weights is None else weights[keep]


def _whatif_subset(
    session: Any, row: dict[str, Any], prepared: Prepared, node: WhatIf, script: str
) -> tuple[int, bool, int]:
    """The what-if's row in its family grid: (SubsetId, reused, training rows changed)."""
    store, grid, op = session.store, row["Name"], str(node.args["op"])
    n = len(prepared.units.ids)
    edit_units, weights = np.zeros(0, np.int64), None
    if op == "add":
        target = node.args["target"]
        extra = _added_rows(session, row, prepared, target.text)
        digest = hashlib.sha256(target.text.strip().encode())
        for name in sorted(extra[0]):
            digest.update(
                np.asarray([catalog_label(v) for v in extra[0][name]], dtype=str).tobytes()
            )
        digest.update(np.asarray(extra[1]).tobytes())
        key = "add:" + digest.hexdigest()
        changed = len(extra[1])
    else:
        edit_units, weights = _matched_units(
            session, row, prepared, node, script, node.args.get("weight")
        )
        digest = hashlib.sha256(edit_units.tobytes())
        if weights is not None:
            digest.update(np.round(weights, 12).tobytes())
        key = f"{op}:{digest.hexdigest()}"
        changed = int(sum(len(prepared.units.rows[u]) for u in edit_units))
    found = store.execute(
        "SELECT SubsetId FROM TrainSubsets WHERE Grid = ? AND EditKey = ?", [grid, key]
    )
    if found:
        return int(found[0][0]), True, changed
    sid = gstore.next_subset_id(store, grid)
    removed = edit_units if op == "remove" else np.zeros(0, np.int64)
    gstore.insert_rows(
        store,
        "TrainSubsets",
        {
            "Grid": [grid],
            "SubsetId": pa.array([sid], pa.int64()),
            "Design": ["whatif"],
            "Role": ["whatif"],
            "Size": pa.array([n - len(removed)], pa.int64()),
            "Seed": pa.array([row["Seed"]], pa.int64()),
            "Representation": ["complement"],
            "Tag": [op],
            "Edit": [None if op == "remove" else op],
            "EditQuery": [node.args["target"].text],
            "EditWeight": [node.args.get("weight")],
            "EditKey": [key],
        },
    )
    if len(removed):
        gstore.insert_rows(
            store,
            "TrainSubsetMembers",
            {
                "Grid": [grid] * len(removed),
                "SubsetId": pa.array([sid] * len(removed), pa.int64()),
                "UnitIndex": pa.array(removed, pa.int32()),
            },
        )
    if op in ("flip_labels", "reweight"):
        gstore.insert_rows(
            store,
            "TrainSubsetEdits",
            {
                "Grid": [grid] * len(edit_units),
                "SubsetId": pa.array([sid] * len(edit_units), pa.int64()),
                "UnitIndex": pa.array(edit_units, pa.int32()),
                "Weight": pa.array(None if weights is None else weights, pa.float64())
                if weights is not None
                else pa.array([None] * len(edit_units), pa.float64()),
            },
        )
    return sid, False, changed


@handles(WhatIf)
def whatif(session: Any, node: WhatIf, stmt: Statement) -> pa.Table:
    store, script = session.store, stmt.script
    params, options = _options(node, script)
    name = _family_name(node, params, options)
    row = gstore.grid_row(store, name)
    if row is None:
        row, units, _ = _define_grid(
            session,
            node,
            script,
            name=name,
            kind=str(node.args["kind"]),
            design="whatif",
            design_args={},
            units_by=None,
            grid_kind="whatif",
        )
        plan = designs_mod.Plan(len(units.ids))
        designs_mod._full(plan)
        _write_plan(store, name, "whatif", int(row["Seed"]), plan)
    if (
        node.args["op"] == "flip_labels"
        and row["Task"] == "classification"
        and len(row["Classes"]) != 2
    ):
        raise CfdbDataError(
            f"FLIP LABELS needs two classes; the labels are {row['Classes']}"
        ).located(script, *node.span("op"))
    if node.args["op"] == "flip_labels" and row["Task"] != "classification":
        raise CfdbDataError("FLIP LABELS needs classification metrics").located(
            script, *node.span("op")
        )
    prepared = _prepare(session, row, script, node.span("train"))
    full_id = int(
        store.execute("SELECT SubsetId FROM TrainSubsets WHERE Grid = ? AND Role = 'full'", [name])[
            0
        ][0]
    )
    sid, reused, changed = _whatif_subset(session, row, prepared, node, script)
    missing = [i for i in (full_id, sid) if i in set(gstore.missing_subsets(store, name))]
    if missing:
        # At most two cells: trained here, no executor start-up.
        results = run_cells(prepared.data, _tasks(session, row, prepared, missing))
        gstore.insert_rows(
            store, "GridCells", _cell_rows(name, row["ModelKind"], results, prepared.data)
        )
    out = store.arrow(
        """
        SELECT e.Name AS Slice, b.Metric, b.Value AS Baseline, c.Value AS Counterfactual,
               c.Value - b.Value AS Difference, c.Status, c.Error
        FROM EvalSlices e
        JOIN GridCells b ON b.Grid = e.Grid AND b.SliceId = e.SliceId AND b.SubsetId = ?
        JOIN GridCells c ON c.Grid = e.Grid AND c.SliceId = e.SliceId AND c.SubsetId = ?
             AND c.Metric = b.Metric
        WHERE e.Grid = ? ORDER BY e.SliceId, list_position(?, b.Metric)
        """,
        [full_id, sid, name, list(row["Metrics"])],
    )
    n = out.num_rows
    return (
        out.append_column("Grid", pa.array([name] * n, pa.string()))
        .append_column("SubsetId", pa.array([sid] * n, pa.int64()))
        .append_column("Reused", pa.array([reused] * n, pa.bool_()))
        .append_column("RowsChanged", pa.array([changed] * n, pa.int64()))
    )
