"""PostgreSQL for FerretDB's PostgreSQL backend: Debian's ``postgresql`` package, one throwaway cluster per run.

Where no PostgreSQL server is installed and this runs as root with apt (CI: a fresh Debian machine), the first
start installs Debian's package (``apt-get update && apt-get install -y postgresql``), as the harness fetches its
other backends on first use; elsewhere install it yourself. Each start makes a cluster with ``initdb`` in a new
temporary folder, listening on a free loopback port only (no Unix socket), with a random password, and removes it
afterwards. PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user the package creates,
through ``runuser``. Durability is off (fsync, synchronous commit, full-page writes): the data lives for one run.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.dev import debian
from tools.dev.servers import Server, free_port, start_server

DEBIAN_BINARIES = Path("/usr/lib/postgresql")
USER = "stepwise"
DATABASE = "postgres"
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def binaries() -> Path | None:
    """The folder of the newest installed server's programs (Debian keeps them off PATH), or None."""
    installed = [path.parent for path in DEBIAN_BINARIES.glob("*/bin/postgres") if path.parent.parent.name.isdigit()]
    if installed:
        return max(installed, key=lambda folder: int(folder.parent.name))
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing() -> str | None:
    """None when a PostgreSQL server is installed (or can be, here); otherwise what is missing."""
    if binaries() is not None or debian.can_install():
        return None
    return "no PostgreSQL server installed (Debian: apt-get install postgresql; the harness does it as root)"


def install() -> Path:
    """Debian's ``postgresql`` with apt (as root); the folder of its programs."""
    debian.install("postgresql")
    found = binaries()
    if found is None:
        raise RuntimeError("apt-get installed postgresql, but no PostgreSQL server programs were found")
    return found


def version(folder: Path) -> str:
    """The server's version, as in "15.18"."""
    out = subprocess.run([str(folder / "postgres"), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+(\.\d+)*)", out)
    return match.group(1) if match else out.strip()


def as_server_user(command: Sequence[str]) -> list[str]:
    """``command`` run as the ``postgres`` user when we are root (PostgreSQL refuses root), else as it is."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


def server_command(folder: Path, data: Path, port: int) -> list[str]:
    settings = [argument for name, value in SERVER_SETTINGS.items() for argument in ("-c", f"{name}={value}")]
    return as_server_user([str(folder / "postgres"), "-D", str(data), "-p", str(port), *settings])


@dataclass(frozen=True)
class Cluster:
    server: Server
    url: str
    version: str


@contextlib.contextmanager
def postgresql(log: Path) -> Iterator[Cluster]:
    """A new cluster on a free loopback port, its log in ``log``; stopped and removed on leaving."""
    folder = binaries() or install()
    # A folder of its own, outside the run's (private) one: the postgres user must reach it.
    root = Path(tempfile.mkdtemp(prefix="stepwise-postgresql-"))
    try:
        data, password_file, password = root / "data", root / "password", secrets.token_urlsafe(24)
        password_file.write_text(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
            shutil.chown(password_file, "postgres")
        initdb = as_server_user([str(folder / "initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256",
                                 f"--pwfile={password_file}", "-E", "UTF8", "--no-locale", "--no-sync"])  # fmt: skip
        made = subprocess.run(initdb, capture_output=True, text=True, check=False)
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{made.stdout}{made.stderr}")
        port = free_port()

        def accepts() -> bool:
            ready = [str(folder / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
            return subprocess.run(ready, check=False).returncode == 0

        name = f"PostgreSQL {version(folder)}"
        with start_server(name, server_command(folder, data, port), port, log, ready_within=30, ready=accepts) as s:
            try:
                yield Cluster(s, f"postgres://{USER}:{password}@127.0.0.1:{port}/{DATABASE}", version(folder))
            finally:
                # A fast shutdown (clients cut off) before start_server's SIGTERM to runuser, which would only
                # forward it as a smart shutdown and SIGKILL the server 2 s later.
                stop = as_server_user([str(folder / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"])
                subprocess.run(stop, capture_output=True, check=False, timeout=30)
    finally:
        shutil.rmtree(root, ignore_errors=True)
