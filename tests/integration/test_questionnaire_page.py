"""The patient's questionnaire page in a real browser (Debian's Chromium, driven by Playwright): on a phone's
screen, by keyboard and by touch, the answers recorded and the crisis resources shown at once (issue 24).

``STEPWISE_SCREENSHOT=docs/questionnaire-page.png`` also saves the page as the docs show it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from tools.dev import chromium

from .conftest import Episode, Stack, events, eventually, new_episode

pytestmark = pytest.mark.skipif(bool(chromium.missing()), reason=chromium.missing() or "")
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium.ensure(), args=chromium.FLAGS)
        yield launched
        await launched.close()


async def _link(stack: Stack, episode: Episode, instruments: list[str]) -> str:
    async with stack.http("intake", "notifications") as notifications:
        made = await notifications.post(f"/v1/episodes/{episode.episode_id}/questionnaire-links",
                                        json={"instruments": instruments})  # fmt: skip
        assert made.status_code == 201, made.text
    return f"{stack.services['intake'].url}/q/{made.json()['url'].rsplit('/q/', 1)[1]}"


async def _phone_page(browser: Browser, url: str) -> Page:
    page = await browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    response = await page.goto(url)
    assert response is not None and response.status == 200
    return page


async def test_the_page_is_answered_by_keyboard_on_a_phone(stack: Stack, browser: Browser, tmp_path: Path) -> None:
    episode = await new_episode(stack)
    page = await _phone_page(browser, await _link(stack, episode, ["gad7"]))
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    await page.screenshot(path=str(tmp_path / "page.png"))
    if os.environ.get("STEPWISE_SCREENSHOT"):
        await page.screenshot(path=os.environ["STEPWISE_SCREENSHOT"])
    first = page.get_by_label("Not at all").first
    assert await first.count() == 1
    assert await page.locator("fieldset legend").count() == 7
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.name") == "gad7.1"  # the first question, by keyboard
    for _ in range(7):
        await page.keyboard.press("Space")  # answers "Not at all", then on to the next question
        await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.tagName") == "BUTTON"
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert await page.get_by_role("heading", name="Thank you").count() == 1

    async def recorded() -> list[object] | None:
        return [e for e in await events(stack, "iop.measure.recorded", episode) if e.data.source == "measure"] or None

    [measure] = await eventually(recorded, "the page's measure")
    assert measure.data.instruments[0].score == 0  # type: ignore[attr-defined]


async def test_a_positive_suicide_item_shows_crisis_resources_at_once(stack: Stack, browser: Browser) -> None:
    episode = await new_episode(stack)
    page = await _phone_page(browser, await _link(stack, episode, ["phq9"]))
    for number in range(1, 10):
        answer = "Several days" if number == 9 else "Not at all"
        await page.locator(f"fieldset#phq9-{number}").get_by_label(answer).tap()
    async with page.expect_navigation():
        await page.get_by_role("button", name="Send my answers").tap()
    assert await page.get_by_role("alert").get_by_text("988").count() == 1
    await eventually(lambda: _alert(stack, episode), "the safety alert")


async def _alert(stack: Stack, episode: Episode) -> list[object] | None:
    return list(await events(stack, "iop.safety.alert_raised", episode)) or None
