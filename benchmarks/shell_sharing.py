"""The shell's costs: sharing the file between inputs, and how fast Ctrl-C stops a query.

Prints, for temporary tables of several sizes, the time to capture the session's state and
release the file, and the time of the next statement (reopen, re-apply, run) against the same
statement on a connection kept open (``.share off``); then the time from SIGINT to the
prompt while a cross join that would run for minutes is computing.

    python benchmarks/shell_sharing.py
"""

from __future__ import annotations

import io
import os
import signal
import tempfile
import threading
import time

from rich.console import Console

import cfdb
from cfdb.shell import Shell

CROSS_JOIN = "SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b;"


def _shell(path: str, share: bool) -> Shell:
    db = cfdb.connect(path)
    shell = Shell(db, share=share, name=path, out=Console(file=io.StringIO()))
    shell.err = Console(file=io.StringIO())
    assert shell.state is not None
    shell.state.baseline()
    return shell


def sharing(rows: int, repeat: int = 3) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        shell = _shell(os.path.join(tmp, "x.duckdb"), share=True)
        if rows:
            shell.run_script(
                f"create temp table tt as select range as r, 'x' || range as s from range({rows});"
            )
        release, shared, kept = [], [], []
        for _ in range(repeat):
            t = time.perf_counter()
            shell.release_lock()
            release.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert shell.run_script("select count(*) from tt;" if rows else "select 1;")
            shared.append(time.perf_counter() - t)
        shell.share = False
        for _ in range(repeat):
            t = time.perf_counter()
            assert shell.run_script("select count(*) from tt;" if rows else "select 1;")
            kept.append(time.perf_counter() - t)
        shell.db.close()
    return min(release), min(shared), min(kept)


def cancel_latency() -> float:
    """Seconds from SIGINT to the statement's return, 1 s into the cross join."""
    shell = _shell(":memory:", share=False)
    sent: list[float] = []

    def press() -> None:
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Timer(1.0, press).start()
    ok = shell.run_script(CROSS_JOIN)
    took = time.perf_counter() - sent[0]
    assert not ok
    shell.db.close()
    return took


def main() -> None:
    print(
        f"{'temp rows':>10} {'release ms':>11} {'next stmt ms':>13} {'kept open ms':>13} {'ratio':>6}"
    )
    for rows in (0, 100_000, 1_000_000):
        release, shared, kept = sharing(rows)
        print(
            f"{rows:>10,} {release * 1e3:>11.1f} {shared * 1e3:>13.1f} {kept * 1e3:>13.1f} "
            f"{shared / kept:>6.1f}"
        )
    print(f"\nCtrl-C on a cross join of 10^12 rows: back in {cancel_latency():.2f} s")


if __name__ == "__main__":
    main()
