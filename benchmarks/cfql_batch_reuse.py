"""CFQL optimizer benchmark (CFDB paper, section 5.4 and 5.3).

1. Bank Marketing, random forest (10 trees, depth 5), false negatives; the ten query shapes of
   the paper's Table 1, each over the same sample of false negatives (the paper's Q_Pred; with
   ``--slices`` each over its own sample), instantiated twice: over many different features
   (loosely connected graph) and over the same few features (densely connected). Graph construction time and solver calls, naive against atom-based,
   for ``--nodes`` conditions (default 500) and, atom-based only, ``--big`` (default 5,000).
2. Generator calls and mean L0 distance against the reuse threshold (Algorithm 2), beside the
   paper's Figure 10 and 12 numbers where its text gives them. Threshold ``inf`` shows the
   floor: a class that no other class implies starts with an empty pool, so it calls the
   generator at any threshold.
3. The burden use case on Adult: unfavourable predictions sampled per sex × race group, CFs
   that keep sex and race, tabular distance; time and burden with reuse against the no-reuse
   baseline, in the same run.

Run:  python benchmarks/cfql_batch_reuse.py [--nodes 500] [--big 5000] [--per-group 503]
          [--thresholds 0,1,3,5,7,9,11,inf] [--slices] [--graph-only | --reuse-only]
"""

from __future__ import annotations

import argparse
import time

import cfdb

LINK = "I.InstanceId = pred.InstanceId"
LOOSE = [
    "TRUE",
    "(C.age <> I.age OR C.balance <> I.balance)",
    "C.campaign <> I.campaign AND C.pdays <> I.pdays",
    "(C.job = I.job OR C.marital = I.marital)",
    "C.housing = I.housing AND C.loan = I.loan",
    "(C.education = I.education OR (C.education <> I.education AND C.contact <> I.contact))",
    "(C.balance > I.balance OR C.month = I.month)",
    "C.poutcome <> I.poutcome AND C.age IN (SELECT DISTINCT age FROM Instances ORDER BY age LIMIT 5)",
    "C.campaign > (SELECT avg(campaign) FROM Instances) AND C.campaign < (SELECT max(campaign) / 2 FROM Instances)",
    "C.job = (SELECT job FROM Instances GROUP BY job ORDER BY count(*), job LIMIT 1)",
]
DENSE = [
    "TRUE",
    "(C.age <> I.age OR C.balance <> I.balance)",
    "C.age <> I.age AND C.balance <> I.balance",
    "(C.age = I.age OR C.balance = I.balance)",
    "C.age = I.age AND C.balance = I.balance",
    "(C.age = I.age OR (C.age <> I.age AND C.balance <> I.balance))",
    "(C.balance > I.balance OR C.age = I.age)",
    "C.balance <> I.balance AND C.age IN (SELECT DISTINCT age FROM Instances ORDER BY age LIMIT 5)",
    "C.balance > (SELECT avg(balance) FROM Instances) AND C.balance < (SELECT max(balance) / 2 FROM Instances)",
    "C.age > I.age",
]


def batch(
    shapes: list[str],
    per_query: int,
    options: str,
    generator: str = "growing_spheres",
    explain: bool = True,
    extra: str = "",
    slices: bool = False,
) -> str:
    parts = [f"{'EXPLAIN ' if explain else ''}BEGIN BATCH WITH ({options});"]
    for k, cond in enumerate(shapes):
        q_pred = (
            "SELECT P.PredictionId FROM Predictions P JOIN Instances I USING (InstanceId) "
            "WHERE I.GroundTruth = 'yes' AND P.Label = 'no' "
            f"ORDER BY hash(P.PredictionId + {k if slices else 0}) LIMIT {per_query}"
        )
        q_cf = f"SELECT C.* FROM CFs C, Instances I WHERE {LINK} AND {cond}"
        parts.append(f"FOREACH pred IN ({q_pred}) GENERATE ({q_cf}) USING {generator}{extra};")
    parts.append("END BATCH;")
    return "\n".join(parts)


def connect() -> cfdb.Database:
    """Bank Marketing with the random forest's predictions."""
    db = cfdb.connect()
    db.sql(
        "LOAD DATASET bank;"
        "CREATE MODEL rf AS random_forest WITH (n_estimators = 10, max_depth = 5) "
        "TRAIN ON (SELECT * FROM Instances WHERE split = 'train');"
        "PREDICT rf ON (SELECT * FROM Instances)"
    )
    return db


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--big", type=int, default=5000)
    parser.add_argument("--thresholds", default="0,1,3,5,7,9,11,inf")
    parser.add_argument("--per-group", type=int, default=503)
    parser.add_argument(
        "--graph-only", action="store_true", help="run part 1 (graph construction) only"
    )
    parser.add_argument("--reuse-only", action="store_true", help="run part 2 (reuse) only")
    parser.add_argument(
        "--slices", action="store_true", help="each query over its own sample of predictions"
    )
    args = parser.parse_args()

    db = connect()
    fns = db.sql(
        "SELECT count(*) FROM Predictions P JOIN Instances I USING (InstanceId) "
        "WHERE I.GroundTruth = 'yes' AND P.Label = 'no'"
    ).fetchall()[0][0]
    print(f"Bank Marketing: {fns} false negatives of the random forest")
    print()
    if not args.reuse_only:
        graphs(db, args)
    if args.graph_only:
        return
    reuse(db, args)
    if args.reuse_only:
        return
    print()
    print(f"3. Burden on Adult: up to {args.per_group} unfavourable predictions per sex x race")
    burden(args.per_group)


#: The paper's Figure 10 / 12 (Bank Marketing, 500 conditions, L0), as its text gives them:
#: threshold -> (generator calls, mean L0) for the loose and dense graphs.
PAPER = {
    ("loose", 7.0): (365, 2.5),
    ("dense", 7.0): (244, 2.5),
    ("loose", 11.0): (180, 6.0),
    ("dense", 11.0): (44, 7.2),
}


def graphs(db: cfdb.Database, args: argparse.Namespace) -> None:
    print("1. Implication graph construction")
    print(
        f"{'graph':8} {'nodes':>6} {'unique':>7} {'classes':>8} {'edges':>7} {'density':>8} "
        f"{'atoms s':>8} {'calls':>7} {'naive s':>8} {'calls':>8} {'speed-up':>9}"
    )
    for name, shapes in (("loose", LOOSE), ("dense", DENSE)):
        for nodes, both in ((args.nodes, True), (args.big, False)):
            per_query = max(1, nodes // len(shapes))
            row = db.sql(
                batch(
                    shapes,
                    per_query,
                    "construction = 'both'" if both else "construction = 'atoms'",
                    slices=args.slices,
                )
            ).fetchall()
            stats = {r[1]: r for r in row}
            a = stats["atoms"]
            unique = a[3]
            density = a[5] / max(1, unique * (unique - 1))
            naive = stats.get("naive")
            naive_s = f"{naive[7]:8.2f}" if naive else f"{'-':>8}"
            naive_calls = f"{naive[6]:8d}" if naive else f"{'-':>8}"
            speed = f"{naive[7] / a[7]:8.1f}x" if naive else f"{'-':>9}"
            print(
                f"{name:8} {a[2]:6d} {unique:7d} {a[4]:8d} {a[5]:7d} {density:8.1%} "
                f"{a[7]:8.2f} {a[6]:7d} {naive_s} {naive_calls} {speed}"
            )


def reuse(db: cfdb.Database, args: argparse.Namespace) -> None:
    print()
    print(f"2. Generator calls and mean L0 against the reuse threshold ({args.nodes} conditions)")
    print(
        f"{'graph':8} {'threshold':>9} {'calls':>6} {'reused':>7} {'failed':>7} "
        f"{'mean L0':>8} {'seconds':>8} {'paper calls':>12} {'paper L0':>9}"
    )
    for name, shapes in (("loose", LOOSE), ("dense", DENSE)):
        for t in (float(x) for x in args.thresholds.split(",")):
            paper = PAPER.get((name, t))
            db.sql("DELETE FROM Prediction_CFs; DELETE FROM CFs;")  # no help from earlier runs
            started = time.perf_counter()
            db.sql(
                batch(
                    shapes,
                    max(1, args.nodes // len(shapes)),
                    f"reuse_threshold = {t if t != float('inf') else 1e9}, persistent_pool = false",
                    explain=False,
                    extra=" WITH (distance = 'l0', time_limit = 5)",
                    slices=args.slices,
                )
            )
            seconds = time.perf_counter() - started
            calls, reused, failed, dist = db.sql(
                "SELECT GeneratorCalls, Reused, (SELECT sum(Failed) FROM CFQueries "
                "WHERE BatchId = B.BatchId), MeanDistance FROM CFBatches B "
                "ORDER BY BatchId DESC LIMIT 1"
            ).fetchall()[0]
            print(
                f"{name:8} {t:9.0f} {calls:6d} {reused:7d} {failed:7d} "
                f"{(dist or float('nan')):8.2f} {seconds:8.1f} "
                f"{paper[0] if paper else '':>12} {paper[1] if paper else '':>9}"
            )


def burden(per_group: int) -> None:
    db = cfdb.connect()
    db.sql(
        "LOAD DATASET adult;"
        "CREATE MODEL rf AS random_forest WITH (n_estimators = 10, max_depth = 5) "
        "TRAIN ON (SELECT * FROM Instances WHERE split = 'train');"
        "PREDICT rf ON (SELECT * FROM Instances)"
    )
    q_pred = (
        "SELECT PredictionId FROM (SELECT P.PredictionId, row_number() OVER (PARTITION BY "
        "I.sex, I.race ORDER BY hash(P.PredictionId)) AS k FROM Predictions P JOIN Instances I "
        f"USING (InstanceId) WHERE P.Label = '<=50K') WHERE k <= {per_group}"
    )
    q_cf = f"SELECT C.* FROM CFs C, Instances I WHERE {LINK} AND C.sex = I.sex AND C.race = I.race"
    results = {}
    for threshold in (0.0, 0.5, 1.0):
        db.sql("DELETE FROM Prediction_CFs; DELETE FROM CFs;")
        started = time.perf_counter()
        db.sql(
            f"FOREACH pred IN ({q_pred}) GENERATE ({q_cf}) USING growing_spheres WITH "
            f"(distance = 'tabular', reuse_threshold = {threshold}, persistent_pool = false, "
            "time_limit = 5)"
        )
        seconds = time.perf_counter() - started
        qid = db.sql("SELECT max(QueryId) FROM CFQueries").fetchall()[0][0]
        calls, reused = db.sql(
            f"SELECT GeneratorCalls, Reused FROM CFQueries WHERE QueryId = {qid}"
        ).fetchall()[0]
        per_group_rows = db.sql(
            "SELECT I.sex || ' / ' || I.race, count(*), avg(best) FROM (SELECT PredictionId, "
            f"min(Distance) AS best FROM Prediction_CFs WHERE QueryId = {qid} GROUP BY ALL) "
            "JOIN Predictions P USING (PredictionId) JOIN Instances I USING (InstanceId) "
            "GROUP BY ALL ORDER BY 1"
        ).fetchall()
        results[threshold] = (seconds, calls, reused, {g: (n, b) for g, n, b in per_group_rows})
    base = results[0.0]
    print(f"{'threshold':>9} {'seconds':>8} {'vs base':>8} {'calls':>6} {'reused':>7}")
    for t, (seconds, calls, reused, _) in results.items():
        print(f"{t:9.1f} {seconds:8.1f} {seconds / base[0]:7.2f}x {calls:6d} {reused:7d}")
    print(f"{'group':36} {'n':>5} " + " ".join(f"{'t=' + str(t):>8}" for t in results))
    for group, (n, _) in base[3].items():
        cells = " ".join(f"{results[t][3].get(group, (0, float('nan')))[1]:8.3f}" for t in results)
        print(f"{group:36} {n:5d} {cells}")


if __name__ == "__main__":
    main()
