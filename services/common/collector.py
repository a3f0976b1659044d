"""CPython's cycle collector, set for a long-running service once it has started.

Reference counting frees most objects the moment they are no longer used; the collector finds the rest, the
reference cycles, by walking the container objects it tracks, in three generations. A service holds some
120,000-200,000 of them from its start alone (modules, classes, Pydantic's validators, the policies, FastAPI's
routes), and they live as long as the process. With Python's defaults (a young collection after 700 net
allocations, a full one once the survivors grew by a quarter) every full collection walked them all again, and a
request's or a consumer batch's objects still in use at a young collection were promoted, so full collections came
often: the collector took 6-15% of each service's CPU in the benchmark (docs/performance.md, "Issue 31, eighth
round").

``settle`` runs once the service has started (``http_server.Server``):
- one full collection, then ``gc.freeze()``: what survived start-up leaves the generations for good, never walked
  again (what the ``gc`` documentation suggests for objects made at start-up);
- a young collection after ``YOUNG_AFTER`` net allocations instead of 700: the objects of a request or a batch
  mostly die (by reference counting) before one, rather than being promoted for a full collection to walk.

Cycles are still found and freed, later; an object frozen at start-up that becomes part of an unreachable cycle later
is not (start-up's objects are the service's own, kept until it stops).
"""

from __future__ import annotations

import gc

YOUNG_AFTER = 10_000
"""Net allocations of tracked objects between two young collections (Python's default: 700)."""


def settle() -> None:
    """Collect once, freeze what is left, and collect the young generation less often (see the module)."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_AFTER, middle, oldest)
