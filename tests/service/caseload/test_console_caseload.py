"""The console's Caseload page and the worklists' actions on fakes: mine / all and the filters over the projection
(audited with the person), the search by name at intake with the person's own token (a name never in a URL; a
refusal next to the field it names; intake down said, what was typed kept), every worklist rendered with its action,
and the utilization-review desk kept to its list."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.caseload.console import web
from services.caseload.console.sessions import ConsoleSessions
from services.common.auth import Principal, Role
from stepwise_contract import CareTeamChanged, new_event
from tests.service.caseload.conftest import FakeIntake
from tests.service.caseload.test_api import admitted
from tests.service.caseload.test_console import console, csrf_of, signed_in
from tests.service.conftest import TOKENS, Events
from tests.service.memory_mongo import MemoryDatabase
from tests.unit.contract.test_contract import EPISODE, T0, make_data

__all__ = ["console"]  # the console on fakes, shared with test_console.py

CLINICIAN, UR, ADMIN = TOKENS[Role.CLINICIAN], TOKENS[Role.UTILIZATION_REVIEW], TOKENS[Role.ADMIN]
OTHER = "0b6f6a52-3c1e-4d8e-9a0f-5e2d7c1b9a34"
FOUND = {"patients": [{"patient_id": "p-1", "name": "Alex Example", "date_of_birth": "1990-04-01", "episodes": [
    {"episode_id": EPISODE, "program": "adult", "status": "open", "opened_at": "2026-10-20T13:00:00Z"},
    {"episode_id": "not-projected-yet", "program": "adult", "status": "open", "opened_at": "2026-10-22T13:00:00Z"},
]}], "more": False}  # fmt: skip
NAME_TOO_SHORT = {"detail": [{"loc": ["body", "name"], "msg": "give at least 3 letters of a word of the name",
                              "type": "name_too_short"}]}  # fmt: skip


class Services:
    """intake, care_plan, notifications and authorizations as the console calls them: each call kept (service,
    method, path, query, Authorization, body); ``answers`` by (service, path), ``down`` the unreachable ones."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str, str, Any]] = []
        self.answers: dict[tuple[str, str], httpx.Response] = {}
        self.down: set[str] = set()

    def handle(self, request: httpx.Request) -> httpx.Response:
        service = request.url.host.removesuffix(".test")
        body = json.loads(request.content) if request.content else None
        self.calls.append((service, request.method, request.url.path, request.url.query.decode(),
                           request.headers.get("authorization", ""), body))  # fmt: skip
        if service in self.down:
            raise httpx.ConnectError("refused", request=request)
        return self.answers.get((service, request.url.path)) or httpx.Response(200, json={"done": True})

    def to(self, service: str) -> list[tuple[str, str, str, str, str, Any]]:
        return [call for call in self.calls if call[0] == service]


@pytest.fixture
def services() -> Services:
    return Services()


async def with_person(client: httpx.AsyncClient, database: MemoryDatabase, subject: str) -> None:
    """A session of a person the identity provider names (as the OIDC sign-in opens one)."""
    sessions = ConsoleSessions(database, timedelta(minutes=15))  # type: ignore[arg-type]
    cookie = await sessions.open(CLINICIAN, Principal(Role.CLINICIAN, "jti-1", subject, "rivera"))
    client.cookies.set(web.COOKIE, cookie)


async def two_episodes(events: Events) -> None:
    """EPISODE at IOP in group iop-am, its primary clinician dr-rivera; OTHER assessed only."""
    await admitted(events)
    care_team = CareTeamChanged(episode_id=EPISODE, primary_clinician="dr-rivera", changed_at=T0)
    await events.deliver(new_event(care_team, source="/stepwise/care-plan"))
    await events.deliver(new_event(make_data("iop.assessment.completed", OTHER), source="/stepwise/intake"))


def episode_links(html: str) -> list[str]:
    return re.findall(r'href="/console/episodes/([^"]+)"', html)


async def test_the_caseload_lists_all_or_filtered_with_names_asked_with_the_persons_token(
    console: httpx.AsyncClient, events: Events, intake: FakeIntake, database: MemoryDatabase
) -> None:
    await two_episodes(events)
    await signed_in(console)
    mine = await console.get("/console/caseload", params={"view": "mine"})
    assert mine.status_code == 200 and 'aria-current="page"' in mine.text
    assert "your sign-in names no person" in mine.text and episode_links(mine.text) == []  # a static token: nobody
    every = await console.get("/console/caseload")  # all, for a sign-in that names no person
    assert 'value="all" checked' in every.text
    assert sorted(episode_links(every.text)) == sorted([EPISODE, OTHER]) and "Alex Example" in every.text
    assert intake.authorizations[-1] == f"Bearer {CLINICIAN}"
    assert '<option value="iop-am"' in every.text  # the groups episodes are in
    for params, expected in [({"level": "IOP"}, [EPISODE]), ({"status": "assessed"}, [OTHER]),
                             ({"group": "iop-am"}, [EPISODE]), ({"worklist": "measures_due"}, []),
                             ({"level": "", "group": "", "status": "", "worklist": ""}, [EPISODE, OTHER])]:  # fmt: skip
        shown = await console.get("/console/caseload", params={"view": "all", **params})
        assert sorted(episode_links(shown.text)) == sorted(expected), params
    assert (await console.get("/console/caseload", params={"worklist": "nonsense"})).status_code == 422
    audit = await database["audit_log"].find({"action": "read_caseload", "via": "console"}).to_list()
    assert audit[0]["episode_ids"] == sorted([EPISODE, OTHER]) and audit[0]["token_id"]
    assert "Alex" not in str(audit)


async def test_mine_is_the_episodes_whose_primary_clinician_is_the_signed_in_person(
    console: httpx.AsyncClient, events: Events, database: MemoryDatabase
) -> None:
    await two_episodes(events)
    await with_person(console, database, "dr-rivera")
    mine = await console.get("/console/caseload")
    assert mine.status_code == 200 and episode_links(mine.text) == [EPISODE]
    assert 'value="mine" checked' in mine.text
    assert sorted(episode_links((await console.get("/console/caseload?view=all")).text)) == sorted([EPISODE, OTHER])
    console.cookies.clear()
    await with_person(console, database, "dr-other")
    assert episode_links((await console.get("/console/caseload")).text) == []


async def test_a_patient_is_found_by_name_in_a_post_through_intake_with_the_persons_token(
    console: httpx.AsyncClient, events: Events, services: Services, database: MemoryDatabase
) -> None:
    await two_episodes(events)
    await signed_in(console)
    page = await console.get("/console/caseload")
    assert 'action="/console/caseload/search"' in page.text and 'method="post"' in page.text
    services.answers[("intake", "/v1/patients/search")] = httpx.Response(200, json=FOUND)
    found = await console.post("/console/caseload/search", data={"csrf": csrf_of(page.text), "name": "alex exa"})
    assert found.status_code == 200
    [(_, method, path, query, authorization, body)] = services.to("intake")
    assert (method, path, query, authorization) == ("POST", "/v1/patients/search", "", f"Bearer {CLINICIAN}")
    assert body == {"name": "alex exa", "limit": 20}
    assert episode_links(found.text) == [EPISODE, "not-projected-yet"]
    assert "Alex Example" in found.text and "open at intake" in found.text  # not in the projection yet: intake's word
    assert 'value="alex exa"' in found.text  # what was typed stays in the field
    [entry] = await database["audit_log"].find({"action": "search_caseload"}).to_list()
    assert entry["episode_ids"] == [EPISODE] and entry["via"] == "console" and "alex" not in str(entry)
    refused = await console.post("/console/caseload/search", data={"name": "alex"})
    assert refused.status_code == 403 and len(services.to("intake")) == 1  # no CSRF token: nothing searched


async def test_a_refused_search_says_so_next_to_the_field_and_intake_down_keeps_what_was_typed(
    console: httpx.AsyncClient, services: Services
) -> None:
    await signed_in(console)
    csrf = csrf_of((await console.get("/console/caseload")).text)
    services.answers[("intake", "/v1/patients/search")] = httpx.Response(422, json=NAME_TOO_SHORT)
    short = await console.post("/console/caseload/search", data={"csrf": csrf, "name": "al"})
    error = re.search(r'<p id="search-name-error" class="error" role="alert">([^<]+)</p>', short.text)
    assert error and error.group(1) == "intake refused: name: give at least 3 letters of a word of the name"
    assert 'aria-describedby="search-name-error"' in short.text and 'value="al"' in short.text
    services.down.add("intake")
    down = await console.post("/console/caseload/search", data={"csrf": csrf, "name": "Alex",
                                                                "date_of_birth": "1990-04-01"})  # fmt: skip
    assert "intake cannot be reached" in down.text
    assert 'value="Alex"' in down.text and 'value="1990-04-01"' in down.text


async def worklist_events(events: Events) -> None:
    """The episode on every worklist but the alerts and recommendations."""
    await admitted(events)
    for event_type, source in [("iop.measure.due", "care-plan"), ("iop.treatment_plan.review_due", "care-plan"),
                               ("iop.notification.failed", "notifications"), ("iop.authorization.changed",
                               "authorizations"), ("iop.authorization.review_due", "authorizations"),
                               ("iop.certification.due", "authorizations"),
                               ("iop.service.unauthorized", "authorizations")]:  # fmt: skip
        await events.deliver(new_event(make_data(event_type), source=f"/stepwise/{source}", time=T0))
    for day in ("20261021", "20261022"):
        missed = make_data("iop.session.missed", session_id=f"iop-am-{day}")
        await events.deliver(new_event(missed, source="/stepwise/care-plan"))


async def test_every_worklist_renders_its_rows_with_their_action_and_a_link_to_the_patient(
    console: httpx.AsyncClient, events: Events
) -> None:
    await worklist_events(events)
    await signed_in(console)
    says = {
        "missed_sessions": ["2 sessions missed in a row", "Reach out to the patient"],
        "measures_due": ["PHQ9", "questionnaire link"],
        "plan_reviews": ["Review due", "Reviewed: the plan continues", "To revise the plan"],
        "authorizations": ["review due", "certification due", "unauthorized", "For the utilization-review desk"],
        "failed_messages": ["failed", "Not sent again: notifications has no resend"],
    }
    for name, words in says.items():
        page = await console.get(f"/console/worklists/{name}")
        assert page.status_code == 200, name
        assert EPISODE in episode_links(page.text), name
        for word in words:
            assert word in page.text, (name, word)
        assert "Record the review" not in page.text  # the desk's forms are the UR coordinator's and admins'


async def test_a_plan_review_is_recorded_at_care_plan_with_the_persons_token(
    console: httpx.AsyncClient, events: Events, services: Services
) -> None:
    await worklist_events(events)
    await signed_in(console)
    page = await console.get("/console/worklists/plan_reviews")
    done = await console.post(f"/console/plan-reviews/{EPISODE}", data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "Reviewed: the plan continues</span>" in done.text
    assert services.calls == [("care_plan", "POST", f"/v1/episodes/{EPISODE}/treatment-plan/review", "",
                               f"Bearer {CLINICIAN}", {"outcome": "continued"})]  # fmt: skip
    services.answers[("care_plan", f"/v1/episodes/{EPISODE}/treatment-plan/review")] = httpx.Response(
        409, json={"detail": "no treatment plan is signed yet"}
    )
    refused = await console.post(f"/console/plan-reviews/{EPISODE}", data={"csrf": csrf_of(page.text)})
    assert "care plan refused: no treatment plan is signed yet" in refused.text


async def test_the_utilization_review_desk_signs_in_to_its_list_only_and_records_reviews(
    console: httpx.AsyncClient, events: Events, services: Services, intake: FakeIntake
) -> None:
    await worklist_events(events)
    form = await console.get("/console/sign-in")
    signed = await console.post("/console/sign-in", data={"csrf": csrf_of(form.text), "token": UR})
    assert signed.status_code == 303 and signed.headers["location"] == "/console/worklists/authorizations"
    page = await console.get("/console/worklists/authorizations")
    assert page.status_code == 200 and "Record the review" in page.text and "Record the certification" in page.text
    assert "Names are shown to clinicians and intake staff only" in page.text and intake.authorizations == []
    assert episode_links(page.text) == [] and f"episode {EPISODE}" in page.text  # no Patient page for the desk
    nav = page.text.split("<main", 1)[0]
    assert "/console/worklists/authorizations" in nav and "/console/today" not in nav and "/console/caseload" not in nav
    for path in ("/console/today", "/console/worklists/safety_alerts", "/console/caseload", "/console/admin"):
        refused = await console.get(path)
        assert refused.status_code == 403 and "not for the utilization review role" in refused.text, path
    authorization = re.findall(r'action="/console/authorizations/([^/"]+)/reviews"', page.text)[0]
    form_data = {"csrf": csrf_of(page.text), "outcome": "approved", "units_added": "10", "next_review_on": "",
                 "reason": "payer called back"}  # fmt: skip
    done = await console.post(f"/console/authorizations/{authorization}/reviews", data=form_data)
    assert done.status_code == 200 and "Review recorded: approved" in done.text
    assert services.calls[-1] == ("authorizations", "POST", f"/v1/authorizations/{authorization}/reviews", "",
                                  f"Bearer {UR}", {"outcome": "approved", "units_added": 10.0,
                                                   "reason": "payer called back"})  # fmt: skip
    services.down.add("authorizations")
    down = await console.post(f"/console/authorizations/{authorization}/reviews", data=form_data)
    assert "authorizations cannot be reached: nothing was recorded" in down.text
    assert 'value="payer called back"' in down.text and 'value="10"' in down.text  # kept as typed
    services.down.clear()
    services.answers[("authorizations", f"/v1/episodes/{EPISODE}/certifications")] = httpx.Response(
        422, json={"detail": [{"loc": ["body", "hours_per_week"], "msg": "Input should be greater than 0"}]}
    )
    certification = {"csrf": csrf_of(page.text), "certified_on": "2026-10-20", "hours_per_week": "0",
                     "clinician": "dr.rivera"}  # fmt: skip
    refused = await console.post(f"/console/authorizations/certifications/{EPISODE}", data=certification)
    assert "authorizations refused: hours_per_week: Input should be greater than 0" in refused.text
    assert services.calls[-1][-1] == {"certified_on": "2026-10-20", "hours_per_week": 0.0, "clinician": "dr.rivera"}
