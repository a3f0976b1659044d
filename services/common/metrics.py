"""Metrics: ``/metrics`` in Prometheus' text format, and the HTTP requests' metrics and access log.

Counters and histograms move as things happen (requests, events applied or set aside, sends); the gauges of
stored state (outbox backlog, consumer lag, set-aside events, dependencies, and a service's own: notifications,
open safety alerts) are read by the service's probes at each scrape. Labels are route templates, topics,
channels, statuses and dependency names: never a path, an id or anything of a patient. ``METRICS_TOKEN``, when
set, is asked of the scraper as a bearer token. What to watch: docs/operations.md.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

from fastapi import APIRouter, FastAPI, Request, Response
from faststream.kafka import KafkaBroker
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from pymongo.asynchronous.collection import AsyncCollection
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .dependencies import Dependencies
from .logs import about
from .mongo import Document
from .utc import wall_clock

log = logging.getLogger(__name__)
access_log = logging.getLogger("stepwise.access")
# No ``_created`` series beside each counter: Prometheus does not need them.
disable_created_metrics()  # type: ignore[no-untyped-call]

HTTP_REQUESTS = Counter(
    "stepwise_http_requests", "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)  # fmt: skip
HTTP_SECONDS = Histogram(
    "stepwise_http_request_duration_seconds", "Time to answer an HTTP request, by method and route template",
    ["method", "route"],
)  # fmt: skip
EVENTS_APPLIED = Counter(
    "stepwise_events_applied", "Events applied (or recognised as applied before), by topic", ["topic"]
)
EVENTS_SET_ASIDE = Counter(
    "stepwise_events_set_aside", "Events set aside (malformed or rejected by our rules), by topic and kind",
    ["topic", "kind"],
)  # fmt: skip
SET_ASIDE_WAITING = Gauge(
    "stepwise_set_aside_events", "Set-aside events not applied by a replay yet, by topic", ["topic"]
)
CONSUMER_LAG = Gauge(
    "stepwise_consumer_lag", "Records of a topic-partition this instance's consumer has not applied yet",
    ["group", "topic", "partition"],
)  # fmt: skip
OUTBOX_PENDING = Gauge("stepwise_outbox_pending", "Events written but not published yet, by outbox", ["outbox"])
OUTBOX_OLDEST = Gauge(
    "stepwise_outbox_oldest_seconds", "Age of the oldest event waiting in an outbox (0: none waits)", ["outbox"]
)
DEPENDENCY_STATE = Gauge(
    "stepwise_dependency_state", "1 for the state each dependency is in (up, down, misconfigured), else 0",
    ["dependency", "state"],
)  # fmt: skip
NOTIFICATIONS = Gauge("stepwise_notifications", "Notifications by status and channel", ["status", "channel"])
SEND_SECONDS = Histogram(
    "stepwise_notification_send_seconds", "Time a channel took to take (or refuse) a message, by channel and outcome",
    ["channel", "outcome"],
)  # fmt: skip
SAFETY_ALERTS_OPEN = Gauge("stepwise_safety_alerts_open", "Safety alerts raised and not acknowledged yet")

Probe = Callable[[], Awaitable[None]]
"""Reads stored state into gauges, at each scrape."""
PROBE_SECONDS = 5.0
OUTBOX_SCANNED = 1000
"""How many aggregates with pending events the oldest age is looked for among (a stuck outbox has few)."""
STATES = ("up", "down", "misconfigured")


class ServiceMetrics:
    """What ``/metrics`` reads before it answers: the probes the service and its parts added."""

    def __init__(self, token: str = "") -> None:
        self.token = token
        self.probes: list[Probe] = []

    def add(self, probe: Probe) -> None:
        self.probes.append(probe)

    async def read(self) -> None:
        outcomes = await asyncio.gather(
            *(asyncio.wait_for(probe(), PROBE_SECONDS) for probe in self.probes), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                log.debug("a metrics probe failed (%s)", type(outcome).__name__)


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    include_in_schema=False,
    summary="Metrics in Prometheus' text format (a bearer token when METRICS_TOKEN is set)",
)
async def metrics(request: Request) -> Response:
    """Metrics in Prometheus' text format (a bearer token when METRICS_TOKEN is set); not in the OpenAPI document:
    docs/operations.md says what they are."""
    service: ServiceMetrics | None = getattr(request.app.state, "metrics", None)
    if service is not None and service.token:
        presented = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(presented.encode(), service.token.encode()):
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
    if service is not None:
        await service.read()
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def route_template(app: ASGIApp | None, scope: Scope) -> str:
    """The template of the route that answers ``scope`` (``/v1/episodes/{episode_id}``), ``unmatched`` for none."""
    found = _matching(app, scope)
    return found[0] if found else "unmatched"


def path_ids(app: ASGIApp | None, scope: Scope) -> dict[str, str]:
    """The route's ``*_id`` path parameters (pseudonymous ids; never a token)."""
    found = _matching(app, scope)
    return {name: value for name, value in found[1].items() if name.endswith("_id")} if found else {}


def _matching(app: ASGIApp | None, scope: Scope) -> tuple[str, dict[str, str]] | None:
    path = scope.get("path", "")
    for pattern, template in _templates(app):
        matched = pattern.match(path)
        if matched:
            return template, matched.groupdict()
    return None


def _templates(app: ASGIApp | None) -> list[tuple[re.Pattern[str], str]]:
    """Every route's template as a pattern, made once per app. FastAPI 0.16x includes a router as one route whose
    ``effective_candidates`` are the routes with their full paths."""
    state = getattr(app, "state", None)
    known: list[tuple[re.Pattern[str], str]] | None = getattr(state, "route_templates", None)
    if known is not None:
        return known
    templates: list[str] = []
    for route in getattr(app, "routes", ()):
        candidates = getattr(route, "effective_candidates", None)
        for each in candidates() if callable(candidates) else [route]:
            template = getattr(each, "path_format", None) or getattr(each, "path", None)
            if isinstance(template, str) and template not in templates:
                templates.append(template)
    known = [(compile_path(template)[0], template) for template in templates]
    if state is not None:
        state.route_templates = known
    return known


class HttpMetrics:
    """Counts and times each HTTP request by its route template and status, and logs it (the access log: method,
    route template, status, milliseconds, and the ids in its path; never the path, its query, or a header)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._record(scope, status[0], time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        app = scope.get("app")
        route, method = route_template(app, scope), scope["method"]
        HTTP_REQUESTS.labels(method, route, str(status)).inc()
        HTTP_SECONDS.labels(method, route).observe(seconds)
        if route in ("/health/live", "/health/ready", "/metrics") and status < 400:
            return  # probes and scrapes: counted, not logged
        with about(**path_ids(app, scope)):
            access_log.info("%s %s %d %.0fms", method, route, status, seconds * 1000)


def consumer_lag(broker: KafkaBroker) -> Probe:
    """Per topic-partition of this instance's consumers: the partition's end minus the consumer's position (what is
    fetched, not applied yet, counts until its batch commits)."""

    async def probe() -> None:
        CONSUMER_LAG.clear()
        for subscriber in broker.subscribers:
            consumer = getattr(subscriber, "consumer", None)
            if consumer is None:
                continue
            group = str(getattr(consumer, "_group_id", "") or "")
            for partition in consumer.assignment():
                end = consumer.highwater(partition)
                if end is None:
                    continue
                position = await consumer.position(partition)
                CONSUMER_LAG.labels(group, partition.topic, str(partition.partition)).set(max(end - position, 0))

    return probe


def outbox_backlog(collections: Sequence[AsyncCollection[Document]]) -> Probe:
    async def probe() -> None:
        for collection in collections:
            pending, oldest = 0, None
            cursor = collection.find({"outbox_pending": {"$gt": 0}}, {"outbox": 1, "outbox_pending": 1})
            async for document in cursor.limit(OUTBOX_SCANNED):
                pending += int(document.get("outbox_pending", 0))
                written = _first_written(document.get("outbox") or [])
                if written is not None and (oldest is None or written < oldest):
                    oldest = written
            OUTBOX_PENDING.labels(collection.name).set(pending)
            age = (wall_clock() - oldest).total_seconds() if oldest else 0.0
            OUTBOX_OLDEST.labels(collection.name).set(max(age, 0.0))

    return probe


def _first_written(outbox: Iterable[str]) -> datetime | None:
    """When the first record of an outbox was written: its event's ``ce_time``."""
    for stored in outbox:
        headers = dict(json.loads(stored)["headers"])
        return datetime.fromisoformat(headers["ce_time"].replace("Z", "+00:00"))
    return None


def set_aside_waiting(collection: AsyncCollection[Document]) -> Probe:
    async def probe() -> None:
        counts = collection.aggregate(
            [{"$match": {"replays.outcome": {"$ne": "applied"}}}, {"$group": {"_id": "$topic", "n": {"$sum": 1}}}]
        )
        SET_ASIDE_WAITING.clear()
        async for count in await counts:
            SET_ASIDE_WAITING.labels(str(count["_id"])).set(count["n"])

    return probe


Checks = Callable[[], dict[str, Callable[[], Awaitable[bool]]]]


def dependency_states(dependencies: Dependencies, checks: Checks) -> Probe:
    """Each dependency the service has used or checks (the store, the broker) by its state."""

    async def probe() -> None:
        named = checks()
        answers = await asyncio.gather(*(_answers(check) for check in named.values()))
        states = {name: "up" if ok else "down" for name, ok in zip(named, answers, strict=True)}
        states |= dict.fromkeys(dependencies.seen(), "up")
        states |= {name: problem.kind for name, problem in dependencies.problems().items()}
        for name, state in states.items():
            for candidate in STATES:
                DEPENDENCY_STATE.labels(name, candidate).set(1 if candidate == state else 0)

    return probe


async def _answers(check: Callable[[], Awaitable[bool]]) -> bool:
    try:
        return await asyncio.wait_for(check(), 3.0)
    except Exception:
        return False


def install(app: FastAPI, token: str = "") -> ServiceMetrics:
    """``/metrics`` and the request metrics on ``app``; returns what the service adds its probes to."""
    app.state.metrics = service = ServiceMetrics(token)
    app.add_middleware(HttpMetrics)
    app.include_router(router)
    return service
