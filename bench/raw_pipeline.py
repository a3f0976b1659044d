"""The baseline of `make bench`: the same I/O per episode as Stepwise's pipeline, written with raw aiokafka,
pymongo and aiosmtplib, and none of Stepwise's guarantees (no outbox, no dedup, no leases, no consent checks).

Three stages, each its own process as the services are:

- ``intake``: a bare ASGI app (uvicorn, no framework) taking the three POSTs of an intake (patient, episode,
  assessment), one insert each; the assessment also produces a record to ``raw.assessed``; and the contact
  lookup ``GET /v1/contact/{episode}`` the last stage makes;
- ``care_plan``: consumes ``raw.assessed``, inserts the plan, produces to ``raw.assigned``;
- ``notifications``: consumes ``raw.assigned``, inserts the welcome, looks the contact up over HTTP, mails it
  through SMTP, marks it sent.

The consumers take what the broker has (``getmany``), apply the batch concurrently and commit after it: what a
careful engineer writes in an afternoon. Run by ``bench.pipeline``; alone:
``python -m bench.raw_pipeline STAGE --kafka HOST:PORT --mongodb URL --port N [--intake URL] [--smtp-port N]
[--counts FILE]``. With ``--counts``, each stage counts its store commands as the services do (PyMongo's command
monitoring, ``CommandCounts``) and keeps the totals in FILE (JSON, rewritten as they change): the benchmark reads
them before and after a run, as it scrapes the services' ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from pymongo import AsyncMongoClient, monitoring

from services.common.store_commands import IGNORED

ASSESSED, ASSIGNED = "raw.assessed", "raw.assigned"
TOPICS = (ASSESSED, ASSIGNED)
WELCOME = "Your session schedule"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class CommandCounts(monitoring.CommandListener):
    """Counts each command by name and collection as ``services/common/store_commands.py`` does (the same commands
    left out), and keeps the totals in ``path`` (rewritten at most every 0.1 s, and only when they changed)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._changed = threading.Event()
        threading.Thread(target=self._keep, daemon=True).start()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in IGNORED:
            return
        collection = event.command.get(event.command_name)
        with self._lock:
            self.counts[f"{event.command_name} {collection if isinstance(collection, str) else ''}"] += 1
        self._changed.set()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def _keep(self) -> None:
        self._write()
        while True:
            self._changed.wait()
            self._changed.clear()
            self._write()
            threading.Event().wait(0.1)

    def _write(self) -> None:
        with self._lock:
            text = json.dumps(dict(self.counts))
        with open(self.path + ".tmp", "w") as out:
            out.write(text)
        Path(self.path + ".tmp").replace(self.path)


LISTENERS: list[monitoring.CommandListener] = []
"""The stage's command counter (``--counts``), given to its MongoDB client."""


def mongo_client(url: str) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(url, event_listeners=LISTENERS)


def intake_app(mongodb: str, kafka: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    client = mongo_client(mongodb)
    database = client["raw_intake"]
    producer: AIOKafkaProducer | None = None

    async def answer(send: Send, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def read(receive: Receive) -> dict[str, Any]:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return json.loads(b"".join(chunks) or b"{}")  # type: ignore[no-any-return]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal producer
        if scope["type"] == "lifespan":
            await receive()
            producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
            await producer.start()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await producer.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
        parts = scope["path"].strip("/").split("/")[1:]  # the same /v1/... paths as Stepwise's intake
        if scope["method"] == "GET" and parts[0] == "contact":
            episode = await database["episodes"].find_one({"_id": parts[1]})
            patient = await database["patients"].find_one({"_id": episode["patient_id"]}) if episode else None
            await answer(send, 200 if patient else 404, {"email": patient["email"]} if patient else {})
            return
        body = await read(receive)
        if parts == ["patients"]:
            patient_id = str(uuid.uuid4())
            await database["patients"].insert_one({"_id": patient_id, **body})
            await answer(send, 201, {"patient_id": patient_id})
        elif parts[0] == "patients":
            episode_id = str(uuid.uuid4())
            await database["episodes"].insert_one({"_id": episode_id, "patient_id": parts[1], **body})
            await answer(send, 201, {"episode_id": episode_id})
        else:
            assessment_id = str(uuid.uuid4())
            await database["assessments"].insert_one({"_id": assessment_id, "episode_id": parts[1], **body})
            assert producer is not None
            value = json.dumps({"episode_id": parts[1], "assessment_id": assessment_id}).encode()
            await producer.send_and_wait(ASSESSED, value, key=parts[1].encode())
            await answer(send, 201, {"assessment_id": assessment_id})

    return app


async def consume(kafka: str, topic: str, group: str, apply: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=100)
            records: list[ConsumerRecord[bytes, bytes]] = [r for batch in batches.values() for r in batch]
            if records:
                await asyncio.gather(*(apply(json.loads(record.value or b"{}")) for record in records))
                await consumer.commit()
    finally:
        await consumer.stop()


async def care_plan(kafka: str, mongodb: str) -> None:
    client = mongo_client(mongodb)
    plans = client["raw_care_plan"]["plans"]
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()

    async def apply(event: dict[str, Any]) -> None:
        await plans.insert_one({"_id": event["episode_id"], "level": "iop", "assessment": event["assessment_id"]})
        value = json.dumps({"episode_id": event["episode_id"], "level": "iop"}).encode()
        await producer.send_and_wait(ASSIGNED, value, key=event["episode_id"].encode())

    await consume(kafka, ASSESSED, "raw.care_plan", apply)


async def notifications(kafka: str, mongodb: str, intake: str, smtp_port: int) -> None:
    client = mongo_client(mongodb)
    messages = client["raw_notifications"]["notifications"]
    http = httpx.AsyncClient(base_url=intake, timeout=10)

    async def apply(event: dict[str, Any]) -> None:
        episode_id = event["episode_id"]
        message_id = f"welcome-{episode_id}"
        await messages.insert_one({"_id": message_id, "episode_id": episode_id, "status": "pending"})
        contact = (await http.get(f"/v1/contact/{episode_id}")).json()
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = "clinic@example.org", contact["email"], WELCOME
        mail.set_content(f"Welcome. Your episode {episode_id} starts at level {event['level']}.")
        await aiosmtplib.send(mail, hostname="127.0.0.1", port=smtp_port)
        await messages.update_one({"_id": message_id}, {"$set": {"status": "sent"}})

    await consume(kafka, ASSIGNED, "raw.notifications", apply)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("stage", choices=("intake", "care_plan", "notifications"))
    parser.add_argument("--kafka", required=True)
    parser.add_argument("--mongodb", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--intake", default="")
    parser.add_argument("--smtp-port", type=int, default=25)
    parser.add_argument("--counts", default="", help="where to keep the stage's store command counts (JSON)")
    arguments = parser.parse_args()
    if arguments.counts:
        LISTENERS.append(CommandCounts(arguments.counts))
    if arguments.stage == "intake":
        uvicorn.run(intake_app(arguments.mongodb, arguments.kafka), host="127.0.0.1", port=arguments.port,
                    log_level="warning", access_log=False)  # fmt: skip
    elif arguments.stage == "care_plan":
        asyncio.run(care_plan(arguments.kafka, arguments.mongodb))
    else:
        asyncio.run(notifications(arguments.kafka, arguments.mongodb, arguments.intake, arguments.smtp_port))


if __name__ == "__main__":
    main()
