"""Implication per pair of condition shapes: one quantifier elimination, evaluated in bulk,
equals z3 on every pair of concrete conditions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cfdb.ctable.condition import And, Cmp, Member, Or, normalize
from cfdb.ctable.shapes import decide_blocks, shape_of
from cfdb.ctable.solve import Solver
from tests.ctable.test_condition import DOMAINS, FEATURES

# Shapes of the CFDB paper's Table 1 over two integer features and one categorical one.
INT_VARS = [f.name for f in FEATURES if f.type == "integer"]
REAL_VARS = [f.name for f in FEATURES if f.type == "numeric"]
CAT_VARS = [f.name for f in FEATURES if f.is_categorical and f.type != "boolean"]


def _templates():
    x = INT_VARS[0]
    y = REAL_VARS[0]
    c = CAT_VARS[0]
    dom = sorted(DOMAINS.domain(c))
    return [
        lambda a, b, k: Or((Cmp(x, "<>", a), Cmp(y, "<>", b))),
        lambda a, b, k: And((Cmp(x, "<>", a), Cmp(y, "<>", b))),
        lambda a, b, k: Or((Cmp(x, "=", a), Cmp(y, "=", b))),
        lambda a, b, k: Or((Cmp(y, ">", b), Cmp(x, "=", a))),
        lambda a, b, k: Cmp(x, ">", a),
        lambda a, b, k: And((Cmp(x, ">=", a), Cmp(x, "<=", a + abs(b) % 5))),
        lambda a, b, k: And((Cmp(y, ">", a / 2), Cmp(y, "<", b))),
        lambda a, b, k: Or((Member(c, frozenset({dom[k % len(dom)]})), Cmp(x, "<", a))),
        lambda a, b, k: And((Member(c, frozenset(dom) - {dom[k % len(dom)]}), Cmp(y, "<>", b))),
    ]


@settings(max_examples=5, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 8), st.integers(-3, 3), st.integers(-3, 3), st.integers(0, 5)),
        min_size=2,
        max_size=24,
    )
)
def test_bulk_decisions_equal_z3_per_pair(rows):
    templates = _templates()
    solver = Solver(FEATURES)
    conds = []
    for t, a, b, k in rows:
        cond = normalize(templates[t](float(a), float(b), k), DOMAINS)
        if cond not in conds and solver.satisfiable(cond):
            conds.append(cond)
    if len(conds) < 2:
        return
    blocks = decide_blocks(conds, solver, min_pairs=1)
    assert blocks.decided.sum() > 0
    for i, a in enumerate(conds):
        for j, b in enumerate(conds):
            if blocks.decided[i, j]:
                assert blocks.edge[i, j] == solver.implies(a, b), (a, b)


def test_constants_become_parameters_and_sets_of_one_value_too():
    c = CAT_VARS[0]
    dom = sorted(DOMAINS.domain(c))
    x = INT_VARS[0]
    one = normalize(And((Member(c, frozenset({dom[0]})), Cmp(x, ">", 3.0))), DOMAINS)
    two = normalize(And((Member(c, frozenset({dom[1]})), Cmp(x, ">", 7.0))), DOMAINS)
    (s1, p1), (s2, p2) = shape_of(one, DOMAINS), shape_of(two, DOMAINS)
    assert s1 == s2
    assert p1 != p2
    assert np.isfinite(p1).all()
