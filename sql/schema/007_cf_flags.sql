-- cfdb schema v5: honest per-CF flags of the generators (CFDB paper, section 3.2 step 3) and
-- the model's output on each CF (the "result" attribute the paper's section 4.4 proposes).
--
-- Prediction_CFs.Optimal: TRUE when an exact generator (smt) proved the CF closest under its
-- objective (given the earlier CFs of the same request), FALSE when it returned the CF without
-- a proof (its time limit ran out), NULL when the generator is a heuristic or the link reuses a
-- CF found for another request (its optimality for this one is unknown).
ALTER TABLE Prediction_CFs ADD COLUMN IF NOT EXISTS Optimal BOOLEAN;

-- CFs.Score: the model's probability of the CF's Label (a classifier), or its output (a
-- regressor), as Predictions.Score is for an instance. CFs is created from the features when
-- the first CFQL query runs, so it may not exist yet; CFs stored before v5 have no Score.
ALTER TABLE IF EXISTS CFs ADD COLUMN IF NOT EXISTS Score DOUBLE;
