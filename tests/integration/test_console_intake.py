"""The console's Intake pages in a real browser on the real stack (issue 28): a clinician registers a patient (by
keyboard alone, a field intake refuses shown next to it), opens an episode, answers an assessment by clicking its
items, sees intake's recommendation with its rationale before recording, places the patient at another level with a
reason and sees intake's answer; axe-core on each page, their screenshots written. No
name, birth date or contact data in any URL the browser visited, nor in the console's log."""

from __future__ import annotations

import uuid

from playwright.async_api import Browser, Page

from stepwise_contract import DIMENSIONS

from . import leaks
from .conftest import IOP_DIMENSIONS, Stack
from .console_kit import IMAGES, WITH_CHROMIUM, browser, checked, sign_in

__all__ = ["browser"]

pytestmark = WITH_CHROMIUM


async def test_a_patient_is_registered_given_an_episode_and_assessed_in_the_console(
    stack: Stack, browser: Browser
) -> None:
    marker = uuid.uuid4().hex[:6]
    pii = {"name": f"Robin Quill{marker}", "date_of_birth": "1988-02-03", "email": f"r{marker}@example.org",
           "phone": f"+1202555{int(marker, 16) % 10_000:04d}"}  # fmt: skip
    leaks.USED.update(pii.values())
    caseload = stack.services["caseload"]  # the stack's own serves the console: no instance of its own to start
    page = await browser.new_page(viewport={"width": 1280, "height": 800}, locale="en-US")
    visited: list[str] = []
    page.on("framenavigated", lambda frame: visited.append(frame.url))
    await sign_in(page, caseload.url)
    await page.get_by_role("link", name="Intake").click()
    await checked(page, "intake-register")
    await _register_by_keyboard(page, pii)
    await checked(page, "intake-episode")
    await page.get_by_label("Program").select_option("adult")
    await page.get_by_label("Track").select_option("evening")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Open the episode").click()
    await _assess(page, pii["name"])
    await _place_after_the_preview(page)
    rationale = page.locator(".rationale li")
    assert await page.get_by_role("heading", name="Recommended level: IOP").count() == 1
    assert "Highest dimension rating is 2" in await rationale.first.inner_text()
    assert await page.get_by_text("OP: patient declined higher level").count() == 1  # placed, with its reason
    await checked(page, "intake-result")
    await page.close()  # its live stream too
    log = caseload.log_path.read_text()
    for url in visited:
        assert not any(value.lower() in url.lower() for value in pii.values()), url
    assert [value for value in pii.values() if value in log] == []


async def _register_by_keyboard(page: Page, pii: dict[str, str]) -> None:
    """From the skip link to the Register button by keyboard alone; intake refuses the phone number, the page says
    so next to it and keeps the rest as typed."""
    await page.keyboard.press("Tab")  # "Skip to the page"
    await page.keyboard.press("Enter")
    for control, typed in (("name", pii["name"]), ("date_of_birth", "02031988"), ("email", pii["email"]),
                           ("phone", "555")):  # fmt: skip
        for _ in range(2):  # the date control's calendar button is a stop of its own
            await page.keyboard.press("Tab")
            if (focused := await page.evaluate("() => document.activeElement.id")) == control:
                break
        assert focused == control
        await page.keyboard.type(typed)  # a date by its month, day and year
    assert await page.get_by_label("Date of birth").input_value() == pii["date_of_birth"]
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    phone = page.get_by_label("Mobile phone")
    assert await phone.get_attribute("aria-invalid") == "true"
    assert "phone number" in await page.locator("#error-phone").inner_text()  # intake's words, not the value
    assert await page.get_by_label("Name").input_value() == pii["name"]
    await checked(page, "intake-register-error")
    await phone.focus()
    await page.keyboard.press("ControlOrMeta+A")
    await page.keyboard.type(pii["phone"])
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert await page.get_by_text(pii["name"]).count() == 1  # the episode's form names the patient


async def _assess(page: Page, name: str) -> None:
    """Each dimension's rating and three C-SSRS answers clicked (PHQ-9 and GAD-7 left out: they are optional); the
    page is used at a tablet's width."""
    assert await page.get_by_text(name).count() == 1
    await checked(page, "intake-assessment")
    labels = dict(zip(IOP_DIMENSIONS, DIMENSIONS.values(), strict=True))
    for dimension, rating in IOP_DIMENSIONS.items():
        await page.get_by_role("radiogroup", name=labels[dimension]).get_by_role("radio").nth(rating).check()
    for question in ("q1", "q2", "q6"):
        await page.locator(f"input[name='instruments.cssrs.{question}'][value='no']").check()
    await page.set_viewport_size({"width": 768, "height": 1024})
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 768
    await page.screenshot(path=str(IMAGES / "console-intake-assessment-tablet.png"))
    await page.set_viewport_size({"width": 1280, "height": 800})
    async with page.expect_navigation():
        await page.get_by_role("button", name="See the recommendation").click()


async def _place_after_the_preview(page: Page) -> None:
    """intake's recommendation and its rationale seen before anything is recorded, then the patient placed at
    another level with a reason."""
    assert await page.get_by_role("heading", name="Intake recommends IOP").count() == 1
    assert "Highest dimension rating is 2" in await page.locator(".preview .rationale li").first.inner_text()
    assert await page.get_by_role("button", name="Record at IOP").count() == 1
    await checked(page, "intake-preview")
    await page.get_by_label("Level").select_option("OP")
    await page.get_by_label("Reason").select_option("patient_declined_higher_level")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Place at another level").click()
