"""Figures of individualized data scaling laws, as PNG files (matplotlib, the ``plots`` extra).

The three figures of the paper's validation (Covert, Ji, Hashimoto & Zou, ICML 2024, Figure 1
and Figures 4-5):

* :func:`curves`: ``log |ψ_k|`` against ``log k`` for a few units, the measured means as
  points (hollow when the mean is negative) and each unit's fitted line;
* :func:`alpha_histogram`: the distribution of the fitted exponents ``α``;
* :func:`r2_by_size`: R² of the laws' predictions across units at each dataset size.

Figures are drawn on a bare ``matplotlib.figure.Figure`` (no pyplot state), so any thread or
process can draw them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cfdb.errors import CfdbUnsupportedError


@dataclass(frozen=True)
class Curve:
    """One unit of :func:`curves`: measured means per size and the fitted law."""

    unit: str
    sizes: np.ndarray
    measured: np.ndarray
    c: float
    alpha: float


def _figure(width: float = 6.4, height: float = 4.4) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise CfdbUnsupportedError(
            "plots need matplotlib", hint="pip install 'cfdb[plots]'"
        ) from err
    return Figure(figsize=(width, height), layout="constrained")


def pick_units(units: Sequence[str], alphas: Sequence[float], n: int) -> list[str]:
    """``n`` units spread over the range of ``α`` (its quantiles), as the paper shows them."""
    alphas = np.asarray(alphas, dtype=float)
    keep = np.flatnonzero(np.isfinite(alphas))
    if len(keep) <= n:
        return [units[i] for i in keep]
    order = keep[np.argsort(alphas[keep], kind="stable")]
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, n)).astype(int))
    return [units[i] for i in order[picks]]


def curves(items: Sequence[Curve], path: str, title: str = "") -> None:
    """``log |ψ_k|`` against ``log k``: measured means and fitted lines, one colour per unit."""
    fig = _figure()
    ax = fig.subplots()
    colours = [f"C{i % 10}" for i in range(len(items))]
    for item, colour in zip(items, colours, strict=True):
        sizes, measured = np.asarray(item.sizes, float), np.asarray(item.measured, float)
        nonzero = measured != 0
        pos, neg = nonzero & (measured > 0), nonzero & (measured < 0)
        ax.scatter(sizes[pos], np.abs(measured[pos]), color=colour, s=18)
        ax.scatter(sizes[neg], np.abs(measured[neg]), facecolors="none", edgecolors=colour, s=18)
        if len(sizes) and np.isfinite(item.alpha) and item.c != 0:
            grid = np.geomspace(sizes.min(), sizes.max(), 50)
            ax.plot(
                grid,
                np.abs(item.c) * grid ** (-item.alpha),
                color=colour,
                label=f"{item.unit}: α = {item.alpha:.2f}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("dataset size k")
    ax.set_ylabel("|ψ_k| (mean marginal contribution)")
    ax.set_title(title or "individualized scaling laws (hollow: negative mean)")
    if items:
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)


def alpha_histogram(alphas: Sequence[float], path: str, title: str = "") -> None:
    """Histogram of the fitted exponents ``α`` (finite ones)."""
    values = np.asarray(alphas, dtype=float)
    values = values[np.isfinite(values)]
    fig = _figure()
    ax = fig.subplots()
    ax.hist(values, bins=max(5, min(40, len(values) // 5 or 5)), color="C0", edgecolor="white")
    if len(values):
        ax.axvline(float(np.median(values)), color="C3", linestyle="--", label="median")
        ax.legend(fontsize="small")
    ax.set_xlabel("α (decay exponent of ψ_k = c·k^(−α))")
    ax.set_ylabel("units")
    ax.set_title(title or f"scaling exponents of {len(values)} units")
    fig.savefig(path, dpi=120)


def r2_by_size(
    sizes: Sequence[float], r2: Sequence[float], overall: float | None, path: str, title: str = ""
) -> None:
    """R² of the predictions across units at each dataset size, with the overall R²."""
    fig = _figure()
    ax = fig.subplots()
    xs = np.asarray(sizes, dtype=float)
    ys = np.asarray([np.nan if v is None else v for v in r2], dtype=float)
    ax.plot(xs, ys, marker="o", color="C0")
    if overall is not None and np.isfinite(overall):
        ax.axhline(overall, color="C3", linestyle="--", label=f"overall R² = {overall:.3f}")
        ax.legend(fontsize="small")
    ax.set_xscale("log")
    ax.set_xlabel("dataset size k")
    ax.set_ylabel("R² across units")
    ax.set_title(title or "scaling-law predictions against measured ψ_k")
    fig.savefig(path, dpi=120)
