-- Burden per group on UCI Adult (CFDB paper, section 5.4; Sharma et al.'s CERTIFAI burden):
-- for instances the model turns down, how far is the closest counterfactual that keeps the
-- person's sex and race? A much larger mean distance for one group hints at unfairness.
-- Run:  cfdb run examples/adult_burden.sql --db adult_burden.duckdb

LOAD DATASET adult;
CREATE MODEL rf AS random_forest WITH (n_estimators = 10, max_depth = 5)
  TRAIN ON (SELECT * FROM Instances WHERE split = 'train');
PREDICT rf ON (SELECT * FROM Instances WHERE split = 'test');

-- False negatives of the model, per sex x race.
SELECT I.sex, I.race, count(*) AS false_negatives
FROM Predictions P JOIN Instances I USING (InstanceId)
WHERE I.GroundTruth = '>50K' AND P.Label = '<=50K'
GROUP BY ALL ORDER BY ALL;

-- Counterfactuals for up to 15 turned-down applicants of each group, keeping sex and race
-- (the paper samples equally many per group to account for imbalance).
FOREACH pred IN (
  SELECT PredictionId FROM (
    SELECT P.PredictionId,
           row_number() OVER (PARTITION BY I.sex, I.race ORDER BY hash(P.PredictionId)) AS k
    FROM Predictions P JOIN Instances I USING (InstanceId)
    WHERE P.Label = '<=50K')
  WHERE k <= 15)
GENERATE (
  SELECT C.* FROM CFs C, Instances I
  WHERE I.InstanceId = pred.InstanceId AND C.sex = I.sex AND C.race = I.race)
USING growing_spheres WITH (distance = 'tabular', seed = 0);

-- What each condition was, and how generation went.
SELECT Status, count(*) AS predictions FROM Conditions GROUP BY ALL;

-- Burden: the mean tabular distance to the closest counterfactual, per group.
SELECT I.sex, I.race, count(*) AS n, round(avg(best), 3) AS burden
FROM (SELECT PredictionId, min(Distance) AS best FROM Prediction_CFs GROUP BY ALL) AS B
JOIN Predictions P USING (PredictionId) JOIN Instances I USING (InstanceId)
GROUP BY ALL ORDER BY burden DESC;
