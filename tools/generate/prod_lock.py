"""The production lock: every runtime dependency of the services and of the contract, pinned at the versions of the
dev lock (requirements.lock), each with the sha256 of every file PyPI has of it. `make lock` writes it with pip-tools'
``pip-compile --generate-hashes``; the image installs it with ``pip install --require-hashes`` (Dockerfile), so a
file that differs from the one locked is refused. The contract is not in it: the image installs it as a wheel built
from shared/. tests/test_locks.py checks that it covers every runtime dependency.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.prod.lock"
DEV_LOCK = ROOT / "requirements.lock"
CONTRACT = "stepwise-contract"
HEADER = """\
# The production lock (make lock): the runtime dependencies of the services and of the contract (shared/), at the
# versions of requirements.lock, with the hash of every file. The image installs it with --require-hashes.
"""


def runtime_requirements() -> list[str]:
    """[project].dependencies of the services and of the contract, less the contract itself (built from shared/)."""
    requirements = []
    for pyproject in (ROOT / "pyproject.toml", ROOT / "shared" / "pyproject.toml"):
        requirements += tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [requirement for requirement in requirements if not requirement.startswith(CONTRACT)]


def compile_lock() -> str:
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "requirements.prod.in"
        source.write_text("\n".join(runtime_requirements()) + "\n")
        output = Path(folder) / "requirements.prod.lock"
        command = [sys.executable, "-m", "piptools", "compile", "--quiet", "--generate-hashes", "--allow-unsafe",
                   "--strip-extras", "--no-header", "--no-emit-find-links", "--no-emit-index-url",
                   "--constraint", str(DEV_LOCK), "--output-file", output.name, source.name]  # fmt: skip
        # Only PyPI's files: a local wheel folder (PIP_FIND_LINKS) must not add hashes nobody else can check.
        env = {name: value for name, value in os.environ.items() if name != "PIP_FIND_LINKS"}
        subprocess.run(command, cwd=folder, env=env, check=True)
        text = output.read_text().replace(f"-c {DEV_LOCK}", "-c requirements.lock")
    return HEADER + text


def main() -> int:
    LOCK.write_text(compile_lock())
    return 0


if __name__ == "__main__":
    sys.exit(main())
