"""AST nodes for cfdb statements (sqlglot expressions declared with ``arg_types``).

Every node keeps the character span of its statement (``start``/``end``, 0-based, end
exclusive, in the whole script) and ``spans``: a dict from part name ("name", "kind", a
parameter name, ...) to the (start, end) span of that part, so that handlers can point errors at
the exact text at fault. Embedded queries are kept as :class:`RawQuery`: the user's original
text, which DuckDB runs as written.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp


class CfdbStatement(exp.Expression):
    """Base of every cfdb statement node."""

    arg_types: dict[str, bool] = {"start": False, "end": False, "spans": False}

    @property
    def start(self) -> int:
        return int(self.args.get("start") or 0)

    @property
    def end(self) -> int:
        return int(self.args.get("end") or 0)

    def span(self, part: str) -> tuple[int, int]:
        """The span of ``part`` (falls back to the whole statement)."""
        spans = self.args.get("spans") or {}
        return spans.get(part, (self.start, self.end))

    def params(self) -> dict[str, Any]:
        """The ``WITH (...)`` parameters as a plain dict (names as written)."""
        return {str(p.args["this"]): p.args["value"] for p in self.args.get("params") or []}

    def param(self, name: str) -> Param | None:
        """The parameter called ``name`` (case-insensitive), if given."""
        for p in self.args.get("params") or []:
            if p.name == name.lower():
                return p
        return None


def _args(**extra: bool) -> dict[str, bool]:
    return {**CfdbStatement.arg_types, **extra}


class RawQuery(exp.Expression):
    """A parenthesized query kept as the user's text: ``this`` is the text inside the parens."""

    arg_types = {"this": True, "start": True, "end": True}

    @property
    def text(self) -> str:
        return str(self.args["this"])

    @property
    def start(self) -> int:
        return int(self.args["start"])

    @property
    def end(self) -> int:
        return int(self.args["end"])


class Param(exp.Expression):
    """One ``name = value`` of a ``WITH (...)`` list; ``value`` is a Python value."""

    arg_types = {"this": True, "value": False, "start": True, "end": True}

    @property
    def name(self) -> str:
        return str(self.args["this"]).lower()

    @property
    def value(self) -> Any:
        return self.args.get("value")

    @property
    def span(self) -> tuple[int, int]:
        return int(self.args["start"]), int(self.args["end"])


class LoadInstances(CfdbStatement):
    """``LOAD INSTANCES FROM ('file' | (query)) [WITH (...)]``."""

    arg_types = _args(source=True, params=False)


class LoadDataset(CfdbStatement):
    """``LOAD DATASET name [WITH (...)]``: a dataset bundled with cfdb."""

    arg_types = _args(this=True, params=False)


class DeriveFeatures(CfdbStatement):
    """``DERIVE FEATURES``: fill ``Features`` from ``Instances``."""

    arg_types = _args()


class CreateModel(CfdbStatement):
    """``CREATE [OR REPLACE] MODEL name AS kind [WITH (...)] TRAIN ON (query)``."""

    arg_types = _args(this=True, kind=True, params=False, train=True, replace=False)


class Predict(CfdbStatement):
    """``PREDICT name ON (query)``: fill ``Predictions``."""

    arg_types = _args(this=True, source=True)


class ImportModel(CfdbStatement):
    """``IMPORT MODEL name FROM 'file' [WITH (...)]``: register an already fitted estimator."""

    arg_types = _args(this=True, path=True, params=False, replace=False)


class DropModel(CfdbStatement):
    """``DROP MODEL [IF EXISTS] name``."""

    arg_types = _args(this=True, exists=False)


#: Every statement node class, by name (handlers are looked up by these names).
STATEMENT_NODES: dict[str, type[CfdbStatement]] = {
    cls.__name__: cls
    for cls in (
        LoadInstances,
        LoadDataset,
        DeriveFeatures,
        CreateModel,
        Predict,
        ImportModel,
        DropModel,
    )
}
