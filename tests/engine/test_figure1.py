"""The CFDB paper's Figure 1 database, built by hand with plain SQL (paper, section 2.2)."""

from __future__ import annotations

Q_PRED_FN = """
SELECT P.PredictionId FROM Instances AS I, Predictions AS P
WHERE I.InstanceId = P.InstanceId AND I.GroundTruth = 'accepted' AND P.Label = 'rejected'
ORDER BY 1
"""


def test_features_are_derived_from_hand_built_instances(figure1):
    rows = figure1.sql(
        "DERIVE FEATURES; SELECT Name, Type, Domain, Min, Max, MAD, Mutable FROM Features "
        "ORDER BY Position"
    ).fetchall()
    # MAD x 1.4826: Income {20, 60, 20, 80} has median 40, deviations {20,20,20,40} -> 20.
    # Amount {5, 20, 15, 100}: median 17.5, deviations {12.5, 2.5, 2.5, 82.5} -> 7.5.
    assert rows == [
        ("Income", "integer", None, 20.0, 80.0, 20 * 1.4826, True),
        ("Amount", "integer", None, 5.0, 100.0, 7.5 * 1.4826, True),
        ("Home", "categorical", ["own", "rent"], None, None, None, True),
    ]


def test_cfs_table_follows_the_features_and_takes_figure1_rows(figure1):
    figure1.sql("DERIVE FEATURES")
    columns = [c for c, *_ in figure1.sql("DESCRIBE CFs").fetchall()]
    assert columns[:4] == ["CfId", "Income", "Amount", "Home"]
    figure1.sql(
        "INSERT INTO CFs (CfId, Income, Amount, Home) VALUES (1, 81, 90, 'own'), "
        "(2, 101, 20, 'rent'), (3, 80, 90, 'own'), (4, 101, 19, 'rent');"
        "INSERT INTO Prediction_CFs (PredictionId, CfId) VALUES (4, 1), (6, 2), (4, 3), (6, 4)"
    )
    # Example 3.6: the CFs of the false negatives keep Home and raise Income.
    rows = figure1.sql(
        "SELECT PC.PredictionId, C.CfId FROM CFs C JOIN Prediction_CFs PC USING (CfId) "
        "JOIN Predictions P USING (PredictionId) JOIN Instances I USING (InstanceId) "
        "WHERE C.Home = I.Home AND C.Income > I.Income ORDER BY 1, 2"
    ).fetchall()
    assert rows == [(4, 1), (6, 2), (6, 4)]


def test_the_papers_false_negative_query(figure1):
    # Example 3.2: predictions 4 and 6 are the false negatives.
    assert figure1.sql(Q_PRED_FN).fetchall() == [(4,), (6,)]


def test_classifiers_view_gives_the_papers_names(figure1):
    rows = figure1.sql("SELECT ClassifierId, ClassifierType FROM Classifiers ORDER BY 1").fetchall()
    assert rows == [(1, "decision_tree"), (2, "decision_tree")]
    joined = figure1.sql(
        "SELECT count(*) FROM Predictions P JOIN Classifiers C ON P.ModelId = C.ClassifierId"
    ).fetchall()
    assert joined == [(8,)]


def test_a_hand_entered_model_cannot_be_run(figure1):
    import pytest

    from cfdb.errors import CfdbUnsupportedError

    with pytest.raises(CfdbUnsupportedError, match="entered by hand"):
        figure1.sql("PREDICT tree1 ON (SELECT * FROM Instances)")
