"""What the console's browser tests share (issue 28): a Chromium launched by its path, a console instance beside the
stack's caseload, axe-core run in each page with its screenshot, and signing in with a token. Each page's tests are
their own file (``test_console*.py``); the browser is launched once per test."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tools.dev import chromium
from tools.dev.devstack import ServiceProcess

from .conftest import TOKENS, Stack, instance_beside

WITH_CHROMIUM = pytest.mark.skipif(bool(chromium.missing()), reason=chromium.missing() or "")
"""Without Debian's Chromium (``apt-get install chromium``; ``.ci/run`` installs it) the browser tests cannot run."""
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
def console_at(stack: Stack, env: dict[str, str], name: str, port: int | None = None) -> Iterator[ServiceProcess]:
    log = stack.services["caseload"].log_path.with_name(f"console-{name}.log")
    with instance_beside(stack, "caseload", SERVING | env, log, port=port) as instance:
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


async def sign_in(page: Page, url: str, role: str = "clinician") -> None:
    await page.goto(f"{url}/console/sign-in")
    await checked(page, "sign-in")
    await page.get_by_label("Access token").fill(TOKENS[role])
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
