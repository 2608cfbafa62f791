"""Docs are code: every fenced ``sql`` and ``python`` block of README.md and docs/*.md runs.

The convention (the way sqlglot runs its docs as doctests): a page's blocks run top to bottom
in a fresh temporary working directory; its SQL blocks share one fresh in-memory cfdb
database; its Python blocks share one namespace and open their own databases. A failure names
the page, the block's number on the page and the line in the Markdown file. Shell sessions and
illustrations are fenced as ``console`` or ``text`` and are not run.

New pages under docs/ are picked up without changes here.
"""

from __future__ import annotations

import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

import cfdb
from cfdb.errors import CfdbError

ROOT = Path(__file__).resolve().parent.parent
RUN_LANGUAGES = ("sql", "python")
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)[^`]*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, text, 1-based number on its page and first text line."""

    language: str
    text: str
    number: int
    line: int


def pages() -> list[Path]:
    """README.md and every docs/*.md page, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text (CommonMark fences: ``` or ~~~, closing fence
    at least as long as the opening one), numbered in page order."""
    found: list[Block] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").lower()
        start = i + 1
        j = start
        while j < len(lines):
            close = lines[j].strip()
            if close.startswith(fence[0] * len(fence)) and set(close) == {fence[0]}:
                break
            j += 1
        found.append(Block(info, "\n".join(lines[start:j]), len(found) + 1, start + 1))
        i = j + 1
    return found


class DocBlockError(AssertionError):
    """A block failed: the message names the page, the block and the Markdown line."""


def _where(page: Path, block: Block, line_in_block: int | None) -> str:
    rel = page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else page.name
    line = block.line + (line_in_block - 1 if line_in_block else 0)
    return f"{rel}, block {block.number} ({block.language}), line {line}"


def _run_sql(db: cfdb.Database, page: Path, block: Block) -> None:
    try:
        for result in db.execute(block.text):
            if result.relation is not None:
                result.relation.fetchall()  # relations are lazy: run what the block shows
    except CfdbError as err:
        raise DocBlockError(f"{_where(page, block, err.line)}: {err}") from err


def _run_python(namespace: dict[str, object], page: Path, block: Block) -> None:
    # Leading newlines make tracebacks and the reported line count in Markdown lines.
    source = "\n" * (block.line - 1) + block.text
    filename = str(page)
    try:
        exec(compile(source, filename, "exec"), namespace)  # docs are code
    except Exception as err:
        frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == filename]
        line = frames[-1].lineno if frames else None
        in_block = None if line is None else line - block.line + 1
        raise DocBlockError(
            f"{_where(page, block, in_block)}: {type(err).__name__}: {err}"
        ) from err


def run_page(page: Path) -> list[tuple[Block, float]]:
    """Run a page's blocks in the current directory; the seconds each block took."""
    db: cfdb.Database | None = None
    namespace: dict[str, object] = {"__name__": "__docs__"}
    timings = []
    try:
        for block in blocks(page.read_text(encoding="utf-8")):
            if block.language not in RUN_LANGUAGES:
                continue
            started = time.perf_counter()
            if block.language == "sql":
                db = db or cfdb.connect()
                _run_sql(db, page, block)
            else:
                _run_python(namespace, page, block)
            timings.append((block, time.perf_counter() - started))
    finally:
        if db is not None:
            db.close()
        for value in namespace.values():
            if isinstance(value, cfdb.Database):
                value.close()
    return timings


def test_fences_are_parsed() -> None:
    text = "a\n```sql\nSELECT 1;\n```\n\n~~~~python\nx = '```'\n~~~~\n```\nplain\n```\n"
    found = blocks(text)
    assert [(b.language, b.text, b.number, b.line) for b in found] == [
        ("sql", "SELECT 1;", 1, 3),
        ("python", "x = '```'", 2, 7),
        ("", "plain", 3, 10),
    ]


def test_failures_name_page_block_and_line(tmp_path: Path, monkeypatch) -> None:
    page = tmp_path / "page.md"
    page.write_text("# t\n\n```sql\nSELECT 1;\nSELECT * FROM nowhere;\n```\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DocBlockError, match=r"block 1 \(sql\), line 5"):
        run_page(page)
    page.write_text("```python\nx = 1\n```\ntext\n```python\ny = x\nz = 1 / 0\n```\n")
    with pytest.raises(DocBlockError, match=r"block 2 \(python\), line 7: ZeroDivisionError"):
        run_page(page)


@pytest.mark.slow  # a page trains models and generates counterfactuals: seconds each
@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_runs(page: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_page(page)
