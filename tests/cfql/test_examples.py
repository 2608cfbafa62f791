"""The CFQL walkthrough runs end to end through `cfdb run`, as a user would start it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_adult_burden_walkthrough(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cfdb",
            "run",
            str(EXAMPLES / "adult_burden.sql"),
            "--db",
            str(tmp_path / "burden.duckdb"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "burden" in out.stdout and "satisfied" in out.stdout
    assert out.stdout.count("Female") >= 5
