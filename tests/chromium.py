"What the real-browser tests share: Debian's Chromium, its headless flags, and the skip (or, in CI, fail) without it."
import os
from pathlib import Path
import pytest

CHROMIUM = Path('/usr/bin/chromium')
FLAGS    = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
            '--disable-component-update', '--disable-sync', '--no-proxy-server']

def need_browser():
    "Skip (or fail, when CI sets HANCROSS_REQUIRE_BROWSER=1) without Debian's Chromium or the playwright package"
    why = None
    if not CHROMIUM.exists(): why = f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)"
    else:
        try: import playwright.sync_api  # noqa: F401
        except ImportError: why = "the playwright Python package is missing (pip install playwright; no browser download needed)"
    if why is None: return
    if os.environ.get('HANCROSS_REQUIRE_BROWSER') == '1': pytest.fail(f"browser test required but {why}")
    pytest.skip(why)
