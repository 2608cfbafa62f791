"""The bundled COMPAS dataset (ProPublica's filters), and exact counterfactuals on it through
CFQL: every stored CF keeps race and sex, gets the other label, and no real defendant of the
same race and sex with the other label is closer than it (the exact CF is at most as far as
the nearest real one)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import cfdb
from cfdb.engine.handlers.models import load_model


@pytest.fixture(scope="module")
def compas() -> Any:
    db = cfdb.connect()
    db.sql("LOAD DATASET compas")
    yield db
    db.close()


def test_compas_loads_with_propublica_filters(compas: Any) -> None:
    counts = compas.sql(
        "SELECT split, GroundTruth, count(*) FROM Instances GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert counts == [
        ("test", "0", 659),
        ("test", "1", 568),
        ("train", "0", 2704),
        ("train", "1", 2241),
    ]
    features = compas.sql("SELECT Name, Type, Mutable FROM Features ORDER BY Position").fetchall()
    assert features == [
        ("age", "integer", True),
        ("sex", "categorical", False),
        ("race", "categorical", False),
        ("priors_count", "integer", True),
        ("c_charge_degree", "categorical", True),
    ]


def test_exact_cfs_are_no_farther_than_the_nearest_real_ones(compas: Any) -> None:
    compas.sql(
        "CREATE MODEL rf AS random_forest WITH (n_estimators = 10, max_depth = 5) "
        "TRAIN ON (SELECT * FROM Instances WHERE split = 'train'); "
        "PREDICT rf ON (SELECT * FROM Instances WHERE split = 'test')"
    )
    q_pred = "SELECT PredictionId FROM Predictions WHERE Label = '1' ORDER BY PredictionId LIMIT 8"
    q_cf = (
        "SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId "
        "AND C.sex = I.sex AND C.race = I.race"
    )
    for generator, options in (
        ("smt", "objective = 'tabular', distance = 'tabular'"),
        ("nearest", "distance = 'tabular'"),
    ):
        compas.sql(
            f"FOREACH pred IN ({q_pred}) GENERATE ({q_cf}) USING {generator} WITH ({options})"
        )
    rows = compas.sql(
        "SELECT PC.PredictionId, C.Generator, min(PC.Distance) FROM Prediction_CFs PC "
        "JOIN CFs C USING (CfId) GROUP BY ALL"
    ).fetchall()
    best: dict[int, dict[str, float]] = {}
    for pid, generator, d in rows:
        best.setdefault(pid, {})[generator] = d
    both = [b for b in best.values() if len(b) == 2]
    assert len(both) >= 4
    assert all(b["smt"] <= b["nearest"] + 1e-9 for b in both)
    cfs = compas.sql(
        "SELECT C.* EXCLUDE (CfId, ModelId, Label, Generator), C.Label, I.sex AS isex, "
        "I.race AS irace FROM CFs C JOIN Prediction_CFs PC USING (CfId) "
        "JOIN Predictions P USING (PredictionId) JOIN Instances I ON I.InstanceId = P.InstanceId "
        "WHERE C.Generator = 'smt'"
    ).df()
    assert (cfs["sex"] == cfs["isex"]).all() and (cfs["race"] == cfs["irace"]).all()
    _, model = load_model(compas.session, "rf")
    cols = {c: np.asarray(cfs[c].to_numpy()) for c in model.feature_names}
    assert (model.predict(cols) == "0").all() and (cfs["Label"] == "0").all()
