"""CREATE GRID / MATERIALIZE GRID / WHATIF through SQL; the aggregation macros against
values computed by this test from the definitions over the grid's own cells."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

import cfdb
from cfdb.errors import CfdbCatalogError, CfdbDataError, CfdbSyntaxError, CfdbUnsupportedError
from cfdb.grid import values as ref

EVAL = "SELECT * FROM pts WHERE part = 'eval'"


def points(n_groups: int, seed: int, n: int = 90) -> pd.DataFrame:
    """Noisy 2-D points labelled by a line; ``grp`` assigns rows to ``n_groups`` providers."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    label = np.where(x1 - 0.7 * x2 + rng.normal(0, 0.8, n) > 0, "yes", "no")
    part = np.where(np.arange(n) < n * 2 // 3, "train", "eval")
    grp = np.array([f"p{i}" for i in rng.integers(0, n_groups, n)])
    grp[:n_groups] = [f"p{i}" for i in range(n_groups)]  # every provider has a row
    sex = rng.choice(["f", "m"], n)
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "x1": x1,
            "x2": x2,
            "y": label,
            "part": part,
            "grp": grp,
            "sex": sex,
        }
    )


def make_db(n_groups: int = 5, seed: int = 0, path: str | None = None) -> cfdb.Database:
    db = cfdb.connect(path)
    db.session.store.register("frame", points(n_groups, seed))
    db.sql("CREATE TABLE pts AS SELECT * FROM frame")
    db.session.store.unregister("frame")
    return db


def grid_sql(
    name: str,
    design: str,
    *,
    metrics: str = "accuracy, log_loss",
    extra: str = "",
    units: str = "UNITS BY grp",
    slice_by: str = "SLICE BY sex",
) -> str:
    return (
        f"CREATE GRID {name} TRAIN ON (SELECT id, x1, x2, y, grp FROM pts WHERE part = 'train') "
        f"{units} SUBSETS {design} EVALUATE ON ({EVAL}) {slice_by} "
        f"MODEL logistic_regression WITH (C = 0.5) METRIC {metrics} WITH (label = 'y', key = 'id'{extra})"
    )


def utility(
    db, grid: str, slice_name: str = "all", metric: str = "accuracy"
) -> tuple[dict, int, list[str]]:
    """v(S) for every subset of the grid, read from its cells and members."""
    units = [
        r[0]
        for r in db.sql(f"SELECT UnitId FROM grid_units('{grid}') ORDER BY UnitIndex").fetchall()
    ]
    members: dict[int, set[int]] = {}
    for sid, unit in db.sql(f"SELECT SubsetId, UnitIndex FROM grid_members('{grid}')").fetchall():
        members.setdefault(sid, set()).add(unit)
    v = {}
    rows = db.sql(
        f"SELECT SubsetId, Value FROM {grid} WHERE Slice = '{slice_name}' AND Metric = '{metric}'"
    ).fetchall()
    for sid, value in rows:
        v[frozenset(members.get(sid, set()))] = value
    return v, len(units), units


def macro(db, sql: str, slice_name: str = "all", metric: str = "accuracy") -> dict[str, float]:
    rows = db.sql(
        f"SELECT UnitId, Value FROM {sql} WHERE Slice = '{slice_name}' AND Metric = '{metric}'"
    ).fetchall()
    return {u: v for u, v in rows}


def shapley_by_permutations(v: dict, n: int) -> np.ndarray:
    """The definition: the average over all n! orders of each unit's marginal contribution."""
    out = np.zeros(n)
    perms = list(itertools.permutations(range(n)))
    for perm in perms:
        prefix: frozenset[int] = frozenset()
        for unit in perm:
            out[unit] += v[prefix | {unit}] - v[prefix]
            prefix = prefix | {unit}
    return out / len(perms)


@pytest.mark.parametrize(("n_groups", "seed"), [(4, 1), (5, 2), (6, 3)])
def test_exhaustive_grid_macros_equal_the_definitions(n_groups, seed):
    db = make_db(n_groups, seed)
    summary = db.sql(grid_sql("g", "EXHAUSTIVE")).fetchall()[0]
    assert summary[1:4] == (n_groups, 2**n_groups, n_groups * 2 ** (n_groups - 1))
    db.sql("MATERIALIZE GRID g")
    for slice_name, metric in (("all", "accuracy"), ("f", "log_loss")):
        v, n, units = utility(db, "g", slice_name, metric)
        assert len(v) == 2**n
        expected = shapley_by_permutations(v, n)
        got = macro(db, "shapley('g')", slice_name, metric)
        assert [got[u] for u in units] == pytest.approx(expected.tolist(), abs=1e-9)
        full, empty = v[frozenset(range(n))], v[frozenset()]
        assert sum(got.values()) == pytest.approx(full - empty)  # efficiency
        loo = macro(db, "loo('g')", slice_name, metric)
        assert [loo[u] for u in units] == pytest.approx(
            [full - v[frozenset(range(n)) - {i}] for i in range(n)]
        )
        beta11 = macro(db, "beta_shapley('g', 1, 1)", slice_name, metric)
        assert [beta11[u] for u in units] == pytest.approx(expected.tolist(), abs=1e-9)
        beta = macro(db, "beta_shapley('g', 16, 1)", slice_name, metric)
        assert [beta[u] for u in units] == pytest.approx(
            ref.beta_shapley(v, n, 16, 1).tolist(), abs=1e-9
        )
        banzhaf = macro(db, "banzhaf('g')", slice_name, metric)
        assert [banzhaf[u] for u in units] == pytest.approx(ref.banzhaf(v, n).tolist(), abs=1e-9)
    method = db.sql("SELECT DISTINCT Method, max(StdErr) FROM shapley('g') GROUP BY 1").fetchall()
    assert method == [("exact", 0.0)]
    db.close()


def test_beta_weights_by_size_sum_to_one_and_favour_small_coalitions():
    n = 7
    for a, b in ((1, 1), (16, 1), (4, 1), (1, 4)):
        total = sum(math.comb(n - 1, s) * ref.beta_weight(n, s, a, b) for s in range(n))
        assert total == pytest.approx(1.0)
    assert ref.beta_weight(n, 0, 16, 1) > ref.beta_weight(n, n - 1, 16, 1)


def test_monte_carlo_shapley_converges_to_the_exact_values():
    db = make_db(5, 4)
    db.sql(grid_sql("ex", "EXHAUSTIVE", metrics="accuracy"))
    exact = macro(db, "shapley('ex')")
    errors = {}
    for m in (4, 40, 400):
        per_seed = []
        for seed in range(3):
            name = f"mc_{m}_{seed}"
            db.sql(
                grid_sql(name, f"PERMUTATIONS {m}", metrics="accuracy", extra=f", seed = {seed}")
            )
            got = macro(db, f"shapley('{name}')")
            per_seed.append(np.mean([abs(got[u] - exact[u]) for u in exact]))
        errors[m] = float(np.mean(per_seed))
    assert errors[400] < errors[40] < errors[4]
    assert errors[400] < 0.01
    # the standard error is reported and shrinks with m
    se = db.sql("SELECT avg(StdErr) FROM shapley('mc_400_0')").fetchall()[0][0]
    se_small = db.sql("SELECT avg(StdErr) FROM shapley('mc_40_0')").fetchall()[0][0]
    assert 0 < se < se_small
    # permutations over 5 units share subsets: at most 2^5 models were trained
    assert (
        db.sql("SELECT count(*) FROM TrainSubsets WHERE Grid = 'mc_400_0'").fetchall()[0][0] <= 32
    )
    db.close()


def test_truncated_permutations_train_fewer_cells_and_count_truncated_pairs_as_zero():
    db = make_db(6, 5)
    db.sql(grid_sql("t", "PERMUTATIONS 6 TRUNCATE 0.5", metrics="accuracy", slice_by=""))
    db.sql(grid_sql("u", "PERMUTATIONS 6", metrics="accuracy", slice_by=""))
    db.sql("MATERIALIZE GRID t; MATERIALIZE GRID u")
    trained = {
        g: db.sql(f"SELECT count(DISTINCT SubsetId) FROM {g}").fetchall()[0][0] for g in "tu"
    }
    assert trained["t"] < trained["u"]
    truncated = db.sql(
        "SELECT count(*) FROM SubsetPairs WHERE Grid = 't' AND Truncated"
    ).fetchall()[0][0]
    assert truncated > 0
    zeros = db.sql(
        "SELECT count(*) FROM marginal_contributions('t') WHERE Truncated AND Delta = 0"
    ).fetchall()[0][0]
    assert zeros == truncated  # one slice, one metric
    assert db.sql("SELECT DISTINCT Method FROM shapley('t')").fetchall() == [("tmc",)]
    # truncation keeps each permutation's sum: v(last trained prefix) - v(empty)
    full = db.sql("SELECT Value FROM t WHERE Role = 'full'").fetchall()[0][0]
    assert full is not None
    db.close()


def test_leave_one_out_and_strikes_designs():
    db = make_db(4, 6)
    db.sql(grid_sql("loo", "LEAVE ONE OUT", units="", metrics="accuracy"))
    db.sql("MATERIALIZE GRID loo")
    n = db.sql("SELECT NUnits FROM Grids WHERE Name = 'loo'").fetchall()[0][0]
    assert n == 60 and db.sql("SELECT count(*) FROM loo('loo')").fetchall()[0][0] == 3 * n
    db.sql(grid_sql("s", "STRIKES BY grp", units="", metrics="accuracy"))
    db.sql("MATERIALIZE GRID s")
    rows = db.sql(
        "SELECT \"Group\", Value, FullValue, StruckValue FROM strikes('s') WHERE Slice = 'all'"
    ).fetchall()
    assert sorted(r[0] for r in rows) == ["p0", "p1", "p2", "p3"]
    for group, value, full, struck in rows:
        assert value == pytest.approx(full - struck)
        # the struck row is the model trained without that group's rows
        res = db.sql(
            f"WHATIF REMOVE (SELECT * FROM pts WHERE grp = '{group}') MODEL logistic_regression "
            "WITH (C = 0.5) TRAIN ON (SELECT id, x1, x2, y, grp FROM pts WHERE part = 'train') "
            f"EVALUATE ON ({EVAL}) METRIC accuracy WITH (label = 'y', key = 'id', features = ('x1', 'x2'))"
        ).fetchall()
        assert res[0][2:4] == pytest.approx((full, struck))
    db.close()


def test_random_pairs_and_marginal_contributions_by_size():
    db = make_db(8, 7)
    db.sql(grid_sql("r", "RANDOM 6 SIZES (1, 3, 6) PAIRS", metrics="accuracy", slice_by=""))
    db.sql("MATERIALIZE GRID r")
    rows = db.sql(
        "SELECT Size, sum(Samples) FROM marginal_by_size('r') GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [(1, 6), (3, 6), (6, 6)]
    deltas = db.sql(
        "SELECT Delta, WithValue - WithoutValue FROM marginal_contributions('r')"
    ).fetchall()
    assert all(d == pytest.approx(e) for d, e in deltas)
    assert db.sql("SELECT DISTINCT Method FROM shapley('r')").fetchall() == [("stratified",)]
    db.close()


def test_msr_banzhaf_on_random_subsets_matches_its_definition():
    db = make_db(6, 8)
    db.sql(grid_sql("b", "RANDOM 30", metrics="accuracy", slice_by=""))
    db.sql("MATERIALIZE GRID b")
    v = {}
    members: dict[int, set[int]] = {}
    for sid, unit in db.sql("SELECT SubsetId, UnitIndex FROM grid_members('b')").fetchall():
        members.setdefault(sid, set()).add(unit)
    cells = db.sql("SELECT SubsetId, Value FROM b").fetchall()
    units = [
        r[0]
        for r in db.sql(
            "SELECT UnitId FROM GridUnits WHERE Grid = 'b' ORDER BY UnitIndex"
        ).fetchall()
    ]
    got = macro(db, "banzhaf('b')")
    for i, unit in enumerate(units):
        with_i = [val for sid, val in cells if i in members.get(sid, set())]
        without = [val for sid, val in cells if i not in members.get(sid, set())]
        assert got[unit] == pytest.approx(np.mean(with_i) - np.mean(without))
    del v
    db.close()


def test_scaling_law_macro_equals_the_python_fit():
    from cfdb.grid import scaling

    db = make_db(6, 9)
    db.sql(
        grid_sql("s", "RANDOM 4 SIZES (1, 2, 3, 5, 6)", metrics="accuracy, log_loss", slice_by="")
    )
    db.sql("SELECT count(*) FROM s")  # lazily filled
    for metric, best in (("accuracy", 1.0), ("log_loss", 0.0)):
        pts = db.sql(
            f"SELECT Size, Value FROM s WHERE Metric = '{metric}' AND Size >= 1"
        ).fetchall()
        xs, ys = scaling.size_means(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
        fit = scaling.loglog_fit(xs, ys, best)
        row = db.sql(
            f"SELECT A, B, C, R2, Points FROM scaling_law('s') WHERE Metric = '{metric}' AND Form = 'loglog'"
        ).fetchall()[0]
        assert row == pytest.approx((fit.a, fit.b, fit.c, fit.r2, fit.points))
        power = db.sql(
            f"SELECT count(*) FROM scaling_law('s') WHERE Metric = '{metric}' AND Form = 'power'"
        ).fetchall()[0][0]
        assert power == 1
    db.close()


def test_lazy_filling_trains_what_a_query_reads():
    db = make_db(4, 10)
    db.sql(grid_sql("lz", "EXHAUSTIVE", metrics="accuracy"))
    assert db.sql("SELECT count(*) FROM GridCells WHERE Grid = 'lz'").fetchall() == [(0,)]
    # a macro call on the grid fills it first
    assert db.sql("SELECT count(*) FROM shapley('lz')").fetchall()[0][0] == 4 * 3
    assert db.sql(
        "SELECT count(DISTINCT SubsetId) FROM GridCells WHERE Grid = 'lz'"
    ).fetchall() == [(16,)]
    db.sql(grid_sql("off", "EXHAUSTIVE", metrics="accuracy", extra=", lazy = false"))
    assert db.sql("SELECT count(*) FROM off").fetchall() == [(0,)]
    # the grid's own view fills it too, and a statement not reading it does not
    db.sql(grid_sql("v", "LEAVE ONE OUT", metrics="accuracy"))
    db.sql("SELECT count(*) FROM GridCells WHERE Grid = 'v'")
    assert db.sql("SELECT count(*) FROM GridCells WHERE Grid = 'v'").fetchall() == [(0,)]
    assert db.sql("SELECT count(DISTINCT SubsetId) FROM v").fetchall() == [(5,)]
    db.close()


def test_materialize_limit_resumes_without_duplicates():
    db = make_db(5, 11)
    db.sql(grid_sql("g", "EXHAUSTIVE", metrics="accuracy", extra=", lazy = false"))
    first = db.sql("MATERIALIZE GRID g LIMIT 10").fetchall()[0]
    assert first[1:4] == (10, 0, 22)
    stamps = db.sql(
        "SELECT SubsetId, CreatedAt FROM GridCells WHERE Grid = 'g' ORDER BY 1"
    ).fetchall()
    second = db.sql("MATERIALIZE GRID g").fetchall()[0]
    assert second[1:4] == (22, 10, 0)
    assert db.sql("MATERIALIZE GRID g").fetchall()[0][1] == 0
    again = db.sql(
        "SELECT SubsetId, CreatedAt FROM GridCells WHERE Grid = 'g' AND SubsetId IN "
        f"({', '.join(str(s) for s, _ in stamps)}) ORDER BY 1"
    ).fetchall()
    assert again == stamps  # finished cells were not trained again
    dup = db.sql(
        "SELECT count(*) FROM (SELECT SubsetId, SliceId, Metric FROM GridCells "
        "GROUP BY ALL HAVING count(*) > 1)"
    ).fetchall()
    assert dup == [(0,)]
    db.close()


def test_failed_cells_are_recorded_and_can_be_retried():
    db = make_db(4, 12)
    db.sql(
        "CREATE GRID k TRAIN ON (SELECT id, x1, x2, y, grp FROM pts WHERE part = 'train') UNITS BY grp "
        f"SUBSETS EXHAUSTIVE EVALUATE ON ({EVAL}) MODEL knn WITH (n_neighbors = 12) METRIC accuracy "
        "WITH (label = 'y', key = 'id')"
    )
    out = db.sql("MATERIALIZE GRID k").fetchall()[0]
    assert out[4] > 0  # some subsets have fewer than 12 rows
    errors = db.sql(
        "SELECT DISTINCT Status, Error IS NOT NULL, Value IS NULL FROM k WHERE Status = 'failed'"
    ).fetchall()
    assert errors == [("failed", True, True)]
    again = db.sql("MATERIALIZE GRID k WITH (retry_failed = true)").fetchall()[0]
    assert again[1] == out[4]
    db.close()


WEVAL = "SELECT * FROM Instances WHERE part = 'eval'"
WTRAIN = "SELECT * FROM Instances WHERE part = 'train'"
WHATIF_TAIL = (
    f"MODEL logistic_regression TRAIN ON ({WTRAIN}) EVALUATE ON ({WEVAL}) SLICE BY sex "
    "METRIC accuracy, log_loss WITH (features = ('x1', 'x2'))"
)


def instances_db(seed: int) -> cfdb.Database:
    """The points as Instances (InstanceId = id, GroundTruth = y): keys and label by default."""
    db = cfdb.connect()
    db.load_instances(points(4, seed), id="id", label="y")
    return db


def _direct(db, train_sql: str) -> dict[str, float]:
    """Accuracy per slice of a model trained by CREATE MODEL on ``train_sql`` (an independent path)."""
    db.sql("DROP MODEL IF EXISTS direct")
    db.sql(
        "CREATE MODEL direct AS logistic_regression WITH (features = ('x1', 'x2')) "
        f"TRAIN ON ({train_sql})"
    )
    from cfdb.engine.handlers.models import columns_of, load_model

    _, model = load_model(db.session, "direct")
    cols = columns_of(db.sql(WEVAL).to_arrow_table())
    pred, truth = model.predict(cols), cols["GroundTruth"]
    out = {"all": float(np.mean(pred == truth))}
    for s in ("f", "m"):
        mask = cols["sex"] == s
        out[s] = float(np.mean(pred[mask] == truth[mask]))
    return out


def _accuracy(rows) -> tuple[dict[str, float], dict[str, float]]:
    base = {r[0]: r[2] for r in rows if r[1] == "accuracy"}
    cf = {r[0]: r[3] for r in rows if r[1] == "accuracy"}
    return base, cf


def test_whatif_remove_add_flip_match_models_trained_on_the_edited_data():
    db = instances_db(13)
    removed = db.sql(
        f"WHATIF REMOVE (SELECT * FROM Instances WHERE x1 > 1) {WHATIF_TAIL}"
    ).fetchall()
    base, cf = _accuracy(removed)
    assert base == pytest.approx(_direct(db, WTRAIN))
    assert cf == pytest.approx(_direct(db, WTRAIN + " AND NOT x1 > 1"))
    n_removed = db.sql(f"SELECT count(*) FROM ({WTRAIN}) WHERE x1 > 1").fetchall()[0][0]
    assert {r[-1] for r in removed} == {n_removed}
    # the what-if query may select other columns: rows are matched by InstanceId
    again = db.sql(
        f"WHATIF REMOVE (SELECT InstanceId FROM Instances WHERE x1 > 1) {WHATIF_TAIL}"
    ).fetchall()
    assert {r[-2] for r in again} == {True} and _accuracy(again) == (base, cf)

    flipped = db.sql(
        f"WHATIF FLIP LABELS (SELECT * FROM Instances WHERE x2 < -0.5) {WHATIF_TAIL}"
    ).fetchall()
    flipped_train = (
        "SELECT * REPLACE (CASE WHEN x2 < -0.5 THEN (CASE WHEN GroundTruth = 'yes' THEN 'no' "
        f"ELSE 'yes' END) ELSE GroundTruth END AS GroundTruth) FROM ({WTRAIN})"
    )
    assert _accuracy(flipped)[1] == pytest.approx(_direct(db, flipped_train))

    extra = (
        "SELECT * REPLACE (InstanceId + 1000 AS InstanceId, CASE WHEN GroundTruth = 'yes' THEN 'no' "
        f"ELSE 'yes' END AS GroundTruth) FROM ({WEVAL}) WHERE x1 > 0"
    )
    added = db.sql(f"WHATIF ADD ({extra}) {WHATIF_TAIL}").fetchall()
    assert _accuracy(added)[1] == pytest.approx(_direct(db, f"{WTRAIN} UNION ALL {extra}"))
    # one baseline for the whole family, one row per distinct what-if
    grids = db.sql("SELECT Name, Kind FROM Grids").fetchall()
    assert len(grids) == 1 and grids[0][1] == "whatif"
    roles = db.sql("SELECT Role, count(*) FROM TrainSubsets GROUP BY 1 ORDER BY 1").fetchall()
    assert roles == [("full", 1), ("whatif", 3)]
    db.close()


def test_whatif_reweight_by_two_equals_duplicating_the_rows():
    db = make_db(4, 14)
    tail = (
        "MODEL decision_tree WITH (max_depth = 3) TRAIN ON (SELECT id, x1, x2, y FROM pts WHERE part = 'train') "
        f"EVALUATE ON ({EVAL}) METRIC accuracy, log_loss WITH (label = 'y', key = 'id')"
    )
    chosen = "SELECT id, x1, x2, y, 2.0 AS w FROM pts WHERE part = 'train' AND x1 < 0"
    weighted = db.sql(f"WHATIF REWEIGHT ({chosen}) BY w {tail}").fetchall()
    duplicated = db.sql(
        f"WHATIF ADD (SELECT id + 1000 AS id, x1, x2, y FROM ({chosen})) {tail}"
    ).fetchall()
    assert [r[3] for r in weighted] == pytest.approx([r[3] for r in duplicated])
    assert [r[2] for r in weighted] == [r[2] for r in duplicated]  # same baseline, reused
    db.close()


def test_errors_name_the_part_at_fault():
    db = make_db(4, 15)
    with pytest.raises(CfdbSyntaxError, match="subset design") as info:
        db.sql(grid_sql("g", "EVERYTHING"))
    assert info.value.message
    with pytest.raises(CfdbDataError, match="UNITS BY column 'nope'") as info:
        db.sql(grid_sql("g", "EXHAUSTIVE", units="UNITS BY nope"))
    assert "nope" in info.value.render()
    with pytest.raises(CfdbUnsupportedError, match="EXHAUSTIVE over 60 units"):
        db.sql(grid_sql("g", "EXHAUSTIVE", units=""))
    with pytest.raises(CfdbSyntaxError, match="unknown grid option 'colour'"):
        db.sql(grid_sql("g", "EXHAUSTIVE", extra=", colour = 'red'"))
    with pytest.raises(cfdb.CfdbPluginError, match="unknown grid metric 'accurracy'"):
        db.sql(grid_sql("g", "EXHAUSTIVE", metrics="accurracy"))
    with pytest.raises(CfdbDataError, match="needs a sensitive column"):
        db.sql(grid_sql("g", "EXHAUSTIVE", metrics="equalized_odds"))
    with pytest.raises(CfdbDataError, match="matches no training row"):
        db.sql(
            "WHATIF REMOVE (SELECT * FROM pts WHERE false) MODEL logistic_regression "
            f"TRAIN ON (SELECT * FROM pts) EVALUATE ON ({EVAL}) METRIC accuracy WITH (label = 'y', key = 'id')"
        )
    db.sql(grid_sql("g", "LEAVE ONE OUT"))
    with pytest.raises(CfdbCatalogError, match="already exists"):
        db.sql(grid_sql("g", "LEAVE ONE OUT"))
    with pytest.raises(CfdbCatalogError, match="grid 'h' does not exist"):
        db.sql("MATERIALIZE GRID h")
    db.sql("DROP GRID g")
    assert db.sql("SELECT count(*) FROM Grids").fetchall() == [(0,)]
    assert not db.session.store.table_exists("g")
    db.sql("DROP GRID IF EXISTS g")
    db.close()


def test_equalized_odds_and_regression_grids():
    db = make_db(4, 16)
    db.sql(
        grid_sql(
            "fair",
            "LEAVE ONE OUT",
            metrics="accuracy, equalized_odds, fnr",
            units="UNITS BY grp",
            extra=", sensitive = 'sex', positive = 'yes'",
        )
    )
    rows = db.sql("SELECT Metric, count(Value) FROM fair GROUP BY 1 ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == ["accuracy", "equalized_odds", "fnr"] and all(r[1] for r in rows)
    db.sql(
        "CREATE GRID reg TRAIN ON (SELECT id, x1, x2 AS target, grp FROM pts WHERE part = 'train') "
        "UNITS BY grp SUBSETS EXHAUSTIVE EVALUATE ON (SELECT x1, x2 AS target FROM pts WHERE part = 'eval') "
        "MODEL ridge METRIC mse, r2 WITH (label = 'target', key = 'id')"
    )
    assert db.sql("SELECT count(*) FROM shapley('reg') WHERE Metric = 'mse'").fetchall() == [(4,)]
    with pytest.raises(cfdb.CfdbPluginError, match="unknown regression model kind") as info:
        db.sql(
            "CREATE GRID bad TRAIN ON (SELECT id, x1, x2 AS target FROM pts) SUBSETS LEAVE ONE OUT "
            "EVALUATE ON (SELECT x1, x2 AS target FROM pts) MODEL logistic_regression METRIC mse "
            "WITH (label = 'target')"
        )
    assert info.value.hint == "regression metrics need a regression kind"
    db.close()


def test_python_helpers_are_one_statement_each():
    db = make_db(4, 17)
    db.create_grid(
        "g",
        train="SELECT id, x1, x2, y, grp FROM pts WHERE part = 'train'",
        subsets="LEAVE ONE OUT",
        evaluate=EVAL,
        model="logistic_regression",
        metrics=["accuracy"],
        units_by="grp",
        label="y",
        key="id",
    )
    assert db.last_sql.startswith('CREATE GRID "g" TRAIN ON')
    assert db.materialize_grid("g", limit=2).fetchall()[0][1] == 2
    assert db.last_sql == 'MATERIALIZE GRID "g" LIMIT 2'
    out = db.whatif(
        "remove",
        "SELECT * FROM pts WHERE grp = 'p0'",
        train="SELECT id, x1, x2, y FROM pts WHERE part = 'train'",
        evaluate=EVAL,
        model="logistic_regression",
        label="y",
        key="id",
    ).fetchall()
    assert db.last_sql.startswith("WHATIF REMOVE (") and len(out) == 1
    db.drop_grid("g")
    db.close()


# -- interruption, and reading the file from plain DuckDB ---------------------------------------
_CHILD = """
import sys
import cfdb
from cfdb.engine.handlers import grid_fill as grid_handlers

grid_handlers.COMMIT_LISTENERS.append(lambda g, n: print(n, flush=True))
db = cfdb.connect(sys.argv[1])
db.sql("MATERIALIZE GRID slow")
print("done", flush=True)
"""


def _slow_grid(path: str) -> int:
    db = make_db(6, 20, path)
    db.sql(
        "CREATE GRID slow TRAIN ON (SELECT id, x1, x2, y, grp FROM pts WHERE part = 'train') "
        f"UNITS BY grp SUBSETS EXHAUSTIVE EVALUATE ON ({EVAL}) MODEL random_forest "
        "WITH (n_estimators = 10, max_depth = 4) METRIC accuracy, auc WITH (label = 'y', key = 'id')"
    )
    db.close()
    return 2**6


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_an_interrupted_materialize_resumes_without_recomputing_or_duplicating(tmp_path, how):
    import signal
    import subprocess
    import sys

    path = str(tmp_path / f"{how}.duckdb")
    total = _slow_grid(path)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed = 0
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip().isdigit():
            committed = int(line)
        if committed >= 10:
            break
    # A user presses Ctrl-C again when the first one is not seen: DuckDB 2.0 sometimes
    # swallows a SIGINT that lands while it runs a statement.
    for _ in range(20):
        child.send_signal(getattr(signal, how))
        try:
            child.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            continue
    child.wait(timeout=60)
    assert child.returncode != 0, "the run was interrupted"
    if how == "SIGINT":
        assert "KeyboardInterrupt" in (child.stderr.read() if child.stderr else "")
    db = cfdb.connect(path)
    done = db.sql("SELECT count(DISTINCT SubsetId) FROM GridCells").fetchall()[0][0]
    assert committed <= done < total
    before = db.sql(
        "SELECT SubsetId, SliceId, Metric, Value, CreatedAt FROM GridCells ORDER BY ALL"
    ).fetchall()
    out = db.sql("MATERIALIZE GRID slow").fetchall()[0]
    assert out[1:4] == (total - done, done, 0)
    after = db.sql(
        "SELECT SubsetId, SliceId, Metric, Value, CreatedAt FROM GridCells ORDER BY ALL"
    ).fetchall()
    assert set(before) <= set(after)  # finished cells untouched
    assert len(after) == total * 2 * 1  # 64 subsets x 2 metrics x 1 slice, no duplicates
    db.close()


def test_macros_run_in_a_separate_plain_duckdb_process(tmp_path):
    import subprocess

    from tests.test_bi_compat import duckdb_cli

    path = str(tmp_path / "grid.duckdb")
    db = make_db(5, 21, path)
    db.sql(grid_sql("g", "EXHAUSTIVE"))
    db.sql(grid_sql("p", "PERMUTATIONS 10 TRUNCATE 0.01", metrics="accuracy", slice_by=""))
    db.sql("MATERIALIZE GRID g; MATERIALIZE GRID p")
    queries = {
        "shapley": "SELECT UnitId, Slice, Metric, Value FROM shapley('g')",
        "loo": "SELECT UnitId, Slice, Metric, Value FROM loo('g')",
        "beta": "SELECT UnitId, Slice, Metric, Value FROM beta_shapley('g', 16, 1)",
        "banzhaf": "SELECT UnitId, Slice, Metric, Value FROM banzhaf('g')",
        "scaling": "SELECT Slice, Metric, Form, B FROM scaling_law('g')",
        "mc": "SELECT UnitId, Slice, Metric, Value FROM shapley('p')",
        "bysize": "SELECT UnitId, Slice, Metric, Size, MeanDelta FROM marginal_by_size('p')",
        "values": "SELECT Relation, TupleId, Method, Value FROM grid_data_values('p')",
        "view": "SELECT SubsetId, Slice, Metric, Value FROM g",
    }
    expected = {k: sorted(db.sql(q).fetchall()) for k, q in queries.items()}
    db.close()
    for key, query in queries.items():
        result = subprocess.run(
            [duckdb_cli(), "-readonly", "-json", path, "-c", query + " ORDER BY ALL"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (key, result.stderr)
        import json

        got = [tuple(r.values()) for r in json.loads(result.stdout or "[]")]
        assert len(got) == len(expected[key]) > 0, key
        for g, e in zip(sorted(got), expected[key], strict=True):
            assert g == pytest.approx(e), key


def test_tmc_estimates_land_in_data_values_next_to_other_methods():
    db = make_db(4, 22)
    db.sql(grid_sql("p", "PERMUTATIONS 4 TRUNCATE 0.01", units="", metrics="accuracy", slice_by=""))
    db.sql(
        "INSERT INTO ValuationRuns (RunId, Method, Utility, HigherIsBetter, Params, Statement) "
        "SELECT coalesce(max(RunId), 0) + 1, 'tmc_shapley', 'accuracy', TRUE, '{\"grid\": \"p\"}', "
        "'grid p' FROM ValuationRuns"
    )
    db.sql(
        "INSERT INTO DataValues (RunId, Relation, TupleId, TupleKey, Method, Value) "
        "SELECT (SELECT max(RunId) FROM ValuationRuns), Relation, TupleId, UnitId, Method, Value "
        "FROM grid_data_values('p') WHERE Slice = 'all' AND Metric = 'accuracy'"
    )
    rows = db.sql("SELECT DISTINCT Relation, Method FROM DataValues").fetchall()
    assert rows == [("pts", "tmc_shapley")]
    ids = db.sql("SELECT min(TupleId), max(TupleId), count(*) FROM DataValues").fetchall()[0]
    assert ids == (1, 60, 60)  # the training rows' ids
    ranked = db.sql("SELECT count(*) FROM data_values(1)").fetchall()[0][0]
    assert ranked == 60
    db.close()


def test_rows_are_matched_by_the_training_tables_primary_key():
    db = make_db(4, 23)
    db.sql(
        "CREATE TABLE loans (loan_id INTEGER PRIMARY KEY, x1 DOUBLE, x2 DOUBLE, y VARCHAR, part VARCHAR);"
        "INSERT INTO loans SELECT id * 10, x1, x2, y, part FROM pts"
    )
    tail = (
        "MODEL logistic_regression TRAIN ON (SELECT loan_id, x1, x2, y FROM loans WHERE part = 'train') "
        "EVALUATE ON (SELECT * FROM loans WHERE part = 'eval') METRIC accuracy WITH (label = 'y')"
    )
    out = db.sql(
        f"WHATIF REMOVE (SELECT loan_id, part FROM loans WHERE x1 > 0.5) {tail}"
    ).fetchall()
    n = db.sql("SELECT count(*) FROM loans WHERE part = 'train' AND x1 > 0.5").fetchall()[0][0]
    assert out[0][-1] == n > 0
    key, relation = db.sql("SELECT KeyColumn, Relation FROM Grids").fetchall()[0]
    assert (key, relation) == ("loan_id", "loans")
    ids = db.sql("SELECT min(TupleId), max(TupleId) FROM GridUnits").fetchall()[0]
    assert ids == (10, 600)
    db.close()


def test_a_whatif_family_starts_afresh_when_the_training_data_changed():
    db = instances_db(24)
    first = db.sql(f"WHATIF REMOVE (SELECT * FROM Instances WHERE x1 > 1) {WHATIF_TAIL}").fetchall()
    db.sql("DELETE FROM Instances WHERE InstanceId = (SELECT min(InstanceId) FROM Instances)")
    again = db.sql(f"WHATIF REMOVE (SELECT * FROM Instances WHERE x1 > 1) {WHATIF_TAIL}").fetchall()
    assert {r[-2] for r in again} == {False}  # not reused: measured on the new data
    assert _accuracy(again)[0] == pytest.approx(_direct(db, WTRAIN))
    assert len(first) == len(again)
    # a grid refuses, with a hint, rather than mixing cells of two datasets
    db.sql(
        f"CREATE GRID g TRAIN ON ({WTRAIN}) SUBSETS LEAVE ONE OUT EVALUATE ON ({WEVAL}) "
        "MODEL logistic_regression METRIC accuracy WITH (features = ('x1', 'x2'))"
    )
    db.sql(f"DELETE FROM Instances WHERE InstanceId = (SELECT max(InstanceId) FROM ({WTRAIN}))")
    with pytest.raises(CfdbDataError, match="changed since it was created"):
        db.sql("MATERIALIZE GRID g")
    db.close()
