"""The harness's second MongoDB server (FerretDB on PostgreSQL): picked on request only, never swapped for another."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tools.dev import devstack, ferretdb, postgres


def test_ferretdb_on_postgresql_is_never_replaced_by_another_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ferretdb, "missing", lambda: "no go on PATH to build FerretDB")
    refused = pytest.raises(RuntimeError, match="STEPWISE_MONGODB_SERVER=ferretdb-pg: no go on PATH")
    with refused, devstack.mongodb_server(tmp_path, "ferretdb-pg"):
        pass


def test_a_mongodb_server_asked_for_is_used_even_where_docker_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.clinic.example:9092")
    monkeypatch.delenv("MONGODB_URL", raising=False)
    monkeypatch.setenv("STEPWISE_MONGODB_SERVER", "ferretdb-pg")
    monkeypatch.setattr(devstack, "docker_engine_answers", lambda: True)
    monkeypatch.setattr(devstack, "_testcontainers_mongodb", lambda: pytest.fail("MongoDB under Docker was started"))
    monkeypatch.setattr(ferretdb, "missing", lambda: "no go on PATH to build FerretDB")
    with pytest.raises(RuntimeError, match="ferretdb-pg"), devstack.backends():
        pass


def test_postgresql_runs_as_its_own_user_under_root_on_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    binaries, data = Path("/usr/lib/postgresql/15/bin"), Path("/tmp/cluster/data")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    command = postgres.server_command(binaries, data, 5433)
    assert command[:4] == ["runuser", "-u", "postgres", "--"]
    assert command[4:9] == [str(binaries / "postgres"), "-D", str(data), "-p", "5433"]
    settings = dict(setting.split("=", 1) for setting in command[10::2])
    assert (settings["listen_addresses"], settings["unix_socket_directories"]) == ("127.0.0.1", "")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert postgres.server_command(binaries, data, 5433)[0] == str(binaries / "postgres")


def test_postgresql_is_missing_only_where_it_is_not_installed_and_cannot_be(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "binaries", lambda: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "no PostgreSQL server installed" in (postgres.missing() or "")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert postgres.missing() is None  # root with apt: the first start installs Debian's package
