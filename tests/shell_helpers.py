"""Shared by the shell's tests: the real DuckDB CLI binary and a pty-driven shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


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


def spawn_shell(tmp_path: Path, term: str, *args: str, timeout: int = 90) -> object:
    """``cfdb shell ARGS`` in a pseudo-terminal, waiting for its first prompt."""
    pexpect = pytest.importorskip("pexpect")
    env = dict(
        os.environ,
        TERM=term,
        PROMPT_TOOLKIT_NO_CPR="1",
        CFDB_HISTORY=str(tmp_path / "history"),
        NO_COLOR="1",
    )
    child = pexpect.spawn(
        sys.executable,
        ["-m", "cfdb", "shell", *args],
        cwd=str(tmp_path),
        env=env,
        encoding="utf-8",
        timeout=timeout,  # generous: a loaded machine slows the child a lot
        dimensions=(50, 120),
    )
    child.expect("cfdb>")
    return child
