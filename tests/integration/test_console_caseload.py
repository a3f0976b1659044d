"""The console's Caseload and Admin pages in a real browser on the real stack (issue 28): a clinician signs in, reaches
the search and finds a patient by name with the keyboard only (Tab, Enter), the focus visible at each step; an
admin replays an event caseload set aside and reads the PII audit of the clinician who searched. axe-core finds no
serious or critical violation on these pages, at 1280x800, and nothing scrolls sideways at 768 px."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from playwright.async_api import Browser, Page

from services.common.auth import fingerprint

from .conftest import TOKENS, Stack, assess, eventually, new_episode
from .console_kit import WITH_CHROMIUM, browser, checked

__all__ = ["browser"]

pytestmark = WITH_CHROMIUM

MALFORMED_ON = "iop.notification.failed"
"""A topic only caseload consumes: the malformed record is set aside there alone."""


async def tab_to(page: Page, selector: str, most: int = 80) -> None:
    """Tab until the focus is on ``selector``; the focus is drawn (``:focus-visible``, the console's outline)."""
    for _ in range(most):
        await page.keyboard.press("Tab")
        if await page.evaluate("(s) => document.activeElement.matches(s)", selector):
            shown = await page.evaluate(
                "() => { const e = document.activeElement, s = getComputedStyle(e);"
                " return [e.matches(':focus-visible'), s.outlineStyle, s.outlineWidth]; }"
            )
            assert shown == [True, "solid", "3px"], (selector, shown)
            return
    raise AssertionError(f"{selector} not reached in {most} tabs")


async def no_sideways_scroll(page: Page) -> None:
    await page.set_viewport_size({"width": 768, "height": 1024})
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 768
    await page.set_viewport_size({"width": 1280, "height": 800})


async def test_a_patient_found_by_name_with_the_keyboard_and_the_admin_page(
    stack: Stack, browser: Browser, kafka_producer: AIOKafkaProducer
) -> None:
    sent = await kafka_producer.send_and_wait(  # set aside by caseload while the clinician searches
        MALFORMED_ON, b'{"episode_id": "x"}', key=b"x", headers=[("ce_type", MALFORMED_ON.encode())]
    )
    episode = await new_episode(stack)
    await assess(stack, episode)

    async def projected() -> bool:
        async with stack.http("caseload") as caseload:
            rows = (await caseload.get("/v1/caseload", params={"level": "IOP"})).json()["episodes"]
        return any(row["episode_id"] == episode.episode_id for row in rows)

    await eventually(projected, "caseload to project the placed episode")
    console = stack.services["caseload"].url  # the stack's own caseload serves the console: no instance to start
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await _find_by_name_with_the_keyboard(page, console, episode.pii["name"], episode.episode_id)
    admin = await browser.new_page(viewport={"width": 1280, "height": 800})
    await _admin(stack, admin, console, sent, episode.patient_id)


async def _find_by_name_with_the_keyboard(page: Page, url: str, name: str, episode_id: str) -> None:
    await page.goto(f"{url}/console/sign-in")
    await tab_to(page, "#token")
    await page.keyboard.type(TOKENS["clinician"])
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert page.url == f"{url}/console/today"
    await tab_to(page, 'nav a[href="/console/caseload"]')
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    await tab_to(page, "#search-name")
    await page.keyboard.type(name)
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert "/console/caseload/search" in page.url and name not in page.url  # a POST: the name is in no URL
    await tab_to(page, f'a[href="/console/episodes/{episode_id}"]')
    assert await page.evaluate("() => document.activeElement.textContent") == name
    async with page.expect_navigation(wait_until="commit"):
        await page.keyboard.press("Enter")
    assert page.url == f"{url}/console/episodes/{episode_id}"  # the Patient page
    await page.goto(f"{url}/console/caseload?view=all&level=IOP")
    assert await page.get_by_role("link", name=name).count() == 1
    await checked(page, "caseload")
    await no_sideways_scroll(page)


async def _admin(stack: Stack, page: Page, url: str, sent: RecordMetadata, patient_id: str) -> None:
    async def set_aside() -> bool:
        async with stack.http("caseload", "admin") as caseload:
            shelved = (await caseload.get("/v1/set-aside-events", params={"topic": MALFORMED_ON})).json()
        return any(entry["offset"] == sent.offset and entry["partition"] == sent.partition for entry in shelved)

    await eventually(set_aside, "caseload to set the malformed record aside")
    await page.goto(f"{url}/console/sign-in")
    await page.get_by_label("Access token").fill(TOKENS["admin"])
    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign in").click()
    await page.goto(f"{url}/console/admin")
    async with page.expect_navigation():
        await page.get_by_role("button", name=f"Replay {MALFORMED_ON} offset {sent.offset} at caseload").click()
    assert await page.get_by_text("set aside again: malformed:").count() >= 1  # its cause is not fixed: said so
    await page.get_by_role("textbox", name="Person").fill(f"token:{fingerprint(TOKENS['clinician'])}")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Show their audit").click()
    assert await page.get_by_role("row").filter(has_text="search patient").filter(has_text=patient_id).count() == 1
    await checked(page, "admin")
    await no_sideways_scroll(page)
