-- cfdb schema v8: standard errors of estimated data values. VALUATE ... USING
-- knn_shapley_sampled estimates KNN-Shapley values by Monte Carlo over the multilinear
-- extension (Okhrati & Lipani 2021) and records each estimate's standard error; exact methods
-- (knn_shapley) leave it NULL. Runs stored before v8 have NULL.
ALTER TABLE DataValues ADD COLUMN IF NOT EXISTS StdError DOUBLE;

-- data_values(run) as in v3, with the standard error next to the value.
CREATE OR REPLACE MACRO data_values(run) AS TABLE
SELECT v.Relation, v.TupleId, v.TupleKey, v.Method, v.Value, v.StdError,
       CASE WHEN coalesce(r.HigherIsBetter, TRUE) THEN v.Value ELSE -v.Value END AS Benefit,
       rank() OVER (PARTITION BY v.Relation
                    ORDER BY CASE WHEN coalesce(r.HigherIsBetter, TRUE) THEN v.Value
                                  ELSE -v.Value END DESC) AS Rank
FROM DataValues v LEFT JOIN ValuationRuns r ON r.RunId = v.RunId
WHERE v.RunId = run;
