"""Every example script's ``--help``: the whole description, and help text and a default for
every option (a flag defaults to off)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_help_is_complete(script: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
        check=True,
    ).stdout
    doc = ast.get_docstring(ast.parse(script.read_text()))
    assert doc is not None
    first_paragraph = " ".join(doc.split("\n\n")[0].split())
    assert first_paragraph in " ".join(out.split())  # not cut
    options = out.split("options:")[1]
    entries = [e for e in options.split("\n  -") if e.strip() and "--help" not in e]
    for entry in entries:
        words = " ".join(entry.split())
        flag = words.split()[0]
        assert len(words.split()) > 2, f"{script.name} {flag} has no help text"
        assert "(default:" in words, f"{script.name} {flag} shows no default"
