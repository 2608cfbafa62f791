"""Individualized data scaling laws over the data-counterfactual grid (Covert, Ji, Hashimoto &
Zou, "Scaling Laws for the Value of Individual Data Points in Machine Learning", ICML 2024).

* :mod:`cfdb.scaling.design`: the ``MARGINAL`` subset design: pairs of grid rows with and
  without each target unit, over datasets of sizes in a range.
* :mod:`cfdb.scaling.estimators`: the per-unit log-linear (OLS) and maximum-likelihood
  estimators of ``ψ_k(z) ≈ c(z)·k^(−α(z))`` (per-size noise, the zero test, bound flags).
* :mod:`cfdb.scaling.amortized`: the amortized estimator, a small network from a unit's
  features to its law, trained on every unit's samples at once.
* :mod:`cfdb.scaling.plots`: PNG figures (matplotlib, the ``plots`` extra).

Pure: arrays in, arrays out; the engine reads the grid and writes ``UnitScalingLaws``.
"""

from __future__ import annotations
