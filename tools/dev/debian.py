"""Debian's packages for what the harness runs on a fresh machine (PostgreSQL, Chromium): installed with apt, as
root, on first use; elsewhere the caller says what to install."""

from __future__ import annotations

import os
import shutil
import subprocess


def can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def install(package: str, *, recommends: bool = True) -> None:
    """``apt-get update && apt-get install -y <package>`` (``recommends=False``: without the packages it only
    recommends); RuntimeError with apt's output when either fails."""
    print(f"installing {package} from Debian's packages (first run on this machine)…", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    only = [] if recommends else ["--no-install-recommends"]
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *only, package]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
