"""The explorer beside other processes: progress of a MATERIALIZE GRID run elsewhere, a file
held by a writer, the read-write SQL box, and the ``cfdb serve`` command itself."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serve.helpers import assert_no_traceback, error_text, oracle

pytestmark = pytest.mark.slow


def _cfdb(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cfdb", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


def _client(path: Path, **kw):
    from starlette.testclient import TestClient

    from cfdb.serve.app import create_app

    return TestClient(create_app(str(path), **kw))


def _cells_shown(page: str) -> int:
    return int(re.search(r'<b class="cells">(\d+)</b>', page).group(1))


def test_materialize_in_another_process_shows_on_refresh(small_db: Path, tmp_path: Path) -> None:
    path = tmp_path / "copy.duckdb"
    shutil.copy(small_db, path)
    with _client(path) as c:
        assert _cells_shown(c.get("/grid/pending").text) == 0
        r = _cfdb(tmp_path, "shell", str(path), "-c", "MATERIALIZE GRID pending LIMIT 3")
        assert r.returncode == 0, r.stderr
        page = c.get("/grid/pending").text
        assert _cells_shown(page) == 3  # 3 subsets x 1 slice x 1 metric
        assert "3 of" in page and "has no cells yet" not in page
        assert 'id="heatmap"' in page
        r = _cfdb(tmp_path, "shell", str(path), "-c", "MATERIALIZE GRID pending LIMIT 2")
        assert r.returncode == 0, r.stderr
        assert _cells_shown(c.get("/grid/pending").text) == 5
    assert oracle(path, "SELECT count(*) FROM GridCells WHERE Grid = 'pending'")[0][0] == 5


def test_a_locked_file_is_a_page_with_the_last_progress(small_db: Path, tmp_path: Path) -> None:
    path = tmp_path / "copy.duckdb"
    shutil.copy(small_db, path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, cfdb; db = cfdb.connect(sys.argv[1]); db.sql('SELECT 1');"
            " print('ready', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    with _client(path) as c:
        assert c.get("/grid/homesgrid").status_code == 200  # seen once, before the lock
        try:
            # the client may not hold the file while the holder opens it
            assert holder.stdout.readline().strip() == "ready"
            r = c.get("/grid/homesgrid")
            assert r.status_code == 503
            text = html.unescape(r.text)
            assert "locked by another process" in text and "MATERIALIZE GRID" in text
            assert "Last progress seen at" in text and "48 of 48 cells" in text
            assert_no_traceback(r.text)
            assert c.get("/").status_code == 503
            body = c.get("/grid/homesgrid/unit?unit=1")
            assert body.status_code == 503 and "locked" in body.json()["error"]
        finally:
            holder.communicate("", timeout=60)
        assert c.get("/grid/homesgrid").status_code == 200


def test_read_write_sql_box(small_db: Path, tmp_path: Path) -> None:
    path = tmp_path / "copy.duckdb"
    shutil.copy(small_db, path)
    with _client(path, read_only=False) as c:
        r = c.get("/sql", params={"q": "CREATE TABLE notes AS SELECT 7 AS n"})
        assert r.status_code == 200, error_text(r.text)
        r = c.get("/sql", params={"q": "SELECT n FROM notes"})
        assert ">7<" in r.text
        assert "read-write" in c.get("/").text
    assert oracle(path, "SELECT n FROM notes") == [(7,)]


def test_cfdb_serve_command(small_db: Path, tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    help_text = _cfdb(tmp_path, "serve", "--help").stdout
    for option in ("--port", "--host", "--read-only", "--no-read-only", "127.0.0.1"):
        assert option in help_text
    r = _cfdb(tmp_path, "serve", "missing.duckdb")
    assert r.returncode == 1 and "no such file" in r.stderr
    assert not (tmp_path / "missing.duckdb").exists()

    proc = subprocess.Popen(
        [sys.executable, "-m", "cfdb", "serve", str(small_db), "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert m, line + proc.stderr.read() if proc.poll() is not None else line
        assert "read-only" in line
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(m.group(1), timeout=30) as r:
                    status, text = r.status, r.read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert status == 200 and "small.duckdb" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
