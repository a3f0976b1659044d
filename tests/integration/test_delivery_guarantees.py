"""No event lost, none applied twice: crashes (SIGKILL), redelivery, malformed records, two instances."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from .conftest import (
    WELCOME,
    Stack,
    assess,
    care_plan_of,
    events_of,
    eventually,
    instance_beside,
    mail_to,
    new_episode,
    wait_consumed,
)


async def test_event_stored_before_a_crash_is_published_after_restart(stack: Stack) -> None:
    """intake dies after the atomic write and before the relay publishes: the event still goes out, once."""
    episode = await new_episode(stack)
    stack.restart("intake", extra_env={"OUTBOX_RELAY_ENABLED": "false"})
    try:
        assessment = await assess(stack, episode)
        stored = await stack.database("intake")["episodes"].find_one({"_id": episode.episode_id})
        assert stored["outbox_pending"] == len(stored["outbox"]) == 2  # iop.assessment.completed, iop.measure.recorded
        assert await events_of(stack, "iop.assessment.completed", episode.episode_id) == []
    finally:
        stack.restart("intake")  # SIGKILL, then an ordinary start

    await mail_to(stack, episode.email, subject=WELCOME)
    [published] = await events_of(stack, "iop.assessment.completed", episode.episode_id)
    assert dict(published.headers)["ce_subject"] == episode.episode_id.encode()
    plan = await care_plan_of(stack, episode)
    assert plan is not None and plan["assessment_id"] == assessment["assessment_id"]

    async def outbox_emptied() -> bool:  # once the broker acknowledged them, with the removals of their moment
        stored = await stack.database("intake")["episodes"].find_one({"_id": episode.episode_id})
        return (stored["outbox_pending"], stored["outbox"]) == (0, [])

    await eventually(outbox_emptied, "intake's relay to remove what it published")


async def test_care_plan_killed_mid_burst_applies_every_assessment_once(stack: Stack) -> None:
    episodes = [await new_episode(stack) for _ in range(6)]
    await asyncio.gather(*(assess(stack, episode) for episode in episodes))

    async def some_plan_stored() -> bool:
        return any([await care_plan_of(stack, episode) for episode in episodes])

    await eventually(some_plan_stored, "care_plan to store a first plan")
    stack.services["care_plan"].kill()  # mid-flow: some plans stored, some events maybe not yet committed
    stack.services["care_plan"].start()

    for episode in episodes:
        await mail_to(stack, episode.email, subject=WELCOME)
        assert len(await events_of(stack, "iop.care_level.assigned", episode.episode_id)) == 1
    last = max(
        [record for e in episodes for record in await events_of(stack, "iop.care_level.assigned", e.episode_id)],
        key=lambda record: record.offset,
    )
    await wait_consumed(stack, "notifications", last.topic, last.partition, last.offset)
    assert [len(stack.mailbox.to(episode.email)) for episode in episodes] == [1] * len(episodes)


async def test_notifications_down_during_the_flow_sends_each_message_once_after_restart(stack: Stack) -> None:
    stack.services["notifications"].kill()
    try:
        episode = await new_episode(stack)
        await assess(stack, episode)
        await eventually(lambda: events_of(stack, "iop.care_level.assigned", episode.episode_id), "the event")
    finally:
        stack.services["notifications"].start()
    await mail_to(stack, episode.email, subject=WELCOME)
    [assigned] = await events_of(stack, "iop.care_level.assigned", episode.episode_id)
    await wait_consumed(stack, "notifications", assigned.topic, assigned.partition, assigned.offset)
    assert len(stack.mailbox.to(episode.email)) == 1


async def test_notifications_killed_while_sending_sends_the_message_once_after_restart(stack: Stack) -> None:
    episode = await new_episode(stack)
    notifications = stack.services["notifications"]
    stack.mailbox.holding.add(episode.email)  # the SMTP server keeps the client waiting at RCPT TO
    try:
        await assess(stack, episode)

        async def mid_send() -> bool:
            return episode.email in stack.mailbox.stalled

        await eventually(mid_send, "the welcome to be half-way through SMTP")
        notifications.kill()  # SIGKILL: the claim (attempt 1) is stored, the message is not accepted
    finally:
        stack.mailbox.holding.discard(episode.email)
    notifications.start()

    async def sent() -> list[dict[str, Any]] | None:
        async with stack.http("notifications", "clinician") as client:
            params = {"episode_id": episode.episode_id, "purpose": "welcome", "status": "sent"}
            return (await client.get("/v1/notifications", params=params)).json() or None

    [entry] = await eventually(sent, "the welcome, sent after the claim's lease ran out")
    assert entry["attempts"] == 2  # the killed attempt and the one that went through
    assert len(stack.mailbox.to(episode.email)) == 1


async def test_redelivered_events_apply_once_and_send_one_email(stack: Stack, kafka_producer: AIOKafkaProducer) -> None:
    episode = await new_episode(stack)
    await assess(stack, episode)
    await mail_to(stack, episode.email, subject=WELCOME)
    plan_before = await care_plan_of(stack, episode)

    for topic, consumer in (("iop.assessment.completed", "care_plan"), ("iop.care_level.assigned", "notifications")):
        [original] = await events_of(stack, topic, episode.episode_id)
        duplicate = await kafka_producer.send_and_wait(
            topic, original.value, key=original.key, headers=list(original.headers)
        )
        await wait_consumed(stack, consumer, topic, duplicate.partition, duplicate.offset)

    assert await care_plan_of(stack, episode) == plan_before
    assigned = await events_of(stack, "iop.care_level.assigned", episode.episode_id)
    # Two records (the original and the one this test injected), one event: care_plan published nothing new.
    assert len({(dict(r.headers)["ce_source"], dict(r.headers)["ce_id"]) for r in assigned}) == 1
    assert len(stack.mailbox.to(episode.email)) == 1


async def test_malformed_events_are_set_aside_and_the_partition_moves_on(
    stack: Stack, kafka_producer: AIOKafkaProducer
) -> None:
    episode = await new_episode(stack)
    key = episode.episode_id.encode()
    topic = "iop.assessment.completed"
    headers = [
        ("ce_id", b"bad-1"),
        ("ce_source", b"/test"),
        ("ce_specversion", b"1.0"),
        ("ce_type", topic.encode()),
        ("ce_subject", key),
        ("ce_time", b"2026-11-23T10:00:00Z"),
        ("content-type", b"application/json"),
    ]
    bad = [
        await kafka_producer.send_and_wait(topic, b"{not json", key=key, headers=headers),
        await kafka_producer.send_and_wait(topic, b'{"episode_id": "x"}', key=key, headers=headers),
        await kafka_producer.send_and_wait(topic, b"{}", key=key, headers=[]),
    ]
    await assess(stack, episode)  # a valid event behind them on the same partition
    await mail_to(stack, episode.email, subject=WELCOME)

    async with stack.http("care_plan", "admin") as care_plan:
        response = await care_plan.get("/v1/set-aside-events", params={"topic": topic})
    assert response.status_code == 200
    reasons = {(entry["partition"], entry["offset"]): entry["reason"] for entry in response.json()}
    found = [reasons.get((meta.partition, meta.offset), "") for meta in bad]
    assert all(reason.startswith("malformed:") for reason in found), found
    assert "assessment_id" in found[1]  # names the missing field
    assert "value" not in response.json()[0]  # the raw value stays in the database


async def test_two_care_plan_instances_share_the_work_without_duplicates(stack: Stack, tmp_path: Path) -> None:
    # Dynamic membership for the temporary instance: it joins with a rebalance and leaves the group when it
    # stops, so its partitions return to the first instance at once (a static member would hold them until
    # the session timeout).
    env = {"KAFKA_GROUP_INSTANCE_ID": ""}
    log = tmp_path / "care_plan-2.log"
    topic = "iop.assessment.completed"
    with instance_beside(stack, "care_plan", env, log):
        theirs = await eventually(lambda: _assigned(log, topic), "the second instance's partitions")
        episodes = [await new_episode(stack) for _ in range(6)]
        while len([e for e in episodes if _partition(e.episode_id) in theirs]) < 2:
            episodes.append(await new_episode(stack))  # until some are sure to be the second instance's
        await asyncio.gather(*(assess(stack, episode) for episode in episodes))
        for episode in episodes:
            await mail_to(stack, episode.email, subject=WELCOME)
            assert len(await events_of(stack, "iop.care_level.assigned", episode.episode_id)) == 1
        second_log = await asyncio.to_thread(log.read_text)
        for episode in episodes:  # the second instance started the plans of its partitions
            assert (f"episode {episode.episode_id}: care level" in second_log) == (
                _partition(episode.episode_id) in theirs
            )
    # Its partitions went back to the first instance: work on every partition goes on.
    later = [await new_episode(stack) for _ in range(6)]
    await asyncio.gather(*(assess(stack, episode) for episode in later))
    for episode in later:
        await mail_to(stack, episode.email, subject=WELCOME)
    everyone = episodes + later
    assert [len(stack.mailbox.to(episode.email)) for episode in everyone] == [1] * len(everyone)


async def _assigned(log: Path, topic: str) -> set[int]:
    """The partitions of ``topic`` the instance logging to ``log`` was last given (FastStream logs them)."""
    text = await asyncio.to_thread(log.read_text, errors="replace")
    assignments = [line for line in text.splitlines() if "assigned to partitions:" in line]  # a lane's topics
    if not assignments:
        return set()
    pairs = re.findall(r"TopicPartition\(topic='([^']+)', partition=(\d+)\)", assignments[-1])
    return {int(partition) for named, partition in pairs if named == topic}


def _partition(episode_id: str, partitions: int = 3) -> int:
    """The partition an episode's events go to: Kafka's default partitioner over the key (the episode id)."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(episode_id.encode(), every, every))
