"""One way to build a Stepwise service: FastAPI for HTTP, FastStream for Kafka, one MongoDB database.

The lifespan connects the store, creates indexes and topics, starts the broker's subscribers,
the outbox relay and any service-specific background work, and stops them all in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, PyMongoError
from starlette.types import ASGIApp, Scope

from stepwise_contract.envelope import set_schema_base

from . import collector, data_schemas, health, logs, tracing
from . import metrics as service_metrics
from .api_docs import docs_router
from .auth import Authenticator, Principal, Role, require_roles
from .consumer import EventShelf
from .dependencies import Dependencies, DependencyDown
from .domain_errors import install_error_tables
from .edge import AuthFailures, BodyLimit, EdgeConfig, SecurityHeaders, TokenGate
from .errors import document_answers, install_error_answers
from .http_server import Server
from .indexes import Index, create_indexes
from .kafka import KAFKA, ServiceBroker, relay_publish, start_once_accepted
from .kafka import start as start_kafka
from .logs import colour_only_on_a_terminal, install_filters
from .metrics import ServiceMetrics, route_template
from .mongo import Document, connect, ping
from .oidc import OidcVerifier
from .outbox import ConcurrentChange, OutboxRelay, ensure_outbox_index
from .replay import SetAsideEventOut, record_replay, replay, replay_entry
from .schemas import V1_ERRORS, errors, refuse_undeclared_body, refuse_undeclared_query
from .settings import ServiceSettings
from .store_errors import install_store_errors
from .utc import set_clock_offset

log = logging.getLogger(__name__)

SET_ASIDE_COLLECTION = "set_aside_events"
SHELF_INDEXES = (
    Index(SET_ASIDE_COLLECTION, (("set_aside_at", 1),), "the set-aside events newest first, a page at a time"),
    Index(SET_ASIDE_COLLECTION, (("topic", 1), ("set_aside_at", 1)), "one topic's set-aside events, by time"),
    Index(SET_ASIDE_COLLECTION, (("replays.outcome", 1),),
          "the events not applied by a replay yet (/metrics counts them per topic; multikey)"),
)  # fmt: skip
"""The set-aside events (none while all is well) are read by an admin (GET /v1/set-aside-events) and /metrics."""


@dataclass
class Runtime:
    """What a running service holds, handed to its start-up hook."""

    settings: ServiceSettings
    database: AsyncDatabase[Document]
    broker: KafkaBroker
    relay: OutboxRelay | None
    dependencies: Dependencies
    """Where adapters say that what they reach is down or refuses our credentials (shown by readiness)."""
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    """What /metrics reads at each scrape: a service adds the probes of its own state (``metrics.py``)."""


Startup = Callable[[Runtime, FastAPI], Awaitable[Sequence[Coroutine[Any, Any, None]]]]
"""A service's start-up hook: build stores and indexes, return background loops to run."""


def create_service_app(
    *,
    title: str,
    description: str,
    settings: ServiceSettings,
    kafka: ServiceBroker,
    routers: Sequence[APIRouter],
    startup: Startup,
    outbox_collections: Sequence[str] = (),
    components: Mapping[str, Mapping[str, Any]] | None = None,
) -> FastAPI:
    broker = kafka.broker
    configure_logging(settings.log_level, settings.log_format)
    tracing.set_up(kafka.service or title, settings.otel_exporter_otlp_endpoint)
    _shift_clock(settings)
    set_schema_base(settings.schema_base_url)  # every ce_dataschema this process writes, and /schemas/
    lifespan = _lifespan(title, settings, kafka, startup, outbox_collections)

    # only a service that consumes events can have set some aside
    app = http_app(
        title,
        description,
        routers,
        consumes=bool(broker.subscribers),
        lifespan=lifespan,
        edge=settings.edge,
        components=components,
        metrics_token=settings.metrics_token.get_secret_value(),
    )
    app.state.log_format = settings.log_format
    return app


def _shift_clock(settings: ServiceSettings) -> None:
    if settings.clock_offset_seconds:
        set_clock_offset(settings.clock_offset_seconds)
        log.warning(
            "clock shifted by %s s (CLOCK_OFFSET_SECONDS): tests and drills only", settings.clock_offset_seconds
        )


Lifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


def _lifespan(
    title: str, settings: ServiceSettings, kafka: ServiceBroker, startup: Startup, outbox_collections: Sequence[str]
) -> Lifespan:
    """What the service does at start (connect, index, start the relay, the broker and the service's own
    background work) and, in reverse, at stop."""
    broker = kafka.broker

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        oidc = settings.oidc
        app.state.authenticator = authenticator = Authenticator(
            settings.token_roles, settings.static_roles_allowed, OidcVerifier(oidc) if oidc else None
        )
        app.state.kafka = kafka
        app.state.dependencies = dependencies = Dependencies()
        client = connect(settings.mongodb_url.get_secret_value(), tls_ca_file=settings.mongodb_tls_ca_file,
                         service=settings.database_name, shapes_file=settings.store_query_shapes_file)  # fmt: skip
        database = client[settings.database_name]
        shelf = await _shelf(database)
        broker.context.set_global("event_shelf", shelf)
        app.state.event_shelf = shelf
        relay = await _outbox_relay(settings, database, kafka, outbox_collections)
        runtime = Runtime(settings, database, broker, relay, dependencies, app.state.metrics)
        background = list(await startup(runtime, app))
        tasks = await _start(settings, kafka, relay, dependencies, background)
        _watch(app, database, broker, outbox_collections)
        log.info("%s started", title)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await broker.stop()
            await client.close()
            await authenticator.close()
            log.info("%s stopped", title)
            tracing.flush()

    return lifespan


async def _shelf(database: AsyncDatabase[Document]) -> EventShelf:
    """Where the service sets events aside, its indexes made."""
    await create_indexes(database, SHELF_INDEXES)
    return EventShelf(database[SET_ASIDE_COLLECTION])


def _watch(
    app: FastAPI, database: AsyncDatabase[Document], broker: KafkaBroker, outbox_collections: Sequence[str]
) -> None:
    """What readiness checks (the store, the broker) and what every service's /metrics reads: its outboxes, its
    consumers' lag, its set-aside events, its dependencies."""
    app.state.readiness_checks = {
        "mongodb": lambda: _mongo_ready(database),
        KAFKA: lambda: broker.ping(timeout=2.0),
    }
    metrics: ServiceMetrics = app.state.metrics
    metrics.add(service_metrics.outbox_backlog([database[name] for name in outbox_collections]))
    metrics.add(service_metrics.consumer_lag(broker))
    metrics.add(service_metrics.set_aside_waiting(database[SET_ASIDE_COLLECTION]))
    metrics.add(service_metrics.dependency_states(app.state.dependencies, lambda: app.state.readiness_checks))


async def _outbox_relay(
    settings: ServiceSettings, database: AsyncDatabase[Document], kafka: ServiceBroker, collections: Sequence[str]
) -> OutboxRelay | None:
    """The relay of the service's outboxes (their index made), None for a service without one."""
    if not collections:
        return None
    for name in collections:
        await ensure_outbox_index(database[name])
    return OutboxRelay(
        [database[name] for name in collections],
        relay_publish(kafka.publishers),
        poll_seconds=settings.outbox_poll_seconds,
        idle_seconds=settings.outbox_idle_poll_seconds,
        lease_seconds=settings.outbox_lease_seconds,
        removal_linger=settings.outbox_removal_linger_seconds,
    )


async def _start(
    settings: ServiceSettings,
    kafka: ServiceBroker,
    relay: OutboxRelay | None,
    dependencies: Dependencies,
    background: list[Coroutine[Any, Any, None]],
) -> list[asyncio.Task[None]]:
    """Start the broker, then the background work (with the relay, if it runs here); all of it waits while
    the brokers refuse our login or TLS."""
    if relay and settings.outbox_relay_enabled:
        background.append(relay.run())
    topics = [*kafka.publishers, *(model.event_type for model in kafka.handlers)]
    if not await start_kafka(settings, kafka.broker, topics, dependencies):
        # The brokers refused our login or TLS: readiness says so; what needs them waits until they accept it.
        background = [start_once_accepted(settings, kafka.broker, topics, dependencies, background)]
    return [asyncio.create_task(loop) for loop in background]


class ServiceApp(FastAPI):
    """A service's FastAPI app: its OpenAPI document says what the edge answers (services/common/errors.py), with
    the components its policy fixes at start (``schema_components``), and every answer carries the edge's
    headers, a server error's too (outside Starlette's error middleware)."""

    schema_components: Mapping[str, Mapping[str, Any]] = {}

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(tracing.traced_http(super().build_middleware_stack(), _span_details))

    def openapi(self) -> dict[str, Any]:
        if not self.openapi_schema:
            self.openapi_schema = document_answers(super().openapi(), self.schema_components)
        return self.openapi_schema


def http_app(
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    *,
    consumes: bool,
    lifespan: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]] | None = None,
    edge: EdgeConfig | None = None,
    components: Mapping[str, Mapping[str, Any]] | None = None,
    metrics_token: str = "",
) -> FastAPI:
    """A service's HTTP side: the edge (body limit, token first, refused-token limit, headers), its routers (a body
    where none is taken, or a query parameter none declares, is refused), the probes, the set-aside listing (if it
    consumes events), errors, and the API docs unless switched off. ``components``: schemas of the OpenAPI
    document that the service's policy fixes at start (``services.common.schemas.component``)."""
    edge = edge or EdgeConfig()
    app = _service_app(title, description, lifespan, edge.api_docs, components)
    app.state.auth_failures = AuthFailures(edge.auth_failures_per_minute)
    app.add_middleware(TokenGate, trusted_proxies=edge.trusted_proxies)
    app.add_middleware(BodyLimit, limit=edge.max_body_bytes)  # the outer one: a 413 needs no token
    service_metrics.install(app, metrics_token)  # outside both: their refusals are counted and logged too
    app.add_exception_handler(ConcurrentChange, _conflict)
    install_error_answers(app)
    install_error_tables(app, routers)  # each router's domain errors (services/common/domain_errors.py)
    app.add_exception_handler(ConnectionFailure, _store_unavailable)
    install_store_errors(app)
    app.include_router(health.router)
    app.include_router(data_schemas.router)
    for router in routers:
        app.include_router(router)
    if consumes:
        app.include_router(set_aside_router)
    docs = docs_router(title) if edge.api_docs else None
    if docs is not None:
        app.include_router(docs)
    return app


def _service_app(
    title: str,
    description: str,
    lifespan: Lifespan | None,
    api_docs: bool,
    components: Mapping[str, Mapping[str, Any]] | None,
) -> ServiceApp:
    app = ServiceApp(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        dependencies=[Depends(refuse_undeclared_body), Depends(refuse_undeclared_query)],
        docs_url=None,  # our own, without a CDN (services/common/api_docs.py)
        redoc_url=None,
        openapi_url="/openapi.json" if api_docs else None,
        # Spans are ours (tracing.traced_http: scrubbed, or the ids alone), metrics too (HttpMetrics): FastAPI's own
        # OpenTelemetry would make a second span per request (2.5% of intake's CPU under make bench, py-spy).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.schema_components = dict(components or {})
    return app


async def _store_unavailable(_: Request, error: Exception) -> JSONResponse:
    """The store is down (or answering too slowly): nothing was changed, and the client may try again (with
    the same Idempotency-Key, for a POST that creates)."""
    log.warning("request refused, the store is unavailable: %s", type(error).__name__)
    detail = "the store is unavailable; nothing was changed, try again"
    return JSONResponse(
        {"detail": detail}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"}
    )


async def _conflict(_: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=409)


async def _mongo_ready(database: AsyncDatabase[Document]) -> bool:
    await ping(database)
    return True


set_aside_router = APIRouter(prefix="/v1", tags=["operations"], responses=V1_ERRORS)
Admin = Annotated[Principal, Depends(require_roles(Role.ADMIN))]


@set_aside_router.get(
    "/set-aside-events",
    summary="Events this service could not apply, with the reason and any replays (for IT review and replay)",
)
async def list_set_aside_events(
    request: Request,
    _: Admin,
    topic: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[SetAsideEventOut]:
    shelf: EventShelf = request.app.state.event_shelf
    query = {"topic": topic} if topic else {}
    cursor = shelf.collection.find(query, {"value": 0}).sort("set_aside_at", -1).limit(limit)
    return [SetAsideEventOut.of(document) async for document in cursor]


@set_aside_router.post(
    "/set-aside-events/{event_id}/replay",
    summary="Apply one set-aside event again through the service's handler, once (audited)",
    description="After its cause is fixed. The outcome is recorded on the event: `applied`, `set_aside_again` "
    "(still malformed or rejected, with the reason) or `already_applied`. 503 while a dependency is down.",
    responses=errors(404),
)
async def replay_set_aside_event(event_id: str, request: Request, by: Admin) -> SetAsideEventOut:
    shelf: EventShelf = request.app.state.event_shelf
    shelved = await shelf.collection.find_one({"_id": event_id})
    if shelved is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such set-aside event")
    return await _replay(request, shelved, by)


@set_aside_router.post(
    "/set-aside-events/replay",
    summary="Apply again every set-aside event of a topic, or whose reason starts with a text, each once (audited)",
)
async def replay_set_aside_events(
    request: Request,
    by: Admin,
    topic: str | None = None,
    reason: Annotated[
        str | None, Query(description="The start of the reason, e.g. `rejected: unknown_session`.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[SetAsideEventOut]:
    shelf: EventShelf = request.app.state.event_shelf
    query: Document = {"replays.outcome": {"$ne": "applied"}} | ({"topic": topic} if topic else {})
    if reason:
        query["reason"] = {"$regex": f"^{re.escape(reason)}"}
    found = await shelf.collection.find(query).sort("set_aside_at", 1).limit(limit).to_list()
    return [await _replay(request, shelved, by) for shelved in found]


async def _replay(request: Request, shelved: Document, by: Principal) -> SetAsideEventOut:
    kafka: ServiceBroker = request.app.state.kafka
    shelf: EventShelf = request.app.state.event_shelf
    try:
        replayed = await replay(shelved, kafka.handlers, kafka.broker.context)
    except (DependencyDown, PyMongoError) as down:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"not replayed, try again later: {down}") from None
    entry = replay_entry(replayed, by)
    if replayed.outcome != "already_applied":
        shelved = await record_replay(shelf.collection, shelved, entry)
    return SetAsideEventOut.of(shelved)


def _span_details(scope: Scope) -> tuple[str, dict[str, str]]:
    """A server span's name and route: the method and the route template, never the path."""
    route = route_template(scope.get("app"), scope)
    return f"{scope.get('method', 'HTTP')} {route}", {"http.route": route}


def configure_logging(level: str, log_format: str = "text") -> None:
    logs.configure(level, log_format)
    install_filters()
    colour_only_on_a_terminal()


def serve(app: FastAPI, port: int, host: str) -> None:
    # No proxy headers: the edge takes X-Forwarded-For from TRUSTED_PROXIES alone (services/common/edge.py).
    # No uvicorn access log: ours (services/common/metrics.py) names the route template, never the path or query.
    # With JSON logs uvicorn keeps its hands off logging: its lines go through the root's JSON handler.
    # Once started, the cycle collector leaves start-up's objects alone (collector.py).
    json_logs = getattr(app.state, "log_format", "text") == "json"
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False, proxy_headers=False,
                            log_config=None if json_logs else uvicorn.config.LOGGING_CONFIG)  # fmt: skip
    Server(config, settled=collector.settle).run()
