"""The amortized estimator of individualized scaling laws (Covert, Ji, Hashimoto & Zou, ICML
2024, section 5.2): one small network maps a unit's features ``(x, y)`` to its law
``(c, α, σ, β)`` and is trained on the noisy marginal contributions of every unit at once,
with the scaling-law likelihood ``Δ ~ N(c·k^(−α), σ²·k^(−β))``.

Sharing the network across units is what lets it work with few samples per unit (each unit's
few samples inform the laws of the units that resemble it) and predict units that have no
samples at all. Pure numpy/scipy: a one-hidden-layer tanh network whose weights are fitted by
L-BFGS with the exact gradient (hand-written back-propagation; tests check it against finite
differences).

Parametrisation (sizes in log space, centred: ``u = ln(k/k₀)``; ``Δ`` scaled to unit RMS):
the network's four outputs move a pooled law (one MLE fit to every sample) per unit::

    c₀ = c₀_pooled + s·o₀     (ψ at k₀; signed, so no sign has to be guessed)
    α  = α_pooled + o₁
    ln σ₀ = ln σ₀_pooled + o₂  (noise sd at k₀)
    β  = β_pooled + o₃

and the output layer starts at zero, so training starts from the pooled law. The loss is the
mean over units of each unit's mean negative log-likelihood (every unit weighs the same,
whatever its samples), plus ``weight_decay/2`` times the squared weights. With
``weight_decay = None`` it is chosen among a few values by the likelihood of held-out units.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from cfdb.errors import CfdbDataError
from cfdb.scaling.estimators import ALPHA_BOUNDS, UnitLaw, fit_quality, mle_fit

#: Weight decays tried when none is given.
DECAYS = (1e-3, 1e-2, 1e-1)
#: Share of units (with samples) held out to choose the weight decay.
HOLDOUT = 0.2


@dataclass
class AmortizedFit:
    """What :func:`fit_amortized` returns.

    Attributes:
        laws: one law per row of the feature matrix (units without samples included).
        loss: final training loss (mean NLL per unit, scaled units, plus the decay term).
        iterations: L-BFGS iterations of the final fit.
        converged: whether L-BFGS reported convergence.
        weight_decay: the decay used.
        hidden: hidden units.
    """

    laws: list[UnitLaw]
    loss: float
    iterations: int
    converged: bool
    weight_decay: float
    hidden: int


@dataclass
class _Problem:
    """The training data in scaled coordinates."""

    x: np.ndarray  # (units, features), standardized
    row: np.ndarray  # per sample: row of x
    u: np.ndarray  # per sample: ln(k/k0)
    d: np.ndarray  # per sample: delta / scale
    w: np.ndarray  # per sample: 1 / (samples of its unit · units with samples)
    base: np.ndarray  # pooled (c0, alpha, ln s0, beta)
    c_scale: float  # s: the scale of c0's output


def _unpack(theta: np.ndarray, n_in: int, hidden: int) -> tuple[np.ndarray, ...]:
    i = 0
    w1 = theta[i : i + n_in * hidden].reshape(n_in, hidden)
    i += n_in * hidden
    b1 = theta[i : i + hidden]
    i += hidden
    w2 = theta[i : i + hidden * 4].reshape(hidden, 4)
    i += hidden * 4
    return w1, b1, w2, theta[i : i + 4]


def _outputs(theta: np.ndarray, x: np.ndarray, p: _Problem, hidden: int) -> tuple[np.ndarray, ...]:
    """(hidden activations, per-unit parameters (c0, α, ln s0, β)) for the rows of ``x``."""
    w1, b1, w2, b2 = _unpack(theta, x.shape[1], hidden)
    h = np.tanh(x @ w1 + b1)
    o = h @ w2 + b2
    params = p.base + o * np.array([p.c_scale, 1.0, 1.0, 1.0])
    return h, params


def _loss(theta: np.ndarray, p: _Problem, hidden: int, decay: float) -> tuple[float, np.ndarray]:
    """Loss and its exact gradient with respect to the flattened weights."""
    w1, _, w2, _ = _unpack(theta, p.x.shape[1], hidden)
    h, params = _outputs(theta, p.x, p, hidden)
    c0, alpha, log_s0, beta = (params[p.row, j] for j in range(4))
    g = np.exp(-alpha * p.u)
    mu = c0 * g
    log_v = np.clip(2 * log_s0 - beta * p.u, -60.0, 60.0)
    inv_v = np.exp(-log_v)
    r = p.d - mu
    nll = 0.5 * (log_v + r * r * inv_v)
    loss = float(np.sum(p.w * nll)) + 0.5 * decay * float(np.sum(w1 * w1) + np.sum(w2 * w2))
    d_mu = -p.w * r * inv_v
    d_logv = p.w * 0.5 * (1.0 - r * r * inv_v)
    n = len(p.x)
    grad_params = np.stack(
        [
            np.bincount(p.row, weights=d_mu * g, minlength=n) * p.c_scale,
            np.bincount(p.row, weights=d_mu * (-p.u * mu), minlength=n),
            np.bincount(p.row, weights=2.0 * d_logv, minlength=n),
            np.bincount(p.row, weights=-p.u * d_logv, minlength=n),
        ],
        axis=1,
    )
    g_w2 = h.T @ grad_params + decay * w2
    g_b2 = grad_params.sum(axis=0)
    dh = (grad_params @ w2.T) * (1.0 - h * h)
    g_w1 = p.x.T @ dh + decay * w1
    g_b1 = dh.sum(axis=0)
    return loss, np.concatenate([g_w1.ravel(), g_b1, g_w2.ravel(), g_b2])


def _train(
    p: _Problem, hidden: int, decay: float, seed: int, maxiter: int
) -> tuple[np.ndarray, float, int, bool]:
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    n_in = p.x.shape[1]
    theta = np.concatenate(
        [
            rng.normal(0.0, 1.0 / math.sqrt(max(n_in, 1)), n_in * hidden),
            np.zeros(hidden),
            np.zeros(hidden * 4),  # the network starts at the pooled law
            np.zeros(4),
        ]
    )
    res = minimize(
        _loss,
        theta,
        args=(p, hidden, decay),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": maxiter, "ftol": 1e-12, "gtol": 1e-7},
    )
    return res.x, float(res.fun), int(res.nit), bool(res.success)


def _subproblem(p: _Problem, rows: np.ndarray) -> _Problem:
    """The problem restricted to the samples of the units ``rows`` (reweighted)."""
    keep = np.isin(p.row, rows)
    rows = np.unique(p.row[keep])
    row = np.searchsorted(rows, p.row[keep])
    counts = np.bincount(row, minlength=len(rows)).astype(float)
    return _Problem(
        p.x[rows], row, p.u[keep], p.d[keep], 1.0 / (counts[row] * len(rows)), p.base, p.c_scale
    )


def _heldout_nll(theta: np.ndarray, p: _Problem, hidden: int) -> float:
    return _loss(theta, p, hidden, 0.0)[0]


def standardize(x: np.ndarray) -> np.ndarray:
    """Columns to mean 0 and sd 1 (constant columns to 0)."""
    x = np.asarray(x, dtype=float)
    mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    sd = x.std(axis=0) if len(x) else np.ones(x.shape[1])
    sd[~(sd > 0)] = 1.0
    return (x - mean) / sd


def fit_amortized(
    x: np.ndarray,
    units: np.ndarray,
    k: np.ndarray,
    delta: np.ndarray,
    *,
    hidden: int = 32,
    weight_decay: float | None = None,
    seed: int = 0,
    maxiter: int = 500,
) -> AmortizedFit:
    """Train the network on every unit's samples and predict a law for every row of ``x``.

    Args:
        x: features of every unit (one row per unit; label columns included).
        units: the row of ``x`` of each sample.
        k: dataset size of each sample (at least 1).
        delta: marginal contribution of each sample, oriented so that positive helps.
        hidden: hidden units of the network.
        weight_decay: L2 penalty on the weights; None chooses among :data:`DECAYS` by the
            likelihood of held-out units.
        seed: seeds the initial weights and the held-out split.
        maxiter: L-BFGS iterations per fit.

    Raises:
        CfdbDataError: too few units, samples or sizes to train on.
    """
    x = np.asarray(x, dtype=float)
    units = np.asarray(units, dtype=np.int64)
    k = np.asarray(k, dtype=float)
    delta = np.asarray(delta, dtype=float)
    with_samples = np.unique(units)
    if len(with_samples) < 2 or len(np.unique(k)) < 2 or len(k) < 8:
        raise CfdbDataError(
            f"the amortized estimator needs samples of 2 units or more at 2 sizes or more (8 "
            f"samples at least); it has {len(k)} samples of {len(with_samples)} unit(s) at "
            f"{len(np.unique(k))} size(s)"
        )
    if np.all(delta == 0):
        raise CfdbDataError(
            "every marginal contribution is 0: there is no law to learn (the metric never "
            "changes when a unit is added)"
        )
    log_k0 = float(np.mean(np.log(k)))
    scale = float(np.sqrt(np.mean(delta**2)))
    u = np.log(k) - log_k0
    d = delta / scale
    pooled = mle_fit(k, delta, zero_level=0)
    if pooled.status == "ok" and not pooled.at_bound:
        base = np.array(
            [
                pooled.c * math.exp(-pooled.alpha * log_k0) / scale,
                pooled.alpha,
                math.log(pooled.sigma / scale) - (pooled.beta or 0.0) * log_k0 / 2,
                pooled.beta or 0.0,
            ]
        )
    else:
        base = np.array([float(np.mean(d)), 1.0, 0.0, 2.0])
    # the spread of c0 across units: per-unit means of d·(k/k0)^α at the pooled α
    per_unit = np.bincount(units, weights=d * np.exp(base[1] * u), minlength=len(x))
    counts = np.bincount(units, minlength=len(x)).astype(float)
    rough = per_unit[with_samples] / counts[with_samples]
    c_scale = float(np.sqrt(np.mean((rough - base[0]) ** 2))) or 1.0
    xs = standardize(x)
    # train on the rows that have samples only (the network sees the others at prediction)
    compact = np.searchsorted(with_samples, units)
    p = _Problem(
        xs[with_samples], compact, u, d, 1.0 / (counts[units] * len(with_samples)), base, c_scale
    )
    from threadpoolctl import threadpool_limits

    # one BLAS thread: the matrices are small, and a thread pool on a busy machine is slower
    with warnings.catch_warnings(), np.errstate(all="ignore"), threadpool_limits(1):
        warnings.simplefilter("ignore", RuntimeWarning)
        decay = weight_decay
        if decay is None:
            decay = _choose_decay(p, np.arange(len(with_samples)), hidden, seed, maxiter)
        theta, loss, nit, ok = _train(p, hidden, decay, seed, maxiter)
        _, params = _outputs(theta, xs, p, hidden)  # every unit, sampled or not
    order = np.argsort(units, kind="stable")
    bounds = np.searchsorted(units[order], np.arange(len(x) + 1))
    laws = []
    for row in range(len(x)):
        c0, alpha, log_s0, beta = (float(v) for v in params[row])
        clipped = float(np.clip(alpha, *ALPHA_BOUNDS))
        c = c0 * scale * math.exp(clipped * log_k0)
        sigma = math.exp(log_s0) * scale * math.exp(beta * log_k0 / 2)
        mine = order[bounds[row] : bounds[row + 1]]
        ks, ds = k[mine], delta[mine]
        r2_log, r2_lin, changes = fit_quality(ks, ds, c, clipped) if len(ks) else (None, None, 0)
        loglik = None
        if len(ks):
            var = sigma**2 * np.power(ks, -beta)
            resid = ds - c * np.power(ks, -clipped)
            loglik = float(-0.5 * np.sum(np.log(2 * np.pi * var) + resid**2 / var))
        laws.append(
            UnitLaw(
                "amortized",
                c,
                clipped,
                sigma,
                beta,
                r2=r2_log,
                r2_linear=r2_lin,
                samples=len(ks),
                sizes=len(np.unique(ks)),
                min_size=int(ks.min()) if len(ks) else 0,
                max_size=int(ks.max()) if len(ks) else 0,
                log_lik=loglik,
                converged=ok,
                at_bound=clipped != alpha,
                sign_changes=changes,
                noise="power",
                message=None if len(ks) else "predicted from the unit's features (no samples)",
            )
        )
    return AmortizedFit(laws, loss, nit, ok, float(decay), hidden)


def _choose_decay(
    p: _Problem, with_samples: np.ndarray, hidden: int, seed: int, maxiter: int
) -> float:
    """The decay of :data:`DECAYS` whose fit on 80% of the units best predicts the rest."""
    if len(with_samples) < 10:
        return DECAYS[1]
    rng = np.random.default_rng(seed + 1)
    shuffled = rng.permutation(with_samples)
    cut = max(1, round(HOLDOUT * len(shuffled)))
    held, kept = shuffled[:cut], shuffled[cut:]
    train, test = _subproblem(p, kept), _subproblem(p, held)
    scores = []
    for decay in DECAYS:
        theta, _, _, _ = _train(train, hidden, decay, seed, min(maxiter, 200))
        scores.append(_heldout_nll(theta, test, hidden))
    scores = [s if math.isfinite(s) else math.inf for s in scores]
    return DECAYS[int(np.argmin(scores))]
