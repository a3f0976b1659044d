"""notifications in-process for treatment-plan reviews: iop.treatment_plan.review_due and review_overdue tell the
care team by email, with ids, the reason code, the version and dates (care_plan's events carry no plan text)."""

from __future__ import annotations

from datetime import timedelta

from services.common.utc import utc_now
from services.notifications.changes import Messaging
from stepwise_contract import TreatmentPlanReviewDue, TreatmentPlanReviewOverdue
from tests.service.conftest import Events
from tests.service.fake_intake import FakeIntake
from tests.service.notifications.helpers import TEMPLATES, care_plan_event, log_of, what


async def test_a_review_due_and_overdue_are_emailed_to_the_care_team(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = intake.episode()
    fields = {"episode_id": episode_id, "review_id": "rv-1", "reason": "reliable_deterioration", "trigger_id": "m-1",
              "version": 2, "due_on": utc_now().date(), "overdue_at": utc_now() + timedelta(days=1)}  # fmt: skip
    await events.deliver(care_plan_event(TreatmentPlanReviewDue.model_validate(fields)))
    await events.deliver(care_plan_event(TreatmentPlanReviewOverdue.model_validate(fields)))
    planned = await log_of(messaging, episode_id)
    assert what(planned) == [("treatment_plan_review_due", "care_team", "email"),
                             ("treatment_plan_review_overdue", "care_team", "email")]  # fmt: skip
    due, overdue = (TEMPLATES.render(n.purpose, n.channel, {**n.context, "episode_id": episode_id})
                    for n in sorted(planned, key=lambda n: n.purpose))  # fmt: skip
    assert due.subject == f"Treatment plan review due for episode {episode_id}"
    assert "(version 2 in force) is to be reviewed now: reliable deterioration (m-1)" in due.body
    assert overdue.subject == f"Treatment plan review overdue for episode {episode_id}"
    assert "has not been recorded" in overdue.body
