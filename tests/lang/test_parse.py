"""Splitting scripts and parsing cfdb statements: nodes, original text, error positions."""

from __future__ import annotations

import pytest

from cfdb.errors import CfdbSyntaxError
from cfdb.lang import is_complete, nodes, split


def test_plain_sql_is_kept_verbatim_and_cfdb_statements_are_parsed():
    script = (
        "select 1 ;  -- a comment; with a semicolon\n"
        "CREATE MODEL m AS random_forest WITH (n_estimators = 10, max_depth = -5, x = (1, 'a'),"
        " flag = true, nothing = null, word = gini)\n"
        "  TRAIN ON (SELECT * FROM Instances WHERE split IN ('train', 'dev'));\n"
        "COPY FROM DATABASE a TO b"
    )
    s1, s2, s3 = split(script)
    assert s1.text == "select 1" and s1.node is None
    assert s3.text == "COPY FROM DATABASE a TO b" and s3.node is None
    node = s2.node
    assert isinstance(node, nodes.CreateModel)
    assert node.args["this"] == "m" and node.args["kind"] == "random_forest"
    assert node.params() == {
        "n_estimators": 10,
        "max_depth": -5,
        "x": (1, "a"),
        "flag": True,
        "nothing": None,
        "word": "gini",
    }
    assert node.args["train"].text == "SELECT * FROM Instances WHERE split IN ('train', 'dev')"
    start, end = node.span("kind")
    assert script[start:end] == "random_forest"
    assert script[s2.start : s2.end] == s2.text


@pytest.mark.parametrize(
    ("text", "node_type"),
    [
        ("LOAD INSTANCES FROM 'x.csv' WITH (label = 'y')", nodes.LoadInstances),
        ("LOAD INSTANCES FROM (SELECT 1)", nodes.LoadInstances),
        ("load dataset adult", nodes.LoadDataset),
        ("DERIVE FEATURES", nodes.DeriveFeatures),
        ("CREATE OR REPLACE MODEL m AS knn TRAIN ON (SELECT 1)", nodes.CreateModel),
        ("PREDICT m ON (SELECT * FROM Instances)", nodes.Predict),
        ("IMPORT MODEL m FROM 'm.skops'", nodes.ImportModel),
        ("DROP MODEL IF EXISTS m", nodes.DropModel),
    ],
)
def test_every_statement_parses(text, node_type):
    (statement,) = split(text + ";")
    assert isinstance(statement.node, node_type)


def test_duckdb_statements_that_share_a_first_word_stay_plain():
    for text in ("LOAD json", "DROP TABLE t", "CREATE TABLE t (a INT)", "IMPORT DATABASE 'x'"):
        (statement,) = split(text)
        assert statement.node is None, text


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        ("CREATE MODEL m AS rf TRAIN (SELECT 1)", "expected ON", 1, 28),
        ("select 1;\nCREATE MODEL m AS rf WITH (a = 1 b = 2) TRAIN ON (x)", "',' or '\\)'", 2, 34),
        ("PREDICT m ON (SELECT", "unclosed parenthesis", 1, 14),
        ("PREDICT", "ended early", 1, 8),
        ("CREATE MODEL m AS rf TRAIN ON (SELECT 1) extra", "unexpected 'extra'", 1, 42),
        ("CREATE MODEL m AS rf WITH (a = 1, a = 2) TRAIN ON (x)", "given twice", 1, 35),
        ("CREATE MODEL m AS rf TRAIN ON ()", "empty query", 1, 31),
    ],
)
def test_syntax_errors_point_at_the_offending_text(text, message, line, column):
    with pytest.raises(CfdbSyntaxError, match=message) as info:
        split(text)
    assert (info.value.line, info.value.column) == (line, column)
    rendered = info.value.render()
    assert "^" in rendered and f"LINE {line}:" in rendered


def test_is_complete():
    assert not is_complete("select 1")
    assert not is_complete("select ';")
    assert is_complete("select 1;")
    assert is_complete("select 1;\n")
    assert not is_complete("   ")
