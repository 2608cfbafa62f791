"""Chart specifications of the explorer's pages: plain plotly.js figures (data + layout).

Pure functions from query results to JSON-able dicts; the page renders them with the
plotly.js bundled in the ``plotly`` package (no network). Curves of fitted laws are sampled
here, on a geometric grid of sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cfdb.store.explore import Rows

_FONT = {"family": "system-ui, sans-serif", "size": 12}
_MARGIN = {"l": 60, "r": 20, "t": 36, "b": 48}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout = {"title": {"text": title, "font": {"size": 14}}, "font": _FONT, "margin": _MARGIN}
    layout.update(extra)
    return layout


def heatmap(
    bands: list[dict[str, Any]],
    slices: list[str],
    values: dict[tuple[int, int], float | None],
    hover: list[str],
    metric: str,
    higher_is_better: bool,
) -> dict[str, Any]:
    """Subsets (bands) × slices, coloured by ``metric``; row i of z is ``bands[i]``."""
    n = len(bands)
    z = [[values.get((b["Band"], j)) for j in range(len(slices))] for b in bands]
    text = [[hover[i]] * len(slices) for i in range(n)]
    labels = [_band_label(b) for b in bands]
    trace = {
        "type": "heatmap",
        "z": z,
        "x": slices,
        "y": list(range(n)),
        "text": text,
        "hovertemplate": "%{text}<br>slice %{x}<br>" + metric + " %{z:.4g}<extra></extra>",
        "colorscale": "Viridis",
        "reversescale": not higher_is_better,
        "colorbar": {"title": {"text": metric}},
        "xgap": 1,
    }
    step = max(1, n // 30)
    layout = _layout(
        f"{metric} per training subset (rows) and evaluation slice (columns)",
        height=max(320, min(900, 18 * n + 120)),
        yaxis={
            "autorange": "reversed",
            "tickvals": list(range(0, n, step)),
            "ticktext": labels[::step],
            "title": {"text": "training subsets", "standoff": 12},
            "automargin": True,
        },
        xaxis={"title": {"text": "evaluation slice"}, "type": "category"},
    )
    return {"data": [trace], "layout": layout}


def _band_label(band: dict[str, Any]) -> str:
    if band["Subsets"] == 1:
        return f"#{band['FirstId']} |S|={band['MinSize']}"
    sizes = (
        f"{band['MinSize']}"
        if band["MinSize"] == band["MaxSize"]
        else f"{band['MinSize']}–{band['MaxSize']}"
    )
    return f"{band['Subsets']} subsets |S|={sizes}"


def unit_bars(units: Rows, metric: str) -> dict[str, Any]:
    """Shapley value of each unit (bars): a bar's click selects the unit."""
    ids = [str(u) for u in units.column("UnitId")]
    traces = []
    for name in ("Shapley", "LOO", "Banzhaf", "BetaShapley_16_1"):
        vals = units.column(name)
        if any(v is not None for v in vals):
            traces.append(
                {
                    "type": "bar",
                    "name": name.replace("_16_1", " (16,1)"),
                    "x": ids,
                    "y": vals,
                    "customdata": units.column("UnitIndex"),
                }
            )
    return {
        "data": traces,
        "layout": _layout(
            f"Values of each unit ({metric}); click a bar to select its unit",
            barmode="group",
            height=320,
            xaxis={"type": "category", "automargin": True},
        ),
    }


def law_curve(
    a: float, b: float, c: float, lo: float, hi: float, points: int = 40
) -> tuple[list[float], list[float]]:
    """Samples of metric = A − B·size^(−C) between ``lo`` and ``hi`` (geometric)."""
    xs = _geometric(lo, hi, points)
    return xs, [a - b * x ** (-c) for x in xs]


def psi_curve(
    c: float, alpha: float, lo: float, hi: float, points: int = 40
) -> tuple[list[float], list[float]]:
    """Samples of ψ_k = c·k^(−α) (Covert et al. 2024) between ``lo`` and ``hi``."""
    xs = _geometric(lo, hi, points)
    return xs, [0.0 if c == 0 else c * x ** (-alpha) for x in xs]


def _geometric(lo: float, hi: float, points: int) -> list[float]:
    lo, hi = max(float(lo), 1.0), max(float(hi), 1.0)
    if hi <= lo:
        return [lo]
    step = (math.log(hi) - math.log(lo)) / (points - 1)
    return [math.exp(math.log(lo) + i * step) for i in range(points)]


def scaling(means: Rows, fits: Rows, metric: str) -> dict[str, Any]:
    """Mean metric per subset size and slice (markers) with the fitted laws (lines)."""
    traces: list[dict[str, Any]] = []
    slices = sorted(set(means.column("Slice")), key=str)
    for s in slices:
        pts = [r for r in means.dicts() if r["Slice"] == s and r["Size"] >= 1]
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"{s}: mean",
                "x": [r["Size"] for r in pts],
                "y": [r["Mean"] for r in pts],
                "legendgroup": str(s),
            }
        )
    for f in fits.dicts():
        if None in (f["A"], f["B"], f["C"], f["MinSize"], f["MaxSize"]):
            continue
        xs, ys = law_curve(f["A"], f["B"], f["C"], f["MinSize"], f["MaxSize"])
        r2 = "" if f["R2"] is None else f", R²={f['R2']:.3f}"
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"{f['Slice']}: {f['Form']} fit{r2}",
                "x": xs,
                "y": ys,
                "legendgroup": str(f["Slice"]),
                "line": {"dash": "dot" if f["Form"] == "loglog" else "solid"},
            }
        )
    return {
        "data": traces,
        "layout": _layout(
            f"Scaling law: mean {metric} by training-subset size",
            height=360,
            xaxis={"type": "log", "title": {"text": "subset size (units)"}},
            yaxis={"title": {"text": metric}},
        ),
    }


def bars(
    labels: Sequence[Any],
    values: Sequence[Any],
    title: str,
    ytitle: str,
    hover: Sequence[str] | None = None,
) -> dict[str, Any]:
    trace: dict[str, Any] = {"type": "bar", "x": [str(x) for x in labels], "y": list(values)}
    if hover is not None:
        trace["hovertext"] = list(hover)
    return {
        "data": [trace],
        "layout": _layout(
            title, height=320, xaxis={"type": "category"}, yaxis={"title": {"text": ytitle}}
        ),
    }


def histogram(rows: Rows) -> dict[str, Any]:
    """Distribution of values per relation (bins computed in SQL)."""
    traces = []
    for rel in sorted(set(rows.column("Relation"))):
        pts = [r for r in rows.dicts() if r["Relation"] == rel]
        traces.append(
            {
                "type": "bar",
                "name": rel,
                "x": [r["Center"] for r in pts],
                "y": [r["Tuples"] for r in pts],
                "opacity": 0.7,
            }
        )
    return {
        "data": traces,
        "layout": _layout(
            "Distribution of the values per relation",
            barmode="overlay",
            height=320,
            xaxis={"title": {"text": "value"}},
            yaxis={"title": {"text": "tuples"}},
        ),
    }


def repair(rows: Rows, utility: str) -> dict[str, Any]:
    """The repair curve per relation: share examined (most harmful first) → predicted utility."""
    traces = []
    for rel in sorted(set(rows.column("Relation"))):
        pts = [r for r in rows.dicts() if r["Relation"] == rel]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": rel,
                "x": [r["Share"] for r in pts],
                "y": [r["Predicted"] for r in pts],
                "customdata": [r["Examined"] for r in pts],
                "hovertemplate": "%{customdata} tuples examined<br>"
                + utility
                + " %{y:.4g}<extra></extra>",
            }
        )
    return {
        "data": traces,
        "layout": _layout(
            f"Repair curve: {utility} once the most harmful tuples are removed",
            height=340,
            xaxis={
                "title": {"text": "share of the relation's tuples examined"},
                "tickformat": ".0%",
            },
            yaxis={"title": {"text": f"{utility} (sum of the remaining values)"}},
        ),
    }


def unit_curve(
    unit_id: str,
    slice_: str,
    metric: str,
    marg: Rows,
    law: Rows,
    higher_is_better: bool | None,
) -> dict[str, Any] | None:
    """A unit's mean marginal contribution per subset size (``marginal_by_size``) and its
    fitted ψ_k = c·k^(−α) (``unit_scaling_laws``); ``None`` when there is neither."""
    # Contributions are oriented as the laws are: positive helps, whatever the metric.
    sign = -1.0 if higher_is_better is False else 1.0
    traces: list[dict[str, Any]] = []
    if marg.rows:
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "measured mean contribution",
                "x": marg.column("Size"),
                "y": [None if v is None else sign * v for v in marg.column("MeanDelta")],
                "error_y": {
                    "type": "data",
                    "array": [s or 0 for s in marg.column("StdDev")],
                    "visible": True,
                },
            }
        )
    for f in law.dicts():
        if f["C"] is None or f["Alpha"] is None:
            continue
        xs, ys = psi_curve(f["C"], f["Alpha"], f["MinSize"] or 1, f["MaxSize"] or 1)
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"ψ_k = c·k^(−α) ({f['Method']})",
                "x": xs,
                "y": ys,
            }
        )
    if not traces:
        return None
    return {
        "data": traces,
        "layout": {
            "title": {
                "text": f"Unit {unit_id}: marginal contribution by subset size ({slice_})",
                "font": {"size": 14},
            },
            "height": 300,
            "margin": {"l": 60, "r": 20, "t": 36, "b": 48},
            "xaxis": {
                "type": "log" if marg.rows and min(marg.column("Size")) >= 1 else "linear",
                "title": {"text": "|S| (units)"},
            },
            "yaxis": {
                "title": {
                    "text": f"Δ {metric}"
                    + (" (lower is better: negated)" if higher_is_better is False else "")
                }
            },
        },
    }
