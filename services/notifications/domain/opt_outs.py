"""Opt-outs: a recipient asks for no more (non-urgent) messages, through staff or by replying STOP (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from stepwise_contract import SUPPORT_KINDS, RecipientKind

OptOutSource = Literal["api", "sms_reply"]
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "UNSTOP", "YES", "OPTIN"})
RECIPIENT_PREFIX = "recipient:"


@dataclass(frozen=True)
class OptOut:
    opt_out_id: str
    """``recipient:<episode>:<kind>:<consent>``, or ``sms:<keyed hash of the number>``."""
    source: OptOutSource
    opted_out_at: datetime
    episode_id: str | None = None
    recipient_kind: RecipientKind | None = None
    consent_id: str | None = None


def recipient_key(episode_id: str, recipient_kind: str, consent_id: str | None) -> str:
    """The one key an opt-out is stored and looked up under. A support is a recipient per consent; the patient
    and the alumnus are one recipient per episode, whatever consent a message to them goes under."""
    consent = consent_id if recipient_kind in SUPPORT_KINDS else None
    return f"{RECIPIENT_PREFIX}{episode_id}:{recipient_kind}:{consent or '-'}"


def staff_opt_out(episode_id: str, recipient_kind: RecipientKind, consent_id: str | None, now: datetime) -> OptOut:
    """An opt-out staff record for one recipient of one episode (the care team cannot opt out)."""
    return OptOut(recipient_key(episode_id, recipient_kind, consent_id), "api", now, episode_id, recipient_kind,
                  consent_id)  # fmt: skip


def reply_action(text: str) -> Literal["opt_out", "opt_in"] | None:
    """What a text sent to the clinic's number asks for: STOP (and synonyms), START, or nothing we act on."""
    word = text.strip().upper().rstrip(".!")
    if word in STOP_WORDS:
        return "opt_out"
    if word in START_WORDS:
        return "opt_in"
    return None
