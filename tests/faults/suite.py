"""`make faults`: the five services as processes on the test backends, a run of episodes through intake's API,
and, while it runs, the faults a clinic's machines see: SIGKILL of each service at random moments, a broker
restart, a MongoDB outage, a mail-relay outage, intake down. Counted at the SMTP server and on Kafka:

- every episode welcomed exactly once (lost: none; duplicates: more than one);
- every ``iop.assessment.completed`` answered by an ``iop.care_level.assigned``;
- every episode's authorization drawn down by exactly its days (``DAYS`` service days, each published twice as a
  redelivery would be, as care_plan publishes them): none lost, none counted twice (authorizations);
- nothing set aside;

with the drain time after each fault (from its end until every episode created so far is welcomed). Duplicates
are counted once they could have shown: at least a lease after the last welcome, and once nothing is left that
could send one (no outbox pending, no welcome unrecorded, no event a consumer has not committed). Prints one
summary line and exits 1 when anything was lost, sent twice or set aside. ``--quick`` is the smaller run
``make test`` includes. The clients retry as a clinic's EHR would: on a refused connection or a 5xx, the same
request again with the same ``Idempotency-Key``.

The kills (which service, when) are drawn from a seed, printed first: ``--seed N`` draws the same ones again (the
moments the processes are in when they die still vary with the machine's timing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pymongo import AsyncMongoClient

from services.authorizations import handlers as authorizations_handlers
from services.authorizations.settings import CONSUMER_GROUP as AUTHORIZATIONS_GROUP
from services.care_plan import handlers as care_plan_handlers
from services.care_plan.settings import CONSUMER_GROUP as CARE_PLAN_GROUP
from services.caseload import handlers as caseload_handlers
from services.caseload.settings import CONSUMER_GROUP as CASELOAD_GROUP
from services.common.consumer import EventHandlers, lane_group
from services.common.service import SET_ASIDE_COLLECTION
from services.common.utc import utc_now
from services.notifications import handlers as notifications_handlers
from services.notifications.settings import CONSUMER_GROUP as NOTIFICATIONS_GROUP
from services.notifications.store import NOTIFICATIONS, PENDING
from stepwise_contract import CareLevel, ServiceDayCompleted, new_event, to_kafka
from tools.dev.devstack import ServiceProcess, mongodb_server
from tools.dev.kafka import apache_kafka, records_on, unconsumed
from tools.dev.policies import unhurried_notifications_policy
from tools.dev.servers import Server, free_port
from tools.dev.smtp_sink import SmtpSink

WELCOME = "Your session schedule"
IOP = {"withdrawal": 1, "biomedical": 0, "emotional": 2, "readiness": 2, "relapse": 2, "environment": 1}
DRAIN_LIMIT = 300.0
"""A fault whose backlog has not drained this long after it ended counts as a failure of the run."""
DISPATCH_LEASE = 10.0
"""The dispatcher's lease in this run (DISPATCH_LEASE_SECONDS), the longest of the run's leases (the outbox
relay's is 5 s): a welcome sent by a process killed before it recorded the send goes again once it ends."""


@dataclass(frozen=True)
class Scale:
    episodes: int
    """Spread over the faults in proportion to how long each lasts, so episodes arrive before, during and after."""
    kills: int
    mongodb_outage: float
    mail_outage: float
    intake_outage: float

    def lasts(self, fault: str) -> float:
        """About how long ``fault`` takes, for pacing the episodes through it."""
        return {"SIGKILLs": 2.0 * self.kills + 4, "broker restart": 15.0, "MongoDB outage": self.mongodb_outage + 3,
                "mail relay outage": self.mail_outage + 2, "intake down": self.intake_outage + 6}[fault]  # fmt: skip

    def episodes_for(self, fault: str) -> int:
        total = sum(self.lasts(name) for name in FAULTS)
        return max(2, round(self.episodes * self.lasts(fault) / total))


FULL = Scale(episodes=150, kills=6, mongodb_outage=30, mail_outage=180, intake_outage=120)
QUICK = Scale(episodes=30, kills=3, mongodb_outage=8, mail_outage=20, intake_outage=12)


DAYS = 3
"""Service days published for each episode (each twice): its authorization must show exactly these used."""


@dataclass
class Run:
    """What the run created and saw."""

    intake_url: str
    token: str
    ur_url: str = ""
    ur_token: str = ""
    producer: AIOKafkaProducer | None = None
    emails: dict[str, str] = field(default_factory=dict)
    """episode id -> the patient's email address."""
    retries: int = 0
    drains: dict[str, float] = field(default_factory=dict)


async def _until_done(
    run: Run, call: Callable[[], Awaitable[httpx.Response]], what: str, done: tuple[int, ...] = (201,)
) -> dict[str, Any]:
    """A client that retries like a clinic's EHR: a refused connection or a 5xx, again (same key), until 201."""
    wait = 0.2
    deadline = time.monotonic() + DRAIN_LIMIT * 2
    while True:
        with contextlib.suppress(httpx.HTTPError):
            response = await call()
            if response.status_code in done:
                return response.json()  # type: ignore[no-any-return]
            if response.status_code < 500:
                raise RuntimeError(f"{what}: {response.status_code} {response.text}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: no answer for {DRAIN_LIMIT * 2:.0f} s")
        run.retries += 1
        await asyncio.sleep(wait)
        wait = min(wait * 2, 3.0)


async def create_episode(run: Run, client: httpx.AsyncClient) -> None:
    marker = uuid.uuid4().hex[:12]
    email = f"p{marker}@faults.example.org"
    patient = {"name": f"Fault Patient {marker}", "date_of_birth": "1980-02-02", "email": email,
               "phone": f"+1555{int(marker[:6], 16) % 10_000_000:07d}"}  # fmt: skip

    def post(path: str, body: dict[str, Any], key: str) -> Callable[[], Awaitable[httpx.Response]]:
        return lambda: client.post(path, json=body, headers={"Idempotency-Key": key})

    created = await _until_done(run, post("/v1/patients", patient, f"{marker}-patient"), "register")
    patient_path = f"/v1/patients/{created['patient_id']}/episodes"
    episode = await _until_done(run, post(patient_path, {"program": "adult"}, f"{marker}-episode"), "open")
    run.emails[episode["episode_id"]] = email
    assessment = {"dimensions": IOP, "instruments": {"phq9": [1, 2, 1, 2, 1, 1, 2, 1, 0]}}
    assessments = f"/v1/episodes/{episode['episode_id']}/assessments"
    await _until_done(run, post(assessments, assessment, f"{marker}-assessment"), "assess")
    await _drawn_down(run, episode["episode_id"])


async def _drawn_down(run: Run, episode_id: str) -> None:
    """An authorization of the episode (a 409 after a lost answer: recorded already), and ``DAYS`` days against it,
    each published twice, retried through the faults until the broker takes them."""
    today = utc_now().date()
    body = {"payer": "faults", "authorization_number": f"PA-{episode_id[:8]}", "level": "IOP", "unit": "day",
            "units_authorized": 10, "start_date": (today - timedelta(days=30)).isoformat(),
            "end_date": (today + timedelta(days=60)).isoformat(), "status": "approved"}  # fmt: skip
    headers = {"Authorization": f"Bearer {run.ur_token}"}
    async with httpx.AsyncClient(base_url=run.ur_url, headers=headers, timeout=15) as client:
        call = lambda: client.post(f"/v1/episodes/{episode_id}/authorizations", json=body)  # noqa: E731
        await _until_done(run, call, "authorize", done=(201, 409))
    for n in range(DAYS):
        day = ServiceDayCompleted(episode_id=episode_id, service_date=today - timedelta(days=20 - n), revision=1,
                                  level=CareLevel.IOP, services=1, minutes=180, service_ids=[], per_diem_code="H0015",
                                  completed_at=utc_now())  # fmt: skip
        record = to_kafka(new_event(day, source="/stepwise/care-plan"))
        for _ in range(2):
            await _published(run, record.topic, record.value, record.key, record.headers)


async def _published(run: Run, topic: str, value: bytes, key: bytes, headers: Any) -> None:
    assert run.producer is not None
    deadline = time.monotonic() + DRAIN_LIMIT
    while True:
        try:
            await run.producer.send_and_wait(topic, value, key=key, headers=headers)
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            run.retries += 1
            await asyncio.sleep(0.5)


async def create_episodes(run: Run, count: int, over: float) -> None:
    """``count`` episodes, one starting every ``over / count`` seconds, each finished however long it takes."""
    headers = {"Authorization": f"Bearer {run.token}"}
    async with httpx.AsyncClient(base_url=run.intake_url, headers=headers, timeout=15) as client:
        started = []
        for _ in range(count):
            started.append(asyncio.create_task(create_episode(run, client)))
            await asyncio.sleep(over / count)
        await asyncio.gather(*started)


def welcomes(sink: SmtpSink, email: str) -> int:
    return sum(1 for message in sink.mailbox.to(email) if message["Subject"] == WELCOME)


async def drained(run: Run, sink: SmtpSink, fault: str, ended: float) -> None:
    """Wait until every episode so far is welcomed; after ``DRAIN_LIMIT`` the run goes on, counting them lost."""
    while any(welcomes(sink, email) == 0 for email in run.emails.values()):
        if time.monotonic() - ended > DRAIN_LIMIT:
            run.drains[fault] = float("inf")
            return
        await asyncio.sleep(0.2)
    run.drains[fault] = time.monotonic() - ended


@dataclass
class Stack:
    kafka: Server
    mongodb: Server
    sink: SmtpSink
    services: dict[str, ServiceProcess]
    mongodb_url: str
    kafka_servers: str


def kill_plan(rng: random.Random, kills: int, services: Iterable[str]) -> list[tuple[float, str]]:
    """(seconds to wait, service to SIGKILL) for each kill, drawn from ``rng``: the same seed, the same kills."""
    names = sorted(services)
    return [(rng.uniform(0.5, 2.5), rng.choice(names)) for _ in range(kills)]


async def _kill_services(stack: Stack, scale: Scale, rng: random.Random) -> None:
    for wait, name in kill_plan(rng, scale.kills, stack.services):
        await asyncio.sleep(wait)
        victim = stack.services[name]
        victim.kill()
        await asyncio.to_thread(victim.start)


async def _restart_broker(stack: Stack, *_: object) -> None:
    await asyncio.sleep(1)
    await asyncio.to_thread(stack.kafka.stop)
    await asyncio.sleep(2)
    await asyncio.to_thread(stack.kafka.start)


async def _mongodb_outage(stack: Stack, scale: Scale, _: random.Random) -> None:
    await asyncio.sleep(1)
    await asyncio.to_thread(stack.mongodb.stop)
    await asyncio.sleep(scale.mongodb_outage)
    await asyncio.to_thread(stack.mongodb.start)


async def _mail_outage(stack: Stack, scale: Scale, _: random.Random) -> None:
    await asyncio.sleep(1)
    stack.sink.pause()
    await asyncio.sleep(scale.mail_outage)
    stack.sink.resume()


async def _intake_down(stack: Stack, scale: Scale, _: random.Random) -> None:
    await asyncio.sleep(1)
    await asyncio.to_thread(stack.services["intake"].stop)
    await asyncio.sleep(scale.intake_outage)
    await asyncio.to_thread(stack.services["intake"].start)


FAULTS: dict[str, Callable[[Stack, Scale, random.Random], Awaitable[None]]] = {
    "SIGKILLs": _kill_services,
    "broker restart": _restart_broker,
    "MongoDB outage": _mongodb_outage,
    "mail relay outage": _mail_outage,
    "intake down": _intake_down,
}


async def _episodes_on(servers: str, topic: str) -> set[str]:
    """The episode ids (record keys) of every record on ``topic``."""
    return {record.key.decode() for record in await records_on(servers, topic) if record.key}


def _consumed_on_the_way() -> list[tuple[str, str]]:
    """(consumer group, topic) of each hop between an assessment and its welcome, and of the draw-down."""
    hops: list[tuple[EventHandlers, str, str]] = [
        (care_plan_handlers.EVENT_HANDLERS, CARE_PLAN_GROUP, "iop.assessment.completed"),
        (notifications_handlers.EVENT_HANDLERS, NOTIFICATIONS_GROUP, "iop.care_level.assigned"),
        (authorizations_handlers.EVENT_HANDLERS, AUTHORIZATIONS_GROUP, "iop.care_level.assigned"),
        (authorizations_handlers.EVENT_HANDLERS, AUTHORIZATIONS_GROUP, "iop.service_day.completed"),
        (caseload_handlers.EVENT_HANDLERS, CASELOAD_GROUP, "iop.care_level.assigned"),
    ]
    return [(lane_group(group, next(s.urgent for model, s in handlers.items() if model.event_type == topic)), topic)
            for handlers, group, topic in hops]  # fmt: skip


async def in_flight(stack: Stack, databases: dict[str, str]) -> list[str]:
    """What could still send a welcome (none: nothing): events in an outbox, a welcome not recorded as sent (a
    process killed while it sent, its lease not yet over), events a consumer group has not committed."""
    found = []
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url, tz_aware=True)
    try:
        for service, name in databases.items():
            for collection in await client[name].list_collection_names():
                if await client[name][collection].count_documents({"outbox_pending": {"$gt": 0}}, limit=1):
                    found.append(f"events in {service}'s {collection} outbox")
        welcomes_waiting = {"purpose": "welcome", "status": PENDING}
        if await client[databases["notifications"]][NOTIFICATIONS].count_documents(welcomes_waiting, limit=1):
            found.append("a welcome not recorded as sent")
    finally:
        await client.close()
    for group, topic in _consumed_on_the_way():
        if await unconsumed(stack.kafka_servers, group, topic):
            found.append(f"{topic} not all committed by {group}")
    return found


async def settled(
    in_flight: Callable[[], Awaitable[list[str]]],
    last_welcome: float,
    *,
    lease: float = DISPATCH_LEASE,
    limit: float = DRAIN_LIMIT,
    clock: Callable[[], float] = time.monotonic,
    poll: float = 0.5,
) -> list[str]:
    """Wait until anything sent twice would have shown: at least ``lease`` after the last welcome (at ``clock``
    time ``last_welcome``) and nothing in flight. Returns what was still in flight after ``limit`` (none: settled)."""
    began = clock()
    while True:
        left = await in_flight()
        if not left and clock() - last_welcome >= lease:
            return []
        if clock() - began > limit:
            return left
        await asyncio.sleep(poll)


async def count(run: Run, stack: Stack, databases: dict[str, str]) -> dict[str, int]:
    counts = [welcomes(stack.sink, email) for email in run.emails.values()]
    assessed = await _episodes_on(stack.kafka_servers, "iop.assessment.completed")
    assigned = await _episodes_on(stack.kafka_servers, "iop.care_level.assigned")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url, tz_aware=True)
    try:
        set_aside = sum(
            [await client[databases[name]][SET_ASIDE_COLLECTION].count_documents({}) for name in ("care_plan",
             "notifications", "authorizations", "caseload")]
        )  # fmt: skip
        projected = await _projected(client[databases["caseload"]])
    finally:
        await client.close()
    drawn = await _units_used(run)
    return {
        "episodes": len(run.emails),
        "welcomed": sum(1 for c in counts if c == 1),
        "lost": sum(1 for c in counts if c == 0),
        "duplicates": sum(1 for c in counts if c > 1),
        "assessed": len(assessed & set(run.emails)),
        "unanswered": len((assessed - assigned) & set(run.emails)),
        "set_aside": set_aside,
        "drawn_lost": sum(1 for used in drawn.values() if used < DAYS),
        "drawn_twice": sum(1 for used in drawn.values() if used > DAYS),
        "client_retries": run.retries,
        # caseload: every assigned episode of the run has its projection, at its level (none lost to a kill)
        "not_projected": len((assigned & set(run.emails)) - projected),
    }


async def _projected(database: Any) -> set[str]:
    """The episodes caseload's projection shows with a level."""
    meta = await database["meta"].find_one({"_id": "projection"})
    if meta is None:
        return set()
    return {
        document["_id"] async for document in database[meta["collection"]].find({"level": {"$ne": None}}, {"_id": 1})
    }


async def _units_used(run: Run) -> dict[str, float]:
    """Each episode's units used, as the authorizations service shows them (0: no authorization)."""
    used = {}
    headers = {"Authorization": f"Bearer {run.ur_token}"}
    async with httpx.AsyncClient(base_url=run.ur_url, headers=headers, timeout=15) as client:
        for episode_id in run.emails:
            found = (await client.get(f"/v1/episodes/{episode_id}/authorizations")).json()
            used[episode_id] = sum(authorization["units_used"] for authorization in found)
    return used


@contextlib.contextmanager
def stack_running(folder: Path) -> Iterator[tuple[Stack, dict[str, str], tuple[str, str]]]:
    token = f"faults-{secrets.token_urlsafe(8)}"
    notifications_token = f"faults-notifications-{secrets.token_urlsafe(8)}"
    ur_token = f"faults-ur-{secrets.token_urlsafe(8)}"
    (folder / "kafka").mkdir()
    with (
        apache_kafka(folder / "kafka") as kafka,
        mongodb_server(folder / "mongodb") as (mongodb, mongodb_url),
        SmtpSink(free_port()) as sink,
    ):
        names = ("intake", "care_plan", "notifications", "authorizations", "caseload")
        databases = {name: f"stepwise_{name}_faults" for name in names}
        ports = {name: free_port() for name in databases}
        servers = f"127.0.0.1:{kafka.port}"
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": servers,
            "MONGODB_URL": mongodb_url,
            "API_TOKENS": f"{token}:intake_staff,{ur_token}:utilization_review,{notifications_token}:notifications",
            "INTAKE_TOKEN": notifications_token,
            "INTAKE_URL": f"http://127.0.0.1:{ports['intake']}",
            "INTAKE_DB": databases["intake"],
            "CARE_PLAN_DB": databases["care_plan"],
            "NOTIFICATIONS_DB": databases["notifications"],
            "AUTHORIZATIONS_DB": databases["authorizations"],
            "UR_TEAM_EMAIL": "utilization-review@faults.test",
            "CASELOAD_DB": databases["caseload"],
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(sink.port),
            "OUTBOX_POLL_SECONDS": "0.5",
            "DISPATCH_POLL_SECONDS": "0.5",
            "OUTBOX_IDLE_POLL_SECONDS": "0.5",  # what a fault leaves is found as soon as before
            "DISPATCH_IDLE_POLL_SECONDS": "0.5",
            "KAFKA_FETCH_MAX_WAIT_MS": "500",
            "DISPATCH_LEASE_SECONDS": str(DISPATCH_LEASE),
            "QUIET_HOURS_START": "00:00",
            "QUIET_HOURS_END": "00:00",
            # notifications is ready only with a route to the care team and to the on-call clinician; a run ends
            # long before an alert could be escalated, so the on-call URL is never called.
            "CARE_TEAM_EMAIL": "care-team@faults.test",
            "ON_CALL_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/on-call",
            "WEBHOOK_SECRET": secrets.token_urlsafe(24),  # a webhook is signed: no secret, no start
            "SAFETY_ACK_SECONDS": "86400",
            "NOTIFICATIONS_POLICY_FILE": str(unhurried_notifications_policy(folder)),
        }
        services = {
            name: ServiceProcess(
                name, port, env | {"KAFKA_GROUP_INSTANCE_ID": f"{name}-faults"}, folder / f"{name}.log"
            )
            for name, port in ports.items()
        }
        try:
            for service in services.values():
                service.start()
            yield Stack(kafka, mongodb, sink, services, mongodb_url, servers), databases, (token, ur_token)
        finally:
            for service in services.values():
                service.stop()


async def _timed(fault: Awaitable[None]) -> float:
    """When ``fault`` ended (its outage over, the server back)."""
    await fault
    return time.monotonic()


async def main(scale: Scale, seed: int) -> dict[str, int]:
    print(f"faults: seed {seed} (--seed {seed} draws the same kills again)", flush=True)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="stepwise-faults-") as tmp:
        folder = Path(tmp)
        with stack_running(folder) as (stack, databases, (token, ur_token)):
            # The run's own producer (care_plan's days) retries through the broker restart: its connection errors
            # while the broker is down are expected, and would bury the run's report.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
            producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_servers, enable_idempotence=True)
            await producer.start()
            run = Run(f"http://127.0.0.1:{stack.services['intake'].port}", token,
                      f"http://127.0.0.1:{stack.services['authorizations'].port}", ur_token, producer)  # fmt: skip
            for name, fault in FAULTS.items():
                began, before = time.monotonic(), len(run.emails)
                episodes = create_episodes(run, scale.episodes_for(name), scale.lasts(name))
                ended = (await asyncio.gather(_timed(fault(stack, scale, rng)), episodes))[0]
                await drained(run, stack.sink, name, ended)
                drain = run.drains[name]
                after = f"drained {drain:.1f} s after it ended" if drain < DRAIN_LIMIT else "NOT DRAINED"
                print(f"faults: {name}: {len(run.emails) - before} episodes through it in {ended - began:.1f} s; "
                      f"{after}", flush=True)  # fmt: skip
            waiting = time.monotonic()
            left = await settled(lambda: in_flight(stack, databases), last_welcome=waiting)
            still = f"; NOT SETTLED, still in flight: {', '.join(left)}" if left else ""
            print(f"faults: settled {time.monotonic() - waiting:.1f} s after the last welcome (a lease: "
                  f"{DISPATCH_LEASE:.0f} s){still}", flush=True)  # fmt: skip
            counts = await count(run, stack, databases) | {"unsettled": len(left)}
            await producer.stop()
            drains = " ".join(f"{name.replace(' ', '_')}={seconds:.1f}s" for name, seconds in run.drains.items())
            print("faults: " + " ".join(f"{k}={v}" for k, v in counts.items()) + f" drains: {drains} seed={seed}",
                  flush=True)  # fmt: skip
            return counts


def options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="the smaller run `make test` includes")
    parser.add_argument("--episodes", type=int, help="override the number of episodes")
    parser.add_argument("--seed", type=int, help="draw the kills from this seed (a run prints its own first)")
    return parser.parse_args(argv)


def cli() -> None:
    arguments = options()
    scale = QUICK if arguments.quick else FULL
    if arguments.episodes:
        scale = dataclasses.replace(scale, episodes=arguments.episodes)
    seed = secrets.randbits(32) if arguments.seed is None else arguments.seed
    counts = asyncio.run(main(scale, seed))
    failed = any(counts[what] for what in ("lost", "duplicates", "set_aside", "unanswered", "unsettled", "drawn_lost",
                                           "drawn_twice", "not_projected"))  # fmt: skip
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    cli()
