"""Provenance capture: the rewritten query returns the user's rows, each with the base tuples
it comes from; queries outside select-project-join-union are refused with the reason."""

from __future__ import annotations

import duckdb
import pytest

from cfdb.errors import CfdbCatalogError, CfdbSyntaxError, CfdbUnsupportedError
from cfdb.lang import provenance
from cfdb.lang.provenance import BaseRelation, ViewText, capture, referenced_tables

SETUP = """
CREATE TABLE sellers (seller_id INTEGER PRIMARY KEY, country VARCHAR);
CREATE TABLE reviews (review_id INTEGER PRIMARY KEY, seller_id INTEGER, score DOUBLE);
CREATE TABLE notes (txt VARCHAR);
INSERT INTO sellers VALUES (10, 'de'), (20, 'fr'), (30, 'it');
INSERT INTO reviews VALUES (1, 10, 0.5), (2, 10, 0.7), (3, 20, 0.1), (4, 99, 0.3);
INSERT INTO notes VALUES ('x'), ('y'), ('x');
CREATE VIEW good AS SELECT * FROM reviews WHERE score > 0.2;
"""
KEYS = {"sellers": "seller_id", "reviews": "review_id", "notes": None}


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    c.execute(SETUP)
    yield c
    c.close()


def resolver(con):
    def resolve(name: str):
        if name.lower() == "good":
            sql = con.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'good'").fetchall()
            return ViewText("good", sql[0][0])
        if name.lower() not in KEYS:
            raise CfdbCatalogError(f"table {name!r} does not exist")
        return BaseRelation(name.lower(), KEYS[name.lower()])

    return resolve


def rows_with_provenance(con, sql):
    """(user row, polynomial as a sorted tuple of monomials of (relation, id)) per row."""
    captured = capture(sql, resolver(con))
    rel = con.sql(captured.sql)
    names = rel.columns
    out = []
    for row in rel.fetchall():
        record = dict(zip(names, row, strict=True))
        user = tuple(v for c, v in record.items() if not c.startswith(provenance.PREFIX))
        if captured.monomials:
            monos = {
                tuple(sorted((captured.relations[f["r"]], f["i"]) for f in m if f["r"] is not None))
                for m in record[captured.monomials]
            }
        else:
            mono = tuple(
                sorted(
                    (captured.relations[record[r]], record[i])
                    for r, i in captured.pairs
                    if record[r] is not None
                )
            )
            monos = {mono}
        out.append((user, tuple(sorted(monos))))
    return out, captured


def test_a_join_gives_products_of_fact_and_dimension_tuples(con):
    rows, captured = rows_with_provenance(
        con, "SELECT r.score, s.country FROM reviews r JOIN sellers s USING (seller_id)"
    )
    assert captured.relations == ("reviews", "sellers")
    assert rows == [
        ((0.5, "de"), ((("reviews", 1), ("sellers", 10)),)),
        ((0.7, "de"), ((("reviews", 2), ("sellers", 10)),)),
        ((0.1, "fr"), ((("reviews", 3), ("sellers", 20)),)),
    ]
    # the user's rows are exactly those of the original query
    original = sorted(
        con.sql(
            "SELECT r.score, s.country FROM reviews r JOIN sellers s USING (seller_id)"
        ).fetchall()
    )
    assert sorted(r[0] for r in rows) == original


def test_stars_unions_ctes_views_and_derived_tables_forward_provenance(con):
    sql = (
        "WITH g AS (SELECT * FROM good) "
        "SELECT q.*, s.country FROM (SELECT * FROM g UNION ALL SELECT * FROM reviews "
        "WHERE review_id = 3) q, sellers s WHERE q.seller_id = s.seller_id ORDER BY q.score"
    )
    rows, _ = rows_with_provenance(con, sql)
    assert [r[0] for r in rows] == con.sql(sql).fetchall()
    assert [r[1] for r in rows] == [
        ((("reviews", 3), ("sellers", 20)),),
        ((("reviews", 1), ("sellers", 10)),),
        ((("reviews", 2), ("sellers", 10)),),
    ]
    assert len(rows[0][0]) == 4  # q.* shows the user's columns only


def test_union_all_of_a_table_with_itself_is_a_fork_and_order_is_total(con):
    rows, captured = rows_with_provenance(
        con, "SELECT txt FROM notes UNION ALL SELECT txt || '!' FROM notes"
    )
    assert [r[1] for r in rows] == [((("notes", i),),) for i in (0, 0, 1, 1, 2, 2)]
    assert [r[0][0] for r in rows] == ["x", "x!", "y", "y!", "x", "x!"]
    assert captured.order_columns  # the union branch breaks ties between copies


def test_a_deduplicating_union_records_a_sum(con):
    rows, captured = rows_with_provenance(con, "SELECT txt FROM notes UNION SELECT 'x'")
    assert captured.monomials == provenance.MONOMIALS
    by_text = dict(rows)
    assert by_text[("x",)] == ((), (("notes", 0),), (("notes", 2),))
    assert by_text[("y",)] == ((("notes", 1),),)


def test_referenced_tables_skip_ctes():
    assert referenced_tables(
        "WITH c AS (SELECT * FROM a) SELECT * FROM c JOIN main.b USING (k)"
    ) == [
        "main.b",
        "a",
    ]


@pytest.mark.parametrize(
    ("sql", "message", "pointed"),
    [
        ("SELECT count(*) FROM reviews", "aggregate COUNT", "count(*"),
        ("SELECT seller_id FROM reviews GROUP BY seller_id", "GROUP BY", "GROUP BY"),
        ("SELECT DISTINCT seller_id FROM reviews", "DISTINCT merges", "DISTINCT"),
        ("SELECT * FROM reviews LEFT JOIN sellers USING (seller_id)", "OUTER JOIN", "LEFT"),
        ("SELECT * FROM reviews ANTI JOIN sellers USING (seller_id)", "ANTI JOIN", "ANTI"),
        (
            "SELECT * FROM reviews WHERE seller_id IN (SELECT seller_id FROM sellers)",
            "subquery",
            "",
        ),
        ("SELECT * FROM reviews LIMIT 2", "LIMIT picks rows", "LIMIT"),
        ("SELECT *, rank() OVER (ORDER BY score) FROM reviews", "window functions", "rank()"),
        ("SELECT seller_id FROM reviews EXCEPT SELECT seller_id FROM sellers", "difference", ""),
        ("SELECT seller_id FROM reviews INTERSECT SELECT seller_id FROM sellers", "INTERSECT", ""),
        ("SELECT * FROM read_csv('x.csv')", "not a base table", "read_csv"),
        ("SELECT * FROM (SELECT * FROM notes UNION SELECT * FROM notes) t", "outermost", ""),
        ("WITH RECURSIVE r AS (SELECT 1 AS n) SELECT * FROM r", "recursive", ""),
    ],
)
def test_unsupported_queries_are_refused_with_the_reason_at_the_culprit(con, sql, message, pointed):
    with pytest.raises(CfdbUnsupportedError, match=message) as info:
        capture(sql, resolver(con))
    err = info.value
    assert err.sql == sql and err.start is not None
    if pointed:
        assert sql[err.start : err.end].startswith(pointed[: err.end - err.start])


def test_unknown_tables_and_bad_views_are_located_at_the_reference(con):
    with pytest.raises(CfdbCatalogError) as info:
        capture("SELECT * FROM reviews, nope", resolver(con))
    assert info.value.start == len("SELECT * FROM reviews, ")

    def bad_view(name):
        return ViewText("v", "CREATE VIEW v AS SELECT count(*) FROM reviews")

    with pytest.raises(CfdbUnsupportedError, match="in view 'v': aggregate") as info:
        capture("SELECT * FROM v", bad_view)
    assert info.value.start == len("SELECT * FROM ")
    with pytest.raises(CfdbSyntaxError):
        capture("SELECT FROM WHERE", resolver(con))
