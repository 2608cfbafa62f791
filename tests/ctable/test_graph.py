"""The implication graph: naive and atom-based constructions agree, edges are exactly the
implications that hold over possible worlds, and the condensation is right."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cfdb.ctable.condition import FALSE, evaluate, normalize, to_sql
from cfdb.ctable.graph import build, condense, simple_implies
from cfdb.ctable.solve import Solver
from tests.ctable.test_condition import COLUMNS, DOMAINS, FEATURES, conditions


def _nodes(conds):
    solver = Solver(FEATURES)
    unique = {}
    for c in conds:
        n = normalize(c, DOMAINS)
        if n != FALSE and solver.satisfiable(n):
            unique.setdefault(to_sql(n), n)
    return list(unique.values())


@settings(max_examples=80, deadline=None)
@given(st.lists(conditions, min_size=2, max_size=9))
def test_naive_and_atoms_give_the_same_graph_and_it_is_right(conds):
    nodes = _nodes(conds)
    if not nodes:
        return
    naive = build(nodes, FEATURES, "naive")
    atoms = build(nodes, FEATURES, "atoms")
    assert atoms.edges == naive.edges
    # Against possible worlds: i ⇒ j iff every world satisfying i satisfies j.
    sat = np.stack([evaluate(c, COLUMNS) for c in nodes])
    expected = {
        (i, j)
        for i in range(len(nodes))
        for j in range(len(nodes))
        if i != j and not (sat[i] & ~sat[j]).any()
    }
    assert naive.edges == expected


@settings(max_examples=150, deadline=None)
@given(conditions, conditions)
def test_exact_precheck_matches_possible_worlds(a, b):
    a, b = normalize(a, DOMAINS), normalize(b, DOMAINS)
    decided = simple_implies(a, b, DOMAINS)
    if decided is not None and a != FALSE:
        worlds = ~evaluate(a, COLUMNS) | evaluate(b, COLUMNS)
        assert decided == bool(worlds.all()), (to_sql(a), to_sql(b))


def test_condensation_and_topological_order():
    # 0 <-> 1 (a class), 1 -> 2, 3 -> 0, 4 alone.
    c = condense(5, {(0, 1), (1, 0), (1, 2), (3, 0)})
    assert c.classes[0] == c.classes[1] != c.classes[2]
    position = {cls: k for k, cls in enumerate(c.order)}
    assert position[c.classes[3]] < position[c.classes[0]] < position[c.classes[2]]
    assert sorted(c.order) == sorted(set(c.classes))
    assert c.successors[c.classes[0]] == {c.classes[2]}


@settings(max_examples=200, deadline=None)
@given(conditions, conditions)
def test_structural_proofs_match_possible_worlds(a, b):
    from cfdb.ctable.graph import prove

    a, b = normalize(a, DOMAINS), normalize(b, DOMAINS)
    decided = prove(a, b, DOMAINS)
    if decided is not None and a != FALSE:
        worlds = ~evaluate(a, COLUMNS) | evaluate(b, COLUMNS)
        assert decided == bool(worlds.all()), (to_sql(a), to_sql(b))


@settings(max_examples=20, deadline=None)
@given(st.lists(conditions, min_size=2, max_size=10))
def test_bulk_decisions_per_shape_give_the_graph_of_possible_worlds(conds):
    # Every pair of shapes decided by quantifier elimination (min_pairs=1), against the
    # per-pair construction and against possible worlds.
    nodes = _nodes(conds)
    if not nodes:
        return
    bulk = build(nodes, FEATURES, "atoms", symbolic_min_pairs=1)
    per_pair = build(nodes, FEATURES, "atoms", symbolic_min_pairs=None)
    assert bulk.edges == per_pair.edges
    sat = np.stack([evaluate(c, COLUMNS) for c in nodes])
    expected = {
        (i, j)
        for i in range(len(nodes))
        for j in range(len(nodes))
        if i != j and not (sat[i] & ~sat[j]).any()
    }
    assert bulk.edges == expected
