"""Subset designs: structure, pairs, reproducibility, refusals (checked by enumeration)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfdb.errors import CfdbDataError, CfdbUnsupportedError
from cfdb.grid.designs import DESIGNS, DesignContext, Plan


def _sets(plan: Plan) -> list[frozenset[int]]:
    return [frozenset(plan.members(s).tolist()) for s in plan.subsets]


def _check_pairs(plan: Plan) -> None:
    sets = _sets(plan)
    for p in plan.pairs:
        if p.kind == "unit":
            assert p.unit not in sets[p.without]
            assert sets[p.with_] == sets[p.without] | {p.unit}
        else:
            assert sets[p.with_] == frozenset(range(plan.n_units))
    assert len(set(sets)) == len(sets), "subsets are distinct"
    for spec, members in zip(plan.subsets, sets, strict=True):
        assert spec.size == len(members)


@given(st.integers(0, 7))
@settings(max_examples=8, deadline=None)
def test_exhaustive_has_every_subset_and_every_pair(n):
    plan = DESIGNS.get("exhaustive")(DesignContext(n), {})
    assert set(_sets(plan)) == {
        frozenset(i for i in range(n) if mask >> i & 1) for mask in range(2**n)
    }
    assert len(plan.pairs) == n * 2 ** max(n - 1, 0) if n else len(plan.pairs) == 0
    _check_pairs(plan)


def test_exhaustive_is_refused_above_the_limit_with_the_numbers():
    with pytest.raises(CfdbUnsupportedError, match=r"20 units needs 2\^20 = 1,048,576 subsets"):
        DESIGNS.get("exhaustive")(DesignContext(20), {})
    plan = DESIGNS.get("exhaustive")(DesignContext(3, options={"max_units": 3}), {})
    assert len(plan.subsets) == 8
    with pytest.raises(CfdbUnsupportedError, match="limit is 2 units"):
        DESIGNS.get("exhaustive")(DesignContext(3, options={"max_units": 2}), {})


def test_leave_one_out():
    plan = DESIGNS.get("leave_one_out")(DesignContext(5), {})
    assert len(plan.subsets) == 6 and len(plan.pairs) == 5
    _check_pairs(plan)
    assert sorted(p.unit for p in plan.pairs) == list(range(5))


@given(st.integers(1, 9), st.integers(1, 12), st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_permutations_are_prefix_chains_and_seeded(n, m, seed):
    plan = DESIGNS.get("permutations")(DesignContext(n, seed), {"m": m})
    _check_pairs(plan)
    assert len(plan.pairs) == n * m
    for d in range(m):
        chain = sorted((p for p in plan.pairs if p.draw == d), key=lambda p: p.position)
        assert [p.unit for p in chain] == plan.permutations[d].tolist()
        assert [p.position for p in chain] == list(range(n))
    roles = Counter(s.role for s in plan.subsets)
    assert roles["empty"] == 1 and roles["full"] == 1
    again = DESIGNS.get("permutations")(DesignContext(n, seed), {"m": m})
    assert np.array_equal(again.permutations, plan.permutations)


def test_permutations_differ_across_seeds():
    a = DESIGNS.get("permutations")(DesignContext(30, 1), {"m": 3}).permutations
    b = DESIGNS.get("permutations")(DesignContext(30, 2), {"m": 3}).permutations
    assert not np.array_equal(a, b)


@given(st.integers(2, 30), st.integers(1, 20), st.integers(0, 10_000), st.booleans())
@settings(max_examples=30, deadline=None)
def test_random_subsets_and_pairs(n, m, seed, pairs):
    sizes = sorted({1, n // 2, n - 1})
    plan = DESIGNS.get("random")(DesignContext(n, seed), {"m": m, "sizes": sizes, "pairs": pairs})
    _check_pairs(plan)
    if pairs:
        assert len(plan.pairs) == m * len(sizes)
        assert {p.position for p in plan.pairs} <= set(sizes)
        counts = Counter(p.unit for p in plan.pairs)
        # units are taken in turn: coverage differs by at most one draw
        assert max(counts.values()) - min(counts.get(u, 0) for u in range(n)) <= 1
    else:
        assert {s.size for s in plan.subsets} <= set(sizes)


def test_random_bernoulli_subsets_have_half_the_units_on_average():
    plan = DESIGNS.get("random")(DesignContext(40, 3), {"m": 400})
    assert 18 < np.mean([s.size for s in plan.subsets]) < 22


def test_random_refuses_sizes_beyond_the_units():
    with pytest.raises(CfdbDataError, match="subset size 9"):
        DESIGNS.get("random")(DesignContext(5), {"m": 2, "sizes": [9]})
    with pytest.raises(CfdbDataError, match="subset size 5 is larger than the 4"):
        DESIGNS.get("random")(DesignContext(5), {"m": 2, "sizes": [5], "pairs": True})


def test_strikes_remove_one_group_at_a_time():
    ctx = DesignContext(5, groups={"a": [0, 1], "b": [2], "c": [3, 4]})
    plan = DESIGNS.get("strikes")(ctx, {"by": "g"})
    _check_pairs(plan)
    sets = _sets(plan)
    removed = {p.unit: frozenset(range(5)) - sets[p.without] for p in plan.pairs}
    assert removed == {"a": {0, 1}, "b": {2}, "c": {3, 4}}
