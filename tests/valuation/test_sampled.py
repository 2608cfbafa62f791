"""knn_shapley_sampled: Monte Carlo KNN-Shapley with standard errors, against enumeration.

Small random star joins (at most 14 tuples), many-to-many joins and self-joins; the exact
values come from enumerating every coalition (tests/valuation/oracle.py), or from the exact
knn_shapley on map, fork and one-to-many-join inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from cfdb.errors import CfdbDataError, CfdbUnsupportedError
from cfdb.exec import make_executor
from cfdb.valuation import KnnShapley, KnnShapleySampled, Lineage, Problem
from cfdb.valuation.knn_sampled import _coalition_order, absent_counts, sample_deltas
from cfdb.valuation.neighbors import Ranker
from tests.valuation import oracle
from tests.valuation.stars import Star, random_star

#: (facts, dimension table sizes, K, knn utility, classes, seed): 14 tuples at most
CASES = [
    (6, (2, 2, 2), 3, "soft", 2, 0),
    (6, (3, 2, 3), 1, "soft", 3, 1),
    (5, (2, 2, 2), 2, "vote", 2, 2),
    (7, (3, 2, 2), 5, "vote", 3, 3),
    (4, (2, 2), 2, "soft", 2, 4),
    (8, (2, 2, 2), 3, "soft", 2, 5),
]


def _problem(star: Star, players: tuple[int, ...] | None = None) -> Problem:
    return Problem(star.train, star.labels, star.lineage(), star.val, star.gain, players)


def _exact(star: Star, variables: list[int], k: int, kind: str) -> tuple[np.ndarray, float, float]:
    return oracle.shapley_of_players(
        star.train, star.labels, star.row_vars, variables, star.val, star.gain, k, kind
    )


@pytest.mark.parametrize(("facts", "dims", "k", "kind", "n_classes", "seed"), CASES)
def test_estimates_are_within_five_standard_errors_of_enumeration(
    facts, dims, k, kind, n_classes, seed
):
    rng = np.random.default_rng(seed)
    star = random_star(rng, facts, dims, n_val=4, n_classes=n_classes, rows_per_fact=2)
    exact, u_all, u_empty = _exact(star, list(range(star.n_vars)), k, kind)
    method = KnnShapleySampled(k=k, knn_utility=kind, samples=1500, seed=seed).fit(_problem(star))
    err = np.abs(method.values_ - exact)
    assert np.all(err <= 5 * method.std_errors_ + 1e-12)
    assert method.std_errors_.max() < 0.05  # m large enough to say something
    assert method.utility_all_ == pytest.approx(u_all, abs=1e-12)
    # efficiency holds for the estimates up to their error
    total = method.info_["sum_of_estimates"]
    assert abs(total - (u_all - u_empty)) <= 5 * method.info_["sum_std_error"] + 1e-12


def test_fourteen_players_and_three_classes():
    star = random_star(np.random.default_rng(9), 8, (2, 2, 2), n_val=3, n_classes=3)
    assert star.n_vars == 14
    exact, _, _ = _exact(star, list(range(14)), 3, "vote")
    method = KnnShapleySampled(k=3, knn_utility="vote", samples=2000, seed=3).fit(_problem(star))
    assert np.all(np.abs(method.values_ - exact) <= 5 * method.std_errors_ + 1e-12)


def test_the_mean_over_200_seeds_is_unbiased():
    star = random_star(np.random.default_rng(3), 6, (2, 2, 2), n_val=4, n_classes=3)
    exact, _, _ = _exact(star, list(range(star.n_vars)), 3, "soft")
    runs = np.array(
        [KnnShapleySampled(k=3, samples=50, seed=s).fit(_problem(star)).values_ for s in range(200)]
    )
    spread = runs.std(axis=0, ddof=1) / np.sqrt(len(runs))
    assert np.all(np.abs(runs.mean(axis=0) - exact) <= 5 * spread + 1e-12)


def test_the_same_seed_gives_the_same_values():
    star = random_star(np.random.default_rng(1), 5, (2, 3), n_val=20)
    a = KnnShapleySampled(k=2, samples=30, seed=7).fit(_problem(star))
    b = KnnShapleySampled(k=2, samples=30, seed=7).fit(_problem(star))
    c = KnnShapleySampled(k=2, samples=30, seed=8).fit(_problem(star))
    assert np.array_equal(a.values_, b.values_) and np.array_equal(a.std_errors_, b.std_errors_)
    assert not np.array_equal(a.values_, c.values_)


def test_worker_processes_give_the_same_values():
    star = random_star(np.random.default_rng(2), 6, (2, 2), n_val=40)
    here = KnnShapleySampled(k=3, samples=20, seed=4).fit(_problem(star))
    with make_executor("process", n_jobs=2) as executor:
        there = KnnShapleySampled(k=3, samples=20, seed=4, executor=executor).fit(_problem(star))
    assert np.array_equal(here.values_, there.values_)
    assert np.array_equal(here.std_errors_, there.std_errors_)


@pytest.mark.parametrize("shape", ["map", "fork", "join"])
@pytest.mark.parametrize("kind", ["soft", "vote"])
def test_canonical_pipelines_agree_with_the_exact_values(shape, kind):
    rng = np.random.default_rng(11)
    star = random_star(rng, 30, (6, 4), n_val=24, rows_per_fact=1 if shape == "map" else 2)
    players = {"map": (0,), "fork": (1,), "join": (0, 1)}[shape]
    problem = _problem(star, players)
    exact = KnnShapley(k=3, knn_utility=kind).fit(problem)
    assert exact.pipeline_.kind == shape
    est = KnnShapleySampled(k=3, knn_utility=kind, samples=400, seed=1).fit(problem)
    assert np.all(np.abs(est.values_ - exact.values_) <= 5 * est.std_errors_ + 1e-12)
    exogenous = np.setdiff1d(np.arange(star.n_vars), star.of(players))
    assert np.all(est.values_[exogenous] == 0.0) and np.all(est.std_errors_[exogenous] == 0.0)


def test_players_many_to_many_and_self_joins_equal_enumeration():
    rng = np.random.default_rng(4)
    # rows of a many-to-many join (pairs of tuples of two relations shared by other rows) and
    # a self-join on distinct tuples (two tuples of one relation), plus a constant row
    rows = [[0, 4], [0, 5], [1, 4], [2, 5], [3, 6], [0, 1], [2, 3], [], [6]]
    relation = np.array([0, 0, 0, 0, 1, 1, 1])
    n = len(rows)
    train, labels = rng.normal(size=(n, 2)), rng.integers(0, 2, n)
    val, y_val = rng.normal(size=(5, 2)), rng.integers(0, 2, 5)
    gain = np.zeros((5, 2))
    gain[np.arange(5), y_val] = 0.2
    star = Star(rows, 7, relation, train, labels, val, y_val, gain)
    for players in (None, (0,)):
        variables = list(range(7)) if players is None else star.of(players)
        exact, _, _ = _exact(star, variables, 2, "soft")
        est = KnnShapleySampled(k=2, samples=2000, seed=0).fit(_problem(star, players))
        assert np.all(
            np.abs(est.values_[variables] - exact) <= 5 * est.std_errors_[variables] + 1e-12
        )
        assert est.info_["constant_rows"] >= 1


def _utility(star: Star, orders: list, s: np.ndarray, k: int, kind: str) -> float:
    present = np.array([all(s[v] for v in r) for r in star.row_vars])
    p = oracle.predictions(present, orders, star.labels, star.gain.shape[1], k, kind)
    return float(np.sum(p * star.gain))


def test_one_coalition_matches_the_definition():
    """Δ_x = u(S ∪ x) − u(S \\ x) for every x at once, against direct KNN predictions."""
    rng = np.random.default_rng(6)
    for _ in range(20):
        star = random_star(rng, 9, (3, 2, 2), n_val=6, n_classes=3, rows_per_fact=2)
        lineage = star.lineage()
        mono = np.sort(lineage.row_vars, axis=1)
        in_s = rng.random(star.n_vars) < rng.random()
        k, kind = int(rng.integers(1, 5)), str(rng.choice(["soft", "vote"]))
        order = Ranker(star.train).order(star.val)
        got = sample_deltas(order, star.gain, mono, star.labels, in_s, star.n_vars, k, kind)
        orders = oracle.orders(star.train, star.val)

        # the rows a coalition needs (a prefix, or rows at most one tuple short) give the same
        rank = np.argsort(order, axis=1)
        absent = absent_counts(mono.T.copy(), in_s)
        sub, prefix = _coalition_order(order, rank, absent[0], k)
        again = sample_deltas(
            sub, star.gain, mono, star.labels, in_s, star.n_vars, k, kind, prefix=prefix
        )
        if again is not None:
            np.testing.assert_allclose(again, got, atol=1e-12)
        for x in range(star.n_vars):
            with_x, without_x = in_s.copy(), in_s.copy()
            with_x[x], without_x[x] = True, False
            direct = _utility(star, orders, with_x, k, kind) - _utility(
                star, orders, without_x, k, kind
            )
            assert got[x] == pytest.approx(direct, abs=1e-12)


def test_sums_and_bad_options_are_refused():
    star = random_star(np.random.default_rng(0), 3, (2,))
    summed = Lineage(star.n_vars, star.relation, star.lineage().row_vars, (1,))
    problem = Problem(star.train, star.labels, summed, star.val, star.gain)
    with pytest.raises(CfdbUnsupportedError, match="provenance sum"):
        KnnShapleySampled().fit(problem)
    for bad in ({"samples": 1}, {"samples": 100_001}, {"seed": -1}, {"k": 0}):
        with pytest.raises(CfdbDataError):
            KnnShapleySampled(**bad).fit(_problem(star))


@pytest.mark.parametrize("seed", range(4))
def test_the_rows_a_coalition_needs_give_the_values_of_the_whole_order(seed):
    """Large inputs take the shortcuts of _coalition_order; they must change nothing."""
    rng = np.random.default_rng(seed)
    star = random_star(rng, 400, (20, 10, 5), n_val=8, rows_per_fact=2)
    mono = np.sort(star.lineage().row_vars, axis=1)
    order = Ranker(star.train).order(star.val)
    rank = np.argsort(order, axis=1)
    paths = set()
    for t in (0.02, 0.2, 0.5, 0.8, 0.97):
        in_s = rng.random(star.n_vars) < t
        absent = absent_counts(mono.T.copy(), in_s)
        sub, prefix = _coalition_order(order, rank, absent[0], 3)
        paths.add("prefix" if prefix else "relevant" if sub.shape[1] < order.shape[1] else "all")
        args = (star.gain, mono, star.labels, in_s, star.n_vars, 3, "vote")
        whole = sample_deltas(order, *args)
        part = sample_deltas(sub, *args, prefix=prefix)
        if part is not None:
            np.testing.assert_allclose(part, whole, atol=1e-12)
    assert {"prefix", "relevant"} <= paths
