"""Attendance reported by other systems on iop.attendance.reported: applied once, or set aside with its reason.

Attendance is recorded once a session has begun, as a clinic does: the reports that must be applied go to a
care_plan whose clock is shifted into the session (``care_plan_consuming_at``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from services.common.utc import utc_now
from stepwise_contract import AttendanceReported, new_event, to_kafka

from .conftest import (
    Stack,
    assess,
    care_plan_consuming_at,
    care_plan_of,
    events_of,
    eventually,
    first_session_start,
    mail_to,
    new_episode,
    session_ids,
    settled,
    wait_consumed,
)

TOPIC = AttendanceReported.event_type


async def report(producer: AIOKafkaProducer, episode_id: str, session_id: str, status: str, **extra: object) -> Any:
    data = AttendanceReported(episode_id=episode_id, session_id=session_id, status=status, reported_at=utc_now(),
                              **extra)  # fmt: skip
    record = to_kafka(new_event(data, source="/ehr/front-desk"))
    return await producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)


async def begun(stack: Stack, episode: Any, index: int = 0) -> Any:
    """Five minutes into the episode's session ``index``."""
    plan = await eventually(lambda: care_plan_of(stack, episode), "the care plan")
    return first_session_start(plan, index) + timedelta(minutes=5)


async def test_a_reported_miss_is_applied_once_even_when_redelivered(
    stack: Stack, kafka_producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    episode = await new_episode(stack)
    await assess(stack, episode)
    await mail_to(stack, episode.email, subject="Your session schedule")

    [first, *_] = await session_ids(stack, episode)
    with care_plan_consuming_at(stack, await begun(stack, episode), tmp_path / "cp.log"):
        data = AttendanceReported(episode_id=episode.episode_id, session_id=first, status="missed",
                                  reported_at=utc_now())  # fmt: skip
        record = to_kafka(new_event(data, source="/ehr/front-desk"))
        for _ in range(2):  # the same command twice: a redelivery
            sent = await kafka_producer.send_and_wait(record.topic, record.value, key=record.key,
                                                      headers=record.headers)  # fmt: skip
        await wait_consumed(stack, "care_plan", TOPIC, sent.partition, sent.offset)

        plan = await care_plan_of(stack, episode)
        assert plan is not None and plan["attendance"][first]["status"] == "missed"
    [missed] = await eventually(lambda: events_of(stack, "iop.session.missed", episode.episode_id), "the miss")
    await wait_consumed(stack, "notifications", missed.topic, missed.partition, missed.offset)
    # The consumer commits once the outreach is stored; the dispatcher sends it after that.
    log = await eventually(lambda: settled(stack, episode), "every message settled")
    outreach = [entry for entry in log if entry["purpose"] == "missed_session_outreach"]
    assert sorted((entry["channel"], entry["status"]) for entry in outreach) == [("email", "sent"), ("sms", "sent")]
    assert len(stack.mailbox.to(episode.email)) == 2  # welcome + one outreach


async def test_excused_with_notice_and_late_are_recorded(
    stack: Stack, kafka_producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    episode = await new_episode(stack)
    await assess(stack, episode)
    first, second, *_ = await session_ids(stack, episode)
    excused = await report(kafka_producer, episode.episode_id, first, "excused", notice_given_at="2026-11-20T09:00:00Z")
    await wait_consumed(stack, "care_plan", TOPIC, excused.partition, excused.offset)  # ahead of the session
    with care_plan_consuming_at(stack, await begun(stack, episode, 1), tmp_path / "cp.log"):
        sent = await report(kafka_producer, episode.episode_id, second, "late")
        await wait_consumed(stack, "care_plan", TOPIC, sent.partition, sent.offset)
    plan = await care_plan_of(stack, episode)
    assert plan is not None
    assert plan["attendance"][first]["notice_given_at"] == "2026-11-20T09:00:00Z"
    assert {sid: a["status"] for sid, a in plan["attendance"].items()} == {first: "excused", second: "late"}


async def test_reports_that_cannot_be_applied_are_set_aside_with_their_reason(
    stack: Stack, kafka_producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    episode = await new_episode(stack)
    await assess(stack, episode)
    # The report that applies names the first session (once it has begun: an earlier one with no record would be
    # a no-show by then); the rejected ones name the third, ahead.
    first, _, third, *_ = await session_ids(stack, episode)
    with care_plan_consuming_at(stack, await begun(stack, episode), tmp_path / "cp.log"):
        unknown = await report(kafka_producer, episode.episode_id, "s999", "attended")
        no_plan = await report(kafka_producer, "no-such-episode", third, "attended")
        wrong_notice = await report(kafka_producer, episode.episode_id, third, "late", notice_given_at=utc_now())
        after = await report(kafka_producer, episode.episode_id, first, "attended")  # same partition as two above
        for sent in (no_plan, after):
            await wait_consumed(stack, "care_plan", TOPIC, sent.partition, sent.offset)

    async with stack.http("care_plan", "admin") as care_plan:
        set_aside = (await care_plan.get("/v1/set-aside-events", params={"topic": TOPIC})).json()
    reasons = {(entry["partition"], entry["offset"]): entry["reason"] for entry in set_aside}
    assert reasons[(unknown.partition, unknown.offset)].startswith("rejected: unknown_session")
    assert reasons[(no_plan.partition, no_plan.offset)].startswith("rejected: no_care_plan")
    assert reasons[(wrong_notice.partition, wrong_notice.offset)].startswith("rejected: notice_without_excuse")
    plan = await care_plan_of(stack, episode)
    assert plan is not None and set(plan["attendance"]) == {first}  # the partition moved on


async def test_a_report_before_the_session_begins_is_set_aside_saying_so(
    stack: Stack, kafka_producer: AIOKafkaProducer
) -> None:
    episode = await new_episode(stack)
    await assess(stack, episode)
    first, second, *_ = await session_ids(stack, episode)
    plan = await care_plan_of(stack, episode)
    assert plan is not None
    early = await report(kafka_producer, episode.episode_id, first, "attended")  # before Monday's 09:00, say
    missed = await report(kafka_producer, episode.episode_id, second, "missed")
    ahead = await report(kafka_producer, episode.episode_id, second, "excused", notice_given_at=utc_now())
    await wait_consumed(stack, "care_plan", TOPIC, ahead.partition, ahead.offset)

    async with stack.http("care_plan", "admin") as care_plan:
        set_aside = (await care_plan.get("/v1/set-aside-events", params={"topic": TOPIC})).json()
    reasons = {(entry["partition"], entry["offset"]): entry["reason"] for entry in set_aside}
    for sent, session_id, index in ((early, first, 0), (missed, second, 1)):
        starts = first_session_start(plan, index).isoformat()
        assert reasons[(sent.partition, sent.offset)].startswith(
            f"rejected: session_not_started: session '{session_id}' starts at {starts}"
        )
    current = await care_plan_of(stack, episode)
    assert current is not None and {sid: a["status"] for sid, a in current["attendance"].items()} == {
        second: "excused"
    }  # an excused absence is taken ahead
    for topic in ("iop.service.delivered", "iop.service_day.completed", "iop.session.missed"):
        assert await events_of(stack, topic, episode.episode_id) == []  # nothing billed, no outreach
