"""The dispatcher on fakes that record what it asks of the store, intake, the channels and readiness: each way a
message ends (sent, waiting for the end of quiet hours, cancelled, waiting on a dependency, retried, failed for
good), what it sends where, and how the lanes claim, probe and sweep."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from services.common.dependencies import Dependencies, DependencyDown
from services.common.priority import URGENT_FIRST
from services.notifications import dispatcher as dispatching
from services.notifications.channels import Contact, DeliveryError
from services.notifications.dispatcher import (
    CHANNELS,
    PROBE_EVERY,
    UNCONFIGURED_SWEEP,
    Dispatcher,
    Lane,
    QuietHours,
    Senders,
    StillWanted,
)
from services.notifications.domain.delivery import Notification, RetryBudget, failed, sent
from services.notifications.domain.opt_outs import recipient_key
from services.notifications.domain.safety import ESCALATION, StaffRoutes

NOW = datetime(2026, 12, 1, 20, 38, tzinfo=UTC)
"""15:38 in New York: outside the quiet hours below."""
QUIET = QuietHours(time(21, 0), time(8, 0), "America/New_York")
LEASE = timedelta(seconds=30)


def message(**fields: Any) -> Notification:
    base: dict[str, Any] = {
        "notification_id": "n1", "episode_id": "e1", "purpose": "welcome", "recipient_kind": "patient",
        "channel": "email", "context": {"level": "IOP"}, "status": "pending", "attempts": 1, "created_at": NOW,
        "sent_at": None, "last_error": None, "cause_event_type": "iop.care_level.assigned", "due_at": NOW,
    }  # fmt: skip
    return Notification(**(base | fields))


class Store:
    """The delivery log: hands out ``due`` messages and records every call."""

    def __init__(self, *due: Notification) -> None:
        self.due = list(due)
        self.calls: list[tuple[Any, ...]] = []
        self.mark_sent_failures: list[Exception] = []
        self.retry_now_answer = True

    async def claim_due(self, lease: timedelta, *, channel: str, urgent: bool) -> Notification | None:
        self.calls.append(("claim_due", lease, channel, urgent))
        found = next((n for n in self.due if n.channel == channel and n.urgent == urgent), None)
        if found is not None:
            self.due.remove(found)
        return found

    async def defer(self, notification_id: str, until: datetime, reason: str | None = None) -> None:
        self.calls.append(("defer", notification_id, until, reason))

    async def mark_cancelled(self, notification_id: str, reason: str) -> None:
        self.calls.append(("mark_cancelled", notification_id, reason))

    async def mark_failed(self, notification: Notification, reason: str, event: Any) -> None:
        self.calls.append(("mark_failed", notification.notification_id, reason, event))

    async def retry_later(self, notification_id: str, delay: timedelta, reason: str) -> None:
        self.calls.append(("retry_later", notification_id, delay, reason))

    async def mark_sent(self, notification: Notification, event: Any) -> None:
        if self.mark_sent_failures:
            raise self.mark_sent_failures.pop(0)
        self.calls.append(("mark_sent", notification.notification_id, event))

    async def extend_lease(self, notification_id: str, lease: timedelta) -> None:
        self.calls.append(("extend_lease", notification_id, lease))
        raise AutoReconnect("still down")  # the lease cannot be extended either: the send is recorded anyway

    async def retry_now(self, channel: str) -> bool:
        self.calls.append(("retry_now", channel))
        return self.retry_now_answer

    async def probe(self, channel: str) -> None:
        self.calls.append(("probe", channel))


class Contacts:
    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []
        self.down: DependencyDown | None = None
        self.closed = False
        self.support_zone = "America/Los_Angeles"

    async def patient_contact(self, episode_id: str) -> Contact:
        self.asked.append(("patient", episode_id))
        if self.down:
            raise self.down
        return Contact(email="alex@example.org", phone="+12025550100", timezone=None)

    async def consented_contact(self, episode_id: str, consent_id: str) -> Contact:
        self.asked.append(("consented", episode_id, consent_id))
        return Contact(email="sam@example.org", phone="+12025550111", timezone=self.support_zone)

    async def close(self) -> None:
        self.closed = True


class Channel:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.failures: list[Exception] = []
        self.closed = False

    async def send(self, *what: Any) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(what)

    async def close(self) -> None:
        self.closed = True


class Templates:
    def render(self, purpose: str, channel: str, context: dict[str, Any]) -> str:
        return f"{purpose}.{channel}: {sorted(context.items())}"


@dataclasses.dataclass
class Schedules:
    current: bool = True

    async def is_current(self, episode_id: str, series: str) -> bool:
        assert (episode_id, series) == ("e1", "2026-11-30")
        return self.current


@dataclasses.dataclass
class Enrolment:
    status: str


@dataclasses.dataclass
class Alumni:
    enrolment: Enrolment | None = None

    async def get(self, episode_id: str) -> Enrolment | None:
        assert episode_id == "e1"
        return self.enrolment


@dataclasses.dataclass
class OptOuts:
    keys: set[str] = dataclasses.field(default_factory=set)
    asked: list[str] = dataclasses.field(default_factory=list)

    def number_key(self, number: str) -> str:
        return f"number:{number}"

    async def has(self, key: str) -> bool:
        self.asked.append(key)
        return key in self.keys


STAFF = StaffRoutes(care_team_email="team@clinic.test", care_team_webhook_url="https://hooks.test/team",
                    on_call_phone="+12025550188", on_call_webhook_url=None, sms=True)  # fmt: skip


class Parts:
    def __init__(self, *due: Notification, staff: StaffRoutes = STAFF, concurrency: int = 8) -> None:
        self.store = Store(*due)
        self.contacts = Contacts()
        self.email, self.sms, self.webhook = Channel(), Channel(), Channel()
        self.schedules, self.alumni, self.opt_outs = Schedules(), Alumni(), OptOuts()
        self.dependencies = Dependencies()
        self.dispatcher = Dispatcher(
            self.store, self.contacts, Senders(self.email, self.sms, self.webhook), Templates(), staff, QUIET,  # type: ignore[arg-type]
            StillWanted(self.schedules, self.alumni, self.opt_outs),  # type: ignore[arg-type]
            poll_seconds=30, lease_seconds=LEASE.total_seconds(), retries=RetryBudget(), dependencies=self.dependencies,
            concurrency=concurrency,
        )  # fmt: skip

    def effects(self) -> list[tuple[Any, ...]]:
        return [call for call in self.store.calls if call[0] != "claim_due"]


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatching, "utc_now", lambda: NOW)


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "services.notifications.dispatcher"]


@pytest.fixture(autouse=True)
def logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="services.notifications.dispatcher")


# How a message ends


async def test_a_message_is_rendered_sent_to_the_patient_and_recorded(caplog: pytest.LogCaptureFixture) -> None:
    parts = Parts(message())
    assert await parts.dispatcher.work_once() == 1
    context = [("episode_id", "e1"), ("level", "IOP")]
    assert parts.email.sent == [("n1", "alex@example.org", f"welcome.email: {context}")]
    assert parts.contacts.asked == [("patient", "e1")]
    assert parts.effects() == [("mark_sent", "n1", sent(message(), NOW))]
    assert logged(caplog) == [(logging.INFO, "notification n1 sent (welcome, email)")]


async def test_a_channel_that_works_again_releases_what_waits_on_it(caplog: pytest.LogCaptureFixture) -> None:
    parts = Parts(message(), message(notification_id="n2"))
    parts.dependencies.failed(DependencyDown("smtp", "connection refused"))
    await parts.dispatcher.work_once()
    assert parts.effects() == [("probe", "email"), ("mark_sent", "n1", sent(message(), NOW)), ("retry_now", "email"),
                               ("mark_sent", "n2", sent(message(notification_id="n2"), NOW))]  # fmt: skip
    assert "smtp" not in parts.dependencies.problems()
    assert (logging.INFO, "email works again: the messages waiting on it go now") in logged(caplog)
    parts = Parts(message())
    parts.dependencies.failed(DependencyDown("smtp", "connection refused"))
    parts.store.retry_now_answer = False  # nothing waited on it
    await parts.dispatcher.work_once()
    assert not any("works again" in line for _, line in logged(caplog)[3:])


async def test_in_quiet_hours_a_message_waits_for_their_end_in_the_recipients_zone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    early = datetime(2026, 12, 2, 12, 31, tzinfo=UTC)  # 07:31 in New York, 13:31 in Berlin
    monkeypatch.setattr(dispatching, "utc_now", lambda: early)
    parts = Parts(message(), message(notification_id="n2", recipient_kind="family", consent_id="c1"))
    parts.contacts.support_zone = "Europe/Berlin"
    await parts.dispatcher.work_once()
    assert parts.effects()[0] == ("defer", "n1", datetime(2026, 12, 2, 13, 0, tzinfo=UTC), None)
    assert [sent[:2] for sent in parts.email.sent] == [("n2", "sam@example.org")]  # Berlin: the afternoon
    assert logged(caplog)[0] == (logging.INFO, "notification n1 waits for the end of quiet hours")
    urgent = Parts(message(urgent=True, recipient_kind="care_team", purpose="safety_alert"))
    await urgent.dispatcher.work_once()
    assert [sent[:2] for sent in urgent.email.sent] == [("n1", "team@clinic.test")]


@pytest.mark.parametrize(
    ("fields", "wanted", "reason"),
    [
        ({"expires_at": NOW}, {}, "too late: its moment has passed"),
        ({"series_kind": "sessions", "series": "2026-11-30"}, {"current": False},
         "the session calendar changed or the episode ended"),
        ({"recipient_kind": "alumni", "consent_id": "c9"}, {"enrolment": None}, "the alumni enrolment has ended"),
        ({"recipient_kind": "alumni", "consent_id": "c9"}, {"enrolment": Enrolment("left")},
         "the alumni enrolment has ended"),
        ({"recipient_kind": "family", "consent_id": "c1"}, {"opted_out": recipient_key("e1", "family", "c1")},
         "the recipient opted out"),
        ({"channel": "sms"}, {"opted_out": "number:+12025550100"}, "the number replied STOP"),
    ],
)  # fmt: skip
async def test_a_message_no_longer_wanted_is_cancelled_saying_why(
    fields: dict[str, Any], wanted: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    parts = Parts(message(**fields))
    parts.schedules.current = wanted.get("current", True)
    parts.alumni.enrolment = wanted.get("enrolment", Enrolment("enrolled"))
    parts.opt_outs.keys = {wanted["opted_out"]} if "opted_out" in wanted else set()
    await parts.dispatcher.work_once()
    assert parts.effects() == [("mark_cancelled", "n1", reason)]
    assert logged(caplog) == [(logging.INFO, f"notification n1 cancelled: {reason}")]
    assert (parts.email.sent, parts.sms.sent) == ([], [])


async def test_what_is_still_wanted_is_sent(caplog: pytest.LogCaptureFixture) -> None:
    """A moment not yet passed, a current calendar, an enrolled alumnus, a support who did not opt out."""
    later = NOW + timedelta(microseconds=1)
    parts = Parts(
        message(expires_at=later, series_kind="sessions", series="2026-11-30"),
        message(notification_id="n2", recipient_kind="alumni", consent_id="c9", channel="sms"),
        message(notification_id="n3", recipient_kind="family", consent_id="c1"),
    )
    parts.alumni.enrolment = Enrolment("enrolled")
    parts.opt_outs.keys = {recipient_key("e1", "family", "c2"), "number:+12025550100"}  # others opted out
    await parts.dispatcher.work_once()
    assert sorted(sent[0] for sent in parts.email.sent + parts.sms.sent) == ["n1", "n2", "n3"]
    assert parts.contacts.asked == [("patient", "e1"), ("consented", "e1", "c1"), ("consented", "e1", "c9")]
    assert recipient_key("e1", "alumni", "c9") in parts.opt_outs.asked


async def test_urgent_and_care_team_messages_are_not_held_by_opt_outs() -> None:
    parts = Parts(message(urgent=True, channel="sms"), message(notification_id="n2", recipient_kind="care_team"))
    parts.opt_outs.keys = {recipient_key("e1", "patient", None), recipient_key("e1", "care_team", None),
                           "number:+12025550100"}  # fmt: skip
    await parts.dispatcher.work_once()
    assert [sent[:2] for sent in parts.sms.sent] == [("n1", "+12025550100")]
    assert [sent[:2] for sent in parts.email.sent] == [("n2", "team@clinic.test")]
    assert parts.opt_outs.asked == []


async def test_a_dependency_down_makes_the_message_wait_and_readiness_say_so(caplog: pytest.LogCaptureFixture) -> None:
    parts = Parts(message())
    parts.contacts.down = DependencyDown("intake", "answered 503")
    await parts.dispatcher.work_once()
    assert parts.effects() == [("defer", "n1", NOW + timedelta(seconds=5), "waiting: intake: answered 503")]
    assert parts.dependencies.problems()["intake"].detail == "answered 503"
    assert logged(caplog) == []


async def test_a_permanent_refusal_fails_the_message_for_good(caplog: pytest.LogCaptureFixture) -> None:
    parts = Parts(message())
    parts.email.failures = [DeliveryError("550 no such mailbox", permanent=True)]
    await parts.dispatcher.work_once()
    assert parts.effects() == [("mark_failed", "n1", "550 no such mailbox", failed(message(), NOW, True))]
    assert logged(caplog) == [(logging.WARNING, "notification n1 failed for good: 550 no such mailbox")]
    assert parts.dependencies.problems() == {}


async def test_a_transient_failure_is_retried_and_marks_the_channel_down(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(random, "random", lambda: 1.0)
    parts = Parts(message(attempts=2))
    parts.email.failures = [DeliveryError("SMTP unavailable", permanent=False)]
    await parts.dispatcher.work_once()
    assert parts.effects() == [("retry_later", "n1", timedelta(seconds=2), "SMTP unavailable")]  # 0.5 x 2^2, jitter 1
    assert parts.dependencies.problems()["smtp"].detail == "SMTP unavailable"
    assert logged(caplog) == [(logging.INFO, "notification n1 will be retried: SMTP unavailable")]


async def test_a_recipient_refused_for_now_waits_alone() -> None:
    parts = Parts(message(attempts=1))
    parts.email.failures = [DeliveryError("450 greylisted", permanent=False, recipient_only=True)]
    await parts.dispatcher.work_once()
    [(kind, _, delay, reason)] = parts.effects()
    assert (kind, reason) == ("retry_later", "450 greylisted") and delay > timedelta(0)
    assert parts.dependencies.problems() == {}


async def test_a_message_whose_retry_budget_is_spent_fails_as_retries_exhausted() -> None:
    parts = Parts(message(due_at=NOW - timedelta(hours=72)))
    parts.email.failures = [DeliveryError("SMTP unavailable", permanent=False)]
    await parts.dispatcher.work_once()
    due = message(due_at=NOW - timedelta(hours=72))
    assert parts.effects() == [("mark_failed", "n1", "SMTP unavailable", failed(due, NOW, False))]


async def test_a_send_the_store_will_not_record_yet_is_recorded_with_growing_waits(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    parts = Parts(message())
    parts.store.mark_sent_failures = [AutoReconnect("down")] * 7
    await parts.dispatcher.work_once()
    assert waits == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert parts.effects() == [("extend_lease", "n1", LEASE)] * 7 + [("mark_sent", "n1", sent(message(), NOW))]
    assert logged(caplog)[0] == (logging.WARNING, "notification n1 was sent; recording it failed (AutoReconnect), "
                                                  "trying again")  # fmt: skip
    assert len(parts.email.sent) == 1


# Staff messages


async def test_a_care_team_webhook_carries_the_episode_and_an_escalation_does_not() -> None:
    routes = dataclasses.replace(STAFF, on_call_webhook_url="https://hooks.test/on-call")
    parts = Parts(message(recipient_kind="care_team", channel="webhook", urgent=True, context={"alert_id": "a1"}),
                  message(notification_id="n2", recipient_kind="care_team", channel="webhook", urgent=True,
                          purpose=ESCALATION, context={"alert_id": "a1"}), staff=routes)  # fmt: skip
    await parts.dispatcher.work_once()
    assert parts.webhook.sent == [
        ("n1", "https://hooks.test/team", {"notification_id": "n1", "purpose": "welcome", "episode_id": "e1",
                                           "alert_id": "a1"}),
        ("n2", "https://hooks.test/on-call", {"notification_id": "n2", "purpose": ESCALATION, "alert_id": "a1"}),
    ]  # fmt: skip
    assert parts.contacts.asked == []


async def test_a_staff_route_without_an_address_waits_as_misconfigured_and_a_channel_it_lacks_fails() -> None:
    nobody = StaffRoutes(care_team_email=None, care_team_webhook_url=None)
    parts = Parts(message(recipient_kind="care_team", urgent=True), staff=nobody)
    await parts.dispatcher.work_once()
    [(kind, notification_id, until, reason)] = parts.effects()
    assert (kind, notification_id, until) == ("defer", "n1", NOW + timedelta(seconds=5))
    assert reason == f"waiting: care_team: {nobody.problems()['care_team']}"
    assert parts.dependencies.problems()["care_team"].kind == "misconfigured"
    parts = Parts(message(recipient_kind="care_team", channel="sms", urgent=True))
    await parts.dispatcher.work_once()
    assert parts.effects() == [
        (
            "mark_failed",
            "n1",
            "no care-team sms configured",
            failed(message(recipient_kind="care_team", channel="sms", urgent=True), NOW, True),
        )
    ]


# The lanes


async def test_each_lane_claims_its_own_messages_on_every_channel_with_the_lease() -> None:
    parts = Parts(message(urgent=True, recipient_kind="care_team"), message(notification_id="n2", channel="sms"))
    assert await parts.dispatcher.work_once() == 2
    claims = Counter(call[1:] for call in parts.store.calls if call[0] == "claim_due")
    each = Counter((LEASE, channel, urgent) for channel in CHANNELS for urgent in (True, False))
    assert claims == each + Counter([(LEASE, "email", True), (LEASE, "sms", False)])  # until none is left
    assert [lane.urgent for lane in parts.dispatcher.lanes] == [True, False]
    assert all(lane.poll_seconds == 5.0 for lane in parts.dispatcher.lanes)  # never longer than a probe's wait


async def test_a_lane_sends_at_most_its_concurrency_at_once_and_fails_the_pass_after_the_others_are_done() -> None:
    in_flight, most, done = 0, 0, []
    refused = RuntimeError("refused")

    async def deliver(notification: Notification) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        if notification.notification_id == "m0":
            raise refused
        done.append(notification.notification_id)

    due = [message(notification_id=f"m{n}") for n in range(7)]

    async def claim(channel: str, urgent: bool) -> Notification | None:
        return due.pop(0) if channel == "email" and due else None

    lane = Lane(False, claim, deliver, concurrency=3, poll_seconds=1, configured=("email",))
    with pytest.raises(RuntimeError) as raised:
        await lane.work_once()
    assert raised.value is refused and most == 3 and sorted(done) == [f"m{n}" for n in range(1, 7)]
    due[:] = [message(notification_id="m9")]
    assert await lane.work_once() == 1


async def test_channels_not_configured_are_looked_at_once_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    async def claim(channel: str, urgent: bool) -> Notification | None:
        asked.append(channel)
        return None

    async def deliver(_notification: Notification) -> None:
        raise AssertionError("nothing is due")

    clock = [1000.0]
    monkeypatch.setattr(dispatching, "wall_clock", lambda: datetime.fromtimestamp(clock[0], UTC))
    lane = Lane(True, claim, deliver, concurrency=2, poll_seconds=1, configured=("email",))
    for advance in (0.0, 1.0, UNCONFIGURED_SWEEP.total_seconds() - 1.0, 0.0):
        clock[0] += advance
        assert await lane.work_once() == 0
    assert asked == ["email", "sms", "webhook", "email", "email", "sms", "webhook", "email"]  # again at 60 s


async def test_a_channel_that_is_down_is_probed_once_per_wait_by_the_urgent_lane(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(dispatching, "wall_clock", lambda: datetime.fromtimestamp(clock[0], UTC))
    parts = Parts()
    parts.dependencies.failed(DependencyDown("sms_provider", "503"))
    parts.dependencies.failed(DependencyDown("care_team_webhook", "401", misconfigured=True))  # not down: no probe
    for advance in (0.0, PROBE_EVERY.total_seconds() - 0.1, 0.1):
        clock[0] += advance
        await parts.dispatcher.work_once()
    assert parts.effects() == [("probe", "sms"), ("probe", "sms")]


async def test_waking_the_dispatcher_wakes_the_lane_of_the_new_messages() -> None:
    parts = Parts()
    urgent, routine = parts.dispatcher.lanes
    parts.dispatcher.wake(True)
    assert (urgent._wakeup.is_set(), routine._wakeup.is_set()) == (True, False)
    urgent._wakeup.clear()
    parts.dispatcher.wake(False)
    assert (urgent._wakeup.is_set(), routine._wakeup.is_set()) == (False, True)
    routine._wakeup.clear()
    parts.dispatcher.wake()
    assert (urgent._wakeup.is_set(), routine._wakeup.is_set()) == (True, True)


async def test_a_stopped_dispatcher_closes_its_intake_client_and_channels() -> None:
    parts = Parts()
    running = asyncio.create_task(parts.dispatcher.run())
    await asyncio.sleep(0)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert (parts.contacts.closed, parts.sms.closed, parts.webhook.closed) == (True, True, True)


def test_a_deferral_says_until_when() -> None:
    assert str(dispatching.Deferred(NOW)) == "deferred until 2026-12-01T20:38:00+00:00"


async def test_both_lanes_look_only_at_the_configured_channels_between_sweeps() -> None:
    parts = Parts()
    parts.dispatcher = Dispatcher(
        parts.store, parts.contacts, Senders(parts.email, parts.sms, parts.webhook), Templates(), STAFF, QUIET,  # type: ignore[arg-type]
        StillWanted(parts.schedules, parts.alumni, parts.opt_outs),  # type: ignore[arg-type]
        poll_seconds=30, lease_seconds=30, retries=RetryBudget(), dependencies=parts.dependencies,
        configured=("email",),
    )  # fmt: skip
    await parts.dispatcher.work_once()  # the first pass sweeps every channel
    parts.store.calls.clear()
    await parts.dispatcher.work_once()
    claims = Counter(call[2:] for call in parts.store.calls if call[0] == "claim_due")
    assert claims == {("email", True): 1, ("email", False): 1}


async def test_the_urgent_lane_holds_routine_work_back_while_it_sends() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    due = [message(urgent=True, recipient_kind="care_team")]

    async def claim(channel: str, urgent: bool) -> Notification | None:
        return due.pop() if due and channel == "email" else None

    async def deliver(_notification: Notification) -> None:
        started.set()
        await release.wait()

    sending = asyncio.create_task(Lane(True, claim, deliver, concurrency=2, poll_seconds=1).work_once())
    await started.wait()
    routine = asyncio.create_task(URGENT_FIRST.routine_turn())
    await asyncio.sleep(0.1)  # far less than the longest pause (2 s)
    assert not routine.done()
    release.set()
    assert await sending == 1
    await asyncio.wait_for(routine, 1)
