-- cfdb schema v5: keys and feature columns are recorded, not guessed.
-- Instances.InstanceId becomes the primary key when a file is opened (the store declares it on
-- Instances, whose columns follow the feature space, so it is not created in these files).

-- Which columns a valuation run used as features, and which were the base tables' keys.
ALTER TABLE ValuationRuns ADD COLUMN FeatureColumns VARCHAR[];
ALTER TABLE ValuationRuns ADD COLUMN KeyColumns VARCHAR[];

-- Leave-one-out answers from the two cells it needs, v(all) and v(all without the unit), read
-- from GridCells whatever the design that wrote the pair (LEAVE ONE OUT, EXHAUSTIVE, a
-- permutation that put the unit last); a unit whose cells are missing gets no row (never a 0
-- or a NULL standing for a value that was not measured, e.g. under TMC truncation).
CREATE OR REPLACE MACRO loo(g) AS TABLE
WITH m AS (SELECT Name AS Grid, unnest(Metrics) AS Metric, NUnits FROM Grids WHERE Name = g),
p AS (SELECT DISTINCT p.Grid, p.UnitIndex, p.WithId, p.WithoutId
      FROM SubsetPairs p JOIN Grids gr ON gr.Name = p.Grid
      WHERE p.Grid = g AND p.Kind = 'unit' AND p.Size = gr.NUnits - 1)
SELECT u.UnitId, e.Name AS Slice, m.Metric, cw.Value - co.Value AS Value,
       cw.Value AS FullValue, co.Value AS WithoutValue
FROM p
JOIN m ON m.Grid = p.Grid
JOIN EvalSlices e ON e.Grid = p.Grid
JOIN GridUnits u ON u.Grid = p.Grid AND u.UnitIndex = p.UnitIndex
JOIN GridCells cw ON cw.Grid = p.Grid AND cw.SubsetId = p.WithId
     AND cw.SliceId = e.SliceId AND cw.Metric = m.Metric AND cw.Value IS NOT NULL
JOIN GridCells co ON co.Grid = p.Grid AND co.SubsetId = p.WithoutId
     AND co.SliceId = e.SliceId AND co.Metric = m.Metric AND co.Value IS NOT NULL;

-- Banzhaf (maximum sample reuse) is defined over subsets drawn with each unit in with
-- probability 1/2: it answers on EXHAUSTIVE and RANDOM m grids (without SIZES or PAIRS) and
-- returns no rows on other designs, whose subsets would bias it.
CREATE OR REPLACE MACRO banzhaf(g) AS TABLE
WITH ok AS (SELECT Name FROM Grids WHERE Name = g
            AND (Design = 'exhaustive' OR (Design = 'random'
                 AND coalesce(DesignArgs->>'sizes', '') = ''
                 AND coalesce(DesignArgs->>'pairs', '') IN ('', 'false')))),
cells AS (
    SELECT c.SubsetId, e.Name AS Slice, c.Metric, c.Value
    FROM GridCells c
    JOIN EvalSlices e ON e.Grid = c.Grid AND e.SliceId = c.SliceId
    JOIN TrainSubsets s ON s.Grid = c.Grid AND s.SubsetId = c.SubsetId
    WHERE c.Grid = g AND c.Value IS NOT NULL AND s.Edit IS NULL
      AND c.Grid IN (SELECT Name FROM ok)),
total AS (
    SELECT Slice, Metric, sum(Value) AS S, sum(Value * Value) AS Q, count(*) AS N
    FROM cells GROUP BY ALL),
inside AS (
    SELECT m.UnitIndex, c.Slice, c.Metric, sum(c.Value) AS S, sum(c.Value * c.Value) AS Q,
           count(*) AS N
    FROM cells c JOIN grid_members(g) m ON m.SubsetId = c.SubsetId
    GROUP BY ALL),
units AS (
    SELECT u.UnitIndex, u.UnitId, t.Slice, t.Metric, t.S, t.Q, t.N,
           coalesce(i.S, 0) AS Si, coalesce(i.Q, 0) AS Qi, coalesce(i.N, 0) AS Ni
    FROM GridUnits u CROSS JOIN total t
    LEFT JOIN inside i ON i.UnitIndex = u.UnitIndex AND i.Slice = t.Slice AND i.Metric = t.Metric
    WHERE u.Grid = g)
SELECT UnitId, Slice, Metric,
       CASE WHEN Ni > 0 AND N > Ni THEN Si / Ni - (S - Si) / (N - Ni) END AS Value,
       CASE WHEN Ni > 1 AND N - Ni > 1 THEN
           sqrt(greatest((Qi - Si * Si / Ni) / (Ni - 1), 0) / Ni
                + greatest(((Q - Qi) - (S - Si) * (S - Si) / (N - Ni)) / (N - Ni - 1), 0) / (N - Ni))
       END AS StdErr,
       Ni AS WithCount, N - Ni AS WithoutCount
FROM units;
