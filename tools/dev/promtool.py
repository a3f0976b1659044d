"""Prometheus' promtool, which checks and unit-tests the alert rules in deploy/observability (Debian's `prometheus`
package; installed on first use as root, without what it only recommends: ~35 s and ~100 MB measured here)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tools.dev import debian


def executable() -> Path | None:
    found = shutil.which("promtool")
    return Path(found) if found else None


def missing() -> str | None:
    """None when promtool is installed (or can be, here); otherwise what is missing."""
    if executable() is not None or debian.can_install():
        return None
    return "no promtool (Debian: apt-get install --no-install-recommends prometheus; the harness does it as root)"


def ensure() -> Path:
    found = executable()
    if found is not None:
        return found
    debian.install("prometheus", recommends=False)
    found = executable()
    if found is None:
        raise RuntimeError("apt-get installed prometheus, but no promtool is on PATH")
    return found
