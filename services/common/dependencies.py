"""What a service needs besides its own store and broker (intake, a mail relay, an SMS provider, a webhook),
as the service last found it.

A dependency that does not answer is *down*: an outage, waited out (the consumer retries its event, the
dispatcher retries its message), never turned into lost or set-aside work. One that refuses our
credentials is *misconfigured*: a mistake in the settings, said loudly in the log (with what to set) and in
readiness, and waited out the same way until someone fixes it. Readiness (``/health/ready``) answers 503
while any is not up, naming it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .utc import wall_clock

log = logging.getLogger(__name__)

ProblemKind = Literal["down", "misconfigured"]


class DependencyDown(Exception):
    """``name`` cannot be used now; ``misconfigured`` when it refused our credentials."""

    def __init__(self, name: str, detail: str, *, misconfigured: bool = False) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.detail = detail
        self.misconfigured = misconfigured

    @property
    def kind(self) -> ProblemKind:
        return "misconfigured" if self.misconfigured else "down"


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    detail: str
    since: datetime


class Dependencies:
    """The problems this process sees now, by dependency; each change is logged once."""

    def __init__(self) -> None:
        self._problems: dict[str, Problem] = {}
        self._seen: set[str] = set()

    def failed(self, error: DependencyDown) -> None:
        self._seen.add(error.name)
        known = self._problems.get(error.name)
        if known is not None and (known.kind, known.detail) == (error.kind, error.detail):
            return
        self._problems[error.name] = Problem(error.kind, error.detail, wall_clock())
        if error.misconfigured:
            log.error("configuration: %s %s; waiting until it is fixed", error.name, error.detail)
        else:
            log.warning("%s is down (%s); waiting for it", error.name, error.detail)

    def ok(self, name: str) -> bool:
        """``name`` worked; True when it had been down or misconfigured until now."""
        self._seen.add(name)
        problem = self._problems.pop(name, None)
        if problem is not None:
            log.info("%s is back (was %s since %s)", name, problem.kind, problem.since.isoformat())
        return problem is not None

    def seen(self) -> frozenset[str]:
        """Every dependency this process has used or found down (for its metrics)."""
        return frozenset(self._seen)

    def problems(self) -> dict[str, Problem]:
        return dict(self._problems)
