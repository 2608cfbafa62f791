"""The scaling-law example runs end to end (a smoke run, as a user would start it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_bank_marketing_scaling_laws_example_quick_run(tmp_path):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "scaling_laws_bank.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    for part in ("1. 10 customers", "2. the fitted laws", "3a.", "3c.", "3d.", "4. curves"):
        assert part in out.stdout, part
    assert (tmp_path / "curves.png").stat().st_size > 5000
    assert (tmp_path / "alpha.png").stat().st_size > 5000
