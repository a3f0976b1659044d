"""Generate the AsyncAPI 3.0 documents of the services' Kafka channels from the code.

`make asyncapi` writes docs/asyncapi/<service>.yaml; the test suite fails when they drift.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from services.authorizations import app as authorizations
from services.authorizations.settings import AuthorizationsSettings
from services.care_plan import app as care_plan
from services.care_plan.settings import CarePlanSettings
from services.intake import app as intake
from services.intake.settings import IntakeSettings
from services.notifications import app as notifications
from services.notifications.settings import NotificationsSettings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "asyncapi"
VERSION = "1.0.0"


def brokers() -> dict[str, tuple[str, KafkaBroker]]:
    # Pinned settings, so the documents do not depend on the local environment.
    server, instance = "kafka:9092", "docs"
    intake_settings = IntakeSettings(kafka_bootstrap_servers=server, kafka_group_instance_id=instance)
    care_plan_settings = CarePlanSettings(kafka_bootstrap_servers=server, kafka_group_instance_id=instance)
    notifications_settings = NotificationsSettings(kafka_bootstrap_servers=server, kafka_group_instance_id=instance)
    ur_settings = AuthorizationsSettings(kafka_bootstrap_servers=server, kafka_group_instance_id=instance)
    return {
        "intake": ("Publishes assessment outcomes.", intake.create_broker(intake_settings).documented(server)),
        "care_plan": (
            "Consumes assessments; publishes care-level and attendance events.",
            care_plan.create_broker(care_plan_settings).documented(server),
        ),
        "notifications": (
            "Consumes care events, messages patients, publishes delivery outcomes.",
            notifications.create_broker(notifications_settings).documented(server),
        ),
        "authorizations": (
            "Consumes services, days and calendars; publishes authorizations' draw-down, reviews due, units low, "
            "exhaustion, unauthorized services, level mismatches and certifications due.",
            authorizations.create_broker(ur_settings).documented(server),
        ),
    }


def render_all() -> dict[str, str]:
    documents = {}
    for name, (description, broker) in brokers().items():
        specification = AsyncAPI(
            broker,
            title=f"Stepwise {name.replace('_', ' ')}",
            version=VERSION,
            description=(
                f"{description} Events are CloudEvents 1.0 in Kafka binary mode: attributes in ce_* headers, "
                "JSON data in the value, the episode id as key and ce_subject. Payloads carry pseudonymous ids only."
            ),
            schema_version="3.0.0",
        )
        # Sorted keys: FastStream's channel order varies between processes, a committed document must not.
        document = yaml.safe_load(specification.to_specification().to_yaml())
        documents[f"{name}.yaml"] = yaml.safe_dump(document, sort_keys=True, allow_unicode=True, width=100)
    return documents


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="write the documents instead of checking them")
    args = parser.parse_args()
    stale = []
    for filename, text in render_all().items():
        path = DOCS / filename
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        elif not path.exists() or path.read_text() != text:
            stale.append(filename)
    if stale:
        print(f"AsyncAPI documents out of date: {', '.join(stale)}; run `make asyncapi`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
