"""Intake's MongoDB database: patients (the only place holding PII), episodes, the PII audit log.

An episode is an aggregate: its assessments and the events they cause are written together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.common.auth import Principal
from services.common.mongo import Document
from services.common.outbox import insert_aggregate, update_aggregate
from services.common.utc import utc_now
from stepwise_contract import CloudEvent

EPISODES = "episodes"


class IntakeStore:
    def __init__(self, database: AsyncDatabase[Document], wake_relay: Callable[[], None]) -> None:
        self.patients = database["patients"]
        self.episodes = database[EPISODES]
        self.audit = database["audit_log"]
        self._wake_relay = wake_relay

    async def create_indexes(self) -> None:
        await self.episodes.create_index([("patient_id", ASCENDING)])
        await self.audit.create_index([("at", ASCENDING)])

    async def add_patient(self, patient: Document, by: Principal) -> None:
        await self.patients.insert_one(patient)
        await self._audit(by, "create_patient", patient["_id"])

    async def patient_exists(self, patient_id: str) -> bool:
        return await self.patients.count_documents({"_id": patient_id}, limit=1) == 1

    async def open_episode(self, episode: Document) -> None:
        await insert_aggregate(self.episodes, episode)

    async def episode(self, episode_id: str) -> Document | None:
        return await self.episodes.find_one({"_id": episode_id}, {"outbox": 0, "applied_events": 0})

    async def add_assessment(self, episode: Document, assessment: Document, event: CloudEvent[Any]) -> bool:
        """Append the assessment and queue its event in one write; False if the episode changed meanwhile."""
        stored = await update_aggregate(
            self.episodes,
            episode["_id"],
            episode["version"],
            {"assessments": [*episode.get("assessments", []), assessment]},
            [event],
        )
        if stored:
            self._wake_relay()
        return stored

    async def contact_for_episode(self, episode_id: str, by: Principal) -> Document | None:
        """The minimum contact data needed to reach the patient of an episode; the read is audited."""
        episode = await self.episodes.find_one({"_id": episode_id}, {"patient_id": 1})
        if episode is None:
            return None
        patient = await self.patients.find_one({"_id": episode["patient_id"]}, {"email": 1, "phone": 1})
        if patient is None:
            return None
        await self._audit(by, "read_contact", episode["patient_id"], episode_id=episode_id)
        return {"email": patient.get("email"), "phone": patient.get("phone")}

    async def _audit(self, by: Principal, action: str, patient_id: str, **details: str) -> None:
        await self.audit.insert_one(
            {
                "at": utc_now(),
                "role": by.role,
                "token_id": by.token_id,
                "action": action,
                "patient_id": patient_id,
                **details,
            }
        )
