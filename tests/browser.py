"""Headless Chromium (Debian's ``chromium`` package) for the HTML report's tests.

Each call starts a fresh browser with its own profile folder, no network services and no GPU.
.ci/run installs the package when it is missing; without it these tests fail and say so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: apt-get install chromium (.ci/run does it)", pytrace=False)
    return found


def _run(page: Path, profile: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_chromium(), *_FLAGS, f"--user-data-dir={profile}", *flags, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180, check=True,
    )


def screenshot(page: Path, png: Path, profile: Path, *, width: int = 1280, height: int = 2000) -> Path:
    """A PNG of ``page`` as Chromium renders it in a window of ``width`` x ``height``."""
    _run(page, profile, f"--screenshot={png}", f"--window-size={width},{height}")
    assert png.exists(), f"chromium wrote no screenshot to {png}"
    return png


def dump_dom(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after Chromium parsed and laid it out, serialized as HTML."""
    return _run(page, profile, "--dump-dom").stdout
