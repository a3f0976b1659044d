"""The email sender against a real SMTP server (the dev sink, aiosmtpd): connections kept between messages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.notifications.channels import (
    SMTP_CHECKED_AFTER_SECONDS,
    SMTP_KEPT_SECONDS,
    DeliveryError,
    EmailSender,
    SmtpConnections,
)
from services.notifications.rendering import RenderedMessage
from services.notifications.settings import NotificationsSettings
from tools.dev.servers import free_port
from tools.dev.smtp_sink import SmtpSink

MESSAGE = RenderedMessage(subject="Your session schedule", body="See you on Monday.")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def relay() -> Iterator[SmtpSink]:
    with SmtpSink(free_port()) as sink:
        yield sink


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sender(relay: SmtpSink, clock: Clock) -> EmailSender:
    settings = NotificationsSettings(smtp_host="127.0.0.1", smtp_port=relay.port, smtp_timeout_seconds=5)
    return EmailSender(settings, SmtpConnections(settings, clock=clock))


async def test_messages_in_a_row_go_over_one_connection(relay: SmtpSink, sender: EmailSender) -> None:
    for n in range(3):
        await sender.send(f"n{n}", "pat@example.org", MESSAGE)
    assert [str(m["Message-ID"]) for m in relay.mailbox.messages] == ["<n0@stepwise>", "<n1@stepwise>", "<n2@stepwise>"]
    assert len(set(relay.mailbox.peers)) == 1
    await sender.close()


async def test_a_connection_after_a_pause_is_checked_and_after_a_long_one_replaced(
    relay: SmtpSink, sender: EmailSender, clock: Clock
) -> None:
    await sender.send("n1", "pat@example.org", MESSAGE)
    clock.now += SMTP_CHECKED_AFTER_SECONDS + 1  # asked NOOP first: it answers, and carries the message
    await sender.send("n2", "pat@example.org", MESSAGE)
    clock.now += SMTP_KEPT_SECONDS + 1  # closed, a new one made
    await sender.send("n3", "pat@example.org", MESSAGE)
    first, second, third = relay.mailbox.peers
    assert first == second != third
    await sender.close()


async def test_a_relay_that_restarted_between_two_messages_gets_the_second_over_a_new_connection(
    relay: SmtpSink, sender: EmailSender, clock: Clock
) -> None:
    await sender.send("n1", "pat@example.org", MESSAGE)
    relay.pause()
    relay.resume()
    clock.now += SMTP_CHECKED_AFTER_SECONDS + 1
    await sender.send("n2", "pat@example.org", MESSAGE)  # no error: the old connection is not used
    assert len(relay.mailbox.messages) == 2 and len(set(relay.mailbox.peers)) == 2
    await sender.close()


async def test_a_connection_whose_message_failed_is_not_used_again(relay: SmtpSink, sender: EmailSender) -> None:
    relay.mailbox.greylisted.add("later@example.org")
    await sender.send("n1", "pat@example.org", MESSAGE)
    with pytest.raises(DeliveryError) as refused:
        await sender.send("n2", "later@example.org", MESSAGE)
    assert (refused.value.permanent, refused.value.recipient_only) == (False, True)
    await sender.send("n3", "pat@example.org", MESSAGE)
    assert len(set(relay.mailbox.peers)) == 2
    await sender.close()


async def test_a_relay_that_is_down_is_a_transient_failure(relay: SmtpSink, sender: EmailSender) -> None:
    await sender.send("n1", "pat@example.org", MESSAGE)
    relay.pause()
    with pytest.raises(DeliveryError) as down:
        await sender.send("n2", "pat@example.org", MESSAGE)
    assert not down.value.permanent and "SMTP unavailable" in down.value.reason
    relay.resume()
    await sender.send("n3", "pat@example.org", MESSAGE)
    assert len(relay.mailbox.messages) == 2
    await sender.close()


async def test_closing_the_sender_ends_its_idle_connections(relay: SmtpSink, sender: EmailSender) -> None:
    await sender.send("n1", "pat@example.org", MESSAGE)
    connections = sender._connections
    [(smtp, _)] = connections._idle
    await sender.close()
    assert not smtp.is_connected and connections._idle == []
