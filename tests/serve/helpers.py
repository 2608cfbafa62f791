"""Reading what a page shows: chart specs, SQL links, error texts."""

from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlparse


def spec(page: str, chart_id: str) -> dict[str, Any]:
    """The plotly figure a page embeds for chart ``chart_id``."""
    m = re.search(
        rf'<script type="application/json" id="{chart_id}-spec">(.*?)</script>', page, re.S
    )
    assert m, f"no chart {chart_id!r} on the page"
    return json.loads(m.group(1))


def sql_links(page: str) -> list[str]:
    """The SQL texts of every link to the SQL box on a page."""
    found = []
    for href in re.findall(r'href="(/sql\?[^"]+)"', page):
        query = parse_qs(urlparse(html.unescape(href)).query)
        found.append(query["q"][0])
    return found


def error_text(page: str) -> str:
    m = re.search(r'<pre class="error"[^>]*>(.*?)</pre>', page, re.S)
    return html.unescape(m.group(1)) if m else ""


def assert_no_traceback(page: str) -> None:
    assert "Traceback" not in page and 'File "' not in page


def oracle(path: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read straight from the file with cfdb (closed before returning)."""
    import cfdb

    with cfdb.connect(path, read_only=True) as db:
        rel = db.sql(sql, params)
        return rel.fetchall() if rel is not None else []
