"""Small cfdb databases for the explorer's tests: a grid, counterfactuals and data values."""

from __future__ import annotations

from pathlib import Path

import cfdb
from tests.conftest import toy_frame

SMALL_SQL = """
CREATE MODEL lr AS logistic_regression TRAIN ON (SELECT * FROM Instances WHERE split = 'train');
PREDICT lr ON (SELECT * FROM Instances WHERE split = 'test');
FOREACH pred IN (SELECT PredictionId FROM Predictions WHERE Label = 'rejected' ORDER BY PredictionId LIMIT 6)
GENERATE (SELECT C.* FROM CFs C, Instances I
          WHERE I.InstanceId = pred.InstanceId AND C.home = I.home)
USING nearest;
FOREACH pred IN (SELECT PredictionId FROM Predictions WHERE Label = 'rejected' ORDER BY PredictionId LIMIT 2)
GENERATE (SELECT C.* FROM CFs C, Instances I
          WHERE I.InstanceId = pred.InstanceId AND C.income < 0)
USING nearest;
CREATE TABLE homes AS SELECT * FROM (VALUES ('own', 1), ('rent', 2), ('mortgage', 3)) t(home, hid);
ALTER TABLE homes ADD PRIMARY KEY (hid);
CREATE TABLE apps AS SELECT InstanceId AS aid, income, amount, h.hid, GroundTruth
  FROM Instances JOIN homes h USING (home) WHERE split = 'train' ORDER BY InstanceId;
CREATE TABLE holdout AS SELECT income, amount, h.hid, GroundTruth
  FROM Instances JOIN homes h USING (home) WHERE split = 'test';
VALUATE (SELECT a.aid, a.income, a.amount, a.GroundTruth FROM apps a)
  EVALUATE ON (SELECT income, amount, GroundTruth FROM holdout) USING knn_shapley WITH (k = 5);
CREATE GRID homesgrid TRAIN ON (SELECT * FROM Instances WHERE split = 'train') UNITS BY home
  SUBSETS EXHAUSTIVE
  EVALUATE ON (SELECT * FROM Instances WHERE split = 'test') SLICE BY student
  MODEL logistic_regression METRIC accuracy, log_loss;
MATERIALIZE GRID homesgrid;
CREATE GRID strikesgrid TRAIN ON (SELECT * FROM Instances WHERE split = 'train')
  SUBSETS STRIKES BY home
  EVALUATE ON (SELECT * FROM Instances WHERE split = 'test')
  MODEL logistic_regression METRIC accuracy;
MATERIALIZE GRID strikesgrid;
CREATE GRID pending TRAIN ON (SELECT * FROM Instances WHERE split = 'train')
  SUBSETS PERMUTATIONS 3
  EVALUATE ON (SELECT * FROM Instances WHERE split = 'test')
  MODEL logistic_regression METRIC accuracy WITH (lazy = false);
INSERT INTO ValuationRuns (RunId, Method, Utility, HigherIsBetter, Params, Statement)
SELECT coalesce(max(RunId), 0) + 1, 'exact_shapley', 'accuracy', TRUE, '{"grid": "homesgrid"}',
       'grid homesgrid'
FROM ValuationRuns;
INSERT INTO DataValues (RunId, Relation, TupleId, TupleKey, Method, Value)
SELECT (SELECT max(RunId) FROM ValuationRuns), Relation, TupleId, UnitId, Method, Value
FROM grid_data_values('homesgrid') WHERE Slice = 'all' AND Metric = 'accuracy';
"""

#: A join pipeline (fact and dimension tuples): slow, see :func:`add_join_run`.
JOIN_SQL = """
CREATE TABLE few_apps AS SELECT * FROM apps ORDER BY aid LIMIT 30;
ALTER TABLE few_apps ADD PRIMARY KEY (aid);
VALUATE (SELECT a.income, a.amount, a.GroundTruth, h.hid FROM few_apps a JOIN homes h USING (hid))
  EVALUATE ON (SELECT income, amount, GroundTruth, hid FROM holdout LIMIT 10)
  USING knn_shapley WITH (k = 3, max_nodes = 8);
"""


def build_small(path: Path) -> Path:
    """A file with a model, two CFQL queries (the second finds no CF), a KNN-Shapley run, a
    materialized exhaustive grid over 3 units (its Shapley values stored as a second run)
    and a permutation grid with no cells yet."""
    with cfdb.connect(path) as db:
        db.load_instances(toy_frame(120), id="applicant", label="decision", split="part")
        db.execute(SMALL_SQL)
    return path


def add_join_run(path: Path) -> None:
    """Value the tuples of a join of ``apps`` (fact) and ``homes`` (dimension)."""
    with cfdb.connect(path) as db:
        db.execute(JOIN_SQL)
