"""The shell in a pseudo-terminal: Ctrl-C cancels a long query, every dot-command and mode
typed at the prompt, completion of aliases and cfdb words with Tab, the bottom toolbar, and
the file shared while idle without losing the session's state."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.shell_helpers import expect_answering_cpr, run_duckdb_cli, spawn_shell

pexpect = pytest.importorskip("pexpect")

# Each test starts the shell in a terminal: seconds each on a busy machine.
pytestmark = pytest.mark.slow

CROSS_JOIN = "SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b;"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def _wait_until_busy(pid: int, seconds: float = 0.5, timeout: float = 60) -> None:
    """Wait until the process has used ``seconds`` of CPU more: the query is running."""
    start, deadline = _cpu_seconds(pid), time.monotonic() + timeout
    while _cpu_seconds(pid) - start < seconds:
        assert time.monotonic() < deadline, "the query never started"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("term", ["xterm", "dumb"])
def test_ctrl_c_cancels_a_long_cross_join(tmp_path: Path, term: str) -> None:
    child = spawn_shell(tmp_path, term, str(tmp_path / "x.duckdb"))
    try:
        child.send("create table kept (a int); begin; insert into kept values (1);\r")
        child.expect_exact("OK, 1 row")
        child.send(CROSS_JOIN + "\r")
        _wait_until_busy(child.pid)
        pressed = time.monotonic()
        child.sendcontrol("c")
        child.expect_exact("interrupted; the transaction was rolled back", timeout=60)
        took = time.monotonic() - pressed
        # DuckDB stops within a vector or two; a 200-second query must not run on.
        assert took < 10, f"Ctrl-C took {took:.1f} s"
        child.send("select count(*) as n from kept;\r")  # the insert was rolled back too
        child.expect(r"│ +0 │")
        child.send(".quit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert "Traceback" not in (child.before or "")


def test_every_command_and_mode_at_the_prompt(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("i,s\n1,a\n2,b\n")
    (tmp_path / "script.sql").write_text("select 'from a script' as x;\n")
    child = spawn_shell(tmp_path, "dumb", str(tmp_path / "x.duckdb"))

    def run(line: str, *expected: str, regex: bool = False) -> None:
        child.send(line + "\r")
        for text in expected:
            if regex:
                child.expect(text)
            else:
                child.expect_exact(text)

    try:
        run(".help", ".width NUM1 NUM2 ...", ".bail on|off", ".share ?on|off?")
        run(".import data.csv t")
        run(".tables", "t")
        run("create index t_i on t(i);", "OK")
        run(".indexes", "t_i")
        run(".schema t", "CREATE TABLE t(i BIGINT, s VARCHAR);")
        run(".dump t", "INSERT INTO \"t\" VALUES(2,'b');", "COMMIT;")
        run(".databases", "x: ")
        signatures = {
            "ascii": "i\x1fs",
            "box": "│ i │ s │",
            "column": "i  s\r\n-  -",
            "csv": "i,s\r\n1,a",
            "duckbox": "│ BIGINT │ VARCHAR │",
            "html": "<table>",
            "insert": "INSERT INTO t(i,s) VALUES(1,'a');",
            "json": '[{"i":1,"s":"a"},',
            "jsonlines": '{"i":2,"s":"b"}',
            "latex": "\\begin{tabular}",
            "line": "i = 1",
            "list": "1|a",
            "markdown": "|   i | s   |",
            "quote": "1,'a'",
            "table": "+---+---+",
            "tabs": "1\ta",
            "tcl": '"1" "a"',
        }
        for mode, text in signatures.items():
            run(f".mode {mode} t")
            run("select * from t order by i;", text)
        run(".mode trash")
        run("select 'hidden' as x;")
        run(".mode list")
        run(".print after-trash", "after-trash")
        run(".headers off")
        run(".nullvalue (none)")
        run(".separator ;")
        run("select 1 as a, NULL as b;", "1;(none)")
        run(".headers on")
        run(".mode column")
        run(".width 6 2")
        run("select 1 as a, 2 as b;", "a       b")
        run(".mode duckbox")
        run(".maxrows 4")
        run(".maxwidth 60")
        run("select * from range(10);", "10 rows, 4 shown")
        run(".columns")
        run("select 1 as a;", "│ a      │ 1 │")
        run(".rows")
        run(".timer on")
        run("select 1 as one;", "Time: ")
        run(".timer off")
        run(".echo on")
        run("select 2 as two;", "select 2 as two;")
        run(".echo off")
        run(".changes on")
        run("insert into t values (3, 'c');", "changes:   1   total_changes: 1")
        run(".changes off")
        run(".bail off")
        run(".bail on")
        run(".output out.txt")
        run("select 'to a file' as x;")
        run(".output")
        run(".once once.txt")
        run("select 'once' as x;")
        run(".shell cat out.txt once.txt", "to a file", "once")
        run(".system echo system-ok", "system-ok")
        run(".cd sub", "cannot change to sub")
        run(".read script.sql", "from a script")
        run(".show", "filename: ")
        run(".version", "DuckDB v")
        run(".highlight off")
        run(".excel")
        run("select 1 as a;")  # opens a spreadsheet program if there is one; else says where
        run(".share", "share: on")
        run(".open other.duckdb")
        run(".databases", "other: ")
        run('.prompt "D> " "| "', "D> ")
        run(".nonsense", "unknown command .nonsense")
        run(".exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 3
    assert "Traceback" not in (child.before or "")


def test_tab_completion(tmp_path: Path) -> None:
    child = spawn_shell(tmp_path, "xterm", str(tmp_path / "x.duckdb"))
    try:
        child.send("create table Instances_x (growth int, age int);\r")
        child.expect_exact("OK")
        child.expect_exact("cfdb>")
        child.send("create table other_t (grown int);\r")
        child.expect_exact("OK")
        child.expect_exact("cfdb>")
        # alias.<Tab>: that table's columns only (other_t's "grown" would make it ambiguous)
        child.send("select count(*) as n from Instances_x I where I.gro")
        child.expect_exact("I.gro")
        child.send("\t")
        child.expect_exact("wth")
        child.send(" is null;\r")
        child.expect(r"│ +0 │")
        child.expect_exact("cfdb>")
        child.send("LOAD DATAS")
        child.expect_exact("DATAS")
        child.send("\t")
        child.expect_exact("ET")
        child.sendcontrol("c")
        child.expect_exact("cfdb>")
        child.send(".quit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close()


def test_bottom_toolbar(tmp_path: Path) -> None:
    # prompt_toolkit draws the toolbar once the terminal has said where the cursor is
    child = spawn_shell(tmp_path, "xterm", str(tmp_path / "x.duckdb"), cpr=True)
    try:
        expect_answering_cpr(child, "shared while idle")
        expect_answering_cpr(child, "timer off")
        child.send("begin batch;\r")
        expect_answering_cpr(child, "BATCH open")
        child.send("end batch;\r")
        expect_answering_cpr(child, "cfdb>")
        child.send(".quit\r")
        expect_answering_cpr(child, pexpect.EOF)
    finally:
        child.close()


@pytest.mark.parametrize("share", ["on", "off"])
def test_sharing_at_the_prompt(tmp_path: Path, share: str) -> None:
    db = tmp_path / "x.duckdb"
    child = spawn_shell(tmp_path, "dumb", str(db))
    try:
        child.send(f".share {share}\r")
        child.send("create table t as select 41 as a;\r")
        child.expect_exact("OK, 1 row")
        child.send("create temp table scratch as select 5 as v; set threads = 1;\r")
        child.expect_exact("OK")
        child.expect_exact("cfdb>")
        other = run_duckdb_cli("-readonly", str(db), "-c", "select a from t")
        if share == "on":
            assert other.returncode == 0, other.stderr
            assert "41" in other.stdout
        else:
            assert other.returncode != 0
            assert "lock" in (other.stderr + other.stdout).lower()
        child.send("select v * 2 as doubled, current_setting('threads') as th from scratch;\r")
        child.expect(r"│ +10 │ +1 │")
        child.send(".quit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
