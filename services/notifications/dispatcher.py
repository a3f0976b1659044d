"""Sends stored notifications: claim one, look up the address, render, send, record.

Each logical notification is stored once (its id comes from the causing event), so redelivered
events never add a message. The one window left is a crash after the SMTP server accepted the
message and before it is marked sent: after the lease expires the message is sent again. It is
the time of one MongoDB write, and the stable Message-ID lets mail systems drop the copy.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from services.common.mongo import Document
from services.common.utc import utc_now
from services.common.worker import PollingWorker

from .channels import ConsentWithdrawn, DeliveryError, EmailSender, IntakeContacts, WebhookSender
from .domain.messages import SUPPORT_KINDS, Channel
from .domain.quiet_hours import not_before
from .rendering import Templates
from .store import NotificationStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuietHours:
    """Local times between which non-urgent messages wait, and the zone of recipients without their own."""

    start: time
    end: time
    default_zone: str


class Deferred(Exception):
    def __init__(self, until: datetime) -> None:
        super().__init__(f"deferred until {until.isoformat()}")
        self.until = until


@dataclass(frozen=True)
class CareTeam:
    """Where the clinic's care team is reached (settings): a mailbox and an on-call webhook."""

    email: str | None
    webhook_url: str | None


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
        care_team: CareTeam,
        webhooks: WebhookSender,
        quiet: QuietHours,
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
        self._care_team = care_team
        self._quiet = quiet
        self._webhooks = webhooks
        self.poll_seconds = poll_seconds
        self._lease = timedelta(seconds=lease_seconds)
        self._max_attempts = max_attempts

    @property
    def care_team_channels(self) -> tuple[Channel, ...]:
        """The channels the clinic configured for reaching its care team."""
        configured: tuple[tuple[Channel, str | None], ...] = (
            ("email", self._care_team.email),
            ("webhook", self._care_team.webhook_url),
        )
        return tuple(channel for channel, target in configured if target)

    async def supports(self, episode_id: str, scope: str) -> list[tuple[str, str]]:
        return await self._contacts.supports(episode_id, scope)

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            await self._contacts.close()
            await self._webhooks.close()

    async def work_once(self) -> int:
        handled = 0
        while (notification := await self._store.claim_due(self._lease)) is not None:
            await self._deliver(notification)
            handled += 1
        return handled

    async def _deliver(self, notification: Document) -> None:
        notification_id = notification["_id"]
        try:
            await self._send(notification)
        except Deferred as deferred:
            await self._store.defer(notification_id, deferred.until)
            log.info("notification %s waits for the end of quiet hours", notification_id)
            return
        except ConsentWithdrawn as withdrawn:
            await self._store.mark_cancelled(notification_id, withdrawn.reason)
            log.info("notification %s cancelled: %s", notification_id, withdrawn.reason)
            return
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

    async def _send(self, notification: Document) -> None:
        """Reach the recipient on the notification's channel; raises DeliveryError."""
        notification_id, episode_id = notification["_id"], notification["episode_id"]
        if notification["channel"] == "webhook":
            if not self._care_team.webhook_url:
                raise DeliveryError("no care-team webhook configured", permanent=True)
            payload = {"notification_id": notification_id, "purpose": notification["purpose"],
                       "episode_id": episode_id, **notification["context"]}  # fmt: skip
            await self._webhooks.send(notification_id, self._care_team.webhook_url, payload)
            return
        zone = self._quiet.default_zone
        if notification["recipient_kind"] == "patient":
            address, patient_zone = await self._contacts.patient_contact(episode_id)
            zone = patient_zone or zone
        elif notification["recipient_kind"] in SUPPORT_KINDS:
            address = await self._contacts.consented_email(episode_id, notification["consent_id"])
        elif self._care_team.email:
            address = self._care_team.email
        else:
            raise DeliveryError("no care-team email configured", permanent=True)
        if not notification.get("urgent", False):
            allowed = not_before(utc_now(), zone, self._quiet.start, self._quiet.end)
            if allowed > utc_now():
                raise Deferred(allowed)
        context = {**notification["context"], "episode_id": episode_id}
        message = self._templates.render(notification["purpose"], notification["channel"], context)
        await self._sender.send(notification_id, address, message)
