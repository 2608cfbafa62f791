"""VALUATE end to end: provenance capture, featurization, exact values of every base tuple,
the tables it writes, the Python helper, errors located in the statement, plain-DuckDB reads."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import cfdb
from cfdb.errors import CfdbCatalogError, CfdbDataError, CfdbPluginError, CfdbUnsupportedError
from tests.test_bi_compat import duckdb_cli
from tests.valuation import oracle

STAR = """
CREATE TABLE sellers (seller_id INTEGER PRIMARY KEY, region VARCHAR, rating DOUBLE);
CREATE TABLE reviews (review_id INTEGER PRIMARY KEY, seller_id INTEGER, length DOUBLE,
                      stars DOUBLE, verdict VARCHAR);
INSERT INTO sellers VALUES (1, 'north', 1.0), (2, 'south', 2.0), (3, 'north', 0.0), (4, 'east', 5);
INSERT INTO reviews VALUES
  (10, 1, 1, 0, 'ok'), (11, 1, 2, 1, 'bad'), (12, 2, 0, 2, 'ok'), (13, 2, 1, 1, 'ok'),
  (14, 3, 2, 2, 'bad'), (15, 3, 0, 0, 'bad'), (16, 1, 1, 2, 'ok'), (17, 9, 2, 0, 'ok');
CREATE TABLE holdout (length DOUBLE, stars DOUBLE, rating DOUBLE, verdict VARCHAR, grp VARCHAR);
INSERT INTO holdout VALUES (1, 1, 1, 'ok', 'a'), (2, 0, 0, 'bad', 'a'), (0, 2, 2, 'ok', 'b'),
  (2, 2, 0, 'bad', 'b'), (1, 0, 1, 'bad', 'b');
"""


@pytest.fixture
def star(db):
    db.sql(STAR)
    return db


def values(db, run: int) -> dict[tuple[str, int], float]:
    rows = db.sql(f"SELECT Relation, TupleId, Value FROM DataValues WHERE RunId = {run}").fetchall()
    return {(r, t): v for r, t, v in rows}


def test_map_values_of_every_tuple_equal_enumeration(star):
    out = star.sql(
        "VALUATE (SELECT review_id, length, stars, verdict FROM reviews WHERE review_id < 17) "
        "EVALUATE ON (SELECT * FROM holdout) USING knn_shapley "
        "WITH (k = 3, label = 'verdict', features = ('length', 'stars'), transformer = 'none')"
    ).fetchall()
    assert out[0][:7] == (1, "knn_shapley", "accuracy", "map", 7, 5, 8)
    got = values(star, 1)
    assert got[("reviews", 17)] == 0.0  # filtered out: a null player
    x = star.sql("SELECT length, stars FROM reviews WHERE review_id < 17 ORDER BY review_id")
    train = np.array(x.fetchall(), dtype=float)
    labels = np.array([1, 0, 1, 1, 0, 0, 1])  # classes sort as ('bad', 'ok')
    hold = np.array(star.sql("SELECT length, stars FROM holdout").fetchall(), dtype=float)
    y_val = np.array([1, 0, 1, 0, 0])
    expected = oracle.shapley_by_enumeration(
        train,
        labels,
        [[frozenset([i])] for i in range(7)],
        7,
        hold,
        oracle.accuracy(y_val),
        2,
        3,
        "soft",
    )
    np.testing.assert_allclose([got[("reviews", 10 + i)] for i in range(7)], expected, atol=1e-12)
    run = star.sql("SELECT UtilityAll, Pipeline, HigherIsBetter, Params FROM ValuationRuns")
    utility_all, pipeline, higher, params = run.fetchall()[0]
    assert sum(got.values()) == pytest.approx(utility_all) and pipeline == "map" and higher
    params = json.loads(params)
    assert params["classes"] == ["bad", "ok"] and params["features"] == ["length", "stars"]
    assert star.sql("SELECT count(*), max(Monomial) FROM Provenance").fetchall() == [(7, 0)]


def test_join_values_cover_fact_and_dimension_tuples(star):
    out = star.sql(
        "VALUATE (SELECT r.length, r.stars, s.rating, r.verdict FROM reviews r "
        "JOIN sellers s ON r.seller_id = s.seller_id) "
        "EVALUATE ON (SELECT * FROM holdout) USING knn_shapley "
        "WITH (k = 1, label = 'verdict', transformer = 'none') UTILITY accuracy"
    ).fetchall()
    assert out[0][3:7] == ("join", 7, 5, 12)  # 8 reviews + 4 sellers
    got = values(star, 1)
    assert got[("sellers", 4)] == 0.0 and got[("reviews", 17)] == 0.0  # nothing joins them
    rows = star.sql(
        "SELECT r.review_id, s.seller_id, r.length, r.stars, s.rating, r.verdict FROM reviews r "
        "JOIN sellers s ON r.seller_id = s.seller_id ORDER BY r.review_id"
    ).fetchall()
    facts = [r[0] for r in rows]
    dims = sorted({r[1] for r in rows})
    var = {("reviews", f): i for i, f in enumerate(facts)}
    var.update({("sellers", d): len(facts) + i for i, d in enumerate(dims)})
    train = np.array([r[2:5] for r in rows], dtype=float)
    labels = np.array([0 if r[5] == "bad" else 1 for r in rows])
    monomials = [[frozenset([var[("reviews", r[0])], var[("sellers", r[1])]])] for r in rows]
    hold = np.array(star.sql("SELECT length, stars, rating FROM holdout").fetchall(), dtype=float)
    expected = oracle.shapley_by_enumeration(
        train,
        labels,
        monomials,
        len(var),
        hold,
        oracle.accuracy(np.array([1, 0, 1, 0, 0])),
        2,
        1,
        "soft",
    )
    for key, i in var.items():
        assert got[key] == pytest.approx(expected[i], abs=1e-10), key
    prov = star.sql("SELECT count(*), count(DISTINCT RowId) FROM Provenance").fetchall()
    assert prov == [(14, 7)]
    row_values = star.sql("SELECT Provenance FROM row_values(1) WHERE RowId = 0").fetchall()
    assert row_values == [("reviews:10 * sellers:1",)]


def test_fork_by_augmentation_keys_rowids_and_text_keys(db):
    db.sql(
        "CREATE TABLE pts (x DOUBLE, y VARCHAR); "
        "INSERT INTO pts VALUES (0, 'a'), (1, 'b'), (2, 'a'), (3, 'b'); "
        "CREATE TABLE named (name VARCHAR PRIMARY KEY, x DOUBLE, y VARCHAR); "
        "INSERT INTO named VALUES ('p', 0, 'a'), ('q', 2, 'b')"
    )
    out = db.sql(
        "VALUATE (SELECT x, y FROM pts UNION ALL SELECT x + 0.25, y FROM pts) "
        "EVALUATE ON (SELECT 0.5 AS x, 'a' AS y UNION ALL SELECT 2.6, 'b') "
        "USING knn_shapley WITH (k = 2, label = 'y', knn_utility = 'vote', transformer = 'none')"
    ).fetchall()
    assert out[0][3:7] == ("fork", 8, 2, 4)
    assert sorted(db.sql("SELECT TupleId FROM DataValues").fetchall()) == [(0,), (1,), (2,), (3,)]
    db.sql(
        "VALUATE (SELECT x, y FROM named) EVALUATE ON (SELECT 0.1 AS x, 'a' AS y) "
        "USING knn_shapley WITH (k = 1, label = 'y', transformer = 'none')"
    )
    keys = db.sql("SELECT TupleKey, Value FROM DataValues WHERE RunId = 2 ORDER BY TupleId")
    assert keys.fetchall() == [("p", 1.0), ("q", 0.0)]


def test_default_features_featurizer_views_and_equalized_odds(star):
    star.sql("CREATE VIEW labelled AS SELECT * FROM reviews WHERE seller_id < 9")
    star.sql(
        "VALUATE (SELECT v.*, s.region FROM labelled v JOIN sellers s USING (seller_id)) "
        "EVALUATE ON (SELECT h.*, 'north' AS region, 5 AS seller_id FROM holdout h) "
        "USING knn_shapley WITH (k = 3, label = 'verdict', sensitive = 'grp', positive = 'ok') "
        "UTILITY equalized_odds"
    )
    params, pipeline, higher, total = star.sql(
        "SELECT Params, Pipeline, HigherIsBetter, UtilityAll FROM ValuationRuns"
    ).fetchall()[0]
    params = json.loads(params)
    # keys (review_id, seller_id) and the label are not features
    assert params["features"] == ["length", "stars", "region"]
    assert params["transformer"] == "cfdb Featurizer" and pipeline == "join" and not higher
    assert params["utility"]["rate"] in ("tpr", "fpr")
    assert sum(values(star, 1).values()) == pytest.approx(total)
    ranked = star.sql("SELECT Relation, Benefit, Value, Rank FROM data_values(1)").fetchall()
    assert all(b == -v for _, b, v, _ in ranked)


def test_python_helper_with_a_sparse_text_transformer(db):
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer

    db.sql(
        "CREATE TABLE docs (id INTEGER PRIMARY KEY, body VARCHAR, topic VARCHAR); "
        "INSERT INTO docs VALUES (1, 'cheap pills now', 'spam'), (2, 'meeting at noon', 'ham'), "
        "(3, 'cheap cheap offer', 'spam'), (4, 'lunch at noon', 'ham'), (5, 'pills offer', 'spam')"
    )
    summary = db.valuate(
        "SELECT * FROM docs WHERE id < 5",
        "SELECT * FROM docs WHERE id = 5",
        features=["body"],
        transformer=ColumnTransformer([("tfidf", TfidfVectorizer(), "body")]),
        label="topic",
        k=1,
    ).fetchall()
    assert "transformer = '__cfdb_transformer_" in db.last_sql
    assert summary[0][3] == "map"
    got = values(db, 1)
    assert got[("docs", 5)] == 0.0 and sum(got.values()) == pytest.approx(1.0)
    assert max(got, key=got.get) in {("docs", 1), ("docs", 3)}


@pytest.mark.parametrize(
    ("statement", "error", "message", "pointed"),
    [
        (
            "VALUATE (SELECT seller_id, count(*) AS n, 'x' AS verdict FROM reviews GROUP BY 1) "
            "EVALUATE ON (SELECT * FROM holdout) USING knn_shapley",
            CfdbUnsupportedError,
            "GROUP BY aggregates",
            "GROUP BY",
        ),
        (
            "VALUATE (SELECT a.length, a.verdict FROM reviews a JOIN reviews b "
            "ON a.seller_id = b.seller_id) EVALUATE ON (SELECT * FROM holdout) "
            "USING knn_shapley WITH (label = 'verdict')",
            CfdbUnsupportedError,
            "relation with itself",
            "SELECT a.length",
        ),
        (
            "VALUATE (SELECT * FROM reviews) EVALUATE ON (SELECT * FROM holdout) "
            "USING knn_shapley WITH (label = 'verdict', kk = 3)",
            CfdbDataError,
            "unknown option 'kk'",
            "kk = 3",
        ),
        (
            "VALUATE (SELECT * FROM reviews) EVALUATE ON (SELECT * FROM holdout) "
            "USING knn_shapley WITH (label = 'verdict', features = ('seller_id'))",
            CfdbDataError,
            "not a column of the validation query",
            "features",
        ),
        (
            "VALUATE (SELECT * FROM reviews) EVALUATE ON (SELECT * FROM holdout) "
            "USING knn_shapley WITH (label = 'verdict') UTILITY equalized_odds",
            CfdbDataError,
            "needs sensitive",
            "equalized_odds",
        ),
        (
            "VALUATE (SELECT * FROM reviews) EVALUATE ON (SELECT * FROM holdout) "
            "USING knn_shapley WITH (label = 'verdict') UTILITY fnr",
            CfdbDataError,
            "positive label",
            "fnr",
        ),
        (
            "VALUATE (SELECT * FROM reviews) EVALUATE ON (SELECT * FROM holdout) USING magic",
            CfdbPluginError,
            "unknown valuation method 'magic'",
            "magic",
        ),
        (
            "VALUATE (SELECT * FROM reviewz) EVALUATE ON (SELECT * FROM holdout) USING knn_shapley",
            CfdbCatalogError,
            "reviewz",
            "r",
        ),
        (
            "VALUATE (SELECT * FROM reviews) EVALUATE ON (SELECT * FROM holdout) "
            "USING knn_shapley WITH (k = 2)",
            CfdbDataError,
            "no label column 'GroundTruth'",
            "SELECT * FROM reviews",
        ),
    ],
)
def test_errors_point_at_the_culprit_and_leave_nothing_behind(
    star, statement, error, message, pointed
):
    script = "SELECT 1;\n" + statement
    with pytest.raises(error, match=message) as info:
        star.sql(script)
    err = info.value
    assert err.sql == script and err.start is not None
    assert script[err.start : err.end].startswith(pointed)
    assert star.sql("SELECT count(*) FROM ValuationRuns").fetchall() == [(0,)]
    assert star.sql("SELECT count(*) FROM DataValues").fetchall() == [(0,)]


def test_plain_duckdb_reads_runs_and_compares_methods(tmp_path):
    path = str(tmp_path / "v.duckdb")
    with cfdb.connect(path) as db:
        db.sql(STAR)
        for kind in ("soft", "vote"):
            db.sql(
                "VALUATE (SELECT r.*, s.rating FROM reviews r JOIN sellers s USING (seller_id)) "
                "EVALUATE ON (SELECT * FROM holdout) USING knn_shapley "
                f"WITH (k = 3, label = 'verdict', knn_utility = '{kind}')"
            )
        expected = db.sql("SELECT * FROM value_agreement(1, 2)").fetchall()
        ranks = db.sql("SELECT count(*) FROM data_values(2) WHERE Rank = 1").fetchall()
    result = subprocess.run(
        [
            duckdb_cli(),
            "-readonly",
            "-json",
            path,
            "-c",
            "SELECT * FROM value_agreement(1, 2); SELECT count(*) AS n FROM data_values(2) "
            "WHERE Rank = 1; SELECT count(*) AS n FROM row_values(1)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert '"Relation":"reviews"' in result.stdout.replace(" ", "")
    assert len(expected) == 2 and expected[0][1] == 8 and ranks[0][0] >= 2


@pytest.mark.slow
def test_label_repair_example_runs_every_method():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    import label_repair

    args = label_repair.parser().parse_args(
        [
            "--train",
            "80",
            "--valid",
            "60",
            "--test",
            "300",
            "--step",
            "0.25",
            "--tmc-permutations",
            "2",
            "--k",
            "5",
        ]
    )
    curves = label_repair.run(args)
    assert [c.method for c in curves] == ["random", "knn", "knn_interactive", "tmc"]
    finals = {round(c.accuracy[-1], 12) for c in curves}
    assert len(finals) == 1  # every label repaired: the same model in the end
    for c in curves:
        assert c.examined == [0.0, 0.25, 0.5, 0.75, 1.0] and c.found[-1] == 1.0
        assert all(a <= b for a, b in zip(c.found, c.found[1:]))
