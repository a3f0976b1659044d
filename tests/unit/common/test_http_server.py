"""The services' HTTP server: a stop signal ends it at once, though its clock ticks once a second (or, here, an hour);
each tick refreshes the Date header, as uvicorn's tenth tick does."""

from __future__ import annotations

import asyncio
import signal

import pytest
import uvicorn

from services.common import http_server
from services.common.http_server import TICKS_PER_SECOND, Server


async def app(scope: dict[str, object], receive: object, send: object) -> None:
    raise AssertionError("no request is made")


def server() -> Server:
    return Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off"))


async def test_a_stop_signal_ends_the_server_without_waiting_for_its_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_server, "TICK_SECONDS", 3_600.0)
    running = server()
    first_tick = running.on_tick

    async def on_tick(counter: int) -> bool:  # the signal comes once the server waits on its (hour-long) tick
        asyncio.get_running_loop().call_soon(running.handle_exit, signal.SIGTERM, None)
        return await first_tick(counter)

    monkeypatch.setattr(running, "on_tick", on_tick)

    await asyncio.wait_for(running.main_loop(), 30)  # only a hang fails: without the wake-up the hour's tick holds it
    assert running.should_exit


async def test_every_tick_refreshes_the_date_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_server, "TICK_SECONDS", 0.001)
    running, counters = server(), []

    async def on_tick(counter: int) -> bool:
        counters.append(counter)
        return len(counters) == 4

    monkeypatch.setattr(running, "on_tick", on_tick)
    await running.main_loop()

    assert counters == [0, TICKS_PER_SECOND, 2 * TICKS_PER_SECOND, 3 * TICKS_PER_SECOND]


async def test_what_is_called_once_started_is_called_after_the_start_up_and_before_the_first_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    running = Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off"),
                     settled=lambda: calls.append("settled"))  # fmt: skip

    async def on_tick(counter: int) -> bool:
        calls.append("tick")
        return True

    monkeypatch.setattr(running, "on_tick", on_tick)
    await asyncio.wait_for(running.serve(), 30)

    assert calls == ["settled", "tick"]


async def test_a_server_that_did_not_start_calls_nothing() -> None:
    calls: list[str] = []
    running = Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off"),
                     settled=lambda: calls.append("settled"))  # fmt: skip

    async def not_started(self: object, sockets: object = None) -> None:  # uvicorn's, when told to stop meanwhile
        return None

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(uvicorn.Server, "startup", not_started)
        await running.startup()

    assert not running.started
    assert calls == []
