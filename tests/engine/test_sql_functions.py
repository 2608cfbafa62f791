"""cfdb's SQL functions: predict, predict_proba, predict_value, cf_distance, satisfies, the
table-valued counterfactuals / whatif_remove / knn_shapley, cfdb.install on a user's own
DuckDB connection, and the lint that keeps them out of stored views."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

import cfdb
from cfdb.errors import (
    CfdbCatalogError,
    CfdbDataError,
    CfdbPluginError,
    CfdbUnsupportedError,
)
from cfdb.generators.distance import distance, pairwise
from cfdb.models import MODEL_KINDS, REGRESSION_KINDS
from tests.conftest import toy_frame

TRAIN = "SELECT * FROM Instances WHERE split = 'train'"
SMALL = {
    "random_forest": "WITH (n_estimators = 3, max_depth = 3) ",
    "gradient_boosting": "WITH (n_estimators = 5, max_depth = 2) ",
    "hist_gradient_boosting": "WITH (max_iter = 5) ",
    "xgboost": "WITH (n_estimators = 5, max_depth = 2) ",
    "mlp": "WITH (max_iter = 50) ",
}
REGRESSION_FEATURES = "features = (income, home, student), label = 'amount'"
SMALL_REGRESSION = {
    "random_forest_regressor": "n_estimators = 3, max_depth = 3, ",
    "gradient_boosting_regressor": "n_estimators = 5, max_depth = 2, ",
    "xgboost_regressor": "n_estimators = 5, max_depth = 2, ",
}


def _model_sql(kind: str) -> str:
    if kind in REGRESSION_KINDS.names():
        params = f"WITH ({SMALL_REGRESSION.get(kind, '')}{REGRESSION_FEATURES}) "
    else:
        params = SMALL.get(kind, "")
    return f'CREATE MODEL "{kind}" AS {kind} {params}TRAIN ON ({TRAIN})'


#: XGBoost's import and start-up take seconds here: its kinds are tested in the slow set.
SLOW_KINDS = {"xgboost", "xgboost_regressor"}


def _kinds(names):
    return [pytest.param(k, marks=pytest.mark.slow) if k in SLOW_KINDS else k for k in names]


@pytest.fixture(scope="module")
def models():
    """One tiny model of every kind (XGBoost's when first asked), each with its PREDICT
    results stored."""
    db = cfdb.connect()
    db.load_instances(toy_frame(), id="applicant", label="decision", split="part")
    for kind in [*MODEL_KINDS.names(), *REGRESSION_KINDS.names()]:
        if kind not in SLOW_KINDS:
            _add(db, kind)
    yield db
    db.close()


def _add(db, kind):
    if not db.sql("SELECT count(*) FROM Models WHERE Name = ?", [kind]).fetchall()[0][0]:
        db.sql(_model_sql(kind))
        db.sql(f'PREDICT "{kind}" ON (SELECT * FROM Instances)')


def _errors(db, sql):
    """Run ``sql`` as a non-last statement, so cfdb reads it and wraps its errors."""
    return db.execute(sql + "; SELECT 1")


@pytest.mark.parametrize("kind", _kinds(MODEL_KINDS.names()))
def test_predict_and_predict_proba_equal_predict_statement(models, kind):
    _add(models, kind)
    rows = models.sql(
        "SELECT P.Label, P.Score, predict(M.Name, I), predict_proba(M.Name, I), "
        "predict_proba(M.Name, I, P.Label) FROM Instances I JOIN Predictions P USING "
        "(InstanceId) JOIN Models M USING (ModelId) WHERE M.Name = ? ORDER BY InstanceId",
        [kind],
    ).fetchall()
    assert len(rows) == 300
    for label, score, predicted, proba, proba_of_label in rows:
        assert predicted == label
        assert proba == pytest.approx(score, rel=1e-12, abs=1e-15)
        assert proba_of_label == proba


@pytest.mark.parametrize("kind", _kinds(REGRESSION_KINDS.names()))
def test_predict_value_equals_predict_statement(models, kind):
    _add(models, kind)
    rows = models.sql(
        "SELECT P.Score, predict_value(M.Name, I), predict(M.Name, I) FROM Instances I "
        "JOIN Predictions P USING (InstanceId) JOIN Models M USING (ModelId) "
        "WHERE M.Name = ? ORDER BY InstanceId",
        [kind],
    ).fetchall()
    assert len(rows) == 300
    for score, value, text in rows:
        assert value == pytest.approx(score, rel=1e-12, abs=1e-12)
        assert float(text) == value  # predict gives the value as exact text, as CFs.Label


def test_many_batches_and_models_per_batch_match_the_model_on_numpy(models):
    # 6,000 rows span three of DuckDB's 2,048-row batches; two models alternate per row.
    from cfdb.engine.handlers.models import columns_of, load_model

    sql = (
        "SELECT g.k, struct_update(I, income := I.income + g.k % 7, amount := "
        "I.amount + g.k % 5) AS r FROM range(20) g(k), Instances I"
    )
    data = models.sql(f"SELECT k, unnest(r) FROM ({sql}) ORDER BY ALL").to_arrow_table()
    got = models.sql(
        f"SELECT k, unnest(r), predict(CASE WHEN k % 2 = 0 THEN 'logistic_regression' "
        f"ELSE 'random_forest' END, r) AS p, predict_proba('knn', r) AS q FROM ({sql}) "
        "ORDER BY ALL"
    ).fetchnumpy()
    assert data.num_rows == 6000
    columns = columns_of(data)
    even = columns["k"] % 2 == 0
    for name, mask in (("logistic_regression", even), ("random_forest", ~even)):
        model = load_model(models.session, name)[1]
        expected = model.predict({k: v[mask] for k, v in columns.items()})
        assert list(got["p"][mask]) == list(expected)
    knn = load_model(models.session, "knn")[1]
    assert np.allclose(got["q"], knn.predict_proba(columns).max(axis=1), rtol=0, atol=1e-15)


def test_rows_as_literals_struct_pack_and_struct_update(models):
    literal = "{'income': 40.0, 'amount': 20, 'home': 'own', 'student': false}"
    packed = "struct_pack(income := 40.0, amount := 20, home := 'own', student := false)"
    rows = models.sql(
        f"SELECT predict('random_forest', {literal}), predict('random_forest', {packed}), "
        f"predict_proba('random_forest', {literal}, 'accepted') + "
        f"predict_proba('random_forest', {literal}, 'rejected')"
    ).fetchall()
    assert rows[0][0] == rows[0][1] and rows[0][2] == pytest.approx(1.0)
    flips = models.sql(
        "SELECT count(*) FILTER (WHERE predict('logistic_regression', I) <> "
        "predict('logistic_regression', struct_update(I, income := I.income + 60))) "
        "FROM Instances I"
    ).fetchall()[0][0]
    assert 0 < flips < 300
    assert models.sql(
        "SELECT predict('ridge', NULL::STRUCT(income DOUBLE, home VARCHAR, student BOOLEAN))"
    ).fetchall() == [(None,)]


@pytest.mark.parametrize(
    "sql, error, text",
    [
        (
            "SELECT predict('nope', I) FROM Instances I",
            CfdbCatalogError,
            "model 'nope' does not exist",
        ),
        (
            "SELECT predict('random_forest', {'income': 1.0, 'home': 'own'})",
            CfdbDataError,
            "needs features 'amount', 'student', which the row lacks",
        ),
        (
            "SELECT predict('random_forest', struct_update(I, income := 'high')) FROM Instances I",
            CfdbDataError,
            "feature 'income' of model 'random_forest' is numeric, but the row gives VARCHAR",
        ),
        (
            "SELECT predict('random_forest', struct_update(I, home := NULL)) FROM Instances I",
            CfdbDataError,
            "feature 'home' of model 'random_forest' is NULL",
        ),
        (
            "SELECT predict_proba('ridge', I) FROM Instances I",
            CfdbUnsupportedError,
            "model 'ridge' is a regression model and has no probabilities",
        ),
        (
            "SELECT predict_value('knn', I) FROM Instances I",
            CfdbUnsupportedError,
            "model 'knn' is a classifier",
        ),
        (
            "SELECT predict_proba('knn', I, 'maybe') FROM Instances I",
            CfdbDataError,
            "'maybe' is not a label of model 'knn'",
        ),
        ("SELECT predict('knn', 3)", CfdbDataError, "takes a row as a STRUCT"),
    ],
)
def test_bad_input_is_a_cfdb_error_in_duckdbs_message_too(models, sql, error, text):
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        _errors(models, sql)
    # Fetched from the returned relation, the error is the same CfdbError class ...
    with pytest.raises(error) as info:
        models.sql(sql).fetchall()
    assert text in str(info.value)
    # ... and on a plain DuckDB connection, DuckDB's message keeps cfdb's class and text.
    with pytest.raises(duckdb.Error) as raw:
        models.session.store.con.sql(sql).fetchall()
    assert error.__name__ + ": " in str(raw.value) and text in str(raw.value)


def test_a_wrong_number_of_arguments_is_refused_when_binding(models):
    with pytest.raises(CfdbCatalogError, match=r"predict\(\) does not support the supplied"):
        models.sql("SELECT predict('knn') FROM Instances I")


def test_a_model_replaced_by_sql_or_statement_is_reloaded(models):
    models.sql(f"CREATE MODEL tmp AS logistic_regression TRAIN ON ({TRAIN})")
    probe = "SELECT predict_proba('tmp', I) FROM Instances I WHERE InstanceId = 100"
    first = models.sql(probe).fetchall()
    models.sql(
        "CREATE OR REPLACE MODEL tmp AS logistic_regression WITH (features = (income)) "
        f"TRAIN ON ({TRAIN})"
    )
    assert models.sql(probe).fetchall() != first
    models.sql("DELETE FROM Models WHERE Name = 'tmp'")
    with pytest.raises(CfdbCatalogError, match="model 'tmp' does not exist"):
        _errors(models, probe)


def test_cf_distance_matches_the_generators_distance(models):
    from cfdb.store.catalog import read_features

    features = read_features(models.session.store)
    pairs = models.sql(
        "SELECT a.InstanceId, b.InstanceId, cf_distance(a, b), cf_distance(a, b, 'l0'), "
        "cf_distance(a, b, metric := 'L1') FROM Instances a, Instances b "
        "WHERE b.InstanceId = a.InstanceId + 1 + a.InstanceId % 13 ORDER BY ALL"
    ).fetchall()
    data = models.sql("SELECT * FROM Instances ORDER BY InstanceId").df()
    by_id = {int(r.InstanceId): r for r in data.itertuples()}
    assert len(pairs) > 200
    for a, b, tabular, l0, l1 in pairs:
        x = {f.name: getattr(by_id[a], f.name) for f in features}
        y = {f.name: np.array([getattr(by_id[b], f.name)]) for f in features}
        for kind, got in (("tabular", tabular), ("l0", l0), ("l1", l1)):
            assert got == pytest.approx(distance(kind, x, y, features)[0], rel=1e-12)
    # The vectorized pairs version agrees with the one-instance version.
    cols = {f.name: data[f.name].to_numpy() for f in features}
    shifted = {k: np.roll(v, 1) for k, v in cols.items()}
    for kind in ("tabular", "l0", "l1"):
        expected = [
            distance(
                kind,
                {k: v[i] for k, v in cols.items()},
                {k: v[i : i + 1] for k, v in shifted.items()},
                features,
            )[0]
            for i in range(len(data))
        ]
        assert np.allclose(pairwise(kind, cols, shifted, features), expected, rtol=1e-12)


def test_cf_distance_errors(models):
    with pytest.raises(cfdb.CfdbError, match="feature 'income' is NULL"):
        models.sql(
            "SELECT cf_distance(I, struct_update(I, income := NULL)) FROM Instances I"
        ).fetchall()
    with pytest.raises(cfdb.CfdbError, match="unknown metric l2"):
        models.sql("SELECT cf_distance(I, I, 'l2') FROM Instances I").fetchall()
    with pytest.raises(CfdbCatalogError, match='Could not find key "home"'):
        _errors(models, "SELECT cf_distance({'amount': 1}, {'amount': 2})")


def test_stored_views_may_not_call_the_functions(models, tmp_path):
    for sql in (
        "CREATE VIEW v AS SELECT predict('knn', I) AS p FROM Instances I",
        "CREATE OR REPLACE VIEW v AS SELECT * FROM counterfactuals('knn', 1)",
        "CREATE MACRO m(x) AS cf_distance(x, x)",
    ):
        with pytest.raises(CfdbUnsupportedError, match="cannot call"):
            models.sql(sql)
    models.sql("CREATE TEMP VIEW tv AS SELECT predict('knn', I) AS p FROM Instances I")
    models.sql("CREATE VIEW plain AS SELECT 'predict(' AS s, InstanceId FROM Instances")
    assert models.sql("SELECT count(*) FROM tv").fetchall() == [(300,)]
    from cfdb.store.functions import stored_calls

    con = models.session.store.con
    assert stored_calls(con) == []
    con.execute("CREATE VIEW sneaky AS SELECT predict('knn', I) FROM Instances I").fetchall()
    assert stored_calls(con) == [("sneaky", ["predict"])]
    con.execute("DROP VIEW sneaky; DROP VIEW plain; DROP VIEW tv").fetchall()


def test_install_on_a_users_own_connection(tmp_path):
    path = str(tmp_path / "mine.duckdb")
    with cfdb.connect(path) as db:
        db.load_instances(toy_frame(60), id="applicant", label="decision")
        db.sql("CREATE MODEL lr AS logistic_regression TRAIN ON (SELECT * FROM Instances)")
        db.sql("PREDICT lr ON (SELECT * FROM Instances)")
    con = duckdb.connect(path)
    cfdb.install(con)
    mismatches = con.execute(
        "SELECT count(*) FROM Instances I JOIN Predictions P USING (InstanceId) "
        "WHERE predict('lr', I) <> P.Label OR abs(predict_proba('lr', I) - P.Score) > 1e-12"
    ).fetchall()
    assert mismatches == [(0,)]
    assert con.execute("SELECT cf_distance(I, I) FROM Instances I LIMIT 1").fetchall() == [(0.0,)]
    con.close()
    # A fresh database gets cfdb's tables.
    fresh = duckdb.connect()
    cfdb.install(fresh)
    assert fresh.execute("SELECT count(*) FROM Models").fetchall() == [(0,)]
    with pytest.raises(duckdb.Error, match="CfdbCatalogError: model 'x' does not exist"):
        fresh.execute("SELECT predict('x', {'a': 1})").fetchall()
    fresh.close()


@pytest.fixture(scope="module")
def generated(models):
    rows = models.sql(
        "SELECT * FROM counterfactuals('logistic_regression', "
        "(SELECT list(I) FROM Instances I WHERE InstanceId IN (100, 101, 102)), n := 2)"
    ).to_arrow_table()
    return rows


def test_counterfactuals_are_stored_and_flip_the_prediction(models, generated):
    rows = generated.to_pylist()
    assert generated.column_names[:7] == [
        "PredictionId", "InstanceId", "CfId", "QueryId", "Distance", "Reused", "Label"
    ]  # fmt: skip
    assert {"income", "amount", "home", "student"} <= set(generated.column_names)
    assert {r["InstanceId"] for r in rows} <= {100, 101, 102} and rows
    stored = models.sql(
        "SELECT PC.PredictionId, PC.CfId, PC.Distance FROM Prediction_CFs PC WHERE QueryId = ? "
        "ORDER BY ALL",
        [rows[0]["QueryId"]],
    ).fetchall()
    assert stored == sorted((r["PredictionId"], r["CfId"], r["Distance"]) for r in rows)
    flipped = models.sql(
        "SELECT bool_and(predict('logistic_regression', C) <> P.Label) FROM CFs C "
        "JOIN Prediction_CFs PC USING (CfId) JOIN Predictions P USING (PredictionId) "
        "WHERE PC.QueryId = ?",
        [rows[0]["QueryId"]],
    ).fetchall()
    assert flipped == [(True,)]


def test_counterfactuals_again_reuse_what_is_stored(models, generated):
    before = models.sql("SELECT count(*) FROM CFs").fetchall()
    again = models.sql(
        "SELECT * FROM counterfactuals('logistic_regression', "
        "'SELECT * FROM Instances WHERE InstanceId = 100')"
    ).to_arrow_table()
    assert models.sql("SELECT count(*) FROM CFs").fetchall() == before
    first = {r["CfId"] for r in generated.to_pylist() if r["InstanceId"] == 100}
    assert set(again.column("CfId").to_pylist()) <= first


def test_satisfies_agrees_with_the_stored_condition(models, generated):
    models.sql(
        "FOREACH pred IN (SELECT P.PredictionId FROM Predictions P JOIN Models M USING "
        "(ModelId) WHERE M.Name = 'logistic_regression' AND P.InstanceId IN (103, 104, 105)) "
        "GENERATE (SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId "
        "AND C.home = I.home AND C.income > I.income) USING growing_spheres"
    ).fetchall()
    rows = models.sql(
        "SELECT satisfies(K.Hash, C), satisfies(K.Hash, struct_update(C, income := 0.0)), "
        "K.Condition, C.CfId FROM Conditions K JOIN Prediction_CFs PC USING (QueryId, "
        "PredictionId) JOIN CFs C USING (CfId)"
    ).fetchall()
    assert rows and all(ok for ok, _, _, _ in rows)
    assert {changed for _, changed, condition, _ in rows if "income" in condition} == {False}
    for _, changed, condition, cf_id in rows:
        # The slow twin: the condition's own SQL text over the changed row.
        (expected,) = models.sql(
            f"SELECT {condition} FROM (SELECT * REPLACE (0.0 AS income) FROM CFs "
            f"WHERE CfId = {cf_id})"
        ).fetchall()[0]
        assert changed == expected
    with pytest.raises(CfdbCatalogError, match="no condition has the hash"):
        _errors(models, "SELECT satisfies('0000', {'income': 1.0})")


def test_whatif_remove_and_knn_shapley_write_through_the_statements(models):
    removed = "SELECT * FROM Instances WHERE split = 'train' AND home = 'own'"
    test = "SELECT * FROM Instances WHERE split = 'test'"

    def text(query):
        return "'" + query.replace("'", "''") + "'"

    got = models.sql(
        f"SELECT * FROM whatif_remove({text(removed)}, 'logistic_regression', {text(TRAIN)}, "
        f"{text(test)})"
    ).fetchall()
    statement = models.sql(
        f"WHATIF REMOVE ({removed}) MODEL logistic_regression "
        f"TRAIN ON ({TRAIN}) EVALUATE ON ({test}) METRIC accuracy"
    ).fetchall()
    assert [r[:5] for r in got] == [r[:5] for r in statement]
    assert statement[0][-2] is True  # the statement reused the cells the function trained
    values = models.sql(
        f"SELECT * FROM knn_shapley({text(TRAIN)}, {text(test)}, k := 3)"
    ).fetchall()
    run = values[0][0]
    stored = models.sql("SELECT Relation, TupleId, Value FROM data_values(?)", [run]).fetchall()
    assert sorted(stored) == sorted((r[1], r[2], r[5]) for r in values)
    assert len(values) == 300  # every tuple of the base relation Instances


@pytest.mark.slow
def test_the_file_opens_in_the_stock_duckdb_cli(models, tmp_path):
    from tests.test_bi_compat import _cli

    path = str(tmp_path / "cli.duckdb")
    with cfdb.connect(path) as db:
        db.load_instances(toy_frame(40), id="applicant", label="decision")
        db.sql("CREATE MODEL lr AS logistic_regression TRAIN ON (SELECT * FROM Instances)")
        db.sql("CREATE TABLE scored AS SELECT InstanceId, predict('lr', I) AS p FROM Instances I")
        db.sql("SELECT * FROM counterfactuals('lr', 'SELECT * FROM Instances LIMIT 2')").fetchall()
    result = _cli(
        path,
        "SELECT (SELECT count(*) FROM scored), (SELECT count(*) FROM CFs) > 0, "
        "(SELECT count(*) FROM duckdb_functions() WHERE function_name = 'predict')",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "40,true,0"


def test_read_only_and_released_files_keep_the_functions(tmp_path):
    path = str(tmp_path / "ro.duckdb")
    with cfdb.connect(path) as db:
        db.load_instances(toy_frame(60), id="applicant", label="decision")
        db.sql("CREATE MODEL lr AS logistic_regression TRAIN ON (SELECT * FROM Instances)")
        expected = db.sql("SELECT list(predict('lr', I) ORDER BY InstanceId) FROM Instances I")
        expected = expected.fetchall()
    with cfdb.connect(path, read_only=True) as db:
        probe = "SELECT list(predict('lr', I) ORDER BY InstanceId) FROM Instances I"
        assert db.sql(probe).fetchall() == expected
        db.release()  # the connection is reopened, with the functions, on the next statement
        assert db.sql(probe).fetchall() == expected
        assert db.sql("SELECT cf_distance(I, I) FROM Instances I LIMIT 1").fetchall() == [(0.0,)]


def test_the_shell_shows_a_functions_error_with_its_class(models):
    from cfdb.shell.core import _wrap_fetch_error

    sql = "SELECT predict('nope', {'a': 1})"
    with pytest.raises(duckdb.Error) as info:
        models.session.store.con.sql(sql).fetchall()
    err = _wrap_fetch_error(info.value, sql, 0, len(sql))
    assert isinstance(err, CfdbCatalogError)
    assert err.render().startswith("Catalog error: model 'nope' does not exist")


def test_generated_functions_follow_a_new_feature_space(db):
    db.load_instances(toy_frame(40), id="applicant", label="decision")
    pair = "{'income': 1.0, 'home': 'own'}, {'income': 3.0, 'home': 'rent'}"
    with pytest.raises(CfdbCatalogError, match="Could not find key"):
        _errors(db, f"SELECT cf_distance({pair}, 'l0')")
    frame = toy_frame(40)[["applicant", "income", "home", "decision"]]
    db.load_instances(frame, id="applicant", label="decision", mode="replace")
    assert db.sql(f"SELECT cf_distance({pair}, 'l0')").fetchall() == [(2.0,)]
    db.sql("CREATE MODEL lr AS logistic_regression TRAIN ON (SELECT * FROM Instances)")
    got = db.sql("SELECT * FROM counterfactuals('lr', 'SELECT * FROM Instances LIMIT 1')")
    assert got.columns[7:] == ["income", "home"]


def test_imported_estimators_and_one_without_probabilities(db):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.svm import LinearSVC

    frame = toy_frame(80)
    db.load_instances(frame, id="applicant", label="decision")
    features = ["income", "amount", "home"]
    for name, final in (("pipe", LogisticRegression(max_iter=500)), ("svc", LinearSVC())):
        pipe = make_pipeline(
            ColumnTransformer(
                [("oh", OneHotEncoder(handle_unknown="ignore"), ["home"])],
                remainder="passthrough",
            ),
            final,
        ).fit(frame[features], frame.decision)
        db.register_model(name, pipe, features=features)
        got = db.sql(
            f"SELECT list(predict('{name}', I) ORDER BY InstanceId) FROM Instances I"
        ).fetchall()[0][0]
        assert got == list(pipe.predict(frame.sort_values("applicant")[features]))
    db.predict("pipe")
    assert db.sql(
        "SELECT count(*) FROM Instances I JOIN Predictions P USING (InstanceId) "
        "WHERE abs(predict_proba('pipe', I) - P.Score) > 1e-12"
    ).fetchall() == [(0,)]
    with pytest.raises(CfdbUnsupportedError, match="model 'svc' does not give probabilities"):
        _errors(db, "SELECT predict_proba('svc', I) FROM Instances I")


@pytest.mark.parametrize(
    "sql, error, text",
    [
        (
            "SELECT * FROM counterfactuals('nope', 'SELECT * FROM Instances LIMIT 1')",
            CfdbCatalogError,
            "counterfactuals: model 'nope' does not exist",
        ),
        (
            "SELECT * FROM counterfactuals('knn', {'income': 1.0})",
            CfdbDataError,
            "a row needs its InstanceId",
        ),
        (
            "SELECT * FROM whatif_remove('SELECT * FROM Instances', 'no_kind', "
            "'SELECT * FROM Instances', 'SELECT * FROM Instances')",
            CfdbPluginError,
            "whatif_remove: unknown model kind 'no_kind'",
        ),
        (
            "SELECT * FROM knn_shapley('', 'SELECT * FROM Instances')",
            CfdbDataError,
            "knn_shapley: train must be a query as text",
        ),
    ],
)
def test_table_functions_bad_input(models, sql, error, text):
    with pytest.raises(error, match=text) as info:
        _errors(models, sql)
    assert "(line" not in info.value.message


def test_a_table_functions_query_may_call_the_scalar_functions(models):
    got = models.sql(
        "SELECT DISTINCT InstanceId FROM counterfactuals('logistic_regression', "
        "'SELECT * FROM Instances I WHERE predict(''logistic_regression'', I) = ''accepted'' "
        "AND InstanceId BETWEEN 100 AND 112')"
    ).fetchall()
    expected = models.sql(
        "SELECT InstanceId FROM Instances I WHERE predict('logistic_regression', I) = "
        "'accepted' AND InstanceId BETWEEN 100 AND 112"
    ).fetchall()
    assert {i for (i,) in got} <= {i for (i,) in expected} and expected
