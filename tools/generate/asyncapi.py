"""Generate the AsyncAPI 3.0 documents of the services' Kafka channels from the code.

`make asyncapi` writes docs/asyncapi/<service>.yaml; the test suite fails when they drift, and checks them with the
official parser (tests/contract/test_asyncapi_parser.py). Each message names its CloudEvents ``ce_*`` headers, its
Kafka key (message binding) and the JSON Schema of its data (``ce_dataschema``).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

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
from stepwise_contract import COMMAND_TYPES, CONTENT_TYPE, EVENT_TYPES, SPEC_VERSION, CloudEvent
from stepwise_contract.envelope import DEFAULT_SCHEMA_BASE, dataschema_url
from stepwise_contract.json_schema import DATE_TIME_PATTERN, versions

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
    """The documents by file name (rendered once per process: it takes seconds, and the code does not change)."""
    return dict(_render_all())


@functools.cache
def _render_all() -> tuple[tuple[str, str], ...]:
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
        for key, message in document["components"]["messages"].items():
            describe_envelope(key.partition(":")[0], message)
        documents[f"{name}.yaml"] = yaml.safe_dump(document, sort_keys=True, allow_unicode=True, width=100)
    return tuple(documents.items())


KAFKA_BINDING = "0.4.0"


def describe_envelope(event_type: str, message: dict[str, Any]) -> None:
    """Add what FastStream leaves out of a message: the ce_* headers, the key, the data schema's URL."""
    model = (EVENT_TYPES | COMMAND_TYPES)[event_type]
    urls = [dataschema_url(event_type, version, DEFAULT_SCHEMA_BASE) for version in versions(model)]
    command = event_type in COMMAND_TYPES
    subject = "the episode id" + (" (a version 2 sheet: `{group_id}/{session_id}`)" if command else "")
    message["description"] = (
        "A CloudEvents 1.0 event in Kafka binary mode: its attributes are the ce_* headers, its data the JSON "
        f"value, valid under the JSON Schema `ce_dataschema` names ({', '.join(urls)} under the default base; "
        "the files ship in stepwise_contract/schemas)."
    )
    message["contentType"] = CONTENT_TYPE
    message["headers"] = headers_schema(event_type, subject, urls, command)
    message["bindings"] = {
        "kafka": {
            "bindingVersion": KAFKA_BINDING,
            "key": {
                "type": "string",
                "minLength": 1,
                "description": f"The partition key, equal to ce_subject: {subject}.",
            },
        }
    }


def headers_schema(event_type: str, subject: str, urls: list[str], command: bool) -> dict[str, Any]:
    source = "The producing system, a URI-reference" + ("" if command else " (/stepwise/<service>)")
    properties: dict[str, Any] = {
        "ce_id": {"type": "string", "minLength": 1, "description": "Unique per source: ce_source + ce_id identify "
                  "the event, and a repeat is a redelivery."},
        "ce_source": {"type": "string", "minLength": 1, "description": source + "."},
        "ce_specversion": {"type": "string", "const": SPEC_VERSION},
        "ce_type": {"type": "string", "const": event_type, "description": "The event type, also the topic."},
        "ce_subject": {"type": "string", "minLength": 1, "description": f"Equal to the Kafka key: {subject}."},
        "ce_time": {"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN,
                    "description": "When it happened (RFC 3339)."},
        "ce_dataschema": {"type": "string", "format": "uri", "examples": urls, "description": "The JSON Schema of "
                          "the data: `<SCHEMA_BASE_URL><type>.v<version>.json` (docs/events.md); older events: "
                          "`urn:stepwise:schema:<type>:v<version>`."},
        "ce_traceparent": traceparent_schema(),
        "content-type": {"type": "string", "const": CONTENT_TYPE},
        "correlation_id": {"type": "string", "description": "A random id the publishing client (FastStream) adds; "
                           "no part of the event."},
    }  # fmt: skip
    required = ["ce_id", "ce_source", "ce_specversion", "ce_type", "ce_subject", "ce_time"]
    return {"type": "object", "properties": properties, "required": required}


def traceparent_schema() -> dict[str, Any]:
    """The optional ``ce_traceparent`` header, as the envelope defines it (its pattern and description)."""
    field = CloudEvent.model_fields["traceparent"]
    pattern = next(item.pattern for item in field.metadata if getattr(item, "pattern", None))
    return {"type": "string", "pattern": pattern, "description": field.description}


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
