"""Headless Chromium for the report tests: Debian's browser, driven by Playwright.

`make install` installs the browser (apt package chromium-headless-shell) and Playwright
(a dev dependency); Playwright never downloads a browser of its own here, it is pointed at
the system one. A missing browser fails the test with what to do, it is never skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import sync_playwright  # a dev dependency (make install)

BROWSER_ENV = "BEAM_SEG_CHROMIUM"
CANDIDATES = ("chromium-headless-shell", "chromium", "chromium-browser")


def chromium_path() -> str:
    path = os.environ.get(BROWSER_ENV) or next(filter(None, map(shutil.which, CANDIDATES)), None)
    if not path:
        pytest.fail("no Chromium found: run `make install` (it installs Debian's "
                    f"chromium-headless-shell), or set {BROWSER_ENV} to a Chromium binary")
    return path


@contextlib.contextmanager
def open_page(html: Path, width: int = 1200, height: int = 900) -> Iterator[tuple[object, list[str]]]:
    """The page loaded from disk (file://, no server) and the console errors it logs."""
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path())
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            # a media request the player itself cancels (a seek) is ERR_ABORTED, not an error
            page.on("requestfailed", lambda r: errors.append(f"failed to load {r.url}: {r.failure}")
                    if r.failure != "net::ERR_ABORTED" else None)
            page.goto(html.resolve().as_uri())
            yield page, errors
        finally:
            browser.close()


def keep_screenshot(shot: Path, target: Path) -> None:
    """Copy a screenshot for the docs as a small palette PNG (256 colours)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.open(shot).convert("RGB").quantize(256).save(target, optimize=True)
