"""The daily look: coverage whose day has come is settled again (reviews and certifications fall due as days pass,
and the window of units low moves), though no event came. The look is a field of the coverage document, so it
survives restarts; several instances may look at once, and the version-checked write lets one win."""

from __future__ import annotations

from services.common.utc import utc_now
from services.common.worker import PollingWorker

from .changes import Desk, look_again


class DailyLooks(PollingWorker):
    def __init__(self, desk: Desk, poll_seconds: float) -> None:
        super().__init__()
        self._desk = desk
        self.poll_seconds = poll_seconds

    async def work_once(self) -> int:
        due = await self._desk.store.due(self._desk.rules.today(utc_now()))
        for episode_id in due:
            await look_again(self._desk, episode_id)
        return len(due)
