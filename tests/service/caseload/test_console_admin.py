"""The console's Admin page on fakes: admins only (anyone else a 403 page saying so); each service's set-aside events
with their reason, replayed at the service with the admin's own token (caseload's own in this process, recorded on
the event); intake's PII audit of a person named in a POSTed form, asked server-side."""

from __future__ import annotations

import re

import httpx
import pytest

from services.common.auth import Role, fingerprint
from tests.service.caseload.test_console import console, csrf_of, signed_in
from tests.service.caseload.test_console_caseload import Services
from tests.service.conftest import TOKENS, Events
from tests.service.memory_mongo import MemoryDatabase

__all__ = ["console"]

ADMIN = TOKENS[Role.ADMIN]
SHELVED = {"id": "iop.attendance.reported:0:7", "topic": "iop.attendance.reported", "partition": 0, "offset": 7,
           "key": "g-1", "headers": {"ce_type": "iop.attendance.reported"}, "reason": "rejected: unknown_session",
           "attempts": 1, "set_aside_at": "2026-10-20T13:00:00Z", "replays": []}  # fmt: skip
APPLIED = {"at": "2026-10-21T13:00:00Z", "role": "admin", "token_id": "abc", "by": None, "outcome": "applied",
           "detail": "applied by the handler"}  # fmt: skip
ENTRY = {"at": "2026-10-20T13:00:00Z", "role": "clinician", "token_id": "f00", "subject": None, "username": None,
         "action": "read_names", "patient_id": "p-1", "episode_id": "e-1"}  # fmt: skip


@pytest.fixture
def services() -> Services:
    """Every service with nothing set aside, unless a test says otherwise."""
    services = Services()
    for service in ("intake", "care_plan", "notifications", "authorizations"):
        services.answers[(service, "/v1/set-aside-events")] = httpx.Response(200, json=[])
    return services


async def admin_page(console: httpx.AsyncClient) -> str:
    form = await console.get("/console/sign-in")
    signed = await console.post("/console/sign-in", data={"csrf": csrf_of(form.text), "token": ADMIN})
    assert signed.status_code == 303
    page = await console.get("/console/admin")
    assert page.status_code == 200, page.text
    return page.text


async def test_the_admin_page_is_for_admins_only(console: httpx.AsyncClient, services: Services) -> None:
    await signed_in(console)
    refused = await console.get("/console/admin")
    assert refused.status_code == 403
    assert "The Admin page is not for the clinician role: nothing was shown or done." in refused.text
    csrf = csrf_of(refused.text)
    for path in ("/console/admin/set-aside/care_plan/x:0:1/replay", "/console/admin/audit"):
        assert (await console.post(path, data={"csrf": csrf, "person": "casey"})).status_code == 403
    assert services.calls == []
    assert 'href="/console/admin"' in (await console.get("/console/today")).text  # the navigation still says where


async def test_each_services_set_aside_events_are_listed_and_replayed_with_the_admins_token(
    console: httpx.AsyncClient, services: Services, events: Events, database: MemoryDatabase
) -> None:
    await events.deliver_missing_data("iop.session.missed")  # caseload's own, set aside
    services.answers[("care_plan", "/v1/set-aside-events")] = httpx.Response(200, json=[SHELVED])
    services.down.add("notifications")
    page = await admin_page(console)
    assert "rejected: unknown_session" in page and "notifications cannot be reached" in page
    assert re.search(r"iop.session.missed <span[^>]*>partition \d+, offset \d+</span></th>\s*<td>malformed:", page)
    listed = [call for call in services.calls if call[2] == "/v1/set-aside-events"]
    assert {(call[0], call[3], call[4]) for call in listed} == {
        (service, "limit=100", f"Bearer {ADMIN}") for service in ("intake", "care_plan", "notifications",
                                                                   "authorizations")}  # fmt: skip

    replayed = SHELVED | {"replays": [APPLIED]}
    path = f"/v1/set-aside-events/{SHELVED['id']}/replay"
    services.answers[("care_plan", path)] = httpx.Response(200, json=replayed)
    services.answers[("care_plan", "/v1/set-aside-events")] = httpx.Response(200, json=[replayed])
    done = await console.post(f"/console/admin/set-aside/care_plan/{SHELVED['id']}/replay",
                              data={"csrf": csrf_of(page)})  # fmt: skip
    assert done.status_code == 200 and "applied: applied by the handler" in done.text
    assert ("care_plan", "POST", path, "", f"Bearer {ADMIN}", None) in services.calls

    [own] = await database["set_aside_events"].find({}).to_list()
    again = await console.post(f"/console/admin/set-aside/caseload/{own['_id']}/replay", data={"csrf": csrf_of(page)})
    assert again.status_code == 200 and re.search(
        r'class="error" role="status">set aside again: malformed:', again.text
    )
    [own] = await database["set_aside_events"].find({}).to_list()
    assert [(r["outcome"], r["token_id"]) for r in own["replays"]] == [("set_aside_again", fingerprint(ADMIN))]
    unknown = await console.post("/console/admin/set-aside/caseload/nothing:0:0/replay", data={"csrf": csrf_of(page)})
    assert "caseload refused: no such set-aside event" in unknown.text
    assert (await console.post("/console/admin/set-aside/elsewhere/x/replay", data={"csrf": csrf_of(page)})
            ).status_code == 422  # fmt: skip


async def test_a_persons_pii_audit_is_asked_at_intake_from_a_posted_form(
    console: httpx.AsyncClient, services: Services
) -> None:
    page = await admin_page(console)
    assert 'action="/console/admin/audit"' in page
    services.answers[("intake", "/v1/audit")] = httpx.Response(200, json=[ENTRY])
    shown = await console.post("/console/admin/audit", data={"csrf": csrf_of(page), "person": " token:f00 "})
    assert shown.status_code == 200 and "read names" in shown.text and 'href="/console/episodes/e-1"' in shown.text
    [audit] = [call for call in services.calls if call[2] == "/v1/audit"]
    assert audit[:2] == ("intake", "GET") and audit[3] == "person=token%3Af00&limit=200"
    assert audit[4] == f"Bearer {ADMIN}" and 'value="token:f00"' in shown.text
    blank = await console.post("/console/admin/audit", data={"csrf": csrf_of(page), "person": " "})
    assert "person: enter a username, a subject" in blank.text
    assert len([call for call in services.calls if call[2] == "/v1/audit"]) == 1
    services.down.add("intake")
    down = await console.post("/console/admin/audit", data={"csrf": csrf_of(page), "person": "casey"})
    assert "intake cannot be reached" in down.text and 'value="casey"' in down.text
