"""The staff console in-process: sign-in with a token, server-side sessions (the cookie holds a random id only),
CSRF on every form, idle sign-out, the headers every page carries; actions sent with the person's own token."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.caseload.app import ROUTERS, add_console
from services.caseload.console import pages, web
from services.caseload.console.clients import SERVICES, Services
from services.caseload.console.sessions import COLLECTION, ConsoleSessions
from services.caseload.names import IntakeDirectory
from services.caseload.queries import Caseload
from services.caseload.settings import CaseloadSettings
from services.caseload.store import CaseloadStore
from services.common.auth import Role
from services.common.edge import parse_networks
from tests.service.caseload.conftest import ZONE, FakeIntake
from tests.service.caseload.test_api import DAY, admitted
from tests.service.conftest import TOKENS, Clock, Events, service_app
from tests.service.conftest import api as client_of
from tests.service.memory_mongo import MemoryDatabase
from tests.unit.contract.test_contract import EPISODE

APP = service_app("caseload", ROUTERS, consumes=True)
add_console(APP, CaseloadSettings())
CLINICIAN = TOKENS[Role.CLINICIAN]


class FakeServices:
    """care_plan and notifications: keep each call (path, Authorization, body); a sheet's lines all recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, object]] = []
        self.refusal: str | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        body: Any = json.loads(request.content) if request.content else None
        self.calls.append((request.url.path, request.headers.get("authorization", ""), body))
        if self.refusal:
            return httpx.Response(409, json={"detail": self.refusal})
        if request.url.path.endswith("/decision"):
            return httpx.Response(200, json={"recommendation_id": "r-1"})
        if request.url.path.endswith("/acknowledge"):
            return httpx.Response(200, json={"alert_id": "a-1"})
        lines = [{"episode_id": line["episode_id"], "outcome": "rejected", "code": "session_not_started",
                  "detail": "the session begins at 09:00"} for line in body["attendance"]]  # fmt: skip
        return httpx.Response(200, json={"group_id": "g", "session_id": "s", "lines": lines, "not_on_sheet": []})


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


@pytest.fixture
async def console(
    database: MemoryDatabase, store: CaseloadStore, intake: FakeIntake, services: FakeServices, kafka: object
) -> AsyncIterator[httpx.AsyncClient]:
    directory = IntakeDirectory("http://intake.test", transport=httpx.MockTransport(intake.handle))
    sessions = ConsoleSessions(database, timedelta(minutes=15))  # type: ignore[arg-type]
    clients = Services({name: f"http://{name}.test" for name in SERVICES}, httpx.MockTransport(services.handle))
    state = {"caseload": Caseload(store, ZONE, 2), "directory": directory, "kafka": kafka, "stream_poll_seconds": 0.05,
             "console_sessions": sessions, "console_services": clients}  # fmt: skip
    async with await client_of("caseload", APP, database, state) as client:
        yield client
    await directory.close()
    await clients.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def signed_in(client: httpx.AsyncClient, token: str = CLINICIAN) -> str:
    form = await client.get("/console/sign-in")
    done = await client.post("/console/sign-in", data={"csrf": csrf_of(form.text), "token": token})
    assert done.status_code == 303 and done.headers["location"] == "/console/today", done.text
    return done.headers["set-cookie"]


async def test_signing_in_keeps_the_token_server_side_and_the_cookie_holds_a_random_id(
    console: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    cookie = await signed_in(console)
    value = console.cookies[web.COOKIE]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the next test
    assert CLINICIAN not in cookie
    [stored] = await database[COLLECTION].find({}).to_list()
    assert stored["_id"] == hashlib.sha256(value.encode()).hexdigest() and stored["token"] == CLINICIAN
    page = await console.get("/console/today")
    assert page.status_code == 200 and CLINICIAN not in page.text and "Sign out" in page.text


async def test_the_cookie_is_secure_behind_https(console: httpx.AsyncClient) -> None:
    console.base_url = httpx.URL("https://test")
    assert "Secure" in await signed_in(console)
    console.base_url = httpx.URL("http://test")  # TLS ends at a proxy: it says so, if it is trusted
    console.cookies.clear()
    console.headers["X-Forwarded-Proto"] = "https"
    assert "Secure" not in await signed_in(console)  # anyone may send the header
    try:  # (the form's cookie, then: this client over plain HTTP would not send a Secure cookie back)
        APP.state.trusted_proxies = parse_networks("127.0.0.1")
        assert "Secure" in (await console.get("/console/sign-in")).headers["set-cookie"]
        APP.state.trusted_proxies = ()
        APP.state.console_base_url = "https://console.clinic.example"
        assert "Secure" in (await console.get("/console/sign-in")).headers["set-cookie"]
    finally:
        APP.state.trusted_proxies, APP.state.console_base_url = (), ""


async def test_a_refused_token_is_said_in_words_and_opens_no_session(
    console: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    form = await console.get("/console/sign-in")
    refused = await console.post("/console/sign-in", data={"csrf": csrf_of(form.text), "token": "not-a-token"})
    assert refused.status_code == 401 and "this token is not accepted" in refused.text
    service = await console.post("/console/sign-in", data={"csrf": csrf_of(refused.text),
                                                           "token": TOKENS[Role.CARE_PLAN]})  # fmt: skip
    assert service.status_code == 401 and "may not use the console" in service.text
    assert await database[COLLECTION].count_documents({}) == 0


async def test_every_page_carries_the_csp_no_store_and_no_inline_script(console: httpx.AsyncClient) -> None:
    await signed_in(console)
    link = await console.get("/console/safety-alerts/a-1")  # where notifications' pages link
    assert link.status_code == 303 and link.headers["location"] == "/console/worklists/safety_alerts"
    for path in ("/console/sign-in", "/console/today", "/console/worklists/safety_alerts"):
        page = await console.get(path)
        assert page.status_code == 200, path
        assert page.headers["cache-control"] == "no-store"
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
        assert re.findall(r"<script(?![^>]*\bsrc=)", page.text) == [], path  # every script is a file
        assert not re.search(r"<[^>]+\son[a-z]+=", page.text), path


async def test_a_post_without_its_csrf_token_is_refused_and_nothing_is_done(
    console: httpx.AsyncClient, services: FakeServices
) -> None:
    await signed_in(console)
    for path in ("/console/today/iop-adult-am/s-1", "/console/alerts/a-1/acknowledge", "/console/sign-out",
                 f"/console/recommendations/{EPISODE}/r-1"):  # fmt: skip
        refused = await console.post(path, data={f"status.{EPISODE}": "attended"})
        assert refused.status_code == 403, path
        wrong = await console.post(path, data={"csrf": "guessed", f"status.{EPISODE}": "attended"})
        assert wrong.status_code == 403, path
    assert services.calls == []
    assert (await console.get("/console/today")).status_code == 200  # still signed in
    first = await console.get("/console/sign-in")
    console.cookies.delete(pages.SIGN_IN_CSRF_COOKIE)
    assert (await console.post("/console/sign-in", data={"csrf": csrf_of(first.text), "token": CLINICIAN})
            ).status_code == 403  # fmt: skip


async def test_an_idle_session_is_signed_out_and_activity_keeps_it(
    console: httpx.AsyncClient, clock: Clock, database: MemoryDatabase
) -> None:
    await signed_in(console)
    for _ in range(3):
        clock.advance(timedelta(minutes=10))
        assert (await console.get("/console/today")).status_code == 200
    clock.advance(timedelta(minutes=15))
    ended = await console.get("/console/today")
    assert ended.status_code == 303 and ended.headers["location"] == "/console/sign-in?ended=1"
    assert await database[COLLECTION].count_documents({}) == 0
    assert "signed out" in (await console.get("/console/sign-in?ended=1")).text
    assert (await console.get("/console/stream")).status_code == 204  # the live stream ends too
    htmx = await console.get("/console/today", headers={"HX-Request": "true"})
    assert htmx.headers["hx-redirect"] == "/console/sign-in?ended=1"


async def test_attendance_goes_to_care_plan_with_the_persons_token_and_refusals_are_shown_in_words(
    console: httpx.AsyncClient, events: Events, services: FakeServices
) -> None:
    await admitted(events)
    await signed_in(console)
    page = await console.get("/console/today", params={"date": DAY})
    assert "Alex Example" in page.text
    [action] = re.findall(r'action="(/console/today/[^"]+)"', page.text)
    answer = await console.post(action, data={"csrf": csrf_of(page.text), f"status.{EPISODE}": "attended"})
    assert answer.status_code == 200
    [(path, authorization, body)] = services.calls
    assert path.endswith("/attendance") and authorization == f"Bearer {CLINICIAN}"
    assert body == {"attendance": [{"episode_id": EPISODE, "status": "attended"}]}
    assert "the session begins at 09:00" in answer.text


async def test_an_alert_is_acknowledged_at_notifications_with_the_persons_token(
    console: httpx.AsyncClient, services: FakeServices
) -> None:
    await signed_in(console)
    page = await console.get("/console/worklists/safety_alerts")
    done = await console.post("/console/alerts/a-1/acknowledge", data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200
    assert services.calls == [("/v1/safety-alerts/a-1/acknowledge", f"Bearer {CLINICIAN}", None)]


async def test_a_recommendation_is_decided_at_care_plan_and_a_refusal_is_shown_in_words(
    console: httpx.AsyncClient, services: FakeServices
) -> None:
    await signed_in(console)
    page = await console.get("/console/worklists/recommendations")
    form = {"csrf": csrf_of(page.text), "decision": "decline", "reason": "payer review pending"}
    done = await console.post(f"/console/recommendations/{EPISODE}/r-1", data=form)
    assert done.status_code == 200 and "Declined" in done.text
    assert services.calls == [(f"/v1/episodes/{EPISODE}/recommendations/r-1/decision", f"Bearer {CLINICIAN}",
                               {"decision": "decline", "reason": "payer review pending"})]  # fmt: skip
    services.refusal = "the recommendation was decided already"
    again = await console.post(f"/console/recommendations/{EPISODE}/r-1", data=form)
    assert "care plan refused: the recommendation was decided already" in again.text
