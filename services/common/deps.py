"""What every service's HTTP dependencies are made of: objects the service set on ``app.state`` at start-up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request

T = TypeVar("T")


def from_state(name: str, kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A FastAPI dependency returning ``app.state.<name>`` (a ``kind``, set at start-up). A coroutine, though it
    awaits nothing: FastAPI runs a plain function dependency in its thread pool, a hop per request."""

    async def dependency(request: Request) -> T:
        value = getattr(request.app.state, name)
        if not isinstance(value, kind):  # a wiring mistake: loud, never a wrong object
            raise TypeError(f"app.state.{name} is a {type(value).__name__}, not a {kind.__name__}")
        return value

    dependency.__name__ = f"get_{name}"
    return dependency
