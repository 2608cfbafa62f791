"""Conditions: canonical form, SQL text and z3 answers against brute force over small domains
(possible worlds), on random conditions (hypothesis)."""

from __future__ import annotations

import itertools

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfdb.ctable.condition import (
    FALSE,
    TRUE,
    And,
    Cmp,
    Domains,
    Member,
    Not,
    Or,
    VarCmp,
    condition_hash,
    evaluate,
    normalize,
    substitute,
    to_sql,
)
from cfdb.ctable.solve import Solver
from cfdb.types import FeatureSpec

FEATURES = [
    FeatureSpec("c", "categorical", ("a", "b", "c")),
    FeatureSpec("d", "categorical", ("x", "y")),
    FeatureSpec("flag", "boolean", ("false", "true")),
    FeatureSpec("i", "integer", min=0, max=3),
    FeatureSpec("r", "numeric", min=0, max=2),
]
DOMAINS = Domains(FEATURES)
TYPES = {f.name: f.type for f in FEATURES}
CONSTANTS = [-1, 0, 0.5, 1, 1.5, 2, 3]
OPS = ["=", "<>", "<", "<=", ">", ">="]

# Every possible world that matters for these constants: categoricals over their domains,
# integers around the constants, reals on a quarter grid (midpoints between constants too).
GRID = list(
    itertools.product(
        ["a", "b", "c"],
        ["x", "y"],
        [False, True],
        range(-3, 6),
        [x / 4 for x in range(-12, 20)],
    )
)
COLUMNS = {
    "c": np.array([g[0] for g in GRID], dtype=object),
    "d": np.array([g[1] for g in GRID], dtype=object),
    "flag": np.array([g[2] for g in GRID], dtype=bool),
    "i": np.array([g[3] for g in GRID], dtype=np.int64),
    "r": np.array([g[4] for g in GRID], dtype=float),
}

atoms = st.one_of(
    st.builds(Member, st.just("c"), st.frozensets(st.sampled_from("abcz")), st.booleans()),
    st.builds(Member, st.just("d"), st.frozensets(st.sampled_from("xy")), st.booleans()),
    st.builds(Member, st.just("flag"), st.frozensets(st.sampled_from(["true", "false"]))),
    st.builds(Cmp, st.sampled_from(["i", "r"]), st.sampled_from(OPS), st.sampled_from(CONSTANTS)),
    st.builds(VarCmp, st.just("i"), st.sampled_from(OPS), st.just("r")),
    st.builds(VarCmp, st.just("c"), st.sampled_from(["=", "<>", "<"]), st.just("d")),
    st.sampled_from([TRUE, FALSE]),
)
conditions = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.builds(lambda xs: And(tuple(xs)), st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: Or(tuple(xs)), st.lists(inner, min_size=1, max_size=3)),
        st.builds(Not, inner),
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def grid_db():
    con = duckdb.connect()
    con.register("g", {k: v for k, v in COLUMNS.items()})
    con.execute("CREATE TABLE grid AS SELECT row_number() OVER () - 1 AS k, * FROM g")
    yield con
    con.close()


@settings(max_examples=300, deadline=None)
@given(conditions)
def test_normal_form_is_equivalent_in_every_world(cond):
    assert np.array_equal(evaluate(cond, COLUMNS), evaluate(normalize(cond, DOMAINS), COLUMNS))


@settings(max_examples=150, deadline=None)
@given(conditions)
def test_sql_text_means_the_same_in_duckdb(grid_db, cond):
    text = to_sql(normalize(cond, DOMAINS), TYPES)
    rows = grid_db.execute(f"SELECT k FROM grid WHERE {text} ORDER BY k").fetchall()
    expected = np.flatnonzero(evaluate(cond, COLUMNS)).tolist()
    assert [k for (k,) in rows] == expected, text


@settings(max_examples=150, deadline=None)
@given(conditions)
def test_z3_satisfiability_matches_possible_worlds(cond):
    solver = Solver(FEATURES)
    assert solver.satisfiable(cond) == bool(evaluate(cond, COLUMNS).any())


@settings(max_examples=100, deadline=None)
@given(conditions, conditions)
def test_z3_implication_matches_possible_worlds(a, b):
    solver = Solver(FEATURES)
    worlds = ~evaluate(a, COLUMNS) | evaluate(b, COLUMNS)
    assert solver.implies(a, b) == bool(worlds.all())


@settings(max_examples=100, deadline=None)
@given(conditions, st.sampled_from(range(len(GRID))))
def test_substitution_fixes_variables(cond, k):
    world = {name: COLUMNS[name][k] for name in ("c", "i")}
    fixed = substitute(cond, world, DOMAINS)
    mask = (COLUMNS["c"] == world["c"]) & (COLUMNS["i"] == world["i"])
    assert np.array_equal(evaluate(fixed, COLUMNS)[mask], evaluate(cond, COLUMNS)[mask])


def test_binary_domain_turns_disequality_into_equality():
    home = [FeatureSpec("Home", "categorical", ("own", "rent"))]
    cond = normalize(Member("Home", frozenset({"rent"}), negated=True), Domains(home))
    assert to_sql(cond) == "Home = 'own'"


def test_canonical_form_merges_equivalent_conditions():
    a = And((Cmp("i", ">", 1), Member("c", frozenset("ab")), Cmp("i", ">=", 0)))
    b = And((Member("c", frozenset("abz")), Not(Cmp("i", "<=", 1))))
    na, nb = normalize(a, DOMAINS), normalize(b, DOMAINS)
    assert to_sql(na) == to_sql(nb) == "c IN ('a', 'b') AND i >= 2"
    assert condition_hash(na) == condition_hash(nb)


def test_integer_interval_that_holds_no_integer_is_false():
    cond = And((Cmp("i", ">", 1), Cmp("i", "<", 2)))
    assert normalize(cond, DOMAINS) == FALSE
    assert normalize(And((Cmp("r", ">", 1), Cmp("r", "<", 2))), DOMAINS) != FALSE


def test_solver_counts_calls_and_skips_easy_cases():
    solver = Solver(FEATURES)
    assert solver.satisfiable(And((Cmp("r", ">", 1), Member("c", frozenset("a")))))
    assert not solver.satisfiable(And((Cmp("r", ">", 1), Cmp("r", "<", 0))))
    assert solver.calls == 0
    assert solver.satisfiable(Or((VarCmp("i", "<", "r"), Cmp("i", "=", 9))))
    assert solver.calls == 0  # one disjunct is easy
    assert not solver.satisfiable(And((VarCmp("i", "<", "r"), VarCmp("r", "<", "i"))))
    assert solver.calls == 1
    assert not solver.satisfiable(And((VarCmp("r", "<", "i"), VarCmp("i", "<", "r"))))
    assert solver.calls == 2
    assert not solver.satisfiable(And((VarCmp("i", "<", "r"), VarCmp("r", "<", "i"))))
    assert solver.calls == 2  # the same question again is answered from the cache
