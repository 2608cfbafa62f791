"""KNN-Shapley over provenance equals Shapley values computed by enumerating every coalition.

Random small inputs (at most 10 base tuples): map, fork and one-to-many-join pipelines;
K = 1, 3, 5; two and three classes; soft and vote KNN utilities; every additive utility.
Features are small integers, so distance ties are common (they break by row order).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cfdb.valuation import UTILITIES, KnnShapley, Lineage, Problem, proxy_predictions
from tests.valuation import oracle

KINDS = ("map", "fork", "join")


def random_lineage(kind: str, rng: np.random.Generator) -> tuple[list[list[int]], int, np.ndarray]:
    """Per training row its variables (one monomial), the number of variables, and each
    variable's relation (join: facts 0, dimension tuples 1)."""
    if kind == "map":
        n = int(rng.integers(2, 10))
        return [[i] for i in range(n)], n, np.zeros(n, dtype=np.int64)
    if kind == "fork":
        groups = int(rng.integers(2, 7))
        rows = int(rng.integers(groups, 11))
        owner = np.r_[np.arange(groups), rng.integers(0, groups, rows - groups)]
        return [[int(g)] for g in rng.permutation(owner)], groups, np.zeros(groups, np.int64)
    dims = int(rng.integers(1, 4))
    facts = int(rng.integers(2, 10 - dims))
    dim_of = np.r_[np.arange(min(dims, facts)), rng.integers(0, dims, facts - min(dims, facts))]
    rows = []
    for f in range(facts):
        for _ in range(int(rng.integers(1, 3)) if len(rows) < 9 else 1):
            rows.append([f, facts + int(dim_of[f])])
    used = sorted({v for r in rows for v in r})
    remap = {v: i for i, v in enumerate(used)}
    relation = np.array([0 if v < facts else 1 for v in used], dtype=np.int64)
    return [[remap[v] for v in r] for r in rows], len(used), relation


def lineage_of(rows: list[list[int]], n_vars: int, relation: np.ndarray) -> Lineage:
    width = max(len(r) for r in rows)
    row_vars = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        row_vars[i, : len(r)] = r
    return Lineage(n_vars, relation, row_vars)


def metric_and_gain(name, y_val, n_classes, groups, p_all):
    pos = 1 if n_classes == 2 else 0
    classes = tuple(range(n_classes))
    options = {"positive": pos, "sensitive": groups, "predicted_positive": p_all[:, pos]}
    gain = UTILITIES.get(name).build(y_val, classes, options).matrix
    metric = {
        "accuracy": lambda: oracle.accuracy(y_val),
        "tpr": lambda: oracle.rate(y_val, pos, True, True),
        "fnr": lambda: oracle.rate(y_val, pos, True, False),
        "tnr": lambda: oracle.rate(y_val, pos, False, False),
        "fpr": lambda: oracle.rate(y_val, pos, False, True),
        "equalized_odds": lambda: oracle.equalized_odds(y_val, pos, groups, p_all),
    }[name]()
    return metric, gain


CASES = list(itertools.product(KINDS, (1, 3, 5), (2, 3), ("soft", "vote")))


@pytest.mark.parametrize(("kind", "k", "n_classes", "knn"), CASES)
def test_values_equal_enumeration_for_every_utility(kind, k, n_classes, knn):
    seed = CASES.index((kind, k, n_classes, knn))
    rng = np.random.default_rng(seed)
    rows, n_vars, relation = random_lineage(kind, rng)
    n, n_val = len(rows), 4
    train = rng.integers(-2, 3, (n, 2)).astype(float)
    labels = rng.integers(0, n_classes, n)
    val = rng.integers(-2, 3, (n_val, 2)).astype(float)
    # every class and both sensitive groups among positives and negatives of the validation set
    y_val = np.array([0, 1, 0, 1]) if n_classes == 2 else np.array([0, 1, 2, 0])
    groups = np.array(["a", "a", "b", "b"], dtype=object)
    lineage = lineage_of(rows, n_vars, relation)
    monomials = [[frozenset(r)] for r in rows]
    p_all = proxy_predictions(train, labels, val, k, n_classes, knn)
    for name in UTILITIES.names():
        metric, gain = metric_and_gain(name, y_val, n_classes, groups, p_all)
        expected = oracle.shapley_by_enumeration(
            train, labels, monomials, n_vars, val, metric, n_classes, k, knn
        )
        method = KnnShapley(k=k, knn_utility=knn, n_jobs=1).fit(
            Problem(train, labels, lineage, val, gain)
        )
        assert method.pipeline_.kind == kind
        np.testing.assert_allclose(method.values_, expected, atol=1e-10, err_msg=name)
        # efficiency: the values add up to the utility of the full training set
        assert method.values_.sum() == pytest.approx(method.utility_all_, abs=1e-10)
        assert method.utility_all_ == pytest.approx(metric(p_all), abs=1e-12)
