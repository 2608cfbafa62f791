"""LOAD INSTANCES and feature derivation: types, domains, MAD, overrides, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cfdb.errors import CfdbCatalogError, CfdbDataError, CfdbSyntaxError
from tests.conftest import toy_frame


def _mad(x: np.ndarray) -> float:
    m = np.median(np.abs(x - np.median(x))) * 1.4826
    return 1.0 if m == 0 else float(m)


def test_load_from_dataframe_derives_every_feature(toy):
    frame = toy_frame()
    rows = toy.sql(
        "SELECT Name, Type, Domain, Min, Max, MAD, Mutable FROM Features ORDER BY Position"
    ).fetchall()
    by_name = {r[0]: r for r in rows}
    assert list(by_name) == ["income", "amount", "home", "student"]
    assert by_name["income"][1:5] == ("numeric", None, frame.income.min(), frame.income.max())
    assert by_name["income"][5] == pytest.approx(_mad(frame.income.to_numpy()))
    assert by_name["amount"][1] == "integer"
    assert by_name["amount"][5] == pytest.approx(_mad(frame.amount.to_numpy().astype(float)))
    assert by_name["home"][1:3] == ("categorical", ["mortgage", "own", "rent"])
    assert by_name["student"][1:3] == ("boolean", ["false", "true"])
    ids = toy.sql("SELECT min(InstanceId), max(InstanceId), count(*) FROM Instances").fetchall()
    assert ids == [(100, 399, 300)]
    assert toy.sql("SELECT DISTINCT split FROM Instances ORDER BY 1").fetchall() == [
        ("test",),
        ("train",),
    ]


def test_constant_column_gets_mad_one(db):
    db.load_instances(pd.DataFrame({"a": [3.0, 3.0, 3.0], "y": ["p", "q", "p"]}), label="y")
    assert db.sql("SELECT MAD FROM Features WHERE Name = 'a'").fetchall() == [(1.0,)]


def test_overrides_and_immutable(db):
    frame = pd.DataFrame({"zip": [10, 20, 10], "age": [30, 40, 50], "y": ["a", "b", "a"]})
    db.load_instances(frame, label="y", categorical=["zip"], numeric=["age"], immutable=["age"])
    assert db.last_sql.startswith("LOAD INSTANCES FROM (SELECT * FROM")
    rows = db.sql("SELECT Name, Type, Domain, Mutable FROM Features ORDER BY Position").fetchall()
    assert rows == [("zip", "categorical", ["10", "20"], True), ("age", "numeric", None, False)]


def test_default_ids_number_rows_in_order(db):
    db.load_instances(pd.DataFrame({"x": [5, 6, 7], "y": ["a", "b", "a"]}), label="y")
    assert db.sql("SELECT InstanceId, x FROM Instances ORDER BY 1").fetchall() == [
        (1, 5),
        (2, 6),
        (3, 7),
    ]
    db.load_instances(pd.DataFrame({"x": [8], "y": ["b"]}), label="y", mode="append")
    assert db.sql("SELECT max(InstanceId), count(*) FROM Instances").fetchall() == [(4, 4)]


def test_load_from_csv_file(db, tmp_path):
    path = tmp_path / "loans.csv"
    toy_frame(20).to_csv(path, index=False)
    db.sql(f"LOAD INSTANCES FROM '{path}' WITH (id = 'applicant', label = 'decision')")
    assert db.sql("SELECT count(*) FROM Instances").fetchall() == [(20,)]
    assert db.sql("SELECT count(*) FROM Features").fetchall() == [(5,)]  # part is a feature here


def test_features_option_keeps_other_columns_as_user_columns(db):
    frame = toy_frame(10)
    db.load_instances(frame, id="applicant", label="decision", features=["income", "home"])
    assert db.sql("SELECT Name FROM Features ORDER BY Position").fetchall() == [
        ("income",),
        ("home",),
    ]
    cols = [c for c, *_ in db.sql("DESCRIBE Instances").fetchall()]
    assert {"amount", "student", "part"} <= set(cols)


def test_non_numeric_values_in_a_numeric_feature(db):
    frame = pd.DataFrame({"x": ["1", "2", "abc"], "y": ["a", "b", "a"]})
    with pytest.raises(CfdbDataError, match="declared numeric but holds 'abc'") as info:
        db.load_instances(frame, label="y", numeric=["x"])
    assert "numeric = ('x')" in info.value.render()
    assert not db.session.store.table_exists("Instances")


def test_unknown_columns_and_options(db):
    frame = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
    with pytest.raises(CfdbCatalogError, match="column 'nope'"):
        db.load_instances(frame, label="nope")
    with pytest.raises(CfdbSyntaxError, match="unknown LOAD option 'colour'"):
        db.sql("LOAD INSTANCES FROM (SELECT 1 AS x) WITH (colour = 'red')")
    with pytest.raises(CfdbCatalogError, match="nope"):
        db.sql("LOAD INSTANCES FROM (SELECT * FROM nope)")


def test_second_load_needs_a_mode(toy):
    with pytest.raises(CfdbCatalogError, match="already holds 300 rows"):
        toy.load_instances(toy_frame(5), id="applicant", label="decision")
    toy.load_instances(toy_frame(5, seed=3), label="decision", mode="replace")
    assert toy.sql("SELECT count(*) FROM Instances").fetchall() == [(5,)]


def test_duplicate_ids_are_refused(db):
    with pytest.raises(CfdbDataError, match="repeats the value 1"):
        db.load_instances(pd.DataFrame({"i": [1, 1], "y": ["a", "b"]}), id="i", label="y")


def test_bundled_adult_dataset(db):
    summary = db.sql("LOAD DATASET adult").fetchall()
    assert summary == [(46033, 46033, 8, True)]
    counts = db.sql("SELECT split, GroundTruth, count(*) FROM Instances GROUP BY ALL ORDER BY ALL")
    assert counts.fetchall() == [
        ("test", "<=50K", 11543),
        ("test", ">50K", 3772),
        ("train", "<=50K", 23068),
        ("train", ">50K", 7650),
    ]
    immutable = db.sql("SELECT Name FROM Features WHERE NOT Mutable ORDER BY 1").fetchall()
    assert immutable == [("race",), ("sex",)]
