"""The MARGINAL design: every pair is (D, D ∪ {z}) with z a target outside D and |D| a
requested size; class balance, shared datasets, per-unit seeding; parsing of the clause."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfdb.errors import CfdbDataError, CfdbSyntaxError
from cfdb.grid.designs import DESIGNS, DesignContext
from cfdb.lang import parse_one
from cfdb.scaling import design  # noqa: F401  (registers "marginal")
from cfdb.scaling.design import sizes_of


def _pairs(plan):
    """(unit, members without, members with, size) of every pair."""
    out = []
    for p in plan.pairs:
        without = set(plan.members(plan.subsets[p.without]).tolist())
        with_ = set(plan.members(plan.subsets[p.with_]).tolist())
        out.append((p.unit, without, with_, p.position, p.draw))
    return out


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(16, 40),  # enough units for the largest size plus every target
    m=st.integers(1, 4),
    low=st.integers(0, 5),
    span=st.integers(0, 4),
    geometric=st.sampled_from([None, 2, 3]),
    shared=st.booleans(),
    n_targets=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
def test_every_pair_adds_one_target_to_a_dataset_of_a_requested_size(
    n, m, low, span, geometric, shared, n_targets, seed
):
    rng = np.random.default_rng(seed)
    targets = sorted(rng.choice(n, size=n_targets, replace=False).tolist())
    args = {"m": m, "low": max(low, 1 if geometric else 0), "high": low + span + 1}
    if geometric:
        args["geometric"] = geometric
    if shared:
        args["shared"] = True
    plan = DESIGNS.get("marginal")(DesignContext(n, seed, {}, None, {"targets": targets}), args)
    pairs = _pairs(plan)
    fixed = sizes_of(args)
    per_unit = m * (len(fixed) if fixed else 1)
    assert len(pairs) == per_unit * len(targets)
    for unit, without, with_, size, _ in pairs:
        assert unit in targets and unit not in without
        assert with_ == without | {unit}
        assert len(without) == size
        assert (size in fixed) if fixed else (args["low"] <= size <= args["high"])
        if shared:
            assert not without & set(targets)  # shared datasets avoid every target
    counts = {t: sum(1 for p in pairs if p[0] == t) for t in targets}
    assert set(counts.values()) == {per_unit}
    # subsets are distinct rows of the grid
    keys = [tuple(plan.members(s).tolist()) for s in plan.subsets]
    assert len(keys) == len(set(keys))


def test_geometric_sizes_and_explicit_sizes():
    assert sizes_of({"m": 1, "low": 100, "high": 1000, "geometric": 10}) == [
        round(float(x)) for x in np.geomspace(100, 1000, 10)
    ]
    assert sizes_of({"m": 1, "sizes": [30, 10, 30]}) == [10, 30]
    assert sizes_of({"m": 1, "low": 1, "high": 5}) is None


def test_balanced_datasets_have_equal_classes():
    labels = np.array([0] * 30 + [1] * 12 + [2] * 18)
    ctx = DesignContext(60, 3, {}, None, {"targets": [0, 40, 59], "labels": labels})
    plan = DESIGNS.get("marginal")(ctx, {"m": 5, "low": 6, "high": 31, "balanced": True})
    for _, without, _, size, _ in _pairs(plan):
        counts = np.bincount(labels[sorted(without)], minlength=3)
        assert counts.sum() == size and counts.max() - counts.min() <= 1
    with pytest.raises(CfdbDataError, match="smallest class has 11"):
        # unit 40 is one of the 12 of class 1: 11 remain for it
        DESIGNS.get("marginal")(ctx, {"m": 1, "low": 36, "high": 36, "balanced": True})
    with pytest.raises(CfdbDataError, match="BALANCED needs a label"):
        DESIGNS.get("marginal")(
            DesignContext(60, 3), {"m": 1, "low": 3, "high": 3, "balanced": True}
        )


def test_a_units_draws_do_not_depend_on_the_other_targets():
    args = {"m": 3, "low": 2, "high": 9}
    alone = DESIGNS.get("marginal")(DesignContext(30, 7, {}, None, {"targets": [5]}), args)
    many = DESIGNS.get("marginal")(DesignContext(30, 7, {}, None, {"targets": [1, 5, 20]}), args)
    mine = [(w, s) for u, w, _, s, _ in _pairs(many) if u == 5]
    assert mine == [(w, s) for _, w, _, s, _ in _pairs(alone)]
    again = DESIGNS.get("marginal")(DesignContext(30, 7, {}, None, {"targets": [5]}), args)
    assert _pairs(again) == _pairs(alone)
    other_seed = DESIGNS.get("marginal")(DesignContext(30, 8, {}, None, {"targets": [5]}), args)
    assert _pairs(other_seed) != _pairs(alone)


def test_shared_datasets_cost_one_row_per_draw_plus_one_per_target():
    ctx = DesignContext(50, 0, {}, None, {"targets": [0, 1, 2, 3]})
    args = {"m": 6, "low": 10, "high": 40, "geometric": 3}
    shared = DESIGNS.get("marginal")(ctx, {**args, "shared": True})
    separate = DESIGNS.get("marginal")(ctx, args)
    assert len(shared.pairs) == len(separate.pairs) == 4 * 6 * 3
    assert len(shared.subsets) == 6 * 3 * (4 + 1)
    assert len(separate.subsets) == 2 * 4 * 6 * 3


def test_sizes_beyond_the_pool_are_refused():
    ctx = DesignContext(10, 0, {}, None, {"targets": [0, 1, 2]})
    with pytest.raises(CfdbDataError, match="larger than the 9 units"):
        DESIGNS.get("marginal")(ctx, {"m": 1, "low": 5, "high": 10})
    with pytest.raises(CfdbDataError, match="larger than the 7 units"):
        DESIGNS.get("marginal")(ctx, {"m": 1, "low": 5, "high": 8, "shared": True})


# -- the clause -------------------------------------------------------------------------------
def _design(clause: str) -> tuple[str, dict]:
    node = parse_one(
        f"CREATE GRID g TRAIN ON (SELECT * FROM t) SUBSETS {clause} "
        "EVALUATE ON (SELECT * FROM e) MODEL logistic_regression METRIC log_loss"
    ).node
    return node.args["design"], node.args["design_args"]


def test_the_clause_parses_every_form():
    assert _design("MARGINAL 8 SIZES BETWEEN 100 AND 1000") == (
        "marginal",
        {"m": 8, "low": 100, "high": 1000},
    )
    assert _design(
        "MARGINAL 4 SIZES BETWEEN 100 AND 1000 GEOMETRIC 10 FOR (SELECT id FROM t LIMIT 3) "
        "BALANCED SHARED"
    )[1] == {
        "m": 4,
        "low": 100,
        "high": 1000,
        "geometric": 10,
        "for": "SELECT id FROM t LIMIT 3",
        "balanced": True,
        "shared": True,
    }
    assert _design("MARGINAL 2 SIZES (50, 10, 50) SHARED FOR ((SELECT 1))")[1] == {
        "m": 2,
        "sizes": [10, 50],
        "shared": True,
        "for": "(SELECT 1)",
    }


@pytest.mark.parametrize(
    ("clause", "message"),
    [
        ("MARGINAL SIZES BETWEEN 1 AND 2", "number of draws"),
        ("MARGINAL 0 SIZES BETWEEN 1 AND 2", "at least one draw"),
        ("MARGINAL 3 BETWEEN 1 AND 2", "SIZES"),
        ("MARGINAL 3 SIZES BETWEEN 5 AND 2", "empty range"),
        ("MARGINAL 3 SIZES (1, -2)", "non-negative integers"),
        ("MARGINAL 3 SIZES (10, 20) GEOMETRIC 4", "GEOMETRIC needs SIZES BETWEEN"),
        ("MARGINAL 3 SIZES BETWEEN 1 AND 9 GEOMETRIC 1", "at least two sizes"),
        ("MARGINAL 3 SIZES BETWEEN 1 AND 9 SHARED SHARED", "SHARED given twice"),
        ("MARGINAL 3 SIZES BETWEEN 1 AND 9 FOR SELECT 1", "parenthesized query"),
    ],
)
def test_clause_errors_point_at_the_fault(clause, message):
    with pytest.raises(CfdbSyntaxError, match=message) as info:
        _design(clause)
    assert info.value.start is not None
