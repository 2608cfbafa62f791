"""The grid page: the heat map of subsets × slices, the units' values, the scaling laws,
and the panel of one unit (its values side by side, its pairs, its contributions by size).

The memo's picture ("Exploring Data Counterfactuals": training subsets as rows, evaluation
slices as columns) on a real grid. Grids with more subsets than ``bands`` are drawn as bands
of consecutive subsets, averaged in DuckDB (:func:`cfdb.serve.queries.heatmap`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cfdb.errors import CfdbCatalogError
from cfdb.serve import charts
from cfdb.serve import queries as Q
from cfdb.serve.formatting import clean, int_param, sql_href
from cfdb.store.explore import Reader, Rows

#: Most rows the heat map draws; larger grids are shown as bands of consecutive subsets.
BANDS = 300
#: Members listed in a subset's hover text.
MEMBERS_SHOWN = 12
UNITS_PAGE = 100
#: Most pairs (S, S ∪ {unit}) of a unit outlined in the heat map.
MAX_PAIRS = 400


def _grid(r: Reader, name: str, q: Mapping[str, str]) -> tuple[dict[str, Any], str, str]:
    found = r.rows(Q.GRID, {"grid": name}).dicts()
    if not found:
        raise CfdbCatalogError(f"there is no grid named {name!r}")
    grid = found[0]
    metrics = list(grid["Metrics"] or [])
    metric = q.get("metric") if q.get("metric") in metrics else metrics[0]
    order = q.get("order") if q.get("order") in Q.ORDERS else "size"
    return grid, metric, order


def _higher_is_better(r: Reader, p: Mapping[str, Any]) -> bool | None:
    return r.scalar(
        "SELECT HigherIsBetter FROM GridMetrics WHERE Grid = $grid AND Metric = $metric", p
    )


def grid_context(
    r: Reader, name: str, q: Mapping[str, str], max_bands: int = BANDS
) -> dict[str, Any]:
    """Everything the grid page shows; ``prog`` is the progress of the grid's training."""
    grid, metric, order = _grid(r, name, q)
    metrics = list(grid["Metrics"] or [])
    p: dict[str, Any] = {"grid": grid["Name"], "metric": metric, "bands": max_bands}
    prog_rows = r.rows(Q.GRID_PROGRESS, p)
    prog = prog_rows.dicts()[0]
    prog["Expected"] = (prog["Subsets"] or 0) * (prog["Slices"] or 0) * (prog["Metrics"] or 0)
    slices = r.rows(Q.SLICES, p)
    names = [str(s) for s in slices.column("Name")]
    slice_ = q.get("slice") if q.get("slice") in names else (names[0] if names else "all")
    p["slice"] = slice_
    hib = _higher_is_better(r, p)
    ctx: dict[str, Any] = {
        "grid": grid,
        "metric": metric,
        "metrics": metrics,
        "order": order,
        "orders": list(Q.ORDERS),
        "slice": slice_,
        "slices": names,
        "prog": prog,
        "sqls": [("progress", prog_rows.sql), ("slices", slices.sql)],
    }
    if not prog["Cells"]:
        return ctx
    slice_ids = slices.column("SliceId")
    hm = r.rows(Q.heatmap(order), p)
    bands: list[dict[str, Any]] = []
    values: dict[tuple[int, int], float | None] = {}
    for row in hm.dicts():
        if not bands or bands[-1]["Band"] != row["Band"]:
            bands.append(row)
        if row["SliceId"] is not None:
            values[(row["Band"], slice_ids.index(row["SliceId"]))] = row["Value"]
    members: dict[int, tuple[int, list[str]]] = {}
    sqls = ctx["sqls"]
    sqls.append(("heat map", hm.sql))
    if prog["Subsets"] <= max_bands:
        mem = r.rows(Q.MEMBERS, {**p, "shown": MEMBERS_SHOWN})
        sqls.append(("subset members", mem.sql))
        members = {row[0]: (row[1], [str(m) for m in row[2]]) for row in mem.rows}
    hover = [_band_hover(b, members) for b in bands]
    ctx["heatmap"] = charts.heatmap(bands, names, values, hover, metric, hib is not False)
    ctx["aggregated"] = prog["Subsets"] > max_bands
    ctx["nbands"] = len(bands)
    page = int_param(q.get("upage"), 0)
    units = r.rows(Q.UNIT_VALUES, {**p, "limit": UNITS_PAGE + 1, "offset": page * UNITS_PAGE})
    sqls.append(("unit values", units.sql))
    more = len(units.rows) > UNITS_PAGE
    units.rows = units.rows[:UNITS_PAGE]
    ctx["units"] = units
    ctx["upage"] = page
    ctx["umore"] = more
    ctx["unit_chart"] = charts.unit_bars(units, metric)
    if r.scalar(Q.GROUP_PAIRS, p):
        strikes = r.rows(Q.STRIKES, p)
        sqls.append(("strikes", strikes.sql))
        ctx["strikes"] = strikes
        mine = [row for row in strikes.dicts() if str(row["Slice"]) == slice_]
        ctx["strike_chart"] = charts.bars(
            [row["Group"] for row in mine],
            [row["Value"] for row in mine],
            f"Data strikes on slice {slice_}: {metric} of all data minus {metric} without the group",
            f"Δ {metric}",
            [f"{row['UnitsRemoved']} units removed" for row in mine],
        )
    means = r.rows(Q.SIZE_MEANS, p)
    fits = r.rows(Q.SCALING_FITS, p)
    sqls += [("mean per size", means.sql), ("scaling-law fits", fits.sql)]
    ctx["scaling"] = charts.scaling(means, fits, metric)
    ctx["fits"] = fits
    return ctx


def unit_panel(r: Reader, name: str, q: Mapping[str, str], bands: int = BANDS) -> dict[str, Any]:
    """One unit of a grid: its LOO, Shapley, Banzhaf and Beta(16, 1) Shapley values per slice,
    the heat-map bands of its pairs (S, S ∪ {unit}), and its contributions by subset size
    with its fitted individual law (Covert et al. 2024) when there is one."""
    grid, metric, order = _grid(r, name, q)
    p = {
        "grid": grid["Name"],
        "metric": metric,
        "unit": int_param(q.get("unit"), -1),
        "slice": q.get("slice") or "all",
        "bands": bands,
        "limit": MAX_PAIRS,
    }
    unit = r.rows(Q.UNIT, p).dicts()
    if not unit:
        raise CfdbCatalogError(f"grid {grid['Name']!r} has no unit {q.get('unit')!r}")
    by_slice = r.rows(Q.UNIT_BY_SLICE, p)
    pairs = r.rows(Q.UNIT_PAIRS, p)
    band_of = dict(r.rows(Q.subset_bands(order), p).rows)
    marg = r.rows(Q.UNIT_MARGINALS, p)
    hib = _higher_is_better(r, p)
    law = r.rows(Q.UNIT_LAW, p) if "unitscalinglaws" in r.tables() else Rows([], [])
    band_pairs = sorted(
        {
            (band_of.get(w), band_of.get(x))
            for w, x in zip(pairs.column("WithoutId"), pairs.column("WithId"), strict=True)
        }
        - {(None, None)},
        key=str,
    )
    curve = charts.unit_curve(str(unit[0]["UnitId"]), p["slice"], metric, marg, law, hib)
    body = {
        "unit": clean(unit[0]),
        "metric": metric,
        "columns": by_slice.columns,
        "rows": clean([list(r) for r in by_slice.rows]),
        "pairs": [list(bp) for bp in band_pairs],
        "npairs": len(pairs.rows),
        "curve": clean(curve),
        "sql": [
            {"title": t, "href": sql_href(s)}
            for t, s in (
                ("values per slice", by_slice.sql),
                ("pairs", pairs.sql),
                ("contributions by size", marg.sql),
            )
        ],
    }
    return body


def _band_hover(band: dict[str, Any], members: dict[int, tuple[int, list[str]]]) -> str:
    if band["Subsets"] == 1 and band["FirstId"] in members:
        count, shown = members[band["FirstId"]]
        more = f" … and {count - len(shown)} more" if count > len(shown) else ""
        return f"subset #{band['FirstId']} ({band['Roles']}), {count} units:<br>{{{', '.join(shown)}{more}}}"
    if band["Subsets"] == 1:
        return (
            f"subset #{band['FirstId']} ({band['Roles']}), {band['MinSize']} units: {{}}"
            if band["MinSize"] == 0
            else f"subset #{band['FirstId']} ({band['Roles']}), {band['MinSize']} units"
        )
    return (
        f"{band['Subsets']} subsets ({band['Roles']}), sizes {band['MinSize']}–{band['MaxSize']}"
        "<br>mean over the band"
    )
