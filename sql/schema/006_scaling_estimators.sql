-- cfdb schema v5: robust individualized scaling laws and the amortized estimator (Covert, Ji,
-- Hashimoto & Zou, ICML 2024, sections 5 and 6).
--
-- New columns of UnitScalingLaws:
--   R2Linear  the law's R2 against the per-size mean Delta (sizes drawn one per sample are
--             grouped into bins of neighbouring sizes), on Delta's scale
--   Evidence  mle: likelihood-ratio statistic of the law against C = 0
--   Noise     mle: 'size' (per-size sample variances) or 'power' (Sigma^2 * k^(-Beta))
-- New statuses: 'zero' (the contributions cannot be told from 0: C = 0, Alpha NULL, worth 0 at
-- every size, like 'constant'). New method: 'amortized' (a network from a unit's features to
-- its law; it predicts every unit of the grid, Samples = 0 for units without samples).
-- The macros of v4 are replaced: a method is picked as mle, else amortized, else ols; 'zero'
-- units count as worth 0. New macros: the Monte-Carlo distributional Shapley value from the
-- grid's samples and its agreement with the laws' approximation.

ALTER TABLE UnitScalingLaws ADD COLUMN R2Linear DOUBLE;
ALTER TABLE UnitScalingLaws ADD COLUMN Evidence DOUBLE;
ALTER TABLE UnitScalingLaws ADD COLUMN Noise VARCHAR;

-- psi at size k of a law (0 for a unit that never changes the metric, or cannot be told from 0).
CREATE OR REPLACE MACRO unit_scaling_psi(c, alpha, k) AS
    CASE WHEN c = 0 THEN 0.0 ELSE c * pow(k, -alpha) END;

-- The fitted laws of a grid, for one method: the given one, else 'mle' when fitted, else
-- 'amortized', else 'ols'.
CREATE OR REPLACE MACRO unit_scaling_laws(g, fit_method := NULL) AS TABLE
WITH pick AS (
    SELECT CASE WHEN count(*) FILTER (WHERE Method = 'mle') > 0 THEN 'mle'
                WHEN count(*) FILTER (WHERE Method = 'amortized') > 0 THEN 'amortized'
                ELSE 'ols' END AS M
    FROM UnitScalingLaws WHERE Grid = g)
SELECT l.UnitId, l.UnitIndex, e.Name AS Slice, l.Metric, l.Method, l.C, l.Alpha, l.Sigma,
       l.Beta, l.R2, l.Samples, l.Sizes, l.MinSize, l.MaxSize, l.LogLik, l.Converged,
       l.AtBound, l.SignChanges, l.Status, l.Message, l.R2Linear, l.Evidence, l.Noise
FROM UnitScalingLaws l JOIN EvalSlices e ON e.Grid = l.Grid AND e.SliceId = l.SliceId
WHERE l.Grid = g AND l.Method = coalesce(fit_method, (SELECT M FROM pick));

-- Each unit's value at dataset size k, C * k^(-Alpha), and its rank (1 = adds the most).
CREATE OR REPLACE MACRO unit_scaling_value(g, k, fit_method := NULL) AS TABLE
WITH v AS (
    SELECT UnitId, Slice, Metric, Method, k AS Size, unit_scaling_psi(C, Alpha, k) AS Value
    FROM unit_scaling_laws(g, fit_method := fit_method) WHERE Status IN ('ok', 'zero', 'constant'))
SELECT *, row_number() OVER (PARTITION BY Slice, Metric ORDER BY Value DESC, UnitId) AS Rank
FROM v;

-- The dataset size at which units a and b are worth the same (NULL: they never cross, e.g.
-- contributions of opposite signs or equal exponents), and which is worth more below and
-- above it. Sizes are real numbers; a crossing below 1 means b's ranking holds throughout.
CREATE OR REPLACE MACRO unit_scaling_crossing(g, a, b, fit_method := NULL) AS TABLE
WITH l AS (
    SELECT * FROM unit_scaling_laws(g, fit_method := fit_method)
    WHERE Status IN ('ok', 'zero', 'constant')),
p AS (
    SELECT x.Slice, x.Metric, x.Method, x.UnitId AS UnitA, y.UnitId AS UnitB,
           x.C AS Ca, x.Alpha AS Aa, y.C AS Cb, y.Alpha AS Ab
    FROM l x JOIN l y ON x.Slice = y.Slice AND x.Metric = y.Metric
    WHERE x.UnitId = CAST(a AS VARCHAR) AND y.UnitId = CAST(b AS VARCHAR)),
k AS (
    SELECT *, CASE WHEN Ca <> 0 AND Cb <> 0 AND sign(Ca) = sign(Cb) AND Aa <> Ab
                   THEN exp((ln(abs(Ca)) - ln(abs(Cb))) / (Aa - Ab)) END AS CrossingSize
    FROM p),
v AS (
    SELECT *,
           unit_scaling_psi(Ca, Aa, coalesce(CrossingSize / 2, 1)) -
           unit_scaling_psi(Cb, Ab, coalesce(CrossingSize / 2, 1)) AS DiffBelow,
           unit_scaling_psi(Ca, Aa, coalesce(CrossingSize * 2, 1)) -
           unit_scaling_psi(Cb, Ab, coalesce(CrossingSize * 2, 1)) AS DiffAbove
    FROM k)
SELECT Slice, Metric, Method, UnitA, UnitB, CrossingSize,
       CASE WHEN DiffBelow > 0 THEN UnitA WHEN DiffBelow < 0 THEN UnitB END AS LargerBelow,
       CASE WHEN DiffAbove > 0 THEN UnitA WHEN DiffAbove < 0 THEN UnitB END AS LargerAbove
FROM v;

-- Scaling-aware valuation: the mean of C * k^(-Alpha) over the dataset sizes kmin..kmax (the
-- paper's approximation of the distributional Shapley value, whose sizes are uniform), and
-- its rank (1 = most valuable).
CREATE OR REPLACE MACRO unit_scaling_valuation(g, kmin, kmax, fit_method := NULL) AS TABLE
WITH v AS (
    SELECT l.UnitId, l.Slice, l.Metric, l.Method, kmin AS MinSize, kmax AS MaxSize,
           avg(unit_scaling_psi(l.C, l.Alpha, r.k)) AS Value
    FROM unit_scaling_laws(g, fit_method := fit_method) l, range(kmin, kmax + 1) r(k)
    WHERE l.Status IN ('ok', 'zero', 'constant')
    GROUP BY l.UnitId, l.Slice, l.Metric, l.Method)
SELECT *, row_number() OVER (PARTITION BY Slice, Metric ORDER BY Value DESC, UnitId) AS Rank
FROM v;

-- Subset selection: which n units to add to a dataset of size k to gain the most (the top n
-- by psi_k at k), beside the ranking at another size other_k.
CREATE OR REPLACE MACRO unit_scaling_selection(g, k, other_k, n, fit_method := NULL) AS TABLE
WITH v AS (
    SELECT UnitId, Slice, Metric, Method, unit_scaling_psi(C, Alpha, k) AS AtK,
           unit_scaling_psi(C, Alpha, other_k) AS AtOther
    FROM unit_scaling_laws(g, fit_method := fit_method) WHERE Status IN ('ok', 'zero', 'constant')),
r AS (
    SELECT *,
           row_number() OVER (PARTITION BY Slice, Metric ORDER BY AtK DESC, UnitId) AS RankAtK,
           row_number() OVER (PARTITION BY Slice, Metric ORDER BY AtOther DESC, UnitId) AS RankAtOther
    FROM v)
SELECT UnitId, Slice, Metric, Method, k AS Size, AtK AS Value, RankAtK AS Rank,
       RankAtK <= n AS Selected, other_k AS OtherSize, AtOther AS OtherValue,
       RankAtOther AS OtherRank, RankAtOther <= n AS SelectedAtOther
FROM r;

-- How much the two selections of unit_scaling_selection agree: the units in both top-n sets,
-- their Jaccard index, and the rank correlation (Spearman) of the two whole rankings.
CREATE OR REPLACE MACRO unit_scaling_selection_overlap(g, k, other_k, n, fit_method := NULL) AS TABLE
SELECT Slice, Metric, Method, any_value(Size) AS Size, any_value(OtherSize) AS OtherSize,
       count(*) FILTER (WHERE Selected) AS Selected,
       count(*) FILTER (WHERE Selected AND SelectedAtOther) AS Overlap,
       count(*) FILTER (WHERE Selected AND SelectedAtOther)
           / nullif(count(*) FILTER (WHERE Selected OR SelectedAtOther), 0) AS Jaccard,
       corr(Rank, OtherRank) AS RankCorrelation
FROM unit_scaling_selection(g, k, other_k, n, fit_method := fit_method)
GROUP BY Slice, Metric, Method;

-- The laws against the measurements: per unit and dataset size, the measured mean
-- contribution (psi_k, oriented as the laws) beside the fitted C * k^(-Alpha).
CREATE OR REPLACE MACRO unit_scaling_check(g, fit_method := NULL) AS TABLE
WITH m AS (
    SELECT b.UnitId, b.Slice, b.Metric, b.Size, b.Samples, b.StdDev,
           CASE WHEN gm.HigherIsBetter THEN b.MeanDelta ELSE -b.MeanDelta END AS Measured
    FROM marginal_by_size(g) b JOIN GridMetrics gm ON gm.Grid = g AND gm.Metric = b.Metric)
SELECT m.UnitId, m.Slice, m.Metric, l.Method, m.Size, m.Samples, m.Measured, m.StdDev,
       unit_scaling_psi(l.C, l.Alpha, m.Size) AS Predicted
FROM m JOIN unit_scaling_laws(g, fit_method := fit_method) l
     ON l.UnitId = m.UnitId AND l.Slice = m.Slice AND l.Metric = m.Metric
WHERE l.Status IN ('ok', 'zero', 'constant');

-- R2 of the laws' predictions against the measured psi_k across units: per dataset size and
-- overall (Size NULL), on the contributions' scale and in log space (ln|psi|).
CREATE OR REPLACE MACRO unit_scaling_r2(g, fit_method := NULL) AS TABLE
WITH c AS (
    SELECT *, ln(abs(nullif(Measured, 0))) AS LogM, ln(abs(nullif(Predicted, 0))) AS LogP
    FROM unit_scaling_check(g, fit_method := fit_method)),
per AS (
    SELECT Slice, Metric, Method, Size, count(*) AS Units,
           1 - sum(power(Measured - Predicted, 2)) / nullif(var_pop(Measured) * count(*), 0) AS R2,
           1 - sum(power(LogM - LogP, 2))
               / nullif(var_pop(LogM) FILTER (WHERE LogP IS NOT NULL)
                        * count(LogM) FILTER (WHERE LogP IS NOT NULL), 0) AS R2Log
    FROM c GROUP BY Slice, Metric, Method, Size),
overall AS (
    SELECT Slice, Metric, Method, NULL::BIGINT AS Size, count(*) AS Units,
           1 - sum(power(Measured - Predicted, 2)) / nullif(var_pop(Measured) * count(*), 0) AS R2,
           1 - sum(power(LogM - LogP, 2))
               / nullif(var_pop(LogM) FILTER (WHERE LogP IS NOT NULL)
                        * count(LogM) FILTER (WHERE LogP IS NOT NULL), 0) AS R2Log
    FROM c GROUP BY Slice, Metric, Method)
SELECT * FROM per UNION ALL SELECT * FROM overall;

-- The Monte-Carlo distributional Shapley value of each unit from the grid's own samples (Ghorbani,
-- Kim & Zou 2020, with dataset sizes uniform on kmin..kmax): the mean over the measured sizes
-- in that range of the mean Delta at each size (oriented as the laws: positive helps). With the
-- MARGINAL design's uniform sizes (one sample per draw), it is the plain mean of the samples.
CREATE OR REPLACE MACRO unit_scaling_dshap_mc(g, kmin, kmax) AS TABLE
WITH m AS (
    SELECT b.UnitId, b.Slice, b.Metric, b.Size, b.Samples,
           CASE WHEN gm.HigherIsBetter THEN b.MeanDelta ELSE -b.MeanDelta END AS Measured
    FROM marginal_by_size(g) b JOIN GridMetrics gm ON gm.Grid = g AND gm.Metric = b.Metric
    WHERE b.Size BETWEEN kmin AND kmax),
v AS (
    SELECT UnitId, Slice, Metric, kmin AS MinSize, kmax AS MaxSize, avg(Measured) AS Value,
           sum(Samples) AS Samples, count(*) AS Sizes
    FROM m GROUP BY UnitId, Slice, Metric)
SELECT *, row_number() OVER (PARTITION BY Slice, Metric ORDER BY Value DESC, UnitId) AS Rank
FROM v;

-- How well the laws' approximation of the distributional Shapley value (unit_scaling_valuation)
-- ranks the units like the Monte-Carlo estimate from the samples (unit_scaling_dshap_mc):
-- Spearman rank correlation and Pearson correlation over the units that have both.
CREATE OR REPLACE MACRO unit_scaling_dshap_check(g, kmin, kmax, fit_method := NULL) AS TABLE
WITH l AS (SELECT * FROM unit_scaling_valuation(g, kmin, kmax, fit_method := fit_method)),
mc AS (SELECT * FROM unit_scaling_dshap_mc(g, kmin, kmax)),
j AS (
    SELECT l.Slice, l.Metric, l.Method, l.Value AS LawValue, mc.Value AS McValue,
           rank() OVER (PARTITION BY l.Slice, l.Metric ORDER BY l.Value) AS LawRank,
           rank() OVER (PARTITION BY l.Slice, l.Metric ORDER BY mc.Value) AS McRank
    FROM l JOIN mc ON mc.UnitId = l.UnitId AND mc.Slice = l.Slice AND mc.Metric = l.Metric)
SELECT Slice, Metric, Method, count(*) AS Units, corr(LawRank, McRank) AS RankCorrelation,
       corr(LawValue, McValue) AS Correlation
FROM j GROUP BY Slice, Metric, Method;
