"""The unit panel with fitted individual scaling laws (Covert et al. 2024) on a MARGINAL grid."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import cfdb
from tests.serve.helpers import oracle

pytestmark = pytest.mark.slow

LAWS_SQL = """
CREATE GRID laws TRAIN ON (SELECT * FROM Instances WHERE split = 'train')
  SUBSETS MARGINAL 3 SIZES BETWEEN 8 AND 40 GEOMETRIC 4
  FOR (SELECT InstanceId FROM Instances WHERE split = 'train' ORDER BY InstanceId LIMIT 2)
  EVALUATE ON (SELECT * FROM Instances WHERE split = 'test') MODEL logistic_regression
  METRIC log_loss;
MATERIALIZE GRID laws;
FIT SCALING LAWS FOR GRID laws;
"""


def test_unit_panel_draws_the_fitted_law(small_db: Path, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from cfdb.serve.app import create_app

    path = tmp_path / "laws.duckdb"
    shutil.copy(small_db, path)
    with cfdb.connect(path) as db:
        db.execute(LAWS_SQL)
    (c_, alpha), *_ = oracle(
        path, "SELECT C, Alpha FROM unit_scaling_laws('laws') WHERE UnitIndex = 1"
    )
    measured = oracle(
        path,
        "SELECT Size, Measured FROM unit_scaling_check('laws') WHERE UnitId = "
        "(SELECT UnitId FROM GridUnits WHERE Grid = 'laws' AND UnitIndex = 1) ORDER BY Size",
    )
    with TestClient(create_app(str(path))) as c:
        assert c.get("/grid/laws").status_code == 200
        body = c.get("/grid/laws/unit", params={"unit": 1}).json()
    points, law = body["curve"]["data"]
    # log-loss: contributions are negated, as the laws orient them (positive helps)
    assert points["x"] == [size for size, _ in measured]
    assert points["y"] == pytest.approx([value for _, value in measured])
    assert law["y"] == pytest.approx([c_ * k ** (-alpha) for k in law["x"]])
    assert law["x"][0] == pytest.approx(8) and law["x"][-1] == pytest.approx(40)
