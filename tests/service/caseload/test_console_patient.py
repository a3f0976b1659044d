"""A patient's page in the console, in-process on fakes: each part from the service that owns it with the person's
own token, a part whose service is down says which while the rest shows, the treatment plan put from the form
(care_plan's field errors next to their fields, what was typed kept when care_plan is down) and signed, no PII in
any URL, the projection's read audited with the person."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from services.care_plan.schemas_plan import TreatmentPlanIn
from services.caseload import api
from services.caseload.app import add_console
from services.caseload.console import web, web_patient
from services.caseload.console.clients import SERVICES, Services
from services.caseload.console.sessions import ConsoleSessions
from services.caseload.names import IntakeDirectory
from services.caseload.queries import Caseload
from services.caseload.settings import CaseloadSettings
from services.caseload.store import CaseloadStore
from services.common.auth import Role
from services.common.errors import field_error
from tests.service.caseload.conftest import NAMES, ZONE, FakeIntake
from tests.service.caseload.test_api import admitted
from tests.service.caseload.test_console import csrf_of, signed_in
from tests.service.conftest import TOKENS, Events, service_app
from tests.service.conftest import api as client_of
from tests.service.memory_mongo import MemoryDatabase
from tests.unit.contract.test_contract import EPISODE

APP = service_app("caseload", [api.router, web.router, web_patient.router], consumes=True)
add_console(APP, CaseloadSettings())
BEARER = f"Bearer {TOKENS[Role.CLINICIAN]}"
PAGE = f"/console/episodes/{EPISODE}"
FORM = f"{PAGE}/treatment-plan"
SUPPORT = "Sam Example"
PROBLEM = "Drinking is harming work and family life."
TYPED = {
    "p0.statement": PROBLEM,
    "p0.g0.in_own_words": "I want to be there for my kids.",
    "p0.g0.o0.statement": "PHQ-9 below 10 on two measures in a row.",
    "p0.g0.o0.target_date": "2027-01-15",
    "p0.g0.o0.instrument": "phq9",
    "p0.g0.o0.below": "10",
    "p0.g0.o0.in_a_row": "",
    "p0.g0.o0.i0.modality": "group",
    "p0.g0.o0.i0.per_week": "3",
    "p0.g0.o0.i0.responsible_role": "counsellor",
}


def _point(score: int, at: str, classification: str) -> dict[str, Any]:
    return {"record_id": f"m-{score}", "source": "measure", "recorded_at": at, "instrument": "phq9", "score": score,
            "band": "moderate", "baseline_score": 16, "previous_score": None, "classification": classification,
            "recovered": False, "response": False}  # fmt: skip


MEASURES = {"episode_id": EPISODE, "policy_version": "measures-default-2026.12", "series": [
    {"instrument": "phq9", "reliable_change": 6, "caseness": 10, "points": [
        _point(16, "2026-10-20T14:00:00Z", "baseline"), _point(8, "2026-11-03T14:00:00Z", "reliable_improvement")]},
    {"instrument": "audit", "reliable_change": None, "caseness": None, "points": [
        _point(9, "2026-10-20T14:00:00Z", "baseline")]},
]}  # fmt: skip
CONSENTS = [{"consent_id": "c-1", "episode_id": EPISODE, "recipient_kind": "family",
             "recipient": {"name": SUPPORT, "email": "sam@example.org", "relationship": "sister"},
             "scopes": ["appointments", "attendance"], "expires_on": None, "status": "granted",
             "granted_at": "2026-10-20T14:20:00Z", "revoked_at": None}]  # fmt: skip
CARE_PLAN = {"episode_id": EPISODE, "level": "IOP", "schedule": {"sessions": [
    {"session_id": "iop-am-20261021", "starts_at": "2026-10-21T13:00:00Z", "ends_at": "2026-10-21T16:00:00Z",
     "kind": "group", "group_id": "iop-adult-am"}]},
    "attendance": {"iop-am-20261021": {"status": "late", "recorded_at": "2026-10-21T13:20:00Z", "minutes": 150,
                                       "detected": "reported"}}}  # fmt: skip
MESSAGES = [{"notification_id": "n-1", "episode_id": EPISODE, "purpose": "session_reminder",
             "recipient_kind": "patient", "channel": "sms", "status": "sent", "attempts": 1,
             "created_at": "2026-10-20T22:00:00Z", "sent_at": "2026-10-20T22:00:01Z",
             "not_before": "2026-10-20T22:00:00Z", "last_error": None,
             "cause_event_type": "iop.care_level.assigned"}]  # fmt: skip


def _plan(problems: list[dict[str, Any]], version: int, signed: bool) -> dict[str, Any]:
    current = {
        "version": version,
        "problems": problems,
        "put_at": "2026-10-21T15:00:00Z",
        "put_by": "dr.rivera",
        "signed_at": "2026-10-21T15:05:00Z" if signed else None,
        "signed_by": "dr.rivera" if signed else None,
    }
    return {"episode_id": EPISODE, "status": "signed" if signed else "draft", "current": current,
            "in_force_version": version if signed else None, "versions": [current], "reviews": [],
            "reviews_due": [], "next_review_due_on": "2026-11-20" if signed else None}  # fmt: skip


class PatientServices:
    """intake, care_plan and notifications as the page calls them; keeps each call (method, service, path and
    query, Authorization, body). A service in ``down`` cannot be reached."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str, Any]] = []
        self.down: set[str] = set()
        self.plan: dict[str, Any] | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        service = request.url.host.removesuffix(".test")
        body = json.loads(request.content) if request.content else None
        where = request.url.path + (f"?{request.url.query.decode()}" if request.url.query else "")
        self.calls.append((request.method, service, where, request.headers.get("authorization", ""), body))
        if service in self.down:
            raise httpx.ConnectError("unreachable", request=request)
        return self._answer(request.method, request.url.path, body)

    def _answer(self, method: str, path: str, body: Any) -> httpx.Response:
        fixed = {"/measures": MEASURES, "/consents": CONSENTS, "/care-plan": CARE_PLAN, "/v1/notifications": MESSAGES}
        for end, answer in fixed.items():
            if path.endswith(end):
                return httpx.Response(200, json=answer)
        if method == "PUT":
            try:  # care_plan's own model of the body: its field errors, as care_plan answers them
                problems = TreatmentPlanIn.model_validate(body).model_dump(mode="json")["problems"]
            except ValidationError as error:
                detail = [field_error(entry | {"loc": ("body", *entry["loc"])}) for entry in error.errors()]
                return httpx.Response(422, json={"detail": detail})
            version = (self.plan or {"current": {"version": 0}})["current"]["version"] + 1
            self.plan = _plan(problems, version, signed=False)
        elif path.endswith("/sign") and self.plan is not None:
            if body["version"] != self.plan["current"]["version"]:
                return httpx.Response(409, json={"detail": "a newer version was put since the one named"})
            self.plan = _plan(self.plan["current"]["problems"], body["version"], signed=True)
        return httpx.Response(200, json=self.plan) if self.plan else httpx.Response(404, json={"detail": "no plan"})


@pytest.fixture
def services() -> PatientServices:
    return PatientServices()


@pytest.fixture
async def console(
    database: MemoryDatabase, store: CaseloadStore, intake: FakeIntake, services: PatientServices, kafka: object
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


def urls_of(html: str) -> list[str]:
    return re.findall(r'(?:href|action|src|hx-[a-z]+)="([^"]*)"', html)


async def test_each_part_comes_from_its_service_with_the_persons_token_and_the_read_is_audited(
    console: httpx.AsyncClient, events: Events, services: PatientServices, intake: FakeIntake, database: MemoryDatabase
) -> None:
    await admitted(events)
    await signed_in(console)
    page = await console.get(PAGE)
    assert page.status_code == 200, page.text
    text = page.text
    assert '<h2 id="who">Alex Example</h2>' in text and "1990-04-01" in text
    assert "<dd>IOP</dd>" in text and "<dd>active</dd>" in text and "<dd>iop-am</dd>" in text
    assert 'role="img" aria-labelledby="chart-phq9-title chart-phq9-desc"' in text  # the chart, with its name
    assert "PHQ-9 scores over time" in text and "caseness 10" in text and "baseline 16 ± 6" in text
    assert "<caption>PHQ-9 scores</caption>" in text and "reliable improvement" in text  # the table beside it
    assert "chart-audit" not in text  # PHQ-9 and GAD-7 are charted
    assert "late (150 minutes)" in text  # attendance, from care_plan
    assert f"family: {SUPPORT} (sister)" in text and "sam@example.org" not in text  # consents: no contact data
    assert "session reminder" in text and "sms" in text  # messages sent
    assert "No treatment plan yet." in text and f'href="{FORM}"' in text
    assert re.search(r"Care plan started at IOP</li>\s*<li>.*Intake assessment: PHP recommended", text)  # newest first
    assert {call[3] for call in services.calls} == {BEARER} and set(intake.authorizations) == {BEARER}
    assert sorted((call[1], call[2]) for call in services.calls) == [
        ("care_plan", f"/v1/episodes/{EPISODE}/care-plan"), ("care_plan", f"/v1/episodes/{EPISODE}/treatment-plan"),
        ("intake", f"/v1/episodes/{EPISODE}/consents"), ("intake", f"/v1/episodes/{EPISODE}/measures"),
        ("notifications", f"/v1/notifications?episode_id={EPISODE}&limit=50")]  # fmt: skip
    [entry] = await database["audit_log"].find({"action": "read_patient"}).to_list()
    assert (entry["role"], entry["episode_ids"], entry["via"], entry["names"]) == ("clinician", [EPISODE], "console",
                                                                                  True)  # fmt: skip
    unknown = await console.get("/console/episodes/no-such-episode")
    assert unknown.status_code == 404 and "No episode with this id" in unknown.text


async def test_a_part_whose_service_is_down_says_which_and_the_rest_of_the_page_still_shows(
    console: httpx.AsyncClient, events: Events, services: PatientServices, intake: FakeIntake
) -> None:
    await admitted(events)
    await signed_in(console)
    services.down = {"intake"}
    intake.status = 503
    page = (await console.get(PAGE)).text
    assert page.count("intake cannot be reached: this part cannot be shown now") == 2  # scores, consents
    assert "The name cannot be shown now: intake answered 503." in page and "(name not shown)" in page
    assert "late (150 minutes)" in page and "session reminder" in page and "<dd>IOP</dd>" in page
    services.down, intake.status = {"care_plan", "notifications"}, 200
    page = (await console.get(PAGE)).text
    assert page.count("care plan cannot be reached: this part cannot be shown now") == 2  # plan, attendance
    assert "notifications cannot be reached: this part cannot be shown now" in page
    assert "Alex Example" in page and "PHQ-9 scores over time" in page


async def test_a_plan_is_written_row_by_row_put_at_care_plan_and_signed_there(
    console: httpx.AsyncClient, events: Events, services: PatientServices
) -> None:
    await admitted(events)
    await signed_in(console)
    blank = await console.get(FORM)
    assert blank.status_code == 200 and 'name="p0.statement"' in blank.text and "Alex Example" in blank.text
    csrf = csrf_of(blank.text)
    more = await console.post(FORM, data=TYPED | {"csrf": csrf, "do": "add:p0.g0.o0.i"})  # another intervention
    assert 'name="p0.g0.o0.i1.modality"' in more.text and PROBLEM in more.text and services.calls[-1][0] == "GET"
    fewer = await console.post(FORM, data=TYPED | {"csrf": csrf, "do": "remove:p0.g0.o0.i0"})
    assert 'name="p0.g0.o0.i0.modality"' not in fewer.text and PROBLEM in fewer.text
    assert (await console.post(FORM, data=TYPED | {"do": "save"})).status_code == 403  # no CSRF token: not done
    saved = await console.post(FORM, data=TYPED | {"csrf": csrf, "do": "save", "p0.g0.o0.i1.modality": ""})
    assert saved.status_code == 303 and saved.headers["location"] == f"{PAGE}?done=saved#treatment-plan"
    [(_, _, path, authorization, body)] = [call for call in services.calls if call[0] == "PUT"]
    assert (path, authorization) == (f"/v1/episodes/{EPISODE}/treatment-plan", BEARER)
    assert body == {"problems": [{"statement": PROBLEM, "goals": [{"in_own_words": "I want to be there for my kids.",
        "objectives": [{"statement": "PHQ-9 below 10 on two measures in a row.", "target_date": "2027-01-15",
                        "target": {"instrument": "phq9", "below": "10"},
                        "interventions": [{"modality": "group", "per_week": "3",
                                           "responsible_role": "counsellor"}]}]}]}]}  # fmt: skip
    page = await console.get(f"{PAGE}?done=saved")
    assert "Saved as a new version" in page.text and "Version 1: not signed yet" in page.text
    signed = await console.post(f"{FORM}/sign", data={"csrf": csrf, "version": "1"})
    assert signed.status_code == 303 and services.calls[-1][2:] == (f"/v1/episodes/{EPISODE}/treatment-plan/sign",
                                                                    BEARER, {"version": 1})  # fmt: skip
    page = await console.get(f"{PAGE}?done=signed")
    assert "Signed: this version is in force." in page.text and "Sign version" not in page.text
    assert "Record a review of version 1" in page.text
    reviewed = await console.post(f"{FORM}/review", data={"csrf": csrf, "outcome": "continued"})
    assert reviewed.headers["location"] == f"{PAGE}?done=reviewed#treatment-plan"
    assert services.calls[-1][2:] == (f"/v1/episodes/{EPISODE}/treatment-plan/review", BEARER, {"outcome": "continued"})
    services.down = {"care_plan"}
    down = await console.post(f"{FORM}/review", data={"csrf": csrf, "outcome": "continued"})
    assert "care plan cannot be reached: nothing was recorded" in down.text
    services.down = set()
    again = await console.get(FORM)  # the form holds the version in force
    assert f">{PROBLEM}</textarea>" in again.text and 'value="counsellor"' in again.text


async def test_care_plans_field_errors_are_shown_next_to_the_fields_they_name_and_the_text_is_kept(
    console: httpx.AsyncClient, events: Events, services: PatientServices
) -> None:
    await admitted(events)
    await signed_in(console)
    csrf = csrf_of((await console.get(FORM)).text)
    typed = TYPED | {"csrf": csrf, "do": "save", "p0.g0.o0.target_date": "soon", "p0.g0.o0.i0.per_week": "0"}
    refused = await console.post(FORM, data=typed)
    text = refused.text
    assert refused.status_code == 200 and "Not saved: see the fields marked below." in text
    assert re.search(r'id="p0\.g0\.o0\.target_date" name="p0\.g0\.o0\.target_date" type="date" value="soon" '
                     r'aria-invalid="true" aria-describedby="error-p0\.g0\.o0\.target_date">', text)  # fmt: skip
    assert (
        '<span class="error field-error" id="error-p0.g0.o0.target_date">Input should be a valid date or datetime'
        "</span>"
    ) in text
    assert 'id="error-p0.g0.o0.i0.per_week">Input should be greater than 0</span>' in text
    assert f">{PROBLEM}</textarea>" in text  # what was typed is kept


async def test_what_was_typed_is_kept_when_care_plan_is_down_and_a_refused_signing_is_said_by_its_button(
    console: httpx.AsyncClient, events: Events, services: PatientServices
) -> None:
    await admitted(events)
    await signed_in(console)
    csrf = csrf_of((await console.get(FORM)).text)
    services.down = {"care_plan"}
    kept = await console.post(FORM, data=TYPED | {"csrf": csrf, "do": "save"})
    assert "care plan cannot be reached: nothing was recorded" in kept.text
    assert f">{PROBLEM}</textarea>" in kept.text and 'value="counsellor"' in kept.text
    assert '<option value="phq9" selected>PHQ-9</option>' in kept.text
    services.down = set()
    assert (await console.post(FORM, data=TYPED | {"csrf": csrf, "do": "save"})).status_code == 303
    stale = await console.post(f"{FORM}/sign", data={"csrf": csrf, "version": "7"})
    assert re.search(r'<span id="sign-result" class="error">care plan refused: a newer version was put since',
                     stale.text)  # fmt: skip


async def test_no_pii_in_any_url_of_the_pages_or_of_the_calls_to_the_services(
    console: httpx.AsyncClient, events: Events, services: PatientServices
) -> None:
    await admitted(events)
    await signed_in(console)
    csrf = csrf_of((await console.get(FORM)).text)
    await console.post(FORM, data=TYPED | {"csrf": csrf, "do": "save"})
    pages = [(await console.get(path)).text for path in (PAGE, FORM)]
    pages.append((await console.post(FORM, data=TYPED | {"csrf": csrf, "do": "add:p"})).text)
    private = (NAMES["name"], "Alex", NAMES["date_of_birth"], SUPPORT, "sister", PROBLEM, "kids", "counsellor")
    urls = [url for html in pages for url in urls_of(html)] + [call[2] for call in services.calls]
    assert any(EPISODE in url for url in urls)
    assert [url for url in urls if any(word.lower() in url.lower() for word in private)] == []
    assert all(word in pages[0] for word in (NAMES["name"], SUPPORT, PROBLEM))  # they are in the page's body
