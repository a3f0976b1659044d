"""Backends for the whole suite (see tools/dev/devstack.py), started once when a collected test needs them.

They are started right after collection, so the run's header names the broker and the MongoDB server with
their versions, start-up times and memory, before the first test runs.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import settings

from tools.dev.devstack import Backends, backends

# Properties are about correctness, not speed: no per-example deadline on a loaded 2-core CI machine.
settings.register_profile("stepwise", deadline=None, print_blob=True)
settings.load_profile("stepwise")

MEASUREMENTS: list[str] = []
"""Lines a test wants shown after the run (latencies), printed in the terminal summary."""

WAITS: list[tuple[float, str]] = []
"""How long each condition a test waited for took (seconds, what), to show the slowest after the run."""

_running = contextlib.ExitStack()
_started: list[Backends] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if not any("running_backends" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    started = _running.enter_context(backends())
    _started.append(started)
    if reporter is not None:
        for line in started.describe():
            reporter.write_line(f"backends: {line}")


def pytest_unconfigure(config: pytest.Config) -> None:
    _running.close()


@pytest.fixture(scope="session")
def running_backends() -> Backends:
    assert _started, "backends are started after collection for every test that uses them"
    return _started[0]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [*MEASUREMENTS]
    if WAITS:
        slowest = sorted(WAITS, reverse=True)[:5]
        lines.append(
            f"conditions waited for: {len(WAITS)}; the slowest: " + "; ".join(f"{s:.1f} s {w}" for s, w in slowest)
        )
    for started in _started:
        lines += [f"backends at the end: {line}" for line in started.describe()]
    if lines:
        terminalreporter.section("measurements")
        for line in lines:
            terminalreporter.write_line(line)
