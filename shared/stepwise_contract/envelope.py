"""CloudEvents 1.0 envelope and its Kafka binary-mode binding.

In binary mode the context attributes travel as ``ce_*`` Kafka headers, ``datacontenttype``
travels as the ``content-type`` header, the event data is the record value (JSON) and the
record key is the partition key (always the episode id for Stepwise events).
Headers are read by brokers, proxies and log collectors, so they never carry anything sensitive:
only ids, the event type, the source and the time, and (optional) the trace context of the change that wrote the
event: the CloudEvents distributed-tracing extension, ``traceparent`` (``ce_traceparent``, W3C Trace Context).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
HEADER_PREFIX = "ce_"
CONTENT_TYPE_HEADER = "content-type"

DEFAULT_SCHEMA_BASE = "https://stepwise.invalid/schemas/"
"""Where the data schemas live unless a deployment says (``SCHEMA_BASE_URL``; docs/deployment.md): the JSON Schema
of event type T, version N is ``{base}T.vN.json`` (``$id`` of the file in ``stepwise_contract/schemas``)."""
LEGACY_SCHEMA_PREFIX = "urn:stepwise:schema:"
"""``ce_dataschema`` of events written before 1.1.0: ``urn:stepwise:schema:T:vN``; still read (``parse_dataschema``)."""
_SCHEMA_NAME = re.compile(r"(?P<type>[a-z][a-z0-9_.]*[a-z0-9_])\.v(?P<version>[1-9][0-9]*)\.json")
_LEGACY_NAME = re.compile(re.escape(LEGACY_SCHEMA_PREFIX) + r"(?P<type>[a-z][a-z0-9_.]*):v(?P<version>[1-9][0-9]*)")
_schema_base = DEFAULT_SCHEMA_BASE


def set_schema_base(base: str) -> None:
    """The base URL of the schemas, for every ``ce_dataschema`` this process writes from now on (a service sets it
    at start from ``SCHEMA_BASE_URL``). It ends with ``/``: ``{base}{type}.v{version}.json`` is the schema."""
    global _schema_base  # noqa: PLW0603 - one deployment-wide value, set once at start
    _schema_base = checked_schema_base(base)


def checked_schema_base(base: str) -> str:
    if not re.fullmatch(r"https?://[^\s?#]+/", base):
        raise ValueError("the schema base must be an http(s) URL ending with '/', without a query or fragment")
    return base


def schema_base() -> str:
    return _schema_base


def schema_file_name(event_type: str, version: int) -> str:
    """``iop.session.missed.v1.json``: the file (under ``stepwise_contract/schemas``) and the URL's last segment."""
    return f"{event_type}.v{version}.json"


def dataschema_url(event_type: str, version: int, base: str | None = None) -> str:
    return (base or _schema_base) + schema_file_name(event_type, version)


def parse_dataschema(dataschema: str) -> tuple[str, int] | None:
    """Event type and version named by a ``ce_dataschema``: a URL under any base, or the legacy URN; else None."""
    legacy = _LEGACY_NAME.fullmatch(dataschema)
    if legacy:
        return legacy["type"], int(legacy["version"])
    named = _SCHEMA_NAME.fullmatch(dataschema.rpartition("/")[2]) if "://" in dataschema else None
    return (named["type"], int(named["version"])) if named else None


class EventData(BaseModel):
    """Base of every event's data: pseudonymous ids and clinical codes, never PII."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    """CloudEvents ``type``; also the Kafka topic the event is published on."""

    schema_version: Literal[1] = Field(
        default=1, description="Major version of this data schema. A change that breaks readers bumps it."
    )
    episode_id: str = Field(description="Pseudonymous id of the treatment episode; the Kafka key and ce_subject.")

    @classmethod
    def dataschema(cls) -> str:
        return dataschema_url(cls.event_type, cls.model_fields["schema_version"].default)

    @property
    def subject(self) -> str:
        """The Kafka key and ``ce_subject``: the episode (a command about a group session overrides it)."""
        return self.episode_id

    @property
    def versioned_schema(self) -> str:
        """This data's ``dataschema``, by the version it carries."""
        return dataschema_url(self.event_type, self.schema_version)


DataT = TypeVar("DataT", bound=EventData)


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 event with typed data."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, description="Unique per source; a repeat of source+id is a duplicate.")
    source: str = Field(min_length=1, description="URI-reference of the producing service, e.g. /stepwise/intake.")
    specversion: Literal["1.0"] = "1.0"
    type: str = Field(min_length=1)
    subject: str = Field(min_length=1, description="The episode id.")
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    traceparent: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        description="CloudEvents distributed-tracing extension: the W3C trace context of the change that wrote the "
        "event (optional; readers may ignore it).",
    )
    data: DataT

    @property
    def dedup_key(self) -> str:
        """What makes an event unique under CloudEvents: source and id together."""
        return f"{self.source}#{self.id}"


@functools.cache
def _envelope_of(data_type: type[DataT]) -> type[CloudEvent[DataT]]:
    """``CloudEvent[data_type]``, looked up once (pydantic's own look-up of a parametrized model costs about as much
    as validating a small event's headers: a sixtieth of caseload's CPU under load)."""
    return CloudEvent[data_type]  # type: ignore[valid-type]


def new_event(data: DataT, *, source: str, time: datetime | None = None) -> CloudEvent[DataT]:
    """Wrap event data in a fresh envelope (new id, now, subject = episode id)."""
    event: CloudEvent[DataT] = _envelope_of(type(data))(
        id=str(uuid.uuid4()),
        source=source,
        type=data.event_type,
        subject=data.subject,
        time=time or datetime.now(UTC),
        dataschema=data.versioned_schema,
        data=data,
    )
    return event


class MalformedEvent(ValueError):
    """A record that is not a valid Stepwise CloudEvent; ``reason`` says why, naming the field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What goes on the wire for one event."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


ATTRIBUTES: tuple[str, ...] = ("id", "source", "specversion", "type", "subject", "time", "dataschema", "traceparent")
REQUIRED: tuple[str, ...] = ("id", "source", "specversion", "type", "subject", "time")


def to_kafka(event: CloudEvent[Any]) -> KafkaRecord:
    """Encode an event in Kafka binary mode."""
    attributes = event.model_dump(mode="json", include=set(ATTRIBUTES), exclude_none=True)
    headers = [(HEADER_PREFIX + name, str(value).encode()) for name, value in attributes.items()]
    headers.append((CONTENT_TYPE_HEADER, event.datacontenttype.encode()))
    return KafkaRecord(
        topic=event.type,
        key=event.subject.encode(),
        value=event.data.model_dump_json().encode(),
        headers=headers,
    )


def decode_headers(headers: Iterable[tuple[str, bytes | str]] | Mapping[str, bytes | str]) -> dict[str, str]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    decoded = {}
    for name, value in pairs:
        try:
            decoded[name] = value.decode() if isinstance(value, bytes) else value
        except UnicodeDecodeError:
            raise MalformedEvent(f"header {name!r} is not UTF-8") from None
    return decoded


def from_kafka(
    headers: Iterable[tuple[str, bytes | str]] | Mapping[str, bytes | str],
    value: bytes,
    data_model: type[DataT],
) -> CloudEvent[DataT]:
    """Decode a binary-mode record into a typed event; raise MalformedEvent naming what is wrong."""
    raw = decode_headers(headers)
    event_type = raw.get(HEADER_PREFIX + "type")
    if event_type is not None and event_type != data_model.event_type:
        raise MalformedEvent(f"ce_type is {event_type!r}, expected {data_model.event_type!r}")
    content_type = raw.get(CONTENT_TYPE_HEADER, CONTENT_TYPE).split(";")[0].strip()
    if content_type != CONTENT_TYPE:
        raise MalformedEvent(f"content-type is {content_type!r}, expected {CONTENT_TYPE!r}")
    try:
        payload = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedEvent(f"value is not JSON: {error}") from None
    try:
        data = data_model.model_validate(payload)
    except ValidationError as error:
        raise MalformedEvent(describe_validation_error(error)) from None
    return from_headers(raw, data)


def from_headers(
    headers: Iterable[tuple[str, bytes | str]] | Mapping[str, bytes | str], data: DataT
) -> CloudEvent[DataT]:
    """The event whose data is already decoded (e.g. by a framework); validates the ce_* headers."""
    raw = decode_headers(headers)
    attributes: dict[str, Any] = {
        name.removeprefix(HEADER_PREFIX): text for name, text in raw.items() if name.startswith(HEADER_PREFIX)
    }
    missing = [name for name in REQUIRED if name not in attributes]
    if missing:
        raise MalformedEvent("missing CloudEvents header(s): " + ", ".join(HEADER_PREFIX + m for m in missing))
    if attributes["type"] != data.event_type:
        raise MalformedEvent(f"ce_type is {attributes['type']!r}, expected {data.event_type!r}")
    try:
        event: CloudEvent[DataT] = _envelope_of(type(data))(data=data, **attributes)
    except ValidationError as error:
        raise MalformedEvent(describe_validation_error(error)) from None
    if event.subject != data.subject:
        raise MalformedEvent("ce_subject does not match data.episode_id")
    return event


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the field path (never the offending value)."""
    parts = []
    for problem in error.errors(include_input=False, include_url=False):
        location = ".".join(str(part) for part in problem["loc"]) or "(root)"
        parts.append(f"{location}: {problem['msg']}")
    return "; ".join(parts)
