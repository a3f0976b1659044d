"""notifications: turns care events into messages to patients, sent once each."""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any

from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from services.common.kafka import declare_publishers, new_broker
from services.common.service import Runtime, create_service_app
from stepwise_contract import NotificationFailed, NotificationSent

from . import api, handlers
from .channels import EmailSender, IntakeContacts, WebhookSender
from .dispatcher import CareTeam, Dispatcher, QuietHours
from .rendering import Templates
from .settings import NotificationsSettings
from .store import NOTIFICATIONS, NotificationStore

CONSUMES = (
    "iop.care_level.assigned",
    "iop.session.missed",
    "iop.safety.alert_raised",
    "iop.care_level.step_up_recommended",
    "iop.care_level.step_down_recommended",
    "iop.attendance.rule_triggered",
)
PUBLISHES = (NotificationSent, NotificationFailed)


def create_broker(settings: NotificationsSettings) -> tuple[KafkaBroker, dict[str, Any]]:
    broker = new_broker(settings, client_id="stepwise-notifications")
    if settings.kafka_consumers_enabled:
        broker.include_router(handlers.subscriptions(settings))
    return broker, declare_publishers(broker, PUBLISHES)


def create_app(settings: NotificationsSettings | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    templates = Templates(settings.templates_dir, settings.clinic_timezone)
    broker, publishers = create_broker(settings)

    async def startup(runtime: Runtime, app: FastAPI) -> Sequence[Coroutine[Any, Any, None]]:
        store = NotificationStore(runtime.database, wake_relay=runtime.relay.wake if runtime.relay else lambda: None)
        await store.create_indexes()
        dispatcher = Dispatcher(
            store,
            IntakeContacts(settings),
            EmailSender(settings),
            templates,
            CareTeam(email=settings.care_team_email, webhook_url=settings.care_team_webhook_url),
            WebhookSender(settings.webhook_secret),
            QuietHours(settings.quiet_hours_start, settings.quiet_hours_end, settings.clinic_timezone),
            poll_seconds=settings.dispatch_poll_seconds,
            lease_seconds=settings.dispatch_lease_seconds,
            max_attempts=settings.dispatch_max_attempts,
        )
        app.state.store = store
        runtime.broker.context.set_global("notification_store", store)
        runtime.broker.context.set_global("dispatcher", dispatcher)
        return [dispatcher.run()]

    return create_service_app(
        title="Stepwise notifications",
        description=__doc__ or "",
        settings=settings,
        database_name=settings.notifications_db,
        broker=broker,
        topics=[*CONSUMES, *(model.event_type for model in PUBLISHES)],
        routers=[api.router],
        startup=startup,
        publishers=publishers,
        outbox_collection=NOTIFICATIONS,
    )
