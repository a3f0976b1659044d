"""The staff console in a real browser (Debian's Chromium, driven by Playwright) on the real stack (issue 28): a
clinician signs in with a token, takes attendance on Today, sees a safety alert appear live in the worklists and
acknowledges it; a POST without its CSRF token is refused; an idle session is signed out. axe-core (vendored,
pinned) finds no serious or critical violation on these pages; screenshots go to a temporary folder
(``STEPWISE_CONSOLE_SCREENSHOTS=docs/images``: the docs' ones)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tools.dev import chromium
from tools.dev.devstack import ServiceProcess

from .conftest import (
    CSSRS_HIGH,
    IOP_DIMENSIONS,
    TOKENS,
    Stack,
    assess,
    care_plan_at,
    care_plan_of,
    eventually,
    instance_beside,
    new_episode,
)

pytestmark = pytest.mark.skipif(bool(chromium.missing()), reason=chromium.missing() or "")
ROOT = Path(__file__).resolve().parents[2]
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core-4.10.2.min.js"
IMAGES = Path(os.environ.get("STEPWISE_CONSOLE_SCREENSHOTS") or tempfile.mkdtemp(prefix="stepwise-console-"))
"""Where the pages' screenshots go: a temporary folder, or ``STEPWISE_CONSOLE_SCREENSHOTS=docs/images`` to refresh
the ones the docs show (the names of the run's patients are made up for each run)."""
IMAGES.mkdir(parents=True, exist_ok=True)
SERVING = {"KAFKA_CONSUMERS_ENABLED": "0", "KAFKA_GROUP_INSTANCE_ID": ""}
"""A console instance beside the stack's caseload: it serves pages from the same database and consumes nothing."""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium.ensure(), args=chromium.FLAGS)
        yield launched
        await launched.close()


@contextlib.contextmanager
def console_at(stack: Stack, env: dict[str, str], name: str) -> Iterator[ServiceProcess]:
    log = stack.services["caseload"].log_path.with_name(f"console-{name}.log")
    with instance_beside(stack, "caseload", SERVING | env, log) as instance:
        yield instance


async def checked(page: Page, name: str) -> None:
    """axe-core in the page (evaluated, not injected: the CSP allows no inline script) finds nothing serious or
    critical; the page's screenshot is written for the docs."""
    source = AXE.read_text()
    violations: list[dict[str, Any]] = await page.evaluate(
        source + "\n;axe.run(document, {resultTypes: ['violations']}).then(r => r.violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length})))"
    )
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert serious == [], f"{name}: {serious}"
    await page.screenshot(path=str(IMAGES / f"console-{name}.png"))


async def sign_in(page: Page, url: str) -> None:
    await page.goto(f"{url}/console/sign-in")
    await checked(page, "sign-in")
    await page.get_by_label("Access token").fill(TOKENS["clinician"])
    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign in").click()
    assert await page.get_by_role("heading", name="Today").count() == 1


async def count(page: Page, worklist: str) -> int:
    return int(await page.locator(f'nav [data-count="{worklist}"]').inner_text())


async def counted(page: Page, worklist: str, above: int | None = None, below: int | None = None) -> None:
    """Until the navigation's count for ``worklist`` passes a bound (a function, not a string: the CSP forbids
    eval)."""
    check = (
        "([name, above, below]) => { const n = Number(document.querySelector(`nav [data-count=${name}]`)"
        ".textContent); return (above === null || n > above) && (below === null || n < below); }"
    )
    await page.wait_for_function(check, arg=[worklist, above, below], timeout=15_000)


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
