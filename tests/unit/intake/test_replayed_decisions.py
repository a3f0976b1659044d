"""intake's domain is pure: an episode's decisions made again on the same inputs give the same episode and
events, ids and all.

Ids come from what identifies the thing (the episode, which of its records, the moment), never from chance,
so a retried or replayed decision names the same assessment, alert, consent and screen.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.domain.episode import (
    AssessmentRequest,
    ConsentTerms,
    Decision,
    assess,
    grant_consent,
    open_episode,
    record_drug_screen,
)
from services.intake.domain.instruments import CssrsAnswers, score_cssrs, score_phq9
from services.intake.domain.measures import load_measures_policy
from services.intake.domain.model import Episode, Recipient
from services.intake.domain.placement import load_placement_policy
from stepwise_contract import (
    DimensionRatings,
    EventData,
    InstrumentResult,
    ScreenResult,
)

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
PLACEMENT = load_placement_policy()
MEASURES = load_measures_policy()

# --- intake: an episode's decisions ---------------------------------------------------------------

Step = Callable[[Episode, datetime], Decision[object]]
RATING = st.integers(0, 4)
RESULTS = st.sampled_from(
    [
        [score_phq9([1, 1, 1, 1, 1, 0, 0, 0, 0])],
        [score_phq9([1, 2, 1, 2, 1, 1, 2, 1, 1])],  # item 9: a same-day alert
        [score_cssrs(CssrsAnswers(q1=True, q2=True, q3=True, q4=True, q5=False, q6=False))],  # an immediate alert
    ]
)


def assessing(dimensions: DimensionRatings, results: list[InstrumentResult]) -> Step:
    request = AssessmentRequest(dimensions=dimensions, results=results)
    return lambda episode, now: assess(episode, request, PLACEMENT, now, MEASURES)


def screening(positive: bool) -> Step:
    results = [ScreenResult(substance="opiates", result="positive" if positive else "negative")]
    return lambda episode, now: record_drug_screen(episode, now, results, "staff", now)


def consenting(scope: Literal["attendance", "appointments"]) -> Step:
    terms = ConsentTerms("family", Recipient(name="Sam", email="sam@example.org"), [scope])
    return lambda episode, now: grant_consent(episode, terms, now)


STEP = st.one_of(
    st.builds(
        assessing,
        st.builds(
            DimensionRatings,
            withdrawal=RATING,
            biomedical=RATING,
            emotional=RATING,
            readiness=RATING,
            relapse=RATING,
            environment=RATING,
        ),
        RESULTS,
    ),
    st.builds(screening, st.booleans()),
    st.builds(consenting, st.sampled_from(["attendance", "appointments"])),
)


def decide_all(steps: list[tuple[Step, int]]) -> tuple[Episode, list[EventData]]:
    episode = open_episode("patient-1", "adult", NOW)
    events: list[EventData] = []
    for step, minutes in steps:
        episode, produced, _ = step(episode, NOW + timedelta(minutes=minutes))
        events.extend(produced)
    return episode, events


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(STEP, st.integers(0, 60 * 24 * 30)), min_size=1, max_size=8))
def test_an_episodes_decisions_made_again_give_the_same_episode_and_events(steps: list[tuple[Step, int]]) -> None:
    episode, events = decide_all(steps)
    assert decide_all(steps) == (episode, events)
    ids = [
        *(a.assessment_id for a in episode.assessments),
        *(a.safety_alert.alert_id for a in episode.assessments if a.safety_alert),
        *(s.screen_id for s in episode.drug_screens),
        *(c.consent_id for c in episode.consents),
        episode.episode_id,
    ]
    assert len(set(ids)) == len(ids), "each record has its own id"


# --- care_plan: a review's recommendation ---------------------------------------------------------
