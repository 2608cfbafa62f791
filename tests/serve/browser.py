"""Drive the explorer in headless Chromium (Debian's package) with Playwright.

Used by the end-to-end test and to take the screenshots of docs/explorer.md. No browser is
downloaded: Playwright launches the system's ``/usr/bin/chromium``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def serving(path: Path, *, read_only: bool = True) -> Iterator[str]:
    """Serve ``path`` on a free localhost port in a thread; yields the base URL."""
    import uvicorn

    from cfdb.serve.app import create_app
    from cfdb.serve.command import bind, url_of

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(create_app(str(path), read_only=read_only), log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the explorer did not start")
        time.sleep(0.05)
    try:
        yield url_of(sock).rstrip("/")
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium page (1280×900) that records console errors in ``page.errors``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            page.errors = []
            page.on(
                "console",
                lambda msg: page.errors.append(msg.text) if msg.type == "error" else None,
            )
            page.on("pageerror", lambda exc: page.errors.append(str(exc)))
            yield page
        finally:
            chromium.close()


def charts_drawn(page: Any) -> int:
    """How many chart containers hold a rendered plot (an SVG, or a canvas)."""
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('div.chart'))"
        ".filter(d => d.querySelector('svg.main-svg, canvas')).length"
    )
