"""CFQL's restrictions (paper, section 3.1): each violation names the rule and its place;
random statements raise nothing but CfdbError; failed statements leave nothing behind."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cfdb
from cfdb.lang import split

PRED = "SELECT PredictionId FROM Predictions WHERE Label = 'rejected'"
GOOD = (
    f"EXPLAIN FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C, Instances I "
    "WHERE I.InstanceId = pred.InstanceId AND C.Home = I.Home AND C.Income > I.Income)"
)


@pytest.fixture
def fig(figure1):
    figure1.sql("DERIVE FEATURES")
    return figure1


@pytest.mark.parametrize(
    ("statement", "message", "at"),
    [
        (
            "FOREACH pred IN (SELECT CfId AS PredictionId FROM CFs) GENERATE (SELECT C.* FROM CFs C)",
            "Q_pred may not use CFs",
            "CFs",
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C, CFs D)",
            "self-joins of CFs",
            "CFs D",
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT I.Income FROM CFs C, Instances I)",
            "projects only CF attributes",
            "I.Income",
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C WHERE C.Income + C.Amount > 3)",
            "bare CF attribute",
            "C.Income + C.Amount",
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C WHERE C.Income IN (SELECT CfId FROM CFs))",
            "subquery of Q_CF may not use CFs",
            "CFs)",
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C WHERE C.Label = 'x')",
            "not a feature",
            "C.Label",
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C WHERE C.Income > pred.Nope)",
            "has no column 'Nope'",
            "pred.Nope",
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C LEFT JOIN Instances I ON C.Home = I.Home)",
            "inner joins",
            None,
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C GROUP BY C.Home)",
            "may not use GROUP",
            None,
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C WHERE lower(C.Home) = 'own')",
            "bare CF attribute",
            None,
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT 1 FROM Instances)",
            "must select from CFs",
            None,
        ),
        (
            "FOREACH pred IN (SELECT PredictionId, ModelId FROM Predictions) GENERATE (SELECT C.* FROM CFs C)",
            "exactly one column named PredictionId",
            "SELECT PredictionId, ModelId",
        ),
        (
            "FOREACH pred IN (SELECT 99 AS PredictionId) GENERATE (SELECT C.* FROM CFs C)",
            "99, which is not in Predictions",
            "SELECT 99",
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C) USING magic",
            "unknown generator 'magic'",
            "magic",
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C, Instances I WHERE C.Income > I.Nope)",
            "Nope",
            None,
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C, Prediction_CFs PC WHERE PC.Distance < 3)",
            "Prediction_CFs may only link",
            "PC.Distance",
        ),
        (
            f"FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C WHERE C.Income > 3",
            "unclosed parenthesis",
            None,
        ),
        (f"FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C WHERE C.Income >)", None, None),
    ],
)
def test_violations_name_the_rule_and_point_at_it(fig, statement, message, at):
    before = _counts(fig)
    script = "SELECT 1;\n" + statement
    with pytest.raises(cfdb.CfdbError, match=message) as info:
        fig.sql(script)
    err = info.value
    assert err.line is not None and err.sql is not None, err
    if at is not None:
        assert err.sql[err.start :].startswith(at), err.render()
    assert _counts(fig) == before


def _counts(db):
    return db.sql(
        "SELECT (SELECT count(*) FROM CFQueries), (SELECT count(*) FROM Conditions), "
        "(SELECT count(*) FROM CFs), (SELECT count(*) FROM Prediction_CFs)"
    ).fetchall()


def test_a_relation_not_tied_to_pred_gives_a_disjunction(fig):
    rows = fig.sql(
        f"EXPLAIN FOREACH pred IN ({PRED}) GENERATE (SELECT C.* FROM CFs C, Instances I "
        "WHERE C.Income > I.Income AND I.GroundTruth = 'accepted')"
    ).fetchall()
    # Some accepted instance's income: 60 or 80, so any income above 60.
    assert {cond for *_, cond, _ in rows} == {"Income >= 61"}


def test_null_constants_follow_sql(fig):
    fig.sql("UPDATE Instances SET Income = NULL WHERE InstanceId = 1")
    rows = fig.sql(
        "EXPLAIN FOREACH pred IN (SELECT 1 AS PredictionId) GENERATE (SELECT C.* FROM CFs C, "
        "Instances I WHERE I.InstanceId = pred.InstanceId AND NOT (C.Income > I.Income))"
    ).fetchall()
    assert rows[0][3:] == ("FALSE", "infeasible")


# -- fuzzing ---------------------------------------------------------------------------------

WORDS = [
    "FOREACH",
    "pred",
    "IN",
    "GENERATE",
    "USING",
    "WITH",
    "(",
    ")",
    ",",
    "=",
    "SELECT",
    "C.*",
    "FROM",
    "CFs",
    "C",
    "WHERE",
    "C.Income",
    ">",
    "3",
    "'own'",
    "AND",
    "OR",
    "NOT",
    "EXPLAIN",
    "Instances",
    "I",
    "I.Income",
    "Prediction_CFs",
    "PC",
    "BETWEEN",
    ";",
    "n",
    "nearest",
    "1",
    "PredictionId",
    "Predictions",
    "NULL",
    "'",
    '"',
    "--",
    "*",
]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=25))
def test_random_token_sequences_raise_only_cfdb_errors(fig, words):
    text = " ".join(words)
    try:
        split(text)
    except cfdb.CfdbError:
        return
    with contextlib.suppress(cfdb.CfdbError):
        fig.sql(text)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.integers(0, len(GOOD) - 1),
    st.integers(0, 12),
    st.sampled_from(["", " ", "(", ")", "C.", "'", "OR", "pred.", ",", "CFs"]),
)
def test_mutated_statements_raise_only_cfdb_errors_and_leave_nothing(fig, at, cut, insert):
    text = GOOD[:at] + insert + GOOD[at + cut :]
    before = _counts(fig)
    try:
        fig.sql(text)
    except cfdb.CfdbError:
        assert _counts(fig) == before
