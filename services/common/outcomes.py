"""The outcome of a write that joined others in one round trip (grouped inserts, a consumer batch's bulk write, the
outbox's removals): each caller waits on its own future, settled once."""

from __future__ import annotations

import asyncio
from typing import Any


def settle(done: asyncio.Future[None], error: BaseException | None = None) -> None:
    """Stored (``error`` None) or failed with ``error``; a future settled already (or given up) is left as it is."""
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def retrieved(done: asyncio.Future[Any]) -> None:
    """A done-callback marking the outcome seen: a caller that gave up leaves no "exception never retrieved"."""
    if not done.cancelled():
        done.exception()
