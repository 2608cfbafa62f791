"""Training a grid's missing cells through an executor, committing each finished chunk in its
own transaction (MATERIALIZE GRID and lazy filling); TMC-Shapley's truncation; scaling fits.

An interruption (Ctrl-C, a killed process) keeps every committed cell; a Ctrl-C that lands
while a chunk is being written is held until the write commits.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from cfdb.engine.handlers.grid_data import Prepared, _columns, _lookup, _prepare, _run
from cfdb.errors import CfdbDataError
from cfdb.exec import Executor, Progress, chunked, exec_options, make_executor
from cfdb.grid import scaling
from cfdb.grid.cell import CellResult, CellTask, GridData, run_cells
from cfdb.grid.metrics import METRICS
from cfdb.models import label_string as catalog_label
from cfdb.store import grid as gstore

#: Callables ``listener(grid, subsets_written)`` run after each committed chunk of cells.
COMMIT_LISTENERS: list[Callable[[str, int], None]] = []
#: Subsets handed to the executor at once (bounds memory on large grids).
_BLOCK = 2000


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
    # the statement's options, then the grid's, then the connection's defaults
    defaults = {k: getattr(session, k, None) for k in ("executor", "n_jobs", "address")}
    opts = exec_options(params, row["Options"], defaults)
    return RunConfig(
        executor=opts.executor,
        n_jobs=opts.n_jobs,
        address=opts.address,
        progress=params.get("progress"),
    )


def _describe(grid: str) -> Any:
    return lambda task: f"cell {task.subset_id} of grid {grid}"


def _lost(task: CellTask, reason: str) -> CellResult:
    # a cell whose worker died twice is recorded as failed, with why
    return CellResult(task.subset_id, status="failed", error=reason)


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
        chunks = (
            chunked(tasks, executor.workers) if not executor.in_process else [[t] for t in tasks]
        )
        results_iter = executor.map_chunks(
            run_cells, prepared.data, chunks, describe=_describe(grid), lost=_lost
        )
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
    config = _run_config(session, row, params)
    executor = make_executor(config.executor, config.n_jobs, config.address)
    if params.get("retry_failed"):
        executor.connect()  # an unreachable cluster fails before anything changes
        with store.transaction():
            store.execute("DELETE FROM GridCells WHERE Grid = ? AND Status = 'failed'", [grid])
    missing = gstore.missing_subsets(store, grid)
    done_before, _ = gstore.cell_count(store, grid)
    started = time.perf_counter()
    written = 0
    if missing and (limit is None or limit > 0):
        executor.connect()  # an unreachable cluster fails here, before anything is written
        prepared = _prepare(session, row)
        budget = len(missing) if limit is None else min(limit, len(missing))
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
