"""The cfdb dialect: DuckDB's, plus parsers for cfdb statements.

``CfdbDialect`` subclasses sqlglot's DuckDB dialect. Its parser dispatches on the leading
keywords of a statement through :data:`CfdbParser.CFDB_STATEMENTS` (the same table-driven
style as sqlglot's ``STATEMENT_PARSERS``); everything else is DuckDB's. Only cfdb statements
are ever parsed here: plain SQL goes to DuckDB as the user's text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.tokens import Token, TokenType

from cfdb.errors import CfdbSyntaxError
from cfdb.lang import nodes

_WORD_TYPES = {TokenType.VAR, TokenType.IDENTIFIER}


#: Deepest nesting of lists in an option value.
MAX_VALUE_DEPTH = 8
_LIST_CLOSERS = {TokenType.L_PAREN: TokenType.R_PAREN, TokenType.L_BRACKET: TokenType.R_BRACKET}
_NUMBER_RE = re.compile(r"(?:\d+(?:_\d+)*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _number(text: str) -> int | float | None:
    """A numeric literal as DuckDB reads it (``1_000`` included), or ``None`` if malformed.

    A float that overflows to infinity is returned as ``inf``; option checks refuse it.
    """
    if not _NUMBER_RE.fullmatch(text):
        return None
    plain = text.replace("_", "")
    if any(c in plain for c in ".eE"):
        return float(plain)
    return int(plain)


def _span(first: Token, last: Token) -> tuple[int, int]:
    return first.start, last.end + 1


class CfdbParser(DuckDB.Parser):  # type: ignore[name-defined,misc]
    """DuckDB's parser plus the cfdb statements."""

    #: Leading keywords -> parse method (see :func:`register_statement`).
    CFDB_STATEMENTS: dict[tuple[str, ...], Callable[[CfdbParser], nodes.CfdbStatement]] = {}
    #: The same, longest prefix first (the order in which prefixes are tried).
    CFDB_STATEMENTS_SORTED: list[
        tuple[tuple[str, ...], Callable[[CfdbParser], nodes.CfdbStatement]]
    ] = []

    # -- helpers ----------------------------------------------------------------------------
    def _fail(self, message: str, token: Token | None = None, hint: str | None = None) -> Any:
        token = token or self._curr or self._prev
        if not token:
            raise CfdbSyntaxError(message, sql=self.sql, start=len(self.sql or ""), hint=hint)
        start, end = _span(token, token)
        raise CfdbSyntaxError(message, sql=self.sql, start=start, end=end, hint=hint)

    def _fail_end(self, what: str) -> Any:
        if not self._curr:
            end = (self._prev.end + 1) if self._prev else 0
            raise CfdbSyntaxError(
                f"statement ended early: expected {what}", sql=self.sql, start=end, end=end + 1
            )
        return self._fail(f"expected {what}, found {self._curr.text!r}")

    def _expect_words(self, *words: str) -> None:
        for word in words:
            if not self._curr or self._curr.text.upper() != word:
                self._fail_end(word)
            self._advance()

    def _expect(self, token_type: TokenType, what: str) -> Token:
        if not self._match(token_type):
            self._fail_end(what)
        return self._prev

    def _name(self, what: str) -> tuple[str, tuple[int, int]]:
        """An identifier (bare, quoted, or a keyword used as a name)."""
        tok = self._curr
        if not tok or tok.token_type in (
            TokenType.L_PAREN,
            TokenType.R_PAREN,
            TokenType.SEMICOLON,
            TokenType.COMMA,
            TokenType.STRING,
            TokenType.NUMBER,
        ):
            return self._fail_end(what)
        self._advance()
        return tok.text, _span(tok, tok)

    def _raw_query(self, what: str) -> nodes.RawQuery:
        """A parenthesized query, kept verbatim (DuckDB parses it, not sqlglot)."""
        return self._raw_query_tokens(what)[0]

    def _raw_query_tokens(self, what: str) -> tuple[nodes.RawQuery, list[Token]]:
        """A parenthesized query as verbatim text, plus the tokens inside the parentheses."""
        if not self._match(TokenType.L_PAREN):
            self._fail_end(f"a parenthesized query for {what}")
        opening = self._prev
        depth = 1
        inner: list[Token] = []
        while self._curr:
            if self._curr.token_type == TokenType.L_PAREN:
                depth += 1
            elif self._curr.token_type == TokenType.R_PAREN:
                depth -= 1
                if depth == 0:
                    closing = self._curr
                    self._advance()
                    inner_start, inner_end = opening.end + 1, closing.start
                    text = self.sql[inner_start:inner_end]
                    if not text.strip():
                        raise CfdbSyntaxError(
                            f"empty query for {what}",
                            sql=self.sql,
                            start=opening.start,
                            end=closing.end + 1,
                        )
                    query = nodes.RawQuery(this=text, start=inner_start, end=inner_end)
                    return query, inner
            inner.append(self._curr)
            self._advance()
        raise CfdbSyntaxError(f"unclosed parenthesis in {what}", sql=self.sql, start=opening.start)

    def _value(self, depth: int = 0) -> Any:
        """An option value: a number, string, boolean, NULL, word, or a list of values
        written ``(a, b)`` or ``[a, b]`` (a tuple)."""
        tok = self._curr
        if not tok:
            return self._fail_end("a value")
        closer = _LIST_CLOSERS.get(tok.token_type)
        if closer is not None:
            if depth >= MAX_VALUE_DEPTH:
                return self._fail(f"a value nests lists more than {MAX_VALUE_DEPTH} deep", tok)
            self._advance()
            items = []
            close = "')'" if closer == TokenType.R_PAREN else "']'"
            if not self._match(closer):
                while True:
                    items.append(self._value(depth + 1))
                    if self._match(closer):
                        break
                    self._expect(TokenType.COMMA, f"',' or {close}")
            return tuple(items)
        negative = False
        if tok.token_type in (TokenType.DASH, TokenType.PLUS):
            negative = tok.token_type == TokenType.DASH
            self._advance()
            tok = self._curr
            if not tok or tok.token_type != TokenType.NUMBER:
                return self._fail_end("a number")
        self._advance()
        if tok.token_type == TokenType.NUMBER:
            number = _number(tok.text)
            if number is None:
                return self._fail(f"malformed number {tok.text!r}", tok)
            return -number if negative else number
        if tok.token_type == TokenType.STRING:
            return tok.text
        if tok.token_type == TokenType.TRUE:
            return True
        if tok.token_type == TokenType.FALSE:
            return False
        if tok.token_type == TokenType.NULL:
            return None
        if tok.token_type in _WORD_TYPES or tok.text.isidentifier():
            return tok.text
        return self._fail(f"expected a value, found {tok.text!r}", tok)

    def _params(self) -> list[nodes.Param]:
        """``WITH (name = value, ...)``; absent -> []."""
        if not self._match(TokenType.WITH):
            return []
        self._expect(TokenType.L_PAREN, "'(' after WITH")
        params: list[nodes.Param] = []
        seen: set[str] = set()
        if self._match(TokenType.R_PAREN):
            return params
        while True:
            name_tok = self._curr
            name, _ = self._name("a parameter name")
            self._expect(TokenType.EQ, f"'=' after parameter {name!r}")
            value = self._value()
            start, end = _span(name_tok, self._prev)
            if name.lower() in seen:
                raise CfdbSyntaxError(
                    f"parameter {name!r} given twice", sql=self.sql, start=start, end=end
                )
            seen.add(name.lower())
            params.append(nodes.Param(this=name, value=value, start=start, end=end))
            if self._match(TokenType.R_PAREN):
                return params
            self._expect(TokenType.COMMA, "',' or ')' in the WITH list")

    def _string(self, what: str) -> tuple[str, tuple[int, int]]:
        tok = self._curr
        if not tok or tok.token_type != TokenType.STRING:
            return self._fail_end(what)
        self._advance()
        return tok.text, _span(tok, tok)

    # -- statements -------------------------------------------------------------------------
    def _parse_statement(self) -> exp.Expr | None:
        if not self._curr:
            return None
        first = self._curr
        for words, method in self.CFDB_STATEMENTS_SORTED:
            if self._match_text_seq(*words):
                node = method(self)
                if self._curr:
                    self._fail(f"unexpected {self._curr.text!r} after the statement")
                node.set("start", first.start)
                node.set("end", self._prev.end + 1)
                return node
        return super()._parse_statement()

    def _parse_load_instances(self) -> nodes.CfdbStatement:
        self._expect(TokenType.FROM, "FROM")
        spans: dict[str, tuple[int, int]] = {}
        if self._curr and self._curr.token_type == TokenType.STRING:
            path, spans["source"] = self._string("a file path")
            source: Any = path
        else:
            source = self._raw_query("LOAD INSTANCES")
            spans["source"] = (source.start, source.end)
        return nodes.LoadInstances(source=source, params=self._params(), spans=spans)

    def _parse_load_dataset(self) -> nodes.CfdbStatement:
        if self._curr and self._curr.token_type == TokenType.STRING:
            name, span = self._string("a dataset name")
        else:
            name, span = self._name("a dataset name")
        return nodes.LoadDataset(this=name, params=self._params(), spans={"name": span})

    def _parse_derive_features(self) -> nodes.CfdbStatement:
        return nodes.DeriveFeatures()

    def _parse_create_model(self, replace: bool = False) -> nodes.CfdbStatement:
        name, name_span = self._name("a model name")
        self._expect(TokenType.ALIAS, "AS <kind>")
        kind, kind_span = self._name("a model kind")
        params = self._params()
        self._expect_words("TRAIN")
        self._expect(TokenType.ON, "ON")
        train = self._raw_query("TRAIN ON")
        return nodes.CreateModel(
            this=name,
            kind=kind,
            params=params,
            train=train,
            replace=replace,
            spans={"name": name_span, "kind": kind_span, "train": (train.start, train.end)},
        )

    def _parse_create_or_replace_model(self) -> nodes.CfdbStatement:
        return self._parse_create_model(replace=True)

    def _parse_predict(self) -> nodes.CfdbStatement:
        name, name_span = self._name("a model name")
        self._expect(TokenType.ON, "ON")
        source = self._raw_query("PREDICT ... ON")
        return nodes.Predict(
            this=name,
            source=source,
            spans={"name": name_span, "source": (source.start, source.end)},
        )

    def _parse_import_model(self, replace: bool = False) -> nodes.CfdbStatement:
        name, name_span = self._name("a model name")
        self._expect(TokenType.FROM, "FROM")
        path, path_span = self._string("a file path in quotes")
        return nodes.ImportModel(
            this=name,
            path=path,
            params=self._params(),
            replace=replace,
            spans={"name": name_span, "path": path_span},
        )

    def _parse_import_or_replace_model(self) -> nodes.CfdbStatement:
        return self._parse_import_model(replace=True)

    def _parse_drop_model(self) -> nodes.CfdbStatement:
        exists = bool(self._match_text_seq("IF", "EXISTS"))
        name, name_span = self._name("a model name")
        return nodes.DropModel(this=name, exists=exists, spans={"name": name_span})


CfdbParser.CFDB_STATEMENTS = {
    ("LOAD", "INSTANCES"): CfdbParser._parse_load_instances,
    ("LOAD", "DATASET"): CfdbParser._parse_load_dataset,
    ("DERIVE", "FEATURES"): CfdbParser._parse_derive_features,
    ("CREATE", "MODEL"): CfdbParser._parse_create_model,
    ("CREATE", "OR", "REPLACE", "MODEL"): CfdbParser._parse_create_or_replace_model,
    ("PREDICT",): CfdbParser._parse_predict,
    ("IMPORT", "MODEL"): CfdbParser._parse_import_model,
    ("IMPORT", "OR", "REPLACE", "MODEL"): CfdbParser._parse_import_or_replace_model,
    ("DROP", "MODEL"): CfdbParser._parse_drop_model,
}
CfdbParser.CFDB_STATEMENTS_SORTED = []


def register_statement(
    words: tuple[str, ...], method: Callable[[CfdbParser], nodes.CfdbStatement]
) -> None:
    """Add a cfdb statement that starts with ``words`` (upper case), parsed by ``method``.

    ``method(parser)`` is called with the leading words consumed; it may use the parser's
    helpers (``_name``, ``_raw_query``, ``_params``, ``_value``, ``_string``, ``_expect``,
    ``_expect_words``, ``_fail``) and sqlglot's own (``_match``, ``_match_text_seq``,
    ``_parse_select``, ...). The statement's span is set by the caller.
    """
    CfdbParser.CFDB_STATEMENTS[tuple(w.upper() for w in words)] = method
    CfdbParser.CFDB_STATEMENTS_SORTED = sorted(
        CfdbParser.CFDB_STATEMENTS.items(), key=lambda kv: -len(kv[0])
    )


register_statement(("DROP", "MODEL"), CfdbParser._parse_drop_model)  # sorts the table


class CfdbTokenizer(DuckDB.Tokenizer):  # type: ignore[name-defined,misc]
    """DuckDB's tokenizer, except that ``EXPLAIN`` is a word, not a command that swallows the
    rest of the statement (``EXPLAIN FOREACH ...`` must be tokenized)."""

    KEYWORDS = {**DuckDB.Tokenizer.KEYWORDS, "EXPLAIN": TokenType.VAR}


class CfdbDialect(DuckDB):
    """DuckDB's dialect with cfdb's statements."""

    Tokenizer = CfdbTokenizer
    Parser = CfdbParser
