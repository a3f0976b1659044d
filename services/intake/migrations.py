"""One-off changes to intake's stored records after an upgrade. Each is idempotent (run again, it changes
nothing) and safe while the services run (a record changed meanwhile is read again).

    python -m services.intake.migrations normalise-phones   # every stored number in E.164 (CLINIC_PHONE_REGION)
    python -m services.intake.migrations match-keys         # patients registered before duplicates were found
    python -m services.intake.migrations name-prefixes      # patients registered before the name search

It reads MONGODB_URL, INTAKE_DB and CLINIC_PHONE_REGION like the service. It prints counts and the ids of
records it could not change (never a number); each patient record it changes gets an audit entry.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import Document, connect
from services.common.outbox import update_aggregate
from services.common.phones import e164
from services.common.utc import utc_now

from .domain.patient import match_key, name_prefixes
from .settings import IntakeSettings
from .store import EPISODES

MIGRATION = "migration"
"""The role and token of the audit entries a migration writes (no person did it)."""


@dataclass
class Outcome:
    changed: dict[str, int] = field(default_factory=dict)
    """How many records of each kind were changed."""
    left: list[str] = field(default_factory=list)
    """Records kept as they were, and why (ids and field names only)."""

    def count(self, kind: str) -> None:
        self.changed[kind] = self.changed.get(kind, 0) + 1


def _normalised(number: Any, region: str) -> str | None:
    """The number in E.164, or None when it is not a full number (left for staff to correct)."""
    try:
        return e164(number, region) if isinstance(number, str) else None
    except ValueError:
        return None


def _patient_phones(patient: Document, region: str, outcome: Outcome) -> tuple[Document, Document]:
    """(what the patient's numbers, their own and their emergency contact's, are now; what they become)."""
    was, becomes = {}, {}
    contact = patient.get("emergency_contact") or {}
    numbers = {"phone": patient.get("phone"), "emergency_contact.phone": contact.get("phone")}
    for path, number in numbers.items():
        written = None if number is None else _normalised(number, region)
        if number is not None and written is None:
            outcome.left.append(f"patient {patient['_id']}: {path} is not a full phone number")
        elif written != number:
            was[path], becomes[path] = number, written
    return was, becomes


def _recipient_phones(consents: list[Document], region: str) -> tuple[list[Document], list[str]]:
    """The consents with their recipients' numbers in E.164, and the consents whose number is not a full one."""
    changed, left = [], []
    for consent in consents:
        recipient = consent.get("recipient") or {}
        number = recipient.get("phone")
        written = None if number is None else _normalised(number, region)
        if number is not None and written is None:
            left.append(str(consent["consent_id"]))
        if written is None or written == number:
            changed.append(consent)
        else:
            changed.append({**consent, "recipient": {**recipient, "phone": written}})
    return changed, left


async def normalise_phones(database: AsyncDatabase[Document], region: str) -> Outcome:
    """Every number intake holds in E.164: patients', emergency contacts' and consented recipients'."""
    outcome = Outcome()
    async for patient in database["patients"].find({}, {"phone": 1, "emergency_contact": 1}):
        was, becomes = _patient_phones(patient, region, outcome)
        # Only if nobody changed them meanwhile (then they were typed in a request: E.164 already).
        if becomes and (await database["patients"].update_one({"_id": patient["_id"], **was},
                                                              {"$set": becomes})).modified_count:  # fmt: skip
            await _audit(database, "normalise_phones", patient["_id"], fields=sorted(becomes))
            outcome.count("patients")
    async for episode in database[EPISODES].find({"consents.recipient.phone": {"$type": "string"}}, {"_id": 1}):
        while (done := await _episode_phones(database, episode["_id"], region, outcome)) is None:
            pass  # another writer won: read the episode again
        if done:
            outcome.count("episodes")
    return outcome


async def _episode_phones(
    database: AsyncDatabase[Document], episode_id: str, region: str, outcome: Outcome
) -> bool | None:
    """An episode's consented recipients' numbers in E.164, in a version-checked write: True changed, False
    nothing to change, None another writer won."""
    document = await database[EPISODES].find_one({"_id": episode_id}, {"consents": 1, "version": 1, "patient_id": 1})
    if document is None:
        return False
    consents, left = _recipient_phones(document.get("consents", []), region)
    changed = bool(consents != document.get("consents", []))
    version = document["version"]
    if changed and not await update_aggregate(database[EPISODES], episode_id, version, {"consents": consents}):
        return None
    outcome.left += [
        f"episode {episode_id}: consent {consent}: the recipient's phone is not a full number" for consent in left
    ]
    if changed:
        await _audit(database, "normalise_phones", document["patient_id"], episode_id=episode_id)
    return changed


async def match_keys(database: AsyncDatabase[Document], _region: str) -> Outcome:
    """Patients registered before registration looked for duplicates get the key it looks them up by."""
    outcome = Outcome()
    async for patient in database["patients"].find({"match_key": {"$exists": False}}, {"name": 1, "date_of_birth": 1}):
        key = match_key(patient["name"], patient["date_of_birth"])
        query = {"_id": patient["_id"], "name": patient["name"], "match_key": {"$exists": False}}
        if (await database["patients"].update_one(query, {"$set": {"match_key": key}})).modified_count:
            outcome.count("patients")
    return outcome


async def name_prefixes_of_patients(database: AsyncDatabase[Document], _region: str) -> Outcome:
    """Patients registered before the name search (``POST /v1/patients/search``) get the words it finds them by."""
    outcome = Outcome()
    async for patient in database["patients"].find({"name_prefixes": {"$exists": False}}, {"name": 1}):
        query = {"_id": patient["_id"], "name": patient["name"], "name_prefixes": {"$exists": False}}
        update = {"$set": {"name_prefixes": name_prefixes(patient["name"])}}
        if (await database["patients"].update_one(query, update)).modified_count:
            outcome.count("patients")
    return outcome


async def _audit(database: AsyncDatabase[Document], action: str, patient_id: str, **details: Any) -> None:
    entry = {"at": utc_now(), "role": MIGRATION, "token_id": MIGRATION, "subject": None, "username": None,
             "action": action, "patient_id": patient_id}  # fmt: skip
    await database["audit_log"].insert_one(entry | details)


STEPS: dict[str, Callable[[AsyncDatabase[Document], str], Awaitable[Outcome]]] = {
    "normalise-phones": normalise_phones,
    "match-keys": match_keys,
    "name-prefixes": name_prefixes_of_patients,
}


async def run(step: str, settings: IntakeSettings) -> Outcome:
    client = connect(settings.mongodb_url.get_secret_value(), tls_ca_file=settings.mongodb_tls_ca_file)
    try:
        return await STEPS[step](client[settings.intake_db], settings.clinic_phone_region)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=sorted(STEPS), help="the migration to run")
    args = parser.parse_args(argv)
    outcome = asyncio.run(run(args.step, IntakeSettings()))
    changed = ", ".join(f"{count} {kind}" for kind, count in sorted(outcome.changed.items())) or "nothing"
    print(f"{args.step}: changed {changed}")
    for line in outcome.left:
        print(f"  left as it was: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
