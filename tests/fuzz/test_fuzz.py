"""Fuzzing the statement forms of the docs: every input succeeds or raises a CfdbError, within
a time bound, and a failing statement leaves the database unchanged.

The quick profile runs in the default suite (``CFDB_FUZZ_QUICK`` inputs, default 120); the
long one (``CFDB_FUZZ_EXAMPLES``, default 3,000 to fit CI's time budget; set it to 10,000 for
the full profile; ``CFDB_FUZZ_SEED`` to replay) is marked slow and runs in a child process, so
that a crash of the process is seen and names its input.
Both print their seed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from tests.fuzz.harness import describe
from tests.fuzz.run import fuzz


def _seed() -> int:
    given = os.environ.get("CFDB_FUZZ_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


def test_quick_fuzz_profile(capsys):
    seed = _seed()
    examples = int(os.environ.get("CFDB_FUZZ_QUICK", "120"))
    with capsys.disabled():
        print(f"\nfuzz seed {seed} ({examples} inputs; CFDB_FUZZ_SEED={seed} replays it)")
    count, findings = fuzz(examples, seed, limit=10.0, reset_every=examples + 1)
    assert count == examples
    assert not findings, describe(findings)


@pytest.mark.slow
def test_long_fuzz_profile(tmp_path, capsys):
    seed = _seed()
    examples = int(os.environ.get("CFDB_FUZZ_EXAMPLES", "3000"))
    log = tmp_path / "inputs.log"
    with capsys.disabled():
        print(f"\nfuzz seed {seed} ({examples} inputs; CFDB_FUZZ_SEED={seed} replays it)")
    command = [sys.executable, "-m", "tests.fuzz.run", "--examples", str(examples)]
    command += ["--seed", str(seed), "--log", str(log)]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
    )
    last = log.read_text(encoding="utf-8").splitlines()[-1:] if log.exists() else []
    assert proc.returncode in (0, 1), (
        f"the process died (status {proc.returncode}) on input {last}\n{proc.stderr[-2000:]}"
    )
    assert proc.returncode == 0, proc.stdout[-5000:]
