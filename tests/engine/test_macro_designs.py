"""Grid macros answer from the cells they need, or give no row for that unit.

``loo`` on a PERMUTATIONS grid (with TMC truncation) returns exactly the units whose
``v(all ∖ i)`` cell was trained, each with ``Value = FullValue − WithoutValue``, and that value
equals a WHATIF that removes the unit (a model trained on the edited data). ``banzhaf`` answers
only on designs whose subsets it is defined over.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cfdb


def frame(n: int = 150, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame(
        {
            "x1": x1.round(3),
            "x2": x2.round(3),
            "grp": [f"p{i % 6}" for i in range(n)],
            "y": np.where(x1 - 0.5 * x2 + rng.normal(0, 0.7, n) > 0, "yes", "no"),
            "split": np.where(np.arange(n) % 3 == 0, "test", "train"),
        }
    )


TRAIN = "SELECT * FROM Instances WHERE split = 'train'"
TEST = "SELECT * FROM Instances WHERE split = 'test'"


@pytest.fixture(scope="module")
def perm_db():
    db = cfdb.connect()
    data = frame()
    db.session.store.register("data", data)
    db.sql("LOAD INSTANCES FROM (SELECT * FROM data) WITH (label = 'y')")
    db.sql(
        f"CREATE GRID p TRAIN ON ({TRAIN}) UNITS BY grp SUBSETS PERMUTATIONS 6 TRUNCATE 0.05 "
        f"EVALUATE ON ({TEST}) MODEL logistic_regression METRIC accuracy"
    )
    db.sql("MATERIALIZE GRID p")
    yield db
    db.close()


def test_loo_rows_are_the_units_with_both_cells(perm_db) -> None:
    rows = perm_db.sql("SELECT UnitId, Value, FullValue, WithoutValue FROM loo('p')").fetchall()
    for _, value, full, without in rows:
        assert full is not None and without is not None
        assert value == pytest.approx(full - without, abs=1e-12)
    # The oracle: units whose all-but-one subset has a trained cell, read from the tables.
    expected = perm_db.sql(
        """
        SELECT DISTINCT u.UnitId FROM SubsetPairs sp
        JOIN Grids g ON g.Name = sp.Grid
        JOIN GridUnits u ON u.Grid = sp.Grid AND u.UnitIndex = sp.UnitIndex
        JOIN GridCells c ON c.Grid = sp.Grid AND c.SubsetId = sp.WithoutId AND c.Value IS NOT NULL
        WHERE sp.Grid = 'p' AND sp.Kind = 'unit' AND sp.Size = g.NUnits - 1
        """
    ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(r[0] for r in expected)
    assert rows, "the permutations put some unit last"
    unit, value, _, _ = rows[0]
    what = perm_db.sql(
        f"WHATIF REMOVE (SELECT * FROM Instances WHERE grp = '{unit}') MODEL logistic_regression "
        f"TRAIN ON ({TRAIN}) EVALUATE ON ({TEST}) METRIC accuracy WITH (features = ('x1', 'x2'))"
    ).fetchall()[0]
    baseline, counterfactual = what[2], what[3]
    assert value == pytest.approx(baseline - counterfactual, abs=1e-12)


def test_banzhaf_answers_only_its_designs(perm_db) -> None:
    assert perm_db.sql("SELECT count(*) FROM banzhaf('p')").fetchall() == [(0,)]
    perm_db.sql(
        f"CREATE GRID b TRAIN ON ({TRAIN}) UNITS BY grp SUBSETS RANDOM 12 "
        f"EVALUATE ON ({TEST}) MODEL logistic_regression METRIC accuracy"
    )
    units = perm_db.sql("SELECT count(*) FROM GridUnits WHERE Grid = 'b'").fetchall()
    assert perm_db.sql("SELECT count(*) FROM banzhaf('b')").fetchall() == units
