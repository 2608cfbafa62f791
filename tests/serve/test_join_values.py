"""Values per relation of a join pipeline: fact and dimension tuples on one page."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.serve.builders import add_join_run
from tests.serve.helpers import error_text, oracle, spec

pytestmark = pytest.mark.slow


def test_join_run_shows_fact_and_dimension_values(small_db: Path, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from cfdb.serve.app import create_app

    path = tmp_path / "join.duckdb"
    shutil.copy(small_db, path)
    add_join_run(path)
    run = oracle(path, "SELECT max(RunId) FROM ValuationRuns WHERE Pipeline = 'join'")[0][0]
    want = oracle(
        path,
        "SELECT Relation, count(*), sum(Value) FROM DataValues WHERE RunId = ? GROUP BY ALL "
        "ORDER BY Relation",
        [run],
    )
    assert [r[0] for r in want] == ["few_apps", "homes"]
    with TestClient(create_app(str(path))) as c:
        r = c.get(f"/values/{run}")
        assert r.status_code == 200, error_text(r.text)
        for relation, n, _ in want:
            assert re.search(rf"<td[^>]*>{relation}</td><td[^>]*>{n}</td>", r.text), relation
        curves = spec(r.text, "repair")["data"]
        assert [t["name"] for t in curves] == ["few_apps", "homes"]
        r = c.get(f"/values/{run}?relation=homes")
        assert len(re.findall(r"<td[^>]*>homes</td>", r.text)) == 1 + 3  # summary + 3 tuples
