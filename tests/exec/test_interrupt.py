"""Ctrl-C during ``MATERIALIZE GRID ... WITH (n_jobs = 2)`` in a plain script: the workers
stop, every committed cell is kept, none is written twice, and a later MATERIALIZE resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import cfdb
from tests.exec.test_entry_points import _env

SCRIPT = """
import cfdb
from cfdb.engine.handlers import grid_fill
from cfdb.exec.pool import worker_pids

db = cfdb.connect({path!r})
db.sql("CREATE TABLE t AS SELECT i AS id, (i % 7) * 1.0 AS x1, ((i * 13) % 11) * 1.0 AS x2, "
       "CASE WHEN (i * 7) % 5 < 2 THEN 'a' ELSE 'b' END AS y, i % 6 AS grp FROM range(400) r(i)")
db.sql("CREATE GRID g TRAIN ON (SELECT id, x1, x2, y, grp FROM t) UNITS BY grp "
       "SUBSETS EXHAUSTIVE EVALUATE ON (SELECT id, x1, x2, y FROM t) "
       "MODEL mlp WITH (max_iter = 400, tol = 1e-9) METRIC accuracy "
       "WITH (label = 'y', key = 'id', lazy = false)")


def listener(grid, written):
    print("committed", written, *worker_pids(), flush=True)


grid_fill.COMMIT_LISTENERS.append(listener)
db.sql("MATERIALIZE GRID g WITH (n_jobs = 2)")
print("finished", flush=True)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # exited (a zombie waits for its new parent to reap it)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_ctrl_c_keeps_committed_cells_and_stops_the_workers(tmp_path):
    path = tmp_path / "interrupted.duckdb"
    (tmp_path / "train.py").write_text(SCRIPT.format(path=str(path)))
    proc = subprocess.Popen(
        [sys.executable, "train.py"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    assert first and first[0] == "committed", proc.stderr.read() if proc.stderr else ""
    workers = [int(p) for p in first[2:]]
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert "finished" not in out, "the run ended before the interrupt: make cells slower"
    assert "KeyboardInterrupt" in err and proc.returncode != 0
    assert all(_gone(pid) for pid in workers)
    with cfdb.connect(str(path)) as db:
        kept = db.sql("SELECT count(*) FROM GridCells").fetchall()[0][0]
        assert 0 < kept < 64
        dups = "SELECT SubsetId, Metric FROM GridCells GROUP BY ALL HAVING count(*) > 1"
        assert db.sql(dups).fetchall() == []
        # the grid resumes where it stopped
        out = db.sql("MATERIALIZE GRID g LIMIT 3").fetchall()[0]
        assert out[1:4] == (3, kept, 64 - kept - 3)
        assert db.sql(dups).fetchall() == []


@pytest.mark.slow
def test_a_worker_killed_mid_grid_has_its_cells_retried():
    from cfdb.engine.handlers import grid_fill
    from cfdb.exec.pool import idle_workers, worker_pids
    from tests.engine.test_grid_sql import grid_sql, make_db

    db = make_db(5, 3)
    db.sql(grid_sql("here", "EXHAUSTIVE", extra=", lazy = false"))
    db.sql(grid_sql("there", "EXHAUSTIVE", extra=", lazy = false"))
    db.sql("MATERIALIZE GRID here")
    killed: list[int] = []

    def kill_a_busy_worker(grid: str, written: int) -> None:
        busy = sorted(set(worker_pids()) - set(idle_workers()))
        if grid == "there" and not killed and busy:
            killed.append(busy[0])
            os.kill(busy[0], signal.SIGKILL)  # as the out-of-memory killer would

    grid_fill.COMMIT_LISTENERS.append(kill_a_busy_worker)
    try:
        out = db.sql("MATERIALIZE GRID there WITH (n_jobs = 2)").fetchall()[0]
    finally:
        grid_fill.COMMIT_LISTENERS.remove(kill_a_busy_worker)
    assert killed and out[1] == 32 and out[4] == 0  # every cell trained, none failed
    cells = "SELECT SubsetId, SliceId, Metric, Value FROM GridCells WHERE Grid = '{}' ORDER BY ALL"
    assert db.sql(cells.format("here")).fetchall() == db.sql(cells.format("there")).fetchall()
    db.close()
