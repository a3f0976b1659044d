"""Putting a set-aside event back (services/common/replay.py): through the service's own handler, once; each
outcome said with its reason, and who replayed it recorded and logged."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from services.common import replay as replaying
from services.common.auth import Principal, Role
from services.common.consumer import HANDLER_CONTEXT, EventRejected, Subscription
from services.common.replay import Replayed, replay, replay_entry
from stepwise_contract import CloudEvent, SessionMissed, new_event, to_kafka

NOW = datetime(2026, 12, 1, 20, 38, tzinfo=UTC)


class Context:
    def __init__(self, resources: Any) -> None:
        self.resources = resources

    def get(self, name: str) -> Any:
        assert name == HANDLER_CONTEXT
        return self.resources


def shelved(event: CloudEvent[Any], **more: Any) -> dict[str, Any]:
    """A set-aside record as the shelf stores it."""
    wire = to_kafka(event)
    return {"_id": f"{wire.topic}:2:42", "topic": wire.topic, "partition": 2, "offset": 42, "key": wire.key.decode(),
            "headers": {name: value.decode() for name, value in wire.headers}, "value": wire.value.decode(),
            "reason": "rejected: no_care_plan", "attempts": 1, "set_aside_at": NOW} | more  # fmt: skip


def missed() -> CloudEvent[SessionMissed]:
    data = SessionMissed(episode_id="e1", session_id="s001", starts_at=NOW, detected="reported", recorded_at=NOW,
                         consecutive_misses=1, total_misses=1)  # fmt: skip
    return new_event(data, source="/stepwise/care-plan")


class Handler:
    def __init__(self, refuse: str | None = None) -> None:
        self.applied: list[tuple[CloudEvent[Any], Any]] = []
        self.refuse = refuse

    async def __call__(self, event: CloudEvent[Any], resources: Any) -> None:
        if self.refuse:
            raise EventRejected(self.refuse)
        self.applied.append((event, resources))


def handlers(handler: Handler) -> dict[Any, Subscription]:
    return {SessionMissed: Subscription(handler, "a missed session")}


async def test_a_replayed_event_goes_through_its_handler_with_the_services_resources() -> None:
    event, handler = missed(), Handler()
    replayed = await replay(shelved(event), handlers(handler), Context("resources"))  # type: ignore[arg-type]
    assert replayed == Replayed("applied", "applied by the handler")
    assert handler.applied == [(event, "resources")]


async def test_an_event_applied_by_an_earlier_replay_is_not_applied_again() -> None:
    handler = Handler()
    record = shelved(missed(), replays=[{"outcome": "set_aside_again"}, {"outcome": "applied"}])
    replayed = await replay(record, handlers(handler), Context(None))  # type: ignore[arg-type]
    assert replayed == Replayed("already_applied", "replayed and applied before")
    assert handler.applied == []


async def test_an_event_still_rejected_is_set_aside_again_with_the_reason() -> None:
    handler = Handler(refuse="no_care_plan")
    record = shelved(missed(), replays=[{"outcome": "set_aside_again"}])
    replayed = await replay(record, handlers(handler), Context(None))  # type: ignore[arg-type]
    assert replayed == Replayed("set_aside_again", "rejected: no_care_plan")


async def test_an_event_of_a_topic_the_service_does_not_consume_is_set_aside_again() -> None:
    record = shelved(missed(), topic="iop.unknown.topic")
    replayed = await replay(record, handlers(Handler()), Context(None))  # type: ignore[arg-type]
    assert replayed == Replayed("set_aside_again", "rejected: this service has no handler for iop.unknown.topic")


async def test_a_malformed_event_is_set_aside_again_naming_the_field() -> None:
    record = shelved(missed())
    record["value"] = record["value"].replace('"session_id":"s001",', "")
    replayed = await replay(record, handlers(Handler()), Context(None))  # type: ignore[arg-type]
    assert replayed == Replayed("set_aside_again", "malformed: session_id: Field required")


@pytest.mark.parametrize(
    ("principal", "by"),
    [
        (Principal(Role.ADMIN, "tok123", subject="sub-9", username="ann"), "ann"),
        (Principal(Role.ADMIN, "tok123", subject="sub-9"), "sub-9"),
        (Principal(Role.ADMIN, "tok123"), None),
    ],
)
def test_a_replay_is_recorded_with_who_did_it_and_logged_without_it(
    principal: Principal, by: str | None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(replaying, "utc_now", lambda: NOW)
    caplog.set_level(logging.INFO, logger="services.common.replay")
    entry = replay_entry(Replayed("applied", "applied by the handler"), principal)
    assert entry == {"at": NOW, "role": "admin", "token_id": "tok123", "by": by, "outcome": "applied",
                     "detail": "applied by the handler"}  # fmt: skip
    assert [r.getMessage() for r in caplog.records] == ["set-aside event replayed by tok123 (admin): applied"]
