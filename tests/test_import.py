"""``import cfdb`` stays light: the heavy libraries load where a statement needs them.

Run in fresh interpreters (``sys.modules`` of this process is already full). Timings are
reported by ``python -X importtime -c "import cfdb"``, never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("sklearn", "xgboost", "z3", "pandas", "scipy", "pyarrow.compute", "matplotlib", "ray")


def _loaded(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_cfdb_loads_no_engine() -> None:
    loaded = _loaded("import cfdb")
    assert not [m for m in HEAVY if m in loaded]
    assert not {"duckdb", "sqlglot", "numpy", "pyarrow"} & loaded
    assert {m for m in loaded if m.startswith("cfdb")} == {"cfdb", "cfdb.errors"}


def test_plain_sql_loads_no_model_library() -> None:
    loaded = _loaded("import cfdb\ncfdb.connect().sql('SELECT 42').fetchall()")
    assert not [m for m in HEAVY if m in loaded]


def test_public_names_resolve() -> None:
    loaded = _loaded("from cfdb import connect, Database\nassert connect().sql('SELECT 1')")
    assert "cfdb.api" in loaded
