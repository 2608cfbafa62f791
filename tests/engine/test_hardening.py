"""Every bad input gets a CfdbError, within a bound, and changes nothing (one test per case
found by the adversarial review; the fuzz suite in tests/fuzz keeps the promise held)."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
import xgboost

import cfdb
from cfdb.errors import CfdbError, CfdbOptionError, CfdbSchemaError, CfdbSyntaxError
from cfdb.models.serialize import refused_types
from cfdb.models.xgb_check import check_booster_bytes
from tests.conftest import toy_frame
from tests.fuzz.harness import snapshot

TRAIN = "(SELECT * FROM Instances WHERE split = 'train')"
PRED = "(SELECT PredictionId FROM Predictions LIMIT 2)"
QCF = "(SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId AND {})"


@pytest.fixture(scope="module")
def loans():
    db = cfdb.connect()
    db.load_instances(toy_frame(40), id="applicant", label="decision", split="part")
    db.sql(f"CREATE MODEL lr AS logistic_regression TRAIN ON {TRAIN}")
    db.sql("PREDICT lr ON (SELECT * FROM Instances)")
    yield db
    db.close()


def refused(db, text, error=CfdbError, match=None, at=None):
    """Run ``text``: it must raise ``error`` (pointing at ``at``) and change no table."""
    before = snapshot(db)
    with pytest.raises(error, match=match) as info:
        rel = db.sql(text)
        if rel is not None:
            rel.fetchall()
    assert snapshot(db) == before
    assert db.session.open_block is None
    if at is not None:
        err = info.value
        assert err.sql[err.start :].startswith(at), err.render()
    return info.value


@pytest.fixture(scope="module")
def booster_bytes():
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 3)), rng.integers(0, 2, 40)
    model = xgboost.XGBClassifier(n_estimators=2, max_depth=2).fit(x, y)
    return bytes(model.get_booster().save_raw("ubj"))


# -- options ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "option",
    [
        "seed = -1",
        "seed = inf",
        "seed = abc",
        "time_limit = 'abc'",
        "n = inf",
        "n = 1e309",
        "n_jobs = 'x'",
        "n = -1",
        "n = 0",
        "n = 2.5",
        "n = 2147483648",
        "time_limit = 0",
        "time_limit = -1",
        "n_jobs = -5",
        "distance = 'nope'",
        "n = ((((1))))",
    ],
)
def test_foreach_option_values_are_checked_at_the_option(loans, option):
    text = f"FOREACH pred IN {PRED} GENERATE {QCF.format('C.home = I.home')} WITH ({option})"
    err = refused(loans, "SELECT 1;\n" + text, CfdbOptionError, at=option)
    assert err.line == 2
    assert isinstance(err, CfdbSyntaxError) and isinstance(err, ValueError)


@pytest.mark.parametrize("number", ["2E", "1e5.5"])
def test_malformed_numbers(loans, number):
    text = f"FOREACH pred IN {PRED} GENERATE {QCF.format('1 = 1')} WITH (n = {number})"
    refused(loans, text, CfdbSyntaxError, match="malformed number", at=number)


def test_deep_nesting_and_carriage_returns_are_syntax_errors(loans):
    deep = "(" * 1000 + "1" + ")" * 1000
    refused(loans, f"FOREACH pred IN {PRED} GENERATE {QCF.format('1=1')} WITH (n = {deep})")
    refused(loans, f"FOREACH pred IN {PRED} GENERATE (SELECT C.* FROM CFs C WHERE {deep} = 1)")
    refused(loans, "SELECT 1;\r\nCREATE MODEL x AS;\r\n", CfdbSyntaxError)
    refused(loans, "SELECT 1;\rFOO BAR;\r", CfdbSyntaxError)


def test_list_literals_work_like_tuples(db):
    db.load_instances(toy_frame(30), id="applicant", label="decision", split="part")
    db.sql(
        f"CREATE MODEL a AS logistic_regression WITH (features = ['income', 'home']) "
        f"TRAIN ON {TRAIN}"
    )
    assert db.sql("SELECT FeatureNames FROM Models").fetchall() == [(["income", "home"],)]


@pytest.mark.parametrize("name", ['""', "a" * 1000])
def test_model_names_are_checked(loans, name):
    refused(loans, f"CREATE MODEL {name} AS logistic_regression TRAIN ON {TRAIN}", CfdbOptionError)


# -- bounds -----------------------------------------------------------------------------------
def test_wide_integer_range_in_qcf_is_not_enumerated(loans):
    cond = "C.amount BETWEEN -9223372036854775809 AND 30"
    out = loans.sql(f"EXPLAIN FOREACH pred IN {PRED} GENERATE {QCF.format(cond)}").fetchall()
    assert len(out) == 2


@pytest.mark.parametrize(
    ("design", "extra", "message"),
    [
        ("PERMUTATIONS 2147483648", "", "would make up to"),
        ("MARGINAL 9223372036854775808 SIZES (1, 2)", "", "would make up to"),
        ("EXHAUSTIVE", "WITH (max_units = 40)", "max_units must be"),
    ],
)
def test_grid_sizes_are_refused_before_planning(loans, design, extra, message):
    text = (
        f"CREATE GRID big TRAIN ON {TRAIN} SUBSETS {design} EVALUATE ON {TRAIN} "
        f"MODEL logistic_regression METRIC accuracy {extra}"
    )
    refused(loans, text, match=message)


def test_huge_model_parameters_are_refused(loans):
    refused(
        loans,
        f"CREATE MODEL x AS xgboost WITH (n_estimators = 2147483648) TRAIN ON {TRAIN}",
        CfdbOptionError,
        at="n_estimators",
    )


# -- stray exceptions -------------------------------------------------------------------------
def test_queries_inside_statements_and_fetch_errors(loans):
    refused(
        loans,
        "CREATE MODEL x AS logistic_regression TRAIN ON "
        "(SELECT * FROM Instances LIMIT -9223372036854775809)",
    )
    refused(loans, "CREATE MODEL y AS logistic_regression TRAIN ON (SELECT *日本 FROM Instances)")
    refused(loans, "SELECT 'a'::INT", match="Could not convert")
    rel = loans.sql("SELECT 'a'::INT AS x")  # binds; fails only when fetched
    with pytest.raises(CfdbError, match="Could not convert"):
        rel.df()


def test_params_with_several_statements(loans):
    with pytest.raises(CfdbError, match="single plain SQL statement"):
        loans.sql("SELECT ?; SELECT 2", params=[1])


# -- batches ----------------------------------------------------------------------------------
def test_failed_script_leaves_no_batch_open(loans):
    foreach = f"FOREACH pred IN {PRED} GENERATE {QCF.format('1=1')} USING nearest"
    refused(loans, f"BEGIN BATCH; {foreach}; SELECT 1; END BATCH", CfdbSyntaxError)
    assert loans.sql("SELECT 1").fetchall() == [(1,)]
    refused(loans, "END BATCH", CfdbSyntaxError, match="without BEGIN BATCH")


# -- artifacts ----------------------------------------------------------------------------------
def test_empty_and_garbage_xgboost_files(loans, tmp_path, booster_bytes):
    empty, garbage = tmp_path / "empty.ubj", tmp_path / "garbage.ubj"
    empty.write_bytes(b"")
    garbage.write_bytes(booster_bytes[:100])
    refused(loans, f"IMPORT MODEL e FROM '{empty}'", CfdbSchemaError, match="empty")
    err = refused(loans, f"IMPORT MODEL g FROM '{garbage}'", CfdbSchemaError)
    assert "\n" not in err.message


def test_empty_artifact_in_the_database(db, booster_bytes, tmp_path):
    db.load_instances(toy_frame(30), id="applicant", label="decision", split="part")
    db.sql(f"CREATE MODEL x AS xgboost WITH (n_estimators = 2) TRAIN ON {TRAIN}")
    db.sql("UPDATE Models SET Artifact = ''::BLOB WHERE Name = 'x'")
    refused(db, "PREDICT x ON (SELECT * FROM Instances)", CfdbSchemaError, match="empty")


def test_mutated_xgboost_bytes_never_reach_the_native_parser_unchecked(booster_bytes):
    # Every truncation is refused in Python (XGBoost itself aborts or spins on some).
    for cut in range(0, len(booster_bytes), 13):
        with pytest.raises(CfdbSchemaError):
            check_booster_bytes(booster_bytes[:cut])
    check_booster_bytes(booster_bytes)


def test_skops_classes_are_allow_listed():
    import sklearn.utils._testing  # noqa: F401  (so the name resolves)

    assert refused_types(["sklearn.utils._testing.TempMemmap"]) == [
        "sklearn.utils._testing.TempMemmap"
    ]
    assert refused_types(["sklearn.tree._tree.Tree", "numpy.ndarray"]) == []


def test_damaged_model_metadata(db):
    db.load_instances(toy_frame(30), id="applicant", label="decision", split="part")
    db.sql(f"CREATE MODEL m AS logistic_regression TRAIN ON {TRAIN}")
    db.sql("UPDATE Models SET Meta = json_object('version', 1)")
    refused(db, "PREDICT m ON (SELECT * FROM Instances)", CfdbSchemaError, match="damaged")


# -- files --------------------------------------------------------------------------------------
def test_directories_foreign_and_damaged_files(tmp_path):
    with pytest.raises(CfdbSchemaError, match="directory"):
        cfdb.connect(str(tmp_path))
    foreign = str(tmp_path / "foreign.duckdb")
    con = duckdb.connect(foreign)
    con.execute("CREATE TABLE Models (x INT)")
    con.close()
    with pytest.raises(CfdbSchemaError, match="not a cfdb database"):
        cfdb.connect(foreign)
    # The refused open closed its handle: another configuration opens the file.
    cfdb.connect(foreign, read_only=True).close()
    assert duckdb.connect(foreign).execute("SELECT count(*) FROM Models").fetchall() == [(0,)]

    good = str(tmp_path / "good.duckdb")
    cfdb.connect(good).close()
    con = duckdb.connect(good)
    con.execute("UPDATE cfdb_meta SET value = 'abc' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(CfdbSchemaError, match="schema_version 'abc'"):
        cfdb.connect(good)
    con = duckdb.connect(good)
    con.execute("DELETE FROM cfdb_meta")
    con.close()
    with pytest.raises(CfdbSchemaError, match="not a cfdb database"):
        cfdb.connect(good)

    full = str(tmp_path / "full.duckdb")
    db = cfdb.connect(full)
    db.sql("CREATE TABLE t AS SELECT range AS x FROM range(50000)")
    db.close()
    with open(full, "rb") as f:
        data = f.read()
    truncated = str(tmp_path / "truncated.duckdb")
    for cut in (100, 5000, 20000, len(data) // 2):
        with open(truncated, "wb") as f:
            f.write(data[:cut])
        with pytest.raises(CfdbSchemaError):
            cfdb.connect(truncated)


# -- loading --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["", "\\", "\\\\", "/", "no/such/file.csv"])
def test_load_paths_are_checked_first(loans, path):
    refused(loans, f"LOAD INSTANCES FROM '{path}' WITH (mode = 'append')", CfdbError)


def test_csv_labels_keep_their_text(db, tmp_path):
    path = tmp_path / "yn.csv"
    frame = toy_frame(20)
    frame["decision"] = np.where(frame.decision == "accepted", "yes", "no")
    frame.to_csv(path, index=False)
    db.sql(f"LOAD INSTANCES FROM '{path}' WITH (id = 'applicant', label = 'decision')")
    labels = {r[0] for r in db.sql("SELECT DISTINCT GroundTruth FROM Instances").fetchall()}
    assert labels <= {"yes", "no"} and labels


def test_null_categorical_refused_at_append(db):
    db.load_instances(toy_frame(20), id="applicant", label="decision", split="part")
    db.sql("CREATE TABLE more AS SELECT * FROM Instances LIMIT 3")
    db.sql(
        "UPDATE more SET InstanceId = InstanceId + 1000, home = NULL WHERE InstanceId = "
        "(SELECT min(InstanceId) FROM more)"
    )
    refused(
        db,
        "LOAD INSTANCES FROM (SELECT * FROM more) WITH (id = 'InstanceId', "
        "label = 'GroundTruth', mode = 'append')",
        match="'home' is NULL in the appended id",
    )


def test_options_table_covers_every_handler_option():
    from cfdb.options import SPECS

    assert "n" in SPECS["Foreach"] and "max_units" in SPECS["CreateGrid"]
    for table in SPECS.values():
        for option in table.values():
            assert option.describe()


@pytest.mark.slow
@pytest.mark.parametrize("generator", ["random", "growing_spheres"])
def test_foreach_time_limit_is_honoured_for_large_n(loans, generator):
    import time

    started = time.monotonic()
    loans.sql(
        f"FOREACH pred IN (SELECT PredictionId FROM Predictions LIMIT 1) "
        f"GENERATE {QCF.format('1 = 1')} USING {generator} WITH (n = 10000, time_limit = 1)"
    ).fetchall()
    # A bound, not a timing goal: without the deadline check this ran for tens of seconds.
    assert time.monotonic() - started < 15


def test_figure_paths_are_checked_before_any_work(loans, tmp_path):
    for path in ("", str(tmp_path), str(tmp_path / "no" / "such" / "f.png")):
        refused(loans, f"PLOT SCALING LAWS FOR GRID nope CURVES TO '{path}'", match="figure")


def test_scaling_fit_on_an_exhaustive_grid_is_a_cfdb_error(db):
    db.load_instances(toy_frame(60), id="applicant", label="decision", split="part")
    db.sql(
        "CREATE GRID e TRAIN ON (SELECT * FROM Instances WHERE split = 'train' LIMIT 5) "
        "SUBSETS EXHAUSTIVE EVALUATE ON (SELECT * FROM Instances WHERE split = 'test') "
        "MODEL logistic_regression METRIC accuracy; MATERIALIZE GRID e"
    )
    refused(db, "FIT SCALING LAWS FOR GRID e", CfdbError)


def test_errors_page_states_the_limits_in_force():
    from pathlib import Path

    from cfdb import options
    from cfdb.grid import designs

    page = (Path(__file__).parents[2] / "docs" / "errors.md").read_text(encoding="utf-8")
    for value in (
        options.MAX_CFS_PER_PREDICTION,
        options.MAX_ESTIMATORS,
        options.MAX_ITER,
        options.MAX_NEIGHBORS,
        options.MAX_SEED,
        options.MAX_NAME_LENGTH,
        designs.MAX_GRID_SUBSETS,
        designs.MAX_GRID_PAIRS,
        2**designs.MAX_EXHAUSTIVE_LIMIT,
    ):
        assert f"{value:,}" in page, value


def test_foreach_whose_result_fails_to_read_changes_nothing(loans):
    loans.sql(f"FOREACH pred IN {PRED} GENERATE {QCF.format('1 = 1')} USING nearest").fetchall()
    refused(
        loans,
        f"FOREACH pred IN {PRED} GENERATE (SELECT C.* FROM CFs C WHERE "
        "C.home IN (['a', 'b'], '')) USING nearest WITH (reuse_threshold = 0.5)",
    )


def test_interrupt_stops_long_python_work(loans):
    import threading
    import time

    timer = threading.Timer(1.0, loans.session.interrupt)
    started = time.monotonic()
    timer.start()
    with pytest.raises(CfdbError, match="interrupted"):
        loans.sql(
            "FOREACH pred IN (SELECT PredictionId FROM Predictions) "
            f"GENERATE {QCF.format('1 = 1')} USING random WITH (time_limit = 1, n = 10000)"
        ).fetchall()
    timer.join()
    # 40 predictions at up to 1 s each would take far longer than the interrupt's delay.
    assert time.monotonic() - started < 20
    assert loans.sql("SELECT 1").fetchall() == [(1,)]
