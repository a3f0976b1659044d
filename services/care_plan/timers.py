"""Timers: plans whose next check has come (a session's no-show deadline, the end of a week) are reviewed,
and plans on a group's waitlist take the places that came free.

The timer is a field of the plan document, so it survives restarts. Several instances may look at
the same plan at once: the version-checked write lets one win, and the loser's retry finds the
no-show already recorded, so every timer fires once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from services.common.utc import utc_now
from services.common.worker import PollingWorker

from .changes import Decision, admit_waitlisted, adopt_kept_apart, change_plan
from .domain.model import CarePlan
from .domain.policy import CarePolicy
from .store import CarePlanStore

log = logging.getLogger(__name__)


class DueChecks(PollingWorker):
    def __init__(self, store: CarePlanStore, policy: CarePolicy, poll_seconds: float) -> None:
        super().__init__()
        self._store = store
        self._policy = policy
        self.poll_seconds = poll_seconds

    async def work_once(self) -> int:
        due = await self._store.due(utc_now())
        for episode_id in due:
            await change_plan(self._store, self._policy, episode_id, _nothing_new)
        admitted = await admit_waitlisted(self._store, self._policy)
        return len(due) + admitted + await adopt_kept_apart(self._store, self._policy)


def _nothing_new(plan: CarePlan, _now: datetime) -> Decision[None]:
    return plan, [], None  # the review that change_plan runs does the work
