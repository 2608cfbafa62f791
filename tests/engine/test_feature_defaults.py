"""One decision of default features for every statement; keys of Instances; no silent drops.

Over the same training rows, model, features and metric, CREATE GRID's full cell and WHATIF's
baseline are the same number; VALUATE over Instances keys its values by InstanceId and
records which columns were features and which were keys.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cfdb
from cfdb.engine.features import default_features
from cfdb.store import migrations


def loans(n: int = 120, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, n).round(1)
    amount = rng.integers(5, 60, n)
    provider = rng.choice(["a", "b", "c", "d"], n)
    return pd.DataFrame(
        {
            "applicant": np.arange(1001, 1001 + n),
            "income": income,
            "amount": amount,
            "provider": provider,
            "decision": np.where(income > amount + rng.normal(0, 8, n), "yes", "no"),
            "split": np.where(np.arange(n) % 4 == 0, "test", "train"),
        }
    )


@pytest.fixture
def loan_db():
    db = cfdb.connect()
    db.load_instances(loans(), id="applicant", label="decision")
    yield db
    db.close()


def test_rule_names_every_column_it_leaves_out() -> None:
    cols = [
        ("InstanceId", "integer"),
        ("x", "numeric"),
        ("GroundTruth", "categorical"),
        ("split", "categorical"),
        ("provider", "categorical"),
        ("when", None),
        ("X", "numeric"),
        ("k", "integer"),
    ]
    choice = default_features(cols, label="GroundTruth", keys=["k"], units="provider")
    assert choice.features == ["x", "provider"]  # the UNITS BY column stays, as in WHATIF
    assert dict(choice.dropped) == {
        "InstanceId": "cfdb id",
        "GroundTruth": "label",
        "split": "cfdb split",
        "when": "type cannot be a feature",
        "k": "key",
    }
    assert default_features(cols, label="y", declared=["x"]).features == ["x"]


def test_user_split_column_is_kept_without_the_option(loan_db) -> None:
    split = loan_db.sql("SELECT split, count(*) FROM Instances GROUP BY ALL ORDER BY 1").fetchall()
    assert split == [("test", 30), ("train", 90)]
    names = [r[0] for r in loan_db.sql("SELECT Name FROM Features").fetchall()]
    assert names == ["income", "amount", "provider"]


def test_instances_key_and_valuate_keyed_by_instance_id(loan_db) -> None:
    keys = loan_db.sql(
        "SELECT constraint_column_names FROM duckdb_constraints() "
        "WHERE table_name = 'Instances' AND constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    assert keys == [(["InstanceId"],)]
    loan_db.sql(
        "VALUATE (SELECT * FROM Instances WHERE split = 'train') "
        "EVALUATE ON (SELECT * FROM Instances WHERE split = 'test') USING knn_shapley WITH (k = 3)"
    )
    features, key_cols = loan_db.sql(
        "SELECT FeatureColumns, KeyColumns FROM ValuationRuns"
    ).fetchall()[0]
    assert features == ["income", "amount", "provider"]
    assert key_cols == ["InstanceId"]
    # Every value lands on an instance; only training rows get a non-zero value.
    joined = loan_db.sql(
        "SELECT count(*), count(*) FILTER (WHERE v.Value <> 0 AND i.split = 'test') "
        "FROM DataValues v JOIN Instances i ON i.InstanceId = v.TupleId"
    ).fetchall()
    assert joined == [(120, 0)]
    # The oracle: the same run with the features spelled out gives the same values.
    loan_db.sql(
        "VALUATE (SELECT * FROM Instances WHERE split = 'train') "
        "EVALUATE ON (SELECT * FROM Instances WHERE split = 'test') USING knn_shapley "
        "WITH (k = 3, features = ('income', 'amount', 'provider'))"
    )
    diff = loan_db.sql(
        "SELECT max(abs(a.Value - b.Value)) FROM DataValues a JOIN DataValues b "
        "USING (Relation, TupleId) WHERE a.RunId = 1 AND b.RunId = 2"
    ).fetchall()[0][0]
    assert diff == pytest.approx(0, abs=1e-12)


def test_grid_full_cell_equals_whatif_baseline(loan_db) -> None:
    train = "SELECT * FROM Instances WHERE split = 'train'"
    test = "SELECT * FROM Instances WHERE split = 'test'"
    out = loan_db.sql(
        f"CREATE GRID g TRAIN ON ({train}) UNITS BY provider SUBSETS LEAVE ONE OUT "
        f"EVALUATE ON ({test}) MODEL logistic_regression METRIC accuracy, log_loss"
    ).df()
    assert "provider" not in str(out["NotFeatures"][0])  # the same features as WHATIF's
    loan_db.sql("MATERIALIZE GRID g")
    full = dict(
        loan_db.sql(
            "SELECT c.Metric, c.Value FROM GridCells c JOIN TrainSubsets s USING (Grid, SubsetId) "
            "WHERE c.Grid = 'g' AND s.Role = 'full'"
        ).fetchall()
    )
    what = loan_db.sql(
        f"WHATIF REMOVE (SELECT * FROM Instances WHERE provider = 'a') MODEL logistic_regression "
        f"TRAIN ON ({train}) EVALUATE ON ({test}) METRIC accuracy, log_loss"
    ).df()
    assert dict(zip(what.Metric, what.Baseline, strict=True)) == pytest.approx(full, abs=1e-12)


def test_migration_keys_instances_of_an_older_file(tmp_path) -> None:
    from cfdb.store.connection import Store

    path = tmp_path / "old.duckdb"
    store = Store(str(path))
    migrations.migrate(store, target=4)  # a file written before the keys and features
    store.execute(
        "CREATE TABLE Instances AS SELECT range + 1 AS InstanceId, range * 0.5 AS x FROM range(5)"
    )
    store.close()
    db = cfdb.connect(path)
    assert migrations.current_version(db.session.store) == migrations.latest_version()
    keys = db.sql(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'Instances' "
        "AND constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    assert keys == [(1,)]
    db.close()
