"""caseload: the read side of the clinic's morning: every ``iop.*`` event turned into a projection per episode and
live worklists (today's groups, safety alerts, missed sessions, recommendations, measures due, failed messages …).
It owns no clinical rule and changes nothing in the other services; it stores no name (staff get names from
intake, for one answer, with their own token)."""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.common.consumer import HANDLER_CONTEXT
from services.common.kafka import ServiceBroker, service_broker
from services.common.service import Runtime, create_service_app

from . import api, handlers
from .console import pages, sign_in, web, web_admin, web_caseload, web_intake, web_patient, web_sign_in, web_worklists
from .console.clients import Services
from .console.sessions import ConsoleSessions
from .names import IntakeDirectory
from .queries import Caseload
from .rebuild import rebuild
from .settings import CONSUMER_GROUP, CaseloadSettings
from .store import CaseloadStore

log = logging.getLogger(__name__)
PUBLISHES = ()
ROUTERS = [api.router, web.router, web_sign_in.router, web_caseload.router, web_worklists.router, web_admin.router,
           web_patient.router, web_intake.router]  # fmt: skip
"""The API, then the console's pages (``console/web*.py``)."""


def create_broker(settings: CaseloadSettings) -> ServiceBroker:
    return service_broker(settings, "caseload", PUBLISHES, handlers.EVENT_HANDLERS, CONSUMER_GROUP)


def create_app(settings: CaseloadSettings | None = None) -> FastAPI:
    settings = settings or CaseloadSettings()
    kafka = create_broker(settings)
    zone = ZoneInfo(settings.clinic_timezone)

    async def startup(runtime: Runtime, app: FastAPI) -> Sequence[Coroutine[Any, Any, None]]:
        store = CaseloadStore(runtime.database, settings.caseload_missed_in_a_row, zone)
        await store.create_indexes()
        current = await store.start()
        app.state.caseload = Caseload(store, zone, settings.caseload_missed_in_a_row)
        app.state.directory = IntakeDirectory(settings.intake_url)
        app.state.stream_poll_seconds = settings.stream_poll_seconds
        app.state.console_sessions = sessions = ConsoleSessions(
            runtime.database, timedelta(minutes=settings.console_idle_minutes)
        )
        await sessions.create_indexes()
        sign_in.report(app.state.console_sign_in, runtime.dependencies)
        app.state.console_services = Services(settings.service_urls())
        runtime.broker.context.set_global(HANDLER_CONTEXT, store)
        if current or not settings.rebuild_on_start:
            return []
        return [_rebuild_on_upgrade(settings, runtime)]

    app = create_service_app(
        title="Stepwise caseload",
        description=__doc__ or "",
        settings=settings,
        kafka=kafka,
        routers=ROUTERS,
        startup=startup,
    )
    add_console(app, settings)
    return app


def add_console(app: FastAPI, settings: CaseloadSettings) -> None:
    """The staff console's static files and answers (its routes are ``console.web.router``)."""
    app.state.trusted_proxies = settings.edge.trusted_proxies
    app.state.console_base_url = settings.console_base_url
    app.state.console_sign_in = sign_in.setup(settings)  # None: the token form
    app.mount("/console/static", StaticFiles(directory=pages.HERE / "static"), name="console-static")
    app.add_exception_handler(web.NotSignedIn, web.not_signed_in)
    app.add_exception_handler(pages.CsrfRefused, pages.refused)
    app.add_exception_handler(pages.NotForRole, pages.not_for_role)


async def _rebuild_on_upgrade(settings: CaseloadSettings, runtime: Runtime) -> None:
    """The stored projection was built by another projection version: build it again from the topics (the old
    one is served meanwhile)."""
    log.info("the projection was built by another version: rebuilding it from the topics")
    done = await rebuild(settings, runtime.database)
    log.info("rebuilt %d episodes from %d events in %.1f s", done.episodes, done.events, done.seconds)
