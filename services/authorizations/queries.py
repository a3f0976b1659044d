"""Reads that shape the authorizations service's answers: an episode's authorizations as of now (draw-down,
projection, review due and why) and the UR worklist."""

from __future__ import annotations

from datetime import date

from services.common.utc import utc_now
from stepwise_contract import ReviewReason

from .changes import Desk
from .domain.coverage import views
from .domain.model import Authorization, Coverage
from .schemas import AuthorizationOut, ReviewOut


async def authorizations_of(desk: Desk, episode_id: str) -> list[AuthorizationOut]:
    stored = await desk.store.get(episode_id)
    return [] if stored is None else authorizations_out(stored.coverage, desk)


async def authorization(desk: Desk, episode_id: str, authorization_id: str) -> AuthorizationOut:
    """One authorization of the episode as of now (after a change)."""
    [found] = [a for a in await authorizations_of(desk, episode_id) if a.authorization_id == authorization_id]
    return found


def authorizations_out(coverage: Coverage, desk: Desk) -> list[AuthorizationOut]:
    answers = []
    for a, (view, entry) in zip(coverage.authorizations, views(coverage, utc_now(), desk.rules), strict=True):
        answers.append(_out(coverage.episode_id, a, view.units_used, view.units_remaining,
                            view.projected_exhaustion_on, entry.review_due_on if entry else None,
                            entry.reason if entry else None, entry.why if entry else None))  # fmt: skip
    return answers


def _out(
    episode_id: str,
    a: Authorization,
    used: float,
    remaining: float | None,
    projected: date | None,
    due: date | None,
    reason: ReviewReason | None,
    why: str | None,
) -> AuthorizationOut:
    return AuthorizationOut(
        episode_id=episode_id, units_used=used, units_remaining=remaining, projected_exhaustion_on=projected,
        review_due_on=due, review_reason=reason, why=why, **a.model_dump(),
    )  # fmt: skip


async def worklist(
    desk: Desk, due_before: date | None, reason: ReviewReason | None, payer: str | None, limit: int
) -> list[ReviewOut]:
    """Reviews due (before ``due_before``), earliest first; by reason and payer when given. The lines are those the
    last change or daily look decided (at most a day old)."""
    lines = []
    for coverage in await desk.store.with_reviews(due_before):
        for entry in coverage.reviews:
            if (due_before and entry.review_due_on >= due_before) or (reason and entry.reason != reason):
                continue
            if payer and entry.payer != payer:
                continue
            lines.append(ReviewOut(episode_id=coverage.episode_id, why=entry.why, **entry.model_dump()))
    lines.sort(key=lambda line: (line.review_due_on, line.episode_id, line.authorization_id))
    return lines[:limit]
