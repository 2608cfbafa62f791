"""MARGINAL grids, FIT SCALING LAWS and PLOT SCALING LAWS through SQL: the sampled Δ against
WHATIF on the same subsets, the written laws against the estimators run on Δ computed here
from the grid's own cells, resumption, executors, errors, plots and plain-DuckDB macros."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cfdb
from cfdb.errors import CfdbCatalogError, CfdbDataError, CfdbSyntaxError
from cfdb.scaling import estimators as est

EVAL = "SELECT * FROM pts WHERE part = 'eval' ORDER BY id"
TRAIN = "SELECT id, x1, x2, y FROM pts WHERE part = 'train' ORDER BY id"
TARGETS = "SELECT id FROM pts WHERE part = 'train' AND id % 10 = 3"  # ids 3, 13, ..., 53
MODEL = "MODEL logistic_regression WITH (C = 0.5) METRIC accuracy, log_loss"
OPTIONS = "WITH (label = 'y', key = 'id')"


def points(seed: int, n: int = 90) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    label = np.where(x1 - 0.7 * x2 + rng.normal(0, 0.8, n) > 0, "yes", "no")
    part = np.where(np.arange(n) < 60, "train", "eval")
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "x1": x1,
            "x2": x2,
            "y": label,
            "part": part,
            "grp": np.where(np.arange(n) % 3 == 0, "a", "b"),
            "target": x1 + rng.normal(0, 0.5, n),
        }
    )


def make_db(seed: int = 0, path: str | None = None, **kwargs) -> cfdb.Database:
    db = cfdb.connect(path, **kwargs)
    db.session.store.register("frame", points(seed))
    db.sql("CREATE TABLE pts AS SELECT * FROM frame")
    db.session.store.unregister("frame")
    return db


def grid_sql(name: str = "g", design: str | None = None, extra: str = "") -> str:
    design = design or f"MARGINAL 3 SIZES BETWEEN 6 AND 40 GEOMETRIC 4 FOR ({TARGETS})"
    return (
        f"CREATE GRID {name} TRAIN ON ({TRAIN}) SUBSETS {design} EVALUATE ON ({EVAL}) "
        f"{MODEL} {OPTIONS[:-1]}{extra})"
    )


def deltas(db: cfdb.Database, grid: str) -> pd.DataFrame:
    """Every pair's Δ per metric, from GridCells and SubsetPairs read here (the oracle side),
    oriented so that positive helps (log loss decreases)."""
    cells = db.sql(f"SELECT SubsetId, Metric, Value FROM GridCells WHERE Grid = '{grid}'").df()
    pairs = db.sql(
        f"SELECT PairId, UnitIndex, WithoutId, WithId, Size FROM SubsetPairs WHERE Grid = '{grid}'"
    ).df()
    units = db.sql(f"SELECT UnitIndex, UnitId FROM GridUnits WHERE Grid = '{grid}'").df()
    value = {(r.SubsetId, r.Metric): r.Value for r in cells.itertuples()}
    rows = []
    for p in pairs.itertuples():
        for metric, sign in (("accuracy", 1.0), ("log_loss", -1.0)):
            with_, without = value.get((p.WithId, metric)), value.get((p.WithoutId, metric))
            if with_ is not None and without is not None:
                rows.append(
                    (p.PairId, p.UnitIndex, p.WithoutId, p.WithId, p.Size, metric,
                     sign * (with_ - without))
                )  # fmt: skip
    out = pd.DataFrame(
        rows, columns=["PairId", "UnitIndex", "WithoutId", "WithId", "Size", "Metric", "Delta"]
    )
    return out.merge(units, on="UnitIndex")


def test_sampled_contributions_agree_with_whatif_on_the_same_subsets():
    db = make_db(1)
    db.sql(grid_sql())
    db.sql("MATERIALIZE GRID g")
    d = deltas(db, "g")
    members = db.sql("SELECT SubsetId, UnitIndex FROM grid_members('g')").df()
    ids = dict(db.sql("SELECT UnitIndex, UnitId FROM GridUnits WHERE Grid = 'g'").fetchall())
    rng = np.random.default_rng(0)
    for pair_id in rng.choice(d["PairId"].unique(), size=3, replace=False):
        pair = d[(d["PairId"] == pair_id)].set_index("Metric")
        with_id = int(pair["WithId"].iloc[0])
        unit = ids[int(pair["UnitIndex"].iloc[0])]
        rows = sorted(ids[u] for u in members[members["SubsetId"] == with_id]["UnitIndex"])
        out = db.sql(
            f"WHATIF REMOVE (SELECT * FROM pts WHERE id = {unit}) MODEL logistic_regression "
            f"WITH (C = 0.5) TRAIN ON (SELECT id, x1, x2, y FROM pts WHERE id IN ({', '.join(rows)}) "
            f"ORDER BY id) EVALUATE ON ({EVAL}) METRIC accuracy, log_loss {OPTIONS}"
        ).df()
        for r in out.itertuples():
            sign = 1.0 if r.Metric == "accuracy" else -1.0
            # WHATIF's difference is v(D) - v(D with the unit): minus the unit's contribution
            assert -sign * r.Difference == pytest.approx(pair.loc[r.Metric, "Delta"], abs=1e-9)
    db.close()


def test_fit_writes_what_the_estimators_give_on_the_grids_contributions():
    db = make_db(2)
    db.sql(grid_sql())
    summary = db.sql("FIT SCALING LAWS FOR GRID g").df()  # fills the grid lazily first
    assert sorted(zip(summary.Method, summary.Metric)) == [
        ("mle", "accuracy"),
        ("mle", "log_loss"),
        ("ols", "accuracy"),
        ("ols", "log_loss"),
    ]
    assert set(summary.Units) == {6}
    d = deltas(db, "g")
    assert len(d) == 6 * 4 * 3 * 2  # every pair measured, per metric
    laws = db.sql("SELECT * FROM UnitScalingLaws WHERE Grid = 'g'").df()
    assert len(laws) == 2 * 2 * 6
    for (method, metric), group in laws.groupby(["Method", "Metric"]):
        sub = d[d["Metric"] == metric]
        expected = dict(est.fit_units(method, sub["UnitIndex"], sub["Size"], sub["Delta"]))
        for row in group.itertuples():
            law = expected[row.UnitIndex]
            assert row.Status == law.status
            assert row.Samples == law.samples == 12 and row.Sizes == 4
            if law.status == "ok":
                assert (row.C, row.Alpha) == pytest.approx((law.c, law.alpha))
                if method == "mle":
                    assert row.Sigma == pytest.approx(law.sigma)
                    assert row.Beta == pytest.approx(law.beta)
                    assert row.LogLik == pytest.approx(law.log_lik)
    # the macro shows the MLE by default, the OLS on request; refitting replaces rows
    assert db.sql("SELECT DISTINCT Method FROM unit_scaling_laws('g')").fetchall() == [("mle",)]
    assert db.sql(
        "SELECT DISTINCT Method FROM unit_scaling_laws('g', fit_method := 'ols')"
    ).fetchall() == [("ols",)]
    db.sql("FIT SCALING LAWS FOR GRID g METHOD ols WITH (metric = 'log_loss')")
    counts = db.sql(
        "SELECT Method, Metric, count(*) FROM UnitScalingLaws GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert counts == [
        ("mle", "accuracy", 6),
        ("mle", "log_loss", 6),
        ("ols", "accuracy", 6),
        ("ols", "log_loss", 6),
    ]
    db.sql("DROP GRID g")
    assert db.sql("SELECT count(*) FROM UnitScalingLaws").fetchall() == [(0,)]
    db.close()


def test_check_and_r2_macros_equal_their_definitions():
    db = make_db(3)
    db.sql(grid_sql())
    db.sql("FIT SCALING LAWS FOR GRID g METHOD ols")
    d = deltas(db, "g")
    laws = db.sql("SELECT UnitId, Metric, C, Alpha FROM unit_scaling_laws('g')").df()
    check = db.sql("SELECT * FROM unit_scaling_check('g') WHERE Slice = 'all'").df()
    means = d.groupby(["UnitId", "Metric", "Size"])["Delta"].mean().reset_index()
    merged = means.merge(laws, on=["UnitId", "Metric"]).merge(
        check, on=["UnitId", "Metric", "Size"]
    )
    assert len(merged) == len(means) == 6 * 4 * 2
    assert np.allclose(merged["Measured"], merged["Delta"])
    assert np.allclose(merged["Predicted"], merged["C"] * merged["Size"] ** -merged["Alpha"])
    r2 = db.sql("SELECT * FROM unit_scaling_r2('g')").df()
    for metric, group in merged.groupby("Metric"):
        for size, part in [*group.groupby("Size"), (None, group)]:
            y, f = part["Measured"].to_numpy(), part["Predicted"].to_numpy()
            expected = 1 - np.sum((y - f) ** 2) / np.sum((y - y.mean()) ** 2)
            got = r2[(r2.Metric == metric) & (r2.Size.isna() if size is None else r2.Size == size)]
            assert got["R2"].iloc[0] == pytest.approx(expected)
            assert got["Units"].iloc[0] == len(part)
    db.close()


def _synthetic_laws(db: cfdb.Database, laws: list[tuple[str, float, float]]) -> None:
    """Laws written straight into the table (the query macros need nothing else)."""
    db.sql("INSERT INTO EvalSlices (Grid, SliceId, Name) VALUES ('syn', 0, 'all')")
    for i, (uid, c, alpha) in enumerate(laws):
        db.sql(
            "INSERT INTO UnitScalingLaws (Grid, Method, SliceId, Metric, UnitIndex, UnitId, C, "
            f"Alpha, Status) VALUES ('syn', 'mle', 0, 'auc', {i}, '{uid}', {c}, {alpha}, 'ok')"
        )


def test_query_macros_against_brute_force():
    rng = np.random.default_rng(11)
    laws = [
        (f"u{i}", float(rng.choice([-1, 1]) * np.exp(rng.uniform(-3, 3))), rng.uniform(0.3, 2.5))
        for i in range(12)
    ]
    laws.append(("zero", 0.0, float("nan")))
    db = cfdb.connect()
    _synthetic_laws(db, [(u, c, 0.0 if np.isnan(a) else a) for u, c, a in laws])

    def psi(c: float, a: float, k: np.ndarray) -> np.ndarray:
        return np.zeros_like(k, dtype=float) if c == 0 else c * np.asarray(k, float) ** -a

    # value at k
    got = dict(db.sql("SELECT UnitId, Value FROM unit_scaling_value('syn', 250)").fetchall())
    for uid, c, a in laws:
        assert got[uid] == pytest.approx(float(psi(c, a, np.array(250.0))))
    # valuation: the mean over every integer size
    got = dict(db.sql("SELECT UnitId, Value FROM unit_scaling_valuation('syn', 3, 700)").fetchall())
    ks = np.arange(3, 701)
    for uid, c, a in laws:
        assert got[uid] == pytest.approx(float(psi(c, a, ks).mean()), rel=1e-9)
    # selection at two sizes: the top n by value, and their overlap
    sel = db.sql("SELECT * FROM unit_scaling_selection('syn', 20, 5000, 4)").df()
    for size, col in ((20, "Selected"), (5000, "SelectedAtOther")):
        values = {uid: float(psi(c, a, np.array(float(size)))) for uid, c, a in laws}
        top = sorted(values, key=lambda u: (-values[u], u))[:4]
        assert sorted(sel[sel[col]]["UnitId"]) == sorted(top)
    overlap = db.sql("SELECT * FROM unit_scaling_selection_overlap('syn', 20, 5000, 4)").df()
    both = set(sel[sel.Selected]["UnitId"]) & set(sel[sel.SelectedAtOther]["UnitId"])
    assert overlap["Overlap"].iloc[0] == len(both)
    assert overlap["RankCorrelation"].iloc[0] == pytest.approx(
        np.corrcoef(sel["Rank"], sel["OtherRank"])[0, 1]
    )
    # crossings: scan a fine grid of sizes for a change of sign of the difference
    scan = np.geomspace(1e-3, 1e9, 200001)
    for (ua, ca, aa), (ub, cb, ab) in zip(laws[:-1], [*laws[1:-1], laws[0]], strict=True):
        row = db.sql(f"SELECT * FROM unit_scaling_crossing('syn', '{ua}', '{ub}')").df().iloc[0]
        diff = psi(ca, aa, scan) - psi(cb, ab, scan)
        flips = np.flatnonzero(np.diff(np.sign(diff)) != 0)
        larger = ua if diff[0] > 0 else ub
        if len(flips) == 0:  # no crossing, or one outside the scanned sizes
            if pd.isna(row.CrossingSize):
                assert row.LargerBelow == row.LargerAbove == larger
            elif row.CrossingSize < scan[0]:
                assert row.LargerAbove == larger
            else:
                assert row.CrossingSize > scan[-1] and row.LargerBelow == larger
        else:
            assert len(flips) == 1
            assert row.CrossingSize == pytest.approx(scan[flips[0]], rel=2e-4)
            assert row.LargerBelow == (ua if diff[0] > 0 else ub)
            assert row.LargerAbove == (ua if diff[-1] > 0 else ub)
    db.close()


def test_an_interrupted_grid_resumes_without_duplicates():
    db = make_db(4)
    db.sql(grid_sql())
    first = db.sql("MATERIALIZE GRID g LIMIT 20").df()
    assert first["Trained"].iloc[0] == 20 and first["Remaining"].iloc[0] > 0
    db.sql("FIT SCALING LAWS FOR GRID g METHOD mle")  # trains the rest first
    assert db.sql(
        "SELECT count(*), count(DISTINCT (SubsetId, Metric)) FROM GridCells WHERE Grid = 'g'"
    ).fetchall() == [(2 * 72 * 2, 2 * 72 * 2)]  # 72 pairs, 2 rows each, 2 metrics
    db.sql(grid_sql("h"))
    db.sql("MATERIALIZE GRID h")
    a = deltas(db, "g").sort_values(["PairId", "Metric"])["Delta"].to_numpy()
    b = deltas(db, "h").sort_values(["PairId", "Metric"])["Delta"].to_numpy()
    assert np.array_equal(a, b)  # same seed, same design, same cells
    db.close()


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_executors_give_the_same_contributions(executor):
    db = make_db(4)
    db.sql(grid_sql())
    db.sql("MATERIALIZE GRID g")
    db.sql(grid_sql("h"))
    db.sql(f"MATERIALIZE GRID h WITH (executor = '{executor}', n_jobs = 2)")
    a = deltas(db, "g").sort_values(["PairId", "Metric"])["Delta"].to_numpy()
    b = deltas(db, "h").sort_values(["PairId", "Metric"])["Delta"].to_numpy()
    assert np.allclose(a, b, atol=1e-12)
    db.close()


def test_balanced_shared_and_uniform_size_grids():
    db = make_db(5)
    db.sql(
        grid_sql(
            "b",
            f"MARGINAL 4 SIZES BETWEEN 6 AND 30 FOR ({TARGETS}) BALANCED SHARED",
        )
    )
    sizes = db.sql("SELECT DISTINCT Size FROM SubsetPairs WHERE Grid = 'b'").fetchall()
    assert len(sizes) > 1  # uniform sizes: one per draw
    labels = db.sql(
        "SELECT s.SubsetId, p.y, count(*) FROM (SELECT DISTINCT WithoutId FROM SubsetPairs "
        "WHERE Grid = 'b') sp JOIN grid_members('b') s ON s.SubsetId = sp.WithoutId "
        "JOIN GridUnits u ON u.Grid = 'b' AND u.UnitIndex = s.UnitIndex "
        "JOIN pts p ON p.id = CAST(u.UnitId AS INTEGER) GROUP BY ALL"
    ).df()
    spread = labels.groupby("SubsetId")["count_star()"].agg(lambda c: c.max() - c.min())
    assert spread.max() <= 1 and labels.groupby("SubsetId").size().eq(2).all()
    # one shared dataset per draw: 4 without-rows, 4 x 6 with-rows
    assert db.sql("SELECT count(*) FROM TrainSubsets WHERE Grid = 'b'").fetchall() == [(28,)]
    out = db.sql("FIT SCALING LAWS FOR GRID b METHOD mle WITH (metric = 'log_loss')").df()
    assert out["Units"].tolist() == [6]
    db.close()


def test_fit_works_on_permutation_grids():
    db = make_db(6)
    db.sql(
        f"CREATE GRID p TRAIN ON ({TRAIN}) SUBSETS PERMUTATIONS 5 EVALUATE ON ({EVAL}) "
        f"{MODEL} {OPTIONS}"
    )
    out = db.sql("FIT SCALING LAWS FOR GRID p METHOD mle WITH (slice = 'all')").df()
    assert out["Units"].tolist() == [60, 60]
    db.close()


def test_errors_name_the_part_at_fault():
    db = make_db(7)

    def fails(sql: str, error: type, match: str, at: str | None = None) -> None:
        with pytest.raises(error, match=match) as info:
            db.sql(sql)
        if at is not None:
            assert sql[info.value.start : info.value.end].startswith(at), sql[
                info.value.start : info.value.end
            ]

    bad_for = "SELECT id + 1000 FROM pts WHERE id < 3"
    fails(grid_sql(design=f"MARGINAL 2 SIZES BETWEEN 6 AND 9 FOR ({bad_for})"), CfdbDataError,
          "not units of the grid .first: '1001'", bad_for)  # fmt: skip
    two = "SELECT x1, x2 FROM pts"
    fails(grid_sql(design=f"MARGINAL 2 SIZES BETWEEN 6 AND 9 FOR ({two})"), CfdbDataError,
          "unit column .id. or a single column", two)  # fmt: skip
    fails(grid_sql(design="MARGINAL 2 SIZES BETWEEN 6 AND 80"), CfdbDataError,
          "larger than the 59 units", "MARGINAL")  # fmt: skip
    fails(
        f"CREATE GRID r TRAIN ON (SELECT id, x1, target FROM pts WHERE part = 'train') "
        f"SUBSETS MARGINAL 2 SIZES BETWEEN 5 AND 9 BALANCED EVALUATE ON ({EVAL}) "
        "MODEL linear_regression METRIC mse WITH (label = 'target', key = 'id')",
        CfdbDataError, "BALANCED needs a classification grid", "MARGINAL",
    )  # fmt: skip
    fails(
        f"CREATE GRID u TRAIN ON (SELECT id, x1, x2, y, grp FROM pts WHERE part = 'train') "
        f"UNITS BY grp SUBSETS MARGINAL 2 SIZES (1) BALANCED EVALUATE ON ({EVAL}) {MODEL} "
        f"{OPTIONS}",
        CfdbDataError, "one label per unit", "MARGINAL",
    )  # fmt: skip
    assert db.sql("SELECT count(*) FROM Grids").fetchall() == [(0,)]  # nothing left behind
    fails("FIT SCALING LAWS FOR GRID nope", CfdbCatalogError, "does not exist", "nope")
    db.sql(grid_sql("g", design="RANDOM 3"))
    fails("FIT SCALING LAWS FOR GRID g", CfdbDataError, "no measured marginal", "g")
    fails("FIT SCALING LAWS FOR GRID g METHOD bogus", CfdbSyntaxError, "unknown estimation",
          "bogus")  # fmt: skip
    fails("FIT SCALING LAWS FOR GRID g WITH (slices = 'all')", CfdbSyntaxError,
          "unknown FIT SCALING LAWS option", "slices")  # fmt: skip
    fails("FIT SCALING LAWS FOR GRID g WITH (metric = 'auc')", CfdbDataError,
          "no metric 'auc'", "metric")  # fmt: skip
    fails("PLOT SCALING LAWS FOR GRID g TO 'x.png'", CfdbDataError, "no fitted scaling laws", "g")
    fails("PLOT SCALING LAWS FOR GRID g HISTOGRAM TO 'x.png'", CfdbSyntaxError, "expected a figure",
          "HISTOGRAM")  # fmt: skip
    db.close()


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_plots_from_sql_python_and_the_cli(tmp_path, monkeypatch, capsys):
    path = tmp_path / "laws.duckdb"
    db = make_db(8, str(path))
    db.sql(grid_sql())
    db.fit_scaling_laws("g")
    assert db.last_sql == 'FIT SCALING LAWS FOR GRID "g"'
    for figure in ("curves", "alpha", "r2"):
        out = db.plot_scaling_laws("g", tmp_path / f"{figure}.png", figure=figure, method="ols")
        assert out.fetchall()[0][1:3] == (figure, "ols")
        assert _is_png(tmp_path / f"{figure}.png")
    assert db.last_sql.startswith('PLOT SCALING LAWS FOR GRID "g" R2 TO ')
    chosen = db.plot_scaling_laws("g", tmp_path / "two.png", units=["3", "13"]).fetchall()
    assert chosen[0][3] == 2 and "units = ('3', '13')" in db.last_sql
    db.fit_scaling_laws("g", method="ols", metric="accuracy")
    assert db.last_sql == "FIT SCALING LAWS FOR GRID \"g\" METHOD ols WITH (metric = 'accuracy')"
    db.close()

    from cfdb.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "plot.sql").write_text(
        "PLOT SCALING LAWS FOR GRID g ALPHA TO 'cli.png' WITH (metric = 'log_loss');\n"
    )
    code = main(["run", "plot.sql", "--db", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "cli.png" in out
    assert _is_png(tmp_path / "cli.png")


def test_macros_run_in_a_separate_plain_duckdb_process(tmp_path):
    from tests.test_bi_compat import duckdb_cli

    path = str(tmp_path / "laws.duckdb")
    db = make_db(9, path)
    db.sql(grid_sql())
    db.sql("FIT SCALING LAWS FOR GRID g")
    queries = {
        "laws": "SELECT UnitId, Metric, C, Alpha FROM unit_scaling_laws('g')",
        "ols": "SELECT UnitId, Metric, C FROM unit_scaling_laws('g', fit_method := 'ols')",
        "value": "SELECT UnitId, Metric, Value, Rank FROM unit_scaling_value('g', 100)",
        "cross": "SELECT Metric, CrossingSize FROM unit_scaling_crossing('g', '3', '13')",
        "valuation": "SELECT UnitId, Metric, Value FROM unit_scaling_valuation('g', 10, 500)",
        "selection": "SELECT UnitId, Metric, Selected FROM unit_scaling_selection('g', 10, 1000, 2)",
        "overlap": "SELECT Metric, Overlap FROM unit_scaling_selection_overlap('g', 10, 1000, 2)",
        "check": "SELECT UnitId, Metric, Size, Measured FROM unit_scaling_check('g')",
        "r2": "SELECT Metric, Size, R2 FROM unit_scaling_r2('g')",
    }

    def ordered(rows):
        return sorted(rows, key=lambda r: tuple((v is None, v if v is not None else 0) for v in r))

    expected = {k: ordered(db.sql(q).fetchall()) for k, q in queries.items()}
    db.close()
    for key, query in queries.items():
        result = subprocess.run(
            [duckdb_cli(), "-readonly", "-json", path, "-c", query + " ORDER BY ALL"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (key, result.stderr)
        got = ordered(tuple(r.values()) for r in json.loads(result.stdout or "[]"))
        assert len(got) == len(expected[key]) > 0, key
        for g, e in zip(got, expected[key], strict=True):
            assert g == pytest.approx(e, nan_ok=True), key
