"""The robust MLE (per-size noise, the zero flag, bounds, binned R²) and the amortized estimator
against oracles: brute-force likelihood searches, finite differences, and the pooled MLE that
the network must reduce to when every unit looks the same; then FIT SCALING LAWS with
``method = 'amortized'`` and the bad inputs a fit refuses, through SQL."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

import cfdb
from cfdb.errors import CfdbDataError
from cfdb.scaling import amortized as am
from cfdb.scaling import estimators as est
from cfdb.store import migrations
from cfdb.store.connection import Store
from tests.scaling.test_scaling_sql import EVAL, MODEL, OPTIONS, TARGETS, TRAIN, make_db


# -- the robust MLE -------------------------------------------------------------------------------
def test_pure_noise_is_flagged_zero_and_a_signal_is_not():
    rng = np.random.default_rng(11)
    flagged = 0
    for _ in range(40):
        k = rng.integers(50, 501, 60).astype(float)
        law = est.mle_fit(k, est.simulate(0.0, 1.0, 0.3, 1.0, k, rng))
        flagged += law.status == "zero"
        if law.status == "zero":
            assert law.c == 0 and math.isnan(law.alpha) and law.value(100.0) == 0
            assert "cannot be told from 0" in law.message
    assert flagged >= 32  # level 0.05 of a test that is conservative here
    for _ in range(10):
        k = rng.integers(50, 501, 60).astype(float)
        law = est.mle_fit(k, est.simulate(5.0, 1.0, 0.3, 1.0, k, rng))
        assert law.status == "ok" and law.evidence > 20
    # the test can be turned off
    k = rng.integers(50, 501, 60).astype(float)
    noise = est.simulate(0.0, 1.0, 0.3, 1.0, k, rng)
    assert est.mle_fit(k, noise, zero_level=0).status == "ok"


def test_an_exponent_beyond_the_search_is_flagged_not_hidden():
    rng = np.random.default_rng(12)
    k = rng.integers(50, 501, 200).astype(float)
    delta = est.simulate(1e9, 6.0, 1e-9, 4.0, k, rng)  # α = 6 > the bound 4
    law = est.mle_fit(k, delta)
    assert law.status == "ok" and law.at_bound and law.alpha == pytest.approx(4.0)


def test_per_size_noise_equals_a_brute_force_weighted_fit():
    # replicated sizes with heavy noise at the smallest: the fit weighs each size by its own
    # sample variance (floored at 5% of the median), as a direct search over (c, α) does
    rng = np.random.default_rng(13)
    sizes = np.array([50.0, 90, 160, 280, 500])
    k = np.repeat(sizes, 12)
    delta = 0.8 * k**-1.2 + rng.standard_t(2, len(k)) * 0.02 * k**-0.9
    law = est.mle_fit(k, delta)
    assert law.noise == "size" and law.status == "ok"
    var = np.array([delta[k == s].var(ddof=1) for s in sizes])
    var = np.maximum(var, 0.05 * np.median(var))[np.searchsorted(sizes, k)]

    def wrss(p: np.ndarray) -> float:
        return float(np.sum((delta - p[0] * k ** -p[1]) ** 2 / var))

    best = min(
        (
            minimize(wrss, [c0, a0], method="Nelder-Mead",
                     options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 20000})
            for c0 in (0.1, 1.0, 5.0)
            for a0 in (0.5, 1.0, 2.0)
        ),
        key=lambda r: r.fun,
    )  # fmt: skip
    assert wrss(np.array([law.c, law.alpha])) <= best.fun * (1 + 1e-6)
    assert law.alpha == pytest.approx(best.x[1], abs=1e-3)


def test_bins_group_sizes_drawn_one_per_sample():
    rng = np.random.default_rng(14)
    k = rng.integers(50, 501, 40).astype(float)
    bins = est.size_bins(k)
    assert 2 <= len(np.unique(bins)) <= 10
    for b in np.unique(bins):  # contiguous ranges of sizes, a size never split
        inside, outside = k[bins == b], k[bins != b]
        assert not np.any((outside >= inside.min()) & (outside <= inside.max()))
    replicated = np.repeat([50.0, 100, 200], 3)
    assert est.size_bins(replicated).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_fit_quality_is_the_r2_against_the_bin_means():
    rng = np.random.default_rng(15)
    sizes = np.array([50.0, 100, 200, 400])
    k = np.repeat(sizes, 5)
    delta = 0.5 * k**-1.1 * (1 + rng.normal(0, 0.3, len(k)))
    c, alpha = 0.45, 1.05
    r2_log, r2_lin, changes = est.fit_quality(k, delta, c, alpha)
    means = np.array([delta[k == s].mean() for s in sizes])
    pred = c * sizes**-alpha
    assert r2_lin == pytest.approx(
        1 - np.sum((means - pred) ** 2) / np.sum((means - means.mean()) ** 2)
    )
    y, p = np.log(means), np.log(pred)
    assert r2_log == pytest.approx(1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2))
    assert changes == 0
    assert est.fit_quality(k, -delta, c, alpha)[2] == 4


# -- the amortized estimator ----------------------------------------------------------------------
def _problem(seed: int = 0, units: int = 6, per: int = 8):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(units, 3))
    row = np.repeat(np.arange(units), per)
    k = rng.uniform(50, 500, units * per)
    d = est.simulate(0.5, 1.1, 0.2, 1.5, k, rng)
    u = np.log(k) - np.log(k).mean()
    counts = np.bincount(row).astype(float)
    return am._Problem(
        am.standardize(x), row, u, d / np.sqrt(np.mean(d**2)), 1 / (counts[row] * units),
        np.array([0.1, 1.0, -0.5, 1.5]), 0.7,
    )  # fmt: skip


def test_amortized_gradient_matches_finite_differences():
    p = _problem()
    hidden = 5
    rng = np.random.default_rng(1)
    theta = rng.normal(0, 0.3, 3 * hidden + hidden + 4 * hidden + 4)
    loss, grad = am._loss(theta, p, hidden, 0.01)
    for i in rng.choice(len(theta), 12, replace=False):
        h = np.zeros_like(theta)
        h[i] = 1e-6
        fd = (
            am._loss(theta + h, p, hidden, 0.01)[0] - am._loss(theta - h, p, hidden, 0.01)[0]
        ) / 2e-6
        assert grad[i] == pytest.approx(fd, rel=1e-4, abs=1e-8)
    assert math.isfinite(loss)


def test_amortized_reduces_to_the_pooled_likelihood_when_units_look_the_same():
    # identical features: the network's output is one law for all, the maximizer of the pooled
    # power-law likelihood (equal samples per unit, so equal weights) -- a 4-parameter search
    rng = np.random.default_rng(16)
    units, per = 20, 10
    row = np.repeat(np.arange(units), per)
    k = rng.uniform(50, 500, units * per)
    delta = est.simulate(0.6, 1.2, 0.3, 1.6, k, rng)
    fit = am.fit_amortized(np.ones((units, 2)), row, k, delta, hidden=4, weight_decay=1e-3)
    laws = fit.laws
    assert len({(round(law.c, 12), round(law.alpha, 12)) for law in laws}) == 1
    law = laws[0]
    best = min(
        (
            minimize(lambda p: -est.log_likelihood(k, delta, p[0], p[1], math.exp(p[2]), p[3]),
                     [c0, a0, math.log(0.3), 1.5], method="Nelder-Mead",
                     options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 40000, "maxfev": 40000})
            for c0 in (0.3, 1.0)
            for a0 in (0.8, 1.5)
        ),
        key=lambda r: r.fun,
    )  # fmt: skip
    ll = est.log_likelihood(k, delta, law.c, law.alpha, law.sigma, law.beta)
    assert ll >= -best.fun - 1e-4
    assert law.alpha == pytest.approx(best.x[1], abs=2e-3)


def test_amortized_shares_laws_across_similar_units_and_predicts_unsampled_ones():
    # two kinds of units (a feature tells which) with different exponents; four units per kind
    # have no samples and get their kind's law
    rng = np.random.default_rng(17)
    kind = np.repeat([0, 1], 40)
    x = np.column_stack([kind, rng.normal(size=80)])
    alpha = np.where(kind == 0, 0.8, 1.6)
    sampled = np.r_[np.arange(0, 36), np.arange(40, 76)]
    row = np.repeat(sampled, 6)
    k = rng.integers(50, 501, len(row)).astype(float)
    delta = est.simulate(2.0, alpha[row], 0.01, 1.0, k, rng)
    fit = am.fit_amortized(x, row, k, delta, seed=3)
    got = np.array([law.alpha for law in fit.laws])
    assert np.abs(got[36:40] - 0.8).max() < 0.15 and np.abs(got[76:80] - 1.6).max() < 0.15
    assert all(fit.laws[i].samples == 0 and fit.laws[i].message for i in (36, 79))
    # with 6 samples per unit, the shared law beats each unit's own MLE
    ks = np.array([50.0, 150, 500])
    truth = 2.0 * ks[None, :] ** -alpha[sampled, None]
    own = dict(est.fit_units("mle", row, k, delta))
    err_own = np.mean([(own[u].value(ks) - t) ** 2 for u, t in zip(sampled, truth)])
    err_am = np.mean([(fit.laws[u].value(ks) - t) ** 2 for u, t in zip(sampled, truth)])
    assert err_am < err_own


def test_amortized_refuses_what_it_cannot_learn():
    x = np.zeros((3, 1))
    with pytest.raises(CfdbDataError, match="needs samples of 2 units or more"):
        am.fit_amortized(x, np.zeros(10, int), np.arange(10.0) + 5, np.ones(10))
    with pytest.raises(CfdbDataError, match="every marginal contribution is 0"):
        am.fit_amortized(x, np.repeat([0, 1], 5), np.arange(10.0) + 5, np.zeros(10))


# -- through SQL ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def laws_db():
    db = make_db(21)
    db.sql(
        f"CREATE GRID g TRAIN ON ({TRAIN}) SUBSETS MARGINAL 8 SIZES BETWEEN 6 AND 40 FOR "
        f"({TARGETS}) SHARED EVALUATE ON ({EVAL}) {MODEL} {OPTIONS}"
    )
    yield db
    db.close()


@pytest.mark.slow
def test_amortized_through_sql_predicts_every_unit_and_feeds_the_macros(laws_db):
    db = laws_db
    out = db.sql(
        "FIT SCALING LAWS FOR GRID g WITH (method = 'amortized', metric = 'log_loss')"
    ).df()
    assert out["Method"].tolist() == ["amortized"] and out["Units"].tolist() == [60]
    rows = db.sql(
        "SELECT UnitId, Samples, Status, C, Alpha FROM unit_scaling_laws('g') ORDER BY UnitIndex"
    ).df()
    assert len(rows) == 60 and (rows["Samples"] > 0).sum() == 6  # the six targets
    assert rows["Status"].eq("ok").all() and rows["Alpha"].notna().all()
    # the default method is the amortized one when it is the only one fitted
    top = db.sql("SELECT UnitId, Value FROM unit_scaling_value('g', 20) WHERE Rank = 1").df()
    values = rows["C"] * 20.0 ** -rows["Alpha"]
    assert top["Value"].iloc[0] == pytest.approx(values.max())
    db.sql("FIT SCALING LAWS FOR GRID g METHOD mle WITH (metric = 'log_loss')")
    check = db.sql("SELECT * FROM unit_scaling_dshap_check('g', 6, 40)").df()
    assert check["Method"].tolist() == ["mle"] and check["Units"].tolist() == [6]
    # the Monte-Carlo value equals the mean of each unit's samples (sizes uniform, one each)
    mc = db.sql("SELECT UnitId, Value FROM unit_scaling_dshap_mc('g', 6, 40) "
                "WHERE Metric = 'log_loss' ORDER BY UnitId").df()  # fmt: skip
    by_size = db.sql(
        "SELECT UnitId, avg(-Delta) AS v FROM marginal_contributions('g') WHERE Kind = 'unit' "
        "AND Metric = 'log_loss' GROUP BY UnitId, Size"
    ).df().groupby("UnitId")["v"].mean()  # fmt: skip
    assert mc.set_index("UnitId")["Value"].to_dict() == pytest.approx(by_size.to_dict())


def test_bad_inputs_say_what_the_fit_needs(laws_db, capfd):
    db = laws_db
    for design, name in (("EXHAUSTIVE", "EXHAUSTIVE"), ("LEAVE ONE OUT", "LOO")):
        db.sql(
            f"CREATE OR REPLACE GRID e TRAIN ON (SELECT * FROM ({TRAIN}) WHERE id < 6) "
            f"SUBSETS {design} EVALUATE ON ({EVAL}) {MODEL} {OPTIONS}"
        )
        with pytest.raises(CfdbDataError, match=f"{name} design: .*MARGINAL"):
            db.sql("FIT SCALING LAWS FOR GRID e")
    db.sql(
        f"CREATE GRID one TRAIN ON ({TRAIN}) SUBSETS MARGINAL 2 SIZES BETWEEN 6 AND 40 FOR "
        f"({TARGETS}) SHARED EVALUATE ON ({EVAL}) {MODEL} {OPTIONS}"
    )
    with pytest.raises(CfdbDataError, match="needs 4 samples or more of a unit, at 2 sizes"):
        db.sql("FIT SCALING LAWS FOR GRID one")
    db.sql(
        f"CREATE GRID z TRAIN ON ({TRAIN}) SUBSETS MARGINAL 5 SIZES BETWEEN 6 AND 40 FOR "
        f"({TARGETS}) SHARED EVALUATE ON ({EVAL}) {MODEL} {OPTIONS}"
    )
    db.sql("MATERIALIZE GRID z")
    db.sql("UPDATE GridCells SET Value = 0.5 WHERE Grid = 'z'")
    with pytest.raises(CfdbDataError, match="every marginal contribution of grid 'z' is 0"):
        db.sql("FIT SCALING LAWS FOR GRID z")
    with pytest.raises(CfdbDataError, match="every marginal contribution of grid 'z' is 0"):
        db.sql("FIT SCALING LAWS FOR GRID z WITH (method = 'amortized')")
    db.sql("UPDATE GridCells SET Value = 'NaN'::DOUBLE WHERE Grid = 'z'")
    with pytest.raises(CfdbDataError, match="NaN or infinite: the fit needs finite"):
        db.sql("FIT SCALING LAWS FOR GRID z")
    with pytest.raises(CfdbDataError, match="option zero_level takes a number"):
        db.sql("FIT SCALING LAWS FOR GRID g WITH (zero_level = 2)")
    with pytest.raises(CfdbDataError, match="unknown method 'bogus'"):
        db.sql("FIT SCALING LAWS FOR GRID g WITH (method = 'bogus')")
    captured = capfd.readouterr()
    assert "LinAlg" not in captured.err and "LAPACK" not in captured.err and not captured.err


def test_a_version_4_file_migrates_with_its_laws(tmp_path):
    path = str(tmp_path / "v4.duckdb")
    store = Store(path)
    migrations.migrate(store, target=4)
    store.execute(
        "INSERT INTO UnitScalingLaws (Grid, Method, SliceId, Metric, UnitIndex, UnitId, C, Alpha, "
        "Status) VALUES ('old', 'mle', 0, 'log_loss', 0, 'a', 0.5, 1.2, 'ok')"
    )
    store.close()
    with cfdb.connect(path) as db:
        rows = db.sql("SELECT C, Alpha, R2Linear, Evidence, Noise FROM UnitScalingLaws").fetchall()
        assert rows == [(0.5, 1.2, None, None, None)]
        assert migrations.current_version(db.session.store) == migrations.latest_version()
