"""The building blocks: ranking, pipeline classes, gain matrices, labels and tallies."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cfdb.errors import CfdbDataError, CfdbNotFittedError, CfdbUnsupportedError
from cfdb.valuation import (
    UTILITIES,
    VALUATIONS,
    KnnShapley,
    Lineage,
    Problem,
    classify,
    encode_labels,
    positive_class,
)
from cfdb.valuation.neighbors import Ranker
from cfdb.valuation.utilities import Tallies, tally_utility


# -- ranking ------------------------------------------------------------------------------------
def test_packed_keys_order_rows_by_distance_then_row_index():
    rng = np.random.default_rng(0)
    train = rng.integers(-3, 4, (500, 3)).astype(float)  # many exact ties
    val = rng.integers(-3, 4, (20, 3)).astype(float)
    ranker = Ranker(train, labels=rng.integers(0, 3, 500), n_classes=3)
    order = ranker.order(val)
    for v, got in zip(val, order):
        d = np.sum((train - v) ** 2, axis=1)
        np.testing.assert_array_equal(got, np.lexsort((np.arange(500), d)))
    near = ranker.nearest(val, 7)
    np.testing.assert_array_equal(near, order[:, :7])


def test_packed_keys_carry_labels_and_sparse_rows_rank_like_dense_ones():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(300, 5)) * (rng.random((300, 5)) < 0.4)
    labels = rng.integers(0, 5, 300)
    val = rng.normal(size=(9, 5))
    ranker = Ranker(train, labels=labels, n_classes=5)
    keys = ranker.packed(val)
    keys.sort(axis=1)
    np.testing.assert_array_equal(
        ranker.labels(keys).astype(int), labels[ranker.indices(keys.copy())]
    )
    dense = Ranker(train).order(val)
    np.testing.assert_array_equal(Ranker(sp.csr_matrix(train)).order(sp.csr_matrix(val)), dense)


def test_near_zero_distances_sort_first_despite_rounding():
    train = np.array([[1e8, 1.0], [1e8, 1.0 + 1e-3], [0.0, 0.0]])
    order = Ranker(train).order(train[:1])
    assert order[0, 0] == 0 and order[0, -1] == 2


# -- pipeline classes ---------------------------------------------------------------------------
def _lineage(rows, relation):
    width = max(len(r) for r in rows)
    rv = np.full((len(rows), width), -1)
    for i, r in enumerate(rows):
        rv[i, : len(r)] = r
    return Lineage(len(relation), np.asarray(relation), rv)


@pytest.mark.parametrize(
    ("rows", "relation", "kind", "reason"),
    [
        ([[0], [1], [2]], [0, 0, 0], "map", ""),
        ([[0], [0], [1]], [0, 0], "fork", ""),
        ([[0, 3], [1, 3], [2, 4]], [0, 0, 0, 1, 1], "join", ""),
        ([[3, 0], [3, 1], [4, 2], [4]], [0, 0, 0, 1, 1], "join", ""),
        ([[3, 0], [3, 1], [4, 2], [0]], [0, 0, 0, 1, 1], "general", "joined and not joined"),
        ([[0, 2], [1, 2], [0, 3]], [0, 0, 1, 1], "general", "many-to-many"),
        ([[0, 1, 2]], [0, 1, 2], "general", "joins 3 base tuples"),
        ([[0, 1]], [0, 0], "general", "relation with itself"),
        ([[0, 0]], [0], "map", ""),
    ],
)
def test_pipeline_classes(rows, relation, kind, reason):
    pipeline = classify(_lineage(rows, relation))
    assert pipeline.kind == kind
    assert reason in pipeline.reason
    if kind == "join":
        assert pipeline.fact_relation == 0 and pipeline.group_relation == 1
        assert (pipeline.row_group[:3] >= 3).all()


def test_sums_are_general_and_constants_always_present():
    assert "provenance sum" in classify(Lineage(2, np.zeros(2), np.array([[0], [1]]), (1,))).reason
    constant = classify(Lineage(1, np.zeros(1), np.array([[0], [-1]])))
    assert constant.kind == "map" and constant.constants == 1


def test_general_pipelines_are_refused_with_the_reason():
    lineage = _lineage([[0, 2], [1, 2], [0, 3]], [0, 0, 1, 1])
    problem = Problem(np.eye(3), np.array([0, 1, 0]), lineage, np.eye(3)[:1], np.ones((1, 2)))
    with pytest.raises(CfdbUnsupportedError, match="many-to-many"):
        KnnShapley(k=1).fit(problem)
    with pytest.raises(CfdbNotFittedError):
        KnnShapley().result()
    with pytest.raises(CfdbDataError, match="positive integer"):
        KnnShapley(k=0).fit(problem)
    assert VALUATIONS.get("KNN_SHAPLEY") is KnnShapley


def test_too_many_tallies_are_refused():
    lineage = _lineage([[0], [0]], [0])
    problem = Problem(np.eye(2), np.array([0, 1]), lineage, np.eye(2), np.ones((2, 40)) / 80)
    with pytest.raises(CfdbUnsupportedError, match="label tallies"):
        KnnShapley(k=10, knn_utility="vote").fit(problem)


# -- gains and labels ---------------------------------------------------------------------------
def test_gain_matrices_of_the_rate_utilities():
    y = np.array([1, 1, 0, 0, 0])
    classes = ("no", "yes")
    fnr = UTILITIES.get("fnr").build(y, classes, {})
    assert fnr.info["positive"] == "yes" and not fnr.higher_is_better
    np.testing.assert_allclose(fnr.matrix, [[0.5, 0], [0.5, 0], [0, 0], [0, 0], [0, 0]])
    fpr = UTILITIES.get("fpr").build(y, classes, {}).matrix
    np.testing.assert_allclose(fpr[2:], np.tile([0, 1 / 3], (3, 1)))
    tnr = UTILITIES.get("tnr").build(y, classes, {"positive": "yes"}).matrix
    np.testing.assert_allclose(tnr[2:], np.tile([1 / 3, 0], (3, 1)))
    acc = UTILITIES.get("accuracy").build(y, classes, {}).matrix
    assert acc.sum() == pytest.approx(1.0)


def test_equalized_odds_picks_the_dominant_rate_and_groups_on_the_full_data():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    groups = np.array(["f", "f", "m", "m", "f", "f", "m", "m"], dtype=object)
    predicted = np.array([1, 1, 0, 1, 0, 0, 0, 0], dtype=float)  # TPR f = 1, m = 0.5
    gain = UTILITIES.get("equalized_odds").build(
        y, (0, 1), {"sensitive": groups, "predicted_positive": predicted}
    )
    assert gain.info["rate"] == "tpr" and gain.info["group_max"] == "f"
    assert gain.info["full_data_difference"] == pytest.approx(0.5)
    assert np.sum(gain.matrix[:, 1] * predicted) == pytest.approx(0.5)
    with pytest.raises(CfdbDataError, match="two sensitive groups"):
        UTILITIES.get("equalized_odds").build(
            y,
            (0, 1),
            {"sensitive": np.array(["f"] * 8, dtype=object), "predicted_positive": predicted},
        )


def test_positive_labels_and_label_encoding():
    assert positive_class((False, True)) == 1
    assert positive_class(("0", "1")) == 1
    assert positive_class(("<=50K", ">50K"), ">50K") == 1
    with pytest.raises(CfdbDataError, match="positive label"):
        positive_class(("bad", "good"))
    with pytest.raises(CfdbDataError, match="not a label"):
        positive_class(("bad", "good"), "meh")
    classes, ytr, yva = encode_labels(np.array([10, 2, 2]), np.array([33]))
    assert classes == (2, 10, 33) and ytr.tolist() == [1, 0, 0] and yva.tolist() == [2]
    classes, ytr, _ = encode_labels(
        np.array(["b", "a"], dtype=object), np.array(["a"], dtype=object)
    )
    assert classes == ("a", "b") and ytr.tolist() == [1, 0]
    with pytest.raises(CfdbDataError, match="NULL in 1 validation rows"):
        encode_labels(np.array(["a"], dtype=object), np.array([None], dtype=object))


def test_tallies_and_tally_utilities():
    t = Tallies(3, 2)
    assert len(t) == 10 and t.index([0, 0, 0]) == 0 and t.index([3, 0, 0]) == -1
    assert t.vote[t.index([1, 1, 0])] == 0  # ties go to the first class
    gain = np.array([[0.0, 1.0, 2.0]])
    soft = tally_utility(gain, t, "soft", 2)
    vote = tally_utility(gain, t, "vote", 2)
    assert soft[0, t.index([0, 1, 1])] == pytest.approx(1.5)
    assert vote[0, t.index([0, 1, 1])] == 1.0 and vote[0, 0] == 0.0
