"""Events intake consumes: none so far. Intake is where an episode's facts are first recorded; it publishes
them and reacts to nobody's events. A handler for an event intake comes to need goes in ``EVENT_HANDLERS``,
one function per event type calling ``changes``, as in care_plan and notifications."""

from __future__ import annotations

from services.common.consumer import EventHandlers

EVENT_HANDLERS: EventHandlers = {}
