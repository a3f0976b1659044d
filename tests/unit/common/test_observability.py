"""Logs and traces a clinic's IT reads: JSON lines with trace and pseudonymous ids, spans scrubbed to an allow-list,
and the trace context carried by events (``ce_traceparent``) from the outbox on."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.common import tracing
from services.common.logs import JsonLines, about
from services.common.outbox import stored_record
from stepwise_contract import CloudEvent, MalformedEvent, SessionMissed, from_kafka, new_event

SECRET = "Jane Doe jane@example.org"


def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    made = TracerProvider(sampler=tracing.NoIdleCalls())
    made.add_span_processor(SimpleSpanProcessor(tracing.Scrubbed(exporter)))
    return made


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("stepwise.test", logging.INFO, __file__, 1, message, (), None)


def test_a_json_line_carries_the_trace_and_the_ids_it_is_about() -> None:
    tracer = provider(InMemorySpanExporter()).get_tracer("test")
    with tracer.start_as_current_span("request", kind=SpanKind.SERVER) as span, about(episode_id="ep-1"):
        line = JsonLines().format(record("care level assigned"))
    parsed = json.loads(line)
    assert parsed["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert (parsed["episode_id"], parsed["message"], parsed["level"]) == ("ep-1", "care level assigned", "INFO")
    assert "episode_id" not in json.loads(JsonLines().format(record("later")))


def test_about_takes_ids_only() -> None:
    with pytest.raises(ValueError, match="_id names only"), about(token="x"):
        pass


def test_exported_spans_keep_route_templates_and_command_names_only() -> None:
    exporter = InMemorySpanExporter()
    tracer = provider(exporter).get_tracer("test")
    with tracer.start_as_current_span("GET /v1/episodes/{episode_id}", kind=SpanKind.SERVER) as span:
        span.set_attributes(
            {
                "http.route": "/v1/episodes/{episode_id}",
                "url.query": f"name={SECRET}",
                "url.full": f"http://x/v1/episodes/ep-1?q={SECRET}",
                "http.response.status_code": 200,
            }
        )
        with tracer.start_as_current_span("stepwise.find", kind=SpanKind.CLIENT) as call:
            call.set_attributes({"db.statement": f"find {SECRET}", "db.operation.name": "find"})
            call.record_exception(ValueError(SECRET))
    [call_span, server] = exporter.get_finished_spans()
    kept = {"http.route": "/v1/episodes/{episode_id}", "http.response.status_code": 200}
    assert dict(server.attributes or {}) == kept
    assert dict(call_span.attributes or {}) == {"db.operation.name": "find"}
    assert [dict(event.attributes or {}) for event in call_span.events] == [{"exception.type": "ValueError"}]
    assert SECRET not in repr([(s.name, s.attributes, s.events, s.status.description) for s in (call_span, server)])


def test_a_call_outside_any_trace_is_not_traced() -> None:
    """A background loop's polls (MongoDB commands, HTTP calls with no request or event around them)."""
    exporter = InMemorySpanExporter()
    tracer = provider(exporter).get_tracer("test")
    with tracer.start_as_current_span("find", kind=SpanKind.CLIENT):
        pass
    with tracer.start_as_current_span("deliver"), tracer.start_as_current_span("find", kind=SpanKind.CLIENT):
        pass
    assert [span.name for span in exporter.get_finished_spans()] == ["find", "deliver"]


def event() -> CloudEvent[SessionMissed]:
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    data = SessionMissed(episode_id="ep-1", session_id="s-1", starts_at=at, detected="reported", recorded_at=at,
                         consecutive_misses=1, total_misses=1)  # fmt: skip
    return new_event(data, source="/stepwise/care_plan")


def wire(stored: str) -> tuple[list[tuple[str, bytes]], bytes]:
    parsed = json.loads(stored)
    return [(name, value.encode()) for name, value in parsed["headers"]], parsed["value"].encode()


def test_the_outbox_keeps_the_writers_trace_and_a_reader_gets_it_back() -> None:
    tracer = provider(InMemorySpanExporter()).get_tracer("test")
    with tracer.start_as_current_span("POST /v1/episodes/{episode_id}/attendance", kind=SpanKind.SERVER):
        traceparent = tracing.current_traceparent()
        headers, value = wire(stored_record(event()))
    assert traceparent and ("ce_traceparent", traceparent.encode()) in headers
    assert from_kafka(headers, value, SessionMissed).traceparent == traceparent


def test_an_event_without_trace_context_reads_as_before_and_a_wrong_one_is_malformed() -> None:
    headers, value = wire(stored_record(event()))
    assert not any(name == "ce_traceparent" for name, _ in headers)
    assert from_kafka(headers, value, SessionMissed).traceparent is None
    with pytest.raises(MalformedEvent, match="traceparent"):
        from_kafka([*headers, ("ce_traceparent", b"not-a-trace")], value, SessionMissed)


def test_with_nothing_to_export_spans_are_not_recorded_but_their_ids_travel_on() -> None:
    tracer = tracing.provider_for("intake", exporter=None).get_tracer("test")
    with tracer.start_as_current_span("POST /v1/episodes", kind=SpanKind.SERVER) as request:
        traceparent = tracing.current_traceparent()
        line = json.loads(JsonLines().format(record("episode opened")))
    trace_id = format(request.get_span_context().trace_id, "032x")
    assert not request.is_recording()
    assert traceparent and traceparent.split("-")[1] == trace_id and line["trace_id"] == trace_id

    caller = tracing._propagator.extract({"traceparent": traceparent})
    with tracer.start_as_current_span("apply", context=caller, kind=SpanKind.CONSUMER) as applying:
        assert format(applying.get_span_context().trace_id, "032x") == trace_id


def test_a_service_that_exports_records_its_part_of_a_trace_begun_where_nothing_is_exported() -> None:
    unrecorded = tracing.provider_for("intake", exporter=None).get_tracer("test")
    with unrecorded.start_as_current_span("POST /v1/episodes", kind=SpanKind.SERVER):
        traceparent = tracing.current_traceparent()
    assert traceparent and int(traceparent.rsplit("-", 1)[1], 16) & 1 == 0  # "not sampled"
    exporter = InMemorySpanExporter()

    caller = tracing._propagator.extract({"traceparent": traceparent})
    with provider(exporter).get_tracer("test").start_as_current_span("apply", context=caller, kind=SpanKind.CONSUMER):
        pass

    [applied] = exporter.get_finished_spans()
    assert format(applied.context.trace_id, "032x") == traceparent.split("-")[1]


@pytest.mark.parametrize("exported", [False, True], ids=["trace ids alone", "OpenTelemetry's middleware"])
async def test_a_request_continues_its_callers_trace(exported: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    async def answer(request: Request) -> JSONResponse:
        return JSONResponse({"trace_id": tracing.current_trace_id()})

    monkeypatch.setattr(tracing, "exporting", lambda: exported)
    app = tracing.traced_http(Starlette(routes=[Route("/v1/episodes", answer)]), lambda scope: ("GET", {}))
    assert isinstance(app, tracing.TraceIds) is not exported
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://intake") as client:
        answered = await client.get("/v1/episodes", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-00"})
    assert answered.json() == {"trace_id": trace_id}


def test_with_nothing_to_export_a_span_is_its_ids_in_its_callers_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "exporting", lambda: False)
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with tracing.continued("iop.session.missed process", caller, SpanKind.CONSUMER) as span:
        inside = tracing.current_traceparent()
        line = json.loads(JsonLines().format(record("session missed")))
    assert not span.is_recording() and inside is not None
    version, trace_id, span_id, flags = inside.split("-")
    assert (version, trace_id, flags) == (
        "00",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00",
    ) and span_id != "00f067aa0ba902b7"
    assert line["trace_id"] == trace_id
    with tracing.continued("iop.session.missed process", "not-a-trace", SpanKind.CONSUMER):
        new = tracing.current_traceparent()
    assert new is not None and new.split("-")[1] not in (trace_id, "0" * 32)
    assert tracing.current_traceparent() is None
