"""The escalation timer: a safety alert whose deadline passed without an acknowledgement goes to the on-call route.

The timer is a due time on each alert's record (``due_at``), claimed under a lease as the dispatcher claims
messages, never an in-process sleep: it survives restarts, and among several instances one takes each alert.
``changes.escalate_alert`` records the escalation in a version-checked write, so an alert is escalated once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from services.common.priority import URGENT_FIRST
from services.common.worker import PollingWorker

from . import changes
from .changes import Messaging

log = logging.getLogger(__name__)


class Escalations(PollingWorker):
    def __init__(
        self, messaging: Messaging, *, poll_seconds: float, lease_seconds: float, idle_seconds: float | None = None
    ) -> None:
        super().__init__()
        self._messaging = messaging
        self._lease = timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self.idle_seconds = idle_seconds

    async def work_once(self) -> int:
        claimed = 0
        while (alert_id := await self._messaging.safety.alerts.claim_due(self._lease)) is not None:
            claimed += 1
            with URGENT_FIRST.urgent():
                if await changes.escalate_alert(self._messaging, alert_id):
                    log.warning("safety alert %s was not acknowledged in time: sent to the on-call route", alert_id)
        return claimed
