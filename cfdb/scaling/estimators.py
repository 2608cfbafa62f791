"""Per-unit estimators of individualized data scaling laws: ``ψ_k(z) ≈ c(z)·k^(−α(z))``.

Covert, Ji, Hashimoto & Zou, "Scaling Laws for the Value of Individual Data Points in Machine
Learning" (ICML 2024). A unit's marginal contribution to a dataset ``D`` of size ``k`` is
``Δ(z, D) = perf(D ∪ {z}) − perf(D)``; its expectation over datasets of size ``k`` is
``ψ_k(z)``. From samples ``(k_i, Δ_i)`` of one unit (pure numpy/scipy, no database):

* :func:`ols_fit` (the paper's validation fit, section 3): the mean ``Δ`` at each size ``k``,
  then ordinary least squares of ``ln |mean Δ|`` on ``ln k``; ``c`` takes the sign of the mean
  of all samples; R² in log space. It needs several samples at each of a few sizes.
* :func:`mle_fit` (section 5, the likelihood-based estimator): ``Δ_i ~ N(c·k_i^(−α), v_i)``.
  The noise variance ``v`` is estimated from the samples:

  - ``noise = 'size'`` when every size has several samples (the ``GEOMETRIC`` design): the
    sample variance at each size, so a size whose contributions are heavy-tailed (typically
    the smallest) weighs less. ``c`` has a closed form for fixed ``α`` and the 1-D profile
    likelihood is searched over ``α``.
  - ``noise = 'power'`` otherwise (one sample per size, sizes drawn uniformly: the paper's
    setting): ``v = σ²·k^(−β)``, fitted jointly; for fixed ``(α, β)``, ``c`` and ``σ²`` have
    closed forms (weighted least squares)::

        c  = mean(Δ·k^(β−α)) / mean(k^(β−2α))
        σ² = mean(k^β·(Δ − c·k^(−α))²)

    and the 2-D profile likelihood is searched over ``(α, β)``.

  Sizes are used in log space, centred on their geometric mean (``u = ln(k/k₀)``), and ``Δ`` is
  scaled to unit RMS, so ``ln|c|`` and ``ln σ`` are the profiled coordinates. The search starts
  from a coarse grid of exponents and from the OLS fit of ``ln|mean Δ|`` on ``ln k``, then
  refines with L-BFGS-B (exact gradient); a fit that ends on a bound of ``α`` or ``β`` is
  flagged ``at_bound`` (not silently clamped). A likelihood-ratio test against ``c = 0``
  (the statistic is ``evidence``) flags units whose contributions cannot be told from zero:
  status ``zero``, ``c = 0`` and no ``α``.

Every fit reports its R² against the per-size means (sizes with one sample each are grouped
into bins of neighbouring sizes first): ``r2`` in log space (the paper's Figure 1 statistic) and
``r2_linear`` on the contributions' scale, and the number of sizes whose mean has the sign
opposite to ``c``.

The amortized estimator, which shares information across units through their features, is
:mod:`cfdb.scaling.amortized`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

#: Bounds of the exponents' search: wide enough for any exponent seen in practice (the paper:
#: α mostly in [1, 1.5], 2 for linear regression), narrow enough that a handful of samples
#: cannot send the search to infinity. A fit that ends on a bound is flagged ``at_bound``.
ALPHA_BOUNDS = (-1.0, 4.0)
BETA_BOUNDS = (-4.0, 12.0)
#: The default starting point of the search (the paper's).
START = (1.0, 2.0)
#: Methods by name.
METHODS = ("mle", "ols", "amortized")
#: Default level of the test against ``c = 0``: a unit whose likelihood-ratio statistic is
#: below the (1 − level) quantile of χ²₂ is flagged ``zero``.
ZERO_LEVEL = 0.05
#: Statuses a law can have; ``ok``, ``zero`` and ``constant`` have a usable value (``zero`` and
#: ``constant`` are worth 0 at every size).
STATUSES = ("ok", "zero", "constant", "too_few", "failed")


@dataclass(frozen=True)
class UnitLaw:
    """A fitted ``ψ_k ≈ c·k^(−α)`` (and, for the MLE, ``Var Δ ≈ σ²·k^(−β)``).

    Attributes:
        method: ``"mle"``, ``"ols"`` or ``"amortized"``.
        c: scale (sign: whether the unit helps, in the metric's "better" direction); 0 for a
            ``zero`` or ``constant`` unit; NaN when there is no fit.
        alpha: decay exponent; NaN when undefined (no fit, or ``c = 0``).
        sigma: noise scale (MLE, amortized).
        beta: noise decay exponent (MLE, amortized).
        r2: R² in log space of the law against ``ln |mean Δ|`` per size (or bin of sizes).
        r2_linear: R² of the law against the mean Δ per size (or bin), on Δ's scale.
        samples: samples used.
        sizes: distinct sizes among them.
        min_size: smallest size.
        max_size: largest size.
        log_lik: the maximized log-likelihood (MLE; amortized: at its prediction).
        converged: whether the optimizer reported success (OLS: always True when fitted).
        at_bound: whether α or β ended on a bound of the search.
        sign_changes: sizes (or bins) whose mean Δ has the sign opposite to ``c``.
        evidence: the likelihood-ratio statistic against ``c = 0`` (MLE).
        noise: the noise model, ``size`` (per-size variances) or ``power`` (``σ²·k^(−β)``).
        status: one of :data:`STATUSES`.
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
    r2_linear: float | None = None
    evidence: float | None = None
    noise: str | None = None

    def value(self, k: np.ndarray | float) -> np.ndarray:
        """``c·k^(−α)`` (0 for a ``zero`` or ``constant`` unit)."""
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


def size_bins(k: np.ndarray) -> np.ndarray:
    """The bin of each sample for per-size means: its size when every size has two samples
    or more; otherwise up to 10 bins of neighbouring sizes with about 5 samples each (sizes
    drawn one per sample have no per-size mean worth the name)."""
    k = np.asarray(k, dtype=float)
    sizes, inverse, counts = np.unique(k, return_inverse=True, return_counts=True)
    if counts.min() >= 2 or len(sizes) <= 2:
        return inverse
    n_bins = int(np.clip(len(k) // 5, 2, 10))
    # bins of equal counts over the sorted sizes, never splitting a size between two bins
    cum = np.cumsum(counts)
    return np.minimum((cum[inverse] - 1) * n_bins // len(k), n_bins - 1)


def fit_quality(
    k: np.ndarray, delta: np.ndarray, c: float, alpha: float
) -> tuple[float | None, float | None, int]:
    """(log-space R², linear R², sign changes) of ``c·k^(−α)`` against per-size (bin) means.

    Bins are weighted by their samples. The log-space R² uses the bins whose mean and
    prediction are non-zero; both R² are None without two such bins or without spread.
    """
    k = np.asarray(k, dtype=float)
    delta = np.asarray(delta, dtype=float)
    if not (math.isfinite(c) and c != 0 and math.isfinite(alpha)):
        return None, None, 0
    bins = size_bins(k)
    counts = np.bincount(bins).astype(float)
    keep = counts > 0
    counts = counts[keep]
    measured = np.bincount(bins, weights=delta)[keep] / counts
    predicted = np.bincount(bins, weights=c * np.power(k, -alpha))[keep] / counts
    r2_lin = None
    if len(counts) >= 2:
        centre = np.average(measured, weights=counts)
        total = float(np.sum(counts * (measured - centre) ** 2))
        if total > 0:
            r2_lin = 1.0 - float(np.sum(counts * (measured - predicted) ** 2)) / total
    r2_log = None
    nz = measured != 0
    if nz.sum() >= 2:
        y = np.log(np.abs(measured[nz]))
        p = np.log(np.abs(predicted[nz]))
        w = counts[nz]
        total = float(np.sum(w * (y - np.average(y, weights=w)) ** 2))
        if total > 0:
            r2_log = 1.0 - float(np.sum(w * (y - p) ** 2)) / total
    sign = 1.0 if c > 0 else -1.0
    return r2_log, r2_lin, int(np.sum(np.sign(measured[nz]) == -sign))


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
            message=f"{len(k)} samples at {len(sizes)} sizes: the fit needs at least "
            f"{min_samples} samples at two sizes or more",
        )  # fmt: skip
    return counts, None


def ols_fit(k: np.ndarray, delta: np.ndarray) -> UnitLaw:
    """The log-linear fit: OLS of ``ln |mean Δ at each k|`` on ``ln k``.

    Args:
        k: dataset size of each sample (the size of ``D`` without the unit), at least 1.
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
    _, r2_lin, _ = fit_quality(k, delta, c, alpha)
    return UnitLaw(
        "ols",
        c,
        alpha,
        r2=log_r2(sizes, means, c, alpha),
        r2_linear=r2_lin,
        **counts,
        converged=True,
        sign_changes=int(np.sum(np.sign(means[keep]) == -sign)),
    )


# -- the maximum-likelihood fit -----------------------------------------------------------------
def _profile(
    theta: np.ndarray, u: np.ndarray, d: np.ndarray
) -> tuple[float, np.ndarray, float, float]:
    """Profile NLL per sample (up to a constant), its gradient, c₀ and s₀² at ``(α, β)``
    under the power-law noise ``v = s₀²·e^(−β·u)``.

    With ``u = ln(k/k₀)`` centred (``mean u = 0``), the NLL per sample is
    ``½ ln s₀² + ½ + ½ ln 2π``; by the envelope theorem its gradient is the partial gradient
    of the full NLL at the closed-form ``c₀`` and ``s₀²``.
    """
    alpha, beta = float(theta[0]), float(theta[1])
    n = len(d)
    g = np.exp(-alpha * u)
    w = np.exp(beta * u)
    wg = w * g
    c0 = float(wg @ d) / float(wg @ g)
    r = d - c0 * g
    wr = w * r
    s2 = max(float(wr @ r) / n, 1e-300)
    grad = np.array([c0 / s2 * float((wr * g) @ u) / n, 0.5 / s2 * float((wr * r) @ u) / n])
    return 0.5 * math.log(s2), grad, c0, s2


def _profile_fixed(
    alpha: float, u: np.ndarray, d: np.ndarray, w: np.ndarray
) -> tuple[float, float]:
    """Weighted RSS ``½ Σ w (d − c₀ g)²`` and c₀ at ``α`` with known inverse variances ``w``."""
    g = np.exp(-alpha * u)
    c0 = float(np.sum(w * g * d) / np.sum(w * g * g))
    r = d - c0 * g
    return 0.5 * float(np.sum(w * r * r)), c0


def log_likelihood(
    k: np.ndarray, delta: np.ndarray, c: float, alpha: float, sigma: float, beta: float
) -> float:
    """``Σ log N(Δ; c·k^(−α), σ²·k^(−β))``."""
    k = np.asarray(k, dtype=float)
    var = sigma**2 * np.power(k, -beta)
    resid = np.asarray(delta, dtype=float) - c * np.power(k, -alpha)
    return float(-0.5 * np.sum(np.log(2 * np.pi * var) + resid**2 / var))


def _ols_start(u: np.ndarray, d: np.ndarray) -> float | None:
    """α of the OLS line through ``ln |mean Δ|`` of the size bins (the search's start)."""
    bins = size_bins(u)
    counts = np.bincount(bins).astype(float)
    keep = counts > 0
    means = np.bincount(bins, weights=d)[keep] / counts[keep]
    centres = np.bincount(bins, weights=u)[keep] / counts[keep]
    nz = means != 0
    if nz.sum() < 2 or np.ptp(centres[nz]) == 0:
        return None
    slope = np.polyfit(centres[nz], np.log(np.abs(means[nz])), 1)[0]
    return float(np.clip(-slope, *ALPHA_BOUNDS))


def _per_size_weights(u: np.ndarray, d: np.ndarray) -> np.ndarray | None:
    """Inverse per-size sample variances when every size has 3 samples or more and there are
    two sizes or more; None otherwise. A variance is floored at 5% of the median one so a
    size whose samples happen to agree does not take all the weight."""
    sizes, inverse, counts = np.unique(u, return_inverse=True, return_counts=True)
    if len(sizes) < 2 or counts.min() < 3:
        return None
    mean = np.bincount(inverse, weights=d) / counts
    var = np.bincount(inverse, weights=(d - mean[inverse]) ** 2) / (counts - 1)
    positive = var[var > 0]
    if len(positive) == 0:
        return None
    var = np.maximum(var, 0.05 * float(np.median(positive)))
    return 1.0 / var[inverse]


def _chi2_2(level: float) -> float:
    """The (1 − level) quantile of χ² with 2 degrees of freedom: ``−2 ln level``."""
    return -2.0 * math.log(level)


def mle_fit(
    k: np.ndarray,
    delta: np.ndarray,
    start: tuple[float, float] = START,
    min_samples: int = 4,
    zero_level: float = ZERO_LEVEL,
) -> UnitLaw:
    """The maximum-likelihood fit of ``Δ ~ N(c·k^(−α), v)`` (see the module docstring).

    Args:
        k: dataset size of each sample (at least 1).
        delta: marginal contribution of each sample, oriented so that positive helps.
        start: an extra starting ``(α, β)`` for the search.
        min_samples: fewer samples give ``status = "too_few"``.
        zero_level: level of the test against ``c = 0`` (0 turns it off).

    Returns:
        The fit, with the maximized log-likelihood and the optimizer's diagnostics.
    """
    k = np.asarray(k, dtype=float)
    delta = np.asarray(delta, dtype=float)
    counts, early = _common("mle", k, delta, min_samples)
    if early is not None:
        return early
    log_k0 = float(np.mean(np.log(k)))
    u = np.log(k) - log_k0
    scale = float(np.sqrt(np.mean(delta**2)))
    d = delta / scale
    from threadpoolctl import threadpool_limits

    try:
        # one BLAS thread: these products are tiny, and waking a thread pool on a busy machine
        # makes a fit ~20x slower
        with warnings.catch_warnings(), np.errstate(all="ignore"), threadpool_limits(1):
            warnings.simplefilter("ignore", RuntimeWarning)
            weights = _per_size_weights(u, d)
            if weights is not None:
                law = _fit_size_noise(k, delta, u, d, weights, scale, log_k0, counts)
            else:
                law = _fit_power_noise(k, delta, u, d, start, scale, log_k0, counts)
    except (ValueError, FloatingPointError, ZeroDivisionError, np.linalg.LinAlgError) as err:
        return UnitLaw("mle", math.nan, math.nan, **counts, status="failed", message=str(err))
    if law.status != "ok":
        return law
    if zero_level > 0 and law.evidence is not None and law.evidence < _chi2_2(zero_level):
        return replace(
            law, c=0.0, alpha=math.nan, r2=None, r2_linear=None, sign_changes=0, status="zero",
            message=f"the contributions cannot be told from 0: likelihood-ratio statistic "
            f"{law.evidence:.2f} < {_chi2_2(zero_level):.2f} (level {zero_level:g}); more "
            "samples would tell",
        )  # fmt: skip
    return law


def _alpha_grid() -> np.ndarray:
    return np.linspace(ALPHA_BOUNDS[0], ALPHA_BOUNDS[1], 21)


def _fit_size_noise(
    k: np.ndarray,
    delta: np.ndarray,
    u: np.ndarray,
    d: np.ndarray,
    w: np.ndarray,
    scale: float,
    log_k0: float,
    counts: dict[str, int],
) -> UnitLaw:
    """Known per-size variances: 1-D profile over α (grid, then bounded Brent)."""
    from scipy.optimize import minimize_scalar

    grid = _alpha_grid()
    values = [_profile_fixed(a, u, d, w)[0] for a in grid]
    ols = _ols_start(u, d)
    best = int(np.argmin(values))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    res = minimize_scalar(
        lambda a: _profile_fixed(a, u, d, w)[0],
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-8},
    )
    alpha = float(res.x)
    if ols is not None and _profile_fixed(ols, u, d, w)[0] < res.fun:
        alpha = ols  # never worse than the start
    rss, c0 = _profile_fixed(alpha, u, d, w)
    rss0 = 0.5 * float(np.sum(w * d * d))
    c = c0 * scale * math.exp(alpha * log_k0)
    # the noise law reported: a power law through the per-size variances (weighted by size)
    var = 1.0 / w
    slope, intercept = np.polyfit(u, np.log(var), 1)
    sigma = math.sqrt(math.exp(intercept)) * scale * math.exp(-slope * log_k0 / 2)
    beta = -float(slope)
    var_orig = var * scale**2
    resid = delta - c * np.power(k, -alpha)
    log_lik = float(-0.5 * np.sum(np.log(2 * np.pi * var_orig) + resid**2 / var_orig))
    at_bound = min(abs(alpha - ALPHA_BOUNDS[0]), abs(alpha - ALPHA_BOUNDS[1])) < 1e-4
    r2_log, r2_lin, changes = fit_quality(k, delta, c, alpha)
    return UnitLaw(
        "mle", c, alpha, sigma, beta, r2=r2_log, r2_linear=r2_lin, **counts, log_lik=log_lik,
        converged=bool(res.success), at_bound=at_bound, sign_changes=changes,
        evidence=2.0 * (rss0 - rss), noise="size",
    )  # fmt: skip


def _fit_power_noise(
    k: np.ndarray,
    delta: np.ndarray,
    u: np.ndarray,
    d: np.ndarray,
    start: tuple[float, float],
    scale: float,
    log_k0: float,
    counts: dict[str, int],
) -> UnitLaw:
    """Power-law noise: 2-D profile over (α, β), from a grid and the OLS start."""
    from scipy.optimize import minimize, minimize_scalar

    bounds = (ALPHA_BOUNDS, BETA_BOUNDS)
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    starts = [np.clip(np.asarray(start, dtype=float), lo, hi)]
    ols = _ols_start(u, d)
    if ols is not None:
        starts.append(np.clip(np.array([ols, 2 * ols]), lo, hi))
    starts.append(_grid_start(u, d))
    # refine from the two most likely starts (a coarse grid point finds the right basin when
    # the paper's (1, 2) or the OLS line starts in a wrong one)
    starts.sort(key=lambda t: _profile(t, u, d)[0])
    n = len(d)
    best = None
    for x0 in starts[:2]:
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
        if np.all(np.isfinite(res.x)) and (best is None or res.fun < best.fun):
            best = res
    assert best is not None
    alpha, beta = float(best.x[0]), float(best.x[1])
    nll, grad, c0, s2 = _profile(best.x, u, d)
    c = c0 * scale * math.exp(alpha * log_k0)
    sigma = math.sqrt(s2) * scale * math.exp(beta * log_k0 / 2)
    if not all(math.isfinite(v) for v in (c, alpha, sigma, beta)):
        return UnitLaw(
            "mle", math.nan, math.nan, **counts, status="failed",
            message="the likelihood has no finite maximum within the bounds",
        )  # fmt: skip
    on_bound = [min(abs(v - a), abs(v - b)) < 1e-6 for v, (a, b) in zip(best.x, bounds)]
    # L-BFGS-B may stop on "abnormal termination in line search" at a point it cannot improve
    # in floating point: a vanishing gradient (away from the bounds) is convergence too.
    free = np.abs(grad[~np.asarray(on_bound)])
    converged = bool(best.success) or bool(np.all(free < 1e-6))
    # the null model c = 0: its profile over β alone
    null = minimize_scalar(lambda b: _null_profile(b, u, d), bounds=BETA_BOUNDS, method="bounded")
    null_nll = min(float(null.fun), _null_profile(0.0, u, d), _null_profile(beta, u, d))
    r2_log, r2_lin, changes = fit_quality(k, delta, c, alpha)
    return UnitLaw(
        "mle", c, alpha, sigma, beta, r2=r2_log, r2_linear=r2_lin, **counts,
        log_lik=log_likelihood(k, delta, c, alpha, sigma, beta), converged=converged,
        at_bound=any(on_bound), sign_changes=changes,
        evidence=max(2.0 * n * (null_nll - nll), 0.0), noise="power",
    )  # fmt: skip


def _grid_start(u: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The most likely (α, β) of a coarse grid, every point at once (matrix products)."""
    alphas = _alpha_grid()[::2]
    betas = np.linspace(BETA_BOUNDS[0] + 2, BETA_BOUNDS[1] - 4, 9)
    g = np.exp(-np.outer(alphas, u))  # (A, n)
    w = np.exp(np.outer(betas, u))  # (B, n)
    wdd = w @ (d * d)  # (B,)
    wgd = w @ (g * d).T  # (B, A)
    wgg = w @ (g * g).T
    s2 = (wdd[:, None] - wgd**2 / wgg) / len(d)
    s2[~(s2 > 0)] = np.inf
    b, a = np.unravel_index(int(np.argmin(s2)), s2.shape)
    return np.array([alphas[a], betas[b]])


def _null_profile(beta: float, u: np.ndarray, d: np.ndarray) -> float:
    """Profile NLL per sample of ``c = 0`` at ``β`` (same constant as :func:`_profile`)."""
    return 0.5 * math.log(max(float(np.mean(np.exp(beta * u) * d * d)), 1e-300))


# -- dispatch -----------------------------------------------------------------------------------
def fit(method: str, k: np.ndarray, delta: np.ndarray, zero_level: float = ZERO_LEVEL) -> UnitLaw:
    """Fit one unit with ``method`` (``mle`` or ``ols``; ``amortized`` fits all units at once)."""
    if method == "mle":
        return mle_fit(k, delta, zero_level=zero_level)
    if method == "ols":
        return ols_fit(k, delta)
    raise ValueError(f"unknown per-unit method {method!r}; known: mle, ols")


def fit_units(
    method: str,
    units: np.ndarray,
    k: np.ndarray,
    delta: np.ndarray,
    zero_level: float = ZERO_LEVEL,
) -> list[tuple[int, UnitLaw]]:
    """Fit every unit of ``units`` (one entry per sample) with ``method``, by unit index.

    BLAS is held to one thread: scipy's L-BFGS-B on two parameters is ~25× slower when it
    wakes a thread pool on a busy machine.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return [
            (unit, fit(method, ks, ds, zero_level)) for unit, ks, ds in by_unit(units, k, delta)
        ]


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
    c: float | np.ndarray,
    alpha: float | np.ndarray,
    sigma: float | np.ndarray,
    beta: float | np.ndarray,
    k: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Samples drawn exactly from the model: ``Δ ~ N(c·k^(−α), σ²·k^(−β))``."""
    k = np.asarray(k, dtype=float)
    return rng.normal(c * np.power(k, -alpha), sigma * np.power(k, -beta / 2))
