"""The staff console in a real browser (Debian's Chromium, driven by Playwright) on the real stack (issue 28): a
clinician signs in with a token, takes attendance on Today, sees a safety alert appear live in the worklists and
acknowledges it; a POST without its CSRF token is refused; an idle session is signed out. axe-core (vendored,
pinned) finds no serious or critical violation on these pages; screenshots go to a temporary folder
(``STEPWISE_CONSOLE_SCREENSHOTS=docs/images``: the docs' ones)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.async_api import Browser, Page

from .conftest import (
    CSSRS_HIGH,
    IOP_DIMENSIONS,
    Stack,
    assess,
    care_plan_at,
    care_plan_of,
    eventually,
    new_episode,
)
from .console_kit import IMAGES, WITH_CHROMIUM, browser, checked, console_at, count, counted, sign_in

__all__ = ["browser"]  # the fixture, shared with the other pages' tests

pytestmark = WITH_CHROMIUM


async def test_a_clinicians_day_in_the_console(stack: Stack, browser: Browser) -> None:
    episode = await new_episode(stack)
    await assess(stack, episode)
    plan = await eventually(lambda: care_plan_of(stack, episode), "the care plan")
    first = plan["schedule"]["sessions"][0]
    starts = datetime.fromisoformat(first["starts_at"])
    day = starts.astimezone(ZoneInfo("America/New_York")).date().isoformat()
    name = episode.pii["name"]

    async def on_today() -> bool:
        async with stack.http("caseload") as caseload:
            rows = (await caseload.get("/v1/worklists/today", params={"date": day})).json()["rows"]
        return any(m["episode_id"] == episode.episode_id for row in rows for m in row["members"])

    await eventually(on_today, "the patient on the day's roster (caseload consumed the plan)")
    # care_plan records attendance once the session has begun: the console calls one whose clock is in it.
    with (
        care_plan_at(stack, starts + timedelta(minutes=5)) as care_plan,
        console_at(stack, {"CARE_PLAN_URL": care_plan.url}, "today") as console,
    ):
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await sign_in(page, console.url)
        await _take_attendance(page, console.url, day, name)
        await _acknowledge_an_alert(stack, page, console.url, episode.episode_id, name)
        refused = await page.request.post(f"{console.url}/console/alerts/any/acknowledge", form={"token": "x"})
        assert refused.status == 403  # the session's cookie went with it, its CSRF token did not
    # Another instance, its clock 16 minutes on: the session (in the shared database) has been idle too long.
    with console_at(stack, {"CLOCK_OFFSET_SECONDS": str(16 * 60)}, "idle") as later:
        await page.goto(f"{later.url}/console/today")
        assert page.url == f"{later.url}/console/sign-in?ended=1"
        assert await page.get_by_text("You were signed out").count() == 1


async def _take_attendance(page: Page, url: str, day: str, name: str) -> None:
    await page.goto(f"{url}/console/today?date={day}")
    row = page.locator("tr", has=page.get_by_role("rowheader", name=name))
    await row.get_by_role("radio", name="attended").check()
    section = page.locator("section.session", has=row)
    await section.get_by_role("button", name="Save attendance").click()  # htmx: the section is swapped in place
    await page.locator("tr", has=page.get_by_role("rowheader", name=name)).get_by_text("attended: recorded").wait_for()
    await checked(page, "today")
    await page.set_viewport_size({"width": 768, "height": 1024})  # a facilitator's tablet: no sideways scrolling
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 768
    await page.screenshot(path=str(IMAGES / "console-today-tablet.png"))
    await page.set_viewport_size({"width": 1280, "height": 800})


async def _acknowledge_an_alert(stack: Stack, page: Page, url: str, episode_id: str, name: str) -> None:
    await page.goto(f"{url}/console/worklists/safety_alerts")
    await page.wait_for_selector("body[data-live-state=ready]")
    before = await count(page, "safety_alerts")
    async with stack.http("intake", "clinician") as intake:
        body = {"dimensions": IOP_DIMENSIONS, "instruments": {"cssrs": CSSRS_HIGH}}
        response = await intake.post(f"/v1/episodes/{episode_id}/assessments", json=body)
        assert response.status_code == 201, response.text
    await counted(page, "safety_alerts", above=before)  # live, through the console's stream
    grown = await count(page, "safety_alerts")
    await page.reload()
    await checked(page, "worklists")
    async with page.expect_navigation():
        await page.get_by_role("button", name=f"Acknowledge the alert for {name}").click()
    assert await page.get_by_text("Acknowledged").count() == 1
    await counted(page, "safety_alerts", below=grown)
