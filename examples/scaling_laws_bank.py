"""Individualized data scaling laws on UCI Bank Marketing: how each customer's value to a
term-deposit model shrinks as the training set grows (Covert, Ji, Hashimoto & Zou, ICML 2024).

A point's marginal contribution to a dataset of size k, averaged over datasets, follows
psi_k = c * k^(-alpha) with its own c and alpha. Points with a large alpha matter most to small
datasets; points with a small alpha keep their value as data grows, so rankings of "which
data to add" depend on how much data you already have. This walkthrough:

1. builds a grid of marginal contributions for 30 customers: class-balanced datasets with
   sizes drawn uniformly between 50 and 500, each shared by every customer (SHARED), each
   trained with and without each customer;
2. fits each customer's law by maximum likelihood (FIT SCALING LAWS): customers whose
   contributions cannot be told from zero are flagged (status 'zero'), exponents on the
   search's bound are flagged (AtBound); then the amortized estimator, a small network from a
   customer's features to its law, which also predicts the customers never sampled;
3. asks the paper's questions in SQL: value at a size, where two customers trade places, a
   size-aware valuation, and which customers to add to a small or a large dataset;
4. draws the curves and the distribution of alpha (with matplotlib installed).

    python examples/scaling_laws_bank.py [--quick] [--out folder]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import cfdb


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The whole description as written, and every option's default."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_Help)
    parser.add_argument(
        "--quick", action="store_true", help="10 customers, 12 draws (else 30 and 40)"
    )
    parser.add_argument(
        "--out", default=None, help="folder for the PNG figures (None: a temporary folder)"
    )
    args = parser.parse_args()
    points, draws = (10, 12) if args.quick else (30, 40)

    db = cfdb.connect()
    db.sql("LOAD DATASET bank")
    customers = (
        "SELECT InstanceId FROM Instances WHERE split = 'train' "
        f"ORDER BY hash(InstanceId) LIMIT {points}"
    )
    db.sql(
        f"""
        CREATE GRID customers
          TRAIN ON (SELECT * FROM Instances WHERE split = 'train')
          SUBSETS MARGINAL {draws} SIZES BETWEEN 50 AND 500 FOR ({customers}) BALANCED SHARED
          EVALUATE ON (SELECT * FROM Instances WHERE split = 'test' AND hash(InstanceId) % 8 = 0)
          MODEL logistic_regression WITH (tol = 1e-8)
          METRIC log_loss
        """
    )
    print(f"1. {points} customers, {draws} shared class-balanced datasets of 50..500 rows\n")
    print(db.sql("FIT SCALING LAWS FOR GRID customers METHOD mle").df().to_string(index=False))

    print("\n2. the fitted laws (log loss; positive c: the customer helps)")
    print(
        db.sql(
            "SELECT UnitId, Status, round(C, 4) AS c, round(Alpha, 2) AS alpha, AtBound, "
            "round(R2Linear, 2) AS r2, round(Evidence, 1) AS evidence, Samples "
            "FROM unit_scaling_laws('customers') ORDER BY Status, Alpha DESC LIMIT 8"
        )
        .df()
        .to_string(index=False)
    )
    out = db.sql("FIT SCALING LAWS FOR GRID customers WITH (method = 'amortized')").df()
    print(f"   amortized: laws of all {int(out['Units'].iloc[0]):,} customers of the grid")
    best = db.sql(
        "SELECT UnitId, Value FROM unit_scaling_value('customers', 60, fit_method := 'amortized') "
        "WHERE Rank <= 3"
    ).fetchall()
    print("   the 3 customers (of all) worth most when added to 60 rows:", [r[0] for r in best])

    print("\n3a. worth most when added to 60 rows, and when added to 500 rows")
    small = db.sql("SELECT UnitId FROM unit_scaling_value('customers', 60) WHERE Rank <= 5")
    large = db.sql("SELECT UnitId FROM unit_scaling_value('customers', 500) WHERE Rank <= 5")
    print("    k = 60: ", [r[0] for r in small.fetchall()])
    print("    k = 500:", [r[0] for r in large.fetchall()])

    top_small = db.sql(
        "SELECT UnitId FROM unit_scaling_value('customers', 60) ORDER BY Rank LIMIT 1"
    ).fetchall()[0][0]
    top_large = db.sql(
        "SELECT UnitId FROM unit_scaling_value('customers', 500) ORDER BY Rank LIMIT 1"
    ).fetchall()[0][0]
    if top_small != top_large:
        crossing = db.sql(
            f"SELECT CrossingSize, LargerBelow, LargerAbove FROM "
            f"unit_scaling_crossing('customers', '{top_small}', '{top_large}')"
        ).fetchall()[0]
        print(f"3b. {top_small} and {top_large} trade places at k ≈ {crossing[0]:,.0f}")

    # Within the measured sizes: outside them a law is an extrapolation.
    print("\n3c. size-aware valuation: mean value over datasets of 50..500 rows (top 5)")
    print(
        db.sql(
            "SELECT UnitId, Value, Rank FROM unit_scaling_valuation('customers', 50, 500) "
            "WHERE Rank <= 5 ORDER BY Rank"
        )
        .df()
        .to_string(index=False)
    )

    print("\n3d. the 5 customers to add to 60 rows against the 5 to add to 500 rows")
    print(
        db.sql("SELECT * FROM unit_scaling_selection_overlap('customers', 60, 500, 5)")
        .df()
        .to_string(index=False)
    )

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("\n4. (install cfdb[plots] for the figures)")
        return
    out = args.out or tempfile.mkdtemp(prefix="scaling_laws_")
    os.makedirs(out, exist_ok=True)
    for figure in ("curves", "alpha"):
        path = os.path.join(out, f"{figure}.png")
        db.plot_scaling_laws("customers", path, figure=figure)
        print(f"\n4. {figure}: {path}" if figure == "curves" else f"   {figure}: {path}")
    db.close()


if __name__ == "__main__":
    main()
