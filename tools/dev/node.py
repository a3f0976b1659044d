"""Node packages for the contract's checks in another language (tools/node: ajv, ajv-formats, @asyncapi/parser).

The versions are pinned by tools/node/package-lock.json (each with its integrity hash). The first use on a machine
runs ``npm ci --ignore-scripts`` into the cache (``STEPWISE_CACHE_DIR``, else ~/.cache/stepwise), in a folder named
by the lock's hash, so a changed lock installs afresh and an unchanged one never again. Where npm is missing and
this runs as root with apt, Debian's ``npm`` is installed first (as for Chromium); elsewhere the tests that need
Node are skipped, saying what to install.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tools.dev import debian
from tools.dev.servers import cache_dir

PROJECT = Path(__file__).resolve().parents[1] / "node"
FILES = ("package.json", "package-lock.json")
TIMEOUT = 300


def missing() -> str | None:
    """None when npm is installed (or can be, here); otherwise what is missing."""
    if shutil.which("npm") or debian.can_install():
        return None
    return "no Node.js/npm installed (Debian: apt-get install npm; the harness does it as root)"


def lock_digest() -> str:
    digest = hashlib.sha256()
    for name in FILES:
        digest.update((PROJECT / name).read_bytes())
    return digest.hexdigest()[:16]


def ensure() -> Path:
    """The folder holding node_modules and the check scripts, installed on first use."""
    folder = cache_dir() / "node" / lock_digest()
    if (folder / ".installed").exists():
        return folder
    if not shutil.which("npm"):
        debian.install("npm")
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(PROJECT / name, folder / name)
    print(f"installing the Node checks' packages into {folder} (first run on this machine)…", flush=True)
    command = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {folder}:\n{done.stdout}{done.stderr}")
    (folder / ".installed").touch()
    return folder


def run(script: str, request: Any) -> Any:
    """Run tools/node/<script> with the installed packages: ``request`` as JSON on stdin, its JSON answer back."""
    folder = ensure()
    done = subprocess.run(
        ["node", str(PROJECT / script)],
        input=json.dumps(request),
        env={"NODE_PATH": str(folder / "node_modules"), "PATH": _path()},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"node {script} failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout)


def _path() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("npm is installed but no node executable is on PATH")
    return str(Path(node).parent)
