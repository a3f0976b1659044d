"""Debian's Caddy for the proxy test (tests/integration/test_proxy.py), which runs the repository's Caddyfile.

Where ``caddy`` is not installed and this runs as root with apt (CI: a fresh Debian machine), the test installs
Debian's package first (``apt-get update && apt-get install -y caddy``; about 40 s here), as the harness installs
PostgreSQL and Chromium. Elsewhere the test is skipped, saying what to install. Debian ships Caddy 2.6; the compose
file runs the official image (docs/deployment.md), whose Caddyfile syntax is the same for what this file uses.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tools.dev import debian

CADDYFILE = Path(__file__).resolve().parents[2] / "deploy" / "caddy" / "Caddyfile"


def executable() -> Path | None:
    found = shutil.which("caddy")
    return Path(found) if found else None


def missing() -> str | None:
    """None when Caddy is installed (or can be, here); otherwise what is missing."""
    if executable() is not None or debian.can_install():
        return None
    return "no Caddy installed (Debian: apt-get install caddy; the harness does it as root)"


def ensure() -> Path:
    """Caddy's executable, installing Debian's package first where it is missing (as root, with apt)."""
    found = executable()
    if found is not None:
        return found
    debian.install("caddy")
    found = executable()
    if found is None:
        raise RuntimeError("apt-get installed caddy, but no caddy executable is on PATH")
    return found
