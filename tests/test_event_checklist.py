"""The "Adding an event" checklist (docs/development.md), step by step, wherever a step can be checked.

A new event that is forgotten in one of the places it must be named fails here, with the step to do.
(The AsyncAPI documents are checked by test_asyncapi.py; templates for every message the policy plans
are checked at start-up by ``load_checked_policy``, and by tests/unit/notifications/test_policy.py.)
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import stepwise_contract
from services.authorizations import app as authorizations
from services.authorizations.handlers import EVENT_HANDLERS as AUTHORIZATIONS_HANDLERS
from services.care_plan import app as care_plan
from services.care_plan.handlers import EVENT_HANDLERS as CARE_PLAN_HANDLERS
from services.intake import app as intake
from services.intake.handlers import EVENT_HANDLERS as INTAKE_HANDLERS
from services.notifications import app as notifications
from services.notifications.domain.messages import MESSAGE_EVENTS
from services.notifications.domain.policy import DEFAULT_POLICY_FILE, load_policy
from services.notifications.handlers import EVENT_HANDLERS as NOTIFICATIONS_HANDLERS
from stepwise_contract import COMMAND_TYPES, EVENT_TYPES, EventData, events

ROOT = Path(__file__).resolve().parent.parent
ALL_TYPES = EVENT_TYPES | COMMAND_TYPES
PUBLISHERS = {"intake": intake.PUBLISHES, "care_plan": care_plan.PUBLISHES, "notifications": notifications.PUBLISHES,
              "authorizations": authorizations.PUBLISHES}  # fmt: skip
CONSUMERS = {"intake": INTAKE_HANDLERS, "care_plan": CARE_PLAN_HANDLERS, "notifications": NOTIFICATIONS_HANDLERS,
             "authorizations": AUTHORIZATIONS_HANDLERS}  # fmt: skip


def _documented(path: Path) -> set[str]:
    return set(re.findall(r"`(iop\.[a-z_.]+)`", path.read_text()))


def test_1_every_schema_with_a_type_is_in_event_types_or_command_types() -> None:
    declared = {
        model.event_type
        for _, model in inspect.getmembers(events, inspect.isclass)
        if issubclass(model, EventData) and isinstance(getattr(model, "event_type", None), str)
    }
    assert declared - set(ALL_TYPES) == set(), "add the new event to EVENT_TYPES (or COMMAND_TYPES) in events.py"


def test_2_every_event_is_exported_by_the_contract_package() -> None:
    missing = {model.__name__ for model in ALL_TYPES.values()} - set(stepwise_contract.__all__)
    assert not missing, f"export {sorted(missing)} from stepwise_contract/__init__.py (and its __all__)"


def test_3_every_event_has_exactly_one_publishing_service() -> None:
    published = [model.event_type for models in PUBLISHERS.values() for model in models]
    assert sorted(published) == sorted(EVENT_TYPES), (
        "list the event once, under its producer in PUBLISHED_BY (shared/stepwise_contract/events.py)"
    )


def test_4_every_consumed_event_is_published_or_a_command() -> None:
    for service, handlers in CONSUMERS.items():
        unknown = {model.event_type for model in handlers} - set(ALL_TYPES)
        assert not unknown, f"{service} subscribes to {unknown}, which nothing publishes"


def test_5_every_message_event_is_subscribed_by_notifications() -> None:
    subscribed = {model.event_type for model in NOTIFICATIONS_HANDLERS}
    unheard = set(MESSAGE_EVENTS) - subscribed
    assert not unheard, f"notifications has message contexts for {unheard} but no handler in EVENT_HANDLERS"


def test_6_every_message_event_has_a_rule_in_the_default_policy() -> None:
    policy = load_policy(DEFAULT_POLICY_FILE, frozenset(MESSAGE_EVENTS))
    silent = set(MESSAGE_EVENTS) - set(policy.events)
    assert not silent, f"give {sorted(silent)} a rule (and its templates) in {DEFAULT_POLICY_FILE.name}"


def test_7_the_contract_readme_lists_every_event() -> None:
    assert _documented(ROOT / "shared" / "README.md") == set(ALL_TYPES), "list the event in shared/README.md"


def test_8_the_events_doc_table_lists_every_event() -> None:
    readme = (ROOT / "docs" / "events.md").read_text()
    table = readme[readme.index("## Topics") : readme.index("## Words events use")]
    assert set(re.findall(r"`(iop\.[a-z_.]+)`", table)) == set(ALL_TYPES), "add the event to docs/events.md, Topics"
