"""The CFDB paper's running example (Figures 1, 3 and 4; Examples 3.2–3.4)."""

from __future__ import annotations

import pytest

Q_PRED_FN = """SELECT P.PredictionId FROM Instances AS I, Predictions AS P
WHERE I.InstanceId = P.InstanceId AND I.GroundTruth = 'accepted' AND P.Label = 'rejected'"""

Q_CF = """SELECT C.CfId, C.Income, C.Amount, C.Home FROM CFs AS C, Prediction_CFs AS PC,
  Instances AS I
WHERE C.CfId = PC.CfId AND PC.PredictionId = pred.PredictionId
  AND I.InstanceId = pred.InstanceId AND C.Home = I.Home AND {last}"""

# Probe CFs: every combination of values around the paper's constants.
PROBES = [
    (income, amount, home)
    for income in (20, 59, 60, 61, 79, 80, 81, 101)
    for amount in (5, 19, 20, 99, 100, 101)
    for home in ("own", "rent")
]


@pytest.fixture
def explained(figure1):
    def run(last: str) -> list[tuple]:
        return figure1.sql(
            f"EXPLAIN FOREACH pred IN ({Q_PRED_FN}) GENERATE ({Q_CF.format(last=last)})"
        ).fetchall()

    return run


def _holds(db, condition: str) -> set[tuple]:
    values = ", ".join(f"({i}, {a}, '{h}')" for i, a, h in PROBES)
    rows = db.sql(
        f"SELECT Income, Amount, Home FROM (VALUES {values}) AS t(Income, Amount, Home) "
        f"WHERE {condition}"
    ).fetchall()
    return set(rows)


def test_example_3_3_conditions(figure1, explained):
    rows = explained("C.Income > I.Income")
    assert [(q, p, i, s) for q, p, i, _, s in rows] == [(1, 4, 4, "pending"), (1, 6, 2, "pending")]
    by_pred = {p: cond for _, p, _, cond, _ in rows}
    # (y_Home = own) AND (y_Income > 80) for prediction 4; (rent, > 60) for prediction 6.
    assert _holds(figure1, by_pred[4]) == _holds(figure1, "Home = 'own' AND Income > 80")
    assert _holds(figure1, by_pred[6]) == _holds(figure1, "Home = 'rent' AND Income > 60")
    stored = figure1.sql("SELECT PredictionId, Condition FROM Conditions ORDER BY 1").fetchall()
    assert stored == sorted(by_pred.items())


def test_example_3_4_conditions(figure1, explained):
    by_pred = {p: cond for _, p, _, cond, _ in explained("C.Amount < I.Amount")}
    assert _holds(figure1, by_pred[4]) == _holds(figure1, "Home = 'own' AND Amount < 100")
    assert _holds(figure1, by_pred[6]) == _holds(figure1, "Home = 'rent' AND Amount < 20")


def test_the_papers_cfs_satisfy_the_conditions(figure1, explained):
    # Example 3.6: [81, 90, own] and [101, 20, rent] qualify for predictions 4 and 6.
    by_pred = {p: cond for _, p, _, cond, _ in explained("C.Income > I.Income")}
    for pred, (income, amount, home) in {4: (81, 90, "own"), 6: (101, 20, "rent")}.items():
        hit = figure1.sql(
            f"SELECT count(*) FROM (SELECT {income} AS Income, {amount} AS Amount, "
            f"'{home}' AS Home) WHERE {by_pred[pred]}"
        ).fetchall()
        assert hit == [(1,)]


def test_binary_domain_makes_disequality_an_equality(figure1):
    rows = figure1.sql(
        f"EXPLAIN FOREACH pred IN ({Q_PRED_FN}) GENERATE (SELECT C.* FROM CFs C "
        "WHERE C.Home <> 'rent')"
    ).fetchall()
    assert {cond for *_, cond, _ in rows} == {"Home = 'own'"}


def test_unsatisfiable_condition_is_infeasible(figure1, explained):
    rows = explained("C.Income > 100 AND C.Income < 50")
    assert {s for *_, s in rows} == {"infeasible"}
    assert {cond for *_, cond, _ in rows} == {"FALSE"}
