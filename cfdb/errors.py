"""The CfdbError hierarchy: every error cfdb raises on purpose.

Errors carry where they happened: the statement text, and a 0-based character span inside the
script (``start``/``end``) from which ``line`` and ``column`` (1-based) are computed. The REPL
and CLI use :func:`CfdbError.render` to show a caret under the offending span.

This module imports nothing from cfdb, so every layer can raise these.
"""

from __future__ import annotations


class CfdbError(Exception):
    """Root of every error cfdb raises on purpose.

    Args:
        message: what went wrong, naming the thing at fault.
        sql: the script (or statement) the error refers to, if any.
        start: 0-based offset of the first offending character in ``sql``.
        end: 0-based offset one past the last offending character.
        hint: an optional suggestion shown under the message.
    """

    kind = "Error"

    def __init__(
        self,
        message: str,
        *,
        sql: str | None = None,
        start: int | None = None,
        end: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sql = sql
        self.start = start
        self.end = end if end is not None else (start + 1 if start is not None else None)
        self.hint = hint

    def located(self, sql: str, start: int | None, end: int | None = None) -> CfdbError:
        """Attach a position if the error has none yet; returns ``self``."""
        if self.sql is None:
            self.sql = sql
        if self.start is None and start is not None:
            self.start = start
            self.end = end if end is not None else start + 1
        return self

    def shifted(self, sql: str, offset: int) -> CfdbError:
        """Re-anchor a position inside one statement to the whole script at ``offset``."""
        if self.start is not None:
            self.start += offset
            self.end = (self.end or self.start + 1) + offset
        self.sql = sql
        return self

    @property
    def line(self) -> int | None:
        """1-based line of ``start`` in ``sql``."""
        if self.sql is None or self.start is None:
            return None
        return self.sql.count("\n", 0, self.start) + 1

    @property
    def column(self) -> int | None:
        """1-based column of ``start`` in ``sql``."""
        if self.sql is None or self.start is None:
            return None
        return self.start - (self.sql.rfind("\n", 0, self.start) + 1) + 1

    def __str__(self) -> str:
        where = f" (line {self.line}, column {self.column})" if self.line is not None else ""
        return f"{self.message}{where}"

    def render(self) -> str:
        """The message, the offending line and a caret under the span; no traceback."""
        out = [f"{self.kind}: {self.message}"]
        if self.sql is not None and self.start is not None:
            line_start = self.sql.rfind("\n", 0, self.start) + 1
            line_end = self.sql.find("\n", self.start)
            if line_end == -1:
                line_end = len(self.sql)
            text = self.sql[line_start:line_end]
            prefix = f"LINE {self.line}: "
            width = max(1, min(self.end or self.start + 1, line_end) - self.start)
            out.append(prefix + text)
            out.append(" " * (len(prefix) + self.start - line_start) + "^" * width)
        if self.hint:
            out.append(f"Hint: {self.hint}")
        return "\n".join(out)


class CfdbSyntaxError(CfdbError, SyntaxError):
    """A statement cannot be parsed, or breaks a rule of the cfdb language."""

    kind = "Syntax error"


class CfdbSchemaError(CfdbError):
    """The database's schema does not fit: version, missing or mismatched tables/columns."""

    kind = "Schema error"


class CfdbCatalogError(CfdbError, LookupError):
    """A named object (table, column, model, feature, grid) does not exist, or already does."""

    kind = "Catalog error"


class CfdbDataError(CfdbError, ValueError):
    """The data cannot be used as asked: NULLs in features, one label class, bad values."""

    kind = "Data error"


class CfdbOptionError(CfdbDataError, CfdbSyntaxError):
    """An option's value has the wrong type, is out of range, or is not one of its choices."""

    kind = "Option error"


class CfdbUnsupportedError(CfdbError, NotImplementedError):
    """A valid request that cfdb does not support (yet), with the reason."""

    kind = "Unsupported"


class CfdbSolverError(CfdbError):
    """The solver timed out or answered unknown."""

    kind = "Solver error"


class CfdbPluginError(CfdbError):
    """An unknown or duplicate plugin name (model kind, generator, valuation, executor)."""

    kind = "Plugin error"


class CfdbNotFittedError(CfdbError):
    """A plugin method was called before ``fit``."""

    kind = "Not fitted"


class CfdbSecurityError(CfdbError):
    """Loading something would execute untrusted code and no opt-in was given."""

    kind = "Security error"


class CfdbExecutionError(CfdbError):
    """DuckDB failed while running a statement (wrapped, with the statement's position)."""

    kind = "Execution error"


class CfdbLockError(CfdbError):
    """The database file is locked by another process."""

    kind = "Lock error"
