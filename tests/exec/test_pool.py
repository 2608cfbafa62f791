"""The worker-process pool's contract: same results as in-process, warm workers that get the
shared value once, one-line errors naming the task, a killed worker's task retried once then
recorded as lost, and an abandoned run that stops its busy workers."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from cfdb.errors import CfdbExecutionError
from cfdb.exec import chunked, make_executor
from cfdb.exec.pool import idle_workers, worker_pids


class Tracker:
    """A shared value that logs every time a process unpickles it."""

    def __init__(self, log: str, factor: int) -> None:
        self.log = log
        self.factor = factor

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")


def scale(shared: Tracker, chunk: list[int]) -> list[tuple[int, int, int]]:
    return [(x, x * shared.factor, os.getpid()) for x in chunk]


def fails_on_13(shared: object, chunk: list[int]) -> list[int]:
    for x in chunk:
        if x == 13:
            raise ValueError(f"bad value {x}\nsecond line")
    return list(chunk)


def dies(shared: str, chunk: list[int]) -> list[tuple[int, str]]:
    """Task 3 kills its worker the first time only; task 5 every time."""
    for x in chunk:
        marker = Path(shared) / f"died-{x}"
        if x == 5 or (x == 3 and not marker.exists()):
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    return [(x, "ok") for x in chunk]


def sleepy(shared: float, chunk: list[int]) -> list[int]:
    time.sleep(shared)
    return list(chunk)


def test_workers_give_the_in_process_results_and_stay_warm(tmp_path):
    log = str(tmp_path / "unpickled.log")
    shared = Tracker(log, 3)
    chunks = chunked(list(range(40)), 2)
    with make_executor("local", 1) as serial:
        expected = sorted(r[:2] for c in serial.map_chunks(scale, shared, chunks) for r in c)
    with make_executor("process", 2) as pool:
        first = [r for c in pool.map_chunks(scale, shared, chunks) for r in c]
        second = [r for c in pool.map_chunks(scale, shared, chunks) for r in c]
    assert sorted(r[:2] for r in first) == sorted(r[:2] for r in second) == expected
    pids = {r[2] for r in first} | {r[2] for r in second}
    assert os.getpid() not in pids and len(pids) <= 2
    assert set(idle_workers()) >= pids  # warm: the second run reused the first's workers
    # the shared value crossed to each worker once, over both runs
    shipped = Path(log).read_text().split()
    assert sorted(shipped) == sorted(set(shipped)) and set(map(int, shipped)) == pids


@pytest.mark.parametrize("name,n_jobs", [("local", 1), ("process", 2)])
def test_an_exception_in_a_task_is_one_line_naming_the_task(name, n_jobs, monkeypatch):
    monkeypatch.delenv("CFDB_DEBUG", raising=False)
    with make_executor(name, n_jobs) as executor, pytest.raises(CfdbExecutionError) as info:
        list(
            executor.map_chunks(
                fails_on_13,
                None,
                chunked(list(range(20)), 2),
                describe=lambda x: f"cell {x} of grid g",
            )
        )
    err = info.value
    assert err.message == "cell 13 of grid g failed: ValueError: bad value 13"
    assert "fails_on_13" in err.remote_traceback
    assert err.__cause__ is None
    monkeypatch.setenv("CFDB_DEBUG", "1")
    with make_executor(name, n_jobs) as executor, pytest.raises(CfdbExecutionError) as info:
        list(executor.map_chunks(fails_on_13, None, [[12, 13]], describe=str))
    assert "fails_on_13" in "".join(__import__("traceback").format_exception(info.value))


def test_a_killed_worker_is_replaced_and_its_tasks_retried(tmp_path):
    chunks = [[1, 2, 3], [4, 6], [7, 8]]
    with make_executor("process", 2) as executor:
        got = [r for c in executor.map_chunks(dies, str(tmp_path), chunks) for r in c]
    assert sorted(got) == [(x, "ok") for x in (1, 2, 3, 4, 6, 7, 8)]  # each task once
    assert (tmp_path / "died-3").exists()  # task 3 did kill its first worker


@pytest.mark.slow
def test_a_task_that_kills_its_worker_twice_is_lost(tmp_path):
    chunks = [[4, 5, 6], [7, 8]]
    with make_executor("process", 2) as executor:
        got = [
            r
            for c in executor.map_chunks(
                dies, str(tmp_path), chunks, lost=lambda x, why: (x, f"lost: {why}")
            )
            for r in c
        ]
    results = dict(got)
    assert len(got) == 5 == len(results)  # every task once, none twice
    assert results[5] == "lost: the worker process was killed (SIGKILL)"
    assert all(results[x] == "ok" for x in (4, 6, 7, 8))
    # without ``lost`` the run ends with an error naming the task
    executor = make_executor("process", 1)
    with pytest.raises(CfdbExecutionError, match=r"cell 5 failed twice: .*killed"):
        list(executor.map_chunks(dies, str(tmp_path), [[5]], describe=lambda x: f"cell {x}"))


def test_abandoning_a_run_stops_its_busy_workers():
    before = set(worker_pids())
    with make_executor("process", 2) as executor:
        stream = executor.map_chunks(sleepy, 0.5, [[i] for i in range(6)])
        assert len(next(stream)) == 1
        mine = set(worker_pids()) - set(idle_workers())
        stream.close()  # what a Ctrl-C in the consuming loop does
    # the worker still computing was stopped; the one that had just answered stays warm
    assert len(mine) == 2 and len(mine - set(worker_pids())) == 1
    assert set(worker_pids()) == set(idle_workers()) >= before - mine
