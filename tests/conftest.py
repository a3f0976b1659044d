"""Backends for the whole suite: configured, testcontainers, or the pinned stand-ins (see tools/devstack.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tools.devstack import Backends, backends

# Properties are about correctness, not speed: no per-example deadline on a loaded 2-core CI machine.
settings.register_profile("stepwise", deadline=None, print_blob=True)
settings.load_profile("stepwise")

MEASUREMENTS: list[str] = []
"""Lines a test wants shown after the run (latencies), printed in the terminal summary."""


@pytest.fixture(scope="session")
def running_backends() -> Iterator[Backends]:
    with backends() as started:
        yield started


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASUREMENTS:
        terminalreporter.section("measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)
