"""Screenshots of the explorer's pages for docs/explorer.md.

``python -m tests.serve.screenshots DB OUTDIR`` serves DB, opens each page in headless
Chromium (as the end-to-end test does), selects the first unit of the first grid, and
writes ``explorer_*.png`` into OUTDIR.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlencode

from tests.serve.browser import browser, serving
from tests.serve.helpers import oracle

ACCURACY = """\
SELECT M.Name AS model, I.split, count(*) AS n,
       avg(CAST(P.Label = I.GroundTruth AS INTEGER)) AS accuracy
FROM Predictions P JOIN Instances I USING (InstanceId) JOIN Models M USING (ModelId)
GROUP BY ALL ORDER BY model, I.split"""


def shoot(db: Path, out: Path) -> list[Path]:
    grid = oracle(db, "SELECT min(Name) FROM Grids")[0][0]
    query = oracle(db, "SELECT min(QueryId) FROM CFQueries")[0][0]
    run = oracle(db, "SELECT min(RunId) FROM ValuationRuns")[0][0]
    pages = {"overview": "/", "sql": "/sql?" + urlencode({"q": ACCURACY})}
    if query is not None:
        pages["counterfactuals"] = f"/cfs/{query}?group=sex"
    if run is not None:
        pages["values"] = f"/values/{run}"
    written = []
    with serving(db) as base, browser() as page:
        for name, url in pages.items():
            page.goto(base + url)
            page.wait_for_load_state("networkidle")
            target = out / f"explorer_{name}.png"
            page.screenshot(path=str(target), full_page=name != "counterfactuals")
            written.append(target)
        if grid is not None:
            page.goto(f"{base}/grid/{grid}")
            page.wait_for_load_state("networkidle")
            page.click("tr.unit-row")
            page.wait_for_selector("#unit-curve svg.main-svg")
            page.wait_for_timeout(500)
            target = out / "explorer_grid.png"
            page.screenshot(path=str(target), full_page=True)
            written.append(target)
        if page.errors:
            raise RuntimeError(f"console errors: {page.errors}")
    return written


if __name__ == "__main__":
    for path in shoot(Path(sys.argv[1]), Path(sys.argv[2])):
        print(path)
