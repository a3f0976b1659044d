"""A clean start, as `make run` and this suite start the services: quiet (no ERROR line, no colour codes in a log
file) and on loopback only (BIND_HOST unset)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
from pathlib import Path

import pytest

from .conftest import Stack

LEVEL_ERROR = re.compile(r"(^|\s)(ERROR|CRITICAL)(:|\s)")
"""A line logged at ERROR or above, in the services' format, FastStream's or uvicorn's."""
ANSI_ESCAPE = "\x1b["
LISTEN = "0A"


def an_error(line: str) -> bool:
    """A line at ERROR or CRITICAL: a JSON line's ``level`` (LOG_FORMAT=json, the stack's), a text line's word."""
    with contextlib.suppress(json.JSONDecodeError):
        parsed = json.loads(line)
        if isinstance(parsed, dict):
            return parsed.get("level") in ("ERROR", "CRITICAL")
    return LEVEL_ERROR.search(line) is not None


def started(log: str) -> str:
    """The log of a service's first start: up to uvicorn's line that it listens (later starts append to the file)."""
    start, marker, _ = log.partition("Uvicorn running on")
    assert marker, "the service has not finished starting"
    return start


async def test_a_clean_start_logs_no_error_and_no_colour(stack: Stack) -> None:
    """A fresh broker elects its group coordinators while the consumers join: aiokafka's ERRORs about it are no
    error. FastStream coloured its level names in log files."""
    for name, service in stack.services.items():
        log = service.log_path.read_text(encoding="utf-8", errors="replace")
        assert [line for line in started(log).splitlines() if an_error(line)] == [], name
        assert ANSI_ESCAPE not in log, name


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))  # /proc/net/tcp6: four little-endian words
    return socket.inet_ntop(socket.AF_INET6, words)


def listening_on(port: int) -> set[str]:
    """The addresses something listens on at TCP ``port`` (Linux: /proc/net/tcp and tcp6)."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] == LISTEN and int(hex_port, 16) == port:
                found.add(_address(address))
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="reads the listening sockets from Linux's /proc/net/tcp")
async def test_the_services_listen_on_loopback_only(stack: Stack) -> None:
    for name, service in stack.services.items():
        assert listening_on(service.port) == {"127.0.0.1"}, name
