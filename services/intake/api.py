"""Intake's HTTP API: patients, episodes, assessments, drug screens, consents, contact lookup, audit.

HTTP only: parse the request, call the change (``changes.py``) or the read (``queries.py``, the store); a change's
refusal is answered by its code (``schemas.ERRORS``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Query, status
from pydantic import BaseModel
from starlette.convertors import StringConvertor, register_url_convertor

from services.common.auth import Principal, Role
from services.common.domain_errors import ServiceRouter
from services.common.idempotency import KEY_RULE, IdempotencyKey, new_record_id, request_key
from services.common.phones import PHONE_RULE
from services.common.schemas import EMAIL_RULE, V1_ERRORS, WHOLE_NUMBERS, beyond_schema, errors
from services.common.utc import TIME_RANGE, Rfc3339, utc_now
from stepwise_contract import ConsentScope, DimensionRatings, PlacementDecision, Program

from . import changes, queries
from .deps import (
    Admin,
    AdminOrClinician,
    Clinical,
    Clinician,
    ConsentReader,
    Keys,
    LinkConfig,
    Measures,
    NotificationsService,
    Outcomes,
    Policy,
    Staff,
    Store,
)
from .domain.episode import AssessmentRequest, ConsentTerms, MeasureRequest
from .domain.model import Episode
from .schemas import (
    CONSENT_SCOPES,
    ERRORS,
    AssessmentAnswersIn,
    AssessmentHistory,
    AssessmentIn,
    AssessmentOut,
    AssessmentPreview,
    AudiencesIn,
    AudiencesOut,
    AuditEntry,
    ConsentIn,
    ConsentOut,
    ContactOut,
    DrugScreenIn,
    DrugScreenOut,
    EpisodeAudience,
    EpisodeCreated,
    EpisodeIn,
    EpisodeMeasures,
    EpisodePatient,
    MeasureIn,
    MeasureOut,
    OutcomesOut,
    PatientCreated,
    PatientExistsOut,
    PatientIn,
    PatientOut,
    PatientUpdate,
    QuestionnaireLinkIn,
    QuestionnaireLinkOut,
    RecipientContact,
    shown,
)

router = ServiceRouter(prefix="/v1", tags=["intake"], responses=V1_ERRORS, error_table=ERRORS)


class _PatientId(StringConvertor):
    """A patient id in a path: any segment but the words of ``lookup_api``'s own routes under /patients, so that
    ``/v1/patients/names`` is that resource for every method (a concrete path is matched before a templated one,
    as OpenAPI has it), never a patient whose id is "names" (ids are uuids: no patient has one)."""

    regex = "(?!(?:names|search)$)[^/]+"


register_url_convertor("patient_id", _PatientId())
PATIENT = "/patients/{patient_id:patient_id}"


async def _record_id(keys: Keys, key: str | None, by: Principal, request: str, body: BaseModel) -> str:
    """The id of what this request creates: fixed by its Idempotency-Key, so a retry finds the first one's."""
    return await keys.record_id(key, f"{by.token_id} {request}", body)


async def _episode(store: Store, episode_id: str) -> Episode:
    stored = await store.get(episode_id)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "episode not found")
    return stored.episode


# Patients


@router.post(
    "/patients",
    status_code=status.HTTP_201_CREATED,
    response_model=PatientCreated,
    responses={status.HTTP_409_CONFLICT: {"model": PatientExistsOut, "description": PatientExistsOut.__doc__}},
    summary="Register a patient (PII stays in intake; audited)",
    description="A patient with the same name (case and spaces aside) and date of birth is registered already: "
    '409 with their `patient_id`, unless `"confirm_new": true` (another person who shares both).',
    openapi_extra=beyond_schema(
        not_in_the_past="`date_of_birth` is before today", phone_number=PHONE_RULE, **EMAIL_RULE, **KEY_RULE
    ),
)
async def register_patient(
    body: PatientIn, store: Store, keys: Keys, by: Staff, idempotency_key: IdempotencyKey = None
) -> PatientCreated:
    key = request_key(idempotency_key, f"{by.token_id} register_patient", body)
    patient_id = await keys.kept_apart(key, utc_now()) or new_record_id()
    details = body.model_dump(mode="json", exclude={"confirm_new"})
    registered = await changes.register_patient(store, by, details, patient_id, confirm_new=body.confirm_new, key=key)
    return PatientCreated(patient_id=registered)


@router.get(PATIENT, responses=errors(404), summary="A patient's record (audited)")
async def read_patient(patient_id: str, store: Store, by: Staff) -> PatientOut:
    patient = await store.read_patient(patient_id, by)
    if patient is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "patient not found")
    return PatientOut(patient_id=patient.pop("_id"), **patient)


@router.patch(
    PATIENT,
    responses=errors(404),
    summary="Change a patient's name or contact data (audited)",
    openapi_extra=beyond_schema(phone_number=PHONE_RULE, **EMAIL_RULE),
)
async def update_patient(patient_id: str, body: PatientUpdate, store: Store, by: Staff) -> PatientOut:
    patient = await store.update_patient(patient_id, body.model_dump(mode="json", exclude_unset=True), by)
    if patient is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "patient not found")
    return PatientOut(patient_id=patient.pop("_id"), **patient)


@router.post(
    f"{PATIENT}/episodes",
    responses=errors(404),
    status_code=status.HTTP_201_CREATED,
    summary="Open a treatment episode",
    openapi_extra=beyond_schema(**KEY_RULE),
)
async def open_episode(
    patient_id: str, body: EpisodeIn, store: Store, keys: Keys, by: Staff, idempotency_key: IdempotencyKey = None
) -> EpisodeCreated:
    key = request_key(idempotency_key, f"{by.token_id} open_episode {patient_id}", body)
    episode_id = await keys.kept_apart(key, utc_now()) or new_record_id()
    episode = await changes.open_episode(store, patient_id, body.program, episode_id, body.track, key)
    return EpisodeCreated(episode_id=episode.episode_id)


# Assessments


@router.post(
    "/episodes/{episode_id}/assessments",
    responses=errors(404, 409),
    status_code=status.HTTP_201_CREATED,
    summary="Record an assessment or reassessment: scores, recommended level, rationale, safety alert",
    description=(
        "Scores the instruments from their item answers, recommends a level of care under the placement "
        "policy, and publishes `iop.assessment.completed` (with changes since the previous assessment) and, "
        "when an answer calls for it, `iop.safety.alert_raised` first. A clinician may record a chosen level "
        "that differs from the recommendation (`placement`, clinician role only)."
    ),
    openapi_extra=beyond_schema(
        placement_is_recommendation="`placement.chosen_level` differs from the level the assessment recommends",
        **WHOLE_NUMBERS,
        **KEY_RULE,
    ),
)
async def record_assessment(
    episode_id: str,
    body: AssessmentIn,
    store: Store,
    policy: Policy,
    measures: Measures,
    keys: Keys,
    by: Staff,
    idempotency_key: IdempotencyKey = None,
) -> AssessmentOut:
    if body.placement and by.role != Role.CLINICIAN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only a clinician may choose a level (placement)")
    placement = body.placement
    request = AssessmentRequest(
        dimensions=DimensionRatings(**body.dimensions.model_dump()),
        results=body.instruments.score(),
        placement=PlacementDecision(**placement.model_dump(exclude={"note"})) if placement else None,
        placement_note=placement.note if placement else None,
        recorded_by=by.who,
    )
    key = request_key(idempotency_key, f"{by.token_id} record_assessment {episode_id}", body)
    keyed = None if key is None else changes.Keyed(key, keys)
    assessment = await changes.record_assessment(store, policy, measures, episode_id, request, keyed)
    return shown(AssessmentOut, assessment)


@router.post(
    "/episodes/{episode_id}/assessments/preview",
    responses=errors(404, 409),
    summary="What recording an assessment would give: scores, recommended level, rationale, safety alert",
    description=(
        "The same answers as `POST /v1/episodes/{episode_id}/assessments` (without `placement`), scored and placed "
        "by the same rules under the same policy, for the episode's program: nothing is stored, no event published "
        "(no Idempotency-Key: it changes nothing). A clinician sees the recommendation and its rationale before "
        "recording, at it or (`placement`) at another level with a reason."
    ),
    openapi_extra=beyond_schema(**WHOLE_NUMBERS),
)
async def preview_assessment(
    episode_id: str, body: AssessmentAnswersIn, store: Store, policy: Policy, _: Staff
) -> AssessmentPreview:
    request = AssessmentRequest(dimensions=DimensionRatings(**body.dimensions.model_dump()),
                                results=body.instruments.score())  # fmt: skip
    return queries.assessment_preview(await _episode(store, episode_id), request, policy)


@router.get(
    "/episodes/{episode_id}/assessments",
    responses=errors(404),
    summary="The episode's assessments with scores and trends (audited)",
)
async def assessment_history(episode_id: str, store: Store, by: Clinical) -> AssessmentHistory:
    return await queries.assessment_history(store, by, await _episode(store, episode_id))


# Measures between assessments, and outcomes across episodes (measurement-based care)


@router.post(
    "/episodes/{episode_id}/measures",
    responses=errors(404, 409),
    status_code=status.HTTP_201_CREATED,
    summary="Record a measure: instruments between assessments, scored and compared with the episode's baseline",
    description=(
        "The same instruments and validation as an assessment's, without dimensions or placement. Each instrument "
        "with a total is compared with the episode's baseline (its first score on it) and previous score, by the "
        "measures policy; publishes `iop.measure.recorded` and, when an answer calls for it, "
        "`iop.safety.alert_raised` first, exactly as an assessment does. A closed episode still takes measures "
        "(alumni follow-up)."
    ),
    openapi_extra=beyond_schema(no_instruments="no instrument is answered", **WHOLE_NUMBERS, **KEY_RULE),
)
async def record_measure(
    episode_id: str,
    body: MeasureIn,
    store: Store,
    measures: Measures,
    keys: Keys,
    by: Clinical,
    idempotency_key: IdempotencyKey = None,
) -> MeasureOut:
    measure_id = await _record_id(keys, idempotency_key, by, f"record_measure {episode_id}", body)
    request = MeasureRequest(results=body.instruments.score(), measure_id=measure_id, recorded_by=by.who)
    measure = await changes.record_measure(store, measures, episode_id, request)
    return shown(MeasureOut, measure)


@router.get(
    "/episodes/{episode_id}/measures",
    responses=errors(404),
    summary="The episode's scores per instrument, from assessments and measures, with their classification (audited)",
)
async def measure_series(episode_id: str, store: Store, measures: Measures, by: Clinical) -> EpisodeMeasures:
    return await queries.measure_series(store, by, await _episode(store, episode_id), measures)


@router.get(
    "/outcomes",
    summary="Outcomes across episodes per instrument (admin, clinician): no person, small groups suppressed",
    description=(
        "Of the episodes of `program` opened in [`from`, `to`) with two or more scores on an instrument: the share "
        "whose latest score is a reliable improvement, a reliable deterioration, or recovered, and the median change "
        "from baseline. An instrument with fewer episodes than `OUTCOMES_MIN_GROUP` (default 5) is suppressed."
    ),
    openapi_extra=beyond_schema(**TIME_RANGE),
)
async def outcomes(
    store: Store,
    measures: Measures,
    settings: Outcomes,
    _: AdminOrClinician,
    program: Program | None = None,
    opened_from: Annotated[Rfc3339 | None, Query(alias="from")] = None,
    opened_to: Annotated[Rfc3339 | None, Query(alias="to")] = None,
) -> OutcomesOut:
    window = (opened_from, opened_to)
    return await queries.outcomes_across(store, measures, program, window, settings.min_group)


@router.post(
    "/episodes/{episode_id}/questionnaire-links",
    responses=errors(404),
    status_code=status.HTTP_201_CREATED,
    summary="Make a single-use link for the patient to answer instruments on their phone (notifications only)",
    description=(
        "Answers `{url, expires_at}` once: intake keeps only the token's hash. The link opens `GET /q/{token}` at "
        "`PUBLIC_BASE_URL`, answers once, and expires after `QUESTIONNAIRE_LINK_HOURS` (default 72). The URL must "
        "never be stored, logged or traced."
    ),
    openapi_extra=beyond_schema(
        no_instruments="`instruments` is empty", instrument_twice="an instrument is named twice"
    ),
)
async def make_questionnaire_link(
    episode_id: str, body: QuestionnaireLinkIn, store: Store, settings: LinkConfig, _: NotificationsService
) -> QuestionnaireLinkOut:
    token, link = await changes.make_link(store, episode_id, body.instruments, settings.hours)
    return QuestionnaireLinkOut(url=f"{settings.base_url}/q/{token}", expires_at=link.expires_at)


# Drug screens


@router.post(
    "/episodes/{episode_id}/drug-screens",
    responses=errors(404, 409),
    status_code=status.HTTP_201_CREATED,
    summary="Record a drug screen; publishes iop.drug_screen.recorded",
    openapi_extra=beyond_schema(
        in_the_future="`collected_at` is not after now",
        substance_twice="one result per substance",
        **TIME_RANGE,
        **KEY_RULE,
    ),
)
async def record_drug_screen(
    episode_id: str, body: DrugScreenIn, store: Store, keys: Keys, by: Clinical, idempotency_key: IdempotencyKey = None
) -> DrugScreenOut:
    screen_id = await _record_id(keys, idempotency_key, by, f"record_drug_screen {episode_id}", body)
    screen = await changes.record_drug_screen(store, by, episode_id, body.collected_at, body.results, screen_id)
    return shown(DrugScreenOut, screen)


@router.get(
    "/episodes/{episode_id}/drug-screens",
    responses=errors(404),
    summary="The episode's drug screens, oldest first (clinicians; audited)",
)
async def drug_screens(episode_id: str, store: Store, by: Clinician) -> list[DrugScreenOut]:
    episode = await _episode(store, episode_id)
    await store.audit(by, "read_drug_screens", episode.patient_id, episode_id=episode_id)
    return [shown(DrugScreenOut, screen) for screen in episode.drug_screens]


# Consents (42 CFR Part 2): who may be told what, per recipient, revocable


@router.post(
    "/episodes/{episode_id}/consents",
    responses=errors(404, 409),
    status_code=status.HTTP_201_CREATED,
    summary="Record a patient's consent to tell a recipient about the episode; publishes iop.consent.changed",
    openapi_extra=beyond_schema(
        not_in_the_future="`expires_on` is after today", phone_number=PHONE_RULE, **EMAIL_RULE, **KEY_RULE
    ),
)
async def grant_consent(
    episode_id: str, body: ConsentIn, store: Store, keys: Keys, by: Staff, idempotency_key: IdempotencyKey = None
) -> ConsentOut:
    consent_id = await _record_id(keys, idempotency_key, by, f"grant_consent {episode_id}", body)
    given = body.root
    terms = ConsentTerms(recipient_kind=given.recipient_kind, recipient=given.recipient, scopes=given.scopes,
                         expires_on=given.expires_on)  # fmt: skip
    consent = await changes.grant_consent(store, by, episode_id, terms, consent_id)
    return shown(ConsentOut, consent)


@router.post(
    "/episodes/{episode_id}/consents/{consent_id}/revoke",
    responses=errors(404, 409),
    summary="Revoke a consent, also once the episode is closed; pending messages to that recipient stop",
)
async def revoke_consent(episode_id: str, consent_id: str, store: Store, by: Staff) -> ConsentOut:
    consent = await changes.revoke_consent(store, by, episode_id, consent_id)
    return shown(ConsentOut, consent)


@router.get(
    "/episodes/{episode_id}/consents",
    responses=errors(404),
    summary="The episode's consents and their recipients (audited)",
)
async def list_consents(episode_id: str, store: Store, by: Staff) -> list[ConsentOut]:
    episode = await _episode(store, episode_id)
    await store.audit(by, "read_consents", episode.patient_id, episode_id=episode_id)
    return [shown(ConsentOut, consent) for consent in episode.consents]


# For the notifications service, and for admins


@router.get(
    "/episodes/{episode_id}/contact",
    responses=errors(404),
    summary="Contact points of an episode's patient, for the notifications service only (audited)",
)
async def episode_contact(episode_id: str, store: Store, by: NotificationsService) -> ContactOut:
    contact = await store.contact_for_episode(episode_id, by)
    if contact is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "episode not found")
    return ContactOut(**contact)


@router.get(
    "/episodes/{episode_id}/recipients",
    responses=errors(404),
    summary="Supports who may be told about ``scope`` under a current consent, without contact data "
    "(notifications and care_plan, audited)",
)
async def consented_recipients(
    episode_id: str, scope: ConsentScope, store: Store, by: ConsentReader
) -> list[RecipientContact]:
    return await queries.recipients(store, by, await _episode(store, episode_id), scope)


@router.get(
    "/episodes/{episode_id}/consents/{consent_id}/contact",
    responses=errors(404, 410),
    summary="A support's contact if the consent is still in force (notifications only, audited); 410 otherwise",
)
async def consented_contact(
    episode_id: str, consent_id: str, store: Store, by: NotificationsService
) -> RecipientContact:
    contact = await queries.consented_contact(store, by, await _episode(store, episode_id), consent_id)
    if contact is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "consent not found")
    return contact


@router.get(
    "/episodes/{episode_id}/patient",
    responses=errors(404),
    summary="The pseudonymous id of an episode's patient, to link episodes (notifications only; no PII)",
)
async def episode_patient(episode_id: str, store: Store, _: NotificationsService) -> EpisodePatient:
    episode = await _episode(store, episode_id)
    return EpisodePatient(episode_id=episode_id, patient_id=episode.patient_id)


@router.get(
    "/episodes/{episode_id}/audience",
    responses=errors(404),
    summary="An episode's patient id and the supports a consent allows to hear of each scope asked, in one answer "
    "(notifications only, audited)",
)
async def episode_audience(
    episode_id: str,
    store: Store,
    by: NotificationsService,
    scope: Annotated[
        list[ConsentScope],
        Query(max_length=len(CONSENT_SCOPES), description="A scope to list the recipients of; repeat it."),
    ] = [],  # noqa: B006 - FastAPI reads it, never changes it
    patient_channels: Annotated[
        bool, Query(description="Also say which channels the patient has a contact point for (never the address).")
    ] = False,
    patient_contact: Annotated[
        bool,
        Query(
            description="Also give the patient's contact points (audited, as the contact lookup): for a message to "
            "the patient sent as it is planned, so that it needs no second request."
        ),
    ] = False,
) -> EpisodeAudience:
    episode = await _episode(store, episode_id)
    return await queries.audience(store, by, episode, scope, patient_channels, patient_contact)


@router.post(
    "/audiences",
    status_code=status.HTTP_200_OK,
    summary="The audience of several episodes in one answer, each as `GET /v1/episodes/{episode_id}/audience` "
    "answers it (notifications only, audited alike)",
)
async def episode_audiences(body: AudiencesIn, store: Store, by: NotificationsService) -> AudiencesOut:
    return AudiencesOut(audiences=await queries.audiences(store, by, body.episodes))


@router.get(
    "/audit",
    summary="Who read or changed which patient's PII, and when (admin only)",
    openapi_extra=beyond_schema(**TIME_RANGE),
)
async def audit_log(
    store: Store,
    _: Admin,
    patient_id: str | None = None,
    action: str | None = None,
    person: Annotated[
        str | None, Query(description="Entries by this person: their subject or username at the identity provider.")
    ] = None,
    since: Rfc3339 | None = None,
    until: Rfc3339 | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntry]:
    entries = await store.audit_entries(
        patient_id=patient_id, action=action, person=person, since=since, until=until, limit=limit
    )
    return [AuditEntry.model_validate(entry) for entry in entries]
