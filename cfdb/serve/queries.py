"""The SQL behind every page of the explorer, with DuckDB named parameters (``$grid``).

Each page shows these texts, with the parameters inlined, as links to the SQL box, so what a
page shows can be re-run (and changed) by hand. Identifiers that come from the data (feature
columns) are quoted by the caller; ORDER BY choices come from fixed dictionaries here.
"""

from __future__ import annotations

#: Tables the overview counts, in the order it lists them.
COUNTED = (
    "Instances",
    "Features",
    "Models",
    "Predictions",
    "CFs",
    "Prediction_CFs",
    "CFQueries",
    "CFBatches",
    "Conditions",
    "Grids",
    "TrainSubsets",
    "GridCells",
    "ValuationRuns",
    "DataValues",
    "UnitScalingLaws",
)


def counts(tables: list[str]) -> str:
    """One row per table: its row count."""
    return "\nUNION ALL ".join(
        f'SELECT \'{t}\' AS "Table", count(*) AS "Rows" FROM {t}' for t in tables
    )


FEATURES = """\
SELECT Name, Type, Domain, Min, Max, MAD, Mutable
FROM Features ORDER BY Position"""

SPLITS = """\
SELECT split, count(*) AS Instances FROM Instances GROUP BY split ORDER BY split"""

MODELS = """\
SELECT ModelId, Name, Kind, Task, TrainRows, Metrics,
       (SELECT count(*) FROM Predictions P WHERE P.ModelId = M.ModelId) AS Predictions, CreatedAt
FROM Models M ORDER BY ModelId"""

GRIDS = """\
SELECT g.Name, g.Kind, g.Design, g.NUnits AS Units, g.ModelKind AS Model, g.Metrics,
       (SELECT count(*) FROM TrainSubsets s WHERE s.Grid = g.Name) AS Subsets,
       (SELECT count(*) FROM EvalSlices e WHERE e.Grid = g.Name) AS Slices,
       (SELECT count(DISTINCT c.SubsetId) FROM GridCells c WHERE c.Grid = g.Name) AS Trained,
       (SELECT count(DISTINCT c.SubsetId) FROM GridCells c
        WHERE c.Grid = g.Name AND c.Status = 'failed') AS Failed,
       (SELECT max(c.CreatedAt) FROM GridCells c WHERE c.Grid = g.Name) AS LastCell
FROM Grids g ORDER BY g.Name"""

RUNS = """\
SELECT RunId, Method, Utility, Pipeline, TrainRows, EvalRows, UtilityAll,
       (SELECT count(*) FROM DataValues v WHERE v.RunId = r.RunId) AS Tuples,
       (SELECT string_agg(DISTINCT v.Relation, ', ') FROM DataValues v
        WHERE v.RunId = r.RunId) AS Relations, Seconds
FROM ValuationRuns r ORDER BY RunId"""

CFQUERIES = """\
SELECT QueryId, BatchId, Mode, Generator, Predictions, Generated, Reused, Infeasible, Failed,
       MeanDistance, Seconds, Text
FROM CFQueries ORDER BY QueryId"""

BATCHES = """\
SELECT BatchId, Mode, Queries, Nodes, UniqueConditions, Classes, Edges, GeneratorCalls,
       Reused, CallsSaved, MeanDistance, Seconds
FROM CFBatches ORDER BY BatchId"""

# -- grid ------------------------------------------------------------------------------------
GRID = "SELECT * FROM Grids WHERE Name = $grid"

GRID_PROGRESS = """\
SELECT (SELECT count(*) FROM TrainSubsets WHERE Grid = $grid) AS Subsets,
       (SELECT count(*) FROM EvalSlices WHERE Grid = $grid) AS Slices,
       (SELECT len(Metrics) FROM Grids WHERE Name = $grid) AS Metrics,
       (SELECT count(*) FROM GridCells WHERE Grid = $grid) AS Cells,
       (SELECT count(DISTINCT SubsetId) FROM GridCells WHERE Grid = $grid) AS Trained,
       (SELECT count(DISTINCT SubsetId) FROM GridCells
        WHERE Grid = $grid AND Status = 'failed') AS Failed,
       (SELECT max(CreatedAt) FROM GridCells WHERE Grid = $grid) AS LastCell"""

SLICES = "SELECT SliceId, Name, Predicate, Rows FROM EvalSlices WHERE Grid = $grid ORDER BY SliceId"

#: Row orders of the heat map: by subset size, or grouped by the design's role of a subset.
ORDERS = {
    "size": "Size, SubsetId",
    "design": "Role, Tag, Draw, Size, SubsetId",
}


def heatmap(order: str) -> str:
    """Cells of a grid in at most ``$bands`` bands of consecutive subsets (mean per band).

    A grid with no more subsets than bands gets one band per subset; a larger one is
    aggregated here, in DuckDB, so the page stays small whatever the grid's size.
    """
    return f"""\
WITH s AS (
    SELECT SubsetId, Size, Role, row_number() OVER (ORDER BY {ORDERS[order]}) - 1 AS Pos,
           count(*) OVER () AS N
    FROM TrainSubsets WHERE Grid = $grid),
b AS (SELECT *, CAST(floor(Pos * least($bands, N) / N) AS BIGINT) AS Band FROM s),
bands AS (
    SELECT Band, count(*) AS Subsets, min(Size) AS MinSize, max(Size) AS MaxSize,
           min(SubsetId) AS FirstId, max(SubsetId) AS LastId, string_agg(DISTINCT Role, ', ') AS Roles
    FROM b GROUP BY Band)
SELECT bands.*, c.SliceId, avg(c.Value) AS Value, count(c.Value) AS Cells
FROM bands JOIN b USING (Band)
LEFT JOIN GridCells c ON c.Grid = $grid AND c.SubsetId = b.SubsetId AND c.Metric = $metric
GROUP BY ALL ORDER BY Band, c.SliceId"""


def subset_bands(order: str) -> str:
    """The band of each subset (as :func:`heatmap` numbers them)."""
    return f"""\
WITH s AS (
    SELECT SubsetId, row_number() OVER (ORDER BY {ORDERS[order]}) - 1 AS Pos,
           count(*) OVER () AS N
    FROM TrainSubsets WHERE Grid = $grid)
SELECT SubsetId, CAST(floor(Pos * least($bands, N) / N) AS BIGINT) AS Band FROM s"""


MEMBERS = """\
SELECT m.SubsetId, count(*) AS Units,
       list(u.UnitId ORDER BY m.UnitIndex)[1:$shown] AS Members
FROM grid_members($grid) m JOIN GridUnits u ON u.Grid = $grid AND u.UnitIndex = m.UnitIndex
GROUP BY m.SubsetId"""

UNIT_VALUES = """\
SELECT u.UnitIndex, u.UnitId, u.Rows, l.Value AS LOO, s.Value AS Shapley,
       s.StdErr AS ShapleyStdErr, s.Method AS ShapleyMethod, bz.Value AS Banzhaf,
       bs.Value AS BetaShapley_16_1
FROM GridUnits u
LEFT JOIN loo($grid) l ON l.UnitId = u.UnitId AND l.Slice = $slice AND l.Metric = $metric
LEFT JOIN shapley($grid) s ON s.UnitId = u.UnitId AND s.Slice = $slice AND s.Metric = $metric
LEFT JOIN banzhaf($grid) bz ON bz.UnitId = u.UnitId AND bz.Slice = $slice AND bz.Metric = $metric
LEFT JOIN beta_shapley($grid, 16, 1) bs
     ON bs.UnitId = u.UnitId AND bs.Slice = $slice AND bs.Metric = $metric
WHERE u.Grid = $grid
ORDER BY u.UnitIndex
LIMIT $limit OFFSET $offset"""

UNIT = "SELECT UnitIndex, UnitId, TupleId, Rows FROM GridUnits WHERE Grid = $grid AND UnitIndex = $unit"

UNIT_BY_SLICE = """\
WITH u AS (SELECT UnitId FROM GridUnits WHERE Grid = $grid AND UnitIndex = $unit),
e AS (SELECT Name AS Slice FROM EvalSlices WHERE Grid = $grid)
SELECT e.Slice,
       (SELECT Value FROM loo($grid) x WHERE x.UnitId = (SELECT UnitId FROM u)
        AND x.Slice = e.Slice AND x.Metric = $metric) AS LOO,
       (SELECT Value FROM shapley($grid) x WHERE x.UnitId = (SELECT UnitId FROM u)
        AND x.Slice = e.Slice AND x.Metric = $metric) AS Shapley,
       (SELECT Value FROM banzhaf($grid) x WHERE x.UnitId = (SELECT UnitId FROM u)
        AND x.Slice = e.Slice AND x.Metric = $metric) AS Banzhaf,
       (SELECT Value FROM beta_shapley($grid, 16, 1) x WHERE x.UnitId = (SELECT UnitId FROM u)
        AND x.Slice = e.Slice AND x.Metric = $metric) AS BetaShapley_16_1
FROM e ORDER BY e.Slice"""

UNIT_PAIRS = """\
SELECT PairId, WithoutId, WithId, Size, Truncated
FROM SubsetPairs WHERE Grid = $grid AND Kind = 'unit' AND UnitIndex = $unit
ORDER BY Size, PairId
LIMIT $limit"""

UNIT_MARGINALS = """\
SELECT Size, MeanDelta, StdDev, Samples
FROM marginal_by_size($grid)
WHERE UnitIndex = $unit AND Slice = $slice AND Metric = $metric
ORDER BY Size"""

UNIT_LAW = """\
SELECT Method, C, Alpha, R2, MinSize, MaxSize, Status
FROM unit_scaling_laws($grid)
WHERE UnitIndex = $unit AND Slice = $slice AND Metric = $metric"""

SIZE_MEANS = """\
SELECT e.Name AS Slice, s.Size, avg(c.Value) AS Mean, count(*) AS Cells
FROM GridCells c
JOIN TrainSubsets s ON s.Grid = c.Grid AND s.SubsetId = c.SubsetId
JOIN EvalSlices e ON e.Grid = c.Grid AND e.SliceId = c.SliceId
WHERE c.Grid = $grid AND c.Metric = $metric AND c.Value IS NOT NULL AND s.Edit IS NULL
GROUP BY ALL ORDER BY Slice, Size"""

SCALING_FITS = """\
SELECT Slice, Form, A, B, C, R2, Points, MinSize, MaxSize
FROM scaling_law($grid) WHERE Metric = $metric ORDER BY Slice, Form"""

GROUP_PAIRS = "SELECT count(*) FROM SubsetPairs WHERE Grid = $grid AND Kind = 'group'"

#: Data strikes: the full set against the set without each group (the memo's moves to a row
#: with less data).
STRIKES = """\
SELECT "Group", Slice, Value, FullValue, StruckValue, UnitsRemoved
FROM strikes($grid) WHERE Metric = $metric
ORDER BY Slice, "Group"
"""

# -- counterfactuals -------------------------------------------------------------------------
CFQUERY = "SELECT * FROM CFQueries WHERE QueryId = $query"

CONDITION_STATUS = """\
SELECT Status, count(*) AS Predictions FROM Conditions WHERE QueryId = $query
GROUP BY Status ORDER BY Status"""


def cf_rows(features: list[str], optimal: str | None) -> str:
    """Each prediction of a query with its condition and CFs, instance and CF side by side.

    ``features`` are quoted column names; ``optimal`` an expression for the optimality flag
    (``NULL`` when the file records none).
    """
    inst = ", ".join(f"I.{f} AS {_alias('I', f)}" for f in features)
    cf = ", ".join(f"C.{f} AS {_alias('C', f)}" for f in features)
    return f"""\
SELECT K.PredictionId, M.Name AS Model, P.InstanceId, P.Label AS Predicted, C.Label AS CfLabel,
       K.Status, K.Condition, K.Error, PC.CfId, PC.Distance, PC.Reused, C.Generator,
       {optimal or "NULL"} AS Optimal, {inst}, {cf}
FROM Conditions K
JOIN Predictions P ON P.PredictionId = K.PredictionId
JOIN Instances I ON I.InstanceId = P.InstanceId
LEFT JOIN Models M ON M.ModelId = P.ModelId
LEFT JOIN Prediction_CFs PC ON PC.QueryId = K.QueryId AND PC.PredictionId = K.PredictionId
LEFT JOIN CFs C ON C.CfId = PC.CfId
WHERE K.QueryId = $query
ORDER BY K.PredictionId, PC.Distance NULLS LAST, PC.CfId
LIMIT $limit OFFSET $offset"""


def _alias(prefix: str, quoted: str) -> str:
    return '"' + prefix + "." + quoted.strip('"').replace('"', '""') + '"'


def burden(group: str) -> str:
    """Burden per group (CFDB paper, section 5): mean distance of each prediction's closest CF."""
    return f"""\
WITH best AS (
    SELECT PredictionId, min(Distance) AS Distance
    FROM Prediction_CFs WHERE QueryId = $query GROUP BY PredictionId)
SELECT I.{group} AS "Group", count(*) AS Predictions, avg(b.Distance) AS Burden
FROM best b JOIN Predictions P USING (PredictionId) JOIN Instances I USING (InstanceId)
GROUP BY ALL ORDER BY "Group" NULLS LAST"""


GROUP_FEATURES = """\
SELECT Name FROM Features WHERE Type IN ('categorical', 'boolean')
ORDER BY Mutable, Position"""

FEATURE_NAMES = "SELECT Name, Type FROM Features ORDER BY Position"

# -- data values -----------------------------------------------------------------------------
RUN = "SELECT * FROM ValuationRuns WHERE RunId = $run"

#: The values of the tuples a run's training rows come from (a run over a base table also
#: values, at 0, the tuples its training query filtered out); every tuple when the run has no
#: provenance (e.g. Shapley values of a grid stored as a run).
VALUED = """\
WITH v AS (
    SELECT d.* FROM data_values($run) d
    WHERE NOT EXISTS (SELECT 1 FROM Provenance WHERE RunId = $run)
       OR EXISTS (SELECT 1 FROM Provenance p
                  WHERE p.RunId = $run AND p.Relation = d.Relation AND p.TupleId = d.TupleId))
"""

RELATIONS = (
    VALUED
    + """\
SELECT d.Relation, count(*) AS Tuples, count(v.TupleId) AS InTraining, sum(d.Value) AS Total,
       avg(v.Value) AS MeanInTraining, min(d.Value) AS Min, max(d.Value) AS Max,
       count(*) FILTER (WHERE d.Benefit < 0) AS Harmful
FROM data_values($run) d LEFT JOIN v ON v.Relation = d.Relation AND v.TupleId = d.TupleId
GROUP BY d.Relation ORDER BY d.Relation"""
)

#: Ranked tuples: most harmful first, or most valuable first.
TUPLE_ORDERS = {"harmful": "Benefit ASC", "valuable": "Benefit DESC"}


def tuples(order: str) -> str:
    return f"""\
SELECT Rank, Relation, TupleId, TupleKey, Method, Value, Benefit
FROM data_values($run)
WHERE $relation = '' OR Relation = $relation
ORDER BY {TUPLE_ORDERS[order]}, Relation, TupleId
LIMIT $limit OFFSET $offset"""


HISTOGRAM = (
    VALUED
    + """\
, r AS (SELECT min(Value) AS lo, greatest(max(Value) - min(Value), 1e-12) AS w FROM v)
SELECT Relation, least(floor((Value - lo) / w * $bins), $bins - 1) AS Bin,
       lo + (least(floor((Value - lo) / w * $bins), $bins - 1) + 0.5) * w / $bins AS Center,
       count(*) AS Tuples
FROM v, r WHERE Value IS NOT NULL GROUP BY ALL ORDER BY Relation, Bin"""
)

#: The repair curve: the training tuples examined most harmful first, and the utility the
#: values predict once they are removed (the values of a run add up to its UtilityAll). At
#: most ``$points`` points per relation.
REPAIR_CURVE = (
    VALUED
    + """\
, o AS (
    SELECT Relation, Value,
           row_number() OVER (PARTITION BY Relation ORDER BY Benefit, TupleId) AS K,
           count(*) OVER (PARTITION BY Relation) AS N,
           sum(Value) OVER (PARTITION BY Relation ORDER BY Benefit, TupleId
                            ROWS UNBOUNDED PRECEDING) AS Removed
    FROM v)
SELECT Relation, K AS Examined, K / N AS Share,
       (SELECT UtilityAll FROM ValuationRuns WHERE RunId = $run) - Removed AS Predicted
FROM o WHERE K % greatest(N // $points, 1) = 0 OR K = N OR K = 1
ORDER BY Relation, K"""
)
