"""The lint that keeps calls to cfdb's SQL functions out of stored views and macros."""

from __future__ import annotations

import pytest

from cfdb.store.functions import calls_in, calls_in_definition


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("CREATE VIEW v AS SELECT predict('rf', I) FROM Instances I", ("VIEW", ["predict"])),
        (
            "create or replace view v as select PREDICT_PROBA (x) from t",
            ("VIEW", ["predict_proba"]),
        ),
        ("-- scores\nCREATE MACRO d(a, b) AS cf_distance(a, b)", ("MACRO", ["cf_distance"])),
        ("CREATE VIEW v AS SELECT * FROM counterfactuals('rf', 7)", ("VIEW", ["counterfactuals"])),
        ("CREATE TEMP VIEW v AS SELECT predict('rf', I) FROM Instances I", None),
        ("CREATE TEMPORARY MACRO d(a) AS cf_distance(a, a)", None),
        ("CREATE TABLE t AS SELECT predict('rf', I) FROM Instances I", None),
        ("CREATE VIEW v AS SELECT 'predict(' AS s", None),
        ("CREATE VIEW v AS SELECT predicted(x) FROM t", None),
        ("CREATE VIEW v AS SELECT t.predict (x) FROM t", None),
        ("SELECT predict('rf', I) FROM Instances I", None),
    ],
)
def test_stored_definitions_calling_functions_are_found(sql, expected):
    assert calls_in_definition(sql) == expected


def test_calls_in_lists_each_function_once():
    sql = "SELECT predict('a', r), predict('b', r), satisfies(h, r), cf_distance(r, r)"
    assert calls_in(sql) == ["predict", "satisfies", "cf_distance"]
