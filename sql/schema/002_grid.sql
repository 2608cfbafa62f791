-- cfdb schema v2: counterfactuals of the training data: the data-counterfactual grid
-- (Nick Vincent, "Exploring Data Counterfactuals"). Rows of a grid are training subsets,
-- columns are evaluation slices, cells are measured model performance. Every aggregation
-- (leave-one-out, Shapley, Beta Shapley, Banzhaf, strikes, scaling laws) is a table macro
-- below, so plain DuckDB (a BI tool, the DuckDB CLI) can run it on the saved file.

-- One row per grid (Kind 'grid') or per what-if family (Kind 'whatif').
CREATE TABLE Grids (
    Name        VARCHAR PRIMARY KEY,
    Kind        VARCHAR NOT NULL DEFAULT 'grid',
    TrainQuery  VARCHAR NOT NULL,
    UnitsBy     VARCHAR,             -- NULL: every training row is a unit
    KeyColumn   VARCHAR,             -- column identifying training rows (NULL: row order)
    LabelColumn VARCHAR NOT NULL,
    Relation    VARCHAR,             -- what a unit is a tuple of, for DataValues
    NUnits      BIGINT NOT NULL,
    NRows       BIGINT NOT NULL,
    Design      VARCHAR NOT NULL,
    DesignArgs  JSON,
    EvalQuery   VARCHAR NOT NULL,
    SliceBy     VARCHAR,
    ModelKind   VARCHAR NOT NULL,
    ModelParams JSON,
    Features    VARCHAR[],
    Metrics     VARCHAR[] NOT NULL,
    Task        VARCHAR NOT NULL,    -- classification | regression
    Classes     VARCHAR[],
    Options     JSON,
    Seed        BIGINT,
    Statement   VARCHAR,
    CreatedAt   TIMESTAMP DEFAULT current_timestamp
);

-- The units of a grid's training universe: rows, or groups of rows (UNITS BY).
CREATE TABLE GridUnits (
    Grid      VARCHAR NOT NULL,
    UnitIndex INTEGER NOT NULL,
    UnitId    VARCHAR NOT NULL,      -- the key value, or the UNITS BY value, as text
    TupleId   BIGINT,                -- the integer key (DataValues.TupleId), else UnitIndex
    Rows      BIGINT NOT NULL,
    PRIMARY KEY (Grid, UnitIndex)
);

-- Metric facts the macros need (direction, perfect value).
CREATE TABLE GridMetrics (
    Grid           VARCHAR NOT NULL,
    Metric         VARCHAR NOT NULL,
    HigherIsBetter BOOLEAN NOT NULL,
    Best           DOUBLE NOT NULL,
    PRIMARY KEY (Grid, Metric)
);

-- Rows of a grid: one distinct training subset each. Members are stored as the members
-- (Representation 'members'), the units left out ('complement'), or the first Size units of
-- permutation Draw ('prefix', the order is in SubsetPairs). What-if rows may edit the data:
-- Edit = add (rows of EditQuery appended), flip_labels or reweight (see TrainSubsetEdits).
CREATE TABLE TrainSubsets (
    Grid           VARCHAR NOT NULL,
    SubsetId       BIGINT NOT NULL,
    Design         VARCHAR NOT NULL,
    Role           VARCHAR NOT NULL, -- full | empty | exhaustive | loo | sample | pair | prefix | strike | whatif
    Size           BIGINT NOT NULL,  -- number of units
    Seed           BIGINT,
    Representation VARCHAR NOT NULL,
    Draw           INTEGER,
    Tag            VARCHAR,
    Edit           VARCHAR,
    EditQuery      VARCHAR,
    EditWeight     VARCHAR,
    EditKey        VARCHAR,
    PRIMARY KEY (Grid, SubsetId)
);

CREATE TABLE TrainSubsetMembers (
    Grid      VARCHAR NOT NULL,
    SubsetId  BIGINT NOT NULL,
    UnitIndex INTEGER NOT NULL
);

-- Per-unit edits of a what-if row: a flipped label (Weight NULL) or a sample weight.
CREATE TABLE TrainSubsetEdits (
    Grid      VARCHAR NOT NULL,
    SubsetId  BIGINT NOT NULL,
    UnitIndex INTEGER NOT NULL,
    Weight    DOUBLE
);

-- Marginal contributions the design measures: WithId = WithoutId plus one unit (Kind 'unit')
-- or the full set against the set without a group (Kind 'group', a strike). Size is the
-- number of units of the WithoutId subset. Truncated pairs (TMC-Shapley) count as 0.
CREATE TABLE SubsetPairs (
    Grid      VARCHAR NOT NULL,
    PairId    BIGINT NOT NULL,
    Kind      VARCHAR NOT NULL,
    UnitIndex INTEGER,
    GroupName VARCHAR,
    WithoutId BIGINT NOT NULL,
    WithId    BIGINT NOT NULL,
    Size      BIGINT NOT NULL,
    Draw      INTEGER,
    Position  INTEGER,
    Truncated BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (Grid, PairId)
);

-- Columns of a grid: evaluation slices. SliceId 0 is the whole evaluation set ('all').
CREATE TABLE EvalSlices (
    Grid        VARCHAR NOT NULL,
    SliceId     BIGINT NOT NULL,
    Name        VARCHAR NOT NULL,
    SliceColumn VARCHAR,
    SliceValue  VARCHAR,
    Predicate   VARCHAR,
    Rows        BIGINT,
    PRIMARY KEY (Grid, SliceId)
);

-- Cells: (grid, subset, slice, metric) -> value. A subset's cells are written together, in
-- one transaction, as soon as its model is trained.
CREATE TABLE GridCells (
    Grid      VARCHAR NOT NULL,
    SubsetId  BIGINT NOT NULL,
    SliceId   BIGINT NOT NULL,
    Metric    VARCHAR NOT NULL,
    Value     DOUBLE,
    ModelKind VARCHAR,
    TrainRows BIGINT,
    Seconds   DOUBLE,
    Status    VARCHAR DEFAULT 'ok',  -- ok | failed
    Error     VARCHAR,
    CreatedAt TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (Grid, SubsetId, SliceId, Metric)
);

-- Three-parameter scaling-law fits (metric = A - B * size^(-C)), refreshed after each
-- materialization (scipy non-linear least squares).
CREATE TABLE GridScalingFits (
    Grid      VARCHAR NOT NULL,
    SliceId   BIGINT NOT NULL,
    Metric    VARCHAR NOT NULL,
    Form      VARCHAR NOT NULL,
    A         DOUBLE,
    B         DOUBLE,
    C         DOUBLE,
    R2        DOUBLE,
    Points    BIGINT,
    MinSize   BIGINT,
    MaxSize   BIGINT,
    CreatedAt TIMESTAMP DEFAULT current_timestamp
);

-- ---------------------------------------------------------------------------------------
-- Macros: every one takes the grid's name. They read only tables, so they run anywhere.
-- ---------------------------------------------------------------------------------------

-- The grid in long form: one row per trained cell.
CREATE MACRO grid_cells(g) AS TABLE
SELECT c.Grid, c.SubsetId, s.Design, s.Role, s.Size, s.Tag, s.Edit, e.SliceId,
       e.Name AS Slice, c.Metric, c.Value, c.Status, c.TrainRows, c.Seconds, c.Error, c.CreatedAt
FROM GridCells c
JOIN TrainSubsets s ON s.Grid = c.Grid AND s.SubsetId = c.SubsetId
JOIN EvalSlices e ON e.Grid = c.Grid AND e.SliceId = c.SliceId
WHERE c.Grid = g;

CREATE MACRO grid_units(g) AS TABLE
SELECT u.UnitIndex, u.UnitId, u.TupleId, u.Rows, gr.Relation
FROM GridUnits u JOIN Grids gr ON gr.Name = u.Grid
WHERE u.Grid = g;

-- Members of every subset, whatever its stored representation.
CREATE MACRO grid_members(g) AS TABLE
SELECT s.SubsetId, m.UnitIndex
FROM TrainSubsets s JOIN TrainSubsetMembers m ON m.Grid = s.Grid AND m.SubsetId = s.SubsetId
WHERE s.Grid = g AND s.Representation = 'members'
UNION ALL
SELECT s.SubsetId, u.UnitIndex
FROM TrainSubsets s JOIN GridUnits u ON u.Grid = s.Grid
WHERE s.Grid = g AND s.Representation = 'complement'
  AND NOT EXISTS (SELECT 1 FROM TrainSubsetMembers m
                  WHERE m.Grid = s.Grid AND m.SubsetId = s.SubsetId AND m.UnitIndex = u.UnitIndex)
UNION ALL
SELECT s.SubsetId, p.UnitIndex
FROM TrainSubsets s
JOIN SubsetPairs p ON p.Grid = s.Grid AND p.Kind = 'unit' AND p.Draw = s.Draw AND p.Position < s.Size
WHERE s.Grid = g AND s.Representation = 'prefix';

-- Every measured marginal contribution: Delta = value(WithId) - value(WithoutId), per slice
-- and metric (0 for a truncated pair). Pairs whose cells are not all trained are left out.
CREATE MACRO marginal_contributions(g) AS TABLE
WITH m AS (SELECT Name AS Grid, unnest(Metrics) AS Metric FROM Grids WHERE Name = g)
SELECT p.PairId, p.Kind, u.UnitId, p.UnitIndex, p.GroupName, p.Size, p.Draw, p.Position,
       e.Name AS Slice, m.Metric,
       CASE WHEN p.Truncated THEN 0.0 ELSE cw.Value - co.Value END AS Delta,
       cw.Value AS WithValue, co.Value AS WithoutValue, p.Truncated
FROM SubsetPairs p
JOIN m ON m.Grid = p.Grid
JOIN EvalSlices e ON e.Grid = p.Grid
LEFT JOIN GridUnits u ON u.Grid = p.Grid AND u.UnitIndex = p.UnitIndex
LEFT JOIN GridCells cw ON cw.Grid = p.Grid AND cw.SubsetId = p.WithId
     AND cw.SliceId = e.SliceId AND cw.Metric = m.Metric
LEFT JOIN GridCells co ON co.Grid = p.Grid AND co.SubsetId = p.WithoutId
     AND co.SliceId = e.SliceId AND co.Metric = m.Metric
WHERE p.Grid = g AND (p.Truncated OR (cw.Value IS NOT NULL AND co.Value IS NOT NULL));

-- Per unit, slice, metric and coalition size: the mean marginal contribution (the input of
-- individualized data scaling laws, Covert et al. 2024).
CREATE MACRO marginal_by_size(g) AS TABLE
SELECT UnitId, UnitIndex, Slice, Metric, Size, avg(Delta) AS MeanDelta,
       stddev_samp(Delta) AS StdDev, count(*) AS Samples
FROM marginal_contributions(g)
WHERE Kind = 'unit'
GROUP BY ALL;

-- Leave-one-out: value(all) - value(all without the unit).
CREATE MACRO loo(g) AS TABLE
SELECT mc.UnitId, mc.Slice, mc.Metric, avg(mc.Delta) AS Value,
       any_value(mc.WithValue) AS FullValue, any_value(mc.WithoutValue) AS WithoutValue
FROM marginal_contributions(g) mc JOIN Grids gr ON gr.Name = g
WHERE mc.Kind = 'unit' AND mc.Size = gr.NUnits - 1
GROUP BY ALL;

-- Data strikes: value(all) - value(all without the group's units).
CREATE MACRO strikes(g) AS TABLE
SELECT mc.GroupName AS "Group", mc.Slice, mc.Metric, mc.Delta AS Value,
       mc.WithValue AS FullValue, mc.WithoutValue AS StruckValue,
       gr.NUnits - mc.Size AS UnitsRemoved
FROM marginal_contributions(g) mc JOIN Grids gr ON gr.Name = g
WHERE mc.Kind = 'group';

-- Shapley values. Permutation grids: the Monte-Carlo mean over permutations and its
-- standard error (TMC-Shapley when truncated). Exhaustive grids: exact, as the mean over
-- coalition sizes of the mean marginal contribution at that size. Grids of random pairs:
-- the same stratified mean over the sizes they sampled.
CREATE MACRO shapley(g) AS TABLE
WITH info AS (SELECT Design, NUnits, coalesce(DesignArgs->>'truncate', '') <> '' AS Trunc
              FROM Grids WHERE Name = g),
mc AS (SELECT * FROM marginal_contributions(g) WHERE Kind = 'unit'),
perm AS (
    SELECT UnitId, Slice, Metric, avg(Delta) AS Value,
           stddev_samp(Delta) / sqrt(count(*)) AS StdErr, count(*) AS Samples,
           CASE WHEN (SELECT Trunc FROM info) THEN 'tmc' ELSE 'monte_carlo' END AS Method
    FROM mc WHERE (SELECT Design FROM info) = 'permutations'
    GROUP BY ALL),
by_size AS (
    SELECT UnitId, Slice, Metric, Size, avg(Delta) AS MeanDelta,
           coalesce(var_samp(Delta), 0) / count(*) AS VarMean, count(*) AS n
    FROM mc WHERE (SELECT Design FROM info) NOT IN ('permutations', 'leave_one_out', 'strikes', 'whatif')
    GROUP BY ALL),
strat AS (
    SELECT UnitId, Slice, Metric, avg(MeanDelta) AS Value,
           CASE WHEN (SELECT Design FROM info) = 'exhaustive' THEN 0.0
                ELSE sqrt(sum(VarMean)) / count(*) END AS StdErr, sum(n) AS Samples,
           CASE WHEN (SELECT Design FROM info) = 'exhaustive' THEN 'exact' ELSE 'stratified' END
               AS Method
    FROM by_size GROUP BY ALL)
SELECT * FROM perm UNION ALL SELECT * FROM strat;

-- Beta(a, b) Shapley (Kwon & Zou 2022): coalitions of size s (without the unit) among n
-- units weigh C(n-1, s) * B(s + b, n - 1 - s + a) / B(a, b) in total, a Beta-binomial over
-- sizes: with the paper's naming, Beta(16, 1) favours small coalitions and Beta(1, 1) is
-- Shapley. Exact on exhaustive grids: on other pair designs the weights of the sizes that
-- were sampled are renormalized to sum to 1.
CREATE MACRO beta_shapley(g, a, b) AS TABLE
WITH info AS (SELECT NUnits AS n FROM Grids WHERE Name = g),
by_size AS (
    SELECT UnitId, Slice, Metric, Size, avg(Delta) AS MeanDelta
    FROM marginal_contributions(g) WHERE Kind = 'unit' GROUP BY ALL),
w AS (
    SELECT *, exp(lgamma((SELECT n FROM info)) - lgamma(Size + 1) - lgamma((SELECT n FROM info) - Size)
                  + lgamma(Size + b) + lgamma((SELECT n FROM info) - 1 - Size + a)
                  - lgamma((SELECT n FROM info) - 1 + a + b)
                  - lgamma(a) - lgamma(b) + lgamma(a + b)) AS Weight
    FROM by_size)
SELECT UnitId, Slice, Metric, sum(Weight * MeanDelta) / sum(Weight) AS Value,
       count(*) AS Sizes, sum(Weight) AS WeightCovered
FROM w GROUP BY ALL;

-- Banzhaf values by the maximum-sample-reuse estimator (Wang & Jia 2023): the mean value of
-- the grid's subsets that contain the unit minus the mean of those that do not. Exact on an
-- exhaustive grid: an unbiased estimate on a RANDOM m grid (each unit in with probability 1/2).
CREATE MACRO banzhaf(g) AS TABLE
WITH cells AS (
    SELECT c.SubsetId, e.Name AS Slice, c.Metric, c.Value
    FROM GridCells c
    JOIN EvalSlices e ON e.Grid = c.Grid AND e.SliceId = c.SliceId
    JOIN TrainSubsets s ON s.Grid = c.Grid AND s.SubsetId = c.SubsetId
    WHERE c.Grid = g AND c.Value IS NOT NULL AND s.Edit IS NULL),
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

-- Data scaling law per slice and metric: metric = A - B * size^(-C). Form 'loglog' fixes A at
-- the metric's perfect value and regresses ln|A - mean metric at each size| on ln(size)
-- (R2 in log space): form 'power' (all three free) is read from GridScalingFits.
CREATE MACRO scaling_law(g) AS TABLE
WITH pts AS (
    SELECT c.SliceId, c.Metric, s.Size, avg(c.Value) AS Mean
    FROM GridCells c JOIN TrainSubsets s ON s.Grid = c.Grid AND s.SubsetId = c.SubsetId
    WHERE c.Grid = g AND c.Value IS NOT NULL AND s.Edit IS NULL AND s.Size >= 1
    GROUP BY ALL),
signed AS (
    SELECT p.*, gm.Best, gm.Best - p.Mean AS Err,
           CASE WHEN avg(gm.Best - p.Mean) OVER (PARTITION BY p.SliceId, p.Metric) >= 0
                THEN 1.0 ELSE -1.0 END AS Sign
    FROM pts p JOIN GridMetrics gm ON gm.Grid = g AND gm.Metric = p.Metric),
loglog AS (
    SELECT SliceId, Metric, 'loglog' AS Form, any_value(Best) AS A,
           any_value(Sign) * exp(regr_intercept(ln(Sign * Err), ln(Size))) AS B,
           -regr_slope(ln(Sign * Err), ln(Size)) AS C,
           regr_r2(ln(Sign * Err), ln(Size)) AS R2,
           count(*) AS Points, min(Size) AS MinSize, max(Size) AS MaxSize
    FROM signed WHERE Sign * Err > 0
    GROUP BY SliceId, Metric HAVING count(*) >= 2),
fits AS (
    SELECT SliceId, Metric, 'loglog' AS Form, A, B, C, R2, Points, MinSize, MaxSize FROM loglog
    UNION ALL
    SELECT SliceId, Metric, Form, A, B, C, R2, Points, MinSize, MaxSize
    FROM GridScalingFits WHERE Grid = g)
SELECT e.Name AS Slice, f.Metric, f.Form, f.A, f.B, f.C, f.R2, f.Points, f.MinSize, f.MaxSize
FROM fits f JOIN EvalSlices e ON e.Grid = g AND e.SliceId = f.SliceId;

-- Shapley estimates shaped as DataValues rows (Relation, TupleId), to compare with other
-- valuation methods in SQL: see docs/grid.md for the INSERT.
CREATE MACRO grid_data_values(g) AS TABLE
SELECT u.Relation, u.TupleId, s.UnitId, s.Slice, s.Metric, s.Method || '_shapley' AS Method,
       s.Value, s.StdErr
FROM shapley(g) s JOIN grid_units(g) u ON u.UnitId = s.UnitId;
