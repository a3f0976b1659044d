"""What a clinic's morning questions read from the projections (pure): the flags a worklist finds an episode by,
and each worklist's rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .model import EpisodeView
from .reviews import KINDS, authorization_items, coverage_summary, open_plan_reviews, plan_review_row, plan_summary

WORKLISTS = (
    "today",
    "safety_alerts",
    "missed_sessions",
    "recommendations",
    "measures_due",
    "plan_reviews",
    "authorizations",
    "failed_messages",
)
FLAG_OF = {
    "safety_alerts": "safety_alert",
    "missed_sessions": "missed_sessions",
    "recommendations": "recommendation",
    "measures_due": "measures_due",
    "plan_reviews": "plan_review",
    "authorizations": "authorization",
    "failed_messages": "failed_messages",
}
"""The flag (kept on the stored projection, indexed) of each worklist but ``today`` (by the sessions' days)."""

ENDED = ("graduated", "discharged")
Row = dict[str, Any]


def misses_in_a_row(view: EpisodeView) -> int:
    """The sessions missed since the last one attended, by when the sessions began (whatever order their records
    came in); a correction to attended ends the run. The calendar is read only for records that do not say when
    their session began (it is read on every event an episode has)."""
    attendance = view.attendance.values()
    dated = all(record.starts_at is not None for record in attendance)
    starts = {} if dated else {session.session_id: session.starts_at for session in view.calendar()}
    records = sorted(attendance, key=lambda r: (r.starts_at or starts.get(r.session_id) or r.recorded_at, r.session_id))
    run = 0
    for record in records:
        run = run + 1 if record.status == "missed" else 0 if record.status in ("attended", "late") else run
    return run


def open_alerts(view: EpisodeView) -> list[Any]:
    return sorted(
        (alert for alert in view.alerts.values() if alert.open), key=lambda a: (a.level != "immediate", a.raised_at)
    )


def flags(view: EpisodeView, missed_threshold: int) -> list[str]:
    """The worklists the episode is on now (but today's, which is by day)."""
    active = view.status.value not in ENDED
    found = {
        "safety_alert": bool(open_alerts(view)),
        "missed_sessions": active and misses_in_a_row(view) >= missed_threshold,
        "recommendation": view.recommendation is not None,
        "measures_due": any(due.state in ("due", "overdue") for due in view.measures.values()),
        "failed_messages": bool(view.failed_messages),
        "plan_review": bool(open_plan_reviews(view)),
        "authorization": bool(authorization_items(view)),
    }
    return sorted(flag for flag, on in found.items() if on)


def session_days(view: EpisodeView, zone: ZoneInfo) -> list[str]:
    """The local days (ISO) the episode has a session on: today's worklist finds it by them."""
    if view.status.value in ENDED:
        return []
    return sorted({starts.astimezone(zone).date().isoformat() for starts in view.session_starts()})


def week_of(day: date) -> tuple[date, date]:
    start = day - timedelta(days=day.weekday())
    return start, start + timedelta(days=7)


def attendance_this_week(view: EpisodeView, today: date, zone: ZoneInfo) -> dict[str, int]:
    start, end = week_of(today)
    starts = {session.session_id: session.starts_at for session in view.calendar()}
    counts: dict[str, int] = {}
    for record in view.attendance.values():
        began = record.starts_at or starts.get(record.session_id)
        if began is not None and start <= began.astimezone(zone).date() < end:
            counts[record.status] = counts.get(record.status, 0) + 1
    return counts


def caseload_row(view: EpisodeView, now: datetime, zone: ZoneInfo, missed_threshold: int) -> Row:
    """An episode as the caseload lists it."""
    upcoming = [s for s in view.calendar() if s.ends_at >= now][:3]
    return {
        "episode_id": view.episode_id,
        "program": view.program.value,
        "track": view.track.value,
        "level": view.level.value,
        "authorized_level": view.authorized_level.value,
        "status": view.status.value,
        "group_id": view.group_id.value,
        "primary_clinician": view.primary_clinician.value,
        "next_sessions": [s.model_dump(mode="json") for s in upcoming],
        "attendance_this_week": attendance_this_week(view, now.astimezone(zone).date(), zone),
        "misses_in_a_row": misses_in_a_row(view),
        "open_alerts": [a.model_dump(mode="json") for a in open_alerts(view)],
        "recommendation": view.recommendation.model_dump(mode="json") if view.recommendation else None,
        "measures": [m.model_dump(mode="json") for m in view.measures.values() if m.state != "done"],
        "scores": {name: score.model_dump(mode="json") for name, score in sorted(view.scores.items())},
        "plan_review": plan_summary(view),
        "authorization": coverage_summary(view),
        "failed_messages": len(view.failed_messages),
        "flags": flags(view, missed_threshold),
    }


def safety_alert_rows(views: Iterable[EpisodeView]) -> list[Row]:
    rows = [
        {"episode_id": v.episode_id, **a.model_dump(mode="json"), "open": True} for v in views for a in open_alerts(v)
    ]
    return sorted(rows, key=lambda r: (r["level"] != "immediate", r["raised_at"] or ""))


def missed_rows(views: Iterable[EpisodeView]) -> list[Row]:
    rows = []
    for view in views:
        missed = [r for r in view.attendance.values() if r.status == "missed"]
        last = max(missed, key=lambda r: r.starts_at or r.recorded_at) if missed else None
        rows.append(
            {
                "episode_id": view.episode_id,
                "misses_in_a_row": misses_in_a_row(view),
                "last_missed_session": last.session_id if last else None,
                "group_id": view.group_id.value,
            }
        )
    return sorted(rows, key=lambda r: -r["misses_in_a_row"])


def recommendation_rows(views: Iterable[EpisodeView]) -> list[Row]:
    rows = [
        {"episode_id": v.episode_id, "level": v.level.value, **v.recommendation.model_dump(mode="json")}
        for v in views
        if v.recommendation
    ]
    return sorted(rows, key=lambda r: (not r["refer_out"], r["direction"] != "up", r["recommended_at"]))


def measure_rows(views: Iterable[EpisodeView]) -> list[Row]:
    rows = [
        {"episode_id": v.episode_id, **m.model_dump(mode="json")}
        for v in views
        for m in v.measures.values()
        if m.state in ("due", "overdue")
    ]
    return sorted(rows, key=lambda r: (r["state"] != "overdue", r["window_closes_at"]))


def failed_rows(views: Iterable[EpisodeView]) -> list[Row]:
    rows = [{"episode_id": v.episode_id, **f.model_dump(mode="json")} for v in views for f in v.failed_messages]
    return sorted(rows, key=lambda r: r["failed_at"], reverse=True)


def plan_review_rows(views: Iterable[EpisodeView]) -> list[Row]:
    """Open treatment-plan reviews: overdue first, then by the day they are due."""
    rows = [{"episode_id": v.episode_id, **plan_review_row(r)} for v in views for r in open_plan_reviews(v)]
    return sorted(rows, key=lambda r: (r["state"] != "overdue", r["due_on"], r["episode_id"], r["review_id"]))


def authorization_rows(views: Iterable[EpisodeView]) -> list[Row]:
    """What needs the UR desk (a review due, units low or exhausted, a level mismatch, an unauthorized service or
    day, a certification due), earliest day first."""
    rows = [{"episode_id": v.episode_id, "clinical_level": v.level.value, **item}
            for v in views for item in authorization_items(v)]  # fmt: skip
    return sorted(rows, key=lambda r: (r["on"], KINDS.index(r["kind"]), r["episode_id"], str(r)))


ROWS: dict[str, Callable[[Iterable[EpisodeView]], list[Row]]] = {
    "safety_alerts": safety_alert_rows,
    "missed_sessions": missed_rows,
    "recommendations": recommendation_rows,
    "measures_due": measure_rows,
    "plan_reviews": plan_review_rows,
    "authorizations": authorization_rows,
    "failed_messages": failed_rows,
}


def today_rows(views: Iterable[EpisodeView], day: date, zone: ZoneInfo) -> list[Row]:
    """Today's sessions: each group session with its roster (each member's record so far), and each own
    appointment with its patient, by start time."""
    sessions: dict[str, Row] = {}
    for view in views:
        for session in view.calendar():
            if session.starts_at.astimezone(zone).date() != day:
                continue
            record = view.attendance.get(session.session_id)
            member = {"episode_id": view.episode_id, "record": record.status if record else None}
            key = session.session_id if session.group_id else f"{session.session_id}/{view.episode_id}"
            entry = sessions.setdefault(
                key,
                {
                    "session_id": session.session_id,
                    "kind": session.kind,
                    "group_id": session.group_id,
                    "starts_at": session.starts_at.isoformat(),
                    "ends_at": session.ends_at.isoformat(),
                    "members": [],
                },
            )
            entry["members"].append(member)
    for entry in sessions.values():
        entry["members"].sort(key=lambda m: m["episode_id"])
    return sorted(sessions.values(), key=lambda e: (e["starts_at"], e["session_id"]))


def census(views: Iterable[EpisodeView], day: date, since: datetime, until: datetime, zone: ZoneInfo) -> Row:
    """Episodes in care on ``day`` per level, group and program; movements in [since, until)."""
    per: dict[str, dict[str, int]] = {"level": {}, "group": {}, "program": {}}
    moves: dict[str, int] = {}
    for view in views:
        for movement in view.movements:
            if since <= movement.at < until:
                moves[movement.kind] = moves.get(movement.kind, 0) + 1
        level = _level_on(view, day, zone)
        if level is None:
            continue
        for axis, value in (("level", level), ("group", view.group_id.value), ("program", view.program.value)):
            key = str(value or "none")
            per[axis][key] = per[axis].get(key, 0) + 1
    return {
        "date": day.isoformat(),
        "in_care": sum(per["level"].values()),
        "per_level": per["level"],
        "per_group": per["group"],
        "per_program": per["program"],
        "movements": moves,
        "since": since.isoformat(),
        "until": until.isoformat(),
    }


def _level_on(view: EpisodeView, day: date, zone: ZoneInfo) -> str | None:
    """The episode's level at the end of ``day``, None when it was not in care then."""
    level = None
    for movement in view.movements:
        if movement.at.astimezone(zone).date() > day:
            break
        level = None if movement.kind in (*ENDED, "referred_out") else movement.level
    return level
