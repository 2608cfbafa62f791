"""The fast paths against independent implementations on larger inputs, and mixed joins
against enumeration (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfdb.valuation import knn_fork, knn_join, knn_map
from cfdb.valuation.neighbors import Ranker
from cfdb.valuation.quadrature import shapley_nodes
from tests.valuation import oracle


def _accuracy_gain(y_val: np.ndarray, n_classes: int) -> np.ndarray:
    g = np.zeros((len(y_val), n_classes))
    g[np.arange(len(y_val)), y_val] = 1.0 / len(y_val)
    return g


@pytest.mark.parametrize(("n", "k", "n_classes"), [(3000, 5, 2), (2500, 3, 3), (2000, 1, 2)])
def test_map_soft_equals_a_plain_jia_recursion_on_thousands_of_rows(n, k, n_classes):
    rng = np.random.default_rng(n)
    train = rng.normal(size=(n, 6))
    labels = rng.integers(0, n_classes, n)
    val = rng.normal(size=(25, 6))
    y_val = rng.integers(0, n_classes, 25)
    gain = _accuracy_gain(y_val, n_classes)
    expected = oracle.jia_soft_map(train, labels, val, y_val, k)
    for jobs in (1, 2):
        got = knn_map.soft_values(train, labels, val, gain, k, n_jobs=jobs, chunk=7)
        np.testing.assert_allclose(got, expected, atol=1e-13)
    # the general tally formula, the fork sweep and the join integral agree too
    general = knn_map.vote_values(train, labels, val, gain, k, knn_utility="soft", n_jobs=1)
    np.testing.assert_allclose(general, expected, atol=1e-12)


def test_map_vote_equals_the_fork_sweep_on_thousands_of_rows():
    rng = np.random.default_rng(7)
    n = 1500
    train = rng.normal(size=(n, 4))
    labels = rng.integers(0, 2, n)
    val = rng.normal(size=(8, 4))
    gain = rng.normal(size=(8, 2))
    vote = knn_map.vote_values(train, labels, val, gain, 3, n_jobs=2)
    fork = knn_fork.fork_values(Ranker(train), np.arange(n), labels, val, gain, n, 3, "vote")
    np.testing.assert_allclose(vote, fork, atol=1e-12)
    assert vote.sum() == pytest.approx(fork.sum())


def test_fork_sweep_equals_the_join_integral_and_handles_big_providers():
    rng = np.random.default_rng(11)
    n, groups = 160, 12
    train = rng.normal(size=(n, 3))
    labels = rng.integers(0, 3, n)
    owner = rng.integers(0, groups, n)
    val = rng.normal(size=(5, 3))
    gain = rng.normal(size=(5, 3))
    for k, kind in ((1, "vote"), (3, "vote"), (4, "soft")):
        fork = knn_fork.fork_values(Ranker(train), owner, labels, val, gain, groups, k, kind)
        join = knn_join.join_values_general(
            Ranker(train),
            np.full(n, -1),
            owner,
            labels,
            val,
            gain,
            groups,
            k,
            kind,
            shapley_nodes(groups),
        )
        np.testing.assert_allclose(fork, join, atol=1e-11)


def test_join_1nn_fast_path_equals_the_general_oracle():
    rng = np.random.default_rng(5)
    facts, dims = 70, 9
    dim_of = rng.integers(0, dims, facts)
    rows_f = np.repeat(np.arange(facts), 2)
    rows_d = facts + dim_of[rows_f]
    n = len(rows_f)
    train = rng.normal(size=(n, 3))
    labels = rng.integers(0, 2, n)
    val = rng.normal(size=(6, 3))
    gain = rng.normal(size=(6, 2))
    nodes = shapley_nodes(facts + dims)
    args = (Ranker(train), rows_f, rows_d, labels, val, gain, facts + dims)
    fast = knn_join.join_values_1nn(*args, nodes)
    general = knn_join.join_values_general(*args, 1, "vote", nodes)
    np.testing.assert_allclose(fast, general, atol=1e-12)


def test_composite_quadrature_matches_the_exact_rule_for_many_players():
    rng = np.random.default_rng(9)
    facts, dims = 1200, 40
    dim_of = rng.integers(0, dims, facts)
    n = facts
    train = rng.normal(size=(n, 2))
    labels = rng.integers(0, 2, n)
    val = rng.normal(size=(3, 2))
    gain = _accuracy_gain(rng.integers(0, 2, 3), 2)
    args = (Ranker(train), np.arange(facts), facts + dim_of, labels, val, gain, facts + dims)
    exact = shapley_nodes(facts + dims)
    composite = shapley_nodes(facts + dims, max_nodes=100)
    assert exact.exact and not composite.exact
    a = knn_join.join_values_1nn(*args, exact)
    b = knn_join.join_values_1nn(*args, composite)
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize(("k", "kind"), [(3, "soft"), (5, "soft"), (4, "vote")])
def test_composite_quadrature_matches_the_exact_rule_for_the_sweep(k, kind):
    """The composite rule a large join gets (panels graded towards 0 only down to the join's
    finest scale, four across the middle) against the exact rule, K ≥ 2."""
    rng = np.random.default_rng(k)
    facts, dims = 1200, 40
    dim_of = np.where(rng.random(facts) < 0.3, 0, rng.integers(0, dims, facts))  # one big tuple
    train = rng.normal(size=(facts, 2))
    labels = rng.integers(0, 2, facts)
    val = rng.normal(size=(2, 2))
    gain = _accuracy_gain(rng.integers(0, 2, 2), 2)
    args = (Ranker(train), np.arange(facts), facts + dim_of, labels, val, gain, facts + dims)
    exact, exact_nodes = knn_join.join_values(*args, k, kind)
    composite, composite_nodes = knn_join.join_values(*args, k, kind, max_nodes=100)
    assert exact_nodes.exact and not composite_nodes.exact
    assert len(composite_nodes.t) < len(exact_nodes.t) // 2
    np.testing.assert_allclose(composite, exact, rtol=0, atol=1e-12 * np.abs(exact).max())


@st.composite
def mixed_joins(draw):
    """Fact-only, dimension-only and joined rows together (at most 9 tuples)."""
    dims = draw(st.integers(1, 3))
    facts = draw(st.integers(1, 9 - dims))
    rows = []
    for f in range(facts):
        d = draw(st.sampled_from([*range(dims), None]))
        for _ in range(draw(st.integers(1, 2))):
            rows.append((f, None if d is None else facts + d))
    for d in range(dims):
        if draw(st.booleans()):
            rows.append((None, facts + d))
    used = sorted({v for r in rows for v in r if v is not None})
    remap = {v: i for i, v in enumerate(used)}
    rf = np.array([remap[f] if f is not None else -1 for f, _ in rows])
    rd = np.array([remap[d] if d is not None else -1 for _, d in rows])
    seed = draw(st.integers(0, 2**16))
    k = draw(st.sampled_from([1, 2, 3]))
    kind = draw(st.sampled_from(["soft", "vote"]))
    return rf, rd, len(used), seed, k, kind


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed_joins())
def test_mixed_join_rows_equal_enumeration(case):
    rf, rd, n_vars, seed, k, kind = case
    rng = np.random.default_rng(seed)
    n = len(rf)
    train = rng.integers(-2, 3, (n, 2)).astype(float)
    labels = rng.integers(0, 2, n)
    val = rng.integers(-2, 3, (3, 2)).astype(float)
    y_val = rng.integers(0, 2, 3)
    gain = _accuracy_gain(y_val, 2)
    monomials = [[frozenset(int(v) for v in (f, d) if v >= 0)] for f, d in zip(rf, rd)]
    expected = oracle.shapley_by_enumeration(
        train, labels, monomials, n_vars, val, oracle.accuracy(y_val), 2, k, kind
    )
    got, nodes = knn_join.join_values(Ranker(train), rf, rd, labels, val, gain, n_vars, k, kind)
    assert nodes.exact
    np.testing.assert_allclose(got, expected, atol=1e-10)
