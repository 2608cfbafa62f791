"""Shared by the shell's tests: the real DuckDB CLI binary and a pty-driven shell."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import cfdb
from cfdb.shell import Shell


def _duckdb_binary() -> Path:
    # The duckdb-cli package's `duckdb` command is a Python wrapper that dies with a
    # KeyboardInterrupt traceback on Ctrl-C; the binary it runs sits in the package.
    try:
        import duckdb_cli
    except ImportError:
        return Path(sys.executable).with_name("duckdb")
    return Path(duckdb_cli.__file__).with_name("duckdb")


#: The real DuckDB CLI binary (installed by the dev extra's duckdb-cli package).
DUCKDB_CLI = _duckdb_binary()


def run_duckdb_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the DuckDB CLI binary (skips the test when it is not installed)."""
    if not DUCKDB_CLI.exists():
        pytest.skip("the duckdb CLI (duckdb-cli package) is not installed")
    return subprocess.run(
        [str(DUCKDB_CLI), *args], capture_output=True, text=True, timeout=60, check=False
    )


def spawn_shell(tmp_path: Path, term: str, *args: str, timeout: int = 90, cpr: bool = False) -> Any:
    """``cfdb shell ARGS`` in a pseudo-terminal, waiting for its first prompt.

    With ``cpr`` prompt_toolkit asks the terminal where the cursor is (the caller answers,
    see :func:`answer_cpr`); it draws the bottom toolbar only when it knows.
    """
    pexpect = pytest.importorskip("pexpect")
    env = dict(
        os.environ,
        TERM=term,
        CFDB_HISTORY=str(tmp_path / "history"),
        NO_COLOR="1",
    )
    if not cpr:
        env["PROMPT_TOOLKIT_NO_CPR"] = "1"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "cfdb", "shell", *args],
        cwd=str(tmp_path),
        env=env,
        encoding="utf-8",
        timeout=timeout,  # generous: a loaded machine slows the child a lot
        dimensions=(50, 120),
    )
    if cpr:
        expect_answering_cpr(child, "cfdb>")
    else:
        child.expect("cfdb>")
    return child


class Captured:
    """A shell on an in-memory database whose output and errors are kept as text."""

    def __init__(self, db: cfdb.Database, **options: object) -> None:
        self._out, self._err = io.StringIO(), io.StringIO()
        self.shell = Shell(
            db,
            out=Console(file=self._out, width=100),
            err=Console(file=self._err, width=100),
            **options,  # type: ignore[arg-type]
        )

    def run(self, script: str, **options: object) -> bool:
        return self.shell.run_script(script, **options)  # type: ignore[arg-type]

    def take(self) -> tuple[str, str]:
        """Output and errors since the last call."""
        out, err = self._out.getvalue(), self._err.getvalue()
        self._out.seek(0), self._out.truncate(), self._err.seek(0), self._err.truncate()
        return out, err


def expect_answering_cpr(child: Any, text: str) -> None:
    """Wait for ``text``, answering prompt_toolkit's cursor position requests on the way."""
    while child.expect_exact(["\x1b[6n", text]) == 0:
        child.send("\x1b[40;1R")
