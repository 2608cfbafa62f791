"""BI compatibility: another process with the plain DuckDB CLI (the ``duckdb-cli`` package)
opens a cfdb file read-only and reads every cfdb table and view."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import cfdb
from tests.conftest import toy_frame
from tests.shell_helpers import DUCKDB_CLI


def duckdb_cli() -> str:
    # the binary itself: the duckdb-cli package's `duckdb` command is a Python wrapper
    found = str(DUCKDB_CLI) if DUCKDB_CLI.exists() else shutil.which("duckdb")
    if not found:
        pytest.fail("the duckdb CLI (PyPI package duckdb-cli) is not installed")
    return found


def _cli(path: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [duckdb_cli(), "-readonly", "-csv", path, "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_duckdb_cli_reads_every_cfdb_table_and_view(tmp_path):
    path = str(tmp_path / "bi.duckdb")
    with cfdb.connect(path) as db:
        db.load_instances(toy_frame(), id="applicant", label="decision", split="part")
        db.sql(
            "CREATE MODEL rf AS random_forest WITH (n_estimators = 3, max_depth = 3) "
            "TRAIN ON (SELECT * FROM Instances); PREDICT rf ON (SELECT * FROM Instances)"
        )
        names = [
            r[0]
            for r in db.sql(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                "UNION ALL SELECT view_name FROM duckdb_views() "
                "WHERE database_name = current_database() AND NOT internal"
            ).fetchall()
        ]
        expected = {n: db.sql(f'SELECT count(*) FROM "{n}"').fetchall()[0][0] for n in names}
    assert {"Instances", "Features", "Models", "Predictions", "CFs", "Classifiers"} <= set(names)
    # Another process, another DuckDB version, read-only: every relation counts the same.
    union = " UNION ALL ".join(f"SELECT '{n}' AS name, count(*) AS n FROM \"{n}\"" for n in names)
    result = _cli(path, union + " ORDER BY name")
    assert result.returncode == 0, result.stderr
    got = dict(line.split(",") for line in result.stdout.strip().splitlines()[1:])
    assert {k: int(v) for k, v in got.items()} == expected
    assert expected["Predictions"] == 300


def test_file_is_readable_while_the_writer_has_released_it(tmp_path):
    path = str(tmp_path / "shared.duckdb")
    db = cfdb.connect(path)
    db.sql("CREATE TABLE t AS SELECT 42 AS answer")
    db.release()
    result = _cli(path, "SELECT answer FROM t")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "42"
    # The writer goes on transparently after the reader.
    db.sql("INSERT INTO t VALUES (43)")
    assert db.sql("SELECT count(*) FROM t").fetchall() == [(2,)]
    db.close()


def test_holding_the_lock_blocks_readers_with_a_clear_error(tmp_path):
    path = str(tmp_path / "locked.duckdb")
    db = cfdb.connect(path)
    db.sql("CREATE TABLE t AS SELECT 1 AS a")
    code = (
        "import cfdb, sys\n"
        "try:\n"
        f"    cfdb.connect({path!r}, read_only=True)\n"
        "except cfdb.CfdbLockError as e:\n"
        "    print('LOCKED', e.message); sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    db.close()
    assert result.returncode == 3, result.stdout + result.stderr
    assert "locked by another process" in result.stdout
