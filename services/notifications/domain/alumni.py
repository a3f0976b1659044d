"""Alumni enrolment: a graduate who joined the alumni group under a consent naming it (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from stepwise_contract import AlumniEnrolled, AlumniLeft

EnrolmentStatus = Literal["enrolled", "left"]
LeaveReason = Literal["opted_out", "new_episode", "consent_withdrawn"]


@dataclass(frozen=True)
class Enrolment:
    episode_id: str
    """The graduated episode (one enrolment per episode)."""
    patient_id: str
    """Pseudonymous: lets a new episode of the same patient end the enrolment."""
    consent_id: str
    status: EnrolmentStatus
    graduated_at: datetime
    enrolled_at: datetime
    left_at: datetime | None = None
    left_reason: LeaveReason | None = None


def enrol(
    episode_id: str, patient_id: str, consent_id: str, graduated_at: datetime, check_in_days: list[int], now: datetime
) -> tuple[Enrolment, AlumniEnrolled]:
    enrolment = Enrolment(episode_id, patient_id, consent_id, "enrolled", graduated_at, enrolled_at=now)
    event = AlumniEnrolled(episode_id=episode_id, consent_id=consent_id, graduated_at=graduated_at,
                           enrolled_at=now, check_in_days=check_in_days)  # fmt: skip
    return enrolment, event


def leave(enrolment: Enrolment, reason: LeaveReason, now: datetime) -> tuple[Enrolment, AlumniLeft] | None:
    """End the enrolment; None if it has ended already."""
    if enrolment.status != "enrolled":
        return None
    left = replace(enrolment, status="left", left_at=now, left_reason=reason)
    return left, AlumniLeft(episode_id=enrolment.episode_id, left_at=now, reason_code=reason)


def ended_by_revoking(enrolment: Enrolment, consent_id: str) -> bool:
    """Revoking a consent ends an enrolment only if the graduate enrolled under that consent."""
    return enrolment.consent_id == consent_id
