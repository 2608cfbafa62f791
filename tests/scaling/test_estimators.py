"""The estimators of individualized scaling laws on contributions drawn exactly from the model:
both recover (c, α, σ, β) within a tolerance that shrinks like 1/√m; the MLE's closed forms
and its 2-D search against brute-force optimization of the full likelihood."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from cfdb.scaling import estimators as est

TRUE = {"c": 0.5, "alpha": 1.2, "sigma": 0.3, "beta": 2.0}
GEOMETRIC = np.round(np.geomspace(100, 1000, 10))


def _errors(method: str, m: int, reps: int = 12) -> np.ndarray:
    """RMS over ``reps`` data sets of (log c error, α error, log σ error, β error)."""
    rng = np.random.default_rng(1000 + m)
    out = []
    for _ in range(reps):
        k = rng.integers(100, 1001, m) if method == "mle" else np.repeat(GEOMETRIC, m // 10)
        delta = est.simulate(TRUE["c"], TRUE["alpha"], TRUE["sigma"], TRUE["beta"], k, rng)
        law = est.fit(method, k, delta)
        assert law.status == "ok" and law.c > 0
        out.append(
            [
                math.log(law.c / TRUE["c"]),
                law.alpha - TRUE["alpha"],
                math.log(law.sigma / TRUE["sigma"]) if law.sigma else 0.0,
                (law.beta - TRUE["beta"]) if law.beta is not None else 0.0,
            ]
        )
    return np.sqrt(np.mean(np.square(out), axis=0))


@pytest.mark.parametrize("method", ["mle", "ols"])
def test_parameters_are_recovered_within_a_tolerance_that_shrinks_with_m(method):
    # With m samples the error of each parameter is O(1/sqrt(m)): at every m it stays under
    # K/sqrt(m), and 100 times the samples cut it by ~10 (at least 4 here, allowing noise).
    small, large = _errors(method, 300), _errors(method, 30000)
    for err, m in ((small, 300), (large, 30000)):
        assert err[1] < 6.0 / math.sqrt(m), (method, m, err)  # alpha
        assert err[0] < 40.0 / math.sqrt(m), (method, m, err)  # log c (c = c0 * k0^alpha)
    assert np.all(large[:2] < small[:2] / 4), (small, large)
    if method == "mle":
        for err, m in ((small, 300), (large, 30000)):
            assert err[3] < 6.0 / math.sqrt(m) and err[2] < 40.0 / math.sqrt(m), (m, err)
        assert np.all(large[2:] < small[2:] / 4), (small, large)


@settings(max_examples=15, deadline=None)
@given(
    snr=st.floats(0.05, 1e4),
    negative=st.booleans(),
    alpha=st.floats(0.3, 2.5),
    sigma=st.floats(0.05, 2.0),
    beta=st.floats(0.5, 4.0),
    seed=st.integers(0, 2**16),
)
def test_mle_recovers_random_laws(snr, negative, alpha, sigma, beta, seed):
    # laws are drawn by their signal-to-noise ratio at the middle size k0 (|mean| / sd of one
    # sample): below ~0.05, 20,000 samples cannot pin α down, whatever the estimator
    rng = np.random.default_rng(seed)
    k0 = 316.0
    c = snr * sigma * k0 ** (alpha - beta / 2) * (-1 if negative else 1)
    k = rng.integers(100, 1001, 20000)
    delta = est.simulate(c, alpha, sigma, beta, k, rng)
    law = est.mle_fit(k, delta)
    assert law.converged and not law.at_bound
    assert abs(law.beta - beta) < 0.15
    assert abs(law.alpha - alpha) < 0.05 + 0.5 / snr
    assert law.value(k0) == pytest.approx(c * k0**-alpha, rel=0.05 + 0.3 / snr)
    assert law.sigma == pytest.approx(sigma, rel=0.3)


def test_closed_forms_maximize_the_likelihood_at_fixed_exponents():
    rng = np.random.default_rng(3)
    k = rng.integers(50, 2000, 400).astype(float)
    delta = est.simulate(-0.8, 0.9, 0.5, 1.5, k, rng)
    for alpha, beta in ((1.0, 2.0), (0.5, 1.0), (1.7, 3.2)):
        c = np.mean(delta * k ** (beta - alpha)) / np.mean(k ** (beta - 2 * alpha))
        s2 = np.mean(k**beta * (delta - c * k**-alpha) ** 2)
        best = est.log_likelihood(k, delta, c, alpha, math.sqrt(s2), beta)
        # oracle: maximize over (c, log sigma) numerically
        res = minimize(
            lambda p, a=alpha, b=beta: -est.log_likelihood(k, delta, p[0], a, math.exp(p[1]), b),
            [c * 1.3 + 0.01, math.log(math.sqrt(s2)) + 0.4],
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 4000},
        )
        assert -res.fun <= best + 1e-6
        assert res.x[0] == pytest.approx(c, rel=1e-3)
        # and the module's profile agrees with them
        u = np.log(k) - np.log(k).mean()
        scale = math.sqrt(np.mean(delta**2))
        _, _, c0, s0 = est._profile(np.array([alpha, beta]), u, delta / scale)
        k0 = math.exp(np.log(k).mean())
        assert c0 * scale * k0**alpha == pytest.approx(c, rel=1e-9)
        assert s0 * scale**2 * k0**beta == pytest.approx(s2, rel=1e-9)


def test_profile_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    k = rng.integers(100, 1001, 300).astype(float)
    delta = est.simulate(0.3, 1.1, 0.2, 2.2, k, rng)
    u = np.log(k) - np.log(k).mean()
    d = delta / math.sqrt(np.mean(delta**2))
    for theta in ([1.0, 2.0], [0.2, 0.7], [2.5, 4.0]):
        theta = np.array(theta)
        _, grad, _, _ = est._profile(theta, u, d)
        for i in range(2):
            h = np.zeros(2)
            h[i] = 1e-6
            fd = (est._profile(theta + h, u, d)[0] - est._profile(theta - h, u, d)[0]) / 2e-6
            assert grad[i] == pytest.approx(fd, rel=1e-4, abs=1e-8)


def test_mle_equals_a_brute_force_search_of_the_full_likelihood():
    rng = np.random.default_rng(5)
    k = rng.integers(100, 1001, 60).astype(float)
    delta = est.simulate(0.4, 1.3, 0.25, 1.8, k, rng)
    law = est.mle_fit(k, delta)
    # oracle: all four parameters at once, from several starts, no closed forms
    best = -np.inf
    for a0 in (0.5, 1.0, 2.0):
        for b0 in (1.0, 2.0, 3.0):
            res = minimize(
                lambda p: -est.log_likelihood(k, delta, p[0], p[1], math.exp(p[2]), p[3]),
                [law.c * 0.5, a0, math.log(law.sigma) + 0.5, b0],
                method="Nelder-Mead",
                options={"xatol": 1e-9, "fatol": 1e-9, "maxiter": 20000, "maxfev": 20000},
            )
            best = max(best, -res.fun)
    assert law.log_lik == pytest.approx(best, abs=1e-3)
    assert law.log_lik >= best - 1e-3


def test_ols_is_the_least_squares_line_through_the_log_means():
    rng = np.random.default_rng(6)
    k = np.repeat(GEOMETRIC, 40)
    delta = est.simulate(0.5, 1.2, 0.3, 2.0, k, rng)
    law = est.ols_fit(k, delta)
    means = np.array([delta[k == s].mean() for s in GEOMETRIC])
    x, y = np.log(GEOMETRIC), np.log(np.abs(means))
    slope = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
    intercept = y.mean() - slope * x.mean()
    assert law.alpha == pytest.approx(-slope)
    assert law.c == pytest.approx(math.exp(intercept))
    fitted = intercept + slope * x
    r2 = 1 - np.sum((y - fitted) ** 2) / np.sum((y - y.mean()) ** 2)
    assert law.r2 == pytest.approx(r2)
    assert law.sizes == 10 and law.samples == 400
    # a negative unit: c takes the sign of the mean contribution
    neg = est.ols_fit(k, -delta)
    assert neg.c == pytest.approx(-law.c) and neg.alpha == pytest.approx(law.alpha)


def test_degenerate_inputs_are_reported_not_raised():
    k = np.array([100.0, 200.0, 300.0, 400.0])
    constant = est.mle_fit(k, np.zeros(4))
    assert constant.status == "constant" and constant.c == 0 and constant.value(50) == 0
    one_size = est.mle_fit(np.full(10, 100.0), np.linspace(-1, 1, 10))
    assert one_size.status == "too_few" and math.isnan(one_size.c)
    few = est.mle_fit(k[:3], np.array([0.1, 0.05, 0.02]))
    assert few.status == "too_few"
    ols_zero_means = est.ols_fit(np.array([100.0, 100, 200, 200]), np.array([1.0, -1, 1, -1]))
    assert ols_zero_means.status == "too_few"
    with pytest.raises(ValueError, match="unknown per-unit method"):
        est.fit("amortized", k, np.ones(4))


def test_fit_units_groups_samples_by_unit():
    rng = np.random.default_rng(7)
    units = rng.integers(0, 5, 2000)
    k = rng.integers(100, 1001, 2000)
    alphas = np.array([0.8, 1.0, 1.2, 1.4, 1.6])
    delta = est.simulate(0.5, alphas[units], 0.005, 2.0, k, rng)
    fits = est.fit_units("mle", units, k, delta)
    assert [u for u, _ in fits] == [0, 1, 2, 3, 4]
    for unit, law in fits:
        alone = est.mle_fit(k[units == unit], delta[units == unit])
        assert law.alpha == pytest.approx(alone.alpha) and law.samples == int(np.sum(units == unit))
    assert [law.alpha for _, law in fits] == pytest.approx(alphas, abs=0.15)
