"""Bounds on ``C.Score`` against their definitions, on random inputs: the merged bound of a
prediction (:func:`cfdb.engine.cfql_batch.score_bounds`) accepts exactly the scores every
comparison accepts, and its SQL text (stored in ``Conditions``, used on the persistent pool)
accepts exactly what :meth:`ScoreBound.mask` accepts, evaluated by DuckDB."""

from __future__ import annotations

import operator
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import cfdb
from cfdb.engine.cfql_batch import score_bounds
from cfdb.generators.base import ScoreBound

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
VALUES = st.sampled_from([0.1, 0.25, 0.5, 0.7, 0.75, 0.9, 1.0])
SCORES = np.array([0.0, 0.1, 0.2, 0.25, 0.3, 0.5, 0.6, 0.7, 0.72, 0.75, 0.8, 0.9, 1.0])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(OPS)), VALUES), min_size=1, max_size=4))
def test_merged_bounds_accept_exactly_what_every_comparison_accepts(comparisons):
    score = [(op, i) for i, (op, _) in enumerate(comparisons)]
    slots = [[Decimal(str(v))] for _, v in comparisons]  # DuckDB gives decimals for literals
    (bound,) = score_bounds(score, [7], slots, "", (0, 0)).values()
    expected = np.ones(len(SCORES), dtype=bool)
    for op, v in comparisons:
        expected &= OPS[op](SCORES, v)
    if isinstance(bound, str):
        assert not expected.any() and "no score" in bound
    else:
        assert (bound.mask(SCORES) == expected).all(), (comparisons, bound)


def test_a_null_bound_is_a_reason_not_a_bound():
    (bound,) = score_bounds([(">=", 0)], [3, 3], [[None, None]], "", (0, 0)).values()
    assert bound == "the bound on C.Score is NULL"


BOUNDS = st.builds(
    ScoreBound,
    low=st.one_of(st.none(), VALUES),
    high=st.one_of(st.none(), VALUES),
    low_strict=st.booleans(),
    high_strict=st.booleans(),
)


def test_sql_text_agrees_with_the_mask():
    db = cfdb.connect()
    db.sql("CREATE TABLE s AS SELECT unnest(?) AS Score", params=[SCORES.tolist()])

    @settings(max_examples=60, deadline=None)
    @given(BOUNDS)
    def check(bound):
        got = db.sql(f"SELECT list(Score ORDER BY Score) FROM s WHERE {bound.sql()}").fetchall()
        assert (got[0][0] or []) == SCORES[bound.mask(SCORES)].tolist(), bound.sql()

    try:
        check()
    finally:
        db.close()
