"""Treatment-plan reviews and authorizations in the caseload's projection (pure): each event type, redelivery,
out-of-order arrival, and what settles what."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.caseload.domain.model import EpisodeView
from services.caseload.domain.reviews import authorization_items, next_review_due_on, open_plan_reviews
from services.caseload.domain.worklists import authorization_rows, caseload_row, flags, plan_review_rows
from stepwise_contract import (
    AuthorizationChanged,
    AuthorizationExhausted,
    AuthorizationLevelMismatch,
    AuthorizationReviewDue,
    AuthorizationUnitsLow,
    CareLevel,
    CertificationDue,
    CertificationRecorded,
    CloudEvent,
    ServiceDayCompleted,
    ServiceUnauthorized,
    TreatmentPlanReviewDue,
    TreatmentPlanReviewed,
    TreatmentPlanReviewOverdue,
    TreatmentPlanSigned,
)
from tests.unit.caseload.test_projection import ZONE, admitted, event, project
from tests.unit.contract.test_contract import EPISODE, T0, make_data

D0 = T0.date()
AU = "au-1"
SOON, LATER = D0 + timedelta(days=3), D0 + timedelta(days=30)


def orders(*events: CloudEvent[Any]) -> list[EpisodeView]:
    """The projection of ``events`` in every order (each delivered twice: redeliveries change nothing)."""
    return [project(*order, *order) for order in itertools.permutations(events)]


def the_same(*events: CloudEvent[Any]) -> EpisodeView:
    views = orders(*events)
    assert all(view == views[0] for view in views)
    return views[0]


# --- the treatment plan -------------------------------------------------------------------------------------------


def signed(version: int, at: datetime, due_on: date | None) -> CloudEvent[Any]:
    data = TreatmentPlanSigned(episode_id=EPISODE, version=version, supersedes_version=version - 1 or None,
                               signed_at=at, review_due_on=due_on)  # fmt: skip
    return event(data, at)


def review(review_id: str, version: int, due_on: date, reason: str = "periodic", overdue: bool = False,
           trigger_id: str | None = None) -> CloudEvent[Any]:  # fmt: skip
    kind = TreatmentPlanReviewOverdue if overdue else TreatmentPlanReviewDue
    overdue_at = datetime.combine(due_on + timedelta(days=1), T0.timetz())
    data = kind(episode_id=EPISODE, review_id=review_id, reason=reason, trigger_id=trigger_id, version=version,
                due_on=due_on, overdue_at=overdue_at)  # fmt: skip
    return event(data, overdue_at if overdue else T0 + timedelta(days=2))


def test_the_latest_signing_is_in_force_with_its_next_review_whatever_the_order() -> None:
    view = the_same(signed(1, T0, D0 + timedelta(days=30)), signed(2, T0 + timedelta(days=3), D0 + timedelta(days=33)))
    assert view.treatment_plan.signed_version == 2 and next_review_due_on(view) == D0 + timedelta(days=33)


def test_a_review_due_is_on_plan_reviews_until_a_later_version_is_signed_in_any_order() -> None:
    due = review("r-1", 1, D0 + timedelta(days=3), "reliable_deterioration", trigger_id="m-1")
    view = project(admitted(), signed(1, T0, D0 + timedelta(days=30)), due, due)
    [row] = plan_review_rows([view])
    assert (row["episode_id"], row["review_id"], row["state"], row["reason"], row["trigger_id"], row["due_on"]) == (
        EPISODE, "r-1", "due", "reliable_deterioration", "m-1", (D0 + timedelta(days=3)).isoformat())  # fmt: skip
    assert "plan_review" in flags(view, 2)
    settled = the_same(admitted(), signed(1, T0, D0 + timedelta(days=30)), due, signed(2, T0 + timedelta(days=4), None))
    assert open_plan_reviews(settled) == [] and "plan_review" not in flags(settled, 2)


def test_an_overdue_review_stays_overdue_and_comes_first() -> None:
    late = review("r-1", 1, D0 + timedelta(days=3), "safety_alert")
    view = the_same(admitted(), late, review("r-1", 1, D0 + timedelta(days=3), "safety_alert", overdue=True),
                    review("r-2", 1, D0 + timedelta(days=1), "level_change"))  # fmt: skip
    assert [(row["review_id"], row["state"]) for row in plan_review_rows([view])] == [("r-1", "overdue"),
                                                                                      ("r-2", "due")]  # fmt: skip


def test_a_later_review_for_the_same_reason_settles_the_earlier() -> None:
    """care_plan holds one review open per reason: a newer one means the older was recorded (no event says so)."""
    first, second = review("r-1", 1, D0 + timedelta(days=30)), review("r-2", 1, D0 + timedelta(days=60))
    view = the_same(admitted(), signed(1, T0, D0 + timedelta(days=30)), first, second)
    assert [r.review_id for r in open_plan_reviews(view)] == ["r-2"]
    assert next_review_due_on(view) == D0 + timedelta(days=60)


def reviewed(settled: list[str], at: datetime, due_on: date | None, version: int = 1) -> CloudEvent[Any]:
    data = TreatmentPlanReviewed(episode_id=EPISODE, settled_review_ids=settled, version=version, outcome="continued",
                                 reviewed_at=at, review_due_on=due_on)  # fmt: skip
    return event(data, at)


def test_a_recorded_review_settles_the_reviews_it_names_and_sets_the_next_in_any_order() -> None:
    """A review recorded without a signing (iop.treatment_plan.reviewed) settles what it names, even when the
    review's own due or overdue event arrives after it; one held since (not named) stays open."""
    due, late = review("r-1", 1, SOON, "level_change"), review("r-1", 1, SOON, "level_change", overdue=True)
    after = review("r-3", 1, SOON + timedelta(days=2), "safety_alert")
    recorded = reviewed(["r-1"], T0 + timedelta(days=5), D0 + timedelta(days=35))
    view = the_same(admitted(), signed(1, T0, LATER), due, late, recorded, after)
    assert [r.review_id for r in open_plan_reviews(view)] == ["r-3"]
    assert next_review_due_on(view) == D0 + timedelta(days=35)  # the review's, not the signing's
    assert project(admitted(), signed(1, T0, LATER), due, recorded).treatment_plan.settled == ["r-1"]
    assert plan_review_rows([project(admitted(), signed(1, T0, LATER), recorded, due, late)]) == []
    newer = the_same(signed(1, T0, LATER), recorded, signed(2, T0 + timedelta(days=9), D0 + timedelta(days=39)))
    assert next_review_due_on(newer) == D0 + timedelta(days=39)  # a later signing sets the clock again


def test_an_ended_episode_has_no_review_open() -> None:
    view = project(admitted(), review("r-1", 1, D0), event(make_data("iop.episode.discharged")))
    assert plan_review_rows([view]) == [] and caseload_row(view, T0, ZONE, 2)["plan_review"]["open"] == []


# --- authorizations -------------------------------------------------------------------------------------------------


def changed(at: datetime, revision: int = 1, **terms: Any) -> CloudEvent[Any]:
    fields: dict[str, Any] = dict(
        episode_id=EPISODE, authorization_id=AU, revision=revision, payer="carelon", level=CareLevel.IOP, unit="day",
        units_authorized=10, units_used=8, units_remaining=2, start_date=D0 - timedelta(days=20),
        end_date=D0 + timedelta(days=40), status="approved", review_type="concurrent", next_review_on=None,
        last_covered_day=None, projected_exhaustion_on=D0 + timedelta(days=3), review_due_on=D0,
        review_reason="exhaustion", changed_at=at)  # fmt: skip
    return event(AuthorizationChanged(**fields | terms), at)


def review_due(at: datetime, on: date = D0) -> CloudEvent[Any]:
    data = AuthorizationReviewDue(episode_id=EPISODE, authorization_id=AU, payer="carelon", level=CareLevel.IOP,
                                  review_due_on=on, reason="exhaustion", deadline=on + timedelta(days=3),
                                  units_remaining=2, detected_at=at)  # fmt: skip
    return event(data, at)


def kinds(view: EpisodeView) -> list[str]:
    return [item["kind"] for item in authorization_items(view)]


def test_an_authorization_gives_the_authorized_level_and_its_units_the_latest_view_winning() -> None:
    older = changed(T0, units_used=5, units_remaining=5)
    view = the_same(admitted(), older, changed(T0 + timedelta(hours=1)))
    row = caseload_row(view, T0, ZONE, 2)
    assert row["authorized_level"] == "IOP"
    [shown] = row["authorization"]["authorizations"]
    assert (shown["units_used"], shown["units_remaining"], shown["review_due_on"]) == (8, 2, D0.isoformat())
    denied = project(admitted(), older, changed(T0 + timedelta(hours=2), revision=2, status="denied"))
    assert denied.authorized_level.value is None


def test_a_review_due_holds_until_the_authorization_is_revised_in_any_order() -> None:
    due = the_same(admitted(), changed(T0), review_due(T0 + timedelta(days=1)))
    [item] = authorization_items(due)
    assert (item["kind"], item["on"], item["reason"], item["units_remaining"]) == ("review_due", D0.isoformat(),
                                                                                   "exhaustion", 2)  # fmt: skip
    assert "authorization" in flags(due, 2)
    reviewed = changed(T0 + timedelta(days=2), revision=2, units_authorized=20, units_remaining=12,
                       review_due_on=D0 + timedelta(days=20))  # fmt: skip
    assert kinds(the_same(admitted(), changed(T0), review_due(T0 + timedelta(days=1)), reviewed)) == []
    # Revised, and still due: the service says it again in the same change (the same moment).
    still = changed(T0 + timedelta(days=2), revision=2, review_due_on=D0 + timedelta(days=1))
    again = review_due(T0 + timedelta(days=2), D0 + timedelta(days=1))
    view = the_same(admitted(), changed(T0), review_due(T0 + timedelta(days=1)), still, again)
    assert [(i["kind"], i["on"]) for i in authorization_items(view)] == [("review_due", "2026-10-21")]
    ended = changed(T0 + timedelta(days=3), review_due_on=None, review_reason=None)
    assert kinds(project(admitted(), changed(T0), review_due(T0 + timedelta(days=1)), ended)) == []


def test_units_low_then_exhausted_and_a_unit_given_back() -> None:
    low = event(AuthorizationUnitsLow(episode_id=EPISODE, authorization_id=AU, payer="carelon", level=CareLevel.IOP,
                                      unit="day", units_remaining=2, units_scheduled=5, days=7,
                                      projected_exhaustion_on=D0 + timedelta(days=3), detected_at=T0))  # fmt: skip
    assert kinds(project(admitted(), changed(T0), low)) == ["units_low"]
    gone_at = T0 + timedelta(days=3)
    gone = event(AuthorizationExhausted(episode_id=EPISODE, authorization_id=AU, payer="carelon", level=CareLevel.IOP,
                                        unit="day", units_authorized=10, exhausted_on=gone_at.date(),
                                        detected_at=gone_at))  # fmt: skip
    used_up = changed(gone_at, units_used=10, units_remaining=0)
    view = the_same(admitted(), changed(T0), low, gone, used_up)
    assert kinds(view) == ["exhausted"]
    given_back = changed(gone_at + timedelta(hours=1), units_used=9, units_remaining=1)  # a voided service
    assert kinds(project(admitted(), changed(T0), low, gone, used_up, given_back)) == ["units_low"]


def unauthorized(at: datetime, revision: int = 1) -> CloudEvent[Any]:
    data = ServiceUnauthorized(episode_id=EPISODE, item="day", service_id=None, revision=revision, service_date=D0,
                               level=CareLevel.PHP, code="H0035", unit="day", reason="wrong_level",
                               detected_at=at)  # fmt: skip
    return event(data, at)


def test_an_unauthorized_day_holds_until_authorized_or_revised_and_stays_after_the_end() -> None:
    view = the_same(admitted(), changed(T0), unauthorized(T0 + timedelta(hours=1)))
    [item] = authorization_items(view)
    assert (item["kind"], item["item"], item["on"], item["reason"]) == ("unauthorized", "day", D0.isoformat(),
                                                                        "wrong_level")  # fmt: skip
    ended = project(admitted(), unauthorized(T0), event(make_data("iop.episode.discharged")))
    assert kinds(ended) == ["unauthorized"]
    php = AuthorizationChanged.model_validate(changed(T0 + timedelta(hours=2)).data.model_dump() | {
        "authorization_id": "au-2", "level": CareLevel.PHP})  # fmt: skip
    authorized = event(php, T0 + timedelta(hours=2))
    assert kinds(the_same(admitted(), unauthorized(T0 + timedelta(hours=1)), authorized)) == []
    day = ServiceDayCompleted.model_validate(make_data("iop.service_day.completed").model_dump() | {"revision": 2})
    assert kinds(the_same(admitted(), unauthorized(T0 + timedelta(hours=1)), event(day))) == []
    assert kinds(the_same(unauthorized(T0 + timedelta(hours=3), revision=2), event(day))) == ["unauthorized"]


def level_changed(to_level: CareLevel, at: datetime) -> CloudEvent[Any]:
    up = to_level == CareLevel.PHP
    data = make_data("iop.care_level.changed").model_copy(update={
        "from_level": CareLevel.IOP if up else CareLevel.PHP, "to_level": to_level, "direction": "up" if up else "down",
        "changed_at": at})  # fmt: skip
    return event(data, at)


def test_a_level_mismatch_holds_while_the_clinical_level_is_the_one_it_named() -> None:
    stepped_up = level_changed(CareLevel.PHP, T0 + timedelta(hours=1))
    mismatch = event(AuthorizationLevelMismatch(episode_id=EPISODE, authorization_id=AU, clinical_level=CareLevel.PHP,
                                                authorized_level=CareLevel.IOP,
                                                detected_at=T0 + timedelta(hours=1)))  # fmt: skip
    view = the_same(admitted(), changed(T0), stepped_up, mismatch)
    [item] = authorization_items(view)
    assert (item["kind"], item["clinical_level"], item["authorized_level"]) == ("level_mismatch", "PHP", "IOP")
    back = level_changed(CareLevel.IOP, T0 + timedelta(days=1))
    assert kinds(the_same(admitted(), changed(T0), stepped_up, mismatch, back)) == []
    php = AuthorizationChanged.model_validate(changed(T0 + timedelta(hours=5)).data.model_dump() | {
        "authorization_id": "au-2", "level": CareLevel.PHP})  # fmt: skip
    assert kinds(the_same(admitted(), stepped_up, mismatch, event(php))) == []


def certification(due_on: date, at: datetime) -> CloudEvent[Any]:
    data = CertificationDue(episode_id=EPISODE, payer="medicare", due_on=due_on, reason="recertification",
                            last_certified_on=due_on - timedelta(days=60), min_hours_per_week=9,
                            detected_at=at)  # fmt: skip
    return event(data, at)


def test_the_latest_certification_due_holds_until_the_episode_ends() -> None:
    view = the_same(admitted(), certification(D0, T0), certification(D0 + timedelta(days=60), T0 + timedelta(days=55)))
    assert [(i["kind"], i["on"]) for i in authorization_items(view)] == [
        ("certification_due", (D0 + timedelta(days=60)).isoformat())]  # fmt: skip
    assert kinds(project(admitted(), certification(D0, T0), event(make_data("iop.episode.graduated")))) == []


def certified(next_due_on: date, at: datetime, hours: float = 9) -> CloudEvent[Any]:
    data = CertificationRecorded(episode_id=EPISODE, certification_id=f"ce-{at.isoformat()}", payer="medicare",
                                 certified_on=at.date(), hours_per_week=hours, min_hours_per_week=9,
                                 next_due_on=next_due_on, recorded_at=at)  # fmt: skip
    return event(data, at)


def test_a_recorded_certification_settles_the_payers_due_before_its_next_in_any_order() -> None:
    recorded = certified(D0 + timedelta(days=60), T0 + timedelta(days=1))
    assert kinds(the_same(admitted(), certification(D0, T0), recorded)) == []
    too_few = certified(D0, T0 + timedelta(days=1), hours=6)  # the payer's next is still the one due
    assert kinds(the_same(admitted(), certification(D0, T0), too_few)) == ["certification_due"]
    next_one = certification(D0 + timedelta(days=60), T0 + timedelta(days=55))
    view = the_same(admitted(), certification(D0, T0), recorded, next_one)
    assert [(i["kind"], i["on"]) for i in authorization_items(view)] == [
        ("certification_due", (D0 + timedelta(days=60)).isoformat())]  # fmt: skip


def test_the_authorizations_worklist_lists_the_earliest_day_first() -> None:
    soon = project(admitted(), changed(T0), review_due(T0, D0))
    later = EpisodeView.model_validate(project(admitted(), certification(D0 + timedelta(days=9), T0)).model_dump()
                                       | {"episode_id": "e-2"})  # fmt: skip
    rows = authorization_rows([later, soon])
    assert [(row["episode_id"], row["kind"]) for row in rows] == [(EPISODE, "review_due"), ("e-2", "certification_due")]


SCENARIO = [admitted(), signed(1, T0, LATER), review("r-1", 1, SOON, "level_change"),
            review("r-1", 1, SOON, "level_change", overdue=True), review("r-2", 1, LATER),
            changed(T0), review_due(T0 + timedelta(hours=1)), unauthorized(T0 + timedelta(hours=2)),
            certification(D0, T0), changed(T0 + timedelta(hours=3), units_used=9, units_remaining=1),
            reviewed(["r-1"], T0 + timedelta(days=4), LATER + timedelta(days=4)),
            certified(D0 + timedelta(days=1), T0 + timedelta(hours=4))]  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(st.permutations(SCENARIO))
def test_reviews_and_authorizations_do_not_depend_on_the_order_events_arrive_in(events: list[CloudEvent[Any]]) -> None:
    view, expected = project(*events), project(*SCENARIO)
    assert view == expected
    assert (flags(view, 2), plan_review_rows([view]), authorization_rows([view])) == (
        ["authorization", "plan_review"], plan_review_rows([expected]), authorization_rows([expected]))  # fmt: skip
