"""VALUATE over star joins: exogenous relations (``players``, exact) and the sampled estimate
(``knn_shapley_sampled``, with standard errors in ``DataValues.StdError``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cfdb.errors import CfdbOptionError, CfdbUnsupportedError

TABLES = """
CREATE TABLE products (product_id INTEGER PRIMARY KEY, weight DOUBLE);
CREATE TABLE sellers (seller_id INTEGER PRIMARY KEY, rating DOUBLE);
CREATE TABLE regions (region_id INTEGER PRIMARY KEY, income DOUBLE);
CREATE TABLE orders (order_id INTEGER PRIMARY KEY, product_id INTEGER, seller_id INTEGER,
                     region_id INTEGER, price DOUBLE, returned VARCHAR);
INSERT INTO products SELECT range, sin(range * 1.7) FROM range(5);
INSERT INTO sellers SELECT range, cos(range * 2.3) FROM range(4);
INSERT INTO regions SELECT range, sin(range * 0.9 + 1) FROM range(3);
INSERT INTO orders SELECT range, (range * 7) % 5, (range * 3) % 4, (range * 5) % 3,
    sin(range * 12.9898) * 2, CASE WHEN cos(range * 4.1) > 0 THEN 'yes' ELSE 'no' END
    FROM range(40);
CREATE TABLE holdout AS SELECT sin(range * 3.3) AS price, cos(range * 1.1) AS weight,
    sin(range * 2.2) AS rating, cos(range * 0.7) AS income,
    CASE WHEN sin(range * 5.5) > 0 THEN 'yes' ELSE 'no' END AS returned FROM range(12);
"""

STAR = (
    "SELECT o.order_id, o.price, p.weight, s.rating, r.income, o.returned FROM orders o "
    "JOIN products p USING (product_id) JOIN sellers s USING (seller_id) "
    "JOIN regions r USING (region_id)"
)


@pytest.fixture
def shop(db):
    db.sql(TABLES)
    return db


def _valuate(db, train: str, method: str, options: str) -> int:
    db.sql(
        f"VALUATE ({train}) EVALUATE ON (SELECT * FROM holdout) USING {method} "
        f"WITH (k = 3, label = 'returned', transformer = 'none', "
        f"features = ('price', 'weight', 'rating', 'income'){options})"
    )
    return int(db.sql("SELECT max(RunId) FROM ValuationRuns").fetchall()[0][0])


def _values(db, run: int) -> dict[tuple[str, int], tuple[float, float | None]]:
    rows = db.sql("SELECT Relation, TupleId, Value, StdError FROM data_values(?)", [run]).fetchall()
    return {(r, t): (v, s) for r, t, v, s in rows}


def test_knn_shapley_refuses_the_star_join_naming_both_ways_forward(shop):
    with pytest.raises(CfdbUnsupportedError) as err:
        _valuate(shop, STAR, "knn_shapley", "")
    message = str(err.value)
    assert "#P-hard" in message
    assert "players = '<fact>, <one dim>'" in message and "knn_shapley_sampled" in message


def test_players_equal_the_equivalent_two_table_join(shop):
    """players = orders, sellers: products and regions are exogenous, as if their columns were
    part of the orders table."""
    run = _valuate(shop, STAR, "knn_shapley", ", players = 'orders, sellers'")
    shop.sql(
        "CREATE TABLE wide_orders AS SELECT o.*, p.weight, r.income FROM orders o "
        "JOIN products p USING (product_id) JOIN regions r USING (region_id);"
        "ALTER TABLE wide_orders ADD PRIMARY KEY (order_id)"
    )
    two = (
        "SELECT o.order_id, o.price, o.weight, s.rating, o.income, o.returned "
        "FROM wide_orders o JOIN sellers s USING (seller_id)"
    )
    again = _valuate(shop, two, "knn_shapley", "")
    star, joined = _values(shop, run), _values(shop, again)
    assert {r for r, _ in star} == {"orders", "sellers"}  # exogenous relations: no rows
    assert len(star) == 44
    for (relation, tuple_id), (value, std_error) in star.items():
        name = "wide_orders" if relation == "orders" else relation
        assert value == pytest.approx(joined[(name, tuple_id)][0], abs=1e-12)
        assert std_error is None  # exact
    run_row = shop.sql(
        "SELECT Pipeline, Params, UtilityAll FROM ValuationRuns WHERE RunId = ?", [run]
    )
    pipeline, params, utility_all = run_row.fetchall()[0]
    assert pipeline == "join" and json.loads(params)["players"] == ["orders", "sellers"]
    assert utility_all == pytest.approx(sum(v for v, _ in star.values()), abs=1e-12)


def test_one_dimension_table_alone_is_a_fork(shop):
    run = _valuate(shop, STAR, "knn_shapley", ", players = 'SELLERS'")
    assert shop.sql("SELECT Pipeline FROM ValuationRuns WHERE RunId = ?", [run]).fetchall() == [
        ("fork",)
    ]
    assert {r for r, _ in _values(shop, run)} == {"sellers"}


def test_sampled_values_and_standard_errors_of_every_tuple(shop):
    run = _valuate(shop, STAR, "knn_shapley_sampled", ", samples = 300, seed = 3")
    got = _values(shop, run)
    assert {r for r, _ in got} == {"orders", "products", "sellers", "regions"}
    assert len(got) == 40 + 5 + 4 + 3
    assert all(s is not None and s >= 0 for _, s in got.values())
    assert max(s for _, s in got.values()) > 0
    params = json.loads(
        shop.sql("SELECT Params FROM ValuationRuns WHERE RunId = ?", [run]).fetchall()[0][0]
    )
    assert params["samples"] == 300 and params["seed"] == 3
    assert params["std_error_max"] == pytest.approx(max(s for _, s in got.values()))
    assert 0 <= params["std_error_median"] <= params["std_error_max"]
    assert 0 <= params["rarely_seen"] <= len(got)
    assert params["utility_empty"] == 0.0  # every row has player tuples
    utility_all = shop.sql("SELECT UtilityAll FROM ValuationRuns WHERE RunId = ?", [run])
    assert abs(params["sum_of_estimates"] - utility_all.fetchall()[0][0]) <= (
        5 * params["sum_std_error"] + 1e-12
    )
    # the same seed gives the same values
    again = _values(shop, _valuate(shop, STAR, "knn_shapley_sampled", ", samples = 300, seed = 3"))
    assert again == got


def test_sampled_with_players_agrees_with_the_exact_values(shop):
    exact = _values(shop, _valuate(shop, STAR, "knn_shapley", ", players = 'orders, regions'"))
    est = _values(
        shop,
        _valuate(
            shop, STAR, "knn_shapley_sampled", ", players = ('orders', 'regions'), samples = 800"
        ),
    )
    assert est.keys() == exact.keys()
    for key, (value, std_error) in est.items():
        assert abs(value - exact[key][0]) <= 5 * std_error + 1e-12


def test_the_python_api_takes_players(shop):
    out = shop.valuate(
        STAR,
        "SELECT * FROM holdout",
        label="returned",
        players=["orders", "products"],
        transformer="none",
        features=("price", "weight", "rating", "income"),
    ).fetchall()
    assert out[0][3] == "join" and out[0][6] == 45


@pytest.mark.parametrize(
    ("options", "message", "pointed"),
    [
        (", players = 'orders, customers'", "reads: orders, products, sellers, regions", "players"),
        (", players = ''", "lists no relation|a name or a list of names", "players"),
        (", players = ' , '", "lists no relation", "players"),
        (", samples = 1", "samples", "samples"),
        (", samples = 100001", "samples", "samples"),
        (", seed = -2", "seed", "seed"),
    ],
)
def test_bad_options_point_at_the_option(shop, options, message, pointed):
    statement = (
        f"VALUATE ({STAR}) EVALUATE ON (SELECT * FROM holdout) USING knn_shapley_sampled "
        f"WITH (k = 3, label = 'returned'{options})"
    )
    with pytest.raises(CfdbOptionError, match=message) as info:
        shop.sql(statement)
    assert statement[info.value.start : info.value.end].startswith(pointed)
    assert shop.sql("SELECT count(*) FROM DataValues").fetchall() == [(0,)]


def test_samples_is_not_an_option_of_the_exact_method(shop):
    with pytest.raises(CfdbOptionError, match="does not apply to knn_shapley"):
        _valuate(shop, STAR, "knn_shapley", ", players = 'orders', samples = 10")


def test_exact_runs_leave_the_standard_error_null(shop):
    run = _valuate(shop, STAR, "knn_shapley", ", players = 'orders, products'")
    assert {s for _, s in _values(shop, run).values()} == {None}
    assert np.isfinite(shop.sql("SELECT sum(Value) FROM DataValues").fetchall()[0][0])
