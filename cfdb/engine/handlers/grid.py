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

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from cfdb.engine.handlers import handles
from cfdb.engine.handlers.grid_data import _define_grid, _strike_groups, _write_plan
from cfdb.engine.handlers.grid_fill import fill
from cfdb.errors import CfdbCatalogError, CfdbError, CfdbSyntaxError
from cfdb.exec import located_exec_options
from cfdb.grid import designs as designs_mod
from cfdb.lang.grid_syntax import CreateGrid, DropGrid, MaterializeGrid, referenced_relations
from cfdb.lang.parse import Statement
from cfdb.store import grid as gstore

#: Options of MATERIALIZE GRID.
RUN_OPTIONS = {"n_jobs", "executor", "address", "progress", "retry_failed"}
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
    # the scaling-law macros that read the grid's cells (through marginal_by_size); the others
    # read only the fitted laws
    "unit_scaling_check",
    "unit_scaling_r2",
    "unit_scaling_dshap_mc",
    "unit_scaling_dshap_check",
}
#: Design name -> ``prepare(session, node, script, row, units, columns, args) -> dict``: facts a
#: design needs from the data, handed to it as ``DesignContext.extra``.
DESIGN_PREPARERS: dict[str, Callable[..., dict[str, Any]]] = {}


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
    extra: dict[str, Any] = {}
    if design in DESIGN_PREPARERS:
        extra = DESIGN_PREPARERS[design](session, node, script, row, units, cols, args)
    ctx = designs_mod.DesignContext(len(units.ids), int(row["Seed"]), row["Options"], groups, extra)
    try:
        designs_mod.check_size(design, len(units.ids), args)
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
            # Columns of the training query that are not features, and why (say so, never
            # drop a column silently).
            "NotFeatures": [row["Options"].get("not_features", [])],
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


@handles(MaterializeGrid, transactional=False)
def materialize_grid(session: Any, node: MaterializeGrid, stmt: Statement) -> pa.Table:
    params = {k.lower(): v for k, v in node.params().items()}
    for key in params:
        if key not in RUN_OPTIONS:
            raise CfdbSyntaxError(
                f"unknown MATERIALIZE option {key!r}; known: {', '.join(sorted(RUN_OPTIONS))}"
            ).located(stmt.script, *node.param(key).span)
    located_exec_options(stmt.script, lambda name: node.param(name).span, params)
    name = str(node.args["this"])
    try:
        row = gstore.require_grid(session.store, name)
    except CfdbError as err:
        raise err.located(stmt.script, *node.span("name")) from None
    return fill(session, row["Name"], limit=node.args.get("limit"), params=params)


# -- lazy filling -----------------------------------------------------------------------------
def _binds(store: Any, text: str) -> bool:
    """Whether DuckDB binds ``text`` (PREPARE checks it without running it)."""
    try:
        store.execute(f"PREPARE __cfdb_bind AS {text}")
    except CfdbError:
        return False
    store.execute("DEALLOCATE __cfdb_bind")
    return True


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
    if wanted and not _binds(store, statement.text):
        return  # the statement fails anyway: fill nothing, so the failure changes nothing
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


from cfdb.engine.handlers import whatif  # noqa: E402,F401  (registers WHATIF)
