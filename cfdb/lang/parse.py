"""Scripts to statements: split on top-level semicolons, parse cfdb statements, keep spans.

Plain SQL statements are not parsed here: they are handed to DuckDB as the user's original
text (sqlglot's regenerated SQL can differ from what the user wrote). cfdb statements become
nodes from :mod:`cfdb.lang.nodes`. Every position is a 0-based offset in the whole script.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from cfdb.errors import CfdbSyntaxError
from cfdb.lang.dialect import CfdbDialect, CfdbParser
from cfdb.lang.nodes import CfdbStatement

_DIALECT = CfdbDialect()


@dataclass(frozen=True)
class Statement:
    """One statement of a script.

    Attributes:
        text: the statement as the user wrote it, without the closing semicolon.
        start: offset of its first character in ``script``.
        end: offset one past its last character.
        script: the whole script it came from.
        node: the parsed cfdb statement, or ``None`` for plain SQL.
    """

    text: str
    start: int
    end: int
    script: str
    node: CfdbStatement | None = None

    @property
    def is_cfdb(self) -> bool:
        return self.node is not None


def tokenize(script: str) -> list[Token]:
    """sqlglot tokens of ``script`` (DuckDB rules); a tokenizing failure is a syntax error."""
    try:
        return _DIALECT.tokenize(script)
    except TokenError as exc:
        raise CfdbSyntaxError(f"cannot read the script: {exc}", sql=script, start=0) from exc


def _chunks(tokens: list[Token]) -> list[list[Token]]:
    chunks: list[list[Token]] = [[]]
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            chunks.append([])
        else:
            chunks[-1].append(tok)
    return [c for c in chunks if c]


def _is_cfdb(tokens: list[Token]) -> bool:
    words = [t.text.upper() for t in tokens[:4]]
    return any(tuple(words[: len(prefix)]) == prefix for prefix in CfdbParser.CFDB_STATEMENTS)


def _parse_cfdb(tokens: list[Token], script: str) -> CfdbStatement:
    parser = _DIALECT.parser(error_level=ErrorLevel.IMMEDIATE)
    try:
        node = parser.parse(tokens, script)[0]
    except ParseError as exc:
        raise _from_parse_error(exc, script) from exc
    except RecursionError:
        raise CfdbSyntaxError(
            "the statement nests too deeply to parse", sql=script, start=tokens[0].start
        ) from None
    assert isinstance(node, CfdbStatement)
    return node


def _from_parse_error(exc: ParseError, script: str) -> CfdbSyntaxError:
    info = exc.errors[0] if exc.errors else {}
    line, col = info.get("line"), info.get("col")
    message = str(info.get("description") or exc).split("\n")[0]
    if message.startswith("Required keyword"):
        message = "incomplete expression: an operand is missing"
    if line is None or col is None:
        return CfdbSyntaxError(message, sql=script, start=0)
    line_start = 0
    for _ in range(int(line) - 1):
        # sqlglot also counts a lone "\r" as a line break: fall back to the start.
        next_break = script.find("\n", line_start)
        if next_break < 0:
            return CfdbSyntaxError(message, sql=script, start=0)
        line_start = next_break + 1
    highlight = str(info.get("highlight") or " ")
    end = line_start + int(col)  # sqlglot's col is the 1-based column of the token's last char
    start = max(line_start, end - len(highlight))
    return CfdbSyntaxError(message, sql=script, start=start, end=end)


def split(script: str) -> list[Statement]:
    """The statements of ``script``, cfdb ones parsed, plain SQL kept as text.

    Raises:
        CfdbSyntaxError: a cfdb statement is malformed (with its position in ``script``).
    """
    statements = []
    for chunk in _chunks(tokenize(script)):
        start, end = chunk[0].start, chunk[-1].end + 1
        node = _parse_cfdb(chunk, script) if _is_cfdb(chunk) else None
        statements.append(Statement(script[start:end], start, end, script, node))
    return statements


def parse_one(text: str) -> Statement:
    """The single statement of ``text`` (a trailing semicolon is optional)."""
    statements = split(text)
    if len(statements) != 1:
        raise CfdbSyntaxError(f"expected one statement, found {len(statements)}", sql=text, start=0)
    return statements[0]


def is_complete(text: str) -> bool:
    """Whether ``text`` ends a statement: its last token is a top-level semicolon.

    Used by the REPL to decide between running the buffer and asking for another line.
    """
    if not text.strip():
        return False
    try:
        tokens = _DIALECT.tokenize(text)
    except TokenError:
        return False  # e.g. an unterminated string: keep reading
    return bool(tokens) and tokens[-1].token_type == TokenType.SEMICOLON


def statement_keywords() -> list[str]:
    """Every keyword that can start or continue a cfdb statement (for completion)."""
    words = {w for prefix in CfdbParser.CFDB_STATEMENTS for w in prefix}
    return sorted(words | {"TRAIN", "ON", "WITH", "AS", "FROM", "IF", "EXISTS"})
