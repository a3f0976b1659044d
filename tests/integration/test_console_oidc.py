"""Signing in to the console through the clinic's OpenID Connect provider, in a real browser (issue 28): a console
instance beside the stack, its client secret in a file, sends Chromium to the loopback provider
(tests/oidc_provider.py: the authorization-code flow with PKCE), which sends it back; a person who says no there is
told so in words on the sign-in page, one who says yes lands on Today, and signing out says so without going back
to the provider. axe-core runs on the sign-in pages these answers show; no code or token reaches the console's log."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser

from tests.oidc_provider import AUDIENCE, CLIENT_ID, CLIENT_SECRET, Person, oidc_provider
from tools.dev.servers import free_port

from .conftest import Stack
from .console_kit import WITH_CHROMIUM, browser, checked, console_at

__all__ = ["browser"]  # the fixture, shared with the other pages' tests

pytestmark = WITH_CHROMIUM


async def test_a_clinician_signs_in_through_the_clinics_provider(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    secret = tmp_path / "console_oidc_client_secret"
    secret.write_text(CLIENT_SECRET + "\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}/console"
    with oidc_provider() as provider:
        provider.redirect_uris = [f"{base}/callback"]
        provider.person = Person(username="dr.adeyemi", roles=("iop-clinician",), roles_at="realm_access.roles")
        env = {"OIDC_ISSUER": provider.issuer, "OIDC_AUDIENCE": AUDIENCE, "OIDC_ROLES_CLAIM": "realm_access.roles",
               "OIDC_ROLE_MAP": "iop-clinician:clinician", "CONSOLE_OIDC_CLIENT_ID": CLIENT_ID,
               "CONSOLE_OIDC_CLIENT_SECRET_FILE": str(secret), "CONSOLE_BASE_URL": base}  # fmt: skip
        with console_at(stack, env, "oidc", port=port) as console:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            provider.deny = True  # the person says no at the provider
            await page.goto(f"{base}/today")  # not signed in: the sign-in page sends the browser to the provider
            assert page.url == f"{base}/sign-in?failed=denied"
            await page.get_by_text("You did not allow the console to use your clinic account").wait_for()
            await checked(page, "sign-in-provider-denied")
            provider.deny = False
            async with page.expect_navigation(url=f"{base}/today"):
                await page.get_by_role("link", name="Sign in with your clinic account").click()
            assert await page.get_by_role("heading", name="Today").count() == 1
            assert await page.get_by_text("Signed in as dr.adeyemi (clinician)").count() == 1
            async with page.expect_navigation(url=f"{base}/sign-in?out=1"):
                await page.get_by_role("button", name="Sign out").click()
            await checked(page, "sign-in-provider-signed-out")
            assert len(provider.authorize_requests) == 2  # signing out did not start another sign-in
        logged = console.log_path.read_text(errors="replace")
    assert "console session opened at the provider" in logged
    assert provider.issued and not [issued for issued in provider.issued if issued in logged]
