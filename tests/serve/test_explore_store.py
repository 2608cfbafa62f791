"""The explorer's store reads and formatting helpers, without HTTP."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfdb.errors import CfdbExecutionError
from cfdb.serve.charts import law_curve, psi_curve
from cfdb.serve.formatting import fmt, int_param
from cfdb.store.explore import ExploreFile, inline


def test_a_long_statement_is_stopped(small_db: Path) -> None:
    file = ExploreFile(small_db)
    with file.reader() as r, pytest.raises(CfdbExecutionError, match=r"stopped after 0\.5 s"):
        r.page("SELECT count(*) FROM range(100000000000) a", 0, 10, time_limit=0.5)
    with file.reader() as r:  # the file is usable afterwards
        assert r.page("SELECT 1 AS one", 0, 10).rows == [(1,)]


def test_pages_of_a_result(small_db: Path) -> None:
    with ExploreFile(small_db).reader() as r:
        first = r.page("SELECT range AS i FROM range(7) ORDER BY i", 0, 3)
        last = r.page("SELECT range AS i FROM range(7) ORDER BY i", 6, 3)
        none = r.page("SET threads = 1", 0, 3)
    assert first.rows == [(0,), (1,), (2,)] and first.more
    assert last.rows == [(6,)] and not last.more
    assert none.rows == []


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
def test_inlined_parameters_are_the_bound_values(small_db: Path, text: str) -> None:
    """The SQL a page links to (parameters inlined) returns what the bound query returned."""
    sql = "SELECT $v AS v, length($v) AS n"
    with ExploreFile(small_db).reader() as r:
        bound = r.rows(sql, {"v": text}).rows
        linked = r.page(inline(sql, {"v": text}), 0, 5).rows
    assert linked == bound == [(text, len(text))]


def test_fmt() -> None:
    assert fmt(None) == "—" and fmt(True) == "true" and fmt(0.123456) == "0.1235"
    assert fmt(float("nan")) == "NaN" and fmt(["a", 1]) == "a, 1"
    assert fmt(b"\x00" * 2048) == "<2,048 bytes>"
    assert fmt("x" * 1000).endswith("…") and len(fmt("x" * 1000)) == 400
    assert int_param("3", 0) == 3 and int_param("-3", 0) == 0 and int_param("x", 5) == 5


@given(
    st.floats(0.1, 10),
    st.floats(0.01, 5),
    st.floats(0.01, 2),
    st.integers(1, 50),
    st.integers(51, 5000),
)
def test_law_curves_follow_their_formulas(a: float, b: float, c: float, lo: int, hi: int) -> None:
    xs, ys = law_curve(a, b, c, lo, hi)
    assert xs[0] == pytest.approx(lo) and xs[-1] == pytest.approx(hi)
    assert all(x1 < x2 for x1, x2 in itertools.pairwise(xs))
    for x, y in zip(xs, ys):
        assert y == pytest.approx(a - b * math.pow(x, -c))
    xs, ys = psi_curve(b, c, lo, hi)
    for x, y in zip(xs, ys):
        assert y == pytest.approx(b * math.pow(x, -c))
