"""notifications' change path (changes.py) driven directly."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any
from unittest.mock import ANY

import httpx
import pytest

from services.common.auth import Principal, Role
from services.common.utc import assume_utc, utc_now
from services.notifications import changes
from services.notifications.changes import Messaging
from services.notifications.domain.messages import PlannedNotification, schedule_series
from services.notifications.store import FOREVER, NOTIFICATIONS, SAFETY_ALERTS
from stepwise_contract import SafetyAlertRaised
from tests.service.conftest import Clock, Events
from tests.service.fake_intake import FakeIntake
from tests.service.memory_mongo import MemoryDatabase
from tests.service.notifications.helpers import (
    ALUMNI_MESSAGES,
    SMS_PROVIDER,
    STAFF,
    alert,
    alumnus,
    assigned,
    calendar,
    care_plan_event,
    graduated,
    in_days,
    intake_event,
    log_of,
    session_missed,
    started,
)


async def test_ending_an_enrolment_says_whether_this_call_ended_it_and_decides_again_after_a_lost_write(
    events: Events, messaging: Messaging, intake: FakeIntake, monkeypatch: pytest.MonkeyPatch
) -> None:
    episode_id = await alumnus(events, messaging, intake)
    real_save = messaging.alumni.save
    saves: list[bool] = []

    async def first_loses(*args: Any) -> bool:
        saved = bool(saves) and await real_save(*args)  # the first write finds the enrolment changed meanwhile
        saves.append(saved)
        return saved

    monkeypatch.setattr(messaging.alumni, "save", first_loses)
    assert await changes.end_alumni_enrolment(messaging, episode_id, "opted_out") is True
    assert saves == [False, True]
    enrolment = await messaging.alumni.get(episode_id)
    assert enrolment is not None and (enrolment.status, enrolment.left_reason) == ("left", "opted_out")
    assert await changes.end_alumni_enrolment(messaging, episode_id, "new_episode") is False  # ended already
    assert await changes.end_alumni_enrolment(messaging, "no-such-episode", "opted_out") is False


async def test_a_supports_opt_out_cancels_what_waits_under_that_consent_only(messaging: Messaging) -> None:
    planned = [PlannedNotification(f"n-{consent}", "e1", "appointment_reminder", "family", "email", consent_id=consent)
               for consent in ("c1", "c2")]  # fmt: skip
    assert await messaging.store.add(planned, {"event_id": "x", "event_source": "/test", "event_type": "t"}) == 2
    recorded, added = await changes.opt_out(messaging, "e1", "family", "c1")
    assert added and recorded.consent_id == "c1"
    assert sorted((n.consent_id, n.status) for n in await log_of(messaging, "e1")) == [
        ("c1", "cancelled"),
        ("c2", "pending"),
    ]


async def test_an_alert_is_acknowledged_once_in_the_role_it_was_acknowledged_in_even_after_a_lost_write(
    events: Events, messaging: Messaging, intake: FakeIntake, monkeypatch: pytest.MonkeyPatch
) -> None:
    await alert(events, intake)
    real_save = messaging.safety.alerts.save
    saves: list[bool] = []

    async def first_loses(*args: Any) -> bool:
        saved = bool(saves) and await real_save(*args)  # the first write finds the alert changed meanwhile
        saves.append(saved)
        return saved

    monkeypatch.setattr(messaging.safety.alerts, "save", first_loses)
    by = Principal(Role.CLINICIAN, "tok-1", username="dr.lee")
    acknowledged = await changes.acknowledge_alert(messaging, "a1", by)
    assert acknowledged is not None and acknowledged[1] is True and saves == [False, True]
    kept = await messaging.safety.alerts.get_stored("a1")
    assert kept is not None and (kept.alert.status, kept.alert.acknowledged_by, kept.alert.acknowledged_as) == (
        "acknowledged", "dr.lee", "clinician",
    )  # fmt: skip
    again = await changes.acknowledge_alert(messaging, "a1", Principal(Role.CLINICIAN, "tok-2", username="dr.kim"))
    assert again is not None and again[1] is False and again[0].acknowledged_by == "dr.lee"  # the first stands
    assert await changes.acknowledge_alert(messaging, "no-such-alert", by) is None


async def test_a_graduation_delivered_again_plans_the_alumni_messages_again_only_while_enrolled(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = await started(events, intake)
    intake.consent(episode_id, "alumni_group", "alumni_program")
    event = care_plan_event(graduated(episode_id))
    first = await changes.enrol_alumnus(messaging, event)
    assert len(first) == ALUMNI_MESSAGES
    again = await changes.enrol_alumnus(messaging, event)  # a redelivery: the same messages, stored once by their ids
    assert [p.notification_id for p in again] == [p.notification_id for p in first]
    await changes.end_alumni_enrolment(messaging, episode_id, "opted_out")
    assert await changes.enrol_alumnus(messaging, event) == []  # left meanwhile: nothing planned


async def test_what_is_kept_names_the_event_that_caused_it(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    episode_id = intake.episode()
    raised = intake_event(SafetyAlertRaised(episode_id=episode_id, alert_id="a1", assessment_id="x", level="immediate",
                                            reasons=["cssrs_high_risk"], raised_at=utc_now()))  # fmt: skip
    await events.deliver(raised)
    cause = {"event_id": raised.id, "event_source": "/stepwise/intake", "event_type": "iop.safety.alert_raised"}
    kept = await database[SAFETY_ALERTS].find_one({"_id": "a1"})
    assert kept is not None and kept["cause"] == cause
    stored = [document async for document in database[NOTIFICATIONS].find({"episode_id": episode_id})]
    assert stored and all(document["cause"] == cause | {"traceparent": ANY} for document in stored)  # sent in it


async def test_an_overdue_alert_is_escalated_once_with_its_pages_woken_urgently(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase, clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    await alert(events, intake)
    wakes: list[bool] = []
    desk = dataclasses.replace(messaging.safety, console_base_url="https://console.test/")
    paging = dataclasses.replace(messaging, safety=desk, wake_dispatcher=wakes.append)
    assert await changes.escalate_alert(paging, "a1") is False  # not due yet by this clock
    kept = await paging.safety.alerts.get_stored("a1")
    assert kept is not None and kept.alert.status == "open" and kept.alert.escalated_at is None
    clock.at(kept.alert.acknowledge_by + timedelta(seconds=1))
    real_save = paging.safety.alerts.save
    saves: list[bool] = []

    async def first_loses(*args: Any) -> bool:
        saved = bool(saves) and await real_save(*args)
        saves.append(saved)
        return saved

    monkeypatch.setattr(paging.safety.alerts, "save", first_loses)
    assert await changes.escalate_alert(paging, "a1") is True
    assert saves == [False, True] and wakes == [True]
    pages = [document async for document in database[NOTIFICATIONS].find({"purpose": "safety_escalation"})]
    assert {page["channel"] for page in pages} == {"sms", "webhook"}
    assert all(page["cause"] == {"event_id": "a1", "event_source": "/stepwise/notifications",
                                 "event_type": "iop.safety.alert_escalated"} for page in pages)  # fmt: skip
    assert {page["context"]["console_url"] for page in pages} == {"https://console.test/safety-alerts/a1"}
    settled = await database[SAFETY_ALERTS].find_one({"_id": "a1"})
    assert settled is not None and settled["due_at"] == FOREVER
    assert await changes.escalate_alert(paging, "a1") is False  # escalated already
    assert wakes == [True]
    assert await changes.escalate_alert(paging, "no-such-alert") is False


async def test_an_adopted_calendar_is_current_and_plans_reminders_only_for_an_active_plan_whose_policy_has_them(
    messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = intake.episode()
    event = care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4))))
    _, planned = await changes.adopt_calendar(messaging, event)
    assert planned and await messaging.schedules.is_current(episode_id, schedule_series(event.data.assigned_at))
    quiet = dataclasses.replace(messaging, policy=messaging.policy.model_copy(update={"session_reminders": None}))
    other = intake.episode()
    assert (await changes.adopt_calendar(quiet, care_plan_event(assigned(other, calendar(in_days(2))))))[1] == []
    referred = intake.episode()
    event = care_plan_event(assigned(referred, calendar(in_days(2)), status="referred_out"))
    assert (await changes.adopt_calendar(messaging, event))[1] == []


async def test_no_unreachable_notice_for_an_episode_intake_does_not_know(messaging: Messaging) -> None:
    event = care_plan_event(assigned("no-such-episode", calendar(in_days(2))))
    assert await changes.notice_if_unreachable(messaging, event) == []


async def test_storing_messages_wakes_the_lane_they_belong_to(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = intake.episode()
    wakes: list[bool] = []
    woken = dataclasses.replace(messaging, wake_dispatcher=wakes.append)
    assert await changes.notify(woken, care_plan_event(session_missed(episode_id))) > 0
    assert wakes == [False]  # a routine message: the routine lane only
    raised = SafetyAlertRaised(episode_id=episode_id, alert_id="a2", assessment_id="x", level="immediate",
                               reasons=["cssrs_high_risk"], raised_at=utc_now())  # fmt: skip
    assert await changes.notify(woken, intake_event(raised)) > 0
    assert wakes[1:] == [True]


async def test_an_opt_out_for_what_is_not_there_is_a_404_saying_what_is_missing(
    http: httpx.AsyncClient, messaging: Messaging
) -> None:
    unknown = await http.post("/v1/opt-outs", json={"episode_id": "no-such-episode", "recipient_kind": "patient"},
                              headers=STAFF)  # fmt: skip
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "no such episode at intake"})
    for opt_out_id in ("recipient:no-such-episode:patient:", messaging.opt_outs.number_key("+12025550100")):
        withdrawn = await http.delete(f"/v1/opt-outs/{opt_out_id}", headers=STAFF)
        assert (withdrawn.status_code, withdrawn.json()) == (404, {"detail": "no such opt-out"})


async def test_a_stop_reply_is_kept_for_the_number_as_an_sms_reply_at_the_time_it_came(
    http: httpx.AsyncClient, messaging: Messaging
) -> None:
    before = utc_now()
    stop = await http.post("/v1/sms/inbound", json={"from": "+12025550100", "text": "STOP"}, headers=SMS_PROVIDER)
    assert stop.json() == {"action": "opted_out"}
    stored = await messaging.opt_outs.opt_outs.find_one({"_id": messaging.opt_outs.number_key("+12025550100")})
    assert stored is not None and stored["source"] == "sms_reply"
    # the store keeps milliseconds
    assert before - timedelta(milliseconds=1) <= assume_utc(stored["opted_out_at"]) <= utc_now()
