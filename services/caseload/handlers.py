"""Events caseload consumes: every ``iop.*`` event Stepwise publishes, each applied to its episode's projection
(``domain/projection.py`` says what each type changes). One handler serves them all; the table lists each type,
so a new event type is consumed as soon as the contract names it (timeline first, its projector when added).
Safety alerts ride the urgent lane: the safety worklist must not wait behind a routine backlog."""

from __future__ import annotations

from typing import Any

from services.common.consumer import EventHandlers, Subscription
from stepwise_contract import EVENT_TYPES, CloudEvent, SafetyAlertRaised

from .store import CaseloadStore


async def project(event: CloudEvent[Any], store: CaseloadStore) -> None:
    await store.project(event)  # a redelivery is recognised by its source#id and changes nothing


EVENT_HANDLERS: EventHandlers = {
    model: Subscription(
        project,
        f"Applied to the episode's projection and timeline ({(model.__doc__ or '').strip().splitlines()[0]})",
        urgent=model is SafetyAlertRaised,
    )
    for model in EVENT_TYPES.values()
}
