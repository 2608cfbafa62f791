"""How the explorer's pages show values: table cells, JSON for charts, URL parameters."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

#: Characters of a table cell shown; longer values end with an ellipsis.
MAX_CELL = 400


def fmt(value: Any) -> str:
    """A cell of a table: numbers to 4 significant digits, lists joined, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value)):,} bytes>"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items())
    text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def metrics_text(value: Any) -> str:
    """A model's ``Metrics`` JSON as ``name=value`` pairs."""
    if not value:
        return "—"
    try:
        data = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return str(value)
    if isinstance(data, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in data.items() if not isinstance(v, dict | list))
    return fmt(data)


def sql_href(sql: str) -> str:
    return "/sql?" + urlencode({"q": sql})


def to_json(spec: Any) -> str:
    # Safe inside <script type="application/json">: no "</" can close the element.
    return json.dumps(spec, default=str, allow_nan=False).replace("</", "<\\/")


def clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    return value


def int_param(value: Any, default: int) -> int:
    try:
        return max(int(value), 0) if default >= 0 else int(value)
    except (TypeError, ValueError):
        return default
