"""The console's Intake pages in-process (issue 28): register a patient, open an episode, record an assessment item
by item, see intake's recommendation; each step intake's, with the person's token. intake is a fake that validates
bodies with intake's own request models, so its 422s name fields as intake's do."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from services.caseload import api
from services.caseload.app import add_console
from services.caseload.console import forms, web, web_intake
from services.caseload.console.clients import SERVICES, Answer, Services
from services.caseload.console.sessions import ConsoleSessions
from services.caseload.names import IntakeDirectory
from services.caseload.queries import Caseload
from services.caseload.settings import CaseloadSettings
from services.caseload.store import CaseloadStore
from services.common.auth import Role
from services.intake.schemas import AssessmentAnswersIn, AssessmentIn, EpisodeIn, PatientIn
from tests.service.caseload.conftest import NAMES, ZONE, FakeIntake
from tests.service.caseload.test_console import signed_in
from tests.service.conftest import TOKENS, service_app
from tests.service.conftest import api as client_of
from tests.service.memory_mongo import MemoryDatabase

APP = service_app("caseload", [api.router, web.router, web_intake.router], consumes=True)
add_console(APP, CaseloadSettings())
CLINICIAN = TOKENS[Role.CLINICIAN]
PATIENT = {"name": "Robin Quill", "date_of_birth": "1988-02-03", "email": "robin@example.org", "phone": "+12025550123"}
DIMENSIONS = {"withdrawal": 1, "biomedical": 0, "emotional": 2, "readiness": 2, "relapse": 2, "environment": 1}
RECORD = "/console/intake/episodes/ep-1/assessments"
PREVIEW = f"{RECORD}/preview"
RATIONALE = "Highest dimension rating is 2 (emotional, readiness, relapse): IOP."


class IntakeWrites:
    """intake's patients, episodes and assessments as the console calls them: each call kept (method, path,
    Authorization, Idempotency-Key, body); bodies validated by intake's request models (a 422 as intake's: ``loc``,
    ``type``, ``msg`` and the ``input``, which the console must never show); the recommendation is always IOP."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str | None, Any]] = []
        self.down = False
        self.registered: dict[tuple[str, str], str] = {}
        self.assessments: dict[str, list[dict[str, Any]]] = {}

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        self.calls.append((request.method, path, request.headers["authorization"],
                           request.headers.get("idempotency-key"), body))  # fmt: skip
        if request.method == "GET" and path.endswith("/assessments"):
            return httpx.Response(200, json={"assessments": self.assessments.get(path.split("/")[3], [])})
        if request.method == "GET":
            return httpx.Response(200, json={"patient_id": path.split("/")[-1], **PATIENT})
        if path == "/v1/patients":
            return self._register(body)
        if path.endswith("/episodes"):
            return _invalid(EpisodeIn, body) or httpx.Response(201, json={"episode_id": str(uuid.uuid4())})
        if path.endswith("/preview"):
            return _invalid(AssessmentAnswersIn, body) or httpx.Response(200, json=_appraised(path.split("/")[3], body))
        return self._assess(path.split("/")[3], body, request.headers["authorization"])

    def _register(self, body: Any) -> httpx.Response:
        if (invalid := _invalid(PatientIn, body)) is not None:
            return invalid
        who = (body["name"].lower(), body["date_of_birth"])
        if who in self.registered and not body.get("confirm_new"):
            return httpx.Response(409, json={"detail": "a patient with this name and date of birth is registered "
                                             "already", "patient_id": self.registered[who]})  # fmt: skip
        self.registered[who] = str(uuid.uuid4())
        return httpx.Response(201, json={"patient_id": self.registered[who]})

    def _assess(self, episode_id: str, body: Any, authorization: str) -> httpx.Response:
        if (invalid := _invalid(AssessmentIn, body)) is not None:
            return invalid
        placement = body.get("placement")
        if placement and authorization != f"Bearer {CLINICIAN}":
            return httpx.Response(403, json={"detail": "only a clinician may choose a level (placement)"})
        if placement and placement["chosen_level"] == "IOP":
            return _error(["body", "placement", "chosen_level"], "placement_is_recommendation",
                          "equals the recommended level; leave placement out", "IOP")  # fmt: skip
        assessment = _appraised(episode_id, body) | {"assessment_id": str(uuid.uuid4()), "placement": placement}
        if assessment["safety_alert"]:
            assessment["safety_alert"]["alert_id"] = "al-1"
        self.assessments.setdefault(episode_id, []).append(assessment)
        return httpx.Response(201, json=assessment)


def _appraised(episode_id: str, body: Any) -> dict[str, Any]:
    """What intake's preview answers for the answers (and an assessment recorded with them holds)."""
    alert = None
    if body.get("instruments", {}).get("phq9", [0] * 9)[8]:
        alert = {"level": "same_day", "reasons": ["phq9_item9_positive"]}
    return {
        "episode_id": episode_id, "kind": "intake", "recommended_level": "IOP",
        "refer_out": False, "policy_version": "placement-default-2026.11",
        "rationale": [{"code": "highest_dimension", "text": RATIONALE}], "safety_alert": alert,
        "instruments": [{"instrument": "phq9", "total": 13, "band": "moderate", "flags": [], "subscales": {}}],
    }  # fmt: skip


def _invalid(model: type[BaseModel], body: Any) -> httpx.Response | None:
    try:
        model.model_validate(body)
    except ValidationError as error:
        detail = [{"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"], "input": e.get("input")}
                  for e in error.errors()]  # fmt: skip
        return httpx.Response(422, json={"detail": detail})
    return None


def _error(loc: list[Any], kind: str, msg: str, value: Any) -> httpx.Response:
    return httpx.Response(422, json={"detail": [{"type": kind, "loc": loc, "msg": msg, "input": value}]})


@pytest.fixture
def writes() -> IntakeWrites:
    return IntakeWrites()


@pytest.fixture
async def console(
    database: MemoryDatabase, store: CaseloadStore, intake: FakeIntake, writes: IntakeWrites, kafka: object
) -> AsyncIterator[httpx.AsyncClient]:
    directory = IntakeDirectory("http://intake.test", transport=httpx.MockTransport(intake.handle))
    sessions = ConsoleSessions(database, timedelta(minutes=15))  # type: ignore[arg-type]
    clients = Services({name: f"http://{name}.test" for name in SERVICES}, httpx.MockTransport(writes.handle))
    state = {"caseload": Caseload(store, ZONE, 2), "directory": directory, "kafka": kafka, "stream_poll_seconds": 0.05,
             "console_sessions": sessions, "console_services": clients}  # fmt: skip
    async with await client_of("caseload", APP, database, state) as client:
        yield client
    await directory.close()
    await clients.close()


def fields_of(html: str) -> dict[str, str]:
    """The form's hidden fields (CSRF token, Idempotency-Key)."""
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


def error_at(html: str, control: str) -> str:
    """The words shown next to ``control`` (its ``error-…`` paragraph), which the control names as its description."""
    error_id = "error-" + control.replace(".", "-")
    found = re.search(rf'<p class="error field-error" id="{re.escape(error_id)}">([^<]*)</p>', html)
    assert found, f"no error next to {control}"
    assert f'aria-describedby="{error_id}' in html
    return found.group(1)


async def placed_after_preview(console: httpx.AsyncClient, typed: dict[str, str]) -> httpx.Response:
    """The assessment previewed, then placed at another level (``typed``'s placement) with the preview's form."""
    form = await console.get("/console/intake/episodes/ep-1/assessment")
    previewed = await console.post(PREVIEW, data=fields_of(form.text) | typed)
    assert previewed.status_code == 200 and "Place at another level" in previewed.text
    return await console.post(RECORD, data=fields_of(previewed.text) | typed | {"decision": "placement"})


def answered(**extra: str) -> dict[str, str]:
    """The assessment form filled in: six ratings, PHQ-9's nine items, three C-SSRS questions."""
    form = {f"dimensions.{name}": str(value) for name, value in DIMENSIONS.items()}
    form |= {f"instruments.phq9.{n}": str(value) for n, value in enumerate([1, 2, 1, 2, 1, 1, 2, 1, 0])}
    return form | {"instruments.cssrs.q1": "yes", "instruments.cssrs.q2": "no", "instruments.cssrs.q6": "no"} | extra


async def test_register_open_an_episode_assess_and_see_the_recommendation_with_ids_alone_in_urls(
    console: httpx.AsyncClient, writes: IntakeWrites
) -> None:
    await signed_in(console)
    seen: list[str] = []
    page = await console.get("/console/intake")
    assert page.status_code == 200 and 'aria-current="page">Intake' in page.text
    registered = await console.post("/console/intake/patients", data=fields_of(page.text) | PATIENT)
    assert registered.status_code == 303
    (_, path, authorization, key, body) = writes.calls[-1]
    assert (path, authorization, body) == ("/v1/patients", f"Bearer {CLINICIAN}", PATIENT)
    assert key == fields_of(page.text)["key"]  # a double click registers once
    seen.append(registered.headers["location"])

    episode_page = await console.get(registered.headers["location"])
    assert "Robin Quill" in episode_page.text  # intake read with the person's token (and audits it)
    assert [re.findall(r'<option value="([a-z]+)"', episode_page.text)] == [["adult", "adolescent", "morning",
                                                                            "evening"]]  # fmt: skip
    [action] = re.findall(r'action="(/console/intake/patients/[^"]+)"', episode_page.text)
    opened = await console.post(action, data=fields_of(episode_page.text) | {"program": "adult", "track": "evening"})
    assert opened.status_code == 303 and writes.calls[-1][4] == {"program": "adult", "track": "evening"}
    seen.append(opened.headers["location"])

    form = await console.get(opened.headers["location"])
    for words in ("Readiness to change", "4 Severe", "Little interest or pleasure in doing things",
                  "3 Nearly every day", "Feeling nervous, anxious or on edge",
                  "Wish to be dead (past month)"):  # fmt: skip
        assert words in form.text, words
    [action] = re.findall(r' action="(/console/intake/episodes/[^"]+)"', form.text)
    previewed = await console.post(action, data=fields_of(form.text) | answered())
    assert previewed.status_code == 200 and writes.calls[-1][1].endswith("/assessments/preview")
    assert "Intake recommends IOP" in previewed.text and RATIONALE in previewed.text  # seen before recording
    assert "Place at another level" in previewed.text and "Record at IOP" in previewed.text
    [record] = re.findall(r'formaction="(/console/intake/episodes/[^"]+)" name="decision" value="recorded"',
                          previewed.text)  # fmt: skip
    recorded = await console.post(record, data=fields_of(previewed.text) | answered(decision="recorded"))
    assert recorded.status_code == 303
    assert writes.calls[-1][4] == {"dimensions": DIMENSIONS, "instruments": {
        "phq9": [1, 2, 1, 2, 1, 1, 2, 1, 0], "cssrs": {"q1": True, "q2": False, "q6": False}}}  # fmt: skip
    assert writes.calls[-2][4] == writes.calls[-1][4]  # the answers previewed are those recorded
    seen.append(recorded.headers["location"])

    result = await console.get(recorded.headers["location"])
    assert result.status_code == 200
    assert "Recommended level: IOP" in result.text and RATIONALE in result.text
    assert "Safety alert raised" not in result.text
    assert "PHQ-9" in result.text and "moderate" in result.text
    pages = [page.text, episode_page.text, form.text, previewed.text, result.text]
    seen += [url for html in pages for url in re.findall(r'(?:href|action)="([^"]+)"', html)]
    for url in seen:  # pseudonymous ids only: never a name, a birth date or contact data
        assert not any(value.lower() in url.lower() for value in [*PATIENT.values(), "Robin", "Quill"]), url


async def test_intakes_field_errors_are_shown_next_to_their_fields_in_words_without_the_values(
    console: httpx.AsyncClient, writes: IntakeWrites
) -> None:
    await signed_in(console)
    page = await console.get("/console/intake")
    typed = {"name": "Robin Quill", "date_of_birth": "2999-01-01", "email": "not-an-address", "phone": "555"}
    refused = await console.post("/console/intake/patients", data=fields_of(page.text) | typed)
    assert refused.status_code == 422
    assert error_at(refused.text, "date_of_birth") == "must be in the past"
    assert error_at(refused.text, "phone").startswith("not a full phone number: give the area code")
    for control in ("email", "phone"):
        assert typed[control] not in error_at(refused.text, control)
    assert 'value="not-an-address"' in refused.text and 'value="Robin Quill"' in refused.text  # kept as typed
    assert fields_of(refused.text)["key"] != fields_of(page.text)["key"]  # the next try is another request
    unnamed = await console.post("/console/intake/patients", data=fields_of(page.text) | {"name": " "})
    assert error_at(unnamed.text, "name") == "required" and error_at(unnamed.text, "date_of_birth") == "required"

    form = await console.get("/console/intake/episodes/ep-1/assessment")
    partial = answered(**{"instruments.cssrs.q2": "yes", "placement.chosen_level": "IOP"})
    del partial["dimensions.readiness"], partial["instruments.phq9.3"]
    assessed = await console.post(PREVIEW, data=fields_of(form.text) | partial)
    assert assessed.status_code == 422
    assert error_at(assessed.text, "dimensions.readiness") == "required"
    assert error_at(assessed.text, "instruments.phq9.3") == "choose one"  # the item left out, among those answered
    assert error_at(assessed.text, "instruments.cssrs.q3") == "required when q2 is yes"
    assert 'value="2" checked' in assessed.text  # the answers given stay chosen
    chosen = answered(**{"placement.chosen_level": "IOP", "placement.reason_code": "patient_preference"})
    same = await placed_after_preview(console, chosen)
    assert error_at(same.text, "placement.chosen_level") == "equals the recommended level; leave placement out"
    assert '<option value="patient_preference" selected>' in same.text


async def test_a_clinician_places_at_another_level_with_a_reason_and_intake_staff_are_not_offered_it(
    console: httpx.AsyncClient, writes: IntakeWrites
) -> None:
    await signed_in(console)
    placed = answered(**{"placement.chosen_level": "OP", "placement.reason_code": "patient_declined_higher_level",
                         "placement.note": "prefers evenings", "instruments.phq9.8": "1"})  # fmt: skip
    recorded = await placed_after_preview(console, placed)
    assert writes.calls[-1][4]["placement"] == {"chosen_level": "OP", "reason_code": "patient_declined_higher_level",
                                                "note": "prefers evenings"}  # fmt: skip
    result = await console.get(recorded.headers["location"])
    assert "Placed at another level" in result.text and "OP: patient declined higher level" in result.text
    assert "Safety alert raised: same day" in result.text and "/console/worklists/safety_alerts" in result.text
    console.cookies.clear()
    await signed_in(console, TOKENS[Role.INTAKE_STAFF])
    form = await console.get("/console/intake/episodes/ep-1/assessment")
    staff = await console.post(PREVIEW, data=fields_of(form.text) | answered())
    assert staff.status_code == 200 and "Place at another level" not in staff.text
    assert "Record at IOP" in staff.text and "Intake recommends IOP" in staff.text


async def test_intake_down_the_page_says_so_and_keeps_everything_typed(
    console: httpx.AsyncClient, writes: IntakeWrites, intake: FakeIntake
) -> None:
    await signed_in(console)
    page = await console.get("/console/intake")
    form = await console.get("/console/intake/episodes/ep-1/assessment")
    typed = answered(**{"placement.note": "typed before the outage"})
    previewed = await console.post(PREVIEW, data=fields_of(form.text) | typed)
    writes.down, intake.status = True, 503
    down = await console.post("/console/intake/patients", data=fields_of(page.text) | PATIENT)
    assert down.status_code == 503 and "intake cannot be reached: nothing was recorded" in down.text
    for value in PATIENT.values():
        assert f'value="{value}"' in down.text
    assert fields_of(down.text)["key"] == fields_of(page.text)["key"]  # a retry finds what the first one recorded
    lost = await console.post(RECORD, data=fields_of(previewed.text) | typed | {"decision": "placement"})
    assert lost.status_code == 503 and "intake cannot be reached" in lost.text
    assert len(re.findall(r"checked>", lost.text)) == len(typed) - 1  # every answer still chosen
    assert "typed before the outage</textarea>" in lost.text
    opened = await console.post("/console/intake/patients/p-1/episodes",
                                data=fields_of(page.text) | {"program": "adolescent", "track": "morning"})  # fmt: skip
    assert opened.status_code == 503 and '<option value="adolescent" selected>' in opened.text
    result = await console.get("/console/intake/episodes/ep-1/assessments/a-1")
    assert result.status_code == 503 and "intake cannot be reached" in result.text


async def test_a_patient_registered_already_is_offered_and_another_person_is_registered_when_confirmed(
    console: httpx.AsyncClient, writes: IntakeWrites
) -> None:
    await signed_in(console)
    page = await console.get("/console/intake")
    first = await console.post("/console/intake/patients", data=fields_of(page.text) | PATIENT)
    again = await console.post("/console/intake/patients", data=fields_of(page.text) | PATIENT | {"key": "k2"})
    assert again.status_code == 409 and "registered already" in again.text
    assert f'href="{first.headers["location"]}"' in again.text  # that patient's episode, by id
    confirmed = PATIENT | {"confirm_new": "yes"}
    other = await console.post("/console/intake/patients", data=fields_of(again.text) | confirmed)
    assert other.status_code == 303 and other.headers["location"] != first.headers["location"]
    assert writes.calls[-1][4] == PATIENT | {"confirm_new": True}


async def test_intake_pages_need_a_session_and_their_forms_the_csrf_token(
    console: httpx.AsyncClient, writes: IntakeWrites
) -> None:
    assert (await console.get("/console/intake")).headers["location"] == "/console/sign-in"
    await signed_in(console)
    for path in ("/console/intake/patients", "/console/intake/patients/p-1/episodes", RECORD, PREVIEW):
        assert (await console.post(path, data={"program": "adult"} | PATIENT)).status_code == 403, path
    assert (await console.get("/console/intake/patients/..%2Fnames/episode")).status_code == 404
    assert writes.calls == []
    names = (await console.get("/console/intake/episodes/ep-1/assessment")).text
    assert NAMES["name"] in names  # the directory's name for the episode


def test_field_errors_name_the_control_or_the_form() -> None:
    detail = [{"type": "missing", "loc": ["body", "dimensions", "relapse"], "msg": "Field required"},
              {"type": "value_error", "loc": ["body", "instruments", "bam"], "msg": "bad", "input": "secret"},
              {"type": "key_reused", "loc": ["header", "Idempotency-Key"], "msg": "reused"}]  # fmt: skip
    answer = Answer(False, {"detail": detail}, error="intake refused", status=422)
    assert forms.field_errors(answer, ["dimensions.relapse"]) == {
        "dimensions.relapse": "required", "": "instruments.bam: bad; header.Idempotency-Key: reused"}  # fmt: skip
    assert forms.field_errors(Answer(False, {"detail": "no"}, error="intake refused: no", status=409)) == {
        "": "intake refused: no"}  # fmt: skip
    assert forms.field_errors(Answer(False, error="intake cannot be reached", down="intake")) == {
        "": "intake cannot be reached"}  # fmt: skip
    assert forms.field_errors(Answer(True, {})) == {}


async def test_the_preview_warns_of_a_safety_alert_records_nothing_and_answers_changed_after_it_are_previewed_again(
    console: httpx.AsyncClient, writes: IntakeWrites
) -> None:
    await signed_in(console)
    form = await console.get("/console/intake/episodes/ep-1/assessment")
    alerting = answered(**{"instruments.phq9.8": "1", "placement.chosen_level": "OP"})
    previewed = await console.post(PREVIEW, data=fields_of(form.text) | alerting)
    assert "Recording this raises a safety alert: same day" in previewed.text
    assert "phq9 item9 positive" in previewed.text
    assert [(method, path, key) for method, path, _, key, _ in writes.calls] == [
        ("POST", "/v1/episodes/ep-1/assessments/preview", None)]  # fmt: skip
    assert "placement" not in writes.calls[-1][4] and writes.assessments == {}
    assert fields_of(previewed.text)["key"] == fields_of(form.text)["key"]  # recording is still that form's request
    changed = alerting | {"instruments.phq9.8": "2", "decision": "recorded"}
    again = await console.post(RECORD, data=fields_of(previewed.text) | changed)
    assert again.status_code == 200 and "The answers changed since the recommendation shown" in again.text
    assert writes.calls[-1][1].endswith("/preview") and writes.assessments == {}  # "Record at IOP" named their level
    recorded = await console.post(RECORD, data=fields_of(again.text) | changed)
    assert recorded.status_code == 303 and "placement" not in writes.calls[-1][4]  # at the level recommended
    console.cookies.clear()
    await signed_in(console, TOKENS[Role.INTAKE_STAFF])
    form = await console.get("/console/intake/episodes/ep-1/assessment")
    staff = await console.post(PREVIEW, data=fields_of(form.text) | changed)
    placed = changed | {"decision": "placement", "placement.reason_code": "patient_preference"}
    staff = await console.post(RECORD, data=fields_of(staff.text) | placed)
    assert staff.status_code == 403 and "only a clinician may choose a level" in staff.text
