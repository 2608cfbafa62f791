"""The MARGINAL design's STRATIFIED modifier (the paper's own sampler): every D holds the
classes in the shares of the pool it is drawn from, checked against a direct count on random
designs; the clause and its conflicts; a stratified grid through SQL."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfdb.errors import CfdbDataError, CfdbSyntaxError
from cfdb.grid.designs import DESIGNS, DesignContext
from cfdb.lang import parse_one
from cfdb.scaling import design  # noqa: F401  (registers "marginal")
from cfdb.scaling.design import proportional_quota
from tests.scaling.test_design import _pairs
from tests.scaling.test_scaling_sql import EVAL, MODEL, OPTIONS, TARGETS, TRAIN, make_db


def _expected(pool_labels: np.ndarray, k: int) -> dict[int, int]:
    """The slow twin: round(share · k) per class, the remainder to the most frequent class."""
    classes, counts = np.unique(pool_labels, return_counts=True)
    want = {int(c): round(n * k / len(pool_labels)) for c, n in zip(classes, counts)}
    want[int(classes[np.argmax(counts)])] += k - sum(want.values())
    return {c: q for c, q in want.items() if q}


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(20, 60),
    n_classes=st.integers(2, 4),
    m=st.integers(1, 3),
    low=st.integers(1, 8),
    span=st.integers(0, 8),
    shared=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_every_dataset_has_the_pools_class_shares(n, n_classes, m, low, span, shared, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    targets = sorted(rng.choice(n, size=3, replace=False).tolist())
    ctx = DesignContext(n, seed, {}, None, {"targets": targets, "labels": labels})
    args = {"m": m, "low": low, "high": low + span, "stratified": True, "shared": shared}
    plan = DESIGNS.get("marginal")(ctx, args)
    shared_pool = np.setdiff1d(np.arange(n), targets)
    for unit, without, with_, size, _ in _pairs(plan):
        assert with_ == without | {unit} and unit not in without and len(without) == size
        pool = shared_pool if shared else np.delete(np.arange(n), unit)
        got = dict(zip(*np.unique(labels[sorted(without)], return_counts=True), strict=True))
        assert {int(c): int(q) for c, q in got.items()} == _expected(labels[pool], size)


def test_the_quota_sums_to_k_and_never_exceeds_a_class():
    rng = np.random.default_rng(3)
    for _ in range(500):
        counts = rng.integers(1, 30, rng.integers(2, 6))
        k = int(rng.integers(0, counts.sum() + 1))
        quota = proportional_quota(counts, k)
        assert quota.sum() == k and (quota >= 0).all() and (quota <= counts).all()


def test_the_clause_and_its_conflicts():
    node = parse_one(
        "CREATE GRID g TRAIN ON (SELECT * FROM t) SUBSETS MARGINAL 4 SIZES BETWEEN 10 AND 20 "
        "STRATIFIED SHARED EVALUATE ON (SELECT * FROM e) MODEL logistic_regression METRIC log_loss"
    ).node
    assert node.args["design_args"] == {
        "m": 4, "low": 10, "high": 20, "stratified": True, "shared": True
    }  # fmt: skip
    for clause in ("BALANCED STRATIFIED", "STRATIFIED BALANCED"):
        with pytest.raises(CfdbSyntaxError, match="exclude each other"):
            parse_one(
                f"CREATE GRID g TRAIN ON (SELECT * FROM t) SUBSETS MARGINAL 4 SIZES (5) {clause} "
                "EVALUATE ON (SELECT * FROM e) MODEL logistic_regression METRIC log_loss"
            )
    with pytest.raises(CfdbDataError, match="STRATIFIED needs a label"):
        DESIGNS.get("marginal")(
            DesignContext(30, 0), {"m": 1, "low": 3, "high": 3, "stratified": True}
        )


def test_a_stratified_grid_through_sql():
    db = make_db(5)
    db.sql(
        f"CREATE GRID s TRAIN ON ({TRAIN}) SUBSETS MARGINAL 3 SIZES (12, 30) FOR ({TARGETS}) "
        f"STRATIFIED SHARED EVALUATE ON ({EVAL}) {MODEL} {OPTIONS}"
    )
    args = db.sql("SELECT DesignArgs FROM Grids WHERE Name = 's'").fetchall()[0][0]
    assert '"stratified": true' in args.replace(" ", "").replace(":", ": ")
    # the labels a stratified design needs come from a classification grid only
    with pytest.raises(CfdbDataError, match="STRATIFIED needs a classification grid"):
        db.sql(
            "CREATE GRID r TRAIN ON (SELECT id, x1, x2, target FROM pts WHERE part = 'train') "
            f"SUBSETS MARGINAL 3 SIZES (12) STRATIFIED EVALUATE ON ({EVAL}) "
            "MODEL linear_regression METRIC mse WITH (label = 'target', key = 'id')"
        )
    db.close()
