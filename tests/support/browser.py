"""A real browser for the dashboard's tests: the system's Chromium, driven by Playwright.

Playwright's own browser downloads are not used (CI machines have no internet):
the browser is Debian's ``chromium`` (``MOORAGE_TEST_CHROMIUM`` names another).
Where it or Playwright is missing the tests skip with the reason, or fail when
``MOORAGE_TEST_REQUIRE`` names ``browser`` (as CI does).

Screenshots go to ``$MOORAGE_TEST_ARTIFACTS`` (CI keeps that folder), else to
``.artifacts/`` at the repository's root, which git ignores.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.components import need

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHROMIUM = "/usr/bin/chromium"


def chromium() -> str:
    """The browser's executable, or a skip (a failure where required) saying why not."""
    wanted = os.environ.get("MOORAGE_TEST_CHROMIUM", DEFAULT_CHROMIUM)
    found = shutil.which(wanted)
    if found is None:
        need("browser", f"no Chromium at {wanted} (apt-get install chromium)")
        raise AssertionError("unreachable")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        need("browser", "the playwright package is not installed (pip install -e '.[dev]')")
    return found


@contextmanager
def launched() -> Iterator[Browser]:
    """A headless Chromium, closed (with Playwright's driver) however the test ends."""
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Chromium's own sandbox needs user namespaces a root or container CI lacks.
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


def artifacts(*parts: str) -> Path:
    """A folder for screenshots (``artifacts("dashboard", test_name)``), kept after the
    run; each part is made a plain folder name."""
    folder = Path(os.environ.get("MOORAGE_TEST_ARTIFACTS") or ROOT / ".artifacts")
    for part in parts:
        folder /= re.sub(r"[^A-Za-z0-9_.-]+", "-", part).strip("-.") or "_"
    return folder
