"""``n_jobs = 2`` works wherever a user runs cfdb: a plain script without a main guard, a
script piped to ``python -``, ``cfdb run``, ``cfdb shell -c`` and a Jupyter kernel. Each runs
as a subprocess, writes a database file, and its cells must equal the in-process ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cfdb

ROOT = Path(__file__).resolve().parents[2]

STATEMENTS = [
    "CREATE TABLE t AS SELECT i AS id, (i % 7) * 1.0 AS x1, ((i * 13) % 11) * 1.0 AS x2, "
    "CASE WHEN (i * 7) % 5 < 2 THEN 'a' ELSE 'b' END AS y, i % 5 AS grp FROM range(150) r(i)",
    "CREATE GRID g TRAIN ON (SELECT id, x1, x2, y, grp FROM t WHERE id < 100) UNITS BY grp "
    "SUBSETS EXHAUSTIVE EVALUATE ON (SELECT id, x1, x2, y FROM t WHERE id >= 100) "
    "MODEL logistic_regression METRIC accuracy, log_loss "
    "WITH (label = 'y', key = 'id', lazy = false)",
]
PARALLEL = "MATERIALIZE GRID g WITH (n_jobs = 2)"
CELLS = "SELECT SubsetId, SliceId, Metric, Value FROM GridCells ORDER BY ALL"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _cells(path: Path) -> list[tuple]:
    with cfdb.connect(str(path), read_only=True) as db:
        return db.sql(CELLS).fetchall()


@pytest.fixture(scope="module")
def in_process() -> list[tuple]:
    with cfdb.connect() as db:
        for statement in [*STATEMENTS, "MATERIALIZE GRID g"]:
            db.sql(statement)
        return db.sql(CELLS).fetchall()


def _python_script(path: Path) -> str:
    # What a new user writes: no `if __name__ == "__main__":` guard.
    lines = ["import cfdb", 'print("script started")', f"db = cfdb.connect({str(path)!r})"]
    lines += [f"db.sql({s!r})" for s in [*STATEMENTS, PARALLEL]]
    lines += ["db.close()", 'print("script finished")']
    return "\n".join(lines) + "\n"


def _sql_script() -> str:
    return ";\n".join([*STATEMENTS, PARALLEL]) + ";\n"


def _run(args: list[str], tmp_path: Path, stdin: str | None = None) -> str:
    done = subprocess.run(
        args,
        input=stdin,
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def test_plain_script_without_main_guard(tmp_path, in_process):
    path = tmp_path / "script.duckdb"
    script = tmp_path / "train.py"
    script.write_text(_python_script(path))
    out = _run([sys.executable, str(script)], tmp_path)
    assert out.count("script started") == 1  # the workers did not run the script again
    assert "script finished" in out
    assert _cells(path) == in_process


@pytest.mark.slow
def test_script_on_standard_input(tmp_path, in_process):
    path = tmp_path / "stdin.duckdb"
    out = _run([sys.executable, "-"], tmp_path, stdin=_python_script(path))
    assert out.count("script started") == 1
    assert _cells(path) == in_process


@pytest.mark.slow
def test_cfdb_run(tmp_path, in_process):
    path = tmp_path / "run.duckdb"
    (tmp_path / "grid.sql").write_text(_sql_script())
    _run([sys.executable, "-m", "cfdb", "run", "grid.sql", "--db", str(path)], tmp_path)
    assert _cells(path) == in_process


@pytest.mark.slow
def test_cfdb_shell_command(tmp_path, in_process):
    path = tmp_path / "shell.duckdb"
    _run([sys.executable, "-m", "cfdb", "shell", str(path), "-c", _sql_script()], tmp_path)
    assert _cells(path) == in_process


@pytest.mark.slow
def test_jupyter_kernel(tmp_path, in_process, monkeypatch):
    from jupyter_client.manager import KernelManager

    # a kernel spec for this interpreter, so the kernel imports the cfdb under test
    spec = tmp_path / "kernels" / "cfdb-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "cfdb test",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    path = tmp_path / "kernel.duckdb"
    manager = KernelManager(kernel_name="cfdb-test")
    manager.start_kernel(env=_env(), cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        reply = client.execute_interactive(_python_script(path), timeout=300)
        assert reply["content"]["status"] == "ok", reply["content"]
        client.execute_interactive("import cfdb.exec; cfdb.exec.shutdown()", timeout=60)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)
        deadline = time.monotonic() + 30
        while manager.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
    assert _cells(path) == in_process
