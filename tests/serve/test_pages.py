"""HTTP tests of every page of the explorer on a small database, against SQL oracles."""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import pytest

from tests.serve.helpers import assert_no_traceback, error_text, oracle, spec, sql_links

PAGES = [
    "/",
    "/grids",
    "/grid/homesgrid",
    "/grid/homesgrid?metric=log_loss&order=design&slice=true",
    "/grid/pending",
    "/grid/strikesgrid",
    "/cfs",
    "/cfs/1",
    "/cfs/1?group=student",
    "/cfs/2",
    "/values",
    "/values/1",
    "/values/1?order=valuable&page=1",
    "/values/2?relation=Instances.home",
    "/sql",
]


@pytest.mark.parametrize("url", PAGES)
def test_page_renders_and_its_sql_runs(client, url):
    r = client.get(url)
    assert r.status_code == 200, error_text(r.text)
    assert_no_traceback(r.text)
    links = sql_links(r.text)
    if url != "/sql":
        assert links, "every page links to the SQL that produced it"
    for text in links[:12]:
        box = client.get("/sql", params={"q": text})
        assert box.status_code == 200, (text, error_text(box.text))


def test_overview_counts_and_lists(client, small_db):
    page = client.get("/").text
    for table, n in oracle(
        small_db,
        "SELECT 'Models', count(*) FROM Models UNION ALL SELECT 'CFs', count(*) FROM CFs "
        "UNION ALL SELECT 'GridCells', count(*) FROM GridCells",
    ):
        assert re.search(rf"<td[^>]*>{table}</td><td[^>]*>{n}</td>", page), table
    for name in ("income", "home", "lr", "logistic_regression"):
        assert name in page
    assert 'href="/grid/homesgrid"' in page and 'href="/grid/pending"' in page
    assert 'href="/values/1"' in page and 'href="/cfs/2"' in page


def _cells(small_db: Path, metric: str, order: str) -> list[list[float | None]]:
    rows = oracle(
        small_db,
        f"SELECT s.SubsetId, e.SliceId, c.Value FROM TrainSubsets s CROSS JOIN EvalSlices e "
        f"LEFT JOIN GridCells c ON c.Grid = s.Grid AND c.SubsetId = s.SubsetId "
        f"AND c.SliceId = e.SliceId AND c.Metric = ? "
        f"WHERE s.Grid = 'homesgrid' AND e.Grid = 'homesgrid' ORDER BY {order}, e.SliceId",
        [metric],
    )
    out: dict[int, list[float | None]] = {}
    for sid, _, value in rows:
        out.setdefault(sid, []).append(value)
    return list(out.values())


def _flat(rows: list[list[float | None]]) -> list[float | None]:
    return [v for row in rows for v in row]


def test_heatmap_is_the_grid(client, small_db):
    page = client.get("/grid/homesgrid?metric=log_loss").text
    fig = spec(page, "heatmap")
    z = fig["data"][0]["z"]
    assert _flat(z) == pytest.approx(_flat(_cells(small_db, "log_loss", "s.Size, s.SubsetId")))
    assert fig["data"][0]["x"] == ["all", "false", "true"]
    # lower log-loss is better: the colour scale is reversed
    assert fig["data"][0]["reversescale"] is True
    hover = fig["data"][0]["text"]
    full = oracle(
        small_db, "SELECT SubsetId FROM TrainSubsets WHERE Grid = 'homesgrid' AND Size = 3"
    )
    assert any(f"#{full[0][0]}" in row[0] and "mortgage, own, rent" in row[0] for row in hover)


def test_large_grids_are_banded_means(small_db):
    """The banded heat map (the fast path) against band means computed here."""
    from starlette.testclient import TestClient

    from cfdb.serve.app import create_app

    with TestClient(create_app(str(small_db), bands=3)) as c:
        page = c.get("/grid/homesgrid?order=design").text
    assert "8 subsets are drawn as 3 bands" in html.unescape(page)
    z = spec(page, "heatmap")["data"][0]["z"]
    rows = _cells(small_db, "accuracy", "s.Role, s.Tag, s.Draw, s.Size, s.SubsetId")
    n = len(rows)
    want = []
    for band in range(3):
        members = [rows[i] for i in range(n) if math.floor(i * 3 / n) == band]
        want.append([sum(m[j] for m in members) / len(members) for j in range(3)])
    assert _flat(z) == pytest.approx(_flat(want))


def test_unit_panel_values_match_the_macros(client, small_db):
    r = client.get("/grid/homesgrid/unit", params={"unit": 1, "metric": "accuracy"})
    body = r.json()
    assert body["unit"]["UnitId"] == "own"
    got = {row[0]: row[1:] for row in body["rows"]}
    want = oracle(
        small_db,
        "SELECT l.Slice, l.Value, s.Value, b.Value, bs.Value FROM loo('homesgrid') l "
        "JOIN shapley('homesgrid') s USING (UnitId, Slice, Metric) "
        "JOIN banzhaf('homesgrid') b USING (UnitId, Slice, Metric) "
        "JOIN beta_shapley('homesgrid', 16, 1) bs USING (UnitId, Slice, Metric) "
        "WHERE UnitId = 'own' AND Metric = 'accuracy'",
    )
    assert len(want) == 3
    for slice_, *values in want:
        assert got[slice_] == pytest.approx(values)
    # every pair (S, S u {own}) is highlighted: one band per subset here, in size order
    order = [
        r[0]
        for r in oracle(
            small_db,
            "SELECT SubsetId FROM TrainSubsets WHERE Grid = 'homesgrid' ORDER BY Size, SubsetId",
        )
    ]
    pairs = oracle(
        small_db,
        "SELECT WithoutId, WithId FROM SubsetPairs WHERE Grid = 'homesgrid' AND UnitIndex = 1",
    )
    assert sorted(map(tuple, body["pairs"])) == sorted(
        (order.index(a), order.index(b)) for a, b in pairs
    )
    assert body["curve"]["data"][0]["x"] == [0, 1, 2]


def test_unit_panel_bad_unit(client):
    r = client.get("/grid/homesgrid/unit", params={"unit": 99})
    assert r.status_code == 404 and "no unit" in r.json()["error"]
    assert client.get("/grid/nope/unit?unit=1").status_code == 404


def test_strikes_chart_is_the_strikes_macro(client, small_db):
    page = client.get("/grid/strikesgrid").text
    fig = spec(page, "strikes")["data"][0]
    want = oracle(
        small_db,
        "SELECT \"Group\", Value FROM strikes('strikesgrid') WHERE Slice = 'all' "
        "AND Metric = 'accuracy' ORDER BY \"Group\"",
    )
    assert len(want) == 3
    assert fig["x"] == [g for g, _ in want]
    assert fig["y"] == pytest.approx([v for _, v in want])
    assert 'id="strikes"' not in client.get("/grid/homesgrid").text


def test_grid_without_cells_says_so(client, small_db):
    page = client.get("/grid/pending").text
    assert "has no cells yet" in page and "MATERIALIZE GRID pending" in page
    subsets = oracle(small_db, "SELECT count(*) FROM TrainSubsets WHERE Grid = 'pending'")[0][0]
    assert f"of {subsets} subsets trained" in page


def test_counterfactual_diffs(client, small_db):
    page = client.get("/cfs/1").text
    feats = ["income", "amount", "home", "student"]
    rows = oracle(
        small_db,
        "SELECT " + ", ".join(f"I.{f} IS DISTINCT FROM C.{f}" for f in feats) + " "
        "FROM Prediction_CFs PC JOIN CFs C USING (CfId) JOIN Predictions P USING (PredictionId) "
        "JOIN Instances I USING (InstanceId) WHERE PC.QueryId = 1",
    )
    assert len(rows) == 6
    assert page.count('class="changed"') == sum(sum(r) for r in rows)
    assert page.count("<article") == 6
    assert "C.home = I.home" in html.unescape(page)  # the query text
    assert "condition: <code>home = " in html.unescape(page)


def test_burden_chart_is_the_mean_closest_distance(client, small_db):
    page = client.get("/cfs/1?group=home").text
    fig = spec(page, "burden")["data"][0]
    rows = oracle(
        small_db,
        "SELECT I.home, P.PredictionId, PC.Distance FROM Prediction_CFs PC "
        "JOIN Predictions P USING (PredictionId) JOIN Instances I USING (InstanceId) "
        "WHERE PC.QueryId = 1",
    )
    best: dict[int, tuple[str, float]] = {}
    for home, pid, d in rows:
        best[pid] = (home, min(d, best.get(pid, (home, math.inf))[1]))
    groups: dict[str, list[float]] = {}
    for home, d in best.values():
        groups.setdefault(home, []).append(d)
    assert dict(zip(fig["x"], fig["y"])) == pytest.approx(
        {g: sum(v) / len(v) for g, v in groups.items()}
    )


def test_query_without_cfs_says_so(client):
    page = client.get("/cfs/2").text
    assert "stored no counterfactuals" in page
    assert 'id="burden"' not in page


def test_values_ranked_and_repair_curve(client, small_db):
    page = client.get("/values/1").text
    values = sorted(v for (v,) in oracle(small_db, "SELECT Value FROM DataValues WHERE RunId = 1"))
    first = re.search(r"<tbody>\s*<tr>(.*?)</tr>", page, re.S).group(1)
    assert f"{values[0]:.4g}" in first  # most harmful first
    curve = spec(page, "repair")["data"][0]
    utility = oracle(small_db, "SELECT UtilityAll FROM ValuationRuns WHERE RunId = 1")[0][0]
    assert curve["y"][0] == pytest.approx(utility - values[0])
    assert curve["y"][-1] == pytest.approx(utility - sum(values), abs=1e-9)
    assert curve["x"][-1] == pytest.approx(1.0)
    hist = spec(page, "histogram")["data"][0]
    assert sum(hist["y"]) == len(values)


def test_values_per_relation(client):
    page = client.get("/values/2").text
    assert "Instances.home" in page and "exact_shapley" in page


def test_sql_box_pages(client):
    r = client.get("/sql", params={"q": "SELECT range AS i FROM range(120) ORDER BY i"})
    assert r.status_code == 200 and r.text.count("<tr>") == 51 and "next" in r.text
    r = client.get("/sql", params={"q": "SELECT range AS i FROM range(120) ORDER BY i", "page": 2})
    assert r.text.count("<tr>") == 21 and ">119<" in r.text


@pytest.mark.parametrize(
    "statement, expected",
    [
        ("DELETE FROM Models", "read-only"),
        ("CREATE TABLE t AS SELECT 1", "read-only"),
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("SELEC 1", "syntax"),
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
        ("ATTACH '/tmp/other.duckdb' AS o", "disabled by configuration"),
        ("COPY Models TO '/tmp/cfdb-serve-test-models.csv'", "disabled by configuration"),
    ],
)
def test_sql_box_refuses_and_explains(client, small_db, statement, expected):
    r = client.get("/sql", params={"q": statement})
    assert r.status_code == 400
    assert_no_traceback(r.text)
    assert expected.lower() in error_text(r.text).lower()
    assert oracle(small_db, "SELECT count(*) FROM Models")[0][0] == 1
    assert not Path("/tmp/cfdb-serve-test-models.csv").exists()


def test_static_files_are_a_fixed_table(client):
    assert client.get("/static/plotly.min.js").status_code == 200
    assert (
        "Plotly" in client.get("/static/app.js").text
        or client.get("/static/app.js").status_code == 200
    )
    for path in (
        "/static/../cfdb/serve/app.py",
        "/static/..%2Fapp.py",
        "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/static/app.py",
        "/static/",
        "/etc/passwd",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "root:" not in r.text and "import" not in r.text
        assert_no_traceback(r.text)


@pytest.mark.parametrize(
    "url, status, text",
    [
        ("/grid/nope", 404, "no grid named 'nope'"),
        ("/cfs/99", 404, "no CFQL query 99"),
        ("/cfs/x", 404, "no CFQL query"),
        ("/values/99", 404, "no valuation run 99"),
        ("/grid/homesgrid?metric=nope&order=nope&slice=nope&upage=x", 200, "homesgrid"),
    ],
)
def test_bad_requests(client, url, status, text):
    r = client.get(url)
    assert r.status_code == status
    assert text in html.unescape(r.text)
    assert_no_traceback(r.text)


def test_not_a_cfdb_file(tmp_path):
    from starlette.testclient import TestClient

    from cfdb.serve.app import create_app

    text = tmp_path / "notes.duckdb"
    text.write_text("hello, not a database\n" * 10)
    with TestClient(create_app(str(text))) as c:
        for url in ("/", "/grid/g", "/cfs/1", "/values/1"):
            r = c.get(url)
            assert r.status_code == 422 and "not a DuckDB database file" in error_text(r.text)
            assert_no_traceback(r.text)
        assert "not a DuckDB database file" in error_text(c.get("/sql?q=SELECT+1").text)
    plain = tmp_path / "plain.duckdb"
    import duckdb

    con = duckdb.connect(str(plain))
    con.execute("CREATE TABLE t AS SELECT 42 AS x")
    con.close()
    with TestClient(create_app(str(plain))) as c:
        r = c.get("/")
        assert r.status_code == 422 and "not a cfdb database" in error_text(r.text)
        r = c.get("/sql", params={"q": "SELECT x FROM t"})
        assert r.status_code == 200 and ">42<" in r.text
    with TestClient(create_app(str(tmp_path / "missing.duckdb"))) as c:
        r = c.get("/")
        assert r.status_code == 422 and "does not exist" in error_text(r.text)
    assert not (tmp_path / "missing.duckdb").exists()


def test_cross_site_statements_and_foreign_hosts_are_refused(small_db):
    from starlette.testclient import TestClient

    from cfdb.serve.app import create_app

    with TestClient(create_app(str(small_db), read_only=False)) as c:
        r = c.get(
            "/sql", params={"q": "DROP TABLE Models"}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert r.status_code == 403 and "another site" in error_text(r.text)
    assert oracle(small_db, "SELECT count(*) FROM Models")[0][0] == 1
    local = ["127.0.0.1", "localhost"]
    with TestClient(
        create_app(str(small_db), allowed_hosts=local), base_url="http://evil.example"
    ) as c:
        assert c.get("/").status_code == 400
    with TestClient(
        create_app(str(small_db), allowed_hosts=local), base_url="http://localhost:8765"
    ) as c:
        assert c.get("/").status_code == 200
