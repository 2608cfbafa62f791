"""Data counterfactuals on a real dataset: UCI Bank Marketing, with months as data providers.

The bank's phone contacts (May 2008 to November 2010) are grouped by the month they were made
in, and each month is treated as a data provider that could withhold its data. Questions, each
a grid and a query:

1. Which month's data would a strike hurt most?  (``STRIKES BY month`` and ``strikes()``)
2. What is each month worth as a provider?  (months as units, TMC-Shapley, ``shapley()``)
3. How does accuracy scale with the amount of data?  (random subsets of contacts by size,
   ``scaling_law()``)

Run (about a minute; ``--quick`` uses smaller samples)::

    python examples/grid_bank_marketing.py [--quick] [--db bank.duckdb] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import time

import cfdb


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The whole description as written, and every option's default."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_Help)
    parser.add_argument("--quick", action="store_true", help="smaller samples (a smoke run)")
    parser.add_argument("--db", default=None, help="database file (None: in memory)")
    parser.add_argument("--n-jobs", type=int, default=1, help="worker processes for the cells")
    args = parser.parse_args()
    every = 24 if args.quick else 6  # keep one training contact in `every`
    sizes = "(25, 50, 100, 200)" if args.quick else "(50, 100, 200, 400, 800, 1600, 3200)"
    perms = 3 if args.quick else 10

    db = cfdb.connect(args.db, n_jobs=args.n_jobs)
    if not db.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'Instances'").fetchall()[
        0
    ][0]:
        db.sql("LOAD DATASET bank")
    train = f"SELECT * FROM Instances WHERE split = 'train' AND hash(InstanceId) % {every} = 0"
    test = "SELECT * FROM Instances WHERE split = 'test' AND hash(InstanceId) % 3 = 0"
    print(
        db.sql(
            f"SELECT count(*) AS training_contacts, (SELECT count(*) FROM ({test})) AS test_contacts FROM ({train})"
        )
        .df()
        .to_string(index=False)
    )

    print("\n== 1. strikes: each month withholds its contacts")
    started = time.perf_counter()
    db.sql(
        f"""
        CREATE OR REPLACE GRID month_strikes
          TRAIN ON ({train})
          SUBSETS STRIKES BY month
          EVALUATE ON ({test}) SLICE BY contact
          MODEL logistic_regression
          METRIC accuracy, auc, f1
        """
    )
    db.sql("MATERIALIZE GRID month_strikes WITH (progress = true)")
    print(
        db.sql(
            """
            SELECT "Group" AS month, UnitsRemoved, round(FullValue, 4) AS auc_all,
                   round(StruckValue, 4) AS auc_without, round(Value, 4) AS loss_of_auc
            FROM strikes('month_strikes') WHERE Slice = 'all' AND Metric = 'auc'
            ORDER BY Value DESC
            """
        )
        .df()
        .to_string(index=False)
    )
    print("(rows are contacts here: a strike removes every contact of that month)")

    print("\n== 2. months as providers: TMC-Shapley over 12 units")
    db.sql(
        f"""
        CREATE OR REPLACE GRID month_values
          TRAIN ON ({train}) UNITS BY month
          SUBSETS PERMUTATIONS {perms} TRUNCATE 0.002
          EVALUATE ON ({test})
          MODEL logistic_regression
          METRIC auc, accuracy
          WITH (features = ('age', 'job', 'marital', 'education', 'default', 'balance',
                            'housing', 'loan', 'contact', 'day', 'campaign', 'pdays',
                            'previous', 'poutcome'))
        """
    )
    print(
        db.sql("MATERIALIZE GRID month_values WITH (progress = true)").df().to_string(index=False)
    )
    print(
        db.sql(
            """
            SELECT s.UnitId AS month, u.Rows AS contacts, round(s.Value, 4) AS shapley_auc,
                   round(s.StdErr, 4) AS std_err, s.Samples AS permutations
            FROM shapley('month_values') s JOIN grid_units('month_values') u USING (UnitId)
            WHERE s.Metric = 'auc' ORDER BY s.Value DESC
            """
        )
        .df()
        .to_string(index=False)
    )

    print("\n== 3. scaling law: accuracy and AUC against the number of contacts")
    db.sql(
        f"""
        CREATE OR REPLACE GRID bank_scaling
          TRAIN ON ({train})
          SUBSETS RANDOM 3 SIZES {sizes}
          EVALUATE ON ({test})
          MODEL logistic_regression
          METRIC accuracy, auc, log_loss
        """
    )
    db.sql("MATERIALIZE GRID bank_scaling WITH (progress = true)")
    print(
        db.sql(
            "SELECT Size, Metric, round(avg(Value), 4) AS mean, round(stddev(Value), 4) AS sd "
            "FROM bank_scaling WHERE Slice = 'all' GROUP BY ALL ORDER BY Metric, Size"
        )
        .df()
        .to_string(index=False)
    )
    print(
        db.sql("SELECT * FROM scaling_law('bank_scaling') ORDER BY Metric, Form")
        .df()
        .round(4)
        .to_string(index=False)
    )
    print(f"\n(all three grids: {time.perf_counter() - started:.1f} s)")
    db.close()


if __name__ == "__main__":
    main()
