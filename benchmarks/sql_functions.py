"""cfdb's SQL functions against the same computation without SQL, in one run.

* ``predict(model, I)`` / ``predict_proba(model, I)`` over N rows of the 8 UCI Adult features
  (the bundled data repeated to N rows), against the model's featurizer and estimator called
  on the same rows as numpy arrays (``Model.predict`` / ``Model.predict_proba``: what PREDICT
  calls), for a logistic regression and a random forest (10 trees, depth 5). Goal: ≤ 1.5×.
* ``cf_distance(a, b)`` (tabular) over N pairs of rows against the same formula written in
  plain SQL over the struct fields. Goal: ≤ 3×.

Run: ``python benchmarks/sql_functions.py [--rows 1000000] [--repeat 2] [--threads 1]`` (best
of repeats, the two sides alternating).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cfdb
from cfdb.engine.handlers.models import columns_of, load_model
from cfdb.store.catalog import quote, read_features


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def _plain_tabular(features) -> str:
    cat = [
        f"CAST(a.{quote(f.name)} <> b.{quote(f.name)} AS DOUBLE)"
        for f in features
        if f.is_categorical
    ]
    num = [
        f"abs(CAST(a.{quote(f.name)} AS DOUBLE) - b.{quote(f.name)}) / {float(f.mad or 1.0)!r}"
        for f in features
        if not f.is_categorical
    ]
    n = len(features)
    return f"{len(cat) / n!r} * ({' + '.join(cat)}) + {len(num) / n!r} * ({' + '.join(num)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=None, help="DuckDB threads (default: DuckDB's own)"
    )
    args = parser.parse_args()
    n = args.rows

    db = cfdb.connect()
    if args.threads:
        # The UDFs hold Python's lock: more DuckDB threads contend for it.
        db.sql(f"SET threads = {int(args.threads)}")
    db.sql("LOAD DATASET adult")
    train = "SELECT * FROM Instances WHERE split = 'train' AND InstanceId % 10 = 0"
    db.sql(f"CREATE MODEL lr AS logistic_regression TRAIN ON ({train})")
    db.sql(
        f"CREATE MODEL rf AS random_forest WITH (n_estimators = 10, max_depth = 5) TRAIN ON ({train})"
    )
    features = read_features(db.session.store)
    names = ", ".join(quote(f.name) for f in features)
    db.sql(
        f"CREATE TABLE big AS SELECT row_number() OVER () AS InstanceId, {names} "
        f"FROM Instances, range({-(-n // 46033)}) LIMIT {n}"
    )
    db.sql(
        "CREATE TABLE pairs AS SELECT I AS a, struct_update(I, age := I.age + 1, "
        "hours_per_week := I.hours_per_week - 2, workclass := 'Private') AS b FROM big I"
    )
    data = db.sql("SELECT * FROM big").to_arrow_table()
    columns = columns_of(data)
    rows = []
    for name in ("lr", "rf"):
        model = load_model(db.session, name)[1]
        for fn, method in (("predict", model.predict), ("predict_proba", model.predict_proba)):
            sql = f"SELECT count(p) FROM (SELECT {fn}('{name}', I) AS p FROM big I)"
            assert db.sql(sql).fetchall() == [(n,)]
            # Alternate the two so that load on a shared machine hits both alike.
            in_sql = direct = float("inf")
            for _ in range(args.repeat):
                in_sql = min(in_sql, _best(lambda sql=sql: db.sql(sql).fetchall(), 1))
                direct = min(direct, _best(lambda method=method: method(columns), 1))
            rows.append((f"{fn}({model.kind})", n, direct, in_sql, 1.5))
    macro = "SELECT sum(cf_distance(a, b)) FROM pairs"
    plain = f"SELECT sum({_plain_tabular(features)}) FROM pairs"
    got, want = db.sql(macro).fetchall()[0][0], db.sql(plain).fetchall()[0][0]
    assert np.isclose(got, want, rtol=1e-9), (got, want)
    in_sql = _best(lambda: db.sql(macro).fetchall(), args.repeat)
    direct = _best(lambda: db.sql(plain).fetchall(), args.repeat)
    rows.append(("cf_distance(tabular)", n, direct, in_sql, 3.0))
    db.close()

    print(f"{'function':<32}{'rows':>10}{'baseline s':>12}{'SQL s':>10}{'ratio':>8}{'goal':>7}")
    for what, count, base, sql_s, goal in rows:
        ratio = sql_s / base
        print(f"{what:<32}{count:>10}{base:>12.3f}{sql_s:>10.3f}{ratio:>8.2f}{'≤' + str(goal):>7}")
    print("baseline: featurizer + estimator on numpy arrays (predict*); plain SQL (cf_distance)")


if __name__ == "__main__":
    main()
