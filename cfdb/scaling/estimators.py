"""Estimators of individualized data scaling laws: ``ψ_k(z) ≈ c(z)·k^(−α(z))`` per unit.

Covert, Ji, Hashimoto & Zou, "Scaling Laws for the Value of Individual Data Points in Machine
Learning" (ICML 2024). A unit's marginal contribution to a dataset ``D`` of size ``k`` is
``Δ(z, D) = perf(D ∪ {z}) − perf(D)``; its expectation over datasets of size ``k`` is
``ψ_k(z)``. From samples ``(k_i, Δ_i)`` of one unit (pure numpy/scipy, no database):

* :func:`ols_fit` (the paper's validation fit, section 3): the mean ``Δ`` at each size ``k``,
  then ordinary least squares of ``ln |mean Δ|`` on ``ln k``; ``c`` takes the sign of the mean
  of all samples; R² in log space. It needs several samples at each of a few sizes (the
  ``GEOMETRIC`` design).
* :func:`mle_fit` (section 5, the likelihood-based estimator): ``Δ ~ N(c·k^(−α), σ²·k^(−β))``.
  For fixed ``(α, β)``, ``c`` and ``σ²`` have closed forms (weighted least squares)::

      c  = mean(Δ·k^(β−α)) / mean(k^(β−2α))
      σ² = mean(k^β·(Δ − c·k^(−α))²)

  and the profile negative log-likelihood ``n/2·ln σ² − β/2·Σ ln k`` (plus a constant) is
  minimized over ``(α, β)`` by L-BFGS-B from ``α = 1, β = 2`` with its exact gradient. Sizes
  are centred (``k / k₀`` with ``k₀`` their geometric mean) and ``Δ`` scaled to unit RMS for
  conditioning; both are undone in the result. It works with one sample per size (sizes
  drawn uniformly), which is what makes it cheap.

Both report, for any fit, the log-space R² of the fitted line against the per-size means and
the number of sizes whose mean has the sign opposite to ``c``.

The paper's amortized estimator (a network mapping a point's features to its parameters) is
not implemented: see ``docs/scaling_laws.md`` for why.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Bounds of the 2-D search: wide enough for any exponent seen in practice (the paper: α
#: mostly in [1, 1.5], 2 for linear regression), narrow enough that a handful of samples
#: cannot send the search to infinity. A fit that ends on a bound is flagged ``at_bound``.
ALPHA_BOUNDS = (-2.0, 6.0)
BETA_BOUNDS = (-4.0, 12.0)
#: The starting point of the search (the paper's).
START = (1.0, 2.0)
#: Methods by name.
METHODS = ("mle", "ols")


@dataclass(frozen=True)
class UnitLaw:
    """A fitted ``ψ_k ≈ c·k^(−α)`` (and, for the MLE, ``Var Δ ≈ σ²·k^(−β)``).

    Attributes:
        method: ``"mle"`` or ``"ols"``.
        c: scale (sign: whether the unit helps, in the metric's "better" direction); NaN
            when there is no fit.
        alpha: decay exponent; NaN when undefined (no fit, or ``c = 0``).
        sigma: noise scale (MLE only).
        beta: noise decay exponent (MLE only).
        r2: R² in log space of the fitted line against ``ln |mean Δ|`` at each size (None
            with fewer than two sizes of non-zero mean, or no spread).
        samples: samples used.
        sizes: distinct sizes among them.
        min_size: smallest size.
        max_size: largest size.
        log_lik: the maximized log-likelihood (MLE only).
        converged: whether the optimizer reported success (OLS: always True when fitted).
        at_bound: whether α or β ended on a bound of the search.
        sign_changes: sizes whose mean Δ has the sign opposite to ``c``.
        status: ``ok``, ``too_few`` (not enough samples or sizes), ``constant`` (every Δ is
            0: the unit never changes the metric; ``c = 0``) or ``failed``.
        message: why, when not ``ok``.
    """

    method: str
    c: float
    alpha: float
    sigma: float | None = None
    beta: float | None = None
    r2: float | None = None
    samples: int = 0
    sizes: int = 0
    min_size: int = 0
    max_size: int = 0
    log_lik: float | None = None
    converged: bool = False
    at_bound: bool = False
    sign_changes: int = 0
    status: str = "ok"
    message: str | None = None

    def value(self, k: np.ndarray | float) -> np.ndarray:
        """``c·k^(−α)`` (0 for a constant unit)."""
        k = np.asarray(k, dtype=float)
        if self.c == 0:
            return np.zeros_like(k)
        return self.c * np.power(k, -self.alpha)


def size_means(k: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct sizes ascending, mean Δ at each, samples at each)."""
    k = np.asarray(k, dtype=float)
    delta = np.asarray(delta, dtype=float)
    sizes, inverse, counts = np.unique(k, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=delta, minlength=len(sizes)) / counts
    return sizes, means, counts


def log_r2(sizes: np.ndarray, means: np.ndarray, c: float, alpha: float) -> float | None:
    """R² of ``ln|c| − α·ln k`` against ``ln |mean|`` over sizes with a non-zero mean."""
    keep = means != 0
    if keep.sum() < 2 or c == 0 or not np.isfinite(alpha):
        return None
    y = np.log(np.abs(means[keep]))
    pred = math.log(abs(c)) - alpha * np.log(sizes[keep])
    total = float(np.sum((y - y.mean()) ** 2))
    if total <= 0:
        return None
    return 1.0 - float(np.sum((y - pred) ** 2)) / total


def _common(
    method: str, k: np.ndarray, delta: np.ndarray, min_samples: int
) -> tuple[dict[str, int], UnitLaw | None]:
    """Shared checks: counts, and the result when there is nothing to fit."""
    sizes = np.unique(k)
    counts = {
        "samples": len(k),
        "sizes": len(sizes),
        "min_size": int(k.min()) if len(k) else 0,
        "max_size": int(k.max()) if len(k) else 0,
    }
    nan = float("nan")
    if len(k) and np.all(delta == 0):
        return counts, UnitLaw(
            method, 0.0, nan, 0.0 if method == "mle" else None, None, None, **counts,
            converged=True, status="constant", message="every marginal contribution is 0",
        )  # fmt: skip
    if len(k) < min_samples or len(sizes) < 2:
        return counts, UnitLaw(
            method, nan, nan, None, None, None, **counts, status="too_few",
            message=f"{len(k)} samples at {len(sizes)} sizes: needs at least {min_samples} "
            "samples at two sizes or more",
        )  # fmt: skip
    return counts, None


def ols_fit(k: np.ndarray, delta: np.ndarray) -> UnitLaw:
    """The log-linear fit: OLS of ``ln |mean Δ at each k|`` on ``ln k``.

    Args:
        k: dataset size of each sample (the size of ``D`` without the unit).
        delta: marginal contribution of each sample, oriented so that positive helps.

    Returns:
        The fit; ``status`` says when there is none (fewer than two sizes with a non-zero mean).
    """
    k = np.asarray(k, dtype=float)
    delta = np.asarray(delta, dtype=float)
    counts, early = _common("ols", k, delta, 2)
    if early is not None:
        return early
    sizes, means, _ = size_means(k, delta)
    keep = means != 0
    if keep.sum() < 2:
        return UnitLaw(
            "ols", float("nan"), float("nan"), **counts, status="too_few",
            message="fewer than two sizes with a non-zero mean",
        )  # fmt: skip
    sign = 1.0 if delta.mean() >= 0 else -1.0
    slope, intercept = np.polyfit(np.log(sizes[keep]), np.log(np.abs(means[keep])), 1)
    c, alpha = sign * math.exp(intercept), -float(slope)
    return UnitLaw(
        "ols",
        c,
        alpha,
        r2=log_r2(sizes, means, c, alpha),
        **counts,
        converged=True,
        sign_changes=int(np.sum(np.sign(means[keep]) == -sign)),
    )


def _profile(
    theta: np.ndarray, u: np.ndarray, d: np.ndarray
) -> tuple[float, np.ndarray, float, float]:
    """Profile NLL per sample (up to a constant), its gradient, c₀ and s₀² at ``(α, β)``.

    With ``u = ln(k/k₀)`` centred (``mean u = 0``), the NLL per sample is
    ``½ ln s₀² + ½ + ½ ln 2π``; by the envelope theorem its gradient is the partial gradient
    of the full NLL at the closed-form ``c₀`` and ``s₀²``.
    """
    alpha, beta = float(theta[0]), float(theta[1])
    g = np.exp(-alpha * u)
    w = np.exp(beta * u)
    c0 = float(np.mean(w * g * d) / np.mean(w * g * g))
    r = d - c0 * g
    s2 = max(float(np.mean(w * r * r)), 1e-300)
    grad = np.array(
        [c0 / s2 * float(np.mean(w * r * g * u)), 0.5 / s2 * float(np.mean(w * r * r * u))]
    )
    return 0.5 * math.log(s2), grad, c0, s2


def log_likelihood(
    k: np.ndarray, delta: np.ndarray, c: float, alpha: float, sigma: float, beta: float
) -> float:
    """``Σ log N(Δ; c·k^(−α), σ²·k^(−β))``."""
    k = np.asarray(k, dtype=float)
    var = sigma**2 * np.power(k, -beta)
    resid = np.asarray(delta, dtype=float) - c * np.power(k, -alpha)
    return float(-0.5 * np.sum(np.log(2 * np.pi * var) + resid**2 / var))


def mle_fit(
    k: np.ndarray, delta: np.ndarray, start: tuple[float, float] = START, min_samples: int = 4
) -> UnitLaw:
    """The maximum-likelihood fit of ``Δ ~ N(c·k^(−α), σ²·k^(−β))``.

    Args:
        k: dataset size of each sample.
        delta: marginal contribution of each sample, oriented so that positive helps.
        start: the starting ``(α, β)``.
        min_samples: fewer samples give ``status = "too_few"``.

    Returns:
        The fit, with the maximized log-likelihood and the optimizer's diagnostics.
    """
    from scipy.optimize import minimize

    k = np.asarray(k, dtype=float)
    delta = np.asarray(delta, dtype=float)
    counts, early = _common("mle", k, delta, min_samples)
    if early is not None:
        return early
    log_k0 = float(np.mean(np.log(k)))
    u = np.log(k) - log_k0
    scale = float(np.sqrt(np.mean(delta**2)))
    d = delta / scale
    bounds = (ALPHA_BOUNDS, BETA_BOUNDS)
    x0 = np.clip(np.asarray(start, dtype=float), [b[0] for b in bounds], [b[1] for b in bounds])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            # Tight tolerances: when the noise is small against the mean, a tiny error in α
            # swamps the residuals and σ, β come out wrong at the default stopping rule.
            res = minimize(
                lambda t: _profile(t, u, d)[:2],
                x0,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 500},
            )
    except (ValueError, FloatingPointError, ZeroDivisionError) as err:
        return UnitLaw(
            "mle", float("nan"), float("nan"), **counts, status="failed", message=str(err)
        )
    alpha, beta = float(res.x[0]), float(res.x[1])
    _, _, c0, s2 = _profile(res.x, u, d)
    c = c0 * scale * math.exp(alpha * log_k0)
    sigma = math.sqrt(s2) * scale * math.exp(beta * log_k0 / 2)
    if not all(math.isfinite(v) for v in (c, alpha, sigma, beta)):
        return UnitLaw(
            "mle", float("nan"), float("nan"), **counts, status="failed",
            message="the likelihood has no finite maximum within the bounds",
        )  # fmt: skip
    on_bound = [min(abs(v - lo), abs(v - hi)) < 1e-6 for v, (lo, hi) in zip(res.x, bounds)]
    # L-BFGS-B may stop on "abnormal termination in line search" at a point it cannot improve
    # in floating point: a vanishing gradient (away from the bounds) is convergence too.
    _, grad, _, _ = _profile(res.x, u, d)
    free = np.abs(grad[~np.asarray(on_bound)])
    converged = bool(res.success) or bool(np.all(free < 1e-6))
    sizes, means, _ = size_means(k, delta)
    sign = 1.0 if c >= 0 else -1.0
    return UnitLaw(
        "mle",
        c,
        alpha,
        sigma,
        beta,
        r2=log_r2(sizes, means, c, alpha),
        **counts,
        log_lik=log_likelihood(k, delta, c, alpha, sigma, beta),
        converged=converged,
        at_bound=any(on_bound),
        sign_changes=int(np.sum(np.sign(means[means != 0]) == -sign)),
    )


def fit(method: str, k: np.ndarray, delta: np.ndarray) -> UnitLaw:
    """Fit one unit with ``method`` (``mle`` or ``ols``)."""
    if method == "mle":
        return mle_fit(k, delta)
    if method == "ols":
        return ols_fit(k, delta)
    raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")


def fit_units(
    method: str, units: np.ndarray, k: np.ndarray, delta: np.ndarray
) -> list[tuple[int, UnitLaw]]:
    """Fit every unit of ``units`` (one entry per sample) with ``method``, by unit index.

    BLAS is held to one thread: scipy's L-BFGS-B on two parameters is ~25× slower when it
    wakes a thread pool on a busy machine.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return [(unit, fit(method, ks, ds)) for unit, ks, ds in by_unit(units, k, delta)]


def by_unit(
    units: np.ndarray, k: np.ndarray, delta: np.ndarray
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(unit, sizes, Δ)`` of each unit in ascending order (one pass over sorted arrays)."""
    units = np.asarray(units)
    order = np.argsort(units, kind="stable")
    units, k, delta = units[order], np.asarray(k)[order], np.asarray(delta)[order]
    bounds = np.flatnonzero(np.diff(units)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(units)], strict=True):
        if hi > lo:
            yield int(units[lo]), k[lo:hi], delta[lo:hi]


def simulate(
    c: float,
    alpha: float,
    sigma: float,
    beta: float,
    k: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Samples drawn exactly from the model: ``Δ ~ N(c·k^(−α), σ²·k^(−β))``."""
    k = np.asarray(k, dtype=float)
    return rng.normal(c * np.power(k, -alpha), sigma * np.power(k, -beta / 2))
