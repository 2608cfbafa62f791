"""The layer rules of the design: heavy dependencies stay in their own package, and no module
imports a layer above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "cfdb"

# Third-party imports allowed only under these packages.
CONFINED = {
    "duckdb": ("store",),
    "sqlglot": ("lang",),
    "z3": ("ctable", "generators"),
}

# Layer ranks, bottom up: a module may import cfdb packages of its rank or below.
RANKS = {
    "errors": 0,
    "types": 0,
    "registry": 0,
    "config": 0,
    "lang": 1,
    "ctable": 1,
    "models": 1,
    "generators": 1,
    "valuation": 1,
    "grid": 1,
    "datasets": 1,
    "exec": 1,
    "store": 2,
    "engine": 3,
    "api": 4,
    "demo": 5,
    "format": 5,
    "repl": 6,
    "serve": 6,
    "shell": 6,
    "cli": 7,
    "__main__": 8,
    "__init__": 5,
}


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "_sql" not in p.parts)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    return rel[0].removesuffix(".py")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_layer_rules(path):
    package = _package(path)
    for name in _imports(path):
        top = name.split(".")[0]
        if top in CONFINED:
            assert package in CONFINED[top], f"{path.name} imports {top} outside {CONFINED[top]}"
        if top == "cfdb" and "." in name and package in RANKS:
            target = name.split(".")[1]
            if target in RANKS and target != package:
                assert RANKS[target] <= RANKS[package] or package == "__init__", (
                    f"{path.relative_to(ROOT)} ({package}) imports the higher layer {target}"
                )
