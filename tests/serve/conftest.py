"""Shared databases of the explorer's tests: built once per test session."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="cfdb serve needs the serve extra")

from tests.serve.builders import build_small


@pytest.fixture(scope="session")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A grid (materialized and pending), two CFQL queries and two valuation runs."""
    return build_small(tmp_path_factory.mktemp("serve") / "small.duckdb")


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The database ``cfdb demo`` builds (UCI Adult, two models, predictions)."""
    from rich.console import Console

    from cfdb.demo import run

    path = tmp_path_factory.mktemp("serve_demo") / "demo.duckdb"
    run(str(path), Console(file=io.StringIO()))
    return path


@pytest.fixture(scope="module")
def client(small_db: Path):
    from starlette.testclient import TestClient

    from cfdb.serve.app import create_app

    with TestClient(create_app(str(small_db))) as c:
        yield c
