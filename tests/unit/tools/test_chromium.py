"""Chromium for the browser tests: missing only where it is neither installed nor installable (root with apt)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tools.dev import chromium


def test_chromium_is_missing_only_where_it_is_not_installed_and_cannot_be(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert "no Chromium installed" in (chromium.missing() or "")  # root, but no apt
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None)
    assert chromium.missing() is None  # root with apt: the first browser test installs Debian's package
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "apt-get install chromium" in (chromium.missing() or "")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert chromium.missing() is None and chromium.ensure() == Path("/usr/bin/chromium")
