"""Scaling-law fits recover a known law."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfdb.grid import scaling


@given(st.floats(0.05, 2.0), st.floats(0.2, 1.5))
@settings(max_examples=30, deadline=None)
def test_loglog_fit_recovers_b_and_c_exactly(b, c):
    xs = np.array([10, 30, 100, 300, 1000], dtype=float)
    ys = 1.0 - b * xs ** (-c)
    fit = scaling.loglog_fit(xs, ys, best=1.0)
    assert fit is not None
    assert (fit.a, fit.b, fit.c, fit.r2) == pytest.approx((1.0, b, c, 1.0), rel=1e-9)


def test_loglog_fit_of_a_loss_has_a_negative_b():
    xs = np.array([10, 100, 1000], dtype=float)
    ys = 0.3 * xs ** (-0.5)  # loss falls towards 0
    fit = scaling.loglog_fit(xs, ys, best=0.0)
    assert fit.b == pytest.approx(-0.3) and fit.c == pytest.approx(0.5)


def test_power_fit_recovers_a_free_asymptote():
    xs = np.geomspace(10, 10_000, 8)
    ys = 0.85 - 0.6 * xs ** (-0.4)
    fit = scaling.power_fit(xs, ys, best=1.0)
    assert (fit.a, fit.b, fit.c) == pytest.approx((0.85, 0.6, 0.4), rel=1e-4)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.predict(50.0) == pytest.approx(0.85 - 0.6 * 50 ** (-0.4))


def test_size_means_and_too_few_points():
    xs, ys = scaling.size_means(np.array([0, 1, 1, 2]), np.array([5.0, 1.0, 3.0, np.nan]))
    assert xs.tolist() == [1.0] and ys.tolist() == [2.0]
    assert scaling.loglog_fit(xs, ys, 1.0) is None
    assert scaling.power_fit(np.array([1.0, 2.0]), np.array([0.5, 0.6]), 1.0) is None
