"""FerretDB v1, a MongoDB wire-protocol server on SQLite or PostgreSQL, built from the Go module proxy.

The version is pinned by ``go.mod`` and its checksum by ``go.sum`` beside this file. The first start on a
machine downloads the module (checked against ``go.sum``), builds the binary into ``~/.cache/stepwise``
(about a minute on two cores) and keeps it; later starts only run it. FerretDB's sources come without the
generated ``build/version/version.txt`` its ``main`` refuses to start without, so the build runs on a copy
with that one file written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tools.dev import postgres
from tools.dev.servers import Server, cache_dir, free_port, start_server

HERE = Path(__file__).resolve().parent
MODULE = "github.com/FerretDB/FerretDB"


def version() -> str:
    match = re.search(rf"^require {re.escape(MODULE)} (v\S+)$", (HERE / "go.mod").read_text(), re.MULTILINE)
    assert match, f"{HERE / 'go.mod'} requires no {MODULE}"
    return match.group(1)


def missing() -> str | None:
    """None when Go is here to build FerretDB (or it is built already); otherwise what is missing."""
    if binary().exists() or shutil.which("go"):
        return None
    return "no go on PATH to build FerretDB"


def binary() -> Path:
    return cache_dir() / f"ferretdb-{version()}" / "ferretdb"


def build() -> Path:
    target = binary()
    if target.exists():
        return target
    print(f"building FerretDB {version()} from the Go module proxy (first run on this machine)…", flush=True)
    env = {**os.environ, "GOFLAGS": "-mod=readonly"}
    downloaded = subprocess.run(
        ["go", "mod", "download", "-json", MODULE], cwd=HERE, env=env, capture_output=True, text=True, check=False
    )
    if downloaded.returncode != 0:
        raise RuntimeError(f"go could not download {MODULE}:\n{downloaded.stdout}{downloaded.stderr}")
    source = Path(json.loads(downloaded.stdout)["Dir"])
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        copy = Path(work) / "src"
        shutil.copytree(source, copy)
        for path in (copy, *copy.rglob("*")):
            path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
        (copy / "build" / "version" / "version.txt").write_text(f"{version()}\n")
        built = subprocess.run(
            ["go", "build", "-trimpath", "-o", str(Path(work) / "ferretdb"), "./cmd/ferretdb"],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if built.returncode != 0:
            raise RuntimeError(f"building FerretDB {version()} failed:\n{built.stdout}{built.stderr}")
        (Path(work) / "ferretdb").replace(target)
    return target


@contextlib.contextmanager
def ferretdb(folder: Path) -> Iterator[Server]:
    """FerretDB on SQLite with its data in ``folder``, on a free loopback port; SIGTERM afterwards."""
    program = build()
    port = free_port()
    (folder / "sqlite").mkdir(parents=True, exist_ok=True)
    command = [
        str(program),
        "--handler=sqlite",
        f"--sqlite-url=file:{folder / 'sqlite'}/",
        f"--listen-addr=127.0.0.1:{port}",
        f"--state-dir={folder}",
        "--debug-addr=-",
        "--telemetry=disable",
        "--log-level=warn",
    ]
    log = folder / "ferretdb.log"
    with start_server(f"FerretDB {version()} (SQLite)", command, port, log, ready_within=30) as server:
        yield server


@contextlib.contextmanager
def ferretdb_on_postgresql(folder: Path) -> Iterator[Server]:
    """FerretDB on a new PostgreSQL cluster (``tools/dev/postgres``), its state and logs in ``folder``, on free
    loopback ports; both stopped afterwards. FerretDB can be stopped and started again over the same cluster."""
    program = build()
    folder.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with postgres.postgresql(folder / "postgresql.log") as cluster:
        port = free_port()
        command = [
            str(program),
            "--handler=postgresql",
            f"--postgresql-url={cluster.url}",
            f"--listen-addr=127.0.0.1:{port}",
            f"--state-dir={folder}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=warn",
        ]
        name = f"FerretDB {version()} on PostgreSQL {cluster.version}"
        with start_server(name, command, port, folder / "ferretdb.log", ready_within=30) as server:
            server.started_in = time.monotonic() - began  # the cluster's initdb and start included
            yield server
