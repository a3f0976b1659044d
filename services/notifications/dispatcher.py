"""Sends stored notifications: claim one, look up the address, render, send, record.

Each logical notification is stored once (its id comes from the causing event), so redelivered
events never add a message. The one window left is a crash after the SMTP server accepted the
message and before it is marked sent: after the lease expires the message is sent again. It is
the time of one MongoDB write, and the stable Message-ID lets mail systems drop the copy.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from services.common.mongo import Document
from services.common.worker import PollingWorker

from .channels import DeliveryError, EmailSender, IntakeContacts
from .rendering import Templates
from .store import NotificationStore

log = logging.getLogger(__name__)


def retry_delay(attempt: int) -> timedelta:
    """Exponential backoff with full jitter: up to 2, 4, 8 … seconds, capped at 10 minutes."""
    return timedelta(seconds=random.uniform(0.5, min(2.0**attempt, 600.0)))  # noqa: S311 - not crypto


class Dispatcher(PollingWorker):
    def __init__(
        self,
        store: NotificationStore,
        contacts: IntakeContacts,
        sender: EmailSender,
        templates: Templates,
        *,
        poll_seconds: float,
        lease_seconds: float,
        max_attempts: int,
    ) -> None:
        super().__init__()
        self._store = store
        self._contacts = contacts
        self._sender = sender
        self._templates = templates
        self.poll_seconds = poll_seconds
        self._lease = timedelta(seconds=lease_seconds)
        self._max_attempts = max_attempts

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            await self._contacts.close()

    async def work_once(self) -> int:
        handled = 0
        while (notification := await self._store.claim_due(self._lease)) is not None:
            await self._deliver(notification)
            handled += 1
        return handled

    async def _deliver(self, notification: Document) -> None:
        notification_id = notification["_id"]
        try:
            address = await self._contacts.email_for_episode(notification["episode_id"])
            message = self._templates.render(notification["purpose"], notification["channel"], notification["context"])
            await self._sender.send(notification_id, address, message)
        except DeliveryError as error:
            attempts = notification["attempts"]
            if error.permanent or attempts >= self._max_attempts:
                await self._store.mark_failed(notification, error.reason, error.permanent)
                log.warning("notification %s failed for good: %s", notification_id, error.reason)
            else:
                await self._store.retry_later(notification_id, retry_delay(attempts), error.reason)
                log.info("notification %s will be retried: %s", notification_id, error.reason)
            return
        await self._store.mark_sent(notification)
        log.info("notification %s sent (%s, %s)", notification_id, notification["purpose"], notification["channel"])
