"""Traces: OpenTelemetry spans for HTTP (server and httpx client), MongoDB commands, events and sends.

Every process has a tracer provider, so every log line and every event carries a trace id; spans are exported
over OTLP/HTTP only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the other ``OTEL_*`` variables apply). What is
exported passes ``Scrubbed`` first: an allow-list of attributes (methods, route templates, status codes, command
and collection names, topics), never a URL, a query string, a database statement or document, a body, or an
exception's message (which may quote any of them).

The trace context travels in events as the CloudEvents distributed-tracing extension (``ce_traceparent``): the
outbox record takes the writer's context when the change is written (``outbox.stored_record``), the relay
publishes under it, and a consumer continues it (``consumer.EventBatch``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
"""W3C Trace Context's ``traceparent`` (version 00 and later versions' first fields)."""

ALLOWED_ATTRIBUTES = frozenset(
    {
        # HTTP, server and client: the method, the route template (never the path), the status.
        "http.request.method", "http.method", "http.route", "http.response.status_code", "http.status_code",
        "http.scheme", "url.scheme", "server.address", "server.port", "network.protocol.version",
        "net.peer.name", "net.peer.port", "net.host.port",
        # MongoDB: the command's name and collection, never its statement or documents.
        "db.system", "db.system.name", "db.name", "db.namespace", "db.operation", "db.operation.name",
        "db.collection.name", "db.mongodb.collection",
        # Kafka, as our own spans set them.
        "messaging.system", "messaging.destination.name", "messaging.operation.type", "messaging.consumer.group.name",
        "messaging.destination.partition.id",
        # Our own: a channel, a purpose, an outcome.
        "stepwise.channel", "stepwise.purpose", "stepwise.outcome",
        "exception.type", "error.type",
    }
)  # fmt: skip
EXCLUDED_URLS = "/health/live$,/health/ready$,/metrics$"
"""Probes and scrapes make no spans."""

_propagator = TraceContextTextMapPropagator()
_ids = RandomIdGenerator()
NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_configured: list[TracerProvider] = []


def set_up(service: str, otlp_endpoint: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """This process's tracer provider (once), exporting through ``Scrubbed`` to OTLP when ``otlp_endpoint`` is set
    (or to ``exporter``); httpx and PyMongo instrumented then."""
    if _configured:
        return _configured[0]
    if exporter is None and otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_ENDPOINT and the other OTEL_* variables
    provider = provider_for(service, exporter)
    trace.set_tracer_provider(provider)
    if exporter is not None:
        _instrument_clients()
    _configured.append(provider)
    return provider


def provider_for(service: str, exporter: SpanExporter | None) -> TracerProvider:
    """Spans recorded and exported when there is an ``exporter``; else ids only (``UNRECORDED``)."""
    resource = Resource.create({"service.name": f"stepwise-{service.replace('_', '-')}"})
    provider = TracerProvider(resource=resource, sampler=UNRECORDED if exporter is None else NoIdleCalls())
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(Scrubbed(exporter)))
    return provider


UNRECORDED = ALWAYS_OFF
"""With nothing to export to, a span is not recorded (no attributes, no events, no processor: about a tenth of
intake's CPU per request, measured with py-spy under ``make bench``) but still has its ids: the trace id in every log
line and the ``traceparent`` an event carries on. The MongoDB and httpx calls are then not instrumented at all."""


class NoIdleCalls(Sampler):
    """A call out (a MongoDB command, an HTTP request) is traced inside a request's, an event's or a send's trace;
    alone it is a background loop polling (the relay, the dispatcher, the timers, twice a second): not traced."""

    _inner = ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)
    """A caller's "not sampled" is a service with nothing to export (``UNRECORDED``): this one records its part."""

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind == SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self._inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "NoIdleCalls"


def _instrument_clients() -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    HTTPXClientInstrumentor().instrument()
    PymongoInstrumentor().instrument(capture_statement=False)


def flush() -> None:
    """Export what is buffered (at stop)."""
    for provider in _configured:
        provider.force_flush(timeout_millis=5000)


tracer = trace.get_tracer("stepwise")


def current_traceparent() -> str | None:
    """The ``traceparent`` of the span now current; None outside of one."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    value = carrier.get("traceparent")
    return value if value and TRACEPARENT.match(value) else None


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@contextlib.contextmanager
def continued(
    name: str, traceparent: str | None, kind: SpanKind, attributes: Mapping[str, str | int] | None = None
) -> Iterator[trace.Span]:
    """A span continuing ``traceparent`` (a new trace when None or not one), current inside the block."""
    caller = traceparent if traceparent and TRACEPARENT.match(traceparent) else None
    if not exporting():
        with ids_only(int(caller[3:35], 16) if caller else None) as span:
            yield span
        return
    parent = _propagator.extract({"traceparent": caller}) if caller else otel_context.Context()
    with tracer.start_as_current_span(name, context=parent, kind=kind, attributes=dict(attributes or {})) as span:
        yield span


@contextlib.contextmanager
def ids_only(trace_id: int | None) -> Iterator[trace.Span]:
    """What an unrecorded span is (``UNRECORDED``), made directly: its ids, in trace ``trace_id`` (a new one when
    None), current inside the block. The SDK's way to the same took 18-29 µs a span (3 µs this way), some 30 spans
    an episode across the services (docs/performance.md, "Issue 31, sixth round")."""
    ids = SpanContext(trace_id or _ids.generate_trace_id(), _ids.generate_span_id(), False, NOT_SAMPLED)
    span = NonRecordingSpan(ids)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    finally:
        otel_context.detach(token)


def allowed(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: value for key, value in (attributes or {}).items() if key in ALLOWED_ATTRIBUTES}


def scrubbed(span: ReadableSpan) -> ReadableSpan:
    """``span`` with only the allowed attributes, exceptions by their class alone, and no status message."""
    events = [Event(event.name, allowed(event.attributes), event.timestamp) for event in span.events]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=allowed(span.attributes),
        events=events,
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class Scrubbed(SpanExporter):
    """An exporter that hands on only what ``scrubbed`` keeps of each span."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([scrubbed(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def exporting() -> bool:
    """Whether this process's spans are recorded and exported (``set_up`` with an endpoint or an exporter)."""
    return bool(_configured) and _configured[0].sampler is not UNRECORDED


def traced_http(app: Any, span_details: Any) -> Any:
    """``app`` inside a server span per request (probes and scrapes excepted), named by ``span_details(scope)``:
    the method and route template. (FastAPI's instrumentor refuses a stack that starts with our own middleware.)
    With nothing to export, the trace ids alone (``TraceIds``)."""
    if not exporting():
        return TraceIds(app)
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        app, excluded_urls=EXCLUDED_URLS, default_span_details=span_details, exclude_spans=["receive", "send"]
    )


class TraceIds:
    """A request's trace ids and nothing more, where nothing is exported (``UNRECORDED``): its caller's trace is
    continued from ``traceparent``, for the log lines and the events of the request. (OpenTelemetry's middleware
    gathers a span's attributes, the URL redacted, the peer, the host, before the sampler drops it: 6% of intake's
    CPU under ``make bench``, measured with py-spy; docs/performance.md, "Issue 31, sixth round".)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with continued("HTTP", Headers(scope=scope).get("traceparent"), SpanKind.SERVER):
            await self.app(scope, receive, send)
