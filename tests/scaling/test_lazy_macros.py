"""Lazy filling for the scaling-law macros: a macro that reads a grid's cells trains the missing
ones first, like ``marginal_contributions``; the set of such macros is derived from the schema's
own macro bodies, so a new cell-reading macro cannot be left out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cfdb.engine.handlers.grid import GRID_MACROS
from tests.scaling.test_scaling_sql import EVAL, MODEL, OPTIONS, TARGETS, TRAIN, make_db

SCHEMA = Path(__file__).resolve().parents[2] / "sql" / "schema"
_MACRO = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?MACRO\s+(\w+)\s*\(\s*(\w+)", re.IGNORECASE)


def _macro_bodies() -> dict[str, tuple[str, str]]:
    """Macro name -> (first parameter, body text) over every migration (later ones win)."""
    out: dict[str, tuple[str, str]] = {}
    for path in sorted(SCHEMA.glob("*.sql")):
        text = re.sub(r"--[^\n]*", "", path.read_text())  # comments name macros too
        found = list(_MACRO.finditer(text))
        for i, m in enumerate(found):
            end = found[i + 1].start() if i + 1 < len(found) else len(text)
            out[m.group(1).lower()] = (m.group(2).lower(), text[m.end() : end])
    return out


def test_every_macro_that_reads_grid_cells_fills_the_grid():
    bodies = _macro_bodies()
    # fixed point: a macro reads cells if its body reads GridCells or calls a macro that does
    readers = {"gridcells"}
    while True:
        more = {
            name
            for name, (_, body) in bodies.items()
            if name not in readers
            and any(re.search(rf"\b{r}\b", body, re.IGNORECASE) for r in readers)
        }
        if not more:
            break
        readers |= more
    on_a_grid = {n for n in readers if n in bodies and bodies[n][0] == "g"}
    assert {"marginal_by_size", "unit_scaling_dshap_mc"} <= on_a_grid
    assert on_a_grid <= GRID_MACROS, sorted(on_a_grid - GRID_MACROS)


@pytest.mark.slow  # trains the grid's 35 cells
def test_dshap_mc_on_an_unfilled_grid_trains_it_first():
    db = make_db(3)
    db.sql(
        f"CREATE GRID g TRAIN ON ({TRAIN}) SUBSETS MARGINAL 5 SIZES BETWEEN 6 AND 40 FOR "
        f"({TARGETS}) SHARED EVALUATE ON ({EVAL}) {MODEL} {OPTIONS}"
    )
    cells = "SELECT count(*) FROM GridCells WHERE Grid = 'g'"
    assert db.sql(cells).fetchall() == [(0,)]
    mc = db.sql(
        "SELECT UnitId, Samples FROM unit_scaling_dshap_mc('g', 6, 40) WHERE Metric = 'log_loss'"
    ).fetchall()
    assert len(mc) == 6 and all(samples == 5 for _, samples in mc)
    assert db.sql(cells).fetchall()[0][0] > 0
    db.close()
