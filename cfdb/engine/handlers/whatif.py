"""WHATIF REMOVE | ADD | FLIP LABELS | REWEIGHT: one-off data counterfactuals kept as grid rows.

One hidden grid (``Grids.Kind = 'whatif'``) per (training query, evaluation query, model,
metrics, options): its full set is the baseline, and each what-if is one more row found again
by a key of its edit, so repeating a what-if trains nothing. Rows named by REMOVE, FLIP LABELS
and REWEIGHT are matched to training rows by key (``key`` option, ``InstanceId`` or the
training table's primary key).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pyarrow as pa

from cfdb.engine.handlers import handles
from cfdb.engine.handlers.grid_data import (
    GridDataChanged,
    Prepared,
    _columns,
    _define_grid,
    _lookup,
    _options,
    _prepare,
    _run,
    _write_plan,
)
from cfdb.engine.handlers.grid_fill import _added_rows, _cell_rows, _tasks
from cfdb.errors import CfdbDataError
from cfdb.grid import designs as designs_mod
from cfdb.grid.cell import run_cells
from cfdb.lang.grid_syntax import WhatIf
from cfdb.lang.parse import Statement
from cfdb.models import label_string as catalog_label
from cfdb.store import grid as gstore


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
    if row is not None:
        try:
            prepared: Prepared | None = _prepare(session, row, script, node.span("train"))
        except GridDataChanged:
            # The data moved on since these what-ifs were measured: start the family afresh.
            gstore.delete_grid(store, name)
            row = None
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
        prepared = None
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
    if prepared is None:
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
    # Columns of the training query that are not features, and why (never dropped silently).
    not_features = pa.array([row["Options"].get("not_features", [])] * n, pa.list_(pa.string()))
    return (
        out.append_column("NotFeatures", not_features)
        .append_column("Grid", pa.array([name] * n, pa.string()))
        .append_column("SubsetId", pa.array([sid] * n, pa.int64()))
        .append_column("Reused", pa.array([reused] * n, pa.bool_()))
        .append_column("RowsChanged", pa.array([changed] * n, pa.int64()))
    )
