"""Rendering of results and errors: alignment, NULL, truncation, modes, carets."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from cfdb import format as fmt
from cfdb.errors import CfdbCatalogError, CfdbSyntaxError


def _body(text: str) -> list[str]:
    """The data lines of a boxed table (between the header rule and the bottom rule)."""
    lines = text.split("\n")
    top = next(i for i, line in enumerate(lines) if line.startswith("├"))
    bottom = next(i for i, line in enumerate(lines) if line.startswith("└"))
    return lines[top + 1 : bottom]


def test_table_aligns_numbers_right_and_text_left() -> None:
    text = fmt.render_table(
        ["id", "name", "score"],
        ["INTEGER", "VARCHAR", "DOUBLE"],
        [(1, "ann", 2.5), (1234, "bo", None), (None, None, -10.25)],
    )
    lines = text.split("\n")
    assert lines[1] == "│      id │ name    │  score │"
    assert lines[2] == "│ INTEGER │ VARCHAR │ DOUBLE │"
    assert _body(text) == [
        "│       1 │ ann     │    2.5 │",
        "│    1234 │ bo      │   NULL │",
        "│    NULL │ NULL    │ -10.25 │",
    ]
    assert lines[-1] == "3 rows"
    # every line of the box has the same width
    assert len({len(line) for line in lines[:-1]}) == 1


def test_values_are_shown_readably() -> None:
    assert fmt.format_value(None) == "NULL"
    assert fmt.format_value(True) == "true"
    assert fmt.format_value(0.1) == "0.1"
    assert fmt.format_value(float("nan")) == "nan"
    assert fmt.format_value(Decimal("1.50")) == "1.50"
    assert fmt.format_value(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02 03:04:05"
    assert fmt.format_value(dt.date(2024, 1, 2)) == "2024-01-02"
    assert fmt.format_value([1, None, "a"]) == "[1, NULL, 'a']"
    assert fmt.format_value({"k": 1}) == "{'k': 1}"
    assert fmt.format_value(b"a\x00") == "a\\x00"


@pytest.mark.parametrize(
    ("type_name", "numeric"),
    [
        ("INTEGER", True),
        ("BIGINT", True),
        ("UBIGINT", True),
        ("HUGEINT", True),
        ("DOUBLE", True),
        ("FLOAT", True),
        ("DECIMAL(18,3)", True),
        ("VARCHAR", False),
        ("BOOLEAN", False),
        ("DATE", False),
        ("INTEGER[]", False),
        ("INTERVAL", False),
    ],
)
def test_numeric_types(type_name: str, numeric: bool) -> None:
    assert fmt.is_numeric_type(type_name) is numeric


def test_truncated_table_says_how_many_rows_are_left() -> None:
    rows = [(i,) for i in range(40)]
    text = fmt.render_table(["i"], ["BIGINT"], rows, total=1000)
    assert len(_body(text)) == 40
    assert text.split("\n")[-2:] == ["… 960 more rows", "1,000 rows"]
    one_more = fmt.render_table(["i"], ["BIGINT"], rows, total=41)
    assert "… 1 more row\n41 rows" in one_more


def test_long_and_multiline_cells() -> None:
    text = fmt.render_table(["s"], ["VARCHAR"], [("x" * 100,), ("two\nlines",)])
    body = _body(text)
    assert body[0] == "│ " + "x" * (fmt.MAX_CELL_WIDTH - 1) + "… │"
    assert body[1].startswith("│ two ") and body[2].startswith("│ lines ")


def test_wide_tables_leave_out_middle_columns() -> None:
    columns = [f"column_{i}" for i in range(20)]
    text = fmt.render_table(columns, ["INTEGER"] * 20, [tuple(range(20))], max_width=80)
    lines = text.split("\n")
    assert all(len(line) <= 80 for line in lines)
    assert "column_0" in lines[1] and "column_19" in lines[1] and "…" in lines[1]
    assert "column_10" not in text
    assert lines[-1].startswith("1 row, 20 columns (")


def test_empty_result_shows_the_header() -> None:
    text = fmt.render_table(["a"], ["INTEGER"], [])
    assert text.split("\n")[1:4] == ["│       a │", "│ INTEGER │", "├─────────┤"]
    assert text.endswith("└─────────┘\n0 rows")


def test_csv_and_line_modes() -> None:
    from cfdb.shell import modes

    assert modes.render("csv", ["a", "b"], None, [(1, None), (2, "x,y")]) == ('a,b\n1,\n2,"x,y"')
    text = modes.render("line", ["a", "long"], None, [(1, None), (2, "x")], total=3)
    assert text == "   a = 1\nlong = NULL\n\n   a = 2\nlong = x\n\n… 1 more row\n3 rows"
    with pytest.raises(ValueError, match="unknown output mode"):
        modes.render("nonsense", ["a"], None, [])


def test_names_in_columns() -> None:
    text = fmt.render_names(["a", "bb", "c", "d"], max_width=8)
    assert text.split("\n") == ["a   c", "bb  d"]


def test_error_caret_under_the_offending_token() -> None:
    script = "SELECT 1;\nSELECT * FROM nope WHERE x = 1"
    start = script.index("nope")
    err = CfdbCatalogError("no table nope", sql=script, start=start, end=start + 4)
    text = fmt.render_error(err)
    lines = text.split("\n")
    assert lines[0] == "Catalog error: no table nope"
    assert lines[1] == "LINE 2: SELECT * FROM nope WHERE x = 1"
    assert lines[2].index("^") == lines[1].index("nope")
    assert lines[2].strip() == "^^^^"


def test_error_with_a_file_name() -> None:
    script = "SELECT 1;\n\nSELEC 2;"
    err = CfdbSyntaxError("bad", sql=script, start=script.index("SELEC 2"), end=len(script) - 3)
    text = fmt.render_error(err, source="script.sql")
    assert text.startswith("script.sql:3:1: Syntax error: bad\nLINE 3: SELEC 2;\n        ^")
    assert fmt.render_error(CfdbSyntaxError("bad"), source="s.sql") == "s.sql: Syntax error: bad"


def test_internal_error_names_the_type_and_suggests_debug() -> None:
    text = fmt.render_internal_error(ZeroDivisionError("division by zero"))
    assert text.startswith("Internal error: ZeroDivisionError: division by zero")
    assert "--debug" in text


class _Relation:
    """Just enough of a relation for print_relation."""

    columns = ["n"]
    types = ["BIGINT"]

    def __init__(self, n: int) -> None:
        self.n = n

    def fetchall(self) -> list[tuple[int]]:
        return [(i,) for i in range(self.n)]


def test_take_rows_and_print_relation() -> None:
    rows, total = fmt.take_rows(_Relation(50), 10)
    assert (len(rows), total) == (10, 50)
    printed: list[str] = []
    fmt.print_relation(_Relation(3), printed.append)
    assert printed[0].endswith("│      2 │\n└────────┘\n3 rows")
