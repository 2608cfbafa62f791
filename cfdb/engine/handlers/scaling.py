"""Individualized data scaling laws on the grid: the ``MARGINAL`` design's data, ``FIT SCALING
LAWS`` and ``PLOT SCALING LAWS`` (Covert, Ji, Hashimoto & Zou, ICML 2024).

* ``CREATE GRID ... SUBSETS MARGINAL ...``: the grid handler writes the design's pairs; this
  module's preparer (``DESIGN_PREPARERS['marginal']``) runs its ``FOR`` query to find the
  target units and reads each unit's class for ``BALANCED``.
* ``FIT SCALING LAWS FOR GRID g [METHOD ...]``: trains the grid's missing cells first when the
  grid fills lazily (committing as it goes, as ``MATERIALIZE GRID`` does), then fits every
  unit with measured contributions, per slice and metric, and replaces its rows of
  ``UnitScalingLaws`` in one transaction.
* ``PLOT SCALING LAWS FOR GRID g [CURVES | ALPHA | R2] TO 'file.png'``: draws from the
  schema's macros.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pyarrow as pa

from cfdb.engine.handlers import handles, scaling_features
from cfdb.engine.handlers.grid import DESIGN_PREPARERS
from cfdb.engine.handlers.grid_data import _lookup
from cfdb.engine.handlers.grid_fill import fill
from cfdb.errors import CfdbDataError, CfdbError, CfdbSyntaxError
from cfdb.lang.parse import Statement
from cfdb.lang.scaling_syntax import FitScalingLaws, PlotScalingLaws
from cfdb.models import label_string
from cfdb.scaling import amortized, estimators, plots
from cfdb.scaling import design as _design  # noqa: F401  (registers the MARGINAL design)
from cfdb.store import grid as gstore
from cfdb.store import scaling as sstore

#: Options of FIT SCALING LAWS.
FIT_OPTIONS = {"slice", "metric", "method", "zero_level", "hidden", "weight_decay", "seed"}
#: Options of PLOT SCALING LAWS.
PLOT_OPTIONS = {"method", "slice", "metric", "units", "min_r2"}


# -- the MARGINAL design's data ---------------------------------------------------------------
def _targets(
    store: Any, text: str, script: str, start: int, row: dict[str, Any], ids: list[str]
) -> list[int]:
    """Unit indices of the ids the FOR query returns (its unit column, or its only column)."""
    span = (start, start + len(text))
    rel = store.run_script_text(text, script, start)
    if rel is None:
        raise CfdbDataError("FOR expects a query that returns unit ids").located(script, *span)
    columns = list(rel.columns)
    wanted = [c for c in (row["UnitsBy"], row["KeyColumn"]) if c]
    column = next((_lookup(columns, w) for w in wanted if _lookup(columns, w)), None)
    if column is None:
        if len(columns) != 1:
            raise CfdbDataError(
                f"the FOR query must return the unit column ({' or '.join(wanted) or 'the row id'}) "
                f"or a single column; it returns {', '.join(columns)}"
            ).located(script, *span)
        column = columns[0]
    index = {uid: i for i, uid in enumerate(ids)}
    found: list[int] = []
    unknown: list[str] = []
    for value in rel.to_arrow_table().column(column).to_pylist():
        if value is None:
            continue
        text_value = label_string(value)
        if text_value not in index and isinstance(value, float) and value.is_integer():
            text_value = str(int(value))
        if text_value in index:
            found.append(index[text_value])
        else:
            unknown.append(text_value)
    if unknown:
        raise CfdbDataError(
            f"the FOR query returns {len(unknown)} value(s) that are not units of the grid "
            f"(first: {unknown[0]!r})"
        ).located(script, *span)
    if not found:
        raise CfdbDataError("the FOR query returns no units").located(script, *span)
    return sorted(set(found))


def _unit_labels(
    row: dict[str, Any],
    units: Any,
    cols: dict[str, np.ndarray],
    script: str,
    span: Any,
    word: str = "BALANCED",
) -> np.ndarray:
    """The class of each unit (every row of a unit must have the same label)."""
    if row["Task"] != "classification":
        raise CfdbDataError(f"{word} needs a classification grid").located(script, *span)
    label = _lookup(list(cols), row["LabelColumn"])
    assert label is not None
    index = {c: i for i, c in enumerate(row["Classes"])}
    values = cols[label]
    out = np.empty(len(units.rows), dtype=np.int64)
    for i, rows in enumerate(units.rows):
        seen = {label_string(v) for v in values[rows]}
        if len(seen) != 1:
            raise CfdbDataError(
                f"{word} needs one label per unit; unit {units.ids[i]!r} has rows labelled "
                f"{' and '.join(sorted(seen))}"
            ).located(script, *span)
        out[i] = index[seen.pop()]
    return out


def prepare_marginal(
    session: Any,
    node: Any,
    script: str,
    row: dict[str, Any],
    units: Any,
    cols: dict[str, np.ndarray],
    args: dict[str, Any],
) -> dict[str, Any]:
    """``DesignContext.extra`` of the MARGINAL design: ``targets`` and ``labels``."""
    extra: dict[str, Any] = {}
    span = node.span("design")
    text = args.get("for")
    if text:
        start = script.find(text, span[0])
        extra["targets"] = _targets(
            session.store, text, script, start if start >= 0 else span[0], row, units.ids
        )
    if args.get("balanced") or args.get("stratified"):
        word = "BALANCED" if args.get("balanced") else "STRATIFIED"
        extra["labels"] = _unit_labels(row, units, cols, script, span, word)
    return extra


DESIGN_PREPARERS["marginal"] = prepare_marginal


# -- FIT SCALING LAWS -------------------------------------------------------------------------
#: Designs whose pairs measure a unit's marginal contribution at several dataset sizes.
FIT_DESIGNS = ("marginal", "permutations", "random")
_DESIGN_NAMES = {"leave_one_out": "LOO", "exhaustive": "EXHAUSTIVE", "strikes": "STRIKES"}


def _check_options(node: Any, script: str, known: set[str], what: str) -> dict[str, Any]:
    params = {k.lower(): v for k, v in node.params().items()}
    for key in params:
        if key not in known:
            raise CfdbSyntaxError(
                f"unknown {what} option {key!r}; known: {', '.join(sorted(known))}"
            ).located(script, *node.param(key).span)
    return params


def _grid(session: Any, node: Any, script: str) -> dict[str, Any]:
    try:
        return gstore.require_grid(session.store, str(node.args["this"]))
    except CfdbError as err:
        raise err.located(script, *node.span("name")) from None


def _check_choice(node: Any, script: str, option: str, value: Any, known: list[str]) -> str | None:
    if value is None:
        return None
    if str(value) not in known:
        raise CfdbDataError(
            f"the grid has no {option} {value!r}; it has: {', '.join(known)}"
        ).located(script, *node.param(option).span)
    return str(value)


_LAW_COLUMNS = {
    "C": "c",
    "Alpha": "alpha",
    "Sigma": "sigma",
    "Beta": "beta",
    "R2": "r2",
    "Samples": "samples",
    "Sizes": "sizes",
    "MinSize": "min_size",
    "MaxSize": "max_size",
    "LogLik": "log_lik",
    "Converged": "converged",
    "AtBound": "at_bound",
    "SignChanges": "sign_changes",
    "Status": "status",
    "Message": "message",
    "R2Linear": "r2_linear",
    "Evidence": "evidence",
    "Noise": "noise",
}


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _methods(node: FitScalingLaws, script: str, params: dict[str, Any]) -> list[str]:
    """METHOD m, ... or WITH (method = 'm'); both estimators by default."""
    methods = list(node.args.get("methods") or [])
    option = params.get("method")
    if option is not None:
        names = option if isinstance(option, tuple) else (option,)
        for name in names:
            name = str(name).lower()
            if name not in estimators.METHODS:
                raise CfdbDataError(
                    f"unknown method {name!r}; known: {', '.join(estimators.METHODS)}"
                ).located(script, *node.param("method").span)
            if name not in methods:
                methods.append(name)
    return methods or ["mle", "ols"]


def _number(node: Any, script: str, params: dict[str, Any], key: str, lo: float, hi: float) -> Any:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise CfdbDataError(f"option {key} takes a number in [{lo:g}, {hi:g}]").located(
            script, *node.param(key).span
        )
    return value


def _check_design(row: dict[str, Any], node: Any, script: str) -> None:
    design = str(row["Design"])
    if design in FIT_DESIGNS:
        return
    raise CfdbDataError(
        f"grid {row['Name']!r} has the {_DESIGN_NAMES.get(design, design.upper())} design: "
        "FIT SCALING LAWS needs each unit's marginal contributions at several dataset sizes, "
        "from a grid of the MARGINAL design (or PERMUTATIONS, or RANDOM m SIZES (...) PAIRS)",
        hint="CREATE GRID ... SUBSETS MARGINAL m SIZES BETWEEN a AND b ...",
    ).located(script, *node.span("name"))


def _usable(
    cols: dict[str, np.ndarray], grid: str, node: Any, script: str
) -> dict[str, np.ndarray]:
    """The samples a fit can use: size ≥ 1 (ψ_0 has no power law) and a finite Δ; errors
    that say what the fit needs when nothing usable is left."""
    where = (node.span("name"),)
    finite = np.isfinite(cols["Delta"].astype(float))
    if not finite.any():
        raise CfdbDataError(
            f"every marginal contribution of grid {grid!r} is NaN or infinite: the fit needs "
            "finite metric values (a metric such as auc is undefined on a one-class "
            "evaluation slice or training subset)"
        ).located(script, *where[0])
    keep = finite & (cols["Size"] >= 1)
    if not keep.any():
        raise CfdbDataError(
            f"grid {grid!r} measures contributions only to the empty dataset: the fit needs "
            "sizes of 1 or more"
        ).located(script, *where[0])
    out = {n: v[keep] for n, v in cols.items()}
    if np.all(out["Delta"] == 0):
        raise CfdbDataError(
            f"every marginal contribution of grid {grid!r} is 0: the metric never changes when "
            "a unit is added, so there is no law to fit",
            hint="use a finer metric (log_loss rather than accuracy) or larger evaluation data",
        ).located(script, *where[0])
    sizes = np.unique(out["Size"])
    # samples per (slice, metric, unit): the most any unit has for one fit
    _, per_unit = np.unique(
        np.column_stack(
            [out["SliceId"].astype(np.int64), np.unique(out["Metric"].astype(str),
             return_inverse=True)[1], out["UnitIndex"].astype(np.int64)]
        ),
        axis=0,
        return_counts=True,
    )  # fmt: skip
    if len(sizes) < 2 or per_unit.max() < 4:
        raise CfdbDataError(
            f"grid {grid!r} has at most {int(per_unit.max())} contributions per unit at "
            f"{len(sizes)} dataset size(s): a fit needs 4 samples or more of a unit, at 2 "
            "sizes or more",
            hint="more draws (MARGINAL m ...) or a range of sizes (SIZES BETWEEN a AND b)",
        ).located(script, *where[0])
    return out


def _check_pairs(store: Any, grid: str, node: Any, script: str) -> None:
    """The grid's (S, S ∪ {unit}) pairs can give 4 samples of a unit at 2 sizes or more."""
    rows = store.execute(
        "SELECT coalesce(max(n), 0), (SELECT count(DISTINCT Size) FROM SubsetPairs "
        "WHERE Grid = ? AND UnitIndex IS NOT NULL AND Size >= 1) FROM (SELECT count(*) AS n "
        "FROM SubsetPairs WHERE Grid = ? AND UnitIndex IS NOT NULL AND Size >= 1 "
        "GROUP BY UnitIndex)",
        [grid, grid],
    )
    most, sizes = (int(v or 0) for v in rows[0])
    if most == 0:
        raise CfdbDataError(
            f"grid {grid!r} has no measured marginal contributions of units",
            hint="create it with SUBSETS MARGINAL ... (or another design with pairs) and "
            "MATERIALIZE GRID",
        ).located(script, *node.span("name"))
    if most < 4 or sizes < 2:
        raise CfdbDataError(
            f"grid {grid!r} pairs each unit with at most {most} subsets at {sizes} dataset "
            "size(s): a fit needs 4 samples or more of a unit, at 2 sizes or more",
            hint="more draws (MARGINAL m ...) or a range of sizes (SIZES BETWEEN a AND b)",
        ).located(script, *node.span("name"))


@handles(FitScalingLaws, transactional=False)
def fit_scaling_laws(session: Any, node: FitScalingLaws, stmt: Statement) -> pa.Table:
    store, script = session.store, stmt.script
    params = _check_options(node, script, FIT_OPTIONS, "FIT SCALING LAWS")
    row = _grid(session, node, script)
    grid = row["Name"]
    _check_design(row, node, script)
    slice_names = [s["Name"] for s in gstore.slices(store, grid)]
    slice_name = _check_choice(node, script, "slice", params.get("slice"), slice_names)
    metric = _check_choice(node, script, "metric", params.get("metric"), list(row["Metrics"]))
    methods = _methods(node, script, params)
    zero_level = _number(node, script, params, "zero_level", 0.0, 0.5)
    zero_level = estimators.ZERO_LEVEL if zero_level is None else float(zero_level)
    amortized_options = {
        "hidden": _number(node, script, params, "hidden", 1, 1024),
        "weight_decay": _number(node, script, params, "weight_decay", 0.0, 1e6),
        "seed": _number(node, script, params, "seed", 0, 2**31),
    }
    lazy = not store.read_only and row["Options"].get("lazy", True)
    if lazy and gstore.missing_subsets(store, grid):
        # What the design can give is known before any cell trains: refuse first, so that a
        # fit that cannot succeed does not train (and commit) cells.
        _check_pairs(store, grid, node, script)
        fill(session, grid)  # commits cell by cell, as MATERIALIZE GRID does
    features = None
    if "amortized" in methods:
        features = scaling_features.unit_features(session, row)
    started = time.perf_counter()
    with store.transaction():
        data = sstore.contributions(store, grid, slice_name, metric)
        if data.num_rows == 0:
            raise CfdbDataError(
                f"grid {grid!r} has no measured marginal contributions of units",
                hint="create it with SUBSETS MARGINAL ... (or another design with pairs) and "
                "MATERIALIZE GRID",
            ).located(script, *node.span("name"))
        cols = {n: data.column(n).to_numpy(zero_copy_only=False) for n in data.column_names}
        unit_ids = dict(zip(cols["UnitIndex"].tolist(), cols["UnitId"].tolist(), strict=True))
        slice_of = dict(zip(cols["SliceId"].tolist(), cols["Slice"].tolist(), strict=True))
        groups = sorted({(int(s), str(m)) for s, m in zip(cols["SliceId"], cols["Metric"])})
        cols = _usable(cols, grid, node, script)
        out: dict[str, list[Any]] = {
            k: [] for k in ("Grid", "Method", "SliceId", "Metric", "UnitIndex", "UnitId")
        }
        out.update({k: [] for k in _LAW_COLUMNS})
        summary: dict[str, list[Any]] = {
            k: []
            for k in ("Grid", "Method", "Slice", "Metric", "Units", "Fitted", "Zero", "AtBound")
        }
        summary["MedianAlpha"] = []
        summary["MedianR2"] = []
        summary["MedianR2Linear"] = []
        for method in methods:
            for slice_id, metric_name in groups:
                mask = (cols["SliceId"] == slice_id) & (cols["Metric"] == metric_name)
                if not mask.any():
                    continue
                if method == "amortized":
                    assert features is not None
                    fits = _amortized(features, cols, mask, amortized_options, node, script)
                    ids = features.ids
                else:
                    fits = estimators.fit_units(
                        method, cols["UnitIndex"][mask], cols["Size"][mask],
                        cols["Delta"][mask], zero_level=zero_level,
                    )  # fmt: skip
                    ids = unit_ids
                for unit, law in fits:
                    out["Grid"].append(grid)
                    out["Method"].append(method)
                    out["SliceId"].append(slice_id)
                    out["Metric"].append(metric_name)
                    out["UnitIndex"].append(unit)
                    out["UnitId"].append(ids[unit])
                    for column, attr in _LAW_COLUMNS.items():
                        out[column].append(_finite(getattr(law, attr)))
                ok = [law for _, law in fits if law.status == "ok"]
                r2s = [law.r2 for law in ok if law.r2 is not None]
                r2l = [law.r2_linear for law in ok if law.r2_linear is not None]
                summary["Grid"].append(grid)
                summary["Method"].append(method)
                summary["Slice"].append(slice_of[slice_id])
                summary["Metric"].append(metric_name)
                summary["Units"].append(len(fits))
                summary["Fitted"].append(len(ok))
                summary["Zero"].append(sum(law.status == "zero" for _, law in fits))
                summary["AtBound"].append(sum(law.at_bound for law in ok))
                summary["MedianAlpha"].append(
                    float(np.median([law.alpha for law in ok])) if ok else None
                )
                summary["MedianR2"].append(float(np.median(r2s)) if r2s else None)
                summary["MedianR2Linear"].append(float(np.median(r2l)) if r2l else None)
        slice_ids = sorted({s for s, _ in groups})
        metrics = sorted({m for _, m in groups})
        sstore.replace_laws(store, grid, methods, slice_ids, metrics, _typed(out))
    summary["Seconds"] = [round(time.perf_counter() - started, 3)] * len(summary["Grid"])
    return pa.table(summary)


def _amortized(
    features: Any,
    cols: dict[str, np.ndarray],
    mask: np.ndarray,
    options: dict[str, Any],
    node: Any,
    script: str,
) -> list[tuple[int, estimators.UnitLaw]]:
    """The amortized estimator on one slice and metric: a law for every unit of the grid."""
    from threadpoolctl import threadpool_limits

    kwargs = {
        k: (float(v) if k == "weight_decay" else int(v))
        for k, v in options.items()
        if v is not None
    }
    try:
        with threadpool_limits(1):
            result = amortized.fit_amortized(
                features.x, cols["UnitIndex"][mask].astype(np.int64), cols["Size"][mask],
                cols["Delta"][mask], **kwargs,
            )  # fmt: skip
    except CfdbError as err:
        raise err.located(script, *node.span("name")) from None
    return list(enumerate(result.laws))


def _typed(out: dict[str, list[Any]]) -> pa.Table:
    types = {
        "SliceId": pa.int64(),
        "UnitIndex": pa.int32(),
        "Samples": pa.int64(),
        "Sizes": pa.int64(),
        "MinSize": pa.int64(),
        "MaxSize": pa.int64(),
        "SignChanges": pa.int32(),
        "Converged": pa.bool_(),
        "AtBound": pa.bool_(),
        "Message": pa.string(),
        "Status": pa.string(),
        "Method": pa.string(),
        "Metric": pa.string(),
        "UnitId": pa.string(),
        "Grid": pa.string(),
        "Noise": pa.string(),
    }
    return pa.table({k: pa.array(v, types.get(k, pa.float64())) for k, v in out.items()})


# -- PLOT SCALING LAWS ------------------------------------------------------------------------
def _columns(table: pa.Table) -> dict[str, list[Any]]:
    return {n: table.column(n).to_pylist() for n in table.column_names}


def _check_output_path(path: str, script: str, span: tuple[int, int]) -> None:
    """Refuse a figure path that cannot be written before any work (fits, drawing)."""
    folder = os.path.dirname(os.path.abspath(path)) if path.strip() else ""
    if not path.strip() or os.path.isdir(path) or not os.path.isdir(folder):
        raise CfdbDataError(
            f"cannot write the figure to {path!r}: give a file path in an existing folder"
        ).located(script, *span)


@handles(PlotScalingLaws)
def plot_scaling_laws(session: Any, node: PlotScalingLaws, stmt: Statement) -> pa.Table:
    store, script = session.store, stmt.script
    params = _check_options(node, script, PLOT_OPTIONS, "PLOT SCALING LAWS")
    _check_output_path(str(node.args["path"]), script, node.span("path"))
    row = _grid(session, node, script)
    grid = row["Name"]
    slice_names = [s["Name"] for s in gstore.slices(store, grid)]
    slice_name = _check_choice(node, script, "slice", params.get("slice"), slice_names) or "all"
    metric = _check_choice(node, script, "metric", params.get("metric"), list(row["Metrics"]))
    metric = metric or row["Metrics"][0]
    method = params.get("method")
    if method is not None and str(method).lower() not in estimators.METHODS:
        raise CfdbDataError(
            f"unknown method {method!r}; known: {', '.join(estimators.METHODS)}"
        ).located(script, *node.param("method").span)
    method = None if method is None else str(method).lower()
    laws = _columns(sstore.laws(store, grid, method, slice_name, metric))
    if not laws["UnitId"]:
        raise CfdbDataError(
            f"grid {grid!r} has no fitted scaling laws for slice {slice_name!r} and metric "
            f"{metric!r}",
            hint=f"run FIT SCALING LAWS FOR GRID {grid} first",
        ).located(script, *node.span("name"))
    used = laws["Method"][0]
    path, kind = str(node.args["path"]), str(node.args["kind"])
    title = f"{grid}: {metric} on slice {slice_name} ({used})"
    # units with samples only: the amortized estimator also predicts units never measured,
    # which have no points to draw and no R²
    ok = [
        i
        for i, (s, n) in enumerate(zip(laws["Status"], laws["Samples"], strict=True))
        if s == "ok" and (n or 0) > 0
    ]
    count = 0
    if kind == "alpha":
        min_r2 = params.get("min_r2")
        alphas = [
            laws["Alpha"][i]
            for i in ok
            if min_r2 is None or (laws["R2"][i] is not None and laws["R2"][i] >= float(min_r2))
        ]
        plots.alpha_histogram(alphas, path, title)
        count = len(alphas)
    elif kind == "r2":
        rows = _columns(sstore.r2(store, grid, method, slice_name, metric))
        per = [(s, r) for s, r in zip(rows["Size"], rows["R2"], strict=True) if s is not None]
        overall = next(
            (r for s, r in zip(rows["Size"], rows["R2"], strict=True) if s is None), None
        )
        plots.r2_by_size([s for s, _ in per], [r for _, r in per], overall, path, title)
        count = len(per)
    else:
        chosen = _chosen_units(node, script, params.get("units"), laws, ok)
        check = _columns(sstore.check(store, grid, method, slice_name, metric))
        items = []
        for uid in chosen:
            i = laws["UnitId"].index(uid)
            rows = [j for j, u in enumerate(check["UnitId"]) if u == uid]
            items.append(
                plots.Curve(
                    uid,
                    np.array([check["Size"][j] for j in rows], dtype=float),
                    np.array([check["Measured"][j] for j in rows], dtype=float),
                    float(laws["C"][i]) if laws["C"][i] is not None else float("nan"),
                    float(laws["Alpha"][i]) if laws["Alpha"][i] is not None else float("nan"),
                )
            )
        plots.curves(items, path, title)
        count = len(items)
    return pa.table({"File": [path], "Figure": [kind], "Method": [used], "Items": [count]})


def _chosen_units(
    node: Any, script: str, option: Any, laws: dict[str, list[Any]], ok: list[int]
) -> list[str]:
    """The units of a CURVES figure: a number (spread over α, default 6) or a list of ids."""
    if option is None or isinstance(option, int):
        n = 6 if option is None else int(option)
        return plots.pick_units([laws["UnitId"][i] for i in ok], [laws["Alpha"][i] for i in ok], n)
    wanted = [label_string(v) for v in (option if isinstance(option, tuple) else (option,))]
    missing = [w for w in wanted if w not in laws["UnitId"]]
    if missing:
        raise CfdbDataError(f"unit {missing[0]!r} has no fitted scaling law").located(
            script, *node.param("units").span
        )
    return wanted
