"""care_plan through the broker: no-show timers, missed-session rules, step-up and a clinician's decision,
custom schedules, authorization, graduation and discharge."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import yaml

from services.care_plan.store import PLANS
from tools.dev.devstack import ROOT, ServiceProcess
from tools.dev.servers import free_port

from .conftest import (
    CARE_TEAM_EMAIL,
    CLINICIAN,
    HTTP_TIMEOUT,
    IOP_DIMENSIONS,
    Episode,
    Stack,
    assess,
    at_least,
    care_plan_at,
    care_plan_of,
    events,
    events_of,
    eventually,
    new_episode,
)


async def active_episode(stack: Stack) -> tuple[Episode, dict[str, Any]]:
    episode = await new_episode(stack)
    await assess(stack, episode)
    plan = await eventually(lambda: care_plan_of(stack, episode), "the care plan")
    return episode, plan


async def test_no_shows_are_detected_once_across_two_instances_and_a_restart(stack: Stack, tmp_path: Path) -> None:
    episode, plan = await active_episode(stack)
    sessions = plan["schedule"]["sessions"]
    first, second = sessions[0]["session_id"], sessions[1]["session_id"]
    # Two extra instances (timers and HTTP only: the stack's instance keeps consuming) with their clock
    # shifted to just after the second session's no-show deadline.
    deadline = datetime.fromisoformat(sessions[1]["ends_at"]) + timedelta(minutes=30)
    offset = (deadline - datetime.now(UTC)).total_seconds() + 120
    env = stack.env | {"CLOCK_OFFSET_SECONDS": str(offset), "TIMER_POLL_SECONDS": "0.2", "KAFKA_CONSUMERS_ENABLED": "0"}
    shifted = [
        ServiceProcess("care_plan", free_port(), env | {"KAFKA_GROUP_INSTANCE_ID": ""}, tmp_path / f"cp{n}.log")
        for n in (1, 2)
    ]
    try:
        for instance in shifted:
            instance.start()

        async def both_missed() -> bool:
            current = await care_plan_of(stack, episode)
            return current is not None and {first, second} <= set(current["attendance"])

        await eventually(both_missed, "the two no-shows")
        shifted[0].kill()  # a crash, then a restart: the timers must not fire again
        shifted[0].start()
        missed = await eventually(lambda: at_least(events(stack, "iop.session.missed", episode), 2), "two misses")
        rules = await eventually(
            lambda: at_least(events(stack, "iop.attendance.rule_triggered", episode), 2), "the two rules"
        )
        # Let every instance run its timers once more after the restart before counting.
        await eventually(lambda: _timer_moved_past(stack, episode, deadline), "the next timer")
    finally:
        for instance in shifted:
            instance.stop()

    assert sorted({(e.data.session_id, e.data.detected) for e in missed}) == [
        (first, "no_record"),
        (second, "no_record"),
    ]
    # Once each: one logical event per miss and per rule (a record may repeat only with the same id).
    assert len({e.id for e in await events(stack, "iop.session.missed", episode)}) == 2
    fired = [("missed_2_in_a_row", "outreach"), ("missed_2_of_last_6", "attendance_contract")]
    assert sorted({(e.data.rule_code, e.data.action) for e in rules}) == fired
    assert len({e.id for e in await events(stack, "iop.attendance.rule_triggered", episode)}) == 2
    escalations = await eventually(lambda: _care_team_mail(stack, episode, "Attendance", 2), "two escalations")
    assert {str(m["Subject"]).split(" for ")[0].strip() for m in escalations} == {
        "Attendance: outreach",
        "Attendance: attendance contract",
    }
    current = await care_plan_of(stack, episode)
    assert current is not None
    assert {sid: a["detected"] for sid, a in current["attendance"].items()} == {
        first: "no_record",
        second: "no_record",
    }


async def _care_team_mail(stack: Stack, episode: Episode, kind: str, n: int) -> list[Any] | None:
    found = [
        m
        for m in stack.mailbox.to(CARE_TEAM_EMAIL)
        if str(m["Subject"]).strip().startswith(kind) and episode.episode_id in str(m["Subject"])
    ]
    return found if len(found) >= n else None


async def _timer_moved_past(stack: Stack, episode: Episode, moment: datetime) -> bool:
    stored = await stack.database("care_plan")["care_plans"].find_one({"_id": episode.episode_id})
    timer = stored["next_check_at"]
    timer = datetime.fromisoformat(timer) if isinstance(timer, str) else timer
    return bool(timer.replace(tzinfo=timer.tzinfo or UTC) > moment)


async def test_a_safety_alert_recommends_a_step_up_and_the_clinician_accepts_it(stack: Stack) -> None:
    episode, _ = await active_episode(stack)
    await assess(stack, episode, IOP_DIMENSIONS | {"emotional": 2})  # a reassessment without alert: nothing
    async with stack.http("intake", "clinician") as intake:
        response = await intake.post(
            f"/v1/episodes/{episode.episode_id}/assessments",
            json={"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": [1] * 9}},
        )
    assert response.json()["safety_alert"]["level"] == "same_day"

    [recommended] = await eventually(
        lambda: events(stack, "iop.care_level.step_up_recommended", episode), "the step-up recommendation"
    )
    assert (recommended.data.from_level.value, recommended.data.to_level.value) == ("IOP", "PHP")
    assert "safety_alert" in [reason.code for reason in recommended.data.rationale]

    path = f"/v1/episodes/{episode.episode_id}/recommendations/{recommended.data.recommendation_id}/decision"
    async with stack.http("care_plan", "intake_staff") as staff:
        assert (await staff.post(path, json={"decision": "accept"})).status_code == 403
    async with stack.http("care_plan", "clinician") as clinician:
        accepted = await clinician.post(path, json={"decision": "accept", "reason": "agreed in team meeting"})
        again = await clinician.post(path, json={"decision": "decline"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    assert again.status_code == 409

    [changed] = await eventually(lambda: events(stack, "iop.care_level.changed", episode), "the level change")
    assert (changed.data.from_level.value, changed.data.to_level.value, changed.data.direction) == ("IOP", "PHP", "up")
    assert changed.data.schedule is not None and changed.data.schedule.hours_per_session == 5
    current = await care_plan_of(stack, episode)
    assert current is not None and current["level"] == "PHP"
    assert [p["level"] for p in current["level_history"]] == ["IOP", "PHP"]
    assert b"team meeting" not in (await events_of(stack, "iop.care_level.changed", episode.episode_id))[0].value

    [mail] = await eventually(lambda: _care_team_mail(stack, episode, "Step-up", 1), "the care team's email")
    assert str(mail["Subject"]).strip() == f"Step-up recommended (IOP to PHP) for episode {episode.episode_id}"
    assert recommended.data.recommendation_id in mail.get_content()
    assert all(value not in mail.get_content() for value in episode.pii.values())


async def test_a_custom_schedule_below_the_minimum_hours_is_rejected(stack: Stack) -> None:
    episode, _ = await active_episode(stack)
    path = f"/v1/episodes/{episode.episode_id}/care-plan/schedule"
    async with stack.http("care_plan", "clinician") as clinician:
        too_little = await clinician.put(
            path, json={"track": "evening", "weekdays": ["mon", "thu"], "hours_per_session": 3, "weeks": 6}
        )
        evening = await clinician.put(
            path, json={"track": "evening", "weekdays": ["mon", "tue", "thu"], "hours_per_session": 3, "weeks": 6}
        )
    assert too_little.status_code == 422
    [refusal] = too_little.json()["detail"]
    assert "6 h/week is below the 9 h/week minimum for IOP (adult)" in refusal["msg"]
    assert evening.status_code == 200, evening.text
    schedule = evening.json()["schedule"]
    assert (schedule["track"], schedule["days_per_week"]) == ("evening", 3)
    assert all(datetime.fromisoformat(s["starts_at"]).hour == 18 for s in schedule["sessions"])
    assert (await care_plan_of(stack, episode))["schedule"] == schedule  # type: ignore[index]


async def test_payer_authorization_is_kept_apart_from_the_clinical_level(stack: Stack) -> None:
    """Since issue 26 the payer's authorization is the authorizations service's: care_plan's old route says where it
    moved, and the authorized level (OP) stays apart from the clinical one (IOP), which care_plan's event told the
    authorizations service: a level mismatch."""
    episode, _ = await active_episode(stack)
    body = {"level": "OP", "authorized_through": "2027-01-31", "reference": "PA-118"}
    async with stack.http("care_plan", "integration") as payer:
        response = await payer.put(f"/v1/episodes/{episode.episode_id}/authorization", json=body)
    assert response.status_code == 410, response.text
    assert response.json()["location"].startswith(f"POST /v1/episodes/{episode.episode_id}/authorizations")
    today = datetime.now(UTC).date()
    authorization = {"payer": "carelon", "authorization_number": "PA-118", "level": "OP", "unit": "session",
                     "units_authorized": 12, "start_date": (today - timedelta(days=1)).isoformat(),
                     "end_date": (today + timedelta(days=60)).isoformat(), "status": "approved"}  # fmt: skip
    async with stack.http("authorizations", "integration") as payer:
        recorded = await payer.post(f"/v1/episodes/{episode.episode_id}/authorizations", json=authorization)
    assert recorded.status_code == 201, recorded.text
    [mismatch] = await eventually(lambda: events(stack, "iop.authorization.level_mismatch", episode), "the mismatch")
    assert (mismatch.data.clinical_level, mismatch.data.authorized_level) == ("IOP", "OP")
    assert (await care_plan_of(stack, episode))["level"] == "IOP"  # type: ignore[index]


async def test_graduation_and_discharge_end_the_episode(stack: Stack) -> None:
    graduating, _ = await active_episode(stack)
    leaving, left_plan = await active_episode(stack)
    async with stack.http("care_plan", "clinician") as clinician:
        no_reason = await clinician.post(f"/v1/episodes/{graduating.episode_id}/graduate")
        assert no_reason.status_code == 422 and no_reason.json()["detail"][0]["loc"] == ["body", "reason"]
        graduated = await clinician.post(f"/v1/episodes/{graduating.episode_id}/graduate",
                                         json={"reason": "moving away: care continues nearer home"})  # fmt: skip
        discharged = await clinician.post(
            f"/v1/episodes/{leaving.episode_id}/discharge", json={"reason_code": "against_advice"}
        )
        bad_reason = await clinician.post(f"/v1/episodes/{leaving.episode_id}/discharge", json={"reason_code": "x"})
        twice = await clinician.post(f"/v1/episodes/{leaving.episode_id}/discharge", json={"reason_code": "other"})
        after = await clinician.post(
            f"/v1/episodes/{leaving.episode_id}/sessions/{left_plan['schedule']['sessions'][0]['session_id']}"
            "/attendance",
            json={"status": "attended"},
        )
    assert (graduated.json()["status"], discharged.json()["status"]) == ("graduated", "discharged")
    assert (bad_reason.status_code, twice.status_code, after.status_code) == (422, 409, 409)

    [done] = await eventually(lambda: events(stack, "iop.episode.graduated", graduating), "the graduation")
    [gone] = await eventually(lambda: events(stack, "iop.episode.discharged", leaving), "the discharge")
    assert (done.data.by, gone.data.reason_code) == ("clinician", "against_advice")
    for episode in (graduating, leaving):
        stored = await stack.database("care_plan")["care_plans"].find_one({"_id": episode.episode_id})
        assert str(stored["next_check_at"]).startswith("9999")  # no timer left


async def test_a_week_below_the_minimum_hours_is_flagged(stack: Stack, tmp_path: Path) -> None:
    episode, plan = await active_episode(stack)
    zone = ZoneInfo(plan["schedule"]["timezone"])
    first = datetime.fromisoformat(plan["schedule"]["sessions"][0]["starts_at"]).astimezone(zone)
    monday = first.date() - timedelta(days=first.weekday())
    week_end = datetime.combine(monday + timedelta(days=7), time(0), tzinfo=zone)
    in_week = [s for s in plan["schedule"]["sessions"]
               if datetime.fromisoformat(s["starts_at"]).astimezone(zone).date() < week_end.date()]  # fmt: skip
    with care_plan_at(stack, week_end + timedelta(hours=1), tmp_path / "cp.log"):
        [flag] = await eventually(lambda: events(stack, "iop.utilization.below_minimum", episode), "the flag")
    assert (flag.data.week_start, flag.data.hours_attended) == (monday, 0.0)
    assert flag.data.minimum_hours == round(9 * len(in_week) / 3, 2)  # pro-rated for a partial first week


async def test_a_completed_plan_with_step_down_criteria_met_graduates(stack: Stack, tmp_path: Path) -> None:
    episode, plan = await active_episode(stack)
    for _ in range(2):  # sustained improvement: two reassessments with PHQ-9 below 10
        async with stack.http("intake", "clinician") as intake:
            await intake.post(f"/v1/episodes/{episode.episode_id}/assessments",
                              json={"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": [0] * 9}})  # fmt: skip
    await eventually(lambda: _learned(stack, episode, 2), "care_plan to learn both reassessments")
    # A short calendar (one 9-hour day a week for five weeks: past the 4-week minimum in IOP), each session
    # recorded as a clinic does, once it has begun: care_plan's clock shifted into each in turn.
    async with stack.http("care_plan", "clinician") as clinician:
        short = {"track": "morning", "weekdays": ["mon"], "hours_per_session": 9, "weeks": 5}
        custom = await clinician.put(f"/v1/episodes/{episode.episode_id}/care-plan/schedule", json=short)
    assert custom.status_code == 200, custom.text
    plan = custom.json()
    for n, session in enumerate(plan["schedule"]["sessions"]):
        during = datetime.fromisoformat(session["starts_at"]) + timedelta(minutes=5)
        with care_plan_at(stack, during, tmp_path / f"cp{n}.log") as instance:
            async with httpx.AsyncClient(base_url=instance.url, headers=CLINICIAN, timeout=HTTP_TIMEOUT) as clinician:
                path = f"/v1/episodes/{episode.episode_id}/sessions/{session['session_id']}/attendance"
                assert (await clinician.post(path, json={"status": "attended"})).status_code == 200
    last_end = datetime.fromisoformat(plan["schedule"]["sessions"][-1]["ends_at"])
    with care_plan_at(stack, last_end + timedelta(hours=2), tmp_path / "cp.log"):
        [done] = await eventually(lambda: events(stack, "iop.episode.graduated", episode), "the graduation")
    assert (done.data.by, done.data.level.value) == ("completion", "IOP")
    [down] = await events(stack, "iop.care_level.step_down_recommended", episode)
    assert {"weeks_in_level", "attendance_rate", "sustained_improvement"} <= {r.code for r in down.data.rationale}
    assert (await care_plan_of(stack, episode))["status"] == "graduated"  # type: ignore[index]


async def _learned(stack: Stack, episode: Episode, n: int) -> bool:
    """care_plan holds ``n`` reassessments (each also brings its instruments' measure, an input of another kind)."""
    current = await care_plan_of(stack, episode)
    return current is not None and sum(i["kind"] == "assessment" for i in current["inputs"]) >= n


async def _all_published(stack: Stack, episode: Episode) -> bool:
    """The plan's outbox is empty: every event its changes caused is on Kafka."""
    plan = await stack.database("care_plan")[PLANS].find_one({"_id": episode.episode_id}, {"outbox_pending": 1})
    return plan is not None and plan["outbox_pending"] == 0


async def test_policy_what_if_shows_what_a_candidate_policy_would_change(stack: Stack, tmp_path: Path) -> None:
    episode, plan = await active_episode(stack)
    assert plan["group"]["group_id"] == "iop-am"  # the replay works on a plan in a group
    first, second = (session["session_id"] for session in plan["schedule"]["sessions"][:2])
    for n, sid in enumerate((first, second)):  # each recorded once it has begun
        during = datetime.fromisoformat(plan["schedule"]["sessions"][n]["starts_at"]) + timedelta(minutes=5)
        with care_plan_at(stack, during, tmp_path / f"cp{n}.log") as instance:
            async with httpx.AsyncClient(base_url=instance.url, headers=CLINICIAN, timeout=HTTP_TIMEOUT) as clinician:
                path = f"/v1/episodes/{episode.episode_id}/sessions/{sid}/attendance"
                assert (await clinician.post(path, json={"status": "missed"})).status_code == 200
    candidate = yaml.safe_load(await asyncio.to_thread(Path(stack.env["CARE_PLAN_POLICY_FILE"]).read_text))
    candidate["version"] = "candidate-1"
    for rule in candidate["missed_sessions"]["rules"]:
        if rule["code"] == "missed_2_in_a_row":
            rule["count"] = 3
    policy = tmp_path / "candidate.yaml"
    policy.write_text(yaml.safe_dump(candidate))
    await eventually(lambda: _all_published(stack, episode), "the plan's events to be published")
    before = len(await events(stack, "iop.attendance.rule_triggered", episode))

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.care_plan.whatif", "--policy", str(policy), "--episode", episode.episode_id],
        cwd=ROOT, env=os.environ | stack.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "→ candidate candidate-1, 1 episode(s)" in result.stdout
    assert "- " in result.stdout
    assert f"missed_2_in_a_row → outreach at {second} (would no longer happen)" in result.stdout
    assert "1 of 1 episode(s) would change" in result.stdout
    assert len(await events(stack, "iop.attendance.rule_triggered", episode)) == before  # published nothing


def test_what_if_with_an_invalid_candidate_says_what_is_wrong(tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text("version: x\nnot_a_field: 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "services.care_plan.whatif", "--policy", str(policy)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert str(policy) in result.stderr and "not_a_field" in result.stderr


PHQ9_ITEM9_AT_3 = [1, 1, 1, 1, 1, 1, 1, 1, 3]
CSSRS_Q1_TO_Q4 = {"q1": True, "q2": True, "q3": True, "q4": True, "q5": False, "q6": False}


async def test_a_reassessment_that_refers_out_reaches_care_plan_as_a_referral_and_the_care_team_at_once(
    stack: Stack,
) -> None:
    episode, _ = await active_episode(stack)
    instruments = {"phq9": PHQ9_ITEM9_AT_3, "cssrs": CSSRS_Q1_TO_Q4}
    async with stack.http("intake", "clinician") as intake:
        response = await intake.post(f"/v1/episodes/{episode.episode_id}/assessments",
                                     json={"dimensions": IOP_DIMENSIONS, "instruments": instruments})  # fmt: skip
    assert response.status_code == 201, response.text
    assert (response.json()["recommended_level"], response.json()["refer_out"]) == ("INPATIENT", True)

    async def referral() -> Any:
        found = [e for e in await events(stack, "iop.care_level.step_up_recommended", episode) if e.data.refer_out]
        return found[0] if found else None

    referred = await eventually(referral, "the referral recommendation")
    assert (referred.data.from_level.value, referred.data.to_level.value) == ("IOP", "INPATIENT")
    assert referred.data.rationale[0].code == "referral_out"
    plan = await care_plan_of(stack, episode)
    assert plan is not None and plan["status"] == "active"  # the clinician decides
    assert plan["recommendations"][-1]["refer_out"] is True and plan["recommendations"][-1]["status"] == "open"

    subject = f"Referral out recommended (IOP to INPATIENT) for episode {episode.episode_id}"
    [mail] = await eventually(lambda: _care_team_mail(stack, episode, "Referral out", 1), "the care team's email")
    assert str(mail["Subject"]).strip() == subject and "referred out" in mail.get_content()
    told = stack.database("notifications")["notifications"].find(
        {"episode_id": episode.episode_id, "purpose": "step_recommendation"}
    )
    urgent = [n["urgent"] async for n in told if n["context"]["refer_out"]]
    assert urgent == [True]  # at once, whatever the hour (quiet hours never hold it)

    path = f"/v1/episodes/{episode.episode_id}/recommendations/{referred.data.recommendation_id}/decision"
    async with stack.http("care_plan", "clinician") as clinician:
        accepted = await clinician.post(path, json={"decision": "accept"})
    assert accepted.status_code == 200, accepted.text
    [discharged] = await eventually(lambda: events(stack, "iop.episode.discharged", episode), "the discharge")
    assert (discharged.data.reason_code, discharged.data.level.value) == ("referred_out", "IOP")
    assert (await care_plan_of(stack, episode))["status"] == "discharged"  # type: ignore[index]
