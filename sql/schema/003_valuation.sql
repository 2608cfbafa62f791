-- cfdb schema v3: data values of base tuples over provenance (DataScope, Karlas et al.,
-- "Data Debugging with Shapley Importance over End-to-End Machine Learning Pipelines").
-- VALUATE writes one ValuationRuns row, the provenance of its training rows and one
-- DataValues row per base tuple of every relation the training query reads. Other methods
-- (e.g. TMC-Shapley estimates from a grid) write the same tables, so methods compare in SQL.

-- One row per valuation run; Params holds the method's options as JSON.
CREATE TABLE ValuationRuns (
    RunId          BIGINT PRIMARY KEY,
    Method         VARCHAR NOT NULL,     -- knn_shapley | tmc_shapley | ...
    Utility        VARCHAR,              -- accuracy | tpr | tnr | fnr | fpr | equalized_odds
    HigherIsBetter BOOLEAN,              -- direction of the utility (FALSE for error rates)
    Pipeline       VARCHAR,              -- map | fork | join (the provenance's class)
    Params         JSON,
    TrainQuery     VARCHAR,
    EvalQuery      VARCHAR,
    TrainRows      BIGINT,
    EvalRows       BIGINT,
    UtilityAll     DOUBLE,               -- utility of the full training set (= sum of values)
    Statement      VARCHAR,
    Seconds        DOUBLE,
    CreatedAt      TIMESTAMP DEFAULT current_timestamp
);

-- The provenance polynomial of each training row of a run: a sum of monomials, each the
-- product of the base tuples listed under it. RowId is the row's 0-based position in the
-- training query's order (its ORDER BY, then its base tuples).
CREATE TABLE Provenance (
    RunId     BIGINT NOT NULL,
    RowId     BIGINT NOT NULL,
    Monomial  INTEGER NOT NULL,
    Relation  VARCHAR NOT NULL,
    TupleId   BIGINT NOT NULL
);

-- One value per (run, base tuple). TupleId is the relation's single-column integer primary
-- key, else its rowid; TupleKey holds a non-integer primary key as text.
CREATE TABLE DataValues (
    RunId     BIGINT NOT NULL,
    Relation  VARCHAR NOT NULL,
    TupleId   BIGINT NOT NULL,
    Method    VARCHAR NOT NULL,
    Value     DOUBLE,
    TupleKey  VARCHAR
);

-- The values of one run, with Benefit = Value oriented so that larger is better for the
-- utility, and Rank = 1 for the most beneficial tuple of each relation (ties share a rank).
CREATE MACRO data_values(run) AS TABLE
SELECT v.Relation, v.TupleId, v.TupleKey, v.Method, v.Value,
       CASE WHEN coalesce(r.HigherIsBetter, TRUE) THEN v.Value ELSE -v.Value END AS Benefit,
       rank() OVER (PARTITION BY v.Relation
                    ORDER BY CASE WHEN coalesce(r.HigherIsBetter, TRUE) THEN v.Value
                                  ELSE -v.Value END DESC) AS Rank
FROM DataValues v LEFT JOIN ValuationRuns r ON r.RunId = v.RunId
WHERE v.RunId = run;

-- Agreement of two runs per relation, over the tuples both valued: Pearson correlation of
-- the values, Spearman correlation (of their ranks), and how many of the lowest-valued 10%
-- of one run are among the lowest-valued 10% of the other.
CREATE MACRO value_agreement(run_a, run_b) AS TABLE
WITH a AS (
    SELECT Relation, TupleId, Value,
           rank() OVER (PARTITION BY Relation ORDER BY Value) AS R,
           percent_rank() OVER (PARTITION BY Relation ORDER BY Value) AS P
    FROM DataValues WHERE RunId = run_a),
b AS (
    SELECT Relation, TupleId, Value,
           rank() OVER (PARTITION BY Relation ORDER BY Value) AS R,
           percent_rank() OVER (PARTITION BY Relation ORDER BY Value) AS P
    FROM DataValues WHERE RunId = run_b)
SELECT a.Relation, count(*) AS Tuples,
       corr(a.Value, b.Value) AS Pearson,
       corr(a.R, b.R) AS Spearman,
       count(*) FILTER (WHERE a.P < 0.1 AND b.P < 0.1) AS BottomDecileOverlap,
       count(*) FILTER (WHERE a.P < 0.1) AS BottomDecileA
FROM a JOIN b ON a.Relation = b.Relation AND a.TupleId = b.TupleId
GROUP BY a.Relation
ORDER BY a.Relation;

-- Each training row of a run with the summed value of the base tuples in its provenance.
CREATE MACRO row_values(run) AS TABLE
SELECT p.RowId, sum(v.Value) AS Value, count(*) AS Tuples,
       string_agg(p.Relation || ':' || p.TupleId, ' * ' ORDER BY p.Relation, p.TupleId)
           AS Provenance
FROM Provenance p
JOIN DataValues v ON v.RunId = p.RunId AND v.Relation = p.Relation AND v.TupleId = p.TupleId
WHERE p.RunId = run AND p.Monomial = 0
GROUP BY p.RowId
ORDER BY p.RowId;
