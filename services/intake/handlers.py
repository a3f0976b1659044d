"""Events intake consumes: what happens on each is one function, listed in ``EVENT_HANDLERS``.

Intake is where an episode's facts are first recorded; it hears back only how the episode ended: a graduation
or a discharge in care_plan closes the episode here (``changes.close_episode``), so it takes no new assessment,
drug screen or consent. Closing is idempotent, so a redelivery changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from services.common.consumer import EventHandlers, EventRejected, Subscription
from stepwise_contract import CloudEvent, EpisodeDischarged, EpisodeGraduated

from . import changes
from .domain.model import EpisodeEnd, EpisodeError
from .store import IntakeStore


async def on_episode_graduated(event: CloudEvent[EpisodeGraduated], store: IntakeStore) -> None:
    await _close(store, event.subject, "graduated", event.data.graduated_at)


async def on_episode_discharged(event: CloudEvent[EpisodeDischarged], store: IntakeStore) -> None:
    await _close(store, event.subject, "discharged", event.data.discharged_at)


async def _close(store: IntakeStore, episode_id: str, ended: EpisodeEnd, at: datetime) -> None:
    try:
        await changes.close_episode(store, episode_id, ended, at)
    except EpisodeError as error:  # no such episode, or the store refused the write: not an outage
        raise EventRejected(str(error)) from None


EVENT_HANDLERS: EventHandlers = {
    EpisodeGraduated: Subscription(
        on_episode_graduated, "A graduation closes the episode: no new assessment, drug screen or consent."
    ),
    EpisodeDischarged: Subscription(
        on_episode_discharged, "A discharge closes the episode: no new assessment, drug screen or consent."
    ),
}
