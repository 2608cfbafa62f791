"""Parsing the grid statements, and finding the relations a plain statement reads (sqlglot)."""

from __future__ import annotations

import pytest

from cfdb.errors import CfdbSyntaxError
from cfdb.lang import parse_one
from cfdb.lang.grid_syntax import (
    CreateGrid,
    DropGrid,
    MaterializeGrid,
    Relation,
    WhatIf,
    referenced_relations,
)

CREATE = (
    "CREATE GRID g TRAIN ON (SELECT * FROM t) UNITS BY provider SUBSETS {design} "
    "EVALUATE ON (SELECT * FROM e) SLICE BY sex MODEL xgboost WITH (max_depth = 3) "
    "METRIC accuracy, AUC WITH (seed = 7, label = 'y')"
)


@pytest.mark.parametrize(
    ("design", "name", "args"),
    [
        ("EXHAUSTIVE", "exhaustive", {}),
        ("LEAVE ONE OUT", "leave_one_out", {}),
        ("RANDOM 50", "random", {"m": 50}),
        ("RANDOM 5 SIZES (100, 10, 10)", "random", {"m": 5, "sizes": [10, 100]}),
        ("random 5 sizes (3) pairs", "random", {"m": 5, "sizes": [3], "pairs": True}),
        ("PERMUTATIONS 20", "permutations", {"m": 20}),
        ("PERMUTATIONS 20 TRUNCATE 0.01", "permutations", {"m": 20, "truncate": 0.01}),
        ("STRIKES BY month", "strikes", {"by": "month"}),
    ],
)
def test_create_grid_designs(design, name, args):
    node = parse_one(CREATE.format(design=design)).node
    assert isinstance(node, CreateGrid)
    assert node.args["design"] == name and node.args["design_args"] == args
    assert node.args["metrics"] == ["accuracy", "auc"]
    assert node.args["units_by"] == "provider" and node.args["slice_by"] == "sex"
    assert node.params() == {"max_depth": 3} and node.options() == {"seed": 7, "label": "y"}
    text = CREATE.format(design=design)
    assert text[slice(*node.span("design"))].lower() == design.lower()
    assert text[slice(*node.span("train"))] == "SELECT * FROM t"


def test_other_statements():
    m = parse_one("MATERIALIZE GRID g LIMIT 10 WITH (n_jobs = 2)").node
    assert isinstance(m, MaterializeGrid) and m.args["limit"] == 10 and m.params() == {"n_jobs": 2}
    d = parse_one("DROP GRID IF EXISTS g").node
    assert isinstance(d, DropGrid) and d.args["exists"]
    w = parse_one(
        "WHATIF FLIP LABELS (SELECT id FROM t WHERE x) MODEL knn TRAIN ON (SELECT * FROM t) "
        "EVALUATE ON (SELECT * FROM e) SLICE BY s METRIC f1"
    ).node
    assert isinstance(w, WhatIf) and w.args["op"] == "flip_labels" and w.args["slice_by"] == "s"
    r = parse_one(
        "WHATIF REWEIGHT (SELECT id, 2 AS w FROM t) BY w MODEL knn TRAIN ON (SELECT * FROM t) "
        "EVALUATE ON (SELECT * FROM e) METRIC f1"
    ).node
    assert r.args["op"] == "reweight" and r.args["weight"] == "w"


@pytest.mark.parametrize(
    ("text", "message", "at"),
    [
        (CREATE.format(design="EVERYTHING"), "expected a subset design", "EVERYTHING"),
        (CREATE.format(design="RANDOM many"), "number of subsets after RANDOM", "many"),
        (CREATE.format(design="RANDOM 3 SIZES ('a')"), "SIZES takes a list", "("),
        (CREATE.format(design="LEAVE OUT"), "expected ONE", "OUT"),
        (
            "WHATIF DELETE (SELECT 1) MODEL m TRAIN ON (q) EVALUATE ON (q) METRIC a",
            "REMOVE, ADD",
            "DELETE",
        ),
        ("MATERIALIZE GRID g LIMIT x", "number of cells after LIMIT", "x"),
    ],
)
def test_errors_point_at_the_offending_token(text, message, at):
    with pytest.raises(CfdbSyntaxError, match=message) as info:
        parse_one(text)
    assert text[info.value.start : info.value.end].startswith(at)


def test_referenced_relations_only_counts_what_selects_read():
    assert referenced_relations("SELECT * FROM g JOIN loo('g', 2) USING (x)") == [
        Relation("g"),
        Relation("loo", "", ("g",), True),
    ]
    assert referenced_relations("WITH g AS (SELECT 1) SELECT * FROM g, main.h") == [
        Relation("h", "main")
    ]
    assert referenced_relations("INSERT INTO t SELECT * FROM shapley('g')") == [
        Relation("shapley", "", ("g",), True)
    ]
    assert referenced_relations("DROP VIEW g") == []
    assert referenced_relations("DELETE FROM t WHERE a IN (SELECT b FROM u)") == [Relation("u")]
    assert referenced_relations("SELECT * FROM (SELECT * FROM inner_t) x") == [Relation("inner_t")]
    assert referenced_relations("this is not SQL ((") == []
