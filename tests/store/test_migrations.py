"""Schema versions: fresh files, migrations from older versions, refusal of newer ones."""

from __future__ import annotations

import os

import pytest

import cfdb
from cfdb.errors import CfdbSchemaError
from cfdb.store import migrations
from cfdb.store.connection import Store

CORE_TABLES = [
    "cfdb_meta",
    "Features",
    "Models",
    "Predictions",
    "Prediction_CFs",
    "CFQueries",
    "Conditions",
    "Grids",
    "TrainSubsets",
    "TrainSubsetMembers",
    "EvalSlices",
    "GridCells",
    "Provenance",
    "ValuationRuns",
    "DataValues",
]


def test_migrations_are_numbered_from_one():
    versions = [v for v, _, _ in migrations.migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert migrations.latest_version() == len(versions) >= 2


def test_fresh_database_has_every_table_and_the_version(db):
    store = db.session.store
    for table in CORE_TABLES:
        assert store.table_exists(table), table
    assert store.table_exists("Classifiers")
    assert migrations.current_version(store) == migrations.latest_version()


def test_older_file_is_migrated_on_open(tmp_path):
    path = str(tmp_path / "old.duckdb")
    store = Store(path)
    migrations.migrate(store, target=1)
    assert migrations.current_version(store) == 1
    assert not store.table_exists("GridCells")
    store.execute("INSERT INTO Models (ModelId, Name, Kind) VALUES (7, 'kept', 'external')")
    store.close()

    with cfdb.connect(path) as db:
        store = db.session.store
        assert migrations.current_version(store) == migrations.latest_version()
        assert store.table_exists("GridCells")
        assert db.sql("SELECT Name FROM Models").fetchall() == [("kept",)]


def test_newer_file_is_refused(tmp_path):
    path = str(tmp_path / "new.duckdb")
    with cfdb.connect(path) as db:
        db.sql("UPDATE cfdb_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(CfdbSchemaError, match="newer"):
        cfdb.connect(path)
    with pytest.raises(CfdbSchemaError, match="newer"):
        cfdb.connect(path, read_only=True)


def test_a_file_that_is_not_duckdb_is_refused_and_untouched(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("these are not the bytes of a database\n" * 10)
    before = path.read_bytes()
    with pytest.raises(CfdbSchemaError, match="not a DuckDB database"):
        cfdb.connect(str(path))
    assert path.read_bytes() == before


def test_read_only_open_does_not_migrate(tmp_path):
    path = str(tmp_path / "ro.duckdb")
    store = Store(path)
    migrations.migrate(store, target=1)
    store.close()
    with cfdb.connect(path, read_only=True) as db:
        assert migrations.current_version(db.session.store) == 1
    assert os.path.exists(path)


def test_v4_file_gets_the_cf_flags_and_keeps_its_cfs(tmp_path):
    """Schema v7 adds Prediction_CFs.Optimal and CFs.Score to a file whose CFs exist."""
    path = str(tmp_path / "v4.duckdb")
    store = Store(path)
    migrations.migrate(store, target=4)
    store.execute(
        "CREATE TABLE CFs (CfId BIGINT PRIMARY KEY, income DOUBLE, ModelId INTEGER, "
        "Label VARCHAR, Generator VARCHAR)"
    )
    store.execute("INSERT INTO CFs VALUES (1, 50.0, 1, 'yes', 'nearest')")
    store.execute("INSERT INTO Prediction_CFs VALUES (3, 1, 2, 0.5, FALSE)")
    store.close()
    with cfdb.connect(path) as db:
        assert migrations.current_version(db.session.store) == migrations.latest_version()
        assert db.sql("SELECT CfId, Optimal FROM Prediction_CFs").fetchall() == [(1, None)]
        assert db.sql("SELECT income, Label, Score FROM CFs").fetchall() == [(50.0, "yes", None)]


def test_v4_file_without_cfs_migrates(tmp_path):
    path = str(tmp_path / "v4.duckdb")
    store = Store(path)
    migrations.migrate(store, target=4)
    store.close()
    with cfdb.connect(path) as db:
        columns = [c for c, *_ in db.sql("DESCRIBE Prediction_CFs").fetchall()]
        assert "Optimal" in columns
