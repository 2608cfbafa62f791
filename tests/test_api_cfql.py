"""The Python API covers CFQL and sees the caller's DataFrames, as DuckDB's client does.

``db.foreach`` / ``db.batch`` build the CFQL statements; FOREACH results name each CF's
prediction; the ``Counterfactuals`` view lines up prediction, instance, CF and what changed,
and agrees with the stored tables (the oracle: the same comparison done in pandas).
"""

from __future__ import annotations

import pyarrow as pa
import pytest

import cfdb
from tests.conftest import toy_frame

GENERATE = (
    "SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId AND C.home = I.home"
)
REJECTED = "SELECT PredictionId FROM Predictions WHERE Label = 'rejected' ORDER BY 1 LIMIT 3"


@pytest.fixture(scope="module")
def loan_db():
    db = cfdb.connect()
    db.load_instances(toy_frame(200), id="applicant", label="decision", split="part")
    db.create_model("lr", "logistic_regression", "SELECT * FROM Instances")
    db.predict("lr")
    yield db
    db.close()


def test_sql_sees_local_frames_and_tables_win(loan_db) -> None:
    people = toy_frame(10)
    arrow_people = pa.Table.from_pandas(people)  # noqa: F841 - found by name in the SQL
    assert loan_db.sql("SELECT count(*) FROM people").fetchall() == [(10,)]
    assert loan_db.sql("SELECT count(*) FROM arrow_people").fetchall() == [(10,)]
    rel = loan_db.sql("SELECT * FROM people WHERE income > ?", [0])
    assert len(rel.df()) == 10  # read after the call returned: rows were kept
    Instances = toy_frame(3)  # a table of the database with this name wins
    assert len(Instances) == 3
    assert loan_db.sql("SELECT count(*) FROM Instances").fetchall() == [(200,)]
    with pytest.raises(cfdb.CfdbError):
        loan_db.sql("SELECT * FROM nowhere_at_all")


def test_foreach_names_the_prediction_of_every_cf(loan_db) -> None:
    out = loan_db.foreach(REJECTED, GENERATE, using="growing_spheres", n=2, seed=1).df()
    assert "LIMIT 3) GENERATE (" in loan_db.last_sql and "USING growing_spheres" in loan_db.last_sql
    links = loan_db.sql(
        "SELECT CfId, PredictionId FROM Prediction_CFs WHERE QueryId = "
        "(SELECT max(QueryId) FROM CFQueries)"
    ).fetchall()
    assert sorted(zip(out.CfId, out.PredictionId, strict=True)) == sorted(links)
    view = loan_db.counterfactuals(REJECTED).df()
    assert set(view.CfId) >= set(out.CfId)
    # The oracle: compare instance and CF values feature by feature in pandas.
    inst = loan_db.table("Instances").df().set_index("InstanceId")
    cfs = loan_db.table("CFs").df().set_index("CfId")
    for row in view.itertuples():
        changed = [
            f
            for f in ("income", "amount", "home", "student")
            if inst.loc[row.InstanceId, f] != cfs.loc[row.CfId, f]
        ]
        assert list(row.Changed) == changed
        assert {f: cfs.loc[row.CfId, f] for f in ("income", "amount", "home", "student")} == row.CF


def test_batch_and_explain(loan_db) -> None:
    plan = loan_db.foreach(REJECTED, GENERATE, explain=True).fetchall()
    assert len(plan) == 3
    q = f"FOREACH pred IN ({REJECTED}) GENERATE ({GENERATE}) USING nearest"
    results = loan_db.batch([q, q], explain=True)
    assert loan_db.last_sql.startswith("EXPLAIN BEGIN BATCH;") and len(results) == 4


def test_polars_when_installed(loan_db) -> None:
    pl = pytest.importorskip("polars")
    assert isinstance(loan_db.sql("SELECT 1 AS x").pl(), pl.DataFrame)
