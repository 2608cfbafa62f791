"""End to end in headless Chromium: every page draws its charts without console errors, and
clicking a unit of the grid shows its values. Screenshots go to the test's temp folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.serve.helpers import oracle

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists("/usr/bin/chromium"),
        reason="needs Debian's chromium at /usr/bin/chromium (CI installs it in .ci/run)",
    ),
]

#: (url, charts it draws)
PAGES = [
    ("/", 0),
    ("/grids", 0),
    ("/grid/homesgrid", 3),
    ("/grid/pending", 0),
    ("/grid/strikesgrid", 4),
    ("/cfs", 0),
    ("/cfs/1", 1),
    ("/cfs/2", 0),
    ("/values", 0),
    ("/values/1", 2),
    ("/sql?q=SELECT+*+FROM+Models", 0),
]


def test_pages_in_chromium(small_db: Path, tmp_path: Path) -> None:
    pytest.importorskip("playwright", reason="needs the playwright package (dev extra)")
    from tests.serve.browser import browser, charts_drawn, serving

    with serving(small_db) as base, browser() as page:
        for url, charts in PAGES:
            response = page.goto(base + url)
            assert response is not None and response.status == 200, url
            page.wait_for_load_state("networkidle")
            assert charts_drawn(page) == charts, url
            name = url.strip("/").split("?")[0].replace("/", "_") or "overview"
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        assert page.errors == []

        page.goto(base + "/grid/homesgrid")
        page.wait_for_load_state("networkidle")
        page.click('tr.unit-row[data-unit="1"]')
        page.wait_for_selector("#unit-values table")
        page.wait_for_selector("#unit-curve svg.main-svg")
        text = page.inner_text("#unit-values")
        shapley = oracle(
            small_db,
            "SELECT Value FROM shapley('homesgrid') WHERE UnitId = 'own' AND Slice = 'all' "
            "AND Metric = 'accuracy'",
        )[0][0]
        assert f"{shapley:.4g}" in text and "Banzhaf" in text and "LOO" in text
        shapes = page.evaluate("() => document.getElementById('heatmap').layout.shapes.length")
        assert shapes == 8  # 4 pairs (S, S ∪ {own}), two outlines each
        assert page.is_visible("tr.unit-row.selected")
        page.screenshot(path=str(tmp_path / "grid_unit.png"), full_page=True)
        # a bar of the unit chart selects its unit too
        page.evaluate(
            "() => document.getElementById('unitbars').emit('plotly_click',"
            " {points: [{customdata: 2}]})"
        )
        page.wait_for_function(
            "() => document.getElementById('unit-hint').textContent.includes('rent')"
        )
        assert page.errors == []
    assert len(list(tmp_path.glob("*.png"))) == len(PAGES) + 1
