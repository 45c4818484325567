"""Headless Chromium for the console's tests, driven by Playwright's Python package: skips the
test, saying what to install, when either is missing."""
import os
import shutil
from contextlib import contextmanager

import pytest

INSTALL = ("pip install playwright (it is in .[test]) and apt-get install -y chromium "
           "(CI's .ci/run installs it), or python -m playwright install chromium")


def chromium_path() -> str | None:
    """The system's Chromium (APS_CHROMIUM names another); None: Playwright's own, if any."""
    return os.environ.get("APS_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None)


@contextmanager
def chromium():
    """A headless browser, closed (its processes with it) when the block ends."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.skip(f"no Playwright: {INSTALL}")
    with sync_playwright() as p:
        # as root, Chromium refuses to start inside its own sandbox
        args = ["--no-sandbox"] if hasattr(os, "getuid") and os.getuid() == 0 else []
        try:
            browser = p.chromium.launch(executable_path=chromium_path(), headless=True,
                                        args=args, timeout=30_000)
        except Error as exc:
            pytest.skip(f"cannot start Chromium ({str(exc).splitlines()[0]}): {INSTALL}")
        try:
            yield browser
        finally:
            browser.close()
