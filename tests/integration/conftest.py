"""The running system for integration tests: four service processes, a real SMTP server, helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from pymongo import AsyncMongoClient, MongoClient

from services.authorizations import handlers as authorizations_handlers
from services.care_plan import handlers as care_plan_handlers
from services.caseload import handlers as caseload_handlers
from services.common.consumer import EventHandlers, lane_group
from services.intake import handlers as intake_handlers
from services.notifications import handlers as notifications_handlers
from stepwise_contract import EVENT_TYPES, CloudEvent, from_kafka
from stepwise_contract.envelope import set_schema_base
from tests.conftest import WAITS
from tests.integration import leaks
from tools.check.index_rule import problems
from tools.check.indexes import ALLOWED_SCANS, DECLARED, live_differences
from tools.dev.devstack import Backends, ServiceProcess
from tools.dev.kafka import committed_offset, records_on
from tools.dev.otlp_sink import OtlpSink
from tools.dev.policies import roomy_care_plan_policy, unhurried_notifications_policy
from tools.dev.servers import free_port
from tools.dev.sms_sink import SmsSink
from tools.dev.smtp_sink import Mailbox, SmtpSink

T = TypeVar("T")

TOKENS = {
    "clinician": "test-clinician-token",
    "intake_staff": "test-intake-staff-token",
    "admin": "test-admin-token",
    "integration": "test-integration-token",
    "notifications": "test-notifications-service-token",
    "care_plan": "test-care-plan-service-token",
    "sms_provider": "test-sms-provider-token",
    "utilization_review": "test-utilization-review-token",
}
GROUPS = {
    "intake": "stepwise.intake",
    "care_plan": "stepwise.care_plan",
    "notifications": "stepwise.notifications",
    "authorizations": "stepwise.authorizations",
}
GROUPS["caseload"] = "stepwise.caseload"
HANDLERS: dict[str, EventHandlers] = {"intake": intake_handlers.EVENT_HANDLERS,
                                      "care_plan": care_plan_handlers.EVENT_HANDLERS,
                                      "notifications": notifications_handlers.EVENT_HANDLERS,
                                      "authorizations": authorizations_handlers.EVENT_HANDLERS,
                                      "caseload": caseload_handlers.EVENT_HANDLERS}  # fmt: skip


def group_reading(service: str, topic: str) -> str:
    """The consumer group of ``service`` that reads ``topic``: that of its urgent or of its routine lane."""
    [urgent] = [subscription.urgent for model, subscription in HANDLERS[service].items() if model.event_type == topic]
    return lane_group(GROUPS[service], urgent)


WAIT = 30.0
"""How long a test waits for a condition. The slowest condition of a whole run on Apache Kafka takes a few
seconds (each run prints its slowest waits under "measurements"); this is several times that, so a loaded
CI machine does not fail a test that is only slow, and a broken one fails in half a minute, not one and a half."""


async def eventually(check: Callable[[], Awaitable[T | None]], what: str, within: float = WAIT) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``within`` seconds."""
    began = time.monotonic()
    while True:
        result = await check()
        if result:
            WAITS.append((time.monotonic() - began, what))
            return result
        if time.monotonic() - began > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


HTTP_TIMEOUT = 30.0
"""A request to a service answers in milliseconds; a service that does not answer in this long is broken."""

WELCOME = "Your session schedule"
"""The subject of the welcome email: the patient's first sessions."""
CSSRS_HIGH = {"q1": True, "q2": True, "q3": True, "q4": True, "q5": False, "q6": False}
"""C-SSRS answers of high risk: intake raises an immediate safety alert."""
CLINICIAN = {"Authorization": f"Bearer {TOKENS['clinician']}"}

CARE_TEAM_EMAIL = "care-team@clinic.test"
UR_TEAM_EMAIL = "utilization-review@clinic.test"
ON_CALL_PHONE = "+12025550188"
WEBHOOK_SECRET = "test-webhook-secret"
SMS_PROVIDER_TOKEN = "test-sms-provider-secret"


class WebhookReceiver:
    """A real HTTP server on loopback that keeps every request it receives (headers and raw body)."""

    def __init__(self) -> None:
        received: list[tuple[dict[str, str], bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.received = received
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/on-call"

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Stack:
    backends: Backends
    services: dict[str, ServiceProcess]
    mailbox: Mailbox
    databases: dict[str, str]
    env: dict[str, str]
    webhooks: WebhookReceiver
    texts: SmsSink
    traces: OtlpSink | None = None
    """The spans the services exported (OTLP), for the trace tests and the scan at the end of the run."""

    def http(self, service: str, role: str | None = "clinician") -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
        return httpx.AsyncClient(base_url=self.services[service].url, headers=headers, timeout=HTTP_TIMEOUT)

    def database(self, service: str) -> Any:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.backends.mongodb_url, tz_aware=True)
        return client[self.databases[service]]

    def restart(self, service: str, extra_env: dict[str, str] | None = None) -> None:
        process = self.services[service]
        process.kill()
        process.start(extra_env=extra_env)


@contextlib.contextmanager
def instance_beside(
    stack: Stack, service: str, env: dict[str, str], log: Path, *, wait: bool = True, port: int | None = None
) -> Iterator[ServiceProcess]:
    """Another instance of ``service`` beside the stack's, with ``env`` over the stack's environment, stopped at
    the end (a clean stop). ``env`` says whether it consumes (``KAFKA_CONSUMERS_ENABLED``) and how it joins the
    consumer groups (``KAFKA_GROUP_INSTANCE_ID`` empty: dynamically, leaving them when it stops). ``port``: when
    ``env`` must name it (a free one otherwise)."""
    instance = ServiceProcess(service, port or free_port(), stack.env | env, log).start(wait=wait)
    try:
        yield instance
    finally:
        instance.stop()


@contextlib.contextmanager
def notifications_replaced(stack: Stack, env: dict[str, str], log: Path) -> Iterator[ServiceProcess]:
    """The regular notifications instance stopped and one with ``env`` changed in its place, then the regular one
    back. The same static group membership lets each take over the other's partitions."""
    regular = stack.services["notifications"]
    regular.stop()
    stand_in = ServiceProcess("notifications", free_port(), regular.env | env, log).start()
    try:
        yield stand_in
    finally:
        stand_in.stop()
        regular.start()


@contextlib.contextmanager
def care_plan_consuming_at(stack: Stack, moment: datetime, log: Path) -> Iterator[ServiceProcess]:
    """care_plan with its clock shifted to ``moment`` in place of the stack's instance: it takes the same static
    group membership (the partitions), so what it consumes and serves (``stack.http``) happens at that time;
    then the regular instance is back. For attendance, recorded once a session has begun."""
    regular = stack.services["care_plan"]
    offset = (moment - datetime.now(UTC)).total_seconds()
    regular.stop()
    stand_in = ServiceProcess("care_plan", free_port(), regular.env | {"CLOCK_OFFSET_SECONDS": str(offset)}, log)
    try:
        stack.services["care_plan"] = stand_in.start()
        yield stand_in
    finally:
        stand_in.stop()
        stack.services["care_plan"] = regular
        regular.start()


@contextlib.contextmanager
def care_plan_at(stack: Stack, moment: datetime, log: Path | None = None) -> Iterator[ServiceProcess]:
    """A care_plan instance that only serves HTTP and runs timers, its clock shifted to ``moment``."""
    offset = (moment - datetime.now(UTC)).total_seconds()
    env = stack.env | {"CLOCK_OFFSET_SECONDS": str(offset), "TIMER_POLL_SECONDS": "0.2", "KAFKA_CONSUMERS_ENABLED": "0"}
    log = log or stack.services["care_plan"].log_path.with_name(f"care_plan-at-{uuid.uuid4().hex[:8]}.log")
    instance = ServiceProcess("care_plan", free_port(), env | {"KAFKA_GROUP_INSTANCE_ID": ""}, log).start()
    try:
        yield instance
    finally:
        instance.stop()


def first_session_start(plan: dict[str, Any], index: int = 0) -> datetime:
    return datetime.fromisoformat(plan["schedule"]["sessions"][index]["starts_at"])


async def record_during(
    stack: Stack, episode: Episode, index: int, status: str, role: str = "clinician"
) -> httpx.Response:
    """Record the episode's session ``index`` (from 0) as a clinic does, once it has begun: through a care_plan
    instance whose clock is five minutes into the session."""
    plan = await eventually(lambda: care_plan_of(stack, episode), "the care plan")
    session_id = plan["schedule"]["sessions"][index]["session_id"]
    with care_plan_at(stack, first_session_start(plan, index) + timedelta(minutes=5)) as instance:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"}
        async with httpx.AsyncClient(base_url=instance.url, headers=headers, timeout=HTTP_TIMEOUT) as care_plan:
            return await care_plan.post(f"/v1/episodes/{episode.episode_id}/sessions/{session_id}/attendance",
                                        json={"status": status})  # fmt: skip


TEEN_GROUP = "iop-teen-am"
TEEN_GROUP_CAPACITY = 2


TEEN_GROUP_POLICY = {"group_id": TEEN_GROUP, "name": "IOP adolescents' morning group", "level": "IOP",
                     "track": "morning", "programs": ["adolescent"], "weekdays": ["mon", "wed", "fri"],
                     "starts_at": "09:00", "minutes": 180, "capacity": TEEN_GROUP_CAPACITY}  # fmt: skip
"""The stack's groups have room for every patient the suite admits, but for this small one the waitlist test fills."""


SHAPES_FILE = "store-shapes.jsonl"
"""In the run's log folder: a line per store command of every service process (services/common/store_commands.py)."""


SCHEMA_BASE_URL = "https://stepwise.clinic.example/schemas/"
"""Where the events' JSON Schemas are hosted, as a clinic would set it (the services serve them at /schemas/)."""


@pytest.fixture(scope="session")
def stack(running_backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("service-logs")
    run = uuid.uuid4().hex[:8]
    names = ("intake", "care_plan", "notifications", "authorizations", "caseload")
    databases = {name: f"stepwise_{name}_test_{run}" for name in names}
    with (
        SmtpSink(free_port()) as sink,
        WebhookReceiver() as webhooks,
        SmsSink(token=SMS_PROVIDER_TOKEN) as texts,
        OtlpSink() as traces,
    ):
        ports = {name: free_port() for name in databases}
        # Events a test writes itself (an alert arriving before its assessment, say) name the schemas as the
        # services' do: the end-to-end test checks every event on the topics against the schema it names.
        set_schema_base(SCHEMA_BASE_URL)
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": running_backends.kafka_bootstrap_servers,
            "MONGODB_URL": running_backends.mongodb_url,
            "API_TOKENS": ",".join(f"{token}:{role}" for role, token in TOKENS.items()),
            "INTAKE_DB": databases["intake"],
            "CARE_PLAN_DB": databases["care_plan"],
            "NOTIFICATIONS_DB": databases["notifications"],
            "AUTHORIZATIONS_DB": databases["authorizations"],
            "UR_TEAM_EMAIL": UR_TEAM_EMAIL,
            "CASELOAD_DB": databases["caseload"],
            "INTAKE_URL": f"http://127.0.0.1:{ports['intake']}",
            "CARE_PLAN_URL": f"http://127.0.0.1:{ports['care_plan']}",  # the console's calls (caseload)
            "NOTIFICATIONS_URL": f"http://127.0.0.1:{ports['notifications']}",
            "AUTHORIZATIONS_URL": f"http://127.0.0.1:{ports['authorizations']}",
            "CARE_PLAN_POLICY_FILE": str(roomy_care_plan_policy(logs, [TEEN_GROUP_POLICY])),
            # Same-day safety alerts due a day later, whatever the day and hour the suite runs at (as quiet hours are
            # off): by the default policy one raised in the evening or at a weekend pages the on-call route at once.
            "NOTIFICATIONS_POLICY_FILE": str(unhurried_notifications_policy(logs)),
            "INTAKE_TOKEN": TOKENS["notifications"],
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(sink.port),
            "OUTBOX_POLL_SECONDS": "0.5",
            "OUTBOX_LEASE_SECONDS": "2",
            "DISPATCH_POLL_SECONDS": "0.5",
            # Passes as often idle as busy: a test waiting on a due time, a crash's lease or another instance's
            # leftovers waits no longer than before idle polling was lengthened.
            "OUTBOX_IDLE_POLL_SECONDS": "0.5",
            "DISPATCH_IDLE_POLL_SECONDS": "0.5",
            "KAFKA_FETCH_MAX_WAIT_MS": "500",  # a batch taken again after a failure is fetched as soon as before
            "CARE_TEAM_EMAIL": CARE_TEAM_EMAIL,
            "CARE_TEAM_WEBHOOK_URL": webhooks.url,
            "ON_CALL_PHONE": ON_CALL_PHONE,  # texted through the SMS sink
            "ON_CALL_WEBHOOK_URL": webhooks.url,
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SMS_PROVIDER_URL": texts.url,
            "SMS_PROVIDER_TOKEN": SMS_PROVIDER_TOKEN,
            "CONTACT_HASH_KEY": "test-contact-hash-key",
            "DISPATCH_LEASE_SECONDS": "5",
            # No quiet hours, so no test depends on the time of day it runs at (test_quiet_hours enables them).
            "QUIET_HOURS_START": "00:00",
            "QUIET_HOURS_END": "00:00",
            "SCHEMA_BASE_URL": SCHEMA_BASE_URL,
            # Logs and traces as a clinic's IT reads them: JSON lines, and spans exported to a collector (here the
            # suite's OtlpSink); both are scanned for the run's PII and secrets at its end (issue 29).
            "LOG_FORMAT": "json",
            "OTEL_EXPORTER_OTLP_ENDPOINT": traces.url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            # Every process's store commands, as shapes without values: checked against the declared indexes at
            # the end of the run (_every_query_indexed). One file: each line names its service.
            "STORE_QUERY_SHAPES_FILE": str(logs / SHAPES_FILE),
        }
        own_env = {"care_plan": {"INTAKE_TOKEN": TOKENS["care_plan"]}}
        services = {
            name: ServiceProcess(
                name,
                port,
                {**env, **own_env.get(name, {}), "KAFKA_GROUP_INSTANCE_ID": f"{name}-1"},
                Path(logs) / f"{name}.log",
            )
            for name, port in ports.items()
        }
        try:
            for service in services.values():
                service.start()
            yield Stack(running_backends, services, sink.mailbox, databases, env, webhooks, texts, traces)
        finally:
            for service in services.values():
                service.stop()
        try:
            _nothing_leaked(list(services.values()), traces, sink.mailbox, texts)
        finally:
            _every_query_indexed(logs / SHAPES_FILE, running_backends.mongodb_url, databases)


def _nothing_leaked(services: list[ServiceProcess], traces: OtlpSink, mailbox: Mailbox, texts: SmsSink) -> None:
    """At the end of the run: every line each service logged is one JSON object, and no PII, token or link the run
    used is in any line or exported span (an error at the stack's teardown names where)."""
    logs = [service.log_path for service in services]
    wrong = {log.name: lines[:3] for log in logs if (lines := leaks.not_json(log))}
    assert not wrong, f"log lines that are not JSON objects: {wrong}"
    secrets = leaks.USED | set(TOKENS.values()) | {SMS_PROVIDER_TOKEN, WEBHOOK_SECRET, "test-contact-hash-key"}
    found = leaks.leaks(logs, traces.spans, secrets | leaks.link_tokens(mailbox, texts))
    assert not found, f"PII or secrets of the run logged or traced at: {found[:20]}"


def _every_query_indexed(shapes: Path, mongodb_url: str, databases: dict[str, str]) -> None:
    """At the end of the run (the index test): every store command any service process sent is served by an index
    its service declares, or is an allowed admin listing (tools/check/index_rule.py), and each service's database
    has exactly the indexes it declares (tools/check/indexes.py, listed in docs/performance.md)."""
    lines = [json.loads(line) for line in set(shapes.read_text().splitlines())]  # each shape once
    unserved = problems(lines, DECLARED, ALLOWED_SCANS)
    assert not unserved, "queries no declared index serves (declare one in the store's INDEXES, or change the " \
        "query):\n" + "\n".join(unserved)  # fmt: skip
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
    try:
        differences = [found for service, name in databases.items()
                       for found in _indexes_differ(client[name], service)]  # fmt: skip
    finally:
        client.close()
    assert not differences, "indexes that differ from the declared ones:\n" + "\n".join(differences)


def _indexes_differ(database: Any, service: str) -> list[str]:
    return [
        difference
        for collection in database.list_collection_names()
        for difference in live_differences(
            service, collection, [list(index["key"].items()) for index in database[collection].list_indexes()]
        )
    ]


@dataclass
class Episode:
    patient_id: str
    episode_id: str
    email: str
    pii: dict[str, str]
    """As typed at intake."""
    stored_phone: str | None = None
    """The number as intake stores it (E.164), when it was typed otherwise."""

    @property
    def phone(self) -> str:
        return self.stored_phone or self.pii["phone"]


async def new_episode(
    stack: Stack, program: str = "adult", track: str | None = None, *, national_phone: bool = False
) -> Episode:
    """Register a patient with distinctive PII and open an episode (of the clinic's default track, or ``track``);
    ``national_phone``: the number typed as ``555-123-4567`` (intake stores it as ``+15551234567``, what
    ``Episode.phone`` says)."""
    marker = uuid.uuid4().hex[:10]
    number = f"{int(marker[:6], 16) % 10_000_000:07d}"
    pii = {
        "name": f"Testpatient Zq{marker}",
        "date_of_birth": "1979-03-14",
        "email": f"p{marker}@example.org",
        "phone": f"555-{number[:3]}-{number[3:]}" if national_phone else f"+1555{number}",
    }
    async with stack.http("intake", "intake_staff") as intake:
        response = await intake.post("/v1/patients", json=pii)
        assert response.status_code == 201, response.text
        patient_id = response.json()["patient_id"]
        body = {"program": program} | ({"track": track} if track else {})
        response = await intake.post(f"/v1/patients/{patient_id}/episodes", json=body)
        assert response.status_code == 201, response.text
    leaks.USED.update(pii.values(), {f"+1555{number}"})
    return Episode(patient_id, response.json()["episode_id"], pii["email"], pii, f"+1555{number}")


IOP_DIMENSIONS = {"withdrawal": 1, "biomedical": 0, "emotional": 2, "readiness": 2, "relapse": 2, "environment": 1}


async def assess(stack: Stack, episode: Episode, dimensions: dict[str, int] | None = None) -> dict[str, Any]:
    async with stack.http("intake", "intake_staff") as intake:
        response = await intake.post(
            f"/v1/episodes/{episode.episode_id}/assessments",
            json={"dimensions": dimensions or IOP_DIMENSIONS, "instruments": {"phq9": [1, 2, 1, 2, 1, 1, 2, 1, 0]}},
        )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def care_plan_of(stack: Stack, episode: Episode) -> dict[str, Any] | None:
    async with stack.http("care_plan") as care_plan:
        response = await care_plan.get(f"/v1/episodes/{episode.episode_id}/care-plan")
    return response.json() if response.status_code == 200 else None


async def session_ids(stack: Stack, episode: Episode) -> list[str]:
    """The ids of the sessions on the episode's calendar, in time order (once its care plan exists)."""
    plan = await eventually(lambda: care_plan_of(stack, episode), "the care plan")
    return [session["session_id"] for session in plan["schedule"]["sessions"]]


async def mail_to(stack: Stack, address: str, count: int = 1, subject: str | None = None) -> list[Any]:
    async def arrived() -> list[Any] | None:
        # Compared unfolded: Python's email folds a subject whose first word run is long onto its own line, and the
        # header then reads with a leading space, which mail clients drop.
        messages = [
            m for m in stack.mailbox.to(address) if subject is None or " ".join(m["Subject"].split()) == subject
        ]
        return messages if len(messages) >= count else None

    return await eventually(arrived, f"{count} mail(s) to the patient")


async def settled(stack: Stack, episode: Episode, url: str | None = None) -> list[dict[str, Any]] | None:
    """The episode's delivery log once nothing is pending any more (session reminders wait for their time)."""
    async with stack.http("notifications", "clinician") as client:
        if url:
            client.base_url = url
        log = (await client.get("/v1/notifications", params={"episode_id": episode.episode_id})).json()
    log = [entry for entry in log if entry["purpose"] != "session_reminder"]
    return log if log and all(entry["status"] != "pending" for entry in log) else None


@pytest.fixture
async def kafka_producer(stack: Stack) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=stack.backends.kafka_bootstrap_servers)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def read_topic(stack: Stack, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    return await records_on(stack.backends.kafka_bootstrap_servers, topic)


async def events_of(stack: Stack, topic: str, episode_id: str) -> list[ConsumerRecord[bytes, bytes]]:
    return [record for record in await read_topic(stack, topic) if record.key == episode_id.encode()]


async def events(stack: Stack, topic: str, episode: Episode | str) -> list[CloudEvent[Any]]:
    """The events on ``topic`` keyed by the episode (or its id), decoded as the contract's model of the topic, each
    once: a repeat of the same source and id (the outbox's at-least-once publish, after a stopped instance's lease
    ran out) is dropped as every consumer drops it. A decision made twice has two ids and is seen twice."""
    episode_id = episode if isinstance(episode, str) else episode.episode_id
    decoded = [from_kafka(r.headers, r.value, EVENT_TYPES[topic]) for r in await events_of(stack, topic, episode_id)]
    return list({(event.source, event.id): event for event in decoded}.values())


async def at_least(found: Awaitable[list[T]], n: int) -> list[T] | None:
    """What ``found`` gives once it has ``n`` items (for ``eventually``)."""
    items = await found
    return items if len(items) >= n else None


async def wait_consumed(stack: Stack, service: str, topic: str, partition: int, offset: int) -> None:
    """Wait until ``service``'s consumer group has committed past ``offset``: its effect is stored."""
    tp = TopicPartition(topic, partition)

    async def past() -> bool:
        group = group_reading(service, topic)
        return await committed_offset(stack.backends.kafka_bootstrap_servers, group, tp) > offset

    await eventually(past, f"{service} to consume {topic}[{partition}]@{offset}")
