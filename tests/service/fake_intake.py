"""Intake as notifications and care_plan ask it, behind ``httpx.MockTransport``: the episodes, patients, contact
data and consents are what a test gives it, and it answers as intake's API does (``test_fakes_contract.py`` runs
the same requests against this fake and intake's real app, and fails when they answer differently).

What it answers, for the service tokens of ``tests.service.conftest.TOKENS`` (another token: 401; a role the
endpoint does not allow: 403):

- ``GET /v1/episodes/{id}/audience?scope=…&patient_channels=&patient_contact=`` (notifications): the patient id and,
  per scope, the consents in force that allow it, listed without contact data; with ``patient_channels=true``, the
  channels the patient has a contact point for; with ``patient_contact=true``, the patient's contact; with either,
  whether the patient had an episode before (``earlier_episodes``);
- ``GET /v1/episodes/{id}/patient`` (notifications): the patient id;
- ``GET /v1/episodes/{id}/recipients?scope=…`` (notifications, care_plan): those consents, for one scope;
- ``GET /v1/episodes/{id}/contact`` (notifications): the patient's contact;
- ``GET /v1/episodes/{id}/consents/{consent_id}/contact`` (notifications): the support's contact (the alumni group:
  the graduate's own) while the consent is in force; 410 once it is revoked or expired, 404 for an episode
  (``episode not found``) or a consent (``consent not found``) intake does not know.

- ``POST /v1/episodes/{id}/questionnaire-links`` (notifications), body ``{"instruments": [...]}``: 201
  ``{"url", "expires_at"}``, a fresh single-use link (kept in ``links`` for the test to look for); 422 for no
  instruments or one intake does not score (intake's branch i24-intake builds the real endpoint; until it merges,
  ``test_fakes_contract.py`` cannot compare this answer).

A consent is in force until revoked, through its ``expires_on`` (the services' clock, ``utc_now``, decides).
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx

from services.common.auth import Role
from services.common.utc import utc_now
from services.intake.domain.links import QUESTIONNAIRES
from tests.service.conftest import TOKENS

ROLES_BY_TOKEN = {token: role for role, token in TOKENS.items()}
PATIENT_CONTACT = {"email": "patient@example.org", "phone": "+12025550100", "timezone": None}
SUPPORT_CONTACT = {"email": "support@example.org", "phone": None}


def listed(consent_id: str, recipient_kind: str) -> dict[str, Any]:
    """A consented recipient as intake lists one: without contact data."""
    return {"consent_id": consent_id, "recipient_kind": recipient_kind, "email": None, "phone": None, "timezone": None}


@dataclass
class FakeConsent:
    consent_id: str
    recipient_kind: str
    scopes: tuple[str, ...]
    expires_on: date | None = None
    revoked: bool = False

    def in_force(self) -> bool:
        return not self.revoked and (self.expires_on is None or self.expires_on >= utc_now().date())


ASKED_OF_THE_PATIENT = ("patient_channels", "patient_contact")


@dataclass
class FakeIntake:
    patients: dict[str, str] = field(default_factory=dict)
    """episode -> pseudonymous patient id."""
    contacts: dict[str, dict[str, str | None]] = field(default_factory=dict)
    """episode -> the patient's email, phone, timezone."""
    consents: dict[str, list[FakeConsent]] = field(default_factory=dict)
    """episode -> its consents, in force or not."""
    asked: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    down: bool = False
    """Intake not answering at all (a refused connection)."""
    links: list[str] = field(default_factory=list)
    """Every questionnaire link made, in order."""
    says_earlier_episodes: bool = True
    """False: an intake older than ``earlier_episodes`` (its audience never says it)."""
    answers_audiences: bool = True
    """False: an intake older than ``POST /v1/audiences`` (it answers 404: one question a request)."""

    def episode(self, patient_id: str | None = None) -> str:
        episode_id = str(uuid.uuid4())
        self.patients[episode_id] = patient_id or str(uuid.uuid4())
        self.contacts[episode_id] = dict(PATIENT_CONTACT)
        self.consents[episode_id] = []
        return episode_id

    def consent(self, episode_id: str, kind: str, *scopes: str, expires_on: date | None = None) -> str:
        consent_id = str(uuid.uuid4())
        self.consents[episode_id].append(FakeConsent(consent_id, kind, scopes, expires_on))
        return consent_id

    def _earlier_episodes(self, episode_id: str) -> bool:
        """Whether the patient had an episode given before this one (intake counts the episodes it opens)."""
        patient = self.patients[episode_id]
        return [e for e, p in self.patients.items() if p == patient].index(episode_id) > 0

    def revoke(self, episode_id: str, consent_id: str) -> None:
        next(c for c in self.consents[episode_id] if c.consent_id == consent_id).revoked = True

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(request.url.path)
        self.headers.append(dict(request.headers))
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in ROLES_BY_TOKEN:
            return httpx.Response(401, json={"detail": "missing or invalid bearer token"})
        role, scopes = ROLES_BY_TOKEN[token], request.url.params.get_list("scope")
        if request.url.path == "/v1/audiences" and request.method == "POST" and self.answers_audiences:
            if role != Role.NOTIFICATIONS:
                return _forbidden(role)
            return self._audiences(json.loads(request.content))
        match request.url.path.removeprefix("/v1/episodes/").split("/"):
            case [_, "recipients"] if role not in (Role.NOTIFICATIONS, Role.CARE_PLAN):
                return _forbidden(role)
            case [_, "audience" | "contact" | "consents" | "patient" | "questionnaire-links", *_] if (
                role != Role.NOTIFICATIONS
            ):
                return _forbidden(role)
            case [episode_id, *_] if episode_id not in self.patients:
                return httpx.Response(404, json={"detail": "episode not found"})
            case [episode_id, "consents", consent_id, "contact"]:
                return self._consented_contact(episode_id, consent_id)
            case [episode_id, "audience"]:
                channels, contact = (request.url.params.get(asked) == "true" for asked in ASKED_OF_THE_PATIENT)
                return httpx.Response(200, json=self._audience(episode_id, scopes, channels, contact))
            case [episode_id, "patient"]:
                return httpx.Response(200, json={"episode_id": episode_id, "patient_id": self.patients[episode_id]})
            case [episode_id, "recipients"] if len(scopes) == 1:
                return httpx.Response(200, json=self._allowing(episode_id, scopes[0]))
            case [episode_id, "contact"]:
                return httpx.Response(200, json=self.contacts[episode_id])
            case [_, "questionnaire-links"] if request.method == "POST":
                return self._link(json.loads(request.content or b"{}"))
        return httpx.Response(404, json={"detail": "Not Found"})

    def _audiences(self, body: dict[str, Any]) -> httpx.Response:
        """``POST /v1/audiences``: each question answered as the one-episode lookup answers it (None: unknown)."""
        answers = [
            self._audience(q["episode_id"], q.get("scope", []), *(q.get(a, False) for a in ASKED_OF_THE_PATIENT))
            if q["episode_id"] in self.patients
            else None
            for q in body["episodes"]
        ]  # fmt: skip
        return httpx.Response(200, json={"audiences": answers})

    def _audience(self, episode_id: str, scopes: list[str], channels: bool, contact: bool) -> dict[str, Any]:
        recipients = {scope: self._allowing(episode_id, scope) for scope in scopes}
        audience: dict[str, Any] = {"episode_id": episode_id, "patient_id": self.patients[episode_id],
                                    "recipients": recipients}  # fmt: skip
        if channels:
            points = self.contacts[episode_id]
            audience["patient_channels"] = [channel for channel, name in (("email", "email"), ("sms", "phone"))
                                            if points[name]]  # fmt: skip
        if contact:
            audience["patient_contact"] = self.contacts[episode_id]
        if self.says_earlier_episodes and (channels or contact):
            audience["earlier_episodes"] = self._earlier_episodes(episode_id)
        return audience

    def _link(self, body: dict[str, Any]) -> httpx.Response:
        instruments = body.get("instruments")
        if not isinstance(instruments, list) or not instruments:
            problem = {"loc": ["body", "instruments"], "msg": "name the instruments to answer, as intake scores them"}
            return httpx.Response(422, json={"detail": [problem]})
        offered = [{"loc": ["body", "instruments", n], "msg": "not one the questionnaire page offers"}
                   for n, instrument in enumerate(instruments) if instrument not in QUESTIONNAIRES]  # fmt: skip
        if offered:
            return httpx.Response(422, json={"detail": offered})
        url = f"https://answers.example.org/q/{secrets.token_urlsafe(24)}"
        self.links.append(url)
        return httpx.Response(201, json={"url": url, "expires_at": (utc_now() + timedelta(hours=72)).isoformat()})

    def _allowing(self, episode_id: str, scope: str) -> list[dict[str, Any]]:
        return [listed(c.consent_id, c.recipient_kind) for c in self.consents[episode_id]
                if c.in_force() and scope in c.scopes]  # fmt: skip

    def _consented_contact(self, episode_id: str, consent_id: str) -> httpx.Response:
        consent = next((c for c in self.consents.get(episode_id, []) if c.consent_id == consent_id), None)
        if consent is None:
            return httpx.Response(404, json={"detail": "consent not found"})
        if not consent.in_force():
            return httpx.Response(410, json={"detail": "the consent is no longer in force"})
        if consent.recipient_kind == "alumni_group":  # the graduate is reached at their own contact points
            return httpx.Response(200, json=listed(consent_id, consent.recipient_kind) | self.contacts[episode_id])
        return httpx.Response(200, json=listed(consent_id, consent.recipient_kind) | SUPPORT_CONTACT)


def _forbidden(role: Role) -> httpx.Response:
    return httpx.Response(403, json={"detail": f"the token carries {role.value}: it may not do this"})
