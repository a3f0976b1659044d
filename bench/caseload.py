"""`make bench` (second part): caseload's freshness and rebuild time.

On the backends `make test` picks, one caseload process consumes a stream of events published straight to the
topics (as the services' relays publish them): R episodes a second, each a care plan started, then sessions
missed and measures due, and every ``--alert-every`` seconds a safety alert.

- **freshness**: from an event's record timestamp on Kafka to its episode's projection stored with it (the moment
  every worklist read shows it), p50/p95/max over the safety alerts and over every event; the issue asks p95 ≤ 1 s;
- **rebuild**: ``services.caseload.rebuild`` replaying every event on the topics (N) into a fresh collection and
  swapping it in, timed; events per second.

Run: ``python -m bench.caseload --help``; prints a table and writes ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from bench.pipeline import quantile
from services.caseload.rebuild import rebuild
from services.caseload.settings import CaseloadSettings
from services.common.kafka import ensure_topics
from services.common.settings import ServiceSettings
from stepwise_contract import (
    EVENT_TYPES,
    CareLevelAssigned,
    EventData,
    MeasureDue,
    Reason,
    SafetyAlertRaised,
    Schedule,
    ScheduledSession,
    SessionMissed,
    new_event,
    to_kafka,
)
from tools.dev.devstack import ServiceProcess, backends
from tools.dev.servers import free_port


def episode_events(episode_id: str, now: datetime) -> list[EventData]:
    """A started care plan, two sessions missed and a measure due: what a busy episode publishes."""
    sessions = [
        ScheduledSession(
            session_id=f"iop-am-{day}",
            starts_at=now + timedelta(days=day),
            ends_at=now + timedelta(days=day, hours=3),
            group_id="iop-am",
        )
        for day in range(12)
    ]
    schedule = Schedule(
        timezone="America/New_York", track="morning", days_per_week=3, hours_per_session=3.0, weeks=4, sessions=sessions
    )
    reason = [Reason(code="level_offered", text="IOP is offered here.")]
    events: list[EventData] = [
        CareLevelAssigned(
            episode_id=episode_id,
            level="IOP",
            status="active",
            assigned_at=now,
            assessment_id="a",
            schedule=schedule,
            rationale=reason,
            policy_version="bench",
        )
    ]
    events += [
        SessionMissed(
            episode_id=episode_id,
            session_id=f"iop-am-{day}",
            starts_at=now + timedelta(days=day),
            detected="reported",
            recorded_at=now,
            consecutive_misses=day + 1,
            total_misses=day + 1,
        )
        for day in range(2)
    ]
    events.append(
        MeasureDue(
            episode_id=episode_id,
            due_id=f"{episode_id}-d",
            instruments=["phq9"],
            reason="schedule",
            window_opens_at=now,
            window_closes_at=now + timedelta(days=2),
        )
    )
    return events


async def publish(producer: AIOKafkaProducer, data: EventData) -> None:
    record = to_kafka(new_event(data, source="/bench/caseload"))
    await producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)


async def load(producer: AIOKafkaProducer, rate: float, seconds: float, alert_every: float) -> tuple[list[str], int]:
    """R episodes a second for ``seconds`` (open loop), and an alert episode every ``alert_every``: the alert
    episodes and how many events were published."""
    alerts: list[str] = []
    began, sent, next_alert = time.monotonic(), 0, 0.0
    while (elapsed := time.monotonic() - began) < seconds:
        now = datetime.now(UTC)
        if elapsed >= next_alert:
            episode = str(uuid.uuid4())
            alerts.append(episode)
            await publish(
                producer,
                SafetyAlertRaised(
                    episode_id=episode,
                    alert_id=str(uuid.uuid4()),
                    assessment_id="a",
                    level="immediate",
                    reasons=["cssrs_high_risk"],
                    raised_at=now,
                ),
            )
            next_alert += alert_every
        while sent < elapsed * rate:
            for data in episode_events(str(uuid.uuid4()), now):
                await publish(producer, data)
            sent += 1
        await asyncio.sleep(0.01)
    return alerts, len(alerts) + 4 * sent


async def history(producer: AIOKafkaProducer, episodes: int) -> int:
    """``episodes`` busy episodes published as fast as the producer takes them (the history a rebuild replays);
    how many events."""
    now, sent = datetime.now(UTC), []
    for _ in range(episodes):
        for data in episode_events(str(uuid.uuid4()), now):
            record = to_kafka(new_event(data, source="/bench/caseload"))
            sent.append(await producer.send(record.topic, record.value, key=record.key, headers=record.headers))
    await asyncio.gather(*sent)
    return len(sent)


async def caught_up(database: Any, events: int, limit: float = 600) -> float:
    """Seconds until the projection holds ``events`` events."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        meta = await database["meta"].find_one({"_id": "projection"})
        if meta is not None:
            stored = await database[meta["collection"]].find({}, {"timeline": 1}).to_list()
            if sum(len(document.get("timeline", [])) for document in stored) >= events:
                break
        await asyncio.sleep(1)
    return time.monotonic() - began


async def freshness(
    database: Any, alerts: list[str], expected: int, since: datetime, limit: float = 120
) -> dict[str, Any]:
    """Wait until every event is projected, then: stored time minus the time of each live episode's last event."""
    meta = await database["meta"].find_one({"_id": "projection"})
    episodes = database[meta["collection"]]
    began = time.monotonic()
    while time.monotonic() - began < limit:
        documents = await episodes.find({}, {"timeline": 1, "changed_us": 1}).to_list()
        if sum(len(d["timeline"]) for d in documents) >= expected:
            break
        await asyncio.sleep(0.5)
    lags, alert_lags = [], []
    for document in documents:
        # the last event of an episode: its projection was stored with it at changed_us
        last = max(document["timeline"], key=lambda entry: str(entry["time"]))
        if datetime.fromisoformat(str(last["time"])) < since:
            continue  # the history, consumed as a backlog
        lag = document["changed_us"] / 1e6 - datetime.fromisoformat(str(last["time"])).timestamp()
        lags.append(lag)
        if document["_id"] in alerts:
            alert_lags.append(lag)

    def figures(values: list[float]) -> dict[str, float]:
        return {
            "n": len(values),
            "p50_s": quantile(values, 0.5),
            "p95_s": quantile(values, 0.95),
            "max_s": max(values) if values else 0.0,
        }

    return {"alerts": figures(alert_lags), "episodes": figures(lags)}


async def main(arguments: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"rate": arguments.rate, "seconds": arguments.seconds}
    with tempfile.TemporaryDirectory(prefix="stepwise-bench-caseload-") as tmp, backends() as backend:
        servers, run = backend.kafka_bootstrap_servers, secrets.token_hex(4)
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": servers,
            "MONGODB_URL": backend.mongodb_url,
            "CASELOAD_DB": f"stepwise_caseload_bench_{run}",
            "API_TOKENS": f"bench-{run}:clinician",
            "KAFKA_GROUP_INSTANCE_ID": "caseload-bench",
        }
        await ensure_topics(ServiceSettings(kafka_bootstrap_servers=servers), EVENT_TYPES)
        caseload = ServiceProcess("caseload", free_port(), env, Path(tmp) / "caseload.log").start()
        producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
        await producer.start()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backend.mongodb_url, tz_aware=True)
        try:
            database = client[env["CASELOAD_DB"]]
            published = await history(producer, arguments.history)
            figures["history"] = {"events": published, "consumed_in_s": round(await caught_up(database, published), 1)}
            since = datetime.now(UTC)
            alerts, expected = await load(producer, arguments.rate, arguments.seconds, arguments.alert_every)
            expected += published
            figures["freshness"] = await freshness(database, alerts, expected, since)
            settings = CaseloadSettings(
                kafka_bootstrap_servers=servers, caseload_db=env["CASELOAD_DB"], mongodb_url=backend.mongodb_url
            )
            done = await rebuild(settings, database)
            figures["rebuild"] = {
                "events": done.events,
                "episodes": done.episodes,
                "seconds": round(done.seconds, 2),
                "events_per_s": round(done.events / done.seconds, 1) if done.seconds else 0.0,
            }
        finally:
            await producer.stop()
            await client.close()
            caseload.stop()
    return figures


def report(figures: dict[str, Any]) -> str:
    fresh, rebuilt = figures["freshness"], figures["rebuild"]
    return (
        f"bench caseload: history of {figures['history']['events']} events consumed in "
        f"{figures['history']['consumed_in_s']} s; {figures['rate']} episodes/s for {figures['seconds']} s; "
        f"freshness (event → worklist) "
        f"alerts p50 {fresh['alerts']['p50_s']:.3f} s p95 {fresh['alerts']['p95_s']:.3f} s, all events p95 "
        f"{fresh['episodes']['p95_s']:.3f} s max {fresh['episodes']['max_s']:.3f} s; rebuild {rebuilt['events']} "
        f"events ({rebuilt['episodes']} episodes) in {rebuilt['seconds']} s = {rebuilt['events_per_s']} events/s"
    )


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.caseload", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0, help="episodes a second (4 events each)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--alert-every", type=float, default=0.5)
    parser.add_argument("--history", type=int, default=1000, help="episodes published first (4 events each)")
    parser.add_argument("--json", type=Path, default=None)
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    print(report(figures), flush=True)
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2, default=str))
    sys.exit(0)


if __name__ == "__main__":
    cli()
