"""The grid examples run end to end (smoke runs, as a user would start them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_toy_world_example_shows_the_grid_values_and_efficiency():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "grid_toy_world.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "ABCD" in out.stdout and "efficiency" in out.stdout
    line = next(x for x in out.stdout.splitlines() if x.startswith("efficiency:"))
    numbers = [float(w) for w in line.replace("(ABCD)", "").split() if w.replace(".", "").isdigit()]
    total, ends = numbers
    assert total == pytest.approx(ends, abs=1e-4)


@pytest.mark.slow
def test_bank_marketing_example_quick_run():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "grid_bank_marketing.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    for part in ("1. strikes", "2. months as providers", "3. scaling law", "loglog", "power"):
        assert part in out.stdout
