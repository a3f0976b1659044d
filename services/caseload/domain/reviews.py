"""Treatment-plan reviews and authorizations (pure): what care_plan's and the authorizations service's events say,
merged per episode, and what of it is open, read from all of it.

Each projector keeps facts by their own order (the latest signing, each review held, each authorization's latest
view and highest revision, each signal as last said); what is open is decided when read, from every fact at once,
so the answer is the same whatever order the topics delivered them in.

Treatment-plan reviews (``services/care_plan/domain/treatment_plan.py``): care_plan settles every open review when
a version is signed or a review is recorded, and cancels them when the episode ends. A review is open until the
episode ends, a later version is signed (its ``version`` is below the signed one), a recorded review names it
(``iop.treatment_plan.reviewed``: kept by id, so it holds whether the review's own event came before or after), or
a later review is held for the same reason (care_plan holds one open per reason: a newer one means the older was
settled).

Authorizations (``services/authorizations/domain/coverage.py``): a review due, units low and exhausted are said once
per revision, so one said before the authorization's latest revision (a review with the payer, a decision) is
settled by it (said again at once when still so); a later view without a review date settles its review, one with
units left its exhaustion. An unauthorized service or day is settled by a later revision of it (said again if still
not covered) or by an approved authorization of its unit, level and dates recorded or revised after it was said. A
level mismatch holds while the clinical level is the one it named and no approved authorization of that level was
recorded or revised after it. A certification due holds until a later one for the payer, or until a recorded
certification (``iop.certification.recorded``) puts the payer's next due after it (one of too few hours does not).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from stepwise_contract import (
    AuthorizationChanged,
    AuthorizationExhausted,
    AuthorizationLevelMismatch,
    AuthorizationReviewDue,
    AuthorizationUnitsLow,
    CertificationDue,
    CertificationRecorded,
    ServiceUnauthorized,
    TreatmentPlanReviewDue,
    TreatmentPlanReviewed,
    TreatmentPlanReviewOverdue,
    TreatmentPlanSigned,
)

from .model import (
    AuthorizationState,
    Certification,
    EpisodeView,
    Mismatch,
    PlanReview,
    Said,
    Stamped,
    Terms,
    Unauthorized,
    stored_precision,
)

ENDED = ("graduated", "discharged")
APPROVED = ("approved", "partially_approved")
"""The statuses under which an authorization covers services (as the authorizations service counts them)."""
KINDS = ("review_due", "units_low", "exhausted", "level_mismatch", "unauthorized", "certification_due")
"""What puts an episode on the ``authorizations`` worklist; a tie of days is listed in this order."""
Row = dict[str, Any]


# --- the treatment plan -------------------------------------------------------------------------------------------


def on_plan_signed(view: EpisodeView, data: TreatmentPlanSigned) -> None:
    plan = view.treatment_plan
    if plan.signed_version is None or data.version > plan.signed_version:
        plan.signed_version, plan.signed_at = data.version, stored_precision(data.signed_at)
        plan.review_due_on = data.review_due_on


def on_plan_review(view: EpisodeView, data: TreatmentPlanReviewDue | TreatmentPlanReviewOverdue) -> None:
    """Held due, or overdue (overdue stays overdue whichever of the two came first)."""
    known = view.treatment_plan.reviews.get(data.review_id)
    overdue = isinstance(data, TreatmentPlanReviewOverdue) or (known is not None and known.overdue)
    view.treatment_plan.reviews[data.review_id] = PlanReview(
        review_id=data.review_id,
        reason=data.reason,
        trigger_id=data.trigger_id,
        version=data.version,
        due_on=data.due_on,
        overdue_at=stored_precision(data.overdue_at),
        overdue=overdue,
    )


def on_plan_reviewed(view: EpisodeView, data: TreatmentPlanReviewed) -> None:
    """The reviews it names are settled (held here yet or not); the latest review sets the next periodic day."""
    plan = view.treatment_plan
    plan.settled = sorted({*plan.settled, *data.settled_review_ids})
    at = stored_precision(data.reviewed_at)
    said, known = (at, data.review_due_on or date.min), (plan.reviewed_at, plan.reviewed_due_on or date.min)
    if plan.reviewed_at is None or said > known:
        plan.reviewed_at, plan.reviewed_due_on = at, data.review_due_on


def open_plan_reviews(view: EpisodeView) -> list[PlanReview]:
    """The reviews still open, overdue first, then by their day."""
    plan = view.treatment_plan
    if view.status.value in ENDED:
        return []
    current = [r for r in plan.reviews.values() if r.version >= (plan.signed_version or 0)]
    current = [r for r in current if r.review_id not in plan.settled]
    newest: dict[str, date] = {}
    for review in plan.reviews.values():
        newest[review.reason] = max(review.due_on, newest.get(review.reason, review.due_on))
    held = [review for review in current if review.due_on >= newest[review.reason]]
    return sorted(held, key=lambda r: (not r.overdue, r.due_on, r.review_id))


def next_review_due_on(view: EpisodeView) -> date | None:
    """The next periodic review's day: the one the latest signing or recorded review set, or a periodic review held
    since and not settled, whichever is later."""
    plan = view.treatment_plan
    since = plan.signed_version or 0
    clock = plan.review_due_on
    if plan.reviewed_at is not None and (plan.signed_at is None or plan.reviewed_at > plan.signed_at):
        clock = plan.reviewed_due_on
    held = [r.due_on for r in plan.reviews.values()
            if r.reason == "periodic" and r.version >= since and r.review_id not in plan.settled]  # fmt: skip
    days = [day for day in (clock, *held) if day is not None]
    return max(days, default=None)


def plan_summary(view: EpisodeView) -> Row | None:
    plan = view.treatment_plan
    if plan.signed_version is None and not plan.reviews:
        return None
    due_on = next_review_due_on(view)
    return {
        "signed_version": plan.signed_version,
        "signed_at": plan.signed_at.isoformat() if plan.signed_at else None,
        "next_review_due_on": due_on.isoformat() if due_on else None,
        "open": [plan_review_row(review) for review in open_plan_reviews(view)],
    }


def plan_review_row(review: PlanReview) -> Row:
    return review.model_dump(mode="json", exclude={"overdue"}) | {"state": "overdue" if review.overdue else "due"}


# --- authorizations -----------------------------------------------------------------------------------------------


def on_authorization_changed(view: EpisodeView, data: AuthorizationChanged) -> None:
    """The latest view (by when it changed, then revision) and the highest revision with when it was first said."""
    at = stored_precision(data.changed_at)
    state = view.coverage.authorizations.get(data.authorization_id) or AuthorizationState(
        authorization_id=data.authorization_id
    )
    terms = Terms.model_validate(data.model_dump(include=set(Terms.model_fields)) | {"changed_at": at})
    if state.terms is None or (at, data.revision) >= (state.terms.changed_at, state.terms.revision):
        state.terms = terms
    if data.revision > state.revision or state.revised_at is None:
        state.revision, state.revised_at = data.revision, at
    elif data.revision == state.revision:
        state.revised_at = min(state.revised_at, at)
    view.coverage.authorizations[data.authorization_id] = state
    view.authorized_level = authorized_level(view)


def authorized_level(view: EpisodeView) -> Stamped:
    """The level of the approved authorization that starts last (the one in force, or to be), as of the latest view
    of any: read from every authorization, so the same in any order."""
    known = [(s.authorization_id, s.terms) for s in view.coverage.authorizations.values() if s.terms is not None]
    if not known:
        return Stamped()
    approved = [(t.start_date, t.end_date, key, t.level) for key, t in known if t.status in APPROVED]
    at = max(t.changed_at for _, t in known)
    return Stamped(value=max(approved)[3] if approved else None, at=at)


def _said(view: EpisodeView, authorization_id: str, kind: str, said: Said) -> None:
    state = view.coverage.authorizations.get(authorization_id) or AuthorizationState(authorization_id=authorization_id)
    known: Said | None = getattr(state, kind)
    if known is None or (said.detected_at, said.on) >= (known.detected_at, known.on):
        setattr(state, kind, said)
    view.coverage.authorizations[authorization_id] = state


def on_authorization_review_due(view: EpisodeView, data: AuthorizationReviewDue) -> None:
    said = Said(on=data.review_due_on, detected_at=stored_precision(data.detected_at), reason=data.reason,
                units_remaining=data.units_remaining)  # fmt: skip
    _said(view, data.authorization_id, "review_due", said)


def on_units_low(view: EpisodeView, data: AuthorizationUnitsLow) -> None:
    detected = stored_precision(data.detected_at)
    said = Said(on=data.projected_exhaustion_on or detected.date(), detected_at=detected,
                units_remaining=data.units_remaining, units_scheduled=data.units_scheduled)  # fmt: skip
    _said(view, data.authorization_id, "units_low", said)


def on_exhausted(view: EpisodeView, data: AuthorizationExhausted) -> None:
    said = Said(on=data.exhausted_on, detected_at=stored_precision(data.detected_at), units_remaining=0)
    _said(view, data.authorization_id, "exhausted", said)


def item_key(item: str, service_id: str | None, service_date: date) -> str:
    return f"{item}|{service_id if item == 'service' else service_date.isoformat()}"


def delivered(view: EpisodeView, key: str, revision: int) -> None:
    """care_plan published ``revision`` of a service or a day: the highest is kept."""
    view.coverage.delivered[key] = max(revision, view.coverage.delivered.get(key, 0))


def on_unauthorized(view: EpisodeView, data: ServiceUnauthorized) -> None:
    key = f"{item_key(data.item, data.service_id, data.service_date)}|{data.unit}"
    item = Unauthorized(item=data.item, service_id=data.service_id, revision=data.revision,
                        service_date=data.service_date, level=str(data.level), code=data.code, unit=data.unit,
                        reason=data.reason, detected_at=stored_precision(data.detected_at))  # fmt: skip
    known = view.coverage.unauthorized.get(key)
    if known is None or (item.revision, item.detected_at, item.reason) >= (known.revision, known.detected_at,
                                                                            known.reason):  # fmt: skip
        view.coverage.unauthorized[key] = item


def on_level_mismatch(view: EpisodeView, data: AuthorizationLevelMismatch) -> None:
    said = Mismatch(authorization_id=data.authorization_id, clinical_level=str(data.clinical_level),
                    authorized_level=str(data.authorized_level),
                    detected_at=stored_precision(data.detected_at))  # fmt: skip
    known = view.coverage.mismatch
    if known is None or (said.detected_at, said.clinical_level) >= (known.detected_at, known.clinical_level):
        view.coverage.mismatch = said


def on_certification_due(view: EpisodeView, data: CertificationDue) -> None:
    said = Certification(payer=data.payer, due_on=data.due_on, reason=data.reason,
                         last_certified_on=data.last_certified_on,
                         detected_at=stored_precision(data.detected_at))  # fmt: skip
    known = view.coverage.certifications.get(data.payer)
    if known is None or (said.due_on, said.detected_at) >= (known.due_on, known.detected_at):
        view.coverage.certifications[data.payer] = said


def on_certification_recorded(view: EpisodeView, data: CertificationRecorded) -> None:
    known = view.coverage.certified.get(data.payer)
    view.coverage.certified[data.payer] = max(data.next_due_on, known or data.next_due_on)


def _certification_items(view: EpisodeView) -> list[Row]:
    """The latest certification due of each payer, unless a recorded certification put the next one after it."""
    certified = view.coverage.certified
    return [{"kind": "certification_due", "on": c.due_on.isoformat(), "payer": c.payer, "reason": c.reason,
             "last_certified_on": c.last_certified_on.isoformat() if c.last_certified_on else None}
            for c in view.coverage.certifications.values()
            if c.payer not in certified or c.due_on >= certified[c.payer]]  # fmt: skip


# --- what needs the desk ------------------------------------------------------------------------------------------


def authorization_items(view: EpisodeView) -> list[Row]:
    """What of the episode's authorizations needs the UR desk now, earliest day first. An ended episode keeps only
    its unauthorized services and days (a claim still needs them settled)."""
    items = [*_unauthorized_items(view)]
    if view.status.value not in ENDED:
        for state in view.coverage.authorizations.values():
            items += _authorization_items(state)
        items += _mismatch_items(view)
        items += _certification_items(view)
    return sorted(items, key=lambda i: (i["on"], KINDS.index(i["kind"]), i.get("authorization_id") or "", str(i)))


def _settled_by_revision(state: AuthorizationState, said: Said) -> bool:
    return state.revised_at is not None and said.detected_at < state.revised_at


def _newer(state: AuthorizationState, said: Said) -> Terms | None:
    """The view published after ``said``, if one was."""
    terms = state.terms
    return terms if terms is not None and terms.changed_at > said.detected_at else None


def _authorization_items(state: AuthorizationState) -> list[Row]:
    terms = state.terms
    base: Row = {"authorization_id": state.authorization_id, "payer": terms.payer if terms else None,
                 "level": terms.level if terms else None, "unit": terms.unit if terms else None}  # fmt: skip
    items = [base | item for item in (_review_due_item(state), _exhausted_item(state)) if item]
    low = state.units_low
    if low is not None and not any(i["kind"] == "exhausted" for i in items) and not _settled_by_revision(state, low):
        items.append(base | {"kind": "units_low", "on": low.on.isoformat(), "units_remaining": low.units_remaining,
                             "units_scheduled": low.units_scheduled})  # fmt: skip
    return items


def _review_due_item(state: AuthorizationState) -> Row | None:
    """The review said due, as the latest view has it; a later view without a review date settled it."""
    due = state.review_due
    if due is None or _settled_by_revision(state, due):
        return None
    after = _newer(state, due)
    if after is None:
        return {"kind": "review_due", "on": due.on.isoformat(), "reason": due.reason,
                "units_remaining": due.units_remaining}  # fmt: skip
    if after.review_due_on is None:
        return None
    return {"kind": "review_due", "on": after.review_due_on.isoformat(), "reason": after.review_reason,
            "units_remaining": after.units_remaining}  # fmt: skip


def _exhausted_item(state: AuthorizationState) -> Row | None:
    """Every unit used, until a revision (units added) or a later view with units left (a voided service)."""
    gone = state.exhausted
    if gone is None or _settled_by_revision(state, gone):
        return None
    after = _newer(state, gone)
    if after is not None and (after.units_remaining or 0) > 0:
        return None
    return {"kind": "exhausted", "on": gone.on.isoformat(), "units_remaining": 0}


def _covered_since(view: EpisodeView, level: str, since: datetime, unit: str | None = None,
                   on: date | None = None) -> bool:  # fmt: skip
    """An approved authorization of ``level`` (and ``unit``, covering ``on``) recorded or revised after ``since``."""
    for state in view.coverage.authorizations.values():
        terms = state.terms
        if terms is None or state.revised_at is None or state.revised_at <= since:
            continue
        dated = on is None or terms.start_date <= on <= terms.end_date
        if terms.status in APPROVED and terms.level == level and unit in (None, terms.unit) and dated:
            return True
    return False


def _mismatch_items(view: EpisodeView) -> list[Row]:
    said = view.coverage.mismatch
    if said is None or view.level.value not in (None, said.clinical_level):
        return []
    if _covered_since(view, said.clinical_level, said.detected_at):
        return []
    return [{"kind": "level_mismatch", "on": said.detected_at.date().isoformat(),
             "authorization_id": said.authorization_id, "clinical_level": said.clinical_level,
             "authorized_level": said.authorized_level}]  # fmt: skip


def _unauthorized_items(view: EpisodeView) -> list[Row]:
    items = []
    for item in view.coverage.unauthorized.values():
        key = item_key(item.item, item.service_id, item.service_date)
        if view.coverage.delivered.get(key, 0) > item.revision:
            continue  # a later revision: said again if still not covered, not at all if voided
        if _covered_since(view, item.level, item.detected_at, item.unit, item.service_date):
            continue
        items.append({"kind": "unauthorized", "on": item.service_date.isoformat(), "item": item.item,
                      "service_id": item.service_id, "level": item.level, "code": item.code, "unit": item.unit,
                      "reason": item.reason})  # fmt: skip
    return items


def coverage_summary(view: EpisodeView) -> Row | None:
    """The episode's authorizations as last said, and what of them needs the desk."""
    coverage = view.coverage
    if not (coverage.authorizations or coverage.unauthorized or coverage.mismatch or coverage.certifications
            or coverage.certified):  # fmt: skip
        return None
    known = sorted((s.authorization_id, s.terms) for s in coverage.authorizations.values() if s.terms)
    return {
        "authorizations": [{"authorization_id": key, **terms.model_dump(mode="json")} for key, terms in known],
        "attention": authorization_items(view),
    }
