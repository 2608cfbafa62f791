"""The ``cfdb`` command run as a separate process: exit codes, output, errors, file sharing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import cfdb
from cfdb.cli import main
from tests.shell_helpers import DUCKDB_CLI


def cfdb_cmd(
    cwd: Path, *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cfdb", *args],
        cwd=cwd,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _caret_column(stderr: str, line_prefix: str) -> tuple[str, int]:
    """The ``LINE n: ...`` line starting with ``line_prefix`` and the column of the caret under it."""
    lines = stderr.split("\n")
    i = next(k for k, line in enumerate(lines) if line.startswith(line_prefix))
    return lines[i], lines[i + 1].index("^")


def test_command_prints_a_table(tmp_path: Path) -> None:
    r = cfdb_cmd(tmp_path, "shell", "x.duckdb", "-c", "select 42 as answer, 'hi' as greeting")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.split("\n")[:6] == [
        "┌─────────┬──────────┐",
        "│  answer │ greeting │",
        "│ INTEGER │ VARCHAR  │",
        "├─────────┼──────────┤",
        "│      42 │ hi       │",
        "└─────────┴──────────┘",
    ]
    assert r.stdout.rstrip().endswith("1 row")


def test_syntax_error_exits_1_with_a_caret(tmp_path: Path) -> None:
    r = cfdb_cmd(tmp_path, "shell", "x.duckdb", "-c", "select 1;\nselect 2 as two,, 3;")
    assert r.returncode == 1
    assert r.stderr.startswith("Syntax error:")
    line, caret = _caret_column(r.stderr, "LINE 2: ")
    assert line == "LINE 2: select 2 as two,, 3;"
    assert caret == line.index(",,") + 1
    assert "Traceback" not in r.stderr
    assert re.search(r"│ +1 │", r.stdout)  # the first statement ran


def test_cfdb_syntax_error_points_into_the_statement(tmp_path: Path) -> None:
    r = cfdb_cmd(tmp_path, "shell", "-c", "LOAD DATASET;")
    assert r.returncode == 1
    assert r.stderr.startswith("Syntax error:")
    line, caret = _caret_column(r.stderr, "LINE 1: ")
    assert caret >= line.index("LOAD")


def test_unknown_table_exits_1(tmp_path: Path) -> None:
    r = cfdb_cmd(tmp_path, "shell", "x.duckdb", "-c", "select * from no_such_table")
    assert r.returncode == 1
    assert r.stderr.startswith("Catalog error:")
    assert "no_such_table" in r.stderr
    line, caret = _caret_column(r.stderr, "LINE 1: ")
    assert caret == line.index("no_such_table")
    assert r.stdout == ""


def test_run_script_reports_the_failing_line(tmp_path: Path) -> None:
    (tmp_path / "script.sql").write_text(
        "create table t as select 1 as a;\nselect a + 1 as b from t;\nselect nope from t;\n"
    )
    r = cfdb_cmd(tmp_path, "run", "script.sql", "--db", "x.duckdb")
    assert r.returncode == 1
    assert r.stderr.startswith("script.sql:3:8: Catalog error:")
    assert "LINE 3: select nope from t;" in r.stderr
    line, caret = _caret_column(r.stderr, "LINE 3: ")
    assert caret == line.index("nope")
    assert re.search(r"│ +2 │", r.stdout)  # results before the error were printed


def test_piped_stdin_is_a_script(tmp_path: Path) -> None:
    script = "create table t as select 5 as v;\n.mode csv\nselect v * 2 as doubled from t;\n"
    r = cfdb_cmd(tmp_path, "shell", "x.duckdb", stdin=script)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "doubled\n10\n"
    r = cfdb_cmd(tmp_path, "shell", "x.duckdb", stdin="select 1;\nselect * from gone;\n")
    assert r.returncode == 1
    assert "LINE 2: select * from gone;" in r.stderr


def test_without_a_command_word_it_is_the_shell(tmp_path: Path) -> None:
    r = cfdb_cmd(tmp_path, "-c", "select 'in memory' as s")
    assert r.returncode == 0 and "in memory" in r.stdout
    r = cfdb_cmd(tmp_path, "x.duckdb", stdin="select 3 as three;")
    assert r.returncode == 0 and "three" in r.stdout


def test_file_is_readable_by_the_duckdb_cli(tmp_path: Path) -> None:
    if not DUCKDB_CLI.exists():
        pytest.skip("the duckdb CLI (duckdb-cli package) is not installed")
    r = cfdb_cmd(tmp_path, "shell", "x.duckdb", "-c", "create table t as select 1 as a")
    assert r.returncode == 0, r.stderr
    other = subprocess.run(
        [str(DUCKDB_CLI), "-readonly", "x.duckdb", "-c", "select * from t"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 0, other.stderr
    assert re.search(r"│\s+1\s+│", other.stdout)


# -- in-process: the same main() without the cost of a new interpreter ------------------------
def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit:  # argparse
        code = int(exit.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_script_success_and_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.sql").write_text("-- a comment\nselect 1 as one;\nselect 2 as two\n")
    code, out, err = run_main(capsys, "run", "ok.sql")
    assert code == 0, err
    assert "one" in out and "two" in out
    code, _, err = run_main(capsys, "run", "missing.sql")
    assert code == 1
    assert "cannot read missing.sql" in err


def test_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_main(capsys, "x.duckdb", "-c", "create table t as select 1 as a")[0] == 0
    code, out, err = run_main(capsys, "shell", "x.duckdb", "--read-only", "-c", "select a from t")
    assert "│" in out
    assert code == 0, err
    code, _, err = run_main(capsys, "x.duckdb", "--read-only", "-c", "create table u (b int)")
    assert code == 1
    assert "read-only" in err.lower() or "read only" in err.lower()
    assert "Traceback" not in err


def test_not_a_database_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("hello, this is not a database\n" * 10)
    code, _, err = run_main(capsys, "shell", "notes.txt", "-c", "select 1")
    assert code == 1
    assert "not a DuckDB database" in err
    assert "Traceback" not in err


def test_version_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "--version")
    assert code == 0 and out.strip() == f"cfdb {cfdb.__version__}"
    code, _, err = run_main(capsys, "run")
    assert code == 2 and "SCRIPT" in err
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    for word in ("shell", "run", "demo"):
        assert word in out


def test_version_via_python_m(tmp_path: Path) -> None:
    r = cfdb_cmd(tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"cfdb {cfdb.__version__}"


@pytest.mark.slow
def test_demo(tmp_path: Path) -> None:
    pytest.importorskip("cfdb.demo", reason="the demo module is not in this tree yet")
    r = cfdb_cmd(tmp_path, "demo", "--db", "demo.duckdb", timeout=600)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "demo.duckdb").exists()
    assert "Predictions" in r.stdout
