"""The ten query shapes of the CFDB paper's Table 1, as CFQL over the bundled Adult data,
checked against possible worlds: every probe CF is put in the database, Q_CF itself runs in
DuckDB over it, and the set of (prediction, CF) pairs it returns must be exactly the pairs whose
stored condition holds."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pytest

import cfdb

LINK = "C.CfId = PC.CfId AND PC.PredictionId = pred.PredictionId AND I.InstanceId = pred.InstanceId"
SHAPES = {
    "Q1 no constraint": "TRUE",
    "Q2 modify at least one of {age, hours}": "(C.age <> I.age OR C.hours_per_week <> I.hours_per_week)",
    "Q3 modify all of {age, hours}": "C.age <> I.age AND C.hours_per_week <> I.hours_per_week",
    "Q4 keep at least one of {age, workclass}": "(C.age = I.age OR C.workclass = I.workclass)",
    "Q5 keep all of {sex, workclass}": "C.sex = I.sex AND C.workclass = I.workclass",
    "Q6 keep age, or modify age and hours": (
        "(C.age = I.age OR (C.age <> I.age AND C.hours_per_week <> I.hours_per_week))"
    ),
    "Q7 increase hours or keep sex": "(C.hours_per_week > I.hours_per_week OR C.sex = I.sex)",
    "Q8 modify workclass, age one of its 3 smallest": (
        "C.workclass <> I.workclass AND C.age IN "
        "(SELECT DISTINCT age FROM Instances ORDER BY age LIMIT 3)"
    ),
    "Q9 hours between the average and half the maximum": (
        "C.hours_per_week > (SELECT avg(hours_per_week) FROM Instances) "
        "AND C.hours_per_week < (SELECT max(hours_per_week) / 2 FROM Instances)"
    ),
    "Q10 workclass set to its least frequent value": (
        "C.workclass = (SELECT workclass FROM Instances GROUP BY workclass "
        "ORDER BY count(*), workclass LIMIT 1)"
    ),
}


@pytest.fixture(scope="module")
def adult():
    db = cfdb.connect()
    db.sql(
        "LOAD DATASET adult;"
        "CREATE MODEL lr AS logistic_regression "
        "TRAIN ON (SELECT * FROM Instances WHERE split = 'train' AND InstanceId % 10 = 0);"
        "PREDICT lr ON (SELECT * FROM Instances WHERE split = 'test' AND InstanceId % 1000 = 7)"
    )
    preds = db.sql("SELECT PredictionId FROM Predictions ORDER BY 1 LIMIT 6").fetchall()
    ids = [p for (p,) in preds]
    # A small domain of possible worlds: the instances' own values and their neighbours, the
    # constants the queries compute, and every category of the varied categorical features.
    inst = db.sql(
        "SELECT I.* FROM Instances I JOIN Predictions P USING (InstanceId) "
        f"WHERE P.PredictionId IN ({', '.join(map(str, ids))})"
    ).fetchall()
    cols = [c for c, *_ in db.sql("DESCRIBE Instances").fetchall()]
    rows = [dict(zip(cols, r, strict=True)) for r in inst]
    ages = sorted({r["age"] + d for r in rows for d in (-1, 0, 1)} | {16, 17, 18, 19, 20})
    hours = sorted({r["hours_per_week"] + d for r in rows for d in (-1, 0, 1)} | {40, 41, 49, 50})
    workclass = [
        v
        for (v,) in db.sql(
            "SELECT unnest(Domain) FROM Features WHERE Name = 'workclass'"
        ).fetchall()
    ]
    fixed = rows[0]
    probes = [
        (
            k + 1,
            age,
            wc,
            fixed["education"],
            fixed["marital_status"],
            fixed["occupation"],
            fixed["race"],
            sex,
            h,
        )
        for k, (age, wc, sex, h) in enumerate(
            itertools.product(ages, workclass, ("Female", "Male"), hours)
        )
    ]
    db.session.store.register(
        "__probes",
        pa.table(
            {
                name: [p[i] for p in probes]
                for i, name in enumerate(
                    [
                        "CfId",
                        "age",
                        "workclass",
                        "education",
                        "marital_status",
                        "occupation",
                        "race",
                        "sex",
                        "hours_per_week",
                    ]
                )
            }
        ),
    )
    yield db, ids, len(probes)
    db.close()


@pytest.mark.slow
@pytest.mark.parametrize("shape", list(SHAPES))
def test_table1_shape_matches_possible_worlds(adult, shape):
    db, ids, n_probes = adult
    cond = SHAPES[shape]
    id_list = ", ".join(map(str, ids))
    q_pred = f"SELECT PredictionId FROM Predictions WHERE PredictionId IN ({id_list})"
    q_cf = f"SELECT C.* FROM CFs C, Prediction_CFs PC, Instances I WHERE {LINK} AND {cond}"
    explained = db.sql(f"EXPLAIN FOREACH pred IN ({q_pred}) GENERATE ({q_cf})").fetchall()
    assert sorted(p for _, p, *_ in explained) == ids
    conditions = {p: c for _, p, _, c, _ in explained}

    # Possible worlds: every probe as the CF of every prediction, through the real query.
    db.sql(
        "DELETE FROM Prediction_CFs; DELETE FROM CFs;"
        "INSERT INTO CFs BY NAME SELECT * FROM __probes;"
        f"INSERT INTO Prediction_CFs (PredictionId, CfId) SELECT P.PredictionId, C.CfId "
        f"FROM CFs C, Predictions P WHERE P.PredictionId IN ({id_list})"
    )
    oracle = set(
        db.sql(
            f"SELECT pred.PredictionId, C.CfId FROM CFs C, Prediction_CFs PC, Instances I, "
            f"(SELECT * FROM Predictions WHERE PredictionId IN ({id_list})) AS pred "
            f"WHERE {LINK} AND {cond}"
        ).fetchall()
    )
    ours = set()
    for pred, text in conditions.items():
        ours |= {(pred, c) for (c,) in db.sql(f"SELECT CfId FROM CFs WHERE {text}").fetchall()}
    assert ours == oracle, shape
    assert 0 < len(oracle) < n_probes * len(ids) or shape.startswith(("Q1", "Q10"))
