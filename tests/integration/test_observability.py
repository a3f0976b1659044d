"""What a clinic's IT watches, on the real broker and store: metrics that move, JSON log lines with trace ids, and
one assessment's trace from the POST through Kafka to the email (the stack exports its spans to the suite's
OtlpSink; the end of the run scans every line and span for its PII: conftest's ``_nothing_leaked``)."""

from __future__ import annotations

import json
import re
from typing import Any

from tools.dev.otlp_sink import ExportedSpan

from .conftest import WELCOME, Stack, assess, eventually, mail_to, new_episode

ASSESSMENTS = "/v1/episodes/{episode_id}/assessments"
SAMPLE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$")


async def scrape(stack: Stack, service: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with stack.http(service, None) as client:
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    samples = {}
    for line in answer.text.splitlines():
        if (found := SAMPLE.match(line)) is not None:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', found[2] or ""))
            samples[found[1], labels] = float(found[3])
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def access_line(stack: Stack, service: str, route: str, episode_id: str) -> dict[str, Any] | None:
    """The JSON access-log line of a request to ``route`` about ``episode_id``."""
    for line in stack.services[service].log_path.read_text(errors="replace").splitlines():
        parsed = json.loads(line)
        about = parsed.get("episode_id") == episode_id
        if parsed["logger"] == "stepwise.access" and route in parsed["message"] and about:
            return parsed  # type: ignore[no-any-return]
    return None


def chain(spans: list[ExportedSpan], leaf: ExportedSpan) -> list[ExportedSpan]:
    """``leaf`` and its ancestors, root last."""
    by_id, found = {span.span_id: span for span in spans}, [leaf]
    while found[-1].parent_id in by_id:
        found.append(by_id[found[-1].parent_id])
    return found


async def test_one_assessment_is_one_trace_from_the_post_to_the_email_and_its_metrics_move(stack: Stack) -> None:
    assert stack.traces is not None
    before = {name: await scrape(stack, name) for name in stack.services}
    episode = await new_episode(stack)
    await assess(stack, episode)
    await mail_to(stack, episode.email, subject=WELCOME)

    async def logged() -> dict[str, Any] | None:
        return access_line(stack, "intake", f"POST {ASSESSMENTS} 201", episode.episode_id)

    line = await eventually(logged, "intake's access line of the POST")
    trace_id = line["trace_id"]

    async def to_the_email() -> list[ExportedSpan] | None:
        spans = stack.traces.of_trace(trace_id) if stack.traces else []
        sends = [span for span in spans if span.name == "smtp send"]
        path = chain(spans, sends[0]) if sends else []
        # Each service exports its spans on its own schedule: wait until the chain reaches its root (no parent).
        return path if path and path[-1].parent_id == "" else None

    path = await eventually(to_the_email, "the trace from the POST to the email")
    named = [(span.service, span.name) for span in reversed(path)]
    assert named[0] == ("stepwise-intake", f"POST {ASSESSMENTS}")
    assert ("stepwise-care-plan", "iop.assessment.completed process") in named
    assert ("stepwise-notifications", "iop.care_level.assigned process") in named
    assert named[-2:] == [("stepwise-notifications", "notification deliver"), ("stepwise-notifications", "smtp send")]

    async def side_spans() -> bool | None:
        """Intake's answer to notifications' audience request (a consumer batch's questions, in the trace of the
        first) and that call, exported on each one's own schedule."""
        everything = stack.traces.of_trace(trace_id) if stack.traces else []
        answer = any(s.service == "stepwise-intake" and s.name == "POST /v1/audiences" for s in everything)
        call = any(s.service == "stepwise-notifications" and s.kind == 3 for s in everything)
        return (answer and call) or None

    assert await eventually(side_spans, "intake's answer and notifications' HTTP call in the trace")

    after = {name: await scrape(stack, name) for name in stack.services}
    request = {"method": "POST", "route": ASSESSMENTS, "status": "201"}
    assert value(after["intake"], "stepwise_http_requests_total", **request) == value(
        before["intake"], "stepwise_http_requests_total", **request) + 1  # fmt: skip
    applied = "stepwise_events_applied_total"
    topic = {"topic": "iop.assessment.completed"}
    assert value(after["care_plan"], applied, **topic) > value(before["care_plan"], applied, **topic)
    sent = {"channel": "email", "outcome": "sent"}
    count = "stepwise_notification_send_seconds_count"
    assert value(after["notifications"], count, **sent) > value(before["notifications"], count, **sent)
    assert ("stepwise_notifications", frozenset({("status", "pending"), ("channel", "email")})) in after[
        "notifications"
    ]

    # Each scrape asks every dependency (a ping within seconds): on a loaded machine one may be late for a scrape.
    async def all_up() -> bool | None:
        for name in stack.services:
            samples = await scrape(stack, name)
            for dependency in ("mongodb", "kafka"):
                if value(samples, "stepwise_dependency_state", dependency=dependency, state="up") != 1:
                    return None
        return True

    await eventually(all_up, "every service's store and broker up on /metrics")
    assert any(key[0] == "stepwise_consumer_lag" for key in after["care_plan"])
    assert any(key[0] == "stepwise_outbox_oldest_seconds" for key in after["intake"])
    assert any(key[0] == "faststream_published_messages_total" for key in after["intake"])
