"""The tier's fakes cannot drift from what they stand in for.

- The fake intake (``fake_intake.py``) answers the requests notifications and care_plan make exactly as intake's
  real app does over an in-memory store: the same requests, in the same situations (a consent in force, revoked,
  expired, unknown; an unknown episode; a refused token; a questionnaire link, made or refused), the same statuses
  and bodies. notifications' and care_plan's own clients are also run against the real app.
- The in-memory store refuses what MongoDB refuses where our code could hit it, with PyMongo's error classes: a
  document over 16 MiB, an update with conflicting paths.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo.errors import DocumentTooLarge, OperationFailure, WriteError

from services.care_plan.consents import IntakeConsents
from services.care_plan.settings import CarePlanSettings
from services.common.auth import Authenticator, Role
from services.common.dependencies import Dependencies
from services.common.idempotency import IdempotencyKeys
from services.common.outbox import no_relay
from services.common.utc import utc_now
from services.intake import api
from services.intake.domain.measures import load_measures_policy
from services.intake.domain.placement import load_placement_policy
from services.intake.settings import IntakeSettings
from services.intake.store import IntakeStore
from services.notifications.channels import IntakeContacts, NotWanted
from services.notifications.settings import NotificationsSettings
from tests.service.conftest import TIER_CLOCK, TOKENS, Clock, as_role, service_app
from tests.service.fake_intake import PATIENT_CONTACT, SUPPORT_CONTACT, FakeIntake, listed
from tests.service.memory_mongo import MAX_BSON_SIZE, MemoryDatabase

INTAKE_APP = service_app("intake", [api.router], consumes=False)
NOTIFICATIONS, CARE_PLAN = Role.NOTIFICATIONS, Role.CARE_PLAN
NOTIFICATIONS_SETTINGS = NotificationsSettings(_env_file=None, intake_url="http://intake.test",
                                               intake_token=TOKENS[NOTIFICATIONS])  # fmt: skip
CARE_PLAN_SETTINGS = CarePlanSettings(_env_file=None, intake_url="http://intake.test", intake_token=TOKENS[CARE_PLAN])


class RealIntake:
    """intake's own app over an in-memory store; a situation is made through its API, as staff would."""

    def __init__(self, database: MemoryDatabase) -> None:
        app = INTAKE_APP
        app.state.authenticator = Authenticator({token: role for role, token in TOKENS.items()})
        app.state.dependencies = Dependencies()
        app.state.store = IntakeStore(database, wake_relay=no_relay)  # type: ignore[arg-type]
        app.state.placement_policy = load_placement_policy(IntakeSettings(_env_file=None).intake_placement_policy_file)
        app.state.measures_policy = load_measures_policy()
        app.state.outcomes_settings = IntakeSettings(_env_file=None).outcomes
        app.state.link_settings = IntakeSettings(_env_file=None).links
        app.state.idempotency_keys = IdempotencyKeys(database)  # type: ignore[arg-type]
        self.transport = httpx.ASGITransport(app=app)
        self._staff = httpx.AsyncClient(transport=self.transport, base_url="http://intake.test",
                                        headers=as_role(Role.INTAKE_STAFF))  # fmt: skip

    async def episode(self) -> str:
        patient = {"name": "Alex Example", "date_of_birth": "1990-04-01", "email": PATIENT_CONTACT["email"],
                   "phone": PATIENT_CONTACT["phone"]}  # fmt: skip
        patient_id = (await self._created("/v1/patients", patient))["patient_id"]
        return str((await self._created(f"/v1/patients/{patient_id}/episodes", {"program": "adult"}))["episode_id"])

    async def consent(self, episode_id: str, kind: str, *scopes: str, expires_on: date | None = None) -> str:
        body: dict[str, Any] = {"recipient_kind": kind, "scopes": list(scopes)}
        if kind != "alumni_group":
            body["recipient"] = {"name": "Sam Example", **SUPPORT_CONTACT}
        if expires_on:
            body["expires_on"] = expires_on.isoformat()
        return str((await self._created(f"/v1/episodes/{episode_id}/consents", body))["consent_id"])

    async def revoke(self, episode_id: str, consent_id: str) -> None:
        revoked = await self._staff.post(f"/v1/episodes/{episode_id}/consents/{consent_id}/revoke")
        assert revoked.status_code == 200, revoked.text

    async def _created(self, path: str, body: dict[str, Any]) -> Any:
        response = await self._staff.post(path, json=body)
        assert response.status_code == 201, response.text
        return response.json()


class Fake:
    """The fake, made to the same situations through its own set-up methods."""

    def __init__(self) -> None:
        self.fake = FakeIntake()
        self.transport = httpx.MockTransport(self.fake.handle)

    async def episode(self) -> str:
        return self.fake.episode()

    async def consent(self, episode_id: str, kind: str, *scopes: str, expires_on: date | None = None) -> str:
        return self.fake.consent(episode_id, kind, *scopes, expires_on=expires_on)

    async def revoke(self, episode_id: str, consent_id: str) -> None:
        self.fake.revoke(episode_id, consent_id)


Intake = RealIntake | Fake


async def answers(intake: Intake, clock: Clock) -> list[tuple[str, int, Any]]:
    """(what was asked, status, body with ids named) for each request notifications or care_plan makes."""
    episode = await intake.episode()
    tomorrow = utc_now().date() + timedelta(days=1)
    ids = {episode: "episode", "nobody": "nobody"} | {
        await intake.consent(episode, "family", "appointments", "attendance"): "family",
        await intake.consent(episode, "alumni_group", "alumni_program"): "alumni",
        await intake.consent(episode, "designated_support", "attendance", expires_on=tomorrow): "expiring",
    }
    revoked = await intake.consent(episode, "designated_support", "appointments")
    await intake.revoke(episode, revoked)
    ids[revoked] = "revoked"
    named = {name: consent_id for consent_id, name in ids.items()}
    scopes = (("scope", "appointments"), ("scope", "attendance"), ("scope", "alumni_program"))
    requests = [
        ("audience", NOTIFICATIONS, f"/v1/episodes/{episode}/audience", scopes),
        ("audience of an unknown episode", NOTIFICATIONS, "/v1/episodes/nobody/audience", scopes[:1]),
        ("welcome's audience", NOTIFICATIONS, f"/v1/episodes/{episode}/audience",
         (*scopes[:1], ("patient_channels", "true"), ("patient_contact", "true"))),
        ("recipients", CARE_PLAN, f"/v1/episodes/{episode}/recipients", scopes[:1]),
        ("recipients for notifications", NOTIFICATIONS, f"/v1/episodes/{episode}/recipients", scopes[1:2]),
        ("recipients of an unknown episode", CARE_PLAN, "/v1/episodes/nobody/recipients", scopes[:1]),
        ("patient's contact", NOTIFICATIONS, f"/v1/episodes/{episode}/contact", ()),
        ("contact of an unknown episode", NOTIFICATIONS, "/v1/episodes/nobody/contact", ()),
        *[(f"{name}'s contact", NOTIFICATIONS, f"/v1/episodes/{episode}/consents/{named[name]}/contact", ())
          for name in ("family", "alumni", "expiring", "revoked")],
        ("an unknown consent's contact", NOTIFICATIONS, f"/v1/episodes/{episode}/consents/nobody/contact", ()),
        ("a consent's contact in an unknown episode", NOTIFICATIONS,
         f"/v1/episodes/nobody/consents/{named['family']}/contact", ()),
        ("contact for care_plan", CARE_PLAN, f"/v1/episodes/{episode}/contact", ()),
        ("recipients for a clinician", Role.CLINICIAN, f"/v1/episodes/{episode}/recipients", scopes[:1]),
        ("audience with a token intake does not know", None, f"/v1/episodes/{episode}/audience", scopes),
    ]  # fmt: skip
    seen: list[tuple[str, int, Any]] = []
    async with httpx.AsyncClient(transport=intake.transport, base_url="http://intake.test") as client:
        for what, role, path, params in requests:
            headers = as_role(role) if role else {"Authorization": "Bearer not-a-token"}
            seen.append(_named(what, await client.get(path, params=params, headers=headers), ids))
        clock.advance(timedelta(days=2))  # the consent expires while messages wait
        for what, path, params in (
            ("the expired consent's contact", f"/v1/episodes/{episode}/consents/{named['expiring']}/contact", ()),
            ("audience after the expiry", f"/v1/episodes/{episode}/audience", scopes[1:2]),
        ):
            asked = await client.get(path, params=params, headers=as_role(NOTIFICATIONS))
            seen.append(_named(what, asked, ids))
    return seen


def _named(what: str, response: httpx.Response, ids: dict[str, str]) -> tuple[str, int, Any]:
    """The answer with its ids replaced by names; an error's text is the refusing code's own, so only its status
    is compared for a refused token or role."""
    if response.status_code in (401, 403):
        return what, response.status_code, None
    text = response.text
    for value, name in ids.items():
        text = text.replace(value, f"<{name}>")
    body = json.loads(text)
    if isinstance(body, dict) and "patient_id" in body:
        body["patient_id"] = "<patient>"
    return what, response.status_code, body


async def test_the_fake_intake_answers_as_intake_does(clock: Clock) -> None:
    real = await answers(RealIntake(MemoryDatabase()), clock)
    clock.at(TIER_CLOCK)
    fake = await answers(Fake(), clock)
    for (what, *from_fake), (_, *from_intake) in zip(fake, real, strict=True):
        assert from_fake == from_intake, what
    statuses = {what: status for what, status, _ in real}
    assert statuses["revoked's contact"] == statuses["the expired consent's contact"] == 410  # gone, not unknown
    assert statuses["an unknown consent's contact"] == statuses["contact of an unknown episode"] == 404


async def test_care_plans_canned_consent_answer_is_intakes(clock: Clock) -> None:
    intake = RealIntake(MemoryDatabase())
    episode = await intake.episode()
    family = await intake.consent(episode, "family", "appointments")
    async with httpx.AsyncClient(transport=intake.transport, base_url="http://intake.test") as client:
        answer = await client.get(f"/v1/episodes/{episode}/recipients", params={"scope": "appointments"},
                                  headers=as_role(CARE_PLAN))  # fmt: skip
    assert answer.json() == [listed(family, "family")]  # the shape of FAMILY_CONSENT in care_plan/helpers.py


@pytest.mark.parametrize("make", [RealIntake, lambda _: Fake()], ids=["intake", "fake"])
async def test_notifications_reads_a_consent_gone_as_not_wanted_and_care_plan_a_family_consent(
    make: Callable[[MemoryDatabase], Intake], clock: Clock
) -> None:
    """The services' own clients, against intake itself and against the fake: the same readings."""
    intake = make(MemoryDatabase())
    episode = await intake.episode()
    family = await intake.consent(episode, "family", "appointments", expires_on=utc_now().date() + timedelta(days=1))
    revoked = await intake.consent(episode, "designated_support", "appointments")
    await intake.revoke(episode, revoked)
    contacts = IntakeContacts(NOTIFICATIONS_SETTINGS, Dependencies(), transport=intake.transport)
    consents = IntakeConsents(CARE_PLAN_SETTINGS, Dependencies(), transport=intake.transport)
    try:
        assert (await contacts.consented_contact(episode, family)).email == SUPPORT_CONTACT["email"]
        assert await consents.family_consent(episode) == [family]
        assert await consents.family_consent("nobody") == []
        audience = await contacts.audience(episode, frozenset({"appointments"}))
        assert audience.patient_id is not None and audience.supports("appointments") == [(family, "family")]
        for gone in (revoked, "nobody"):
            await _not_wanted(functools.partial(contacts.consented_contact, episode, gone))
        clock.advance(timedelta(days=2))
        await _not_wanted(lambda: contacts.consented_contact(episode, family))  # expired: 410, as revoked
        assert await consents.family_consent(episode) == []
    finally:
        await contacts.close()
        await consents.close()


async def _not_wanted(ask: Callable[[], Awaitable[Any]]) -> None:
    with pytest.raises(NotWanted):
        await ask()


# The in-memory store refuses what MongoDB refuses


async def test_the_store_refuses_a_document_over_16_mib_as_pymongo_does() -> None:
    collection = MemoryDatabase()["plans"]
    too_large = "x" * (MAX_BSON_SIZE + 1)
    with pytest.raises(DocumentTooLarge):
        await collection.insert_one({"_id": "e1", "notes": too_large})
    with pytest.raises(DocumentTooLarge):
        await collection.insert_many([{"_id": "e2"}, {"_id": "e3", "notes": too_large}])
    assert await collection.count_documents({}) == 0
    await collection.insert_one({"_id": "e1", "notes": ["a"]})
    half = "x" * (MAX_BSON_SIZE // 2)
    await collection.update_one({"_id": "e1"}, {"$push": {"notes": half}})
    with pytest.raises(WriteError) as refused:  # the result would be over 16 MiB: refused, the document kept
        await collection.update_one({"_id": "e1"}, {"$push": {"notes": half}, "$set": {"n": 1}})
    assert refused.value.code == 17419
    with pytest.raises(OperationFailure) as refused_command:
        await collection.find_one_and_update({"_id": "e1"}, {"$push": {"notes": half}})
    assert refused_command.value.code == 17419 and not isinstance(refused_command.value, WriteError)
    kept = await collection.find_one({"_id": "e1"})
    assert kept is not None and len(kept["notes"]) == 2 and "n" not in kept
    with pytest.raises(DocumentTooLarge):  # an update document over the limit never leaves the client
        await collection.update_one({"_id": "e1"}, {"$set": {"n": too_large}})


@pytest.mark.parametrize(
    "update",
    [
        {"$set": {"attempts": 0}, "$inc": {"attempts": 1}},
        {"$set": {"outbox": []}, "$push": {"outbox": "x"}},
        {"$set": {"group": {}}, "$inc": {"group.size": 1}},
        {"$set": {"group.size": 2}, "$unset": {"group": ""}},
    ],
)
async def test_the_store_refuses_an_update_whose_paths_conflict_as_mongodb_does(update: dict[str, Any]) -> None:
    collection = MemoryDatabase()["plans"]
    await collection.insert_one({"_id": "e1", "attempts": 1, "outbox": [], "group": {"size": 1}})
    with pytest.raises(WriteError, match="would create a conflict") as refused:
        await collection.update_one({"_id": "e1"}, update)
    assert refused.value.code == 40
    with pytest.raises(OperationFailure, match="would create a conflict"):
        await collection.find_one_and_update({"_id": "e1"}, update)
    assert await collection.find_one({"_id": "e1"}) == {"_id": "e1", "attempts": 1, "outbox": [], "group": {"size": 1}}


async def test_the_store_takes_an_update_on_neighbouring_paths() -> None:
    collection = MemoryDatabase()["plans"]
    await collection.insert_one({"_id": "e1", "group": {"size": 1, "seats": 1}, "attempts": 1})
    update = {"$set": {"group.size": 2, "lease": 1}, "$inc": {"group.seats": 1, "attempts": -1}}
    assert (await collection.update_one({"_id": "e1"}, update)).modified_count == 1
    assert await collection.find_one({"_id": "e1"}) == {"_id": "e1", "group": {"size": 2, "seats": 2}, "attempts": 0,
                                                         "lease": 1}  # fmt: skip


async def link_answers(intake: Intake) -> list[tuple[str, int, Any]]:
    """(what was asked, status, what notifications reads of the body) for each questionnaire link it may ask for."""
    episode = await intake.episode()
    asked = [
        ("the due instruments", f"/v1/episodes/{episode}/questionnaire-links", {"instruments": ["phq9", "gad7"]}),
        ("no instrument", f"/v1/episodes/{episode}/questionnaire-links", {"instruments": []}),
        ("an instrument the page does not offer", f"/v1/episodes/{episode}/questionnaire-links",
         {"instruments": ["audit"]}),
        ("an unknown episode", "/v1/episodes/nobody/questionnaire-links", {"instruments": ["phq9"]}),
    ]  # fmt: skip
    seen: list[tuple[str, int, Any]] = []
    async with httpx.AsyncClient(transport=intake.transport, base_url="http://intake.test") as client:
        for what, path, body in asked:
            response = await client.post(path, json=body, headers=as_role(NOTIFICATIONS))
            read: Any = None
            if response.status_code == 201:
                made = response.json()
                expires = datetime.fromisoformat(made["expires_at"]) - utc_now()
                read = (sorted(made), "/q/" in made["url"], timedelta(hours=71) < expires <= timedelta(hours=72))
            elif response.status_code == 422:
                read = [problem["loc"] for problem in response.json()["detail"]]
            seen.append((what, response.status_code, read))
    return seen


async def test_the_fake_intake_makes_questionnaire_links_as_intake_does(clock: Clock) -> None:
    real = await link_answers(RealIntake(MemoryDatabase()))
    fake = await link_answers(Fake())
    assert fake == real
    assert [status for _, status, _ in real] == [201, 422, 422, 404]
