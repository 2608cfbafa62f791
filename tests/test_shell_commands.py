"""Every dot-command and output mode, run in-process; modes checked against DuckDB's own CLI
where the formats are meant to be identical; the session state kept while sharing the file."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import cfdb
from cfdb.shell import modes
from cfdb.shell.commands import COMMANDS
from tests.shell_helpers import Captured, run_duckdb_cli

QUERY = (
    "select 1 as a, NULL as b, 'it''s, \"q\"' as c, 2.5::double as d, true as e "
    "union all select 2, 'x', 'y', -1, false order by a;"
)


@pytest.fixture
def sh() -> Iterator[Captured]:
    db = cfdb.connect()
    yield Captured(db)
    db.close()


@pytest.mark.parametrize(
    "mode", ["list", "tabs", "json", "jsonlines", "quote", "tcl", "table", "box", "insert t"]
)
def test_modes_match_duckdbs_cli(sh: Captured, mode: str) -> None:
    """The oracle: DuckDB's CLI renders the same result the same way in these modes."""
    query = QUERY
    if mode.startswith("insert"):  # DuckDB's CLI quotes booleans there ('true'); cfdb does not
        query = QUERY.replace(", true as e", "").replace(", false order", " order")
    theirs = run_duckdb_cli("-c", f".mode {mode}", "-c", query)
    assert theirs.returncode == 0, theirs.stderr
    assert sh.run(f".mode {mode}\n{query}")
    assert sh.take()[0].strip() == theirs.stdout.strip()


def test_every_mode_renders(sh: Captured) -> None:
    expected = {
        "ascii": "a\x1fb\x1e1\x1fx",
        "box": "│ a │ b │",
        "column": "a  b\n-  -\n1  x",
        "csv": "a,b\n1,x",
        "duckbox": "│ INTEGER │ VARCHAR │",
        "html": "<td>x  </td></tr>\n</tbody>\n</table>",
        "insert": "INSERT INTO t(a,b) VALUES(1,'x');",
        "json": '[{"a":1,"b":"x"}]',
        "jsonlines": '{"a":1,"b":"x"}',
        "latex": "\\begin{tabular}",
        "line": "a = 1\nb = x",
        "list": "a|b\n1|x",
        "markdown": "|----:|:----|",
        "quote": "'a','b'\n1,'x'",
        "table": "+---+---+",
        "tabs": "a\tb\n1\tx",
        "tcl": '"a" "b"\n"1" "x"',
        "trash": "",
    }
    assert set(expected) == set(modes.MODES)
    for mode, text in expected.items():
        assert sh.run(f".mode {mode} t\nselect 1 as a, 'x' as b;"), mode
        out, err = sh.take()
        assert err == "" and text in out, (mode, out)
    assert sh.take()[0] == ""


def test_json_mode_is_json(sh: Captured) -> None:
    sh.run(".mode json\nselect 1.5::decimal(4,2) as d, date '2024-01-02' as t, [1, 2] as l;")
    assert json.loads(sh.take()[0]) == [{"d": 1.5, "t": "2024-01-02", "l": [1, 2]}]


def test_insert_mode_output_runs_as_sql(sh: Captured) -> None:
    sh.run("create table src as select range as i, 'v' || range as s from range(3);")
    sh.run("create table t (i bigint, s varchar);\n.mode insert t\nselect * from src;")
    statements, _ = sh.take()
    assert sh.run(statements)
    sh.run(".mode csv\nselect count(*) from (select * from t except select * from src);")
    assert sh.take()[0] == "count_star()\n0\n"


def test_headers_nullvalue_separator_width(sh: Captured) -> None:
    sh.run(".mode list\n.headers off\n.nullvalue -\n.separator ;\nselect 1 as a, NULL as b;")
    assert sh.take()[0] == "1;-\n"
    sh.run(".headers on\n.mode column\n.width 5 3\nselect 1 as a, 2 as b;")
    assert sh.take()[0] == "a      b\n-----  ---\n1      2\n"
    assert not sh.run(".width x")


def test_duckbox_elides_rows_and_columns(sh: Captured) -> None:
    sh.run(".maxrows 4\nselect * from range(10) t(i);")
    out, _ = sh.take()
    body = [line for line in out.split("\n") if line.startswith("│")][2:]
    assert [line.strip("│ ") for line in body] == ["0", "1", "…", "8", "9"]
    assert out.rstrip().endswith("10 rows, 4 shown")
    cols = ", ".join(f"{i} as column_{i}" for i in range(30))
    sh.run(f".maxwidth 60\nselect {cols};")
    out, _ = sh.take()
    assert all(len(line) <= 60 for line in out.split("\n"))
    assert "column_0" in out and "column_29" in out and "column_15" not in out
    assert "30 columns (" in out


def test_columns_renders_one_line_per_column(sh: Captured) -> None:
    sh.run(".columns\nselect 1 as a, 'x' as b;\n.rows")
    out, _ = sh.take()
    assert re.search(r"│ a +│ 1 │\n│ b +│ x │", out)


def test_output_once_and_echo(sh: Captured, tmp_path: Path) -> None:
    target, once = tmp_path / "all.txt", tmp_path / "once.csv"
    sh.run(f".output {target}\n.mode csv\nselect 1 as a;\nselect 2 as a;\n.output")
    sh.run(f".once {once}\nselect 3 as a;\nselect 4 as a;")
    out, _ = sh.take()
    assert target.read_text() == "a\n1\na\n2\n"
    assert once.read_text() == "a\n3\n" and out == "a\n4\n"
    sh.run(".echo on\nselect 5 as a;\n.echo off")
    assert sh.take()[0] == "select 5 as a;\na\n5\n.echo off\n"


def test_excel_writes_csv_for_the_next_statement(
    sh: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "")  # no spreadsheet program: the file name is printed
    sh.run(".excel\nselect 1 as a, 'x' as b;")
    out, _ = sh.take()
    path = out.strip().split(" ")[-1]
    assert Path(path).read_text() == "a,b\n1,x\n"
    os.unlink(path)
    assert sh.shell.mode == "duckbox"


def test_bail_changes_print_prompt_show(sh: Captured) -> None:
    assert not sh.run("select * from nope;\nselect 'after' as x;")
    assert "after" not in sh.take()[0]
    assert not sh.run(".bail off\nselect * from nope;\nselect 'after' as x;")
    assert "after" in sh.take()[0]
    sh.run(".bail on\n.changes on\ncreate table t (a int);\ninsert into t values (1), (2);")
    sh.run("update t set a = 3 where a = 1;")
    assert sh.take()[0] == "changes:   2   total_changes: 2\nchanges:   1   total_changes: 3\n"
    sh.run('.print hello "big world"\n.prompt "D " "| "\n.show')
    out, _ = sh.take()
    assert out.startswith("hello big world\n") and "mode: duckbox" in out
    assert (sh.shell.prompt, sh.shell.continuation) == ("D ", "| ")
    sh.run(".version")
    assert re.match(r"cfdb \S+, DuckDB v\d", sh.take()[0])


def test_shell_system_cd(sh: Captured, tmp_path: Path) -> None:
    here = os.getcwd()
    try:
        assert sh.run(f".cd {tmp_path}\n.shell echo one\n.system pwd")
        assert sh.take()[0] == f"one\n{tmp_path}\n"
        assert not sh.run(".shell exit 3")
        assert "returns 3" in sh.take()[1]
    finally:
        os.chdir(here)


def test_import_dump_roundtrip(sh: Captured, tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("i,s\n1,a\n2,\n3,c'd\n")
    assert sh.run(f".import {data} t\n.import --skip 1 {data} t")
    sh.run("create index t_i on t(i); create view v as select i from t;")
    sh.take()
    sh.run(".dump t")
    dump, _ = sh.take()
    assert dump.startswith("BEGIN TRANSACTION;\nCREATE TABLE t(") and dump.endswith("COMMIT;\n")
    assert "INSERT INTO t VALUES(3,'c''d');" in dump.replace('"t"', "t")
    assert "Models" not in dump
    other = Captured(cfdb.connect())
    assert other.run(dump)
    other.run(".mode csv\nselect count(*), count(s) from t;")
    assert other.take()[0] == "count_star(),count(s)\n6,4\n"
    sh.run(".indexes\n.indexes nothing")
    assert sh.take()[0] == "t_i\n"


def test_schema_shows_ddl_of_tables_views_macros(sh: Captured) -> None:
    sh.run(
        "create table zeta (a int not null); create view alpha as select 1 as x;"
        "create macro twice(x) as 2 * x; create temp macro rows_of(n) as table select 1;"
    )
    sh.run(".schema alph%\n.schema ZETA\n.schema twice\n.schema rows%")
    out, _ = sh.take()
    assert out.split("\n")[:4] == [
        "CREATE VIEW alpha AS SELECT 1 AS x;",
        "CREATE TABLE zeta(a INTEGER NOT NULL);",
        "CREATE MACRO twice(x) AS (2 * x);",
        "CREATE TEMP MACRO rows_of(n) AS TABLE SELECT 1;",
    ]


def test_open_databases_exit(sh: Captured, tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    assert sh.run(f".open {path}\ncreate table t as select 1 as a;\n.databases")
    out, _ = sh.take()
    assert f"other: {path} r/w" in out
    assert sh.run(f".open --readonly {path}\n.databases")
    assert "r/o" in sh.take()[0]
    assert sh.run(".open\n.exit 3")
    assert sh.shell.done and sh.shell.exit_code == 3


def test_help_lists_every_command(sh: Captured) -> None:
    sh.run(".help")
    out, _ = sh.take()
    for name, cmd in COMMANDS.items():
        assert cmd.usage in out, name
    sh.run(".help mode")
    assert sh.take()[0].startswith(".mode ?MODE? ?TABLE?")
    docs = (Path(__file__).parents[1] / "docs" / "shell.md").read_text()
    for name in [*COMMANDS, *modes.MODES]:
        assert f"`{name}" in docs, name


def test_usage_errors(sh: Captured) -> None:
    for line in (".timer maybe", ".headers", ".maxrows x", ".once", ".read", ".import a"):
        assert not sh.run(line), line
        assert "usage:" in sh.take()[1], line


# -- the session's state while the file is shared ---------------------------------------------
STATEFUL = """
create table base as select 1 as a;
create temp table tt as select range as r, 'x' || range as s from range(5);
create temp view tv as select r * 10 as r10 from tt;
create temp macro plus1(x) as x + 1;
create temp macro tab(n) as table select * from range(n);
set threads = 1;
set variable answer = 42;
prepare q as select ? + 100 as p;
attach 'other.duckdb' as other (read_only);
"""
CHECK = (
    ".mode list\n.headers off\n"
    "select count(*), sum(r) from tt; select max(r10) from tv;"
    "select plus1(1), (select count(*) from tab(3));"
    "select current_setting('threads'), getvariable('answer'); execute q(1);"
    "select seven from other.o;"
)
CHECKED = "5|10\n40\n2|3\n1|42\n101\n7\n"


@pytest.mark.parametrize("share", [True, False])
def test_state_survives_between_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, share: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    made = run_duckdb_cli("other.duckdb", "-c", "create table o as select 7 as seven")
    assert made.returncode == 0, made.stderr
    db = cfdb.connect("x.duckdb")
    sh = Captured(db, share=share, name="x.duckdb")
    try:
        assert sh.shell.state is not None
        sh.shell.state.baseline()
        assert sh.run(STATEFUL)
        sh.shell.release_lock()
        other = run_duckdb_cli("-readonly", "x.duckdb", "-c", "select a from base")
        if share:  # idle and shared: another process reads the file
            assert other.returncode == 0, other.stderr
            assert db.session.store.is_open is False
        else:
            assert other.returncode != 0 and "lock" in other.stderr.lower()
        assert sh.run(CHECK)
        out, err = sh.take()
        assert (out, err) == (CHECKED, "")
        assert sh.shell.state.problems == []
    finally:
        db.close()


def test_an_open_transaction_keeps_the_lock(tmp_path: Path) -> None:
    db = cfdb.connect(tmp_path / "x.duckdb")
    sh = Captured(db, share=True, name="x.duckdb")
    try:
        sh.run("create table t (a int); /* open one */ -- here\nbegin; insert into t values (1);")
        sh.shell.release_lock()
        assert sh.shell.kept_reason == "a transaction is open" and db.session.store.is_open
        sh.run("commit;")
        sh.shell.release_lock()
        assert sh.shell.kept_reason is None and not db.session.store.is_open
        sh.run("attach ':memory:' as scratch;")
        sh.shell.release_lock()
        assert "in-memory database 'scratch'" in (sh.shell.kept_reason or "")
    finally:
        db.close()


def test_mode_option_of_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    from cfdb.cli import main

    assert main(["shell", "--mode", "jsonlines", "-c", "select 1 as a union all select 2;"]) == 0
    assert capsys.readouterr().out == '{"a":1}\n{"a":2}\n'


def test_dump_roundtrips_many_types(sh: Captured) -> None:
    """.dump's text, run in a fresh database, gives back the same rows (the oracle: EXCEPT)."""
    sh.run(
        "create table mixed as select range as i, "
        "case when range % 3 = 0 then NULL else range / 7 end as d, "
        "'it''s\n' || range || ' \"q\"' as s, date '2024-01-01' + range::int as day, "
        "timestamp '2024-01-01 10:00:00' + to_seconds(range) as ts, range % 2 = 0 as b, "
        "[range, NULL, range + 1] as l, {'k': range, 'v': 'x' || range} as st, "
        "(range * 1.25)::decimal(10, 2) as dec, '\\x00\\x41'::blob as bl from range(30);"
    )
    sh.take()
    sh.run(".dump mixed")
    dump, err = sh.take()
    assert err == ""
    other = Captured(cfdb.connect())
    assert other.run(dump), other.take()[1]
    # the same rows, compared through the text both sides render
    for db in (sh, other):
        db.run(".mode csv\nselect * from mixed order by i;")
    ours, theirs = sh.take()[0], other.take()[0]
    assert ours == theirs and ours.count("\n") > 30
