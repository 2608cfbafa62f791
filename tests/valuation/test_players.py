"""``players``: only some relations' tuples are players, the others exogenous (always present).

A star join with players = the fact table and one dimension table is a one-to-many join, one
dimension table alone a fork, the fact table alone a map; rows left with no player variable
are always present. Every case equals enumeration over the players' subsets.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfdb.errors import CfdbUnsupportedError
from cfdb.valuation import KnnShapley, Lineage, Problem, classify, proxy_predictions
from cfdb.valuation.structure import restrict_players
from tests.valuation import oracle
from tests.valuation.stars import random_star

#: players (relation codes) and the pipeline they leave of a star join
SHAPES = {(0, 1): "join", (1,): "fork", (0,): "map", (2,): "fork", (0, 2): "join"}


@st.composite
def star_cases(draw):
    dims = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(2, 3))))
    facts = draw(st.integers(2, 6))
    players = draw(st.sampled_from(sorted(SHAPES)))
    missing = draw(st.sampled_from([0.0, 0.3]))
    return (
        dims,
        facts,
        players,
        missing,
        draw(st.integers(1, 2)),
        draw(st.sampled_from([1, 2, 3])),
        draw(st.sampled_from(["soft", "vote"])),
        draw(st.sampled_from([2, 3])),
        draw(st.integers(0, 2**16)),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(star_cases())
def test_players_of_a_star_join_equal_enumeration(case):
    dims, facts, players, missing, per_fact, k, kind, n_classes, seed = case
    rng = np.random.default_rng(seed)
    star = random_star(
        rng, facts, dims, missing=missing, rows_per_fact=per_fact, n_classes=n_classes
    )
    problem = Problem(star.train, star.labels, star.lineage(), star.val, star.gain, players=players)
    pipeline = classify(restrict_players(star.lineage(), players))
    if missing and SHAPES[players] == "join" and pipeline.kind == "general":
        # an outer join can leave a fact both joined and not joined: refused, with the reason
        assert "joined and not joined" in pipeline.reason
        return
    method = KnnShapley(k=k, knn_utility=kind).fit(problem)
    assert method.pipeline_.kind in (SHAPES[players], "map", "fork")
    variables = star.of(players)
    expected, u_all, u_empty = oracle.shapley_of_players(
        star.train, star.labels, star.row_vars, variables, star.val, star.gain, k, kind
    )
    np.testing.assert_allclose(method.values_[variables], expected, atol=1e-10)
    others = np.setdiff1d(np.arange(star.n_vars), variables)
    assert np.all(method.values_[others] == 0.0)  # exogenous tuples are not valued
    assert method.utility_all_ == pytest.approx(u_all, abs=1e-10)
    assert np.sum(method.values_) == pytest.approx(u_all - u_empty, abs=1e-10)


def test_rows_of_exogenous_tuples_only_are_always_present():
    """players = one dimension table of a LEFT JOIN: rows without its tuple are constants."""
    rng = np.random.default_rng(5)
    star = random_star(rng, 7, (2, 2), missing=0.5, n_val=4)
    lineage = restrict_players(star.lineage(), (1,))
    pipeline = classify(lineage)
    assert pipeline.kind in ("fork", "map") and pipeline.constants > 0
    problem = Problem(star.train, star.labels, star.lineage(), star.val, star.gain, players=(1,))
    method = KnnShapley(k=3).fit(problem)
    expected, _, u_empty = oracle.shapley_of_players(
        star.train, star.labels, star.row_vars, star.of((1,)), star.val, star.gain, 3, "soft"
    )
    assert u_empty != 0.0
    np.testing.assert_allclose(method.values_[star.of((1,))], expected, atol=1e-10)
    direct = float(
        np.sum(proxy_predictions(star.train, star.labels, star.val, 3, 2, "soft") * star.gain)
    )
    assert method.utility_all_ == pytest.approx(direct, abs=1e-12)
    assert method.info_["constant_rows"] == pipeline.constants


def test_constant_rows_are_always_present():
    """A row from no base tuple (``SELECT ... UNION ALL SELECT constants``) is in every
    coalition, as a row of exogenous tuples only is."""
    lineage = Lineage(2, np.zeros(2, dtype=np.int64), np.array([[0], [-1], [1], [-1]]))
    pipeline = classify(lineage)
    assert pipeline.kind == "map" and pipeline.constants == 2
    rng = np.random.default_rng(1)
    train, labels = rng.normal(size=(4, 2)), np.array([0, 1, 1, 0])
    val = rng.normal(size=(3, 2))
    gain = np.zeros((3, 2))
    gain[np.arange(3), [0, 1, 1]] = 1 / 3
    method = KnnShapley(k=2, knn_utility="vote").fit(Problem(train, labels, lineage, val, gain))
    expected, _, _ = oracle.shapley_of_players(
        train, labels, [[0], [], [1], []], [0, 1], val, gain, 2, "vote"
    )
    np.testing.assert_allclose(method.values_, expected, atol=1e-12)


def test_the_whole_star_is_refused_naming_both_ways_forward():
    star = random_star(np.random.default_rng(0), 4, (2, 2, 2))
    problem = Problem(star.train, star.labels, star.lineage(), star.val, star.gain)
    with pytest.raises(CfdbUnsupportedError) as err:
        KnnShapley().fit(problem)
    assert "players = '<fact>, <one dim>'" in str(err.value)
    assert "knn_shapley_sampled" in str(err.value)
    assert "#P-hard" in str(err.value)
