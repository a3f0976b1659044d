"""A patient's page in a real browser (Debian's Chromium, driven by Playwright) on the real stack (issue 28): a
clinician opens the page of an episode with measures recorded at intake (the PHQ-9 and GAD-7 charts, axe-core finds
no serious or critical violation, no sideways scroll at 768 px), writes the treatment plan in the form, adds a row,
saves and signs it; care_plan's API then says it is signed. No name in any URL the browser went to; the plan's text
is in no service's log (the run's leak scan)."""

from __future__ import annotations

import uuid

from playwright.async_api import Browser, Page

from tests.integration import leaks

from .conftest import TOKENS, Stack, assess, eventually, new_episode
from .console_kit import IMAGES, WITH_CHROMIUM, browser, checked

__all__ = ["browser"]

pytestmark = WITH_CHROMIUM

MEASURES = ({"phq9": [1, 1, 1, 1, 0, 1, 1, 0, 0], "gad7": [2, 2, 1, 2, 1, 1, 2]},
            {"phq9": [0, 1, 0, 1, 0, 0, 1, 0, 0], "gad7": [1, 0, 1, 0, 0, 1, 0]})  # fmt: skip
"""After the assessment's PHQ-9 (11): 6 then 3 (a reliable improvement); GAD-7 11 then 3."""


async def test_a_patients_page_its_score_charts_and_a_treatment_plan_written_and_signed(
    stack: Stack, browser: Browser
) -> None:
    episode = await new_episode(stack)
    await assess(stack, episode)
    async with stack.http("intake") as intake:
        for answers in MEASURES:
            recorded = await intake.post(f"/v1/episodes/{episode.episode_id}/measures", json={"instruments": answers})
            assert recorded.status_code == 201, recorded.text

    async def in_the_caseload() -> bool:
        async with stack.http("caseload") as caseload:
            return (await caseload.get(f"/v1/episodes/{episode.episode_id}/timeline")).status_code == 200

    await eventually(in_the_caseload, "the episode in caseload's projection")
    url, name = stack.services["caseload"].url, episode.pii["name"]
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await _signed_in(page, url)
    await page.goto(f"{url}/console/episodes/{episode.episode_id}")
    assert await page.get_by_role("heading", name=name).count() == 1
    for label in ("PHQ-9", "GAD-7"):
        assert await page.get_by_role("img", name=f"{label} scores over time").count() == 1
    await checked(page, "patient")
    await page.set_viewport_size({"width": 768, "height": 1024})
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 768
    await page.set_viewport_size({"width": 1280, "height": 800})
    marker = f"Zq{uuid.uuid4().hex[:10]}"
    leaks.USED.add(marker)  # the plan's text: in no log or trace of the run
    await _write_the_plan(page, marker)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign version 1").click()
    assert await page.get_by_text("Signed: this version is in force.").count() == 1
    await page.locator("#treatment-plan").screenshot(path=str(IMAGES / "console-patient-plan.png"))
    async with stack.http("care_plan") as care_plan:
        plan = (await care_plan.get(f"/v1/episodes/{episode.episode_id}/treatment-plan")).json()
    assert (plan["status"], plan["in_force_version"]) == ("signed", 1)
    [problem] = plan["current"]["problems"]
    objective = problem["goals"][0]["objectives"][0]
    assert problem["statement"] == f"{marker} drinking harms work"
    assert objective["target"] == {"instrument": "phq9", "below": 10, "in_a_row": 2}
    assert [given["modality"] for given in objective["interventions"]] == ["group", "individual"]
    assert name not in page.url and marker not in page.url


async def _signed_in(page: Page, url: str) -> None:
    """As ``console_kit.sign_in``, without checking the sign-in page again (test_console.py does): seconds of CI."""
    await page.goto(f"{url}/console/sign-in")
    await page.get_by_label("Access token").fill(TOKENS["clinician"])
    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign in").click()


async def _write_the_plan(page: Page, marker: str) -> None:
    async with page.expect_navigation():
        await page.get_by_role("link", name="Write the treatment plan").click()
    await page.get_by_label("What the problem is (problem 1)").fill(f"{marker} drinking harms work")
    await page.get_by_label("The goal in the patient's own words (goal 1.1)").fill("I want to be there for my kids")
    await page.get_by_label("Measurable objective (objective 1.1.1)").fill("PHQ-9 below 10 twice")
    await page.get_by_label("Target date (objective 1.1.1)").fill("2027-03-01")
    await page.get_by_label("Measured by (objective 1.1.1)").select_option("phq9")
    await page.get_by_label("Score below (objective 1.1.1)").fill("10")
    await _intervention(page, "1.1.1.1", "group", "3", "counsellor")
    async with page.expect_navigation():  # another row, drawn by the server: what was typed is kept
        await page.get_by_role("button", name="Add an intervention to objective 1.1.1").click()
    assert await page.get_by_label("Modality (intervention 1.1.1.1)").input_value() == "group"
    await _intervention(page, "1.1.1.2", "individual", "1", "therapist")
    await checked(page, "treatment-plan")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Save as a new version").first.click()
    assert await page.get_by_text("Saved as a new version").count() == 1


async def _intervention(page: Page, place: str, modality: str, per_week: str, role: str) -> None:
    await page.get_by_label(f"Modality (intervention {place})").fill(modality)
    await page.get_by_label(f"Times a week (intervention {place})").fill(per_week)
    await page.get_by_label(f"Responsible role (intervention {place})").fill(role)
