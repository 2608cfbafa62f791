"""Every page of the explorer on the database ``cfdb demo`` builds (no grid, CF or value yet:
the pages say so)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serve.helpers import assert_no_traceback, error_text, oracle, sql_links

pytestmark = pytest.mark.slow


def test_demo_pages(demo_db: Path) -> None:
    from starlette.testclient import TestClient

    from cfdb.serve.app import create_app

    with TestClient(create_app(str(demo_db))) as c:
        page = c.get("/").text
        n = oracle(demo_db, "SELECT count(*) FROM Predictions")[0][0]
        assert f">{n}<" in page
        for word in ("rf", "lr", "random_forest", "logistic_regression", "marital_status"):
            assert word in page
        for text in sql_links(page):
            assert c.get("/sql", params={"q": text}).status_code == 200, text
        expected = {
            "/grids": "no grids yet",
            "/cfs": "No CFQL query has run",
            "/values": "No valuation run yet",
            "/grid/none": "no grid named",
            "/sql?q=SELECT+Name+FROM+Models+ORDER+BY+Name": ">lr</td>",
        }
        for url, text in expected.items():
            r = c.get(url)
            assert text in r.text, (url, error_text(r.text))
            assert_no_traceback(r.text)
