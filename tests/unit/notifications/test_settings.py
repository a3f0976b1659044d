"""notifications' settings that differ from every service's."""

from __future__ import annotations

from services.common.settings import ServiceSettings
from services.notifications.settings import NotificationsSettings


def test_the_relay_batches_the_removals_of_a_quarter_second() -> None:
    """Issue 31: each message sent queues its iop.notification.sent, whose removal from the outbox after the publish
    is a round trip; notifications waits longer than the other services for others to join it."""
    assert NotificationsSettings().outbox_removal_linger_seconds == 0.25
    assert ServiceSettings.model_fields["outbox_removal_linger_seconds"].default == 0.05
