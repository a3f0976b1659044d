"""Sends stored notifications: claim one, check it is still wanted, look up the address, render, send, record.

What is due when it is stored goes at once: the event's handler stores it leased to this instance (the lease is taken
by the write that stores it) and hands it over (``Dispatcher.hand_over``), so it is sent without a claim and without
waiting for a pass; a pass claims what is due later, what a crash or another instance left, and what waits for a retry.

Each logical notification is stored once, under an id that comes from what caused it, before any
attempt to send it, so redelivered events never add a message and a claimed message is leased to one
instance. Once a channel accepted a message, recording that is retried (the lease held) until the store
takes it. The one window left is a process death after the channel accepted the message and before it
is marked sent: after the lease expires it is sent again. The stable Message-ID (email),
Idempotency-Key (SMS) and notification-id header (webhooks) let receivers drop the copy.

Failures: a permanent refusal ends the message; a transient one (relay unreachable, 4xx temporary, 5xx)
is retried by ``RetryBudget`` for a time, and marks its channel down (readiness, probing) unless only the
recipient was refused for now (a relay's greylisting: the channel works); a dependency that is down or refuses
our credentials (``DependencyDown``: intake, a provider's 401) makes the message wait, without counting, until
it is back. A channel that works again releases the messages that wait on it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from time import monotonic
from time import perf_counter as time_now

from opentelemetry.trace import SpanKind
from pymongo.errors import PyMongoError

from services.common import tracing
from services.common.dependencies import Dependencies, DependencyDown
from services.common.logs import about
from services.common.metrics import SEND_SECONDS
from services.common.priority import URGENT_FIRST
from services.common.utc import utc_now, wall_clock
from services.common.worker import PollingWorker
from stepwise_contract import ALUMNI, Channel

from .channels import (
    CARE_TEAM_WEBHOOK,
    SMS_PROVIDER,
    SMTP,
    Contact,
    DeliveryError,
    EmailSender,
    IntakeContacts,
    NotWanted,
    SmsSender,
    WebhookSender,
)
from .domain.delivery import Notification, RetryBudget, failed, sent
from .domain.messages import LINK_INSTRUMENTS
from .domain.opt_outs import recipient_key
from .domain.quiet_hours import not_before
from .domain.safety import ESCALATION, StaffRoutes
from .rendering import Templates
from .store import AlumniEnrolments, EpisodeSchedules, NotificationStore, OptOuts

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


NONE_OPTED_OUT_KEPT_SECONDS = 2.0
"""How long after its episode's first calendar proved that nobody had opted out a message handed over as it was
stored goes without a look at the opt-outs (as the welcome's contact is kept: seconds, within the event's handling;
an opt-out recorded while a message is on its way may miss it, as one recorded after the look does)."""
DEPENDENCY_WAIT = timedelta(seconds=5)
PROBE_EVERY = timedelta(seconds=5)
"""How long a message waits before it tries a dependency that was down again."""
CHANNEL_DEPENDENCY: dict[Channel, str] = {"email": SMTP, "sms": SMS_PROVIDER, "webhook": CARE_TEAM_WEBHOOK}


@dataclass(frozen=True)
class Senders:
    email: EmailSender
    sms: SmsSender
    webhook: WebhookSender

    async def close(self) -> None:
        await self.email.close()
        await self.sms.close()
        await self.webhook.close()


@dataclass(frozen=True)
class StillWanted:
    """What may have changed since a message was planned: the calendar, the alumni enrolment, opt-outs."""

    schedules: EpisodeSchedules
    alumni: AlumniEnrolments
    opt_outs: OptOuts


URGENT, ROUTINE = True, False
CHANNELS: tuple[Channel, ...] = ("email", "sms", "webhook")
UNCONFIGURED_SWEEP = timedelta(seconds=60)


class Lane(PollingWorker):
    """The urgent or the routine messages: per channel, claimed one after another and sent ``concurrency`` at
    once (those handed over as they were stored take the same slots). Each lane is its own loop with its own
    wake-up, so an urgent message never waits for a routine backlog to drain, and a channel that is slow or down
    never takes another channel's slots."""

    def __init__(
        self,
        urgent: bool,
        claim: Callable[[Channel, bool], Awaitable[Notification | None]],
        deliver: Callable[[Notification], Awaitable[None]],
        *,
        concurrency: int,
        poll_seconds: float,
        idle_seconds: float | None = None,
        configured: tuple[Channel, ...] = CHANNELS,
        before_pass: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self.urgent = urgent
        self._configured = configured
        self._swept: datetime | None = None
        self._claim = claim
        self._deliver = deliver
        self._concurrency = concurrency
        self._before_pass = before_pass
        self.poll_seconds = poll_seconds
        self.idle_seconds = idle_seconds
        self._slots: dict[Channel, asyncio.Semaphore] = {}
        self._sending_now: set[asyncio.Task[None]] = set()

    def _slots_of(self, channel: Channel) -> asyncio.Semaphore:
        return self._slots.setdefault(channel, asyncio.Semaphore(self._concurrency))

    def send_now(self, notification: Notification) -> None:
        """Send a message leased to this instance as it was stored, in a slot of its channel (a routine one after
        urgent work, as a pass's)."""
        task = asyncio.create_task(self._send_leased(notification))
        self._sending_now.add(task)
        task.add_done_callback(self._sending_now.discard)

    async def _send_leased(self, notification: Notification) -> None:
        async with self._slots_of(notification.channel):
            if not self.urgent:
                await URGENT_FIRST.routine_turn()
            try:
                with URGENT_FIRST.urgent() if self.urgent else contextlib.nullcontext():
                    await self._deliver(notification)
            except Exception as error:  # its lease ends, and a pass claims it again
                log.warning("notification %s: sending it at once failed (%s); a pass will try again",
                            notification.notification_id, type(error).__name__)  # fmt: skip

    def stop_sending(self) -> None:
        for task in list(self._sending_now):
            task.cancel()

    async def work_once(self) -> int:
        with URGENT_FIRST.urgent() if self.urgent else contextlib.nullcontext():
            if self._before_pass:
                await self._before_pass()
            return sum(await asyncio.gather(*(self._send_due(channel) for channel in self._channels_now())))

    def _channels_now(self) -> tuple[Channel, ...]:
        """The configured channels; every ``UNCONFIGURED_SWEEP`` the others too, so that a message planned before
        its channel was removed from the configuration ends (failed: not configured) instead of waiting forever."""
        if self._swept is not None and wall_clock() - self._swept < UNCONFIGURED_SWEEP:
            return self._configured
        self._swept = wall_clock()
        return CHANNELS

    async def _send_due(self, channel: Channel) -> int:
        slots = self._slots_of(channel)
        sending: list[asyncio.Task[None]] = []

        async def deliver(notification: Notification) -> None:
            try:
                await self._deliver(notification)
            finally:
                slots.release()

        try:
            while True:
                await slots.acquire()
                if not self.urgent:
                    await URGENT_FIRST.routine_turn()
                notification = await self._claim(channel, self.urgent)
                if notification is None:
                    slots.release()
                    return len(sending)
                sending.append(asyncio.create_task(deliver(notification)))
        finally:
            outcomes = await asyncio.gather(*sending, return_exceptions=True)
            failure = next((outcome for outcome in outcomes if isinstance(outcome, Exception)), None)
            if failure is not None:
                raise failure  # the pass failed; what it claimed is tried again when its lease ends


class Dispatcher:
    """Two lanes over the delivery log: urgent messages (safety alerts) and routine ones."""

    def __init__(
        self,
        store: NotificationStore,
        contacts: IntakeContacts,
        senders: Senders,
        templates: Templates,
        staff: StaffRoutes,
        quiet: QuietHours,
        still_wanted: StillWanted,
        *,
        poll_seconds: float,
        lease_seconds: float,
        retries: RetryBudget,
        idle_seconds: float | None = None,
        dependencies: Dependencies,
        concurrency: int = 8,
        configured: tuple[Channel, ...] = CHANNELS,
    ) -> None:
        self._store = store
        self._contacts = contacts
        self._senders = senders
        self._templates = templates
        self._staff = staff
        self._quiet = quiet
        self._wanted = still_wanted
        self._lease = timedelta(seconds=lease_seconds)
        self._retries = retries
        self._dependencies = dependencies
        self._probed: dict[Channel, datetime] = {}
        self._running = False
        poll_seconds = min(poll_seconds, PROBE_EVERY.total_seconds())
        # Idle, a lane looks less often (messages due now are handed over or wake it); the urgent lane's passes
        # also probe the channels that are down, every ``PROBE_EVERY``.
        idle = None if idle_seconds is None else min(idle_seconds, PROBE_EVERY.total_seconds())
        self.lanes = (
            Lane(URGENT, self._claim, self._deliver, concurrency=concurrency, poll_seconds=poll_seconds,
                 idle_seconds=idle, configured=configured, before_pass=self._probe_channels_that_are_down),
            Lane(ROUTINE, self._claim, self._deliver, concurrency=concurrency, poll_seconds=poll_seconds,
                 idle_seconds=idle_seconds, configured=configured),
        )  # fmt: skip

    def wake(self, urgent: bool | None = None) -> None:
        """New messages were stored: wake the lane they belong to (None: both)."""
        for lane in self.lanes:
            if urgent is None or lane.urgent == urgent:
                lane.wake()

    def lease_for_new(self) -> timedelta | None:
        """The lease a message due as it is stored is stored with, for this instance to send it at once; None while
        the dispatcher is not running (a pass claims it)."""
        return self._lease if self._running else None

    def hand_over(self, notifications: Sequence[Notification]) -> None:
        """Send these, stored leased to this instance (``lease_for_new``), now."""
        for notification in notifications:
            self.lanes[0 if notification.urgent else 1].send_now(notification)

    async def work_once(self) -> int:
        """One pass of each lane, the urgent one first (tests drive the dispatcher with it)."""
        return sum([await lane.work_once() for lane in self.lanes])

    async def run(self) -> None:
        self._running = True
        try:
            await asyncio.gather(*(lane.run() for lane in self.lanes))
        finally:
            self._running = False
            for lane in self.lanes:
                lane.stop_sending()
            await self._contacts.close()
            await self._senders.close()

    async def _claim(self, channel: Channel, urgent: bool) -> Notification | None:
        return await self._store.claim_due(self._lease, channel=channel, urgent=urgent)

    async def _probe_channels_that_are_down(self) -> None:
        """Every ``PROBE_EVERY``, one message waiting on a channel that is down tries it: when the channel is
        back, that send releases all the others (``retry_now``), seconds after, not a backoff later."""
        problems = self._dependencies.problems()
        for channel, dependency in CHANNEL_DEPENDENCY.items():
            problem = problems.get(dependency)
            last = self._probed.get(channel)
            if problem is None or problem.kind != "down" or (last is not None and wall_clock() - last < PROBE_EVERY):
                continue
            self._probed[channel] = wall_clock()
            await self._store.probe(channel)

    async def _deliver(self, notification: Notification) -> None:
        """Send it, in a span continuing the trace of the event that planned it; log lines name it."""
        attributes = {"stepwise.channel": notification.channel, "stepwise.purpose": notification.purpose}
        with (
            tracing.continued("notification deliver", notification.traceparent, SpanKind.INTERNAL, attributes),
            about(episode_id=notification.episode_id, notification_id=notification.notification_id),
        ):
            await self._delivering(notification)

    async def _delivering(self, notification: Notification) -> None:
        notification_id = notification.notification_id
        try:
            await self._send(notification)
        except Deferred as deferred:
            await self._store.defer(notification_id, deferred.until)
            log.info("notification %s waits for the end of quiet hours", notification_id)
            return
        except NotWanted as unwanted:
            await self._store.mark_cancelled(notification_id, unwanted.reason)
            log.info("notification %s cancelled: %s", notification_id, unwanted.reason)
            return
        except DependencyDown as down:
            self._dependencies.failed(down)
            await self._store.defer(notification_id, utc_now() + DEPENDENCY_WAIT, f"waiting: {down}")
            return
        except DeliveryError as error:
            await self._failed_attempt(notification, error)
            return
        came_back = self._dependencies.ok(CHANNEL_DEPENDENCY[notification.channel])
        await self._record_sent(notification)
        log.info("notification %s sent (%s, %s)", notification_id, notification.purpose, notification.channel)
        if came_back and await self._store.retry_now(notification.channel):
            log.info("%s works again: the messages waiting on it go now", notification.channel)

    async def _failed_attempt(self, notification: Notification, error: DeliveryError) -> None:
        retry_at = None if error.permanent else self._retries.next_attempt(notification, utc_now(), random.random())  # noqa: S311
        if retry_at is None:
            event = failed(notification, utc_now(), error.permanent)
            await self._store.mark_failed(notification, error.reason, event)
            log.warning("notification %s failed for good: %s", notification.notification_id, error.reason)
            return
        if not error.recipient_only:
            self._dependencies.failed(DependencyDown(CHANNEL_DEPENDENCY[notification.channel], error.reason))
        await self._store.retry_later(notification.notification_id, retry_at - utc_now(), error.reason)
        log.info("notification %s will be retried: %s", notification.notification_id, error.reason)

    async def _record_sent(self, notification: Notification) -> None:
        """The channel took the message: record it, however long the store takes to come back, holding the
        lease meanwhile so no other instance sends it again."""
        event = sent(notification, utc_now())
        wait = 0.2
        while True:
            try:
                await self._store.mark_sent(notification, event)
                return
            except PyMongoError as error:
                log.warning("notification %s was sent; recording it failed (%s), trying again",
                            notification.notification_id, type(error).__name__)  # fmt: skip
            with contextlib.suppress(PyMongoError):
                await self._store.extend_lease(notification.notification_id, self._lease)
            await asyncio.sleep(wait)
            wait = min(wait * 2, 5.0)

    async def _send(self, notification: Notification) -> None:
        """Reach the recipient on the notification's channel; raises DeliveryError, NotWanted or Deferred."""
        await self._check_still_wanted(notification)
        if notification.channel == "webhook":  # staff only
            url = self._staff_address(notification)
            about = {} if notification.purpose == ESCALATION else {"episode_id": notification.episode_id}
            payload = {"notification_id": notification.notification_id, "purpose": notification.purpose,
                       **about, **notification.context}  # fmt: skip
            await timed("webhook", self._senders.webhook.send(notification.notification_id, url, payload))
            return
        contact = await self._contact(notification)
        address = contact.address(notification.channel)
        if (
            notification.channel == "sms"
            and not notification.urgent
            and await self._wanted.opt_outs.has(self._wanted.opt_outs.number_key(address))
        ):
            raise NotWanted("the number replied STOP")
        if not notification.urgent:
            allowed = not_before(utc_now(), contact.timezone or self._quiet.default_zone, self._quiet.start,
                                 self._quiet.end)  # fmt: skip
            if allowed > utc_now():
                raise Deferred(allowed)
        context = {**notification.context, "episode_id": notification.episode_id, **await self._link(notification)}
        message = self._templates.render(notification.purpose, notification.channel, context)
        sender = self._senders.sms if notification.channel == "sms" else self._senders.email
        await timed(notification.channel, sender.send(notification.notification_id, address, message))

    async def _link(self, notification: Notification) -> dict[str, str]:
        """For a message asking the patient to answer a questionnaire: a link intake makes now, rendered into this
        message only (the delivery log keeps the planned context, which has none)."""
        instruments = notification.context.get(LINK_INSTRUMENTS)
        if not instruments:
            return {}
        link = await self._contacts.questionnaire_link(notification.episode_id, list(instruments))
        return {"link": link.url, "link_expires_at": link.expires_at}

    async def _check_still_wanted(self, notification: Notification) -> None:
        episode_id, kind = notification.episode_id, notification.recipient_kind
        if notification.expires_at is not None and notification.expires_at <= utc_now():
            raise NotWanted("too late: its moment has passed")
        if notification.series_kind == "sessions" and not await self._wanted.schedules.is_current(
            episode_id, notification.series
        ):
            raise NotWanted("the session calendar changed or the episode ended")
        if kind == ALUMNI:
            enrolment = await self._wanted.alumni.get(episode_id)
            if enrolment is None or enrolment.status != "enrolled":
                raise NotWanted("the alumni enrolment has ended")
        if (
            not notification.urgent
            and kind != "care_team"
            and not _none_opted_out(notification)
            and await self._wanted.opt_outs.has(recipient_key(episode_id, kind, notification.consent_id))
        ):
            raise NotWanted("the recipient opted out")

    async def _contact(self, notification: Notification) -> Contact:
        episode_id, kind = notification.episode_id, notification.recipient_kind
        if kind == "patient":
            return await self._contacts.patient_contact(episode_id)
        if kind != "care_team":  # a support, or an alumnus: reached under the consent that allows it
            assert notification.consent_id is not None
            return await self._contacts.consented_contact(episode_id, notification.consent_id)
        address = self._staff_address(notification)  # the care team's, or the on-call route's for a page
        return Contact(email=address, phone=address)

    def _staff_address(self, notification: Notification) -> str:
        """Where a staff message goes on its channel. While its route has no address at all, the message waits like
        one whose credentials are refused (readiness names the route); a channel the route does not use ends it."""
        route, addresses = self._staff.of(notification.purpose)
        address = addresses.get(notification.channel)
        if address:
            return address
        problem = self._staff.problems().get(route)
        if problem is not None:
            raise DependencyDown(route, problem, misconfigured=True)
        raise DeliveryError(f"no {route.replace('_', '-')} {notification.channel} configured", permanent=True)


def _none_opted_out(notification: Notification) -> bool:
    """Whether, seconds ago, no recipient of the message's episode had opted out (its first calendar here said so)."""
    known_at = notification.none_opted_out_at
    return known_at is not None and monotonic() - known_at <= NONE_OPTED_OUT_KEPT_SECONDS


async def timed(channel: Channel, sending: Awaitable[None]) -> None:
    """``sending``, its time observed by channel and outcome (``stepwise_notification_send_seconds``)."""
    started, outcome = time_now(), "failed"
    try:
        await sending
        outcome = "sent"
    finally:
        SEND_SECONDS.labels(channel, outcome).observe(time_now() - started)
