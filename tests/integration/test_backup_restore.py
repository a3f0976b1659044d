"""The restore of docs/operations.md on the running stack: a quiet dump of the three services' databases, the services
stopped, the databases wiped and restored, the services started: what was there is there, nothing is sent twice,
and new work flows."""

from __future__ import annotations

import io
from typing import Any

from pymongo import AsyncMongoClient

from tools.deploy import backup

from .conftest import WELCOME, Stack, assess, care_plan_of, eventually, mail_to, new_episode

KEY = b"the clinic's backup key\n"


async def pending_events(client: AsyncMongoClient[Any], databases: list[str]) -> int:
    """Events stored but not yet relayed, in every collection of ``databases``."""
    pending = 0
    for name in databases:
        for collection in await client[name].list_collection_names():
            async for document in client[name][collection].find({"outbox_pending": {"$gt": 0}}, {"outbox_pending": 1}):
                pending += document["outbox_pending"]
    return pending


async def test_a_quiet_dump_restored_after_a_wipe_loses_nothing_and_sends_nothing_twice(stack: Stack) -> None:
    before = await new_episode(stack)
    await assess(stack, before)
    await mail_to(stack, before.email, subject=WELCOME)
    plan_before = await eventually(lambda: care_plan_of(stack, before), "the care plan")
    client: AsyncMongoClient[Any] = AsyncMongoClient(stack.backends.mongodb_url, tz_aware=True)
    databases = list(stack.databases.values())
    try:
        await eventually(lambda: _none_pending(client, databases), "every outbox relayed (a quiet dump)")
        mails_before = len(stack.mailbox.to(before.email))
        services = list(stack.services.values())
        for service in services:  # SIGTERM to all first: they shut down together
            if service.process and service.process.poll() is None:
                service.process.terminate()
        for service in services:
            service.stop()
        dump = io.BytesIO()
        taken = await backup.dump(client, databases, dump, KEY)
        for name in databases:
            await client.drop_database(name)
        dump.seek(0)
        restored = await backup.restore(client, dump, KEY)
        assert restored.counts == taken.counts
        for service in services:
            service.start(wait=False)
        for service in services:
            service.wait_ready()
    finally:
        await client.close()

    assert await care_plan_of(stack, before) == plan_before
    after = await new_episode(stack)  # new work flows through all three services
    await assess(stack, after)
    await mail_to(stack, after.email, subject=WELCOME)
    assert len(stack.mailbox.to(before.email)) == mails_before, "a message went out again after the restore"


async def _none_pending(client: AsyncMongoClient[Any], databases: list[str]) -> bool | None:
    return True if await pending_events(client, databases) == 0 else None
