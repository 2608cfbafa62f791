"""Data scaling laws over the grid: how a metric moves with the training-subset size.

Points are ``(size, mean metric over the grid's subsets of that size)`` for sizes ≥ 1. Two
forms, both written ``metric ≈ a − b·size^(−c)``:

* ``loglog``: the asymptote ``a`` is fixed at the metric's perfect value (1 for accuracy, 0
  for log loss...), so ``ln |a − metric| = ln |b| − c·ln size`` is an ordinary least-squares
  line; R² is measured in log space. Sizes whose error is not positive are left out. This is
  the form the ``scaling_law`` SQL macro computes in plain DuckDB.
* ``power``: ``a``, ``b`` and ``c`` fitted together by non-linear least squares (scipy,
  started from the log-log fit), with ``a`` no better than the perfect value and
  ``0 < c ≤ 10``; R² on the metric's own scale. cfdb stores it in
  ``GridScalingFits`` after each materialization.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScalingFit:
    """A fitted ``metric ≈ a − b·size^(−c)``."""

    form: str
    a: float
    b: float
    c: float
    r2: float
    points: int

    def predict(self, size: np.ndarray | float) -> np.ndarray:
        return self.a - self.b * np.power(np.asarray(size, dtype=float), -self.c)


def size_means(sizes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean value per distinct size ≥ 1 (NaN values ignored), sizes ascending."""
    sizes = np.asarray(sizes, dtype=float)
    values = np.asarray(values, dtype=float)
    keep = (sizes >= 1) & ~np.isnan(values)
    xs = np.unique(sizes[keep])
    ys = np.array([values[keep][sizes[keep] == x].mean() for x in xs])
    return xs, ys


def loglog_fit(xs: np.ndarray, ys: np.ndarray, best: float) -> ScalingFit | None:
    """The log-log linear fit with the asymptote fixed at ``best``; None with < 2 points."""
    err = best - np.asarray(ys, dtype=float)
    sign = 1.0 if np.nanmean(err) >= 0 else -1.0
    err = sign * err
    keep = err > 0
    if keep.sum() < 2:
        return None
    lx, ly = np.log(np.asarray(xs, dtype=float)[keep]), np.log(err[keep])
    slope, intercept = np.polyfit(lx, ly, 1)
    fitted = intercept + slope * lx
    total = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - float(np.sum((ly - fitted) ** 2)) / total if total > 0 else float("nan")
    return ScalingFit(
        "loglog", best, sign * float(np.exp(intercept)), -float(slope), r2, int(keep.sum())
    )


def power_fit(xs: np.ndarray, ys: np.ndarray, best: float) -> ScalingFit | None:
    """The three-parameter fit of ``a − b·size^(−c)``; None with < 3 points or no fit."""
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(xs) < 3:
        return None
    from scipy.optimize import curve_fit

    start = loglog_fit(xs, ys, best)
    p0 = (best, start.b, max(start.c, 1e-3)) if start else (float(ys[-1]), 0.0, 0.5)

    def form(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return a - b * np.power(x, -c)

    # The asymptote cannot beat a perfect model (a <= best for accuracy, a >= best for a
    # loss), and the exponent is positive: without these bounds a few points are often fitted
    # by a huge a and b with c near 0.
    higher = float(np.mean(best - ys)) >= 0
    lower_a, upper_a = (-np.inf, best) if higher else (best, np.inf)
    p0 = (min(max(p0[0], lower_a + 1e-9), upper_a - 1e-9), p0[1], min(max(p0[2], 1e-3), 5.0))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. no covariance with exactly three points
            (a, b, c), _ = curve_fit(
                form,
                xs,
                ys,
                p0=p0,
                bounds=([lower_a, -np.inf, 1e-4], [upper_a, np.inf, 10.0]),
                maxfev=20000,
            )
    except (RuntimeError, ValueError, TypeError):
        return None
    if not np.all(np.isfinite([a, b, c])):
        return None
    total = float(np.sum((ys - ys.mean()) ** 2))
    resid = float(np.sum((ys - form(xs, a, b, c)) ** 2))
    r2 = 1.0 - resid / total if total > 0 else float("nan")
    return ScalingFit("power", float(a), float(b), float(c), r2, len(xs))
