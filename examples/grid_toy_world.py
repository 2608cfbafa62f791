"""The data-counterfactual grid of the memo's toy world: four sources A, B, C and D.

Nick Vincent's "Exploring Data Counterfactuals" imagines every possible training set as a row
of a grid and every evaluation set as a column. With four observations (or four big groups of
them) the grid is small enough to see whole: 2^4 = 16 training sets × a few evaluation slices.
Leave-one-out, Shapley, Banzhaf and Beta Shapley are then aggregations over its cells, a data
strike is a move between rows, and a scaling law is a regression over row sizes.

Here the four sources are groups of loan applications from four regions; source D's labels are
noisy (a data-quality problem the values should expose). Run:

    python examples/grid_toy_world.py
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

import cfdb


def toy_world(seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for source, shift, noise in (
        ("A", 0.0, 0.0),
        ("B", 0.5, 0.0),
        ("C", -0.5, 0.0),
        ("D", 0.0, 0.45),
    ):
        n = 60
        income = rng.normal(50 + 10 * shift, 15, n)
        debt = rng.normal(20, 8, n)
        good = income - 1.5 * debt + rng.normal(0, 5, n) > 20
        flip = rng.random(n) < noise
        frames.append(
            pd.DataFrame(
                {
                    "source": source,
                    "income": income.round(1),
                    "debt": debt.round(1),
                    "region": rng.choice(["north", "south"], n),
                    "repaid": np.where(good ^ flip, "yes", "no"),
                    "part": np.where(np.arange(n) < 40, "train", "test"),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # no options: --help shows what the walkthrough does
    db = cfdb.connect()
    db.load_instances(
        toy_world(), label="repaid", split="part", features=["income", "debt", "region"]
    )

    print("== the grid: 16 training sets x evaluation slices (all, north, south)")
    db.sql(
        """
        CREATE GRID toy
          TRAIN ON (SELECT * FROM Instances WHERE split = 'train') UNITS BY source
          SUBSETS EXHAUSTIVE
          EVALUATE ON (SELECT * FROM Instances WHERE split = 'test' AND source <> 'D')
          SLICE BY region
          MODEL logistic_regression
          METRIC accuracy, log_loss
        """
    )
    print(db.sql("MATERIALIZE GRID toy").df().to_string(index=False))
    # Rows are training sets (named by their sources), columns are slices: the memo's picture.
    picture = db.sql(
        """
        WITH names AS (
            SELECT s.SubsetId, s.Size, coalesce(string_agg(u.UnitId, '' ORDER BY u.UnitId), '∅')
                   AS training_set
            FROM TrainSubsets s
            LEFT JOIN grid_members('toy') m ON m.SubsetId = s.SubsetId
            LEFT JOIN grid_units('toy') u ON u.UnitIndex = m.UnitIndex
            WHERE s.Grid = 'toy' GROUP BY ALL)
        PIVOT (SELECT n.Size, n.training_set, c.Slice, c.Value FROM toy c JOIN names n USING (SubsetId)
               WHERE c.Metric = 'accuracy')
        ON Slice USING any_value(Value) ORDER BY Size, training_set
        """
    ).df()
    print(picture.round(3).to_string(index=False))

    print("\n== values of the four sources (accuracy on all test rows)")
    print(
        db.sql(
            """
            SELECT s.UnitId AS source, round(l.Value, 3) AS loo, round(s.Value, 3) AS shapley,
                   round(b.Value, 3) AS banzhaf, round(bs.Value, 3) AS beta_16_1
            FROM shapley('toy') s
            JOIN loo('toy') l USING (UnitId, Slice, Metric)
            JOIN banzhaf('toy') b USING (UnitId, Slice, Metric)
            JOIN beta_shapley('toy', 16, 1) bs USING (UnitId, Slice, Metric)
            WHERE s.Slice = 'all' AND s.Metric = 'accuracy' ORDER BY shapley DESC
            """
        )
        .df()
        .to_string(index=False)
    )
    total = db.sql(
        "SELECT sum(Value) FROM shapley('toy') WHERE Slice = 'all' AND Metric = 'accuracy'"
    ).fetchall()[0][0]
    ends = db.sql(
        "SELECT max(Value) FILTER (Role = 'full') - max(Value) FILTER (Role = 'empty') FROM toy "
        "WHERE Slice = 'all' AND Metric = 'accuracy'"
    ).fetchall()[0][0]
    print(f"efficiency: sum of Shapley values {total:.4f} = v(ABCD) - v(∅) {ends:.4f}")

    print("\n== scaling law: accuracy against the number of sources")
    print(
        db.sql("SELECT * FROM scaling_law('toy') WHERE Metric = 'accuracy'")
        .df()
        .round(4)
        .to_string(index=False)
    )

    print("\n== a one-off what-if: source D goes on strike (its rows leave the training set)")
    print(
        db.sql(
            """
            WHATIF REMOVE (SELECT * FROM Instances WHERE source = 'D')
              MODEL logistic_regression
              TRAIN ON (SELECT * FROM Instances WHERE split = 'train')
              EVALUATE ON (SELECT * FROM Instances WHERE split = 'test' AND source <> 'D')
              SLICE BY region
              METRIC accuracy
              WITH (features = ('income', 'debt', 'region'))
            """
        )
        .df()[["Slice", "Metric", "Baseline", "Counterfactual", "Difference", "RowsChanged"]]
        .round(4)
        .to_string(index=False)
    )
    db.close()


if __name__ == "__main__":
    main()
