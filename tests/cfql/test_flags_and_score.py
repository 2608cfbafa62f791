"""Honest flags and bounds on the model's output through FOREACH: ``Prediction_CFs.Optimal``
(TRUE/FALSE from the exact generator, NULL for heuristics and reuse), requests the exact
generator proves impossible recorded as ``infeasible`` (heuristics that find nothing stay
``failed``), and ``C.Score`` in Q_CF (a classifier's probability of the CF's label, a
regressor's output) compiled into the request and checked on every stored CF by reloading
the model from the database."""

from __future__ import annotations

import numpy as np
import pytest

import cfdb
from cfdb.engine.handlers.models import columns_of, load_model
from cfdb.errors import CfdbUnsupportedError
from cfdb.generators import GENERATORS, Generator
from cfdb.generators.smt import SmtColumns
from tests.conftest import toy_frame
from tests.engine.test_models_sql import price_frame

Q_PRED = (
    "SELECT PredictionId FROM Predictions P JOIN Models M USING (ModelId) "
    "JOIN Instances I USING (InstanceId) WHERE M.Name = '{model}' AND P.Label = 'rejected' "
    "AND I.split = 'test' AND I.InstanceId < {last}"
)
Q_CF = (
    "SELECT C.* FROM CFs C, Instances I WHERE I.InstanceId = pred.InstanceId "
    "AND C.home = I.home{extra}"
)
HEURISTICS = ["nearest", "growing_spheres", "random"]


@pytest.fixture(scope="module")
def loans():
    db = cfdb.connect()
    db.load_instances(
        toy_frame(), id="applicant", label="decision", split="part", immutable=["student"]
    )
    db.sql(
        "CREATE MODEL lr AS logistic_regression TRAIN ON (SELECT * FROM Instances "
        "WHERE split = 'train'); PREDICT lr ON (SELECT * FROM Instances)"
    )
    yield db
    db.close()


def foreach(generator: str, extra: str = "", options: str = "seed = 1", last: int = 220) -> str:
    q_pred = Q_PRED.format(model="lr", last=last)
    return (
        f"FOREACH pred IN ({q_pred}) GENERATE ({Q_CF.format(extra=extra)}) "
        f"USING {generator} WITH ({options})"
    )


def last_query(db) -> int:
    return db.sql("SELECT max(QueryId) FROM CFQueries").fetchall()[0][0]


def statuses(db, query_id: int) -> dict[str, int]:
    return dict(
        db.sql(
            "SELECT Status, count(*) FROM Conditions WHERE QueryId = ? GROUP BY ALL",
            params=[query_id],
        ).fetchall()
    )


def linked(db, query_id: int):
    rows = db.sql(
        "SELECT C.*, PC.Optimal, PC.Reused FROM CFs C JOIN Prediction_CFs PC USING (CfId) "
        "WHERE PC.QueryId = ?",
        params=[query_id],
    ).to_arrow_table()
    return columns_of(rows), rows.num_rows


def test_smt_links_are_flagged_optimal_and_heuristics_null(loans):
    loans.sql(foreach("smt", options="seed = 1, n = 2"))
    qid = last_query(loans)
    cols, n = linked(loans, qid)
    assert n > 0 and statuses(loans, qid).get("failed", 0) == 0
    assert all(v is True for v in cols["Optimal"].tolist())
    # The same request again is answered from the stored links: reused, optimality unknown.
    loans.sql(foreach("smt", options="seed = 1, n = 2"))
    again, m = linked(loans, last_query(loans))
    assert m == n and all(again["Reused"].tolist())
    assert all(v is None for v in again["Optimal"].tolist())
    # Reuse within a batch (Algorithm 2) is flagged the same way.
    loans.sql(
        "BEGIN BATCH WITH (reuse_threshold = 100, persistent_pool = false); "
        + foreach("smt", " AND C.amount <= I.amount", "seed = 3")
        + "; "
        + foreach("smt", "", "seed = 3")
        + "; END BATCH"
    )
    flags = loans.sql(
        "SELECT PC.Reused, PC.Optimal FROM Prediction_CFs PC JOIN CFQueries Q USING (QueryId) "
        "WHERE Q.BatchId = (SELECT max(BatchId) FROM CFQueries)"
    ).fetchall()
    assert {reused for reused, _ in flags} == {True, False}
    assert all(optimal is (None if reused else True) for reused, optimal in flags)
    loans.sql(foreach("growing_spheres"))
    cols, n = linked(loans, last_query(loans))
    assert n > 0 and all(v is None for v in cols["Optimal"].tolist())


@pytest.mark.parametrize("generator", [*HEURISTICS, "smt"])
def test_every_cf_meets_the_bound_on_its_probability(loans, generator):
    result = loans.sql(foreach(generator, " AND C.Score >= 0.7", "seed = 2, n = 2")).fetchall()
    qid = last_query(loans)
    cols, n = linked(loans, qid)
    assert n == len(result)
    if n:
        _, model = load_model(loans.session, "lr")
        proba = model.predict_proba(cols)[:, model.labels.index("accepted")]
        assert (model.predict(cols) == "accepted").all()
        assert (proba >= 0.7).all()
        assert np.allclose(cols["Score"].astype(float), proba, rtol=0, atol=1e-12)
    conditions = loans.sql(
        "SELECT Condition FROM Conditions WHERE QueryId = ?", params=[qid]
    ).fetchall()
    assert all(c.endswith("AND Score >= 0.7") for (c,) in conditions)
    if generator == "smt":
        assert n > 0 and statuses(loans, qid).get("failed", 0) == 0


def test_proven_infeasible_is_infeasible_and_heuristics_fail(loans):
    # No applicant within the observed ranges reaches a probability this high.
    bound = " AND C.Score > 0.999999999"
    loans.sql(foreach("smt", bound, last=160))
    qid = last_query(loans)
    st = statuses(loans, qid)
    assert st.get("infeasible", 0) > 0 and "failed" not in st
    counted = loans.sql(
        "SELECT Infeasible, Failed FROM CFQueries WHERE QueryId = ?", params=[qid]
    ).fetchall()
    assert counted == [(st["infeasible"], 0)]
    errors = loans.sql(
        "SELECT DISTINCT Error FROM Conditions WHERE QueryId = ?", params=[qid]
    ).fetchall()
    assert all("no counterfactual exists" in e for (e,) in errors)
    loans.sql(foreach("growing_spheres", bound, last=160))
    st = statuses(loans, last_query(loans))
    assert st.get("failed", 0) > 0 and "infeasible" not in st


def test_bounds_from_the_prediction_and_between(loans):
    # Each prediction's own bound: the CF must be at least as sure as the instance was wrong.
    loans.sql(foreach("smt", " AND C.Score BETWEEN pred.Score - 0.2 AND 0.95", last=200))
    qid = last_query(loans)
    rows = loans.sql(
        "SELECT C.Score, P.Score FROM CFs C JOIN Prediction_CFs PC USING (CfId) "
        "JOIN Predictions P USING (PredictionId) WHERE PC.QueryId = ?",
        params=[qid],
    ).fetchall()
    assert rows and all(p - 0.2 <= c <= 0.95 for c, p in rows)


@pytest.mark.parametrize(
    ("extra", "error", "match"),
    [
        (" AND C.Score = 0.7", CfdbUnsupportedError, "takes bounds"),
        (" AND (C.Score > 0.7 OR C.income > I.income)", CfdbUnsupportedError, "top-level AND"),
        (" AND NOT C.Score < 0.7", CfdbUnsupportedError, "top-level AND"),
        (" AND C.Score > C.income", CfdbUnsupportedError, "non-CF values"),
    ],
)
def test_bad_bounds_are_refused_with_a_position(loans, extra, error, match):
    with pytest.raises(error, match=match) as info:
        loans.sql(foreach("nearest", extra))
    assert info.value.start is not None


def test_null_or_empty_bounds_are_infeasible_without_a_call(loans):
    loans.sql(foreach("nearest", " AND C.Score >= NULL"))
    qid = last_query(loans)
    assert set(statuses(loans, qid)) == {"infeasible"}
    loans.sql(foreach("nearest", " AND C.Score > 0.8 AND C.Score <= 0.8"))
    qid = last_query(loans)
    assert set(statuses(loans, qid)) == {"infeasible"}
    assert loans.sql(
        "SELECT GeneratorCalls FROM CFQueries WHERE QueryId = ?", params=[qid]
    ).fetchall() == [(0,)]


def test_regressor_output_bound():
    with cfdb.connect() as db:
        db.load_instances(price_frame(), id="applicant", label="price", split="part")
        db.sql(
            "CREATE MODEL r AS ridge TRAIN ON (SELECT * FROM Instances WHERE split = 'train');"
            "PREDICT r ON (SELECT * FROM Instances)"
        )
        q = (
            "FOREACH pred IN (SELECT PredictionId FROM Predictions WHERE InstanceId < 130) "
            "GENERATE (SELECT C.* FROM CFs C WHERE C.Score >= pred.Score + 40) "
            "USING {g} WITH (min_change = 1, direction = 'any')"
        )
        for g in ("smt", "growing_spheres"):
            db.sql(q.format(g=g))
            rows = db.sql(
                "SELECT C.Score, CAST(C.Label AS DOUBLE), P.Score FROM CFs C JOIN "
                "Prediction_CFs PC USING (CfId) JOIN Predictions P USING (PredictionId) "
                "WHERE PC.QueryId = (SELECT max(QueryId) FROM CFQueries)"
            ).fetchall()
            assert rows and all(c == v and c >= p + 40 for c, v, p in rows), g


class _Flagged(Generator):
    """Returns two copies of the instance with one feature moved, flagged optimal and not,
    in the exact generator's format (its first row is invalid and must be dropped)."""

    name = "flagged_test"

    def generate(self, task):
        x = dict(task.instance)
        rows = {f.name: [x[f.name]] * 3 for f in self.features_}
        rows["income"] = [x["income"], 10_000.0, 20_000.0]
        flags = np.array([True, False, True])
        return SmtColumns(rows, extra={"__optimal": flags}, info={"status": "feasible"})


@pytest.fixture
def flagged():
    GENERATORS.register("flagged_test", _Flagged)
    yield
    del GENERATORS._items["flagged_test"]


def test_flags_follow_their_cfs_through_verification_and_ordering(loans, flagged):
    loans.sql(
        "FOREACH pred IN (" + Q_PRED.format(model="lr", last=220) + ") GENERATE (SELECT C.* "
        "FROM CFs C) USING flagged_test WITH (n = 2, distance = 'l1')"
    )
    qid = last_query(loans)
    rows = loans.sql(
        "SELECT C.income, PC.Optimal FROM CFs C JOIN Prediction_CFs PC USING (CfId) "
        "WHERE PC.QueryId = ? ORDER BY PC.PredictionId, PC.Distance",
        params=[qid],
    ).fetchall()
    assert rows
    # The closer CF (income 10,000) was flagged False, the farther one True.
    assert all(opt is (inc == 20_000.0) for inc, opt in rows)
