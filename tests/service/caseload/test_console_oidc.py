"""Signing in to the console at the clinic's OpenID Connect provider (OIDC_ISSUER set), in-process against the
loopback provider (tests/oidc_provider.py: the authorization-code flow with PKCE, refresh tokens): the state must be
the browser's own, the PKCE verifier goes to the token endpoint, the access token is authenticated with the service's
own role mapping, both tokens stay server-side, a token near its expiry is renewed, a refused renewal signs the
person out in words, and settings that lack something make the service not ready."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from services.caseload import api
from services.caseload.app import add_console
from services.caseload.console import sign_in, web, web_sign_in
from services.caseload.console.sessions import COLLECTION, SIGN_INS, ConsoleSessions
from services.caseload.names import IntakeDirectory
from services.caseload.queries import Caseload
from services.caseload.settings import CaseloadSettings
from services.caseload.store import CaseloadStore
from services.common.auth import SERVICE_ROLES, Authenticator
from services.common.oidc import OidcVerifier
from tests.oidc_provider import AUDIENCE, CLIENT_ID, CLIENT_SECRET, Person, Provider, oidc_provider
from tests.service.caseload.conftest import ZONE, FakeIntake
from tests.service.caseload.test_api import DAY, admitted
from tests.service.conftest import Clock, Events, service_app
from tests.service.conftest import api as client_of
from tests.service.memory_mongo import MemoryDatabase

APP = service_app("caseload", [api.router, web.router, web_sign_in.router], consumes=True)
add_console(APP, CaseloadSettings(_env_file=None))
CLINIC_ROLES = "iop-clinician:clinician,iop-front-desk:intake_staff"
KEYCLOAK_PERSON = Person(roles=("iop-clinician", "offline_access"), roles_at="realm_access.roles")
CALLBACK = "http://test/console/callback"


@pytest.fixture(scope="module")
def running_provider() -> Iterator[Provider]:
    with oidc_provider() as running:
        yield running


@pytest.fixture
def provider(running_provider: Provider) -> Provider:
    running_provider.reset()
    running_provider.redirect_uris = [CALLBACK]
    running_provider.person = KEYCLOAK_PERSON
    return running_provider


@pytest.fixture(scope="module")
def at_provider_setup(running_provider: Provider) -> sign_in.ProviderSignIn | None:
    """The console's client at the provider: one for the module (it keeps the discovery document and TLS context)."""
    return sign_in.setup(settings_for(running_provider))


def settings_for(provider: Provider, **changes: Any) -> CaseloadSettings:
    return CaseloadSettings(
        _env_file=None,
        oidc_issuer=provider.issuer,
        oidc_audience=AUDIENCE,
        oidc_roles_claim="realm_access.roles",
        oidc_role_map=CLINIC_ROLES,
        console_oidc_client_id=CLIENT_ID,
        console_oidc_client_secret=SecretStr(CLIENT_SECRET),
        console_base_url="http://test/console",
        **changes,
    )


class Seen:
    """Every answer the console gave the browser, read whole."""

    def __init__(self) -> None:
        self.answers: list[httpx.Response] = []

    async def keep(self, response: httpx.Response) -> None:
        await response.aread()
        self.answers.append(response)

    def showing(self, secret: str) -> list[str]:
        """Where an answer shows ``secret``: its body, a header (Location, Set-Cookie …)."""
        places = [f"{answer.request.url.path}: body" for answer in self.answers if secret in answer.text]
        return places + [f"{answer.request.url.path}: {name}" for answer in self.answers
                         for name, value in answer.headers.items() if secret in value]  # fmt: skip


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
async def console(
    database: MemoryDatabase,
    store: CaseloadStore,
    intake: FakeIntake,
    provider: Provider,
    at_provider_setup: sign_in.ProviderSignIn,
    kafka: object,
    seen: Seen,
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(provider)
    assert settings.oidc is not None
    directory = IntakeDirectory("http://intake.test", transport=httpx.MockTransport(intake.handle))
    state = {"caseload": Caseload(store, ZONE, 2), "directory": directory, "kafka": kafka, "stream_poll_seconds": 0.05,
             "console_sessions": ConsoleSessions(database, timedelta(minutes=15)),  # type: ignore[arg-type]
             "console_sign_in": at_provider_setup,
             "authenticator": Authenticator({}, SERVICE_ROLES, OidcVerifier(settings.oidc))}  # fmt: skip
    try:
        async with await client_of("caseload", APP, database, state) as client:
            client.event_hooks["response"].append(seen.keep)
            yield client
    finally:
        APP.state.console_sign_in = None
        await directory.close()


async def at_provider(console: httpx.AsyncClient) -> httpx.URL:
    """The sign-in page sends the browser to the provider, which answers at once: where it sends the browser back."""
    started = await console.get("/console/sign-in")
    assert started.status_code == 303, started.text
    async with httpx.AsyncClient(verify=False) as browser:  # plain HTTP on loopback: no CA to load
        answer = await browser.get(started.headers["location"])
    assert answer.status_code == 302, answer.text
    return httpx.URL(answer.headers["location"])


async def back_at(console: httpx.AsyncClient, url: httpx.URL) -> httpx.Response:
    return await console.get(f"{url.path}?{url.query.decode()}")


async def signed_in(console: httpx.AsyncClient) -> httpx.Response:
    done = await back_at(console, await at_provider(console))
    assert done.status_code == 303 and done.headers["location"] == "/console/today", done.text
    return done


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


async def test_signing_in_at_the_provider_keeps_both_tokens_server_side(
    console: httpx.AsyncClient,
    provider: Provider,
    database: MemoryDatabase,
    intake: FakeIntake,
    seen: Seen,
    caplog: pytest.LogCaptureFixture,
    events: Events,
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.WARNING, logger="httpx")  # as in a service (its INFO line names the URL and query)
    await admitted(events)
    done = await signed_in(console)
    [asked] = provider.authorize_requests
    assert (asked["response_type"], asked["code_challenge_method"], asked["redirect_uri"]) == ("code", "S256", CALLBACK)
    assert asked["state"] and asked["nonce"] and "openid" in asked["scope"].split()
    [exchanged] = provider.token_requests
    assert (
        exchanged["grant_type"] == "authorization_code" and s256(exchanged["code_verifier"]) == asked["code_challenge"]
    )
    [stored] = await database[COLLECTION].find({}).to_list()
    access, refresh = provider.issued[1], provider.issued[2]  # the code, then the access and refresh tokens
    assert (stored["token"], stored["refresh_token"]) == (access, refresh)
    assert (stored["role"], stored["subject"], stored["username"]) == ("clinician", KEYCLOAK_PERSON.subject, "j.rivera")
    assert "HttpOnly" in done.headers["set-cookie"] and await database[SIGN_INS].count_documents({}) == 0
    today = await console.get("/console/today", params={"date": DAY})
    assert (
        today.status_code == 200 and "Signed in as j.rivera (clinician)" in today.text and "Alex Example" in today.text
    )
    assert intake.authorizations == [f"Bearer {access}"]  # the services are called with the person's own token
    for issued in provider.issued:  # the code, the access, refresh and ID tokens
        assert seen.showing(issued) == [] and issued not in caplog.text
    assert exchanged["code_verifier"] not in caplog.text and not seen.showing(exchanged["code_verifier"])


async def test_an_answer_not_to_this_browsers_sign_in_is_refused_and_nothing_is_exchanged(
    console: httpx.AsyncClient, provider: Provider, database: MemoryDatabase
) -> None:
    someone_elses = await at_provider(console)
    console.cookies.clear()  # another browser, which started no sign-in
    refused = await back_at(console, someone_elses)
    assert refused.status_code == 303 and refused.headers["location"] == "/console/sign-in?failed=expired"
    back = await at_provider(console)
    forged = await back_at(console, back.copy_set_param("state", "a-state-this-browser-never-sent"))
    assert forged.headers["location"] == "/console/sign-in?failed=state"
    page = await console.get(forged.headers["location"])
    assert page.status_code == 400 and "does not belong to the sign-in this browser started" in page.text
    again = await back_at(console, back)  # the true answer, after: the sign-in it answered is used up
    assert again.headers["location"] == "/console/sign-in?failed=expired"
    assert provider.token_requests == [] and await database[COLLECTION].count_documents({}) == 0


@pytest.mark.parametrize(
    ("change", "failed", "words"),
    [
        ({"deny": True}, "denied", "You did not allow the console"),
        ({"person": Person(roles=("it-helpdesk",), roles_at="realm_access.roles")}, "role", "holds no role"),
    ],
)
async def test_a_person_who_says_no_or_holds_no_console_role_is_told_in_words(
    console: httpx.AsyncClient,
    provider: Provider,
    database: MemoryDatabase,
    change: dict[str, Any],
    failed: str,
    words: str,
) -> None:
    for name, value in change.items():
        setattr(provider, name, value)
    answer = await back_at(console, await at_provider(console))
    assert answer.headers["location"] == f"/console/sign-in?failed={failed}"
    page = await console.get(answer.headers["location"])
    assert words in page.text and 'href="/console/sign-in"' in page.text  # and a way to try again
    assert await database[COLLECTION].count_documents({}) == 0


@pytest.mark.parametrize(
    "forged", [{"nonce": "another-sign-ins-nonce"}, {"audience": "another-client"}], ids=["nonce", "audience"]
)
async def test_an_id_token_not_made_for_this_sign_in_is_refused(
    console: httpx.AsyncClient,
    provider: Provider,
    database: MemoryDatabase,
    monkeypatch: pytest.MonkeyPatch,
    forged: dict[str, str],
) -> None:
    made = provider.id_token
    monkeypatch.setattr(provider, "id_token", lambda person, nonce: made(person, **{"nonce": nonce} | forged))
    answer = await back_at(console, await at_provider(console))
    assert answer.headers["location"] == "/console/sign-in?failed=refused"
    assert await database[COLLECTION].count_documents({}) == 0


async def test_a_token_near_its_expiry_is_renewed_with_the_refresh_token(
    console: httpx.AsyncClient,
    provider: Provider,
    database: MemoryDatabase,
    intake: FakeIntake,
    clock: Clock,
    events: Events,
) -> None:
    await admitted(events)
    await signed_in(console)
    first_refresh = provider.issued[2]
    clock.advance(timedelta(minutes=3))
    assert (await console.get("/console/today")).status_code == 200
    assert len(provider.token_requests) == 1  # not yet: more than a minute left
    clock.advance(timedelta(minutes=1, seconds=30))
    assert (await console.get("/console/today", params={"date": DAY})).status_code == 200
    renewal = provider.token_requests[-1]
    assert (renewal["grant_type"], renewal["refresh_token"]) == ("refresh_token", first_refresh)
    [stored] = await database[COLLECTION].find({}).to_list()
    assert (stored["token"], stored["refresh_token"]) == (provider.issued[-2], provider.issued[-1])  # rotated
    assert intake.authorizations[-1] == f"Bearer {provider.issued[-2]}"


async def test_a_refused_renewal_signs_the_person_out_in_words(
    console: httpx.AsyncClient, provider: Provider, database: MemoryDatabase, clock: Clock
) -> None:
    await signed_in(console)
    provider.refuse_refresh = True  # the person was disabled at the provider, or their session there ended
    clock.advance(timedelta(minutes=4, seconds=30))
    htmx = await console.get("/console/today", headers={"HX-Request": "true"})
    assert htmx.headers["hx-redirect"] == "/console/sign-in?lapsed=1"
    assert await database[COLLECTION].count_documents({}) == 0
    page = await console.get("/console/sign-in?lapsed=1")
    assert "could not be renewed. Sign in again." in page.text


async def test_an_unreachable_provider_is_waited_out_while_the_token_works(
    console: httpx.AsyncClient, provider: Provider, database: MemoryDatabase, clock: Clock
) -> None:
    await signed_in(console)
    provider.token_endpoint_down = True
    clock.advance(timedelta(minutes=4, seconds=30))
    assert (await console.get("/console/today")).status_code == 200  # half a minute left: kept, tried again later
    assert provider.token_requests[-1]["grant_type"] == "refresh_token"
    clock.advance(timedelta(minutes=1))
    gone = await console.get("/console/today")  # expired, and still not renewed: signed out
    assert gone.headers["location"] == "/console/sign-in?lapsed=1"
    assert await database[COLLECTION].count_documents({}) == 0


async def test_signing_out_says_so_and_does_not_go_back_to_the_provider(
    console: httpx.AsyncClient, provider: Provider
) -> None:
    await signed_in(console)
    today = await console.get("/console/today")
    csrf = today.text.split('name="csrf" value="')[1].split('"')[0]
    out = await console.post("/console/sign-out", data={"csrf": csrf})
    assert out.headers["location"] == "/console/sign-in?out=1"
    page = await console.get(out.headers["location"])
    assert page.status_code == 200 and "You signed out of the console" in page.text
    assert len(provider.authorize_requests) == 1  # the page waits for a click
    token_form = await console.post("/console/sign-in", data={"token": "anything"})
    assert token_form.headers["location"] == "/console/sign-in"  # no token form beside the provider


async def test_settings_that_lack_the_client_make_the_service_not_ready_and_say_so(
    console: httpx.AsyncClient, provider: Provider, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    lacking = settings_for(provider).model_copy(
        update={"console_oidc_client_id": "", "console_oidc_client_secret": SecretStr("")}
    )
    at_provider_setup = sign_in.setup(lacking)
    APP.state.console_sign_in = at_provider_setup
    with caplog.at_level(logging.ERROR):
        sign_in.report(at_provider_setup, APP.state.dependencies)
    assert "CONSOLE_OIDC_CLIENT_ID is not set" in caplog.text
    ready = await console.get("/health/ready")
    assert ready.status_code == 503
    said = ready.json()["problems"][sign_in.PROBLEM]
    assert said.startswith("misconfigured: CONSOLE_OIDC_CLIENT_ID is not set; CONSOLE_OIDC_CLIENT_SECRET")
    page = await console.get("/console/sign-in")
    assert page.status_code == 503 and "not set up yet" in page.text and provider.authorize_requests == []
