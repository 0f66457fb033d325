"""A headless Chromium (Debian's) that renders a page and returns its visible text, for the
tests marked ``browser``."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--dump-dom",
    "--virtual-time-budget=15000",
]
#: Resolve no host name but the server's address (127.0.0.1): no CDN, no internet.
OFFLINE_FLAGS = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


def chromium() -> str:
    """Debian's chromium, or a failure that says how to install it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "chromium is not installed; install it with "
            "`apt-get update && apt-get install -y chromium` (CI's `make test` does), or "
            'deselect this test with -m "not browser"',
            pytrace=False,
        )
    return path


def rendered_text(browser: str, url: str, profile: Path, *, offline: bool = False) -> str:
    """The visible text of `url` after its scripts ran (tags, scripts and styles removed).

    With `offline`, every host name but the loopback address fails to resolve, as on a
    machine without internet: a page that needs a CDN renders without it.
    """
    flags = [*CHROMIUM_FLAGS, *(OFFLINE_FLAGS if offline else ())]
    result = subprocess.run(
        [browser, *flags, f"--user-data-dir={profile}", url],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"chromium failed: {result.stderr[-2000:]}"
    dom = re.sub(r"<script.*?</script>|<style.*?</style>", " ", result.stdout, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)))


__all__ = ["chromium", "rendered_text"]
