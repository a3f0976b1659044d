"""`make bench`: the whole pipeline, intake → care_plan → notifications → SMTP (and authorizations consuming each
episode's calendar), against a raw baseline, in one run.

On one Kafka broker and one MongoDB server (picked as `make test` picks them, docs/development.md, "Backends") and
one SMTP sink, side by side:

- **throughput**: E intakes (register, open an episode, assess: three POSTs) from C concurrent clients, until
  every patient's welcome mail has arrived; the same through the raw pipeline (``bench.raw_pipeline``: the same
  writes, produces, consumes, contact lookup and mail per episode, none of the guarantees). Both are three
  processes; the ratio is the figure the issue sets.
- **CPU-seconds per episode** and **stage lags** (assessment POST answered → ``iop.assessment.completed`` on
  Kafka → ``iop.care_level.assigned`` → the welcome at the SMTP sink; Kafka's record timestamps);
- **safety alerts**: at each background rate (new intakes per second, open loop), an assessment that raises a
  same-day safety alert every ``--alert-every`` seconds, timed from its POST until the care team's mail arrives;
  p50/p95/p99 and the welcome mail's p95 of the background episodes;
- **idle CPU** of each service (of one core) with nothing to do, **ready** time after start, **RSS** at the end
  (after a soak of ``--soak`` more episodes);
- **scale-out**: the throughput run again with two instances of care_plan, notifications and authorizations in their
  groups;
- **backend limits**: single inserts/s, produce (one at a time and pipelined) and consume messages/s.

Prints a table and one summary line (``bench: …``) and writes every figure to ``--json``.
Run: ``make bench`` (``python -m bench.pipeline --help``); the older outbox bench is ``python -m bench.outbox_relay``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient

from bench import raw_pipeline, round_trips, seed
from bench.http_client import HttpClient
from services.common.kafka import ensure_topics
from services.common.settings import ServiceSettings
from tools.dev.devstack import Backends, ServiceProcess, backends
from tools.dev.kafka import records_on
from tools.dev.policies import roomy_care_plan_policy, unhurried_notifications_policy
from tools.dev.servers import Server, cpu_seconds, free_port, rss_mb, start_server, thread_cpu_seconds
from tools.dev.smtp_sink import SmtpSink

ROOT = Path(__file__).resolve().parent.parent
WELCOME = "Your session schedule"
CARE_TEAM = "care-team@bench.example.org"
IOP = {"withdrawal": 1, "biomedical": 0, "emotional": 2, "readiness": 2, "relapse": 2, "environment": 1}
ROUTINE = {"dimensions": IOP, "instruments": {"phq9": [1, 2, 1, 2, 1, 1, 2, 1, 0]}}
ALERTING = {"dimensions": IOP, "instruments": {"phq9": [1, 2, 1, 2, 1, 1, 2, 1, 1]}}  # item 9 > 0: same-day review
SERVICES = ("intake", "care_plan", "notifications", "authorizations", "caseload")
"""Stepwise's processes: every service that consumes an episode's events (the raw pipeline has no authorizations,
which consumes each episode's calendar, and no caseload, which projects every event)."""
DRAIN_LIMIT = 180.0


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Pipeline:
    """A pipeline under test: where its intake listens, and its processes by service."""

    name: str
    intake_url: str
    token: str
    processes: dict[str, list[Callable[[], int]]]
    """service -> the pids of its instances (callables: an instance may be restarted)."""
    commands: round_trips.CountsOf
    """The store commands its processes sent so far, by service, command and collection."""

    def cpu(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(pid()) for pid in pids) for name, pids in self.processes.items()}

    def rss(self) -> dict[str, float]:
        return {name: max(rss_mb(pid()) or 0.0 for pid in pids) for name, pids in self.processes.items()}


@dataclass
class Intakes:
    """What a phase created: per episode, when its assessment was posted and answered, and the patient's address."""

    posted: dict[str, float] = field(default_factory=dict)
    answered: dict[str, float] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)


async def _post(client: HttpClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    for _ in range(20):
        response = await client.post(path, body, headers={"Idempotency-Key": uuid.uuid4().hex})
        if response.status_code == 201:
            return response.json()  # type: ignore[no-any-return]
        if response.status_code < 500:
            raise RuntimeError(f"{path}: {response.status_code} {response.body!r}")
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{path}: no 201 after 20 tries")


async def register(client: HttpClient, intakes: Intakes) -> str:
    """A patient and an open episode; returns the episode id."""
    marker = uuid.uuid4().hex[:12]
    email = f"p{marker}@bench.example.org"
    patient = {
        "name": f"Bench Patient {marker}",
        "date_of_birth": "1980-02-02",
        "email": email,
        "phone": f"+1555{int(marker[:6], 16) % 10_000_000:07d}",
    }
    created = await _post(client, "/v1/patients", patient)
    episode = await _post(client, f"/v1/patients/{created['patient_id']}/episodes", {"program": "adult"})
    intakes.emails[episode["episode_id"]] = email
    return str(episode["episode_id"])


async def assess(client: HttpClient, intakes: Intakes, episode_id: str, answers: dict[str, Any]) -> None:
    intakes.posted[episode_id] = time.time()
    await _post(client, f"/v1/episodes/{episode_id}/assessments", answers)
    intakes.answered[episode_id] = time.time()


async def intake(client: HttpClient, intakes: Intakes) -> None:
    await assess(client, intakes, await register(client, intakes), ROUTINE)


def client_for(pipeline: Pipeline) -> HttpClient:
    headers = {"Authorization": f"Bearer {pipeline.token}"} if pipeline.token else {}
    return HttpClient(pipeline.intake_url, headers, connections=96)


class Arrivals:
    """The SMTP sink's mail, as wall-clock arrival times by address and by the episode a care-team mail names.

    Each mail is read once, as it is first looked at: the benchmark looks every 50 ms while a run drains, and reading
    every mail of the run so far each time (its headers parsed again) cost the benchmark's process more the later the
    phase, on the CPU the pipeline under measure shares."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink
        self._offset = time.time() - time.monotonic()
        self._read = 0
        self._welcomes: dict[str, float] = {}
        self._alerts: dict[str, float] = {}

    def _read_new(self) -> None:
        arrived = self._sink.mailbox.arrivals(since=self._read)
        self._read += len(arrived)
        for at, message in arrived:
            subject, to = str(message["Subject"] or ""), str(message["To"])
            if subject == WELCOME:
                self._welcomes.setdefault(to, at + self._offset)
            elif CARE_TEAM in to and "Safety alert" in subject:
                match = re.search(r"episode (\S+)", subject)
                if match:
                    self._alerts.setdefault(match.group(1), at + self._offset)

    def welcomes(self) -> dict[str, float]:
        """address -> when the first welcome reached it."""
        self._read_new()
        return self._welcomes

    def alerts(self) -> dict[str, float]:
        """episode id -> when the care team's safety-alert mail about it arrived."""
        self._read_new()
        return self._alerts


async def welcomed(arrivals: Arrivals, intakes: Intakes, limit: float = DRAIN_LIMIT) -> dict[str, float]:
    """Wait until every patient of ``intakes`` has their welcome; episode id -> when it arrived."""
    deadline = time.monotonic() + limit
    while True:
        arrived = arrivals.welcomes()
        if all(email in arrived for email in intakes.emails.values()) or time.monotonic() > deadline:
            return {episode: arrived[email] for episode, email in intakes.emails.items() if email in arrived}
        await asyncio.sleep(0.05)


async def throughput(pipeline: Pipeline, arrivals: Arrivals, episodes: int, clients: int) -> dict[str, Any]:
    """``episodes`` intakes from ``clients`` concurrent clients; episodes/s until the last welcome arrived."""
    intakes = Intakes()
    queue = list(range(episodes))
    before, shared_before = pipeline.cpu(), shared_cpu()
    commands_before = await pipeline.commands()
    began = time.time()
    async with client_for(pipeline) as client:

        async def one_client() -> None:
            while queue:
                queue.pop()
                await intake(client, intakes)

        await asyncio.gather(*(one_client() for _ in range(clients)))
    arrived = await welcomed(arrivals, intakes)
    ended = max(arrived.values(), default=time.time())
    await asyncio.sleep(1)  # what follows the welcome (its delivery recorded, the events it caused projected)
    commands = round_trips.per_episode(await round_trips.counted(pipeline.commands, commands_before), episodes)
    cpu = {name: (used - before[name]) / episodes for name, used in pipeline.cpu().items()}
    shared = {name: (used - shared_before[name]) / episodes for name, used in shared_cpu().items()}
    return {
        "episodes": episodes,
        "welcomed": len(arrived),
        "seconds": ended - began,
        "episodes_per_s": len(arrived) / (ended - began),
        "cpu_s_per_episode": cpu,
        "shared_cpu_s_per_episode": shared,
        "store_commands_per_episode": commands,
        "intakes": intakes,
        "arrived": arrived,
    }


SHARED: dict[str, int] = {}
"""The processes both pipelines share (the backends), by name: their CPU is counted per episode too."""


JIT = "Kafka (its JIT compiler)"
"""The broker's JIT compiler threads, counted in Kafka's CPU too: the JVM compiles the paths a pipeline uses while it
runs (most of the broker's CPU in a run of a few seconds, measured with JFR), work a long-running broker has done."""


def shared_cpu() -> dict[str, float]:
    """CPU-seconds so far of the backends (the broker's JIT compiler apart too) and of this process (the clients and
    the SMTP sink)."""
    used = {name: cpu_seconds(pid) for name, pid in SHARED.items()}
    if "Kafka" in SHARED:
        used[JIT] = thread_cpu_seconds(SHARED["Kafka"], "CompilerThre")
    return used | {"bench clients + SMTP sink": time.process_time()}


async def stage_lags(backend: Backends, intakes: Intakes, arrived: dict[str, float]) -> dict[str, dict[str, float]]:
    """p50/p95 of each hop, from Kafka's record timestamps (CreateTime: when the relay produced the record)."""
    servers = backend.kafka_bootstrap_servers

    async def produced(topic: str) -> dict[str, float]:
        return {r.key.decode(): r.timestamp / 1000 for r in await records_on(servers, topic) if r.key}

    assessed = await produced("iop.assessment.completed")
    assigned = await produced("iop.care_level.assigned")
    hops = {
        "intake (answered → assessment.completed)": [assessed[e] - intakes.answered[e] for e in intakes.answered
                                                      if e in assessed],
        "care_plan (→ care_level.assigned)": [assigned[e] - assessed[e] for e in intakes.answered
                                              if e in assigned and e in assessed],
        "notifications (→ welcome at the sink)": [arrived[e] - assigned[e] for e in arrived if e in assigned],
    }  # fmt: skip
    return {hop: {"p50_s": quantile(lags, 0.5), "p95_s": quantile(lags, 0.95)} for hop, lags in hops.items()}


async def alert_latency(
    pipeline: Pipeline, arrivals: Arrivals, rate: float, seconds: float, alert_every: float, servers: str
) -> dict[str, Any]:
    """Background intakes at ``rate``/s for ``seconds``, with a safety alert every ``alert_every`` s."""
    background, probes = Intakes(), Intakes()
    async with client_for(pipeline) as client:
        count = max(1, round(seconds / alert_every))
        waiting = await asyncio.gather(*(register(client, probes) for _ in range(count)))

        async def alerts() -> None:
            started = []
            for episode_id in waiting:
                started.append(asyncio.create_task(assess(client, probes, episode_id, ALERTING)))
                await asyncio.sleep(alert_every)
            await asyncio.gather(*started)

        async def routine() -> None:
            started = []
            for _ in range(round(rate * seconds)):
                started.append(asyncio.create_task(intake(client, background)))
                await asyncio.sleep(1 / rate)
            await asyncio.gather(*started)

        await asyncio.gather(alerts(), routine())
    deadline = time.monotonic() + DRAIN_LIMIT
    while time.monotonic() < deadline and not set(probes.posted) <= set(arrivals.alerts()):  # noqa: ASYNC110 - the sink is another thread
        await asyncio.sleep(0.05)
    alerted = arrivals.alerts()
    latencies = [alerted[e] - probes.posted[e] for e in probes.posted if e in alerted]
    arrived = await welcomed(arrivals, background)
    welcome = [arrived[e] - background.posted[e] for e in arrived]
    raised = {r.key.decode(): r.timestamp / 1000 for r in await records_on(servers, "iop.safety.alert_raised") if r.key}
    hops = {
        "intake answers the POST": [probes.answered[e] - probes.posted[e] for e in probes.answered],
        "intake's relay publishes the alert": [raised[e] - probes.answered[e] for e in probes.answered if e in raised],
        "notifications mails the care team": [alerted[e] - raised[e] for e in alerted if e in raised],
    }
    return {
        "background_per_s": rate,
        "alerts": len(probes.posted),
        "alerts_arrived": len(latencies),
        "alert_p50_s": quantile(latencies, 0.5),
        "alert_p95_s": quantile(latencies, 0.95),
        "alert_p99_s": quantile(latencies, 0.99),
        "alert_max_s": max(latencies, default=math.nan),
        "welcome_p95_s": quantile(welcome, 0.95),
        "background_welcomed": f"{len(arrived)}/{len(background.emails)}",
        "alert_hops_p95_s": {hop: quantile(lags, 0.95) for hop, lags in hops.items()},
    }


async def idle_cpu(pipeline: Pipeline, seconds: float) -> dict[str, float]:
    before, began = pipeline.cpu(), time.monotonic()
    await asyncio.sleep(seconds)  # measuring what idle costs: nothing is to happen meanwhile
    elapsed = time.monotonic() - began
    return {name: 100 * (used - before[name]) / elapsed for name, used in pipeline.cpu().items()}


async def backend_limits(backend: Backends, n: int) -> dict[str, float]:
    """What the backends allow one client, one operation at a time and (Kafka) pipelined."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backend.mongodb_url)
    collection = client[f"bench_limits_{uuid.uuid4().hex[:6]}"]["inserts"]
    began = time.perf_counter()
    for i in range(n):
        await collection.insert_one({"_id": i, "value": "x" * 200})
    inserts = n / (time.perf_counter() - began)
    await client.drop_database(collection.database.name)
    await client.close()
    topic = f"bench.limits.{uuid.uuid4().hex[:6]}"
    servers = backend.kafka_bootstrap_servers
    await ensure_topics(ServiceSettings(kafka_bootstrap_servers=servers), [topic])
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    await producer.start()
    began = time.perf_counter()
    for i in range(n):
        await producer.send_and_wait(topic, b"x" * 400, key=str(i).encode())
    one_at_a_time = n / (time.perf_counter() - began)
    began = time.perf_counter()
    sent = [await producer.send(topic, b"x" * 400, key=str(i).encode()) for i in range(n)]
    await asyncio.gather(*sent)
    pipelined = n / (time.perf_counter() - began)
    await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest")
    await consumer.start()
    read, began = 0, time.perf_counter()
    while read < 2 * n:
        batches = await consumer.getmany(timeout_ms=1000)
        read += sum(len(batch) for batch in batches.values())
    consumed = read / (time.perf_counter() - began)
    await consumer.stop()
    return {"mongodb_inserts_per_s": inserts, "kafka_produce_one_at_a_time_per_s": one_at_a_time,
            "kafka_produce_pipelined_per_s": pipelined, "kafka_consume_per_s": consumed}  # fmt: skip


# --- the two pipelines as processes ---------------------------------------------------------------------------


def stepwise_env(
    backend: Backends, sink: SmtpSink, ports: dict[str, int], run: str, roomy: bool = True
) -> tuple[dict[str, str], str]:
    token, service_token = f"bench-{secrets.token_urlsafe(8)}", f"bench-n-{secrets.token_urlsafe(8)}"
    policies = Path(tempfile.mkdtemp(prefix="bench-policy-"))
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": backend.kafka_bootstrap_servers,
        "MONGODB_URL": backend.mongodb_url,
        "API_TOKENS": f"{token}:intake_staff,{service_token}:notifications,{token}-clinician:clinician",
        "INTAKE_TOKEN": service_token,
        "INTAKE_URL": f"http://127.0.0.1:{ports['intake']}",
        "INTAKE_DB": f"bench_{run}_intake",
        "CARE_PLAN_DB": f"bench_{run}_care_plan",
        # Room for every benchmark patient: a full group would turn the welcome into a waitlist (``roomy``; else the
        # clinic's default capacities, and a waitlist that grows with every intake).
        **({"CARE_PLAN_POLICY_FILE": str(roomy_care_plan_policy(policies))} if roomy else {}),
        "NOTIFICATIONS_DB": f"bench_{run}_notifications",
        "AUTHORIZATIONS_DB": f"bench_{run}_authorizations",
        "CASELOAD_DB": f"bench_{run}_caseload",
        "CARE_PLAN_URL": f"http://127.0.0.1:{ports['care_plan']}",  # caseload's console calls these
        "NOTIFICATIONS_URL": f"http://127.0.0.1:{ports['notifications']}",
        "AUTHORIZATIONS_URL": f"http://127.0.0.1:{ports['authorizations']}",
        "UR_TEAM_EMAIL": "utilization-review@bench.example.org",  # notifications is ready only with one
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(sink.port),
        "CARE_TEAM_EMAIL": CARE_TEAM,
        # Readiness needs an on-call route too; a run ends long before an alert could be escalated.
        "ON_CALL_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/on-call",
        "WEBHOOK_SECRET": secrets.token_urlsafe(24),  # a webhook is signed: no secret, no start
        "SAFETY_ACK_SECONDS": "86400",
        "NOTIFICATIONS_POLICY_FILE": str(unhurried_notifications_policy(policies)),
        "QUIET_HOURS_START": "00:00",
        "QUIET_HOURS_END": "00:00",
    }
    return env, token


@dataclass
class StepwiseRun:
    instances: dict[str, list[ServiceProcess]]
    ready_s: dict[str, float]
    token: str

    def pipeline(self) -> Pipeline:
        def pid_of(service: ServiceProcess) -> Callable[[], int]:
            return lambda: service.process.pid if service.process else 0

        def url_of(service: ServiceProcess) -> Callable[[], str]:
            return lambda: service.url

        processes = {name: [pid_of(one) for one in ones] for name, ones in self.instances.items()}
        urls = {name: [url_of(one) for one in ones] for name, ones in self.instances.items()}
        url = self.instances["intake"][0].url
        return Pipeline("stepwise", url, self.token, processes, round_trips.scraped(urls))

    def stop(self) -> None:
        for ones in self.instances.values():
            for one in ones:
                one.stop()


def start_stepwise(
    backend: Backends, sink: SmtpSink, folder: Path, run: str, scale: int, roomy: bool = True
) -> StepwiseRun:
    """The services, ``scale`` instances of all but intake; ready time of each first one."""
    ports = {name: free_port() for name in SERVICES}
    env, token = stepwise_env(backend, sink, ports, run, roomy)
    instances: dict[str, list[ServiceProcess]] = {}
    ready: dict[str, float] = {}
    for name in SERVICES:
        for index in range(1 if name == "intake" else scale):
            port = ports[name] if index == 0 else free_port()
            one = ServiceProcess(name, port, env | {"KAFKA_GROUP_INSTANCE_ID": f"{name}-{run}-{index}"},
                                 folder / f"{run}-{name}-{index}.log")  # fmt: skip
            began = time.monotonic()
            one.start()
            ready.setdefault(name, time.monotonic() - began)
            instances.setdefault(name, []).append(one)
    return StepwiseRun(instances, ready, token)


@contextlib.contextmanager
def raw_running(backend: Backends, sink: SmtpSink, folder: Path) -> Iterator[Pipeline]:
    port = free_port()
    common = ["--kafka", backend.kafka_bootstrap_servers, "--mongodb", backend.mongodb_url]
    intake_url = f"http://127.0.0.1:{port}"
    stages = {
        "intake": [*common, "--port", str(port)],
        "care_plan": common,
        "notifications": [*common, "--intake", intake_url, "--smtp-port", str(sink.port)],
    }
    counts = {name: folder / f"raw-{name}-commands.json" for name in stages}
    with contextlib.ExitStack() as running:
        servers: dict[str, Server] = {}
        for name, arguments in stages.items():
            command = [sys.executable, "-m", "bench.raw_pipeline", name, *arguments, "--counts", str(counts[name])]
            # The consumers listen on no port: they count as started once intake answers (started first).
            servers[name] = running.enter_context(
                start_server(f"raw {name}", command, port, folder / f"raw-{name}.log", ready_within=30, env=None)
            )
        processes = {name: [_pid_of(server)] for name, server in servers.items()}
        yield Pipeline("raw", intake_url, "", processes, round_trips.from_files(counts))


def _pid_of(server: Server) -> Callable[[], int]:
    return lambda: server.process.pid


# --- the run ---------------------------------------------------------------------------------------------------


def _public(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in ("intakes", "arrived")}


async def main(arguments: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"episodes": arguments.episodes, "clients": arguments.clients}
    with tempfile.TemporaryDirectory(prefix="stepwise-bench-") as tmp, backends() as backend, \
            SmtpSink(free_port()) as sink:  # fmt: skip
        run = Run(backend, sink, Path(tmp), Arrivals(sink), arguments)
        figures["backends"] = backend.kind
        for name, server in (("Kafka", backend.kafka.server), ("MongoDB", backend.mongodb.server)):
            if server is not None:
                SHARED[name] = server.process.pid
        servers = backend.kafka_bootstrap_servers
        await ensure_topics(ServiceSettings(kafka_bootstrap_servers=servers), raw_pipeline.TOPICS)
        figures["backend_limits"] = await backend_limits(backend, arguments.limits)
        print(f"bench: backends {backend.kind}; limits {figures['backend_limits']}", flush=True)

        with raw_running(backend, sink, run.folder) as raw:
            # The warm-up: groups joined, connections open, the broker's JIT at work on the paths the pipeline uses.
            await throughput(raw, run.arrivals, arguments.warm_up, arguments.clients)
            figures["raw"] = _public(await throughput(raw, run.arrivals, arguments.episodes, arguments.clients))
        print(f"bench: raw {figures['raw']['episodes_per_s']:.1f} episodes/s", flush=True)

        figures |= await on_empty_databases(run)
        if arguments.capacity_rates:
            figures["alerts_default_capacities"] = await with_default_capacities(run)
        if arguments.seeded:
            figures["seeded"] = await with_history(run)
        if arguments.scale:
            figures["two_instances"] = await scaled_out(run)
    figures["ratio"] = figures["stepwise"]["episodes_per_s"] / figures["raw"]["episodes_per_s"]
    return figures


@dataclass(frozen=True)
class Run:
    """What every phase of a run works with."""

    backend: Backends
    sink: SmtpSink
    folder: Path
    arrivals: Arrivals
    arguments: argparse.Namespace


async def started(run: Run, name: str, scale: int = 1, roomy: bool = True) -> StepwiseRun:
    return await asyncio.to_thread(start_stepwise, run.backend, run.sink, run.folder, name, scale, roomy)


async def alert_rates(run: Run, pipeline: Pipeline, rates: list[float], label: str) -> list[dict[str, Any]]:
    rows = []
    for rate in rates:
        arguments, servers = run.arguments, run.backend.kafka_bootstrap_servers
        rows.append(await alert_latency(pipeline, run.arrivals, rate, arguments.alert_seconds, arguments.alert_every,
                                        servers))  # fmt: skip
        print(f"bench: alerts at {rate}/s{label}: {rows[-1]}", flush=True)
    return rows


async def on_empty_databases(run: Run) -> dict[str, Any]:
    """Idle CPU, throughput and stage lags on empty databases, the alerts at each rate, the soak and RSS."""
    figures: dict[str, Any] = {}
    arguments = run.arguments
    stepwise = await started(run, "one")
    try:
        figures["ready_s"] = stepwise.ready_s
        pipeline = stepwise.pipeline()
        await asyncio.sleep(3)  # let start-up work (topic metadata, first polls) settle before measuring idle
        figures["idle_cpu_percent"] = await idle_cpu(pipeline, arguments.idle)
        await throughput(pipeline, run.arrivals, arguments.warm_up, arguments.clients)
        result = await throughput(pipeline, run.arrivals, arguments.episodes, arguments.clients)
        figures["stepwise"] = _public(result)
        figures["stage_lags"] = await stage_lags(run.backend, result["intakes"], result["arrived"])
        print(f"bench: stepwise {result['episodes_per_s']:.1f} episodes/s", flush=True)
        figures["alerts"] = await alert_rates(run, pipeline, arguments.rates, "")
        if arguments.soak:
            soaked = await throughput(pipeline, run.arrivals, arguments.soak, arguments.clients)
            figures["soak"] = {"episodes": arguments.soak, "episodes_per_s": soaked["episodes_per_s"]}
        figures["rss_mb"] = pipeline.rss()
    finally:
        await asyncio.to_thread(stepwise.stop)
    return figures


async def with_default_capacities(run: Run) -> list[dict[str, Any]]:
    """The safety alerts again with the clinic's default group capacities: most background patients wait for a
    place, and the waitlist grows through the run."""
    stepwise = await started(run, "capacities", roomy=False)
    try:
        pipeline = stepwise.pipeline()
        await throughput(pipeline, run.arrivals, 20, run.arguments.clients)
        return await alert_rates(run, pipeline, run.arguments.capacity_rates, " (default capacities)")
    finally:
        await asyncio.to_thread(stepwise.stop)


async def with_history(run: Run) -> dict[str, Any]:
    """Throughput and stage lags with ``--seeded`` episodes already stored (``bench.seed``: copies of the warm-up's
    episodes), to compare with the empty databases'; RSS after."""
    arguments = run.arguments
    stepwise = await started(run, "seeded")
    try:
        pipeline = stepwise.pipeline()
        warm = await throughput(pipeline, run.arrivals, 20, arguments.clients)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(run.backend.mongodb_url)
        try:
            finished = set(warm["intakes"].emails)
            await discharged(stepwise, client, finished)  # a clinic's history: episodes that ended
            databases = [f"bench_seeded_{name}" for name in SERVICES]
            found = await seed.templates(client, databases, finished)
            seeded = await seed.seed(client, found, arguments.seeded)
        finally:
            await client.close()
        print(f"bench: seeded {seeded['episodes']} episodes in {seeded['seconds']:.0f} s", flush=True)
        result = await throughput(pipeline, run.arrivals, arguments.episodes, arguments.clients)
        print(f"bench: stepwise with history {result['episodes_per_s']:.1f} episodes/s", flush=True)
        lags = await stage_lags(run.backend, result["intakes"], result["arrived"])
        return {"history": seeded, "throughput": _public(result), "stage_lags": lags, "rss_mb": pipeline.rss()}
    finally:
        await asyncio.to_thread(stepwise.stop)


async def discharged(stepwise: StepwiseRun, client: AsyncMongoClient[dict[str, Any]], episodes: set[str]) -> None:
    """Discharge ``episodes`` at care_plan as a clinician, and wait until every service has applied it (intake closes
    the episode; the others consume the same event), so that copies of them are finished episodes."""
    care_plan = stepwise.instances["care_plan"][0].url
    async with HttpClient(care_plan, {"Authorization": f"Bearer {stepwise.token}-clinician"}) as clinician:
        for episode_id in episodes:
            answer = await clinician.post(f"/v1/episodes/{episode_id}/discharge", {"reason_code": "administrative"})
            if answer.status_code != 200:
                raise RuntimeError(f"discharge: {answer.status_code} {answer.body!r}")
    intake = client["bench_seeded_intake"]["episodes"]
    deadline = time.monotonic() + DRAIN_LIMIT
    while await intake.count_documents({"_id": {"$in": sorted(episodes)}, "status": "open"}):
        if time.monotonic() > deadline:
            raise RuntimeError("the discharges did not reach intake")
        await asyncio.sleep(0.2)
    await asyncio.sleep(3)  # caseload, authorizations and notifications apply the same event meanwhile


async def scaled_out(run: Run) -> dict[str, Any]:
    two = await started(run, "two", scale=2)
    try:
        await throughput(two.pipeline(), run.arrivals, 20, run.arguments.clients)
        return _public(await throughput(two.pipeline(), run.arrivals, run.arguments.episodes, run.arguments.clients))
    finally:
        await asyncio.to_thread(two.stop)


def report(figures: dict[str, Any]) -> str:
    lines = [f"\n{figures['episodes']} intakes from {figures['clients']} clients, {figures['backends']}\n"]
    lines.append(f"{'':44}{'Stepwise':>12}{'raw':>12}")
    stepwise, raw = figures["stepwise"], figures["raw"]
    lines.append(f"{'episodes/s':44}{stepwise['episodes_per_s']:>12.1f}{raw['episodes_per_s']:>12.1f}")
    for name in SERVICES:
        lines.append(f"{'CPU-s per episode, ' + name:44}{stepwise['cpu_s_per_episode'][name]:>12.4f}"
                     f"{raw['cpu_s_per_episode'].get(name, math.nan):>12.4f}")  # fmt: skip
    for name in stepwise["shared_cpu_s_per_episode"]:
        lines.append(f"{'CPU-s per episode, ' + name:44}{stepwise['shared_cpu_s_per_episode'][name]:>12.4f}"
                     f"{raw['shared_cpu_s_per_episode'][name]:>12.4f}")  # fmt: skip
    if "two_instances" in figures:
        lines.append(f"{'episodes/s, 2 × each service but intake':44}"
                     f"{figures['two_instances']['episodes_per_s']:>12.1f}")  # fmt: skip
    lines += round_trips.table(stepwise["store_commands_per_episode"], raw["store_commands_per_episode"], SERVICES)
    lines.append("\nstage lags (p50 / p95 s)")
    for hop, lag in figures["stage_lags"].items():
        lines.append(f"  {hop:46}{lag['p50_s']:>8.3f}{lag['p95_s']:>8.3f}")
    lines += history_lines(figures)
    lines.append("\nsafety alert, POST → care-team mail (s)")
    lines.append(f"  {'background/s':>12}{'alerts':>8}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'welcome p95':>13}")
    rows = [(row, "") for row in figures["alerts"]]
    rows += [(row, "  default group capacities") for row in figures.get("alerts_default_capacities", [])]
    for row, label in rows:
        lines.append(f"  {row['background_per_s']:>12g}{row['alerts_arrived']:>8}{row['alert_p50_s']:>8.3f}"
                     f"{row['alert_p95_s']:>8.3f}{row['alert_p99_s']:>8.3f}{row['alert_max_s']:>8.3f}"
                     f"{row['welcome_p95_s']:>13.2f}{label}")  # fmt: skip
    lines.append(f"\n{'':24}" + "".join(f"{name:>15}" for name in SERVICES))
    for label, key, unit in (("idle CPU (% of a core)", "idle_cpu_percent", ".2f"), ("ready after start (s)",
                             "ready_s", ".2f"), ("RSS at the end (MiB)", "rss_mb", ".0f")):  # fmt: skip
        lines.append(f"{label:24}" + "".join(f"{figures[key][name]:>15{unit}}" for name in SERVICES))
    limits = figures["backend_limits"]
    lines.append("\nbackend limits (one client): " + ", ".join(f"{k} {v:.0f}" for k, v in limits.items()))
    return "\n".join(lines)


def history_lines(figures: dict[str, Any]) -> list[str]:
    """Throughput and each stage's p95 with the history stored, against the empty databases'."""
    if "seeded" not in figures:
        return []
    seeded = figures["seeded"]
    empty, full = figures["stepwise"]["episodes_per_s"], seeded["throughput"]["episodes_per_s"]
    history = seeded["history"]
    lines = [f"\nwith {history['episodes']:,} episodes stored (seeded in {history['seconds']:.0f} s)"
             f"{'empty':>10}{'history':>10}{'ratio':>8}", f"  {'episodes/s':46}{empty:>10.1f}{full:>10.1f}"
             f"{full / empty:>8.2f}"]  # fmt: skip
    for hop, lag in figures["stage_lags"].items():
        after = seeded["stage_lags"][hop]["p95_s"]
        lines.append(f"  {hop + ' p95 (s)':46}{lag['p95_s']:>10.3f}{after:>10.3f}{after / lag['p95_s']:>8.2f}")
    lines.append("  RSS after (MiB): " + ", ".join(f"{name} {mb:.0f}" for name, mb in seeded["rss_mb"].items()))
    return lines


def summary(figures: dict[str, Any]) -> str:
    alerts = " ".join(f"alert_p99@{row['background_per_s']:g}/s={row['alert_p99_s']:.2f}s" for row in figures["alerts"])
    alerts += "".join(f" alert_p99@{row['background_per_s']:g}/s,default_capacities={row['alert_p99_s']:.2f}s"
                      for row in figures.get("alerts_default_capacities", []))  # fmt: skip
    trips = sum(figures["stepwise"]["store_commands_per_episode"].values())
    history = figures.get("seeded", {}).get("throughput", {}).get("episodes_per_s", math.nan)
    idle = max(figures["idle_cpu_percent"].values())
    ready = max(figures["ready_s"].values())
    rss = max(figures["rss_mb"].values())
    two = figures.get("two_instances", {}).get("episodes_per_s", math.nan)
    soak = figures.get("soak", {}).get("episodes", 0)
    stepwise, raw = figures["stepwise"]["episodes_per_s"], figures["raw"]["episodes_per_s"]
    return (f"bench: stepwise={stepwise:.1f}/s raw={raw:.1f}/s ratio={figures['ratio']:.2f} round_trips={trips:.1f} "
            f"with_history={history:.1f}/s({history / stepwise:.2f}) {alerts} "
            f"idle_cpu_max={idle:.2f}% ready_max={ready:.2f}s rss_max={rss:.0f}MiB(after {soak} more episodes) "
            f"two_instances={two:.1f}/s")  # fmt: skip


QUICK: dict[str, Any] = {
    "episodes": 150,
    "alert_seconds": 12,
    "idle": 5,
    "soak": 0,
    "scale": False,
    "limits": 200,
    "seeded": 5000,
}
"""The defaults ``--quick`` sets (a knob given on the command line wins): a few minutes instead of the full run's."""


def options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The run's knobs from the command line; ``--quick`` changes the defaults only (a knob given still wins)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--episodes", type=int, default=1000, help="intakes in each throughput run")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in the throughput runs")
    parser.add_argument("--warm-up", type=int, default=20, help="intakes before each measured throughput run")
    parser.add_argument("--rates", type=float, nargs="+", default=[5, 10, 20], help="background intakes/s")
    parser.add_argument("--alert-seconds", type=float, default=50, help="how long each background rate runs")
    parser.add_argument("--alert-every", type=float, default=0.5, help="seconds between two safety alerts")
    parser.add_argument("--idle", type=float, default=20, help="seconds of idle CPU measurement")
    parser.add_argument("--soak", type=int, default=10_000, help="more intakes before RSS is read")
    parser.add_argument("--no-scale", dest="scale", action="store_false", help="skip the two-instance run")
    parser.add_argument("--seeded", type=int, default=50_000,
                        help="episodes stored before the run with history (0: no such run)")  # fmt: skip
    parser.add_argument("--capacity-rates", type=float, nargs="*", default=[20],
                        help="background intakes/s of the alert runs with the default group capacities")  # fmt: skip
    parser.add_argument("--limits", type=int, default=1000, help="operations per backend limit")
    parser.add_argument("--json", type=Path, default=Path("bench-pipeline.json"), help="where the figures go")
    parser.add_argument("--quick", action="store_true", help="a short run to iterate on: " + ", ".join(
        f"--{name.replace('_', '-')} {value}" for name, value in QUICK.items()))  # fmt: skip
    if parser.parse_args(argv).quick:
        parser.set_defaults(**QUICK)
    return parser.parse_args(argv)


def cli() -> None:
    arguments = options()
    figures = asyncio.run(main(arguments))
    print(report(figures))
    print(summary(figures), flush=True)
    arguments.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    cli()
