"""Program groups through the broker: plans join the IOP morning group, one sheet records the whole session,
a member left off it is a no-show, attendance becomes services delivered and a service day; a full group
waitlists the next patient, tells the care team, and admits them when a place frees."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from services.common.utc import utc_now
from stepwise_contract import AttendanceReported, SheetEntry, new_event, to_kafka

from .conftest import (
    CARE_TEAM_EMAIL,
    TEEN_GROUP,
    TEEN_GROUP_CAPACITY,
    Episode,
    Stack,
    assess,
    care_plan_consuming_at,
    care_plan_of,
    events,
    eventually,
    instance_beside,
    mail_to,
    new_episode,
    wait_consumed,
)


async def planned(stack: Stack, program: str = "adult", track: str | None = None) -> tuple[Episode, dict[str, Any]]:
    episode = await new_episode(stack, program, track)
    assessment = await assess(stack, episode)
    assert assessment["recommended_level"] == "IOP"
    return episode, await eventually(lambda: care_plan_of(stack, episode), "the care plan")


async def test_one_sheet_records_the_group_and_the_member_left_off_is_a_no_show(
    stack: Stack, kafka_producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    members = [await planned(stack) for _ in range(4)]
    assert {plan["group"]["group_id"] for _, plan in members} == {"iop-am"}
    first = members[0][1]["schedule"]["sessions"][0]
    assert (first["kind"], first["group_id"]) == ("group", "iop-am")
    assert {plan["schedule"]["sessions"][0]["session_id"] for _, plan in members} == {first["session_id"]}
    (present, _), (late, _), (away, _), (left_off, _) = members
    session = f"/v1/groups/iop-am/sessions/{first['session_id']}"

    # The sheet is recorded once the session has begun, as a clinic does: care_plan's clock is shifted into it.
    during = datetime.fromisoformat(first["starts_at"]) + timedelta(minutes=5)
    with care_plan_consuming_at(stack, during, tmp_path / "cp-during.log"):
        async with stack.http("care_plan", "clinician") as care_plan:
            roster = (await care_plan.get(session)).json()
            assert {e.episode_id for e, _ in members} <= {line["episode_id"] for line in roster["members"]}
            sheet = {"attendance": [{"episode_id": present.episode_id, "status": "attended"},
                                    {"episode_id": late.episode_id, "status": "late", "minutes": 150},
                                    {"episode_id": away.episode_id, "status": "excused",
                                     "notice_given_at": (utc_now() - timedelta(days=1)).isoformat()}]}  # fmt: skip
            answer = await care_plan.post(f"{session}/attendance", json=sheet)
            assert answer.status_code == 200, answer.text
            assert [line["outcome"] for line in answer.json()["lines"]] == ["recorded"] * 3
            assert left_off.episode_id in answer.json()["not_on_sheet"]
            family = {"kind": "family", "starts_at": (during + timedelta(days=2)).isoformat()}
            no_consent = await care_plan.post(f"/v1/episodes/{present.episode_id}/appointments", json=family)
            assert no_consent.status_code == 409, no_consent.text  # asked at intake, with care_plan's own token

        # The same sheet again, as a command from the EHR: nothing changes, nothing is set aside.
        lines = [SheetEntry.model_validate(line) for line in sheet["attendance"]]
        command = AttendanceReported(schema_version=2, group_id="iop-am", session_id=first["session_id"],
                                     attendance=lines, reported_at=utc_now())  # fmt: skip
        record = to_kafka(new_event(command, source="/ehr/group-sheet"))
        sent = await kafka_producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)
        await wait_consumed(stack, "care_plan", record.topic, sent.partition, sent.offset)
    async with stack.http("care_plan", "admin") as admin:
        shelved = (await admin.get("/v1/set-aside-events", params={"topic": record.topic})).json()
    assert not [entry for entry in shelved if entry["offset"] == sent.offset and entry["partition"] == sent.partition]

    # Services delivered for the two who came (a late arrival counts its minutes), once each, and their day.
    delivered = {}
    for member in (present, late):
        [service] = await eventually(functools.partial(events, stack, "iop.service.delivered", member), "a service")
        delivered[member.episode_id] = service.data
    assert {(s.code, s.units, s.group_id, s.kind, s.level) for s in delivered.values()} == {
        ("90853", 1, "iop-am", "group", "IOP")
    }
    assert (delivered[present.episode_id].minutes, delivered[late.episode_id].minutes) == (180, 150)
    days = {}
    for member in (present, late):
        [day] = await eventually(functools.partial(events, stack, "iop.service_day.completed", member), "a service day")
        days[member.episode_id] = day.data
    assert (days[present.episode_id].per_diem_code, days[present.episode_id].services) == ("H0015", 1)
    assert days[late.episode_id].per_diem_code is None  # 2.5 hours: short of the IOP day's 3
    assert await events(stack, "iop.service.delivered", away) == []  # an excused absence is no service

    # After the session's end and the grace period, the member left off the sheet is a no-show; nobody else.
    deadline = datetime.fromisoformat(first["ends_at"]) + timedelta(minutes=30)
    offset = (deadline - datetime.now(UTC)).total_seconds() + 120
    env = {"CLOCK_OFFSET_SECONDS": str(offset), "TIMER_POLL_SECONDS": "0.2", "KAFKA_CONSUMERS_ENABLED": "0"}
    with instance_beside(stack, "care_plan", env | {"KAFKA_GROUP_INSTANCE_ID": ""}, tmp_path / "cp.log"):
        [missed] = await eventually(lambda: events(stack, "iop.session.missed", left_off), "the no-show")
    assert (missed.data.session_id, missed.data.detected) == (first["session_id"], "no_record")
    for member in (present, late, away):
        assert await events(stack, "iop.session.missed", member) == []
        assert len(await events(stack, "iop.service.delivered", member)) == (member is not away)


async def test_a_full_group_waitlists_the_next_patient_and_admits_them_when_a_place_frees(stack: Stack) -> None:
    seated = [await planned(stack, "adolescent") for _ in range(TEEN_GROUP_CAPACITY)]
    assert {plan["group"]["group_id"] for _, plan in seated} == {TEEN_GROUP}
    waiting, plan = await planned(stack, "adolescent")
    assert (plan["group"], plan["waitlist"]["group_ids"], plan["schedule"]["sessions"]) == (None, [TEEN_GROUP], [])

    [waitlisted] = await eventually(lambda: events(stack, "iop.group.waitlisted", waiting), "the waitlist event")
    assert (waitlisted.data.position, waitlisted.data.group_ids) == (1, [TEEN_GROUP])
    subject = f"Waitlisted for a IOP morning group: episode {waiting.episode_id}"
    [told] = await mail_to(stack, CARE_TEAM_EMAIL, subject=subject)
    assert "number 1 on the waitlist" in told.get_content()
    [welcome] = await mail_to(stack, waiting.email, subject="Your session schedule")
    assert "Your group is full just now" in welcome.get_content()
    async with stack.http("care_plan", "clinician") as care_plan:
        group = (await care_plan.get(f"/v1/groups/{TEEN_GROUP}")).json()
        assert (group["places_left"], [w["episode_id"] for w in group["waitlist"]]) == (0, [waiting.episode_id])

        # A member leaves: the one waiting takes the place from the group's next session.
        leaving = seated[0][0]
        discharged = await care_plan.post(f"/v1/episodes/{leaving.episode_id}/discharge",
                                          json={"reason_code": "other"})  # fmt: skip
        assert discharged.status_code == 200, discharged.text

    async def joined() -> dict[str, Any] | None:
        current = await care_plan_of(stack, waiting)
        return current if current is not None and current["group"] is not None else None

    admitted = await eventually(joined, "a place in the group")
    assert admitted["group"]["group_id"] == TEEN_GROUP and admitted["waitlist"] is None
    assert admitted["schedule"]["sessions"][0]["group_id"] == TEEN_GROUP
    changed = await eventually(lambda: events(stack, "iop.schedule.changed", waiting), "the new calendar")
    assert [event.data.reason for event in changed] == ["joined_group"]
    await mail_to(stack, waiting.email, subject="Your session schedule has changed")


async def test_an_evening_adult_joins_the_evening_group_and_a_track_change_moves_the_plan(stack: Stack) -> None:
    episode, plan = await planned(stack, track="evening")  # the track given at intake, on the episode
    assert (plan["group"]["group_id"], plan["schedule"]["track"]) == ("iop-pm", "evening")
    assert {s["group_id"] for s in plan["schedule"]["sessions"]} == {"iop-pm"}
    [completed] = await eventually(lambda: events(stack, "iop.assessment.completed", episode), "the assessment")
    assert completed.data.track == "evening"
    [assigned] = await eventually(lambda: events(stack, "iop.care_level.assigned", episode), "the assignment")
    assert assigned.data.schedule.track == "evening"

    async with stack.http("care_plan", "clinician") as care_plan:
        moved = await care_plan.put(f"/v1/episodes/{episode.episode_id}/track", json={"track": "morning"})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["group"]["group_id"], moved.json()["schedule"]["track"]) == ("iop-am", "morning")
    [changed] = await eventually(lambda: events(stack, "iop.schedule.changed", episode), "the new calendar")
    assert changed.data.reason == "track_changed"
    assert {s.group_id for s in changed.data.schedule.sessions} == {"iop-am"}
    await mail_to(stack, episode.email, subject="Your session schedule has changed")


async def test_an_adolescent_joins_an_adolescents_group_never_the_adults(stack: Stack) -> None:
    _, plan = await planned(stack, "adolescent", track="evening")
    assert plan["group"]["group_id"] == "iop-teen-pm"
    assert {s["group_id"] for s in plan["schedule"]["sessions"]} == {"iop-teen-pm"}
