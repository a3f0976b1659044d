"""Measurement-based care through the real broker: a measure through the API and through the patient's link (a
real HTTP form post) gives iop.measure.recorded with the change against the baseline (issue 24)."""

from __future__ import annotations

import re
from typing import Any

from .conftest import (
    CARE_TEAM_EMAIL,
    IOP_DIMENSIONS,
    Episode,
    Stack,
    care_plan_of,
    events,
    eventually,
    mail_to,
    new_episode,
)

PHQ9_16 = [2] * 8 + [0]
PHQ9_8 = [1] * 8 + [0]


async def _scored_from(stack: Stack, episode: Episode, measure_id: str) -> Any:
    async def found() -> Any:
        return next(
            (e.data for e in await events(stack, "iop.measure.recorded", episode) if e.data.measure_id == measure_id),
            None,
        )

    return await eventually(found, f"iop.measure.recorded of {measure_id}")


async def _baseline(stack: Stack, episode: Episode) -> None:
    async with stack.http("intake", "intake_staff") as intake:
        body = {"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": PHQ9_16}}
        response = await intake.post(f"/v1/episodes/{episode.episode_id}/assessments", json=body)
        assert response.status_code == 201, response.text
    first = await _scored_from(stack, episode, response.json()["assessment_id"])
    assert (first.source, first.instruments[0].classification) == ("assessment", "baseline")


async def test_a_measure_through_the_api_is_published_with_its_reliable_improvement(stack: Stack) -> None:
    episode = await new_episode(stack)
    await _baseline(stack, episode)
    async with stack.http("intake", "integration") as intake:
        response = await intake.post(
            f"/v1/episodes/{episode.episode_id}/measures", json={"instruments": {"phq9": PHQ9_8}}
        )
        assert response.status_code == 201, response.text
    recorded = await _scored_from(stack, episode, response.json()["measure_id"])
    [phq9] = recorded.instruments
    assert (recorded.source, phq9.score, phq9.baseline_score, phq9.classification) == (
        "measure", 8, 16, "reliable_improvement")  # fmt: skip
    assert (phq9.recovered, phq9.response) == (True, True)


async def test_the_patients_link_answers_once_by_a_real_form_post_and_no_log_holds_it(stack: Stack) -> None:
    episode = await new_episode(stack)
    await _baseline(stack, episode)
    async with stack.http("intake", "notifications") as notifications:
        made = await notifications.post(f"/v1/episodes/{episode.episode_id}/questionnaire-links",
                                        json={"instruments": ["phq9"]})  # fmt: skip
        assert made.status_code == 201, made.text
    url = made.json()["url"]
    token = url.rsplit("/q/", 1)[1]
    async with stack.http("intake", None) as patient:  # no bearer token: the patient's phone
        page = await patient.get(f"/q/{token}")
        assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found is not None
        form = {"csrf": found.group(1)} | {f"phq9.{n}": str(v) for n, v in enumerate(PHQ9_8, start=1)}
        answered = await patient.post(f"/q/{token}", data=form)
        assert answered.status_code == 200 and "Thank you" in answered.text
        again = await patient.post(f"/q/{token}", data=form)
        assert again.status_code == 404
    recorded = [e.data for e in await eventually(lambda: _measures(stack, episode), "the link's measure")]
    assert recorded[0].instruments[0].classification == "reliable_improvement"
    log = stack.services["intake"].log_path.read_text(errors="replace")
    assert f"/q/{token[:12]}" not in log and token not in log
    # The access log (LOG_FORMAT=json in the stack: services/common/metrics.py) names the route template.
    assert re.search(r'"(GET|POST) /q/\{token\} 200 ', log), (
        "the access log shows the page's requests without the token"
    )


async def _measures(stack: Stack, episode: Episode) -> list[Any] | None:
    found = [e for e in await events(stack, "iop.measure.recorded", episode) if e.data.source == "measure"]
    return found or None


async def test_a_reliable_deterioration_tells_the_care_team_and_is_a_step_up_input(stack: Stack) -> None:
    episode = await new_episode(stack)
    async with stack.http("intake", "intake_staff") as intake:
        body = {"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": PHQ9_8}}
        assessed = await intake.post(f"/v1/episodes/{episode.episode_id}/assessments", json=body)
        assert assessed.status_code == 201, assessed.text
    await eventually(lambda: care_plan_of(stack, episode), "the care plan")
    async with stack.http("intake", "clinician") as intake:
        measured = await intake.post(
            f"/v1/episodes/{episode.episode_id}/measures", json={"instruments": {"phq9": PHQ9_16}}
        )
        assert measured.status_code == 201, measured.text
    recorded = await _scored_from(stack, episode, measured.json()["measure_id"])
    assert [(i.score, i.baseline_score, i.classification) for i in recorded.instruments] == [
        (16, 8, "reliable_deterioration")]  # fmt: skip
    [told] = await mail_to(stack, CARE_TEAM_EMAIL, subject=f"Reliable deterioration for episode {episode.episode_id}")
    assert "PHQ-9" in told.get_body().get_content() and "16" in told.get_body().get_content()
    [up] = await eventually(lambda: events(stack, "iop.care_level.step_up_recommended", episode), "the step-up")
    assert "reliable_deterioration" in {reason.code for reason in up.data.rationale}
    plan = await care_plan_of(stack, episode)
    assert plan is not None and [i["source_id"] for i in plan["inputs"] if i["kind"] == "measure"][-1] == (
        measured.json()["measure_id"])  # fmt: skip
