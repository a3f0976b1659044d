"""notifications: turns care events into messages to patients, supports, care teams and graduates, sent once each."""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from services.common import metrics
from services.common.consumer import HANDLER_CONTEXT
from services.common.dependencies import Dependencies, DependencyDown
from services.common.indexes import create_indexes
from services.common.kafka import ServiceBroker, service_broker
from services.common.mongo import Document
from services.common.outbox import Relay, no_relay
from services.common.policy_file import PolicyError
from services.common.service import Runtime, create_service_app
from stepwise_contract import PUBLISHED_BY, Channel

from . import api, handlers
from .changes import Messaging, SafetyDesk
from .channels import EmailSender, IntakeContacts, SmsSender, WebhookSender
from .dispatcher import Dispatcher, QuietHours, Senders, StillWanted
from .domain.delivery import RetryBudget
from .domain.messages import MESSAGE_EVENTS, check_audiences, reachable
from .domain.policy import NotificationPolicy, load_policy
from .domain.safety import CARE_TEAM_ROUTE, ESCALATION, ON_CALL_ROUTE, Deadlines, StaffRoutes
from .escalation import Escalations
from .rendering import Templates
from .settings import CONSUMER_GROUP, NotificationsSettings
from .store import (
    ALUMNI,
    INDEXES,
    NOTIFICATIONS,
    SAFETY_ALERTS,
    AlumniEnrolments,
    AuditLog,
    EpisodeSchedules,
    NotificationStore,
    OptOuts,
    SafetyAlerts,
)

PUBLISHES = PUBLISHED_BY["notifications"]


def create_broker(settings: NotificationsSettings) -> ServiceBroker:
    return service_broker(settings, "notifications", PUBLISHES, handlers.EVENT_HANDLERS, CONSUMER_GROUP)


def load_checked_policy(settings: NotificationsSettings, templates: Templates) -> NotificationPolicy:
    """The clinic's policy, refused at start-up if it tells anyone but the care team of a clinical
    judgement or names a message without a template."""
    path = settings.notifications_policy_file
    policy = load_policy(path, frozenset(MESSAGE_EVENTS))
    needed = policy.templates() | {(ESCALATION, "sms")}  # the page to the on-call route
    problems = check_audiences(policy) + [f"no template {name}" for name in templates.missing(needed)]
    if problems:
        raise PolicyError(f"{path}: invalid notifications policy: {problems[0]}")
    return policy


async def assemble(
    settings: NotificationsSettings,
    policy: NotificationPolicy,
    templates: Templates,
    database: AsyncDatabase[Document],
    wake_relay: Relay,
    dependencies: Dependencies,
    contacts: IntakeContacts | None = None,
) -> tuple[Messaging, Dispatcher]:
    """The service's parts over its database: what handlers and endpoints use, and the dispatcher."""
    store = NotificationStore(database, wake_relay=wake_relay)
    alumni = AlumniEnrolments(database, wake_relay=wake_relay)
    alerts, audit = SafetyAlerts(database, wake_relay=wake_relay), AuditLog(database)
    await create_indexes(database, INDEXES)
    schedules = EpisodeSchedules(database)
    opt_outs = OptOuts(database, settings.contact_hash_key.get_secret_value(), settings.clinic_phone_region)
    # Opt-outs recorded before their episode's calendar record was made with them (a previous version): made now.
    await schedules.before_opt_out(*await opt_outs.episodes_opted_out_of())
    contacts = contacts or IntakeContacts(settings, dependencies)
    senders = Senders(
        EmailSender(settings), SmsSender(settings), WebhookSender(settings.webhook_secret.get_secret_value())
    )
    staff = staff_routes(settings, senders, policy)
    for route, problem in staff.problems().items():  # a mistake in the settings: an error now, and not ready
        dependencies.failed(DependencyDown(route, problem, misconfigured=True))
    still_wanted = StillWanted(schedules, alumni, opt_outs)
    dispatcher = _dispatcher(settings, store, contacts, senders, templates, staff, still_wanted, dependencies)
    care_team = staff.channels(CARE_TEAM_ROUTE)
    channels = reachable(sms=senders.sms.configured, care_team_email="email" in care_team,
                         care_team_webhook="webhook" in care_team)  # fmt: skip
    deadlines = Deadlines(timedelta(seconds=settings.safety_ack_seconds), policy.safety_alerts.same_day,
                          settings.clinic_timezone)  # fmt: skip
    desk = SafetyDesk(alerts, audit, deadlines, staff.channels(ON_CALL_ROUTE), settings.console_base_url)
    messaging = Messaging(policy, store, schedules, alumni, opt_outs, contacts, channels,
                          settings.clinic_timezone, dispatcher.wake, desk, dispatcher)  # fmt: skip
    return messaging, dispatcher


def _dispatcher(
    settings: NotificationsSettings,
    store: NotificationStore,
    contacts: IntakeContacts,
    senders: Senders,
    templates: Templates,
    staff: StaffRoutes,
    still_wanted: StillWanted,
    dependencies: Dependencies,
) -> Dispatcher:
    return Dispatcher(
        store,
        contacts,
        senders,
        templates,
        staff,
        QuietHours(settings.quiet_hours_start, settings.quiet_hours_end, settings.clinic_timezone),
        still_wanted,
        poll_seconds=settings.dispatch_poll_seconds,
        idle_seconds=settings.dispatch_idle_poll_seconds,
        lease_seconds=settings.dispatch_lease_seconds,
        retries=RetryBudget(
            timedelta(hours=settings.dispatch_retry_hours), timedelta(seconds=settings.dispatch_retry_max_seconds)
        ),
        dependencies=dependencies,
        concurrency=settings.dispatch_concurrency,
        configured=configured_channels(senders, staff),
    )


def staff_routes(settings: NotificationsSettings, senders: Senders, policy: NotificationPolicy) -> StaffRoutes:
    return StaffRoutes(settings.care_team_email, settings.care_team_webhook_url, settings.on_call_phone,
                       settings.on_call_webhook_url, sms=senders.sms.configured, ur_team_email=settings.ur_team_email,
                       ur_purposes=policy.ur_purposes())  # fmt: skip


def configured_channels(senders: Senders, staff: StaffRoutes) -> tuple[Channel, ...]:
    """The channels the dispatcher looks at on every pass: email always (patients, and the care team's mailbox),
    SMS with a provider, the webhook with a care-team or on-call URL."""
    return ("email", *(("sms",) if senders.sms.configured else ()),
            *(("webhook",) if staff.care_team_webhook_url or staff.on_call_webhook_url else ()))  # fmt: skip


def delivery_metrics(messaging: Messaging) -> metrics.Probe:
    """/metrics: notifications by status and channel, and safety alerts not acknowledged yet."""

    async def probe() -> None:
        counts = await messaging.store.counts()
        metrics.NOTIFICATIONS.clear()
        for (status, channel), count in counts.items():
            metrics.NOTIFICATIONS.labels(status, channel).set(count)
        metrics.SAFETY_ALERTS_OPEN.set(await messaging.safety.alerts.open_count())

    return probe


def create_app(settings: NotificationsSettings | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    templates = Templates(settings.templates_dir, settings.clinic_timezone)
    policy = load_checked_policy(settings, templates)  # fail at start on a bad policy file
    kafka = create_broker(settings)

    async def startup(runtime: Runtime, app: FastAPI) -> Sequence[Coroutine[Any, Any, None]]:
        wake_relay = runtime.relay or no_relay
        messaging, dispatcher = await assemble(
            settings, policy, templates, runtime.database, wake_relay, runtime.dependencies
        )
        app.state.messaging = messaging
        runtime.metrics.add(delivery_metrics(messaging))
        runtime.broker.context.set_global(HANDLER_CONTEXT, messaging)
        escalations = Escalations(messaging, poll_seconds=settings.dispatch_poll_seconds,
                                  idle_seconds=settings.dispatch_idle_poll_seconds,
                                  lease_seconds=settings.dispatch_lease_seconds)  # fmt: skip
        return [dispatcher.run(), escalations.run()]

    return create_service_app(
        title="Stepwise notifications",
        description=__doc__ or "",
        settings=settings,
        kafka=kafka,
        routers=[api.router],
        startup=startup,
        outbox_collections=[NOTIFICATIONS, ALUMNI, SAFETY_ALERTS],
    )
