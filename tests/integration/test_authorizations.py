"""The utilization-review desk on the real broker and store: care_plan's events (published here as care_plan
publishes them, for dates a test can choose) drawn down live against a coordinator's authorizations, what the
service says as events, and the worklist. Issue 26's "Done when"."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aiokafka import AIOKafkaProducer

from services.common.utc import utc_now
from stepwise_contract import (
    CareLevel,
    CareLevelAssigned,
    CareLevelChanged,
    CloudEvent,
    EventData,
    Schedule,
    ScheduledSession,
    ServiceDayCompleted,
    ServiceDelivered,
    new_event,
    to_kafka,
)

from .conftest import Stack, at_least, events, eventually

ZONE = ZoneInfo("America/New_York")  # the services' default clinic zone
CARE_PLAN = "/stepwise/care-plan"


def weekdays(start: date, count: int, step: int = 1) -> list[date]:
    found: list[date] = []
    on = start
    while len(found) < count:
        if on.weekday() < 5:
            found.append(on)
        on += timedelta(days=step)
    return found


def today() -> date:
    return utc_now().astimezone(ZONE).date()


def calendar(days: list[date], group: str = "iop-am") -> Schedule:
    sessions = [ScheduledSession(session_id=f"{group}-{on:%Y%m%d}", group_id=group,
                                 starts_at=datetime.combine(on, time(9), ZONE),
                                 ends_at=datetime.combine(on, time(12), ZONE)) for on in days]  # fmt: skip
    return Schedule(timezone=str(ZONE), track="morning", days_per_week=5, hours_per_session=3, weeks=8,
                    sessions=sessions)  # fmt: skip


def service_day(episode_id: str, on: date, level: str = "IOP", code: str | None = "H0015") -> ServiceDayCompleted:
    return ServiceDayCompleted(episode_id=episode_id, service_date=on, revision=1, level=CareLevel(level), services=1,
                               minutes=180, service_ids=[f"iop-am-{on:%Y%m%d}"], per_diem_code=code,
                               completed_at=utc_now())  # fmt: skip


async def publish(producer: AIOKafkaProducer, *items: EventData | CloudEvent[Any]) -> None:
    for item in items:
        event = item if isinstance(item, CloudEvent) else new_event(item, source=CARE_PLAN)
        record = to_kafka(event)
        await producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)


async def authorize(stack: Stack, episode_id: str, **terms: Any) -> dict[str, Any]:
    body = {"payer": "some-plan", "authorization_number": f"PA-{uuid.uuid4().hex[:6]}", "level": "IOP", "unit": "day",
            "units_authorized": 10, "start_date": (today() - timedelta(days=40)).isoformat(),
            "end_date": (today() + timedelta(days=90)).isoformat(), "status": "approved"} | terms  # fmt: skip
    async with stack.http("authorizations", "utilization_review") as ur:
        response = await ur.post(f"/v1/episodes/{episode_id}/authorizations", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def authorizations(stack: Stack, episode_id: str) -> list[dict[str, Any]]:
    async with stack.http("authorizations", "utilization_review") as ur:
        return (await ur.get(f"/v1/episodes/{episode_id}/authorizations")).json()  # type: ignore[no-any-return]


async def used(stack: Stack, episode_id: str, units: float) -> dict[str, Any] | None:
    [found] = await authorizations(stack, episode_id)
    return found if found["units_used"] == units else None


async def test_ten_days_drawn_down_say_units_low_then_review_due_for_exhaustion(
    stack: Stack, kafka_producer: AIOKafkaProducer
) -> None:
    episode_id = str(uuid.uuid4())
    await publish(kafka_producer, CareLevelAssigned(
        episode_id=episode_id, level=CareLevel.IOP, status="active", assigned_at=utc_now(), assessment_id="a",
        schedule=calendar(weekdays(today(), 25)), rationale=[], policy_version="test"))  # fmt: skip
    await authorize(stack, episode_id)
    attended = [service_day(episode_id, on) for on in weekdays(today() - timedelta(days=30), 8)]
    first = new_event(attended[0], source=CARE_PLAN)
    await publish(kafka_producer, first, *attended[1:6], first)  # six days, the first delivered twice
    await eventually(lambda: used(stack, episode_id, 6), "six days drawn (a redelivery counted once)")
    [low] = await eventually(lambda: events(stack, "iop.authorization.units_low", episode_id), "units low")
    assert (low.data.units_remaining, low.data.units_scheduled) == (4, 5)  # five weekdays in the next seven days
    assert await events(stack, "iop.authorization.review_due", episode_id) == []

    await publish(kafka_producer, *attended[6:])
    [due] = await eventually(lambda: events(stack, "iop.authorization.review_due", episode_id), "review due")
    # The review is due two business days before the last unit goes. On a weekday, today is a session: three units
    # left run out two business days ahead, so the seventh day makes the review due; on a weekend the eighth does.
    assert due.data.reason == "exhaustion" and due.data.units_remaining == (2 if today().weekday() >= 5 else 3)
    shown = await eventually(lambda: used(stack, episode_id, 8), "eight days drawn")
    assert (shown["units_remaining"], shown["review_reason"]) == (2, "exhaustion")
    assert shown["projected_exhaustion_on"] == weekdays(today(), 2)[-1].isoformat()
    changed = await events(stack, "iop.authorization.changed", episode_id)
    assert changed and all(shown["authorization_number"] not in e.model_dump_json() for e in changed)


async def test_a_step_up_to_php_under_an_iop_authorization(stack: Stack, kafka_producer: AIOKafkaProducer) -> None:
    episode_id = str(uuid.uuid4())
    ahead = weekdays(today(), 10)
    await publish(kafka_producer, CareLevelAssigned(
        episode_id=episode_id, level=CareLevel.IOP, status="active", assigned_at=utc_now(), assessment_id="a",
        schedule=calendar(ahead), rationale=[], policy_version="test"))  # fmt: skip
    await authorize(stack, episode_id)
    await publish(kafka_producer, CareLevelChanged(
        episode_id=episode_id, from_level=CareLevel.IOP, to_level=CareLevel.PHP, direction="up",
        recommendation_id="r", changed_at=utc_now(), status="active", schedule=calendar(ahead, "php-am")),
        service_day(episode_id, today() - timedelta(days=1), level="PHP", code="H0035"))  # fmt: skip
    [mismatch] = await eventually(lambda: events(stack, "iop.authorization.level_mismatch", episode_id), "mismatch")
    assert (mismatch.data.clinical_level, mismatch.data.authorized_level) == ("PHP", "IOP")
    [unauthorized] = await eventually(lambda: events(stack, "iop.service.unauthorized", episode_id), "the PHP day")
    assert (unauthorized.data.item, unauthorized.data.reason, unauthorized.data.code) == ("day", "wrong_level", "H0035")


async def test_a_voided_service_gives_its_unit_back(stack: Stack, kafka_producer: AIOKafkaProducer) -> None:
    episode_id = str(uuid.uuid4())
    await authorize(stack, episode_id, unit="session", units_authorized=20)
    days = weekdays(today() - timedelta(days=10), 2)

    def delivered(on: date, revision: int = 1, status: str = "delivered") -> ServiceDelivered:
        return ServiceDelivered.model_validate({
            "episode_id": episode_id, "service_id": f"iop-am-{on:%Y%m%d}", "revision": revision, "status": status,
            "session_id": f"iop-am-{on:%Y%m%d}", "kind": "group", "group_id": "iop-am", "service_date": on,
            "minutes": 180 if status == "delivered" else 0, "code": "90853", "units": 1, "level": "IOP",
            "attendance": "attended" if status == "delivered" else "missed", "recorded_at": utc_now()})  # fmt: skip

    await publish(kafka_producer, delivered(days[0]), delivered(days[1]))
    await eventually(lambda: used(stack, episode_id, 2), "two sessions drawn")
    await publish(kafka_producer, delivered(days[0], revision=2, status="voided"), delivered(days[1]))
    await eventually(lambda: used(stack, episode_id, 1), "the voided session given back")
    changed = await eventually(lambda: at_least(events(stack, "iop.authorization.changed", episode_id), 4), "4 views")
    assert [e.data.units_used for e in changed] == [0, 1, 2, 1]  # the second delivery of days[1] changed nothing


async def test_the_worklist_orders_reviews_by_due_date(stack: Stack) -> None:
    payer = f"plan-{uuid.uuid4().hex[:8]}"
    later, sooner = str(uuid.uuid4()), str(uuid.uuid4())
    recorded = {}
    for episode_id, weeks in ((later, 3), (sooner, 1)):
        on = (today() + timedelta(weeks=weeks)).isoformat()
        recorded[episode_id] = await authorize(stack, episode_id, payer=payer, next_review_on=on)
    async with stack.http("authorizations", "utilization_review") as ur:
        response = await ur.get("/v1/reviews", params={"payer": payer})
        refused = await ur.get("/v1/reviews", params={"reason": "tomorrow"})
        reviewed = await ur.post(
            f"/v1/authorizations/{recorded[sooner]['authorization_id']}/reviews",
            json={"outcome": "approved", "next_review_on": (today() + timedelta(weeks=5)).isoformat()},
        )
        after = await ur.get("/v1/reviews", params={"payer": payer})
    assert [line["episode_id"] for line in response.json()] == [sooner, later]
    assert reviewed.status_code == 201, reviewed.text  # found by its id on the real store
    assert [line["episode_id"] for line in after.json()] == [later, sooner]
    assert all(line["reason"] == "next_review" for line in response.json())
    assert refused.status_code == 422
    async with httpx.AsyncClient(base_url=stack.services["authorizations"].url) as anonymous:
        assert (await anonymous.get("/v1/reviews")).status_code == 401
