"""Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser of its own).

Where ``chromium`` is not installed and this runs as root with apt (CI: a fresh Debian machine), the first browser
test installs Debian's package (``apt-get update && apt-get install -y chromium``), as the harness installs
PostgreSQL for the second MongoDB server. Elsewhere the browser tests are skipped, saying what to install.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tools.dev import debian

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
"""Headless as root on a machine without the internet: without the background-networking flags Chromium keeps
trying Google's hosts at every start."""


def executable() -> Path | None:
    found = shutil.which("chromium")
    return Path(found) if found else None


def missing() -> str | None:
    """None when Chromium is installed (or can be, here); otherwise what is missing."""
    if executable() is not None or debian.can_install():
        return None
    return "no Chromium installed (Debian: apt-get install chromium; the harness does it as root)"


def ensure() -> Path:
    """Chromium's executable, installing Debian's package first where it is missing (as root, with apt)."""
    found = executable()
    if found is not None:
        return found
    debian.install("chromium")
    found = executable()
    if found is None:
        raise RuntimeError("apt-get installed chromium, but no chromium executable is on PATH")
    return found
