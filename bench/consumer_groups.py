"""Consumer-group layouts side by side, on the backends `make test` uses: idle CPU and resuming after a crash.

For each layout (``KAFKA_CONSUMER_GROUPS``: ``per_topic``, ``per_service``), in alternating rounds:

- the three services start as processes (as in production) with their own databases;
- idle CPU: each service's user + system CPU time over ``--idle`` seconds with no traffic, as % of one core;
- first start: care_plan and notifications start as new instances (new member ids); a record was published
  just before to a topic each consumes: we time from the process's start until /health/ready and until its
  group has committed past that record (it was handled);
- resuming: each is killed with SIGKILL, a record is published, and it starts again with the same static
  membership: the same two times.

Run: `python -m bench.consumer_groups [--rounds 2] [--idle 30]`; `STEPWISE_KAFKA_BROKER=noida-db` for the stand-in.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

from aiokafka import AIOKafkaProducer, TopicPartition

from services.care_plan import settings as care_plan_settings
from services.common.consumer import GroupLayout, consumer_group
from services.common.kafka import ensure_topics
from services.common.settings import ServiceSettings
from services.notifications import settings as notifications_settings
from stepwise_contract import COMMAND_TYPES, EVENT_TYPES
from tools.devstack import Backends, ServiceProcess, backends
from tools.kafka import committed_offset
from tools.servers import cpu_seconds, free_port

LAYOUTS: tuple[GroupLayout, ...] = ("per_topic", "per_service")
GROUPS = {"care_plan": care_plan_settings.CONSUMER_GROUP, "notifications": notifications_settings.CONSUMER_GROUP}
PROBE_TOPIC = {"care_plan": "iop.attendance.reported", "notifications": "iop.consent.changed"}
"""A topic each consumes; the probe record is malformed on purpose, so handling it is setting it aside."""


def stack_env(started: Backends, layout: GroupLayout, run: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": started.kafka_bootstrap_servers,
        "MONGODB_URL": started.mongodb_url,
        "KAFKA_CONSUMER_GROUPS": layout,
        "API_TOKENS": "bench-token:clinician,bench-service-token:notifications",
        "INTAKE_TOKEN": "bench-service-token",
        "INTAKE_DB": f"bench_intake_{run}",
        "CARE_PLAN_DB": f"bench_care_plan_{run}",
        "NOTIFICATIONS_DB": f"bench_notifications_{run}",
        "QUIET_HOURS_START": "00:00",
        "QUIET_HOURS_END": "00:00",
        "LOG_LEVEL": "WARNING",
    }


async def start_time(started: Backends, service: ServiceProcess, layout: GroupLayout) -> tuple[float, float]:
    """Publish a record it must handle, then start it: seconds to ready, seconds until handled."""
    servers, topic = started.kafka_bootstrap_servers, PROBE_TOPIC[service.name]
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"not json", key=uuid.uuid4().hex.encode())
    finally:
        await producer.stop()
    partition = TopicPartition(topic, sent.partition)
    group = consumer_group(GROUPS[service.name], topic, layout)
    began = time.monotonic()
    service.start(wait=False)
    ready_after: float | None = None
    while True:
        if ready_after is None and await asyncio.to_thread(service.ready):
            ready_after = time.monotonic() - began
        if await committed_offset(servers, group, partition) > sent.offset:
            handled_after = time.monotonic() - began
            break
        if time.monotonic() - began > 120:
            raise TimeoutError(f"{service.name} did not resume within 120 s ({layout})")
        await asyncio.sleep(0.05)
    if ready_after is None:
        service.wait_ready()
        ready_after = time.monotonic() - began
    return ready_after, handled_after


async def one_round(started: Backends, layout: GroupLayout, idle: float, logs: Path) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    env = stack_env(started, layout, run)
    ports = {name: free_port() for name in ("intake", "care_plan", "notifications")}
    env["INTAKE_URL"] = f"http://127.0.0.1:{ports['intake']}"
    services = {
        name: ServiceProcess(name, port, env | {"KAFKA_GROUP_INSTANCE_ID": f"bench-{run}-{name}"},
                             logs / f"{layout}-{run}-{name}.log")
        for name, port in ports.items()
    }  # fmt: skip
    figures: dict[str, float] = {}
    try:
        services["intake"].start()
        for name in ("care_plan", "notifications"):  # a new instance: it joins its group(s) as a new member
            ready, handled = await start_time(started, services[name], layout)
            figures[f"first start → ready {name} s"] = ready
            figures[f"first start → handled {name} s"] = handled
        await asyncio.sleep(5)  # joins and first fetches settle
        before = {name: cpu_seconds(s.process.pid) for name, s in services.items() if s.process}
        await asyncio.sleep(idle)
        for name, service in services.items():
            assert service.process is not None
            figures[f"idle CPU {name} %"] = 100 * (cpu_seconds(service.process.pid) - before[name]) / idle
        for name in ("care_plan", "notifications"):
            services[name].kill()  # a crash; the same static member id comes back
            ready, handled = await start_time(started, services[name], layout)
            figures[f"restart → ready {name} s"] = ready
            figures[f"restart → handled {name} s"] = handled
    finally:
        for service in services.values():
            service.stop()
    return figures


async def main(rounds: int, idle: float) -> None:
    results: dict[GroupLayout, dict[str, list[float]]] = {layout: defaultdict(list) for layout in LAYOUTS}
    with backends() as started, tempfile.TemporaryDirectory(prefix="bench-groups-") as logs:
        for line in started.describe():
            print(line, flush=True)
        # Every contract topic, as kafka-init does in docker-compose.yml: probes go out before a consumer runs.
        settings = ServiceSettings(kafka_bootstrap_servers=started.kafka_bootstrap_servers)
        await ensure_topics(settings, EVENT_TYPES.keys() | COMMAND_TYPES.keys())
        for number in range(rounds):
            order = LAYOUTS if number % 2 == 0 else LAYOUTS[::-1]
            for layout in order:
                print(f"round {number + 1}: {layout}…", flush=True)
                for figure, value in (await one_round(started, layout, idle, Path(logs))).items():
                    results[layout][figure].append(value)
    figures = list(results[LAYOUTS[0]])
    print(f"\n{rounds} round(s), idle {idle:.0f} s; {started.kind}; median (min–max)\n")
    print(f"{'':36}" + "".join(f"{layout:>24}" for layout in LAYOUTS))
    for figure in figures:
        cells = []
        for layout in LAYOUTS:
            values = results[layout][figure]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})")
        print(f"{figure:36}" + "".join(f"{cell:>24}" for cell in cells))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each runs every layout, order alternating")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measured per service")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.idle))
