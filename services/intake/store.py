"""Intake's MongoDB database: patients (the only place holding PII), episodes, the PII audit log.

An episode is an aggregate: its assessments, drug screens and consents, and the events they cause,
are written together in one atomic update (see services/common/outbox.py). The store returns it typed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common.audit import AUDIT_LOG, audit_entries, audit_entry, audit_indexes
from services.common.auth import Principal
from services.common.grouped_inserts import GroupedInserts
from services.common.idempotency import RECORD_KEYS, REQUEST_FIELDS, REQUEST_KEY, RequestKey, request_fields
from services.common.indexes import Index, create_indexes
from services.common.mongo import Document, equals
from services.common.outbox import Relay, new_aggregate, update_aggregate
from services.common.recent import Recent
from services.common.store_errors import writing
from services.common.utc import utc_now
from stepwise_contract import CloudEvent

from .domain.links import QuestionnaireLink
from .domain.model import Episode
from .domain.patient import match_key, name_prefixes

EPISODES = "episodes"
PATIENTS = "patients"
LINKS = "questionnaire_links"
CONTACT = ("email", "phone", "timezone")
"""The minimum contact data needed to reach a patient."""
HIDDEN = dict.fromkeys(REQUEST_FIELDS, 0)
"""A patient as answered: without the key of the request that registered them."""
KEYS_APART_UNTIL = "idempotency_keys_apart_until_us"
"""An episode's ``StoredEpisode.keys_apart_until_us``."""

INDEXES = (
    Index(EPISODES, (("patient_id", 1),), "a patient's episodes (a search's results, registering again)",
          scope="one patient's episodes"),
    Index(PATIENTS, (("match_key", 1),), "registering a patient again: the patients of the same name and birth date",
          scope="the patients of one name and birth date"),
    Index(PATIENTS, (("name_prefixes", 1), ("name", 1)),
          "the name search: patients with a word starting so, by name, a page at a time (multikey)",
          replaces=("name_prefixes_1",)),
    Index(PATIENTS, (("date_of_birth", 1),), "the search by birth date (with or without a name)",
          scope="the patients born on one day"),
    Index(PATIENTS, ((REQUEST_KEY, 1),), "a registration retried: the patient its Idempotency-Key made (one per key; "
          "sparse: patients registered before keys were kept in them have none)", unique=True, sparse=True,
          scope="one patient"),
    Index(EPISODES, ((REQUEST_KEY, 1),), "an episode's opening retried: the episode its Idempotency-Key made (one per "
          "key; sparse: episodes opened before keys were kept in them have none)", unique=True, sparse=True,
          scope="one episode"),
    *audit_indexes("patient_id", person=True),
    Index(LINKS, (("expires_at", 1),), "none of today's queries: kept for a purge of expired questionnaire links"),
)  # fmt: skip


@dataclass(frozen=True)
class StoredEpisode:
    episode: Episode
    version: int
    keys: Document | None = None
    """The Idempotency-Keys of the requests that changed it (``services.common.idempotency.with_key``); None for an
    episode stored before they were kept in it (its requests' keys are in ``idempotency_keys``)."""
    keys_apart_until_us: int | None = None
    """Until when (microseconds since the epoch) a key not found in ``keys`` may be one kept in
    ``idempotency_keys``: 24 hours after the first keyed change of an episode stored before keys were kept in it."""

    def keys_apart(self, now: datetime) -> bool:
        """Whether a key not in ``keys`` is to be asked of ``idempotency_keys`` (a request made before keys were kept
        in the episode, retried)."""
        until = self.keys_apart_until_us
        return self.keys is None or (until is not None and now.timestamp() * 1_000_000 <= until)


HINTS_KEPT = 2048
"""How many episodes (as this instance last wrote them), episodes' patients and patients' ids it keeps."""
EPISODES_COUNTED: Document = {"episodes_opened": 0, "counts_episodes": True}
"""Kept in a patient registered from issue 31 on: how many episodes were opened for them (one more per opening, a
retried request's too), from registration on. A patient registered before has no count (``earlier_episodes``:
unknown)."""
COUNTED_FIELDS = {"episodes_opened": 1, "counts_episodes": 1}


def earlier_episodes(patient: Document) -> bool | None:
    """Whether the patient (read with ``COUNTED_FIELDS``) had an episode opened before their latest one; None: not
    known (registered before episodes were counted). A retried opening counts twice: True, never a wrong False."""
    return int(patient.get("episodes_opened", 0)) > 1 if patient.get("counts_episodes") else None


class IntakeStore:
    def __init__(self, database: AsyncDatabase[Document], wake_relay: Relay) -> None:
        self._database = database
        self.patients = database[PATIENTS]
        self.episodes = database[EPISODES]
        self.audit_log = database[AUDIT_LOG]
        self.links = database[LINKS]
        self._wake_relay = wake_relay
        self._audits = GroupedInserts(self.audit_log)
        self._episode_inserts = GroupedInserts(self.episodes)
        self._written: Recent[str, StoredEpisode] = Recent(HINTS_KEPT)
        """The episodes this instance wrote last, as written: a hint for the next change's load (its write is
        version-checked: another writer since makes it a conflict, and the change loads the episode again)."""
        self._patient_of: Recent[str, str] = Recent(HINTS_KEPT)
        """The patient of each episode this instance read or wrote lately: a fact, not a hint (an episode's patient
        never changes, and no episode is removed)."""
        self._known_patients: Recent[str, None] = Recent(HINTS_KEPT)
        """Ids of patients known to exist (no patient is ever removed): opening an episode for one needs no read."""

    async def create_indexes(self) -> None:
        await create_indexes(self._database, INDEXES)

    # Patients: every read and write of PII is audited first, so no access goes unrecorded.

    async def register(self, patient: Document, by: Principal, *, unless_matched: bool) -> bool:
        """Store a new patient (with ``request_fields``), audited first; False when nothing was stored: a patient of
        the same ``match_key`` is there (``unless_matched``), or one of the same id or request key. One round trip
        besides the audit entry: the match is the upsert's filter."""
        await self.audit(by, "create_patient", patient["_id"])
        try:
            if unless_matched:
                query = {"match_key": equals(patient["match_key"])}  # a bare value: the stand-in scans every patient
                stored = await self.patients.update_one(query, {"$setOnInsert": patient}, upsert=True)
                if stored.upserted_id is None:
                    return False
            else:
                await self.patients.insert_one(patient)
        except DuplicateKeyError:
            return False
        self._known(patient["_id"])
        return True

    async def patient_of_request(self, patient_id: str, key: RequestKey | None) -> Document | None:
        """The patient of this id, or the one this request key made (a retried registration)."""
        query: Document = {"_id": patient_id}
        if key is not None:
            query = {"$or": [query, {REQUEST_KEY: key.key_id}]}
        found = await self.patients.find(query, {field: 1 for field in REQUEST_FIELDS}).to_list()
        return next((patient for patient in found if patient["_id"] == patient_id), found[0] if found else None)

    async def free_request_key(self, collection: str, record_id: str, key_id: str) -> None:
        """A key kept over 24 hours is free for a new request: the record it made keeps its own id in its place."""
        await self._database[collection].update_one({"_id": record_id, REQUEST_KEY: key_id},
                                                    {"$set": {REQUEST_KEY: record_id}})  # fmt: skip

    async def patient_exists(self, patient_id: str) -> bool:
        if patient_id in self._known_patients:
            return True
        if await self.patients.find_one({"_id": patient_id}, {"_id": 1}) is None:
            return False
        self._known(patient_id)
        return True

    def _known(self, patient_id: str) -> None:
        self._known_patients.keep(patient_id, None)

    async def count_episode(self, patient_id: str) -> bool:
        """An episode of the patient is being opened: counted (``EPISODES_COUNTED``); False when no such patient. One
        round trip, as the look for the patient was."""
        return (
            await self.patients.update_one({"_id": patient_id}, {"$inc": {"episodes_opened": 1}})
        ).matched_count == 1

    async def patient_matching(self, key: str) -> str | None:
        """The id of a patient registered with this match key (``domain.patient.match_key``), if any."""
        found = await self.patients.find_one({"match_key": key}, {"_id": 1}, sort=[("registered_at", ASCENDING)])
        return None if found is None else str(found["_id"])

    async def read_patient(self, patient_id: str, by: Principal) -> Document | None:
        if not await self.patient_exists(patient_id):
            return None
        await self.audit(by, "read_patient", patient_id)
        return await self.patients.find_one({"_id": patient_id}, HIDDEN)

    async def update_patient(self, patient_id: str, changes: Document, by: Principal) -> Document | None:
        if not await self.patient_exists(patient_id):
            return None
        await self.audit(by, "update_patient", patient_id, fields=sorted(changes))
        if "name" in changes:  # a new name: registering the patient again under it must find them
            stored = await self.patients.find_one({"_id": patient_id}, {"date_of_birth": 1})
            assert stored is not None
            changes = {**changes, "match_key": match_key(changes["name"], stored["date_of_birth"]),
                       "name_prefixes": name_prefixes(changes["name"])}  # fmt: skip
        await self.patients.update_one({"_id": patient_id}, {"$set": changes})
        return await self.patients.find_one({"_id": patient_id}, HIDDEN)

    async def contact_for_episode(self, episode_id: str, by: Principal) -> Document | None:
        """The minimum contact data needed to reach the patient of an episode (no read of the episode when this
        instance knows its patient)."""
        patient_id = self._patient_of.get(episode_id)
        if patient_id is None:
            episode = await self.episodes.find_one({"_id": episode_id}, {"patient_id": 1})
            if episode is None:
                return None
            patient_id = str(episode["patient_id"])
            self._patient_of.keep(episode_id, patient_id)
        return await self.contact_of(patient_id, episode_id, by)

    async def contact_of(self, patient_id: str, episode_id: str, by: Principal) -> Document | None:
        """The minimum contact data needed to reach the patient (of ``episode_id``), audited first."""
        patient = (await self.audience_reads([(patient_id, episode_id)], [], by)).get(patient_id)
        return None if patient is None else {field: patient.get(field) for field in CONTACT}

    async def audience_reads(
        self, contacts: Sequence[tuple[str, str]], channels: Sequence[str], by: Principal
    ) -> dict[str, Document]:
        """The contact points and episode counts of patients, by id, in one read: those whose contact is read
        (``contacts``: patient and episode ids) audited first; those asked for their ``channels`` only are not (whether
        a point exists is not an access to PII: ``channels_of``)."""
        await asyncio.gather(*(self.audit(by, "read_contact", p, episode_id=e) for p, e in contacts))
        patient_ids = sorted({patient_id for patient_id, _ in contacts} | set(channels))
        if not patient_ids:
            return {}
        fields = {**dict.fromkeys(CONTACT, 1), **COUNTED_FIELDS}
        found = await self.patients.find({"_id": {"$in": patient_ids}}, fields).to_list()
        return {str(patient["_id"]): patient for patient in found}

    async def names_of_episodes(self, episode_ids: Sequence[str], by: Principal) -> list[Document]:
        """Name and birth date of the patient of each known episode (audited per patient, before it is read)."""
        episodes = await self.episodes.find({"_id": {"$in": list(episode_ids)}}, {"patient_id": 1}).to_list()
        patient_of = {str(episode["_id"]): str(episode["patient_id"]) for episode in episodes}
        for patient_id in sorted(set(patient_of.values())):
            asked = sorted(episode for episode, patient in patient_of.items() if patient == patient_id)
            await self.audit(by, "read_names", patient_id, episode_ids=asked)
        fields = {"name": 1, "date_of_birth": 1}
        patients = await self.patients.find({"_id": {"$in": sorted(set(patient_of.values()))}}, fields).to_list()
        by_id = {str(patient["_id"]): patient for patient in patients}
        return [{"episode_id": episode, "patient_id": patient, "name": by_id[patient]["name"],
                 "date_of_birth": by_id[patient]["date_of_birth"]}
                for episode, patient in sorted(patient_of.items()) if patient in by_id]  # fmt: skip

    async def search_patients(
        self, terms: Sequence[str] | None, date_of_birth: str | None, limit: int, by: Principal
    ) -> tuple[list[Document], bool]:
        """Patients whose name has a word starting with each term and/or born that day, by name (at most
        ``limit``, and whether there are more), each with its episodes; audited per patient found."""
        query: Document = {}
        if terms:
            # Each term a word's prefix; $elemMatch: MongoDB serves it from the multikey index, and the stand-in
            # (nx-27017) answers it correctly on an indexed array, which it does not for a bare value or $all.
            query["$and"] = [{"name_prefixes": {"$elemMatch": {"$eq": term}}} for term in terms]
        if date_of_birth:
            query["date_of_birth"] = date_of_birth
        fields = {"name": 1, "date_of_birth": 1}
        # By name in the store (its index's order), by id among namesakes here: an index on (…, name, _id) is one
        # the MongoDB stand-in cannot keep.
        found = await self.patients.find(query, fields).sort("name", ASCENDING).limit(limit + 1).to_list()
        found.sort(key=lambda patient: (patient["name"], patient["_id"]))
        more, found = len(found) > limit, found[:limit]
        for patient in found:
            await self.audit(by, "search_patient", patient["_id"])
        ids = [patient["_id"] for patient in found]
        episode_fields = {"patient_id": 1, "program": 1, "status": 1, "opened_at": 1}
        episodes = await self.episodes.find({"patient_id": {"$in": ids}}, episode_fields).sort("opened_at", 1).to_list()
        for patient in found:
            patient["episodes"] = [episode for episode in episodes if episode["patient_id"] == patient["_id"]]
        return found, more

    # Episodes (aggregates).

    async def open_episode(self, episode: Episode) -> Episode:
        """Store a new episode; answers the stored one when it exists already (the same request retried)."""
        opened = await self.open_keyed(episode, None)
        assert opened is not None  # without a key, only an episode of the same id refuses the insert
        return opened

    async def open_keyed(self, episode: Episode, key: RequestKey | None) -> Episode | None:
        """Store a new episode keeping ``key``, the request's; answers the stored one when it exists already (the
        same request retried), or None when another episode holds ``key`` (see ``episode_of_request``)."""
        fields = {"_id": episode.episode_id, **_fields(episode), RECORD_KEYS: {},
                  **request_fields(key, episode.episode_id, utc_now())}  # fmt: skip
        try:
            with writing(EPISODES):  # no events: a plain insert, grouped with those of concurrent openings
                await self._episode_inserts.insert(new_aggregate(fields))
        except DuplicateKeyError:
            pass
        else:
            self._wrote(StoredEpisode(episode=episode, version=1, keys={}))
            return episode
        stored = await self.get(episode.episode_id)
        return None if stored is None else stored.episode

    async def episode_of_request(self, key: RequestKey) -> Document | None:
        """The episode this request key opened, with what its key says (a retried opening)."""
        return await self.episodes.find_one({REQUEST_KEY: key.key_id}, {field: 1 for field in REQUEST_FIELDS})

    async def get_to_change(self, episode_id: str) -> StoredEpisode | None:
        """The episode as this instance wrote it last (a hint: the change's write is version-checked), else
        ``get``."""
        hint = self._written.pop(episode_id, None)
        return hint if hint is not None else await self.get(episode_id)

    def _wrote(self, stored: StoredEpisode) -> None:
        self._written.keep(stored.episode.episode_id, stored)
        self._patient_of.keep(stored.episode.episode_id, stored.episode.patient_id)

    async def get_many(self, episode_ids: Sequence[str]) -> dict[str, StoredEpisode]:
        """``get`` of each episode that exists, in one read."""
        found = self.episodes.find({"_id": {"$in": sorted(set(episode_ids))}}, {"outbox": 0, "applied_events": 0})
        stored = [_stored(document) async for document in found]
        for one in stored:
            self._patient_of.keep(one.episode.episode_id, one.episode.patient_id)
        return {one.episode.episode_id: one for one in stored}

    async def get(self, episode_id: str) -> StoredEpisode | None:
        document = await self.episodes.find_one({"_id": episode_id}, {"outbox": 0, "applied_events": 0})
        if document is None:
            return None
        self._patient_of.keep(episode_id, str(document["patient_id"]))
        return _stored(document)

    async def save(
        self,
        stored: StoredEpisode,
        episode: Episode,
        events: Sequence[CloudEvent[Any]] = (),
        keys: Document | None = None,
        keys_apart_until_us: int | None = None,
    ) -> bool:
        """Store the episode (and ``keys``, the request keys it keeps, when given) and queue its events in one write;
        False if it changed meanwhile. A write the store refuses raises as in services/common/store_errors.py
        (nothing was stored)."""
        changes = _fields(episode) | ({} if keys is None else {RECORD_KEYS: keys})
        if keys_apart_until_us is not None:
            changes[KEYS_APART_UNTIL] = keys_apart_until_us
        saved = await update_aggregate(self.episodes, episode.episode_id, stored.version, changes, events,
                                       relay=self._wake_relay)  # fmt: skip
        if saved:
            apart = stored.keys_apart_until_us if keys_apart_until_us is None else keys_apart_until_us
            self._wrote(StoredEpisode(episode, stored.version + 1, stored.keys if keys is None else keys, apart))
        return saved

    async def opened(self, program: str | None, since: datetime | None, until: datetime | None) -> list[Episode]:
        """Episodes of ``program`` (any, None) opened in [since, until), for outcomes across episodes."""
        query: Document = {} if program is None else {"program": program}
        window = {op: value for op, value in {"$gte": since, "$lt": until}.items() if value}
        if window:
            query["opened_at"] = window
        hidden = {"outbox": 0, "applied_events": 0, "consents": 0, RECORD_KEYS: 0, KEYS_APART_UNTIL: 0, **HIDDEN}
        cursor = self.episodes.find(query, hidden)
        return [Episode.model_validate({**document, "episode_id": document["_id"]}) async for document in cursor]

    # Questionnaire links: kept by the token's hash alone.

    async def add_link(self, link: QuestionnaireLink) -> None:
        await self.links.insert_one({"_id": link.token_hash, **link.model_dump(mode="python", exclude={"token_hash"})})

    async def link(self, token_hash: str) -> QuestionnaireLink | None:
        found = await self.links.find_one({"_id": token_hash})
        return None if found is None else QuestionnaireLink.model_validate({**found, "token_hash": found["_id"]})

    async def use_link(self, token_hash: str, at: datetime) -> bool:
        """Mark the link used; False if it was used already (one answer per link)."""
        marked = await self.links.update_one(
            {"_id": token_hash, "used": False}, {"$set": {"used": True, "used_at": at}}
        )
        return marked.modified_count == 1

    # The audit log of PII access.

    async def audit(self, by: Principal, action: str, patient_id: str, **details: Any) -> None:
        """Store an audit entry, returning once it is stored (those of concurrent requests in one insert)."""
        await self._audits.insert(audit_entry(by, action, patient_id=patient_id, **details))

    async def audit_entries(
        self,
        *,
        patient_id: str | None,
        action: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
        person: str | None = None,
    ) -> list[Document]:
        about = {"patient_id": patient_id, "action": action}
        return await audit_entries(self.audit_log, about, person=person, since=since, until=until, limit=limit)


def _stored(document: Document) -> StoredEpisode:
    keys, apart_until = document.pop(RECORD_KEYS, None), document.pop(KEYS_APART_UNTIL, None)
    for field in REQUEST_FIELDS:
        document.pop(field, None)
    episode = Episode.model_validate({**document, "episode_id": document["_id"]})
    return StoredEpisode(episode=episode, version=document["version"], keys=keys, keys_apart_until_us=apart_until)


def channels_of(contact: Document) -> list[Literal["email", "sms"]]:
    """The channels a patient's contact data has a point for."""
    channels: list[tuple[Literal["email", "sms"], str]] = [("email", "email"), ("sms", "phone")]
    return [channel for channel, field in channels if contact.get(field)]


def _fields(episode: Episode) -> Document:
    return episode.model_dump(mode="python", exclude={"episode_id"})
