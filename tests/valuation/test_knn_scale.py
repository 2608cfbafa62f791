"""The join sweep against enumeration and the division-free join algorithm; map values as a
sum of validation chunks; refusals and edge cases (K above the training set, dimension tuples
without facts, NULL validation features, star joins)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cfdb
from cfdb.errors import CfdbDataError, CfdbUnsupportedError
from cfdb.valuation import KnnShapley, Lineage, Problem, knn_join, knn_map, proxy_predictions
from cfdb.valuation.knn_join_logs import split_for
from cfdb.valuation.knn_join_sweep import cutoffs, join_values_sweep
from cfdb.valuation.neighbors import Ranker
from cfdb.valuation.quadrature import Nodes, shapley_nodes
from cfdb.valuation.structure import classify
from tests.valuation import oracle


@st.composite
def joins(draw):
    """Every row a fact × dimension pair, one row per fact; maybe an unused dimension tuple."""
    dims = draw(st.integers(1, 3))
    facts = draw(st.integers(1, 9 - dims))
    dim_of = [draw(st.integers(0, dims - 1)) for _ in range(facts)]
    spare = draw(st.booleans())  # a dimension tuple no fact joins: a null player
    n_classes = draw(st.sampled_from([2, 3]))
    k = draw(st.integers(1, facts + 2))  # K may exceed the training set
    kind = draw(st.sampled_from(["soft", "vote"]))
    seed = draw(st.integers(0, 2**16))
    return facts, dims, dim_of, spare, n_classes, min(k, 6), kind, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(joins())
def test_join_sweep_equals_enumeration(case):
    facts, dims, dim_of, spare, n_classes, k, kind, seed = case
    rng = np.random.default_rng(seed)
    n_vars = facts + dims + int(spare)
    rf = np.arange(facts)
    rd = facts + np.asarray(dim_of)
    # small integer features: distance ties are common and break by row order
    train = rng.integers(-2, 3, (facts, 2)).astype(float)
    labels = rng.integers(0, n_classes, facts)
    val = rng.integers(-2, 3, (3, 2)).astype(float)
    y_val = rng.integers(0, n_classes, 3)
    gain = np.zeros((3, n_classes))
    gain[np.arange(3), y_val] = 1 / 3
    monomials = [[frozenset((int(f), int(d)))] for f, d in zip(rf, rd)]
    expected = oracle.shapley_by_enumeration(
        train, labels, monomials, n_vars, val, oracle.accuracy(y_val), n_classes, k, kind
    )
    nodes = shapley_nodes(n_vars)
    got = join_values_sweep(Ranker(train), rf, rd, labels, val, gain, n_vars, k, kind, nodes)
    np.testing.assert_allclose(got, expected, atol=1e-11)
    unused = sorted(set(range(facts, facts + dims + int(spare))) - set(rd.tolist()))
    assert all(got[v] == 0.0 for v in unused)  # dimension tuples with no facts


@pytest.mark.parametrize(
    ("k", "kind", "n_classes"),
    [
        (2, "vote", 2),
        (3, "soft", 2),
        (4, "soft", 2),
        (4, "vote", 3),
        (5, "soft", 2),
        (5, "vote", 2),
    ],
)
def test_join_sweep_agrees_with_the_division_free_algorithm(k, kind, n_classes):
    rng = np.random.default_rng(k)
    facts, dims = 40, 6
    dim_of = rng.integers(0, dims, facts)
    train = rng.normal(size=(facts, 3))
    train[:, 0] += dim_of  # a dimension's facts lie close together
    train[::7] = train[1::7][: len(train[::7])]  # some exact distance ties
    labels = rng.integers(0, n_classes, facts)
    val = rng.normal(size=(2, 3))
    gain = rng.normal(size=(2, n_classes))
    args = (Ranker(train), np.arange(facts), facts + dim_of, labels, val, gain, facts + dims)
    nodes = shapley_nodes(facts + dims)
    sweep = join_values_sweep(*args, k, kind, nodes)
    general = knn_join.join_values_general(*args, k, kind, nodes)
    np.testing.assert_allclose(sweep, general, rtol=0, atol=1e-12 * np.abs(general).max())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    facts=st.integers(1, 120),
    dims=st.integers(1, 40),
    k=st.integers(2, 8),
    n_classes=st.sampled_from([2, 3]),
    kind=st.sampled_from(["soft", "vote"]),
    skew=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_compiled_paths_equal_the_segment_tree_node_by_node(
    facts, dims, k, n_classes, kind, skew, seed
):
    """Against the division-free segment tree at single nodes (and K above the set's size):
    leave-one-out products over the dimensions from t = 10⁻⁶ to 0.9999, and nodes up to the
    split (t ≤ 3/4 for K ≤ 5) through running sums of series logarithms (compiled and as
    arrays)."""
    if kind == "vote" and n_classes == 3:
        k = min(k, 5)
    rng = np.random.default_rng(seed)
    # skew: one dimension tuple holds most facts (long runs of one factor)
    dim_of = (
        np.where(rng.random(facts) < 0.7, 0, rng.integers(0, dims, facts))
        if skew
        else (rng.integers(0, dims, facts))
    )
    train = rng.integers(-3, 4, (facts, 2)).astype(float)  # ties
    labels = rng.integers(0, n_classes, facts)
    val = rng.normal(size=(2, 2))
    gain = rng.normal(size=(2, n_classes))
    args = (Ranker(train), np.arange(facts), facts + dim_of, labels, val, gain, facts + dims)
    for t in (1e-6, 1e-3, 0.05, 0.2, 0.5, split_for(k), 0.95, 0.9999):
        node = Nodes(np.array([t]), np.array([1.0]), False)
        tree = join_values_sweep(*args, k, kind, node, prune=False, split=0.0, direct=False)
        # every term is a probability times a utility weight: rounding is relative to the
        # weights (near t = 1 tiny values are differences of terms of that size)
        scale = max(np.abs(tree).max(), np.abs(gain).sum())
        # leave-one-out products over the dimensions, at every t
        direct = join_values_sweep(*args, k, kind, node, prune=False, split=0.0, direct=True)
        np.testing.assert_allclose(direct, tree, rtol=0, atol=1e-13 * scale)
        if t > split_for(k):
            continue
        for compiled in (True, False):  # the numba loop and the array version
            logs = join_values_sweep(*args, k, kind, node, prune=False, compiled=compiled)
            np.testing.assert_allclose(logs, tree, rtol=0, atol=1e-13 * scale)


@pytest.mark.parametrize(("k", "kind"), [(4, "vote"), (6, "soft"), (10, "soft")])
def test_join_sweep_prunes_only_negligible_positions(k, kind):
    """Many small dimension tuples: at nodes near t = 1 only a prefix of the order can hold
    fewer than K present rows; skipping the rest changes nothing (to rounding)."""
    rng = np.random.default_rng(k)
    facts, dims = 400, 100
    dim_of = rng.integers(0, dims, facts)
    train = rng.normal(size=(facts, 3))
    labels = rng.integers(0, 2, facts)
    val = rng.normal(size=(1, 3))
    gain = rng.normal(size=(1, 2))
    args = (Ranker(train), np.arange(facts), facts + dim_of, labels, val, gain, facts + dims)
    nodes = shapley_nodes(facts + dims)
    order = Ranker(train).order(val)[0]
    cut = cutoffs((facts + dim_of)[order], k, nodes.t)
    assert (cut <= facts // 2).sum() > len(cut) // 4  # pruning does happen (t near 1)
    pruned = join_values_sweep(*args, k, kind, nodes)
    full = join_values_sweep(*args, k, kind, nodes, prune=False)
    np.testing.assert_allclose(pruned, full, rtol=0, atol=1e-13 * np.abs(full).max())


@pytest.mark.parametrize(("k", "kind"), [(3, "soft"), (3, "vote"), (5, "vote"), (8, "soft")])
def test_joins_route_to_the_sweep_and_sum_to_the_utility(k, kind):
    rng = np.random.default_rng(3)
    facts, dims = 200, 12
    dim_of = rng.integers(0, dims, facts)
    train = rng.normal(size=(facts, 4))
    labels = rng.integers(0, 3, facts)
    val = rng.normal(size=(4, 4))
    y_val = rng.integers(0, 3, 4)
    gain = np.zeros((4, 3))
    gain[np.arange(4), y_val] = 0.25
    rows = np.c_[np.arange(facts), facts + dim_of]
    relation = np.r_[np.zeros(facts), np.ones(dims)].astype(np.int64)
    lineage = Lineage(facts + dims, relation, rows)
    method = KnnShapley(k=k, knn_utility=kind).fit(Problem(train, labels, lineage, val, gain))
    assert method.pipeline_.kind == "join"
    direct = float((proxy_predictions(train, labels, val, k, 3, kind) * gain).sum())
    assert method.utility_all_ == pytest.approx(direct, abs=1e-13)


def test_map_values_are_validation_chunks_summed_in_order():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(500, 5))
    labels = rng.integers(0, 2, 500)
    val = rng.normal(size=(70, 5))
    gain = rng.normal(size=(70, 2))
    for kind in ("soft", "vote"):
        total = knn_map.map_values(train, labels, val, gain, 3, knn_utility=kind, chunk_size=16)
        again = np.zeros(500)
        for part in knn_map.validation_chunks(70, 16):
            again += knn_map.values_for_validation_chunk(
                train, labels, val[part], gain[part], 3, knn_utility=kind
            )
        assert np.array_equal(total, again)  # bit for bit: the executor contract
        whole = knn_map.values_for_validation_chunk(train, labels, val, gain, 3, knn_utility=kind)
        np.testing.assert_allclose(total, whole, atol=1e-13)


def test_star_joins_are_refused_with_the_reason_and_the_nearest_shape():
    rows = np.array([[0, 2, 4], [1, 3, 4]])
    lineage = Lineage(5, np.array([0, 0, 1, 1, 2]), rows)
    reason = classify(lineage).reason
    assert "#P-hard" in reason and "Nearest supported shape" in reason
    problem = Problem(np.eye(2), np.array([0, 1]), lineage, np.eye(2), np.ones((2, 2)))
    with pytest.raises(CfdbUnsupportedError, match="star join"):
        KnnShapley(k=1).fit(problem)


def test_k_above_the_training_set_and_null_validation_features():
    db = cfdb.connect()
    db.sql(
        "CREATE TABLE t (a DOUBLE, y VARCHAR); INSERT INTO t VALUES (1, 'p'), (2, 'q'), (4, 'p');"
        "CREATE TABLE v (a DOUBLE, y VARCHAR); INSERT INTO v VALUES (1.5, 'p'), (NULL, 'q');"
    )
    # K above the training set: every row votes (soft: 2 of K = 5 rows score for 'p')
    db.sql(
        "VALUATE (SELECT * FROM t) EVALUATE ON (SELECT * FROM v WHERE a IS NOT NULL) "
        "USING knn_shapley WITH (k = 5, label = 'y')"
    )
    total = db.sql("SELECT UtilityAll FROM ValuationRuns").fetchall()[0][0]
    assert total == pytest.approx(2 / 5)
    with pytest.raises(CfdbDataError, match="'a' has 1 NULL row"):
        db.sql(
            "VALUATE (SELECT * FROM t) EVALUATE ON (SELECT * FROM v) USING knn_shapley "
            "WITH (k = 2, label = 'y')"
        )
