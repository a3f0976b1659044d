"""A safety alert always reaches a person, on the real broker and store: notifications without a route to the care
team (or the on-call clinician) is not ready and says so; an immediate alert nobody acknowledges within
SAFETY_ACK_SECONDS pages the on-call clinician once, with two instances running the timer and across a crash,
and an acknowledgement that comes after is recorded."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tools.dev.devstack import ServiceProcess
from tools.dev.sms_sink import Text

from .conftest import (
    CARE_TEAM_EMAIL,
    CSSRS_HIGH,
    HTTP_TIMEOUT,
    IOP_DIMENSIONS,
    ON_CALL_PHONE,
    TOKENS,
    Episode,
    Stack,
    events_of,
    eventually,
    instance_beside,
    new_episode,
    notifications_replaced,
)
from .conftest import events as outcomes

PHQ9_ITEM9_SEVERE = [2, 2, 2, 2, 1, 1, 1, 1, 3]


def client(url: str, role: str = "clinician") -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {TOKENS[role]}"}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=HTTP_TIMEOUT)


@pytest.mark.parametrize(
    ("unset", "route", "named"),
    [
        (("CARE_TEAM_EMAIL", "CARE_TEAM_WEBHOOK_URL"), "care_team", "CARE_TEAM_EMAIL"),
        (("ON_CALL_PHONE", "ON_CALL_WEBHOOK_URL"), "on_call", "ON_CALL_PHONE"),
    ],
)
async def test_without_a_route_to_staff_notifications_is_not_ready_and_says_why(
    stack: Stack, tmp_path: Path, unset: tuple[str, ...], route: str, named: str
) -> None:
    log = tmp_path / "notifications.log"
    own = {
        "NOTIFICATIONS_DB": f"stepwise_notifications_unrouted_{uuid.uuid4().hex[:8]}",  # its own: it sends nothing
        "KAFKA_CONSUMERS_ENABLED": "0",
        "KAFKA_GROUP_INSTANCE_ID": "",
    }
    env = {name: "" for name in unset} | own
    with instance_beside(stack, "notifications", env, log, wait=False) as unready:

        async def answered_without_other_problems() -> dict[str, Any] | None:
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(base_url=unready.url, timeout=HTTP_TIMEOUT) as probe:
                    response = await probe.get("/health/ready")
                body: dict[str, Any] = response.json()
                if body["checks"].get("kafka") and body["checks"].get("mongodb"):
                    return {**body, "code": response.status_code}
            return None

        ready = await eventually(answered_without_other_problems, "notifications to answer, store and broker up")
        assert ready["code"] == 503 and ready["checks"][route] is False
        assert set(ready["problems"]) == {route}
        assert ready["problems"][route].startswith("misconfigured: no route") and named in ready["problems"][route]
        logged = [line for line in log.read_text().splitlines() if " ERROR " in line or '"level": "ERROR"' in line]
        assert any(f"configuration: {route} no route" in line for line in logged), logged


async def raise_immediate_alert(stack: Stack) -> tuple[Episode, str]:
    episode = await new_episode(stack)
    async with stack.http("intake", "clinician") as intake:
        response = await intake.post(
            f"/v1/episodes/{episode.episode_id}/assessments",
            json={"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": PHQ9_ITEM9_SEVERE, "cssrs": CSSRS_HIGH}},
        )
    assert response.status_code == 201, response.text
    alert = response.json()["safety_alert"]
    assert alert["level"] == "immediate"
    return episode, str(alert["alert_id"])


async def care_team_told(stack: Stack, episode: Episode) -> None:
    async def mailed() -> bool:
        return any(episode.episode_id in str(m["Subject"]) for m in stack.mailbox.to(CARE_TEAM_EMAIL))

    await eventually(mailed, "the care team's email")


def texts_paging(stack: Stack, alert_id: str) -> list[Text]:
    return [text for text in stack.texts.to(ON_CALL_PHONE) if alert_id in text.body]


def webhook_pages(stack: Stack, alert_id: str) -> list[dict[str, Any]]:
    bodies = [json.loads(body) for _, body in stack.webhooks.received]
    return [body for body in bodies if body.get("purpose") == "safety_escalation" and body["alert_id"] == alert_id]


async def alert_of(url: str, episode: Episode) -> dict[str, Any]:
    async with client(url) as notifications:
        response = await notifications.get("/v1/safety-alerts", params={"episode_id": episode.episode_id})
    assert response.status_code == 200, response.text
    [alert] = response.json()
    return alert  # type: ignore[no-any-return]


@contextlib.contextmanager
def timers_only(stack: Stack, env: dict[str, str], log: Path) -> Iterator[ServiceProcess]:
    """A second notifications instance that consumes nothing: it runs the dispatcher and the escalation timer."""
    timers = {"KAFKA_CONSUMERS_ENABLED": "0", "KAFKA_GROUP_INSTANCE_ID": ""}
    with instance_beside(stack, "notifications", env | timers, log) as second:
        yield second


async def test_an_unacknowledged_alert_pages_the_on_call_clinician_once_and_a_late_acknowledgement_counts(
    stack: Stack, tmp_path: Path
) -> None:
    short = {"SAFETY_ACK_SECONDS": "3"}
    with (
        notifications_replaced(stack, short, tmp_path / "n1.log") as first,
        timers_only(stack, short, tmp_path / "n2.log"),
    ):
        episode, alert_id = await raise_immediate_alert(stack)
        await care_team_told(stack, episode)

        [text] = await eventually(lambda: _found(texts_paging(stack, alert_id)), "the on-call page by SMS")
        assert "immediate" in text.body and episode.episode_id not in text.body
        assert all(value not in text.body for value in episode.pii.values())  # generic: never the patient
        [page] = await eventually(lambda: _found(webhook_pages(stack, alert_id)), "the on-call page by webhook")
        assert "episode_id" not in page and page["level"] == "immediate"
        [escalated] = await eventually(
            lambda: outcomes(stack, "iop.safety.alert_escalated", episode), "iop.safety.alert_escalated"
        )
        [raised] = await outcomes(stack, "iop.safety.alert_raised", episode)
        assert escalated.data.alert_id == alert_id
        assert (escalated.data.acknowledge_by - raised.data.raised_at).total_seconds() == pytest.approx(3, abs=0.01)
        assert escalated.data.escalated_at >= escalated.data.acknowledge_by
        kept = await alert_of(first.url, episode)
        assert kept["status"] == "open" and kept["escalated_at"] is not None

        async with client(first.url) as notifications:
            late = await notifications.post(f"/v1/safety-alerts/{alert_id}/acknowledge")
            again = await notifications.post(f"/v1/safety-alerts/{alert_id}/acknowledge")
        assert late.status_code == 200 and again.json() == late.json()
        assert late.json()["status"] == "acknowledged" and late.json()["escalated_at"] == kept["escalated_at"]
        assert late.json()["acknowledged_by"].startswith("token:")
        [acknowledged] = await eventually(
            lambda: outcomes(stack, "iop.safety.alert_acknowledged", episode), "iop.safety.alert_acknowledged"
        )
        assert acknowledged.data.alert_id == alert_id
        [record] = await events_of(stack, "iop.safety.alert_acknowledged", episode.episode_id)
        assert b"token" not in record.value and b"clinician" not in record.value  # never who

        # Two instances ran the timer all along: one escalation, one page per channel.
        assert len(await outcomes(stack, "iop.safety.alert_escalated", episode)) == 1
        assert len(texts_paging(stack, alert_id)) == 1 and len(webhook_pages(stack, alert_id)) == 1


async def test_the_escalation_timer_survives_a_crash(stack: Stack, tmp_path: Path) -> None:
    with notifications_replaced(stack, {"SAFETY_ACK_SECONDS": "8"}, tmp_path / "n.log") as instance:
        episode, alert_id = await raise_immediate_alert(stack)
        await care_team_told(stack, episode)
        assert (await alert_of(instance.url, episode))["escalated_at"] is None
        instance.kill()  # SIGKILL, long before the deadline: nothing in this process remembers the alert
        assert texts_paging(stack, alert_id) == []
        instance.start()
        await eventually(lambda: _found(texts_paging(stack, alert_id)), "the on-call page after the restart")
        [escalated] = await eventually(
            lambda: outcomes(stack, "iop.safety.alert_escalated", episode), "iop.safety.alert_escalated"
        )
        assert escalated.data.alert_id == alert_id
        assert (await alert_of(instance.url, episode))["escalated_at"] is not None


async def _found(items: list[Any]) -> list[Any] | None:
    return items or None
