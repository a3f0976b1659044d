"""Kafka wiring shared by the services: the broker, its publishers and the topics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, NamedTuple

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.publisher.usecase import DefaultPublisher
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from stepwise_contract import EventData

from .consumer import EventHandlers, RetryingEvents, subscribe
from .dependencies import Dependencies, DependencyDown
from .logs import FASTSTREAM_BROKER_LOGGER, colour_only_on_a_terminal
from .mongo import Document
from .settings import ServiceSettings
from .tracing import continued

log = logging.getLogger(__name__)

KAFKA = "kafka"
"""The broker's name in readiness (``/health/ready``), as a check and as a dependency with a problem."""


def ssl_context(settings: ServiceSettings) -> ssl.SSLContext | None:
    """The TLS context of Kafka connections (SSL, SASL_SSL): KAFKA_SSL_CA_FILE's CAs, else the system's; None
    without TLS."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    cafile = settings.kafka_ssl_ca_file
    return create_ssl_context(cafile=str(cafile) if cafile else None)  # type: ignore[no-any-return]


SASL_SECURITY: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    "PLAIN": SASLPlaintext,
    "SCRAM-SHA-256": SASLScram256,
    "SCRAM-SHA-512": SASLScram512,
}


def broker_security(settings: ServiceSettings) -> BaseSecurity | None:
    """The transport settings as FastStream's ``security`` of a KafkaBroker (which turns it into aiokafka's
    options, as ``client_options`` does for plain aiokafka clients). None: PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context(settings), use_ssl=True)
    login, context = SASL_SECURITY[settings.kafka_sasl_mechanism], ssl_context(settings)
    username, password = settings.kafka_sasl_username, settings.kafka_sasl_password.get_secret_value()
    return login(username, password, ssl_context=context, use_ssl=context is not None)


def client_options(settings: ServiceSettings) -> dict[str, Any]:
    """The transport settings as keyword arguments of aiokafka's clients (admin, producer, consumer)."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol, "ssl_context": ssl_context(settings)}
    if protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        }
    return options


async def refusal(settings: ServiceSettings) -> str | None:
    """Why the brokers refuse this service's connection, when it is for its transport settings (a login refused, a
    mechanism not offered, a certificate not trusted, TLS or a login the listener does not speak), naming what to
    set; None when they answer, or are only unreachable. aiokafka's clients log such a refusal, then say only that
    they could not bootstrap; this asks the first broker that answers why."""
    for server in settings.kafka_bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            connection = await create_conn(
                host.strip("[]"), int(port), request_timeout_ms=5000, **client_options(settings)
            )
        except (OSError, TimeoutError, KafkaError, ValueError) as error:
            if reason := _refused(error, settings):
                return reason
            continue  # down or unreachable: an outage, not a configuration mistake
        try:
            if not settings.kafka_security_protocol.startswith("SASL_"):
                await connection.send(MetadataRequest([]))
        except KafkaConnectionError:  # a SASL listener answers ApiVersions, then hangs up on anything else
            return (
                "closed the connection when asked without a login: if its listener requires one, set "
                "KAFKA_SECURITY_PROTOCOL to SASL_PLAINTEXT or SASL_SSL"
            )
        except (KafkaError, TimeoutError):
            pass
        finally:
            connection.close()
        return None
    return None


def _refused(error: BaseException, settings: ServiceSettings) -> str | None:
    """What a broker's refusal says about our settings, naming what to set; None: not a configuration mistake."""
    protocol = settings.kafka_security_protocol
    said = error.args[0] if error.args and isinstance(error.args[0], str) else type(error).__name__
    reasons: list[tuple[type[BaseException], str]] = [
        (SaslAuthenticationFailed, f"refused our login ({said}): check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
        (UnsupportedSaslMechanismError, f"does not offer {settings.kafka_sasl_mechanism}: check KAFKA_SASL_MECHANISM"),
        (
            IllegalSaslStateError,
            f"takes no login on this listener: check KAFKA_SECURITY_PROTOCOL ({protocol}) and KAFKA_BOOTSTRAP_SERVERS",
        ),
        (
            ssl.SSLCertVerificationError,
            f"has a certificate we do not trust ({getattr(error, 'verify_message', said)}): check KAFKA_SSL_CA_FILE",
        ),
        (
            ssl.SSLError,
            f"failed the TLS handshake ({getattr(error, 'reason', said)}): check KAFKA_SECURITY_PROTOCOL ({protocol})",
        ),
    ]
    if protocol.endswith("SSL"):
        reasons.append(
            (
                ConnectionResetError,
                "hung up on our TLS handshake: does its listener use TLS? check KAFKA_SECURITY_PROTOCOL",
            )
        )
    else:  # a TLS listener hangs up on a client that does not start with a TLS handshake
        reasons.append(
            (
                KafkaConnectionError,
                "closed the connection before answering: if its listener uses TLS, set KAFKA_SECURITY_PROTOCOL to SSL "
                "or SASL_SSL",
            )
        )
    return next((reason for kind, reason in reasons if isinstance(error, kind)), None)


def new_broker(settings: ServiceSettings, *, client_id: str, publishes: bool = True) -> KafkaBroker:
    """A broker whose producer is idempotent with acks=all, with the transport settings (``broker_security``).
    One that ``publishes`` nothing (caseload) asks for no producer id: under ACLs a principal allowed to write no
    topic is refused one (Kafka's InitProducerId needs WRITE on some topic), and it would never use it.
    Its consumers find the set-aside shelf and what the handlers work with in its context (``event_shelf``,
    ``HANDLER_CONTEXT``), set in the app's lifespan."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=publishes,
        graceful_timeout=10.0,
        security=broker_security(settings),
        # A plain logger (no colours of its own), handing its lines to the root's handler: text or JSON (logs.py).
        logger=logging.getLogger(FASTSTREAM_BROKER_LOGGER),
        # FastStream's own metrics of what the broker publishes and receives, beside ours (metrics.py).
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY, app_name=client_id)],
    )


class ServiceBroker(NamedTuple):
    """A service's broker with its subscribers, its declared publishers (by topic) and its handlers."""

    broker: KafkaBroker
    publishers: dict[str, DefaultPublisher]
    handlers: EventHandlers
    publishes: tuple[type[EventData], ...] = ()
    service: str = ""
    retrying: RetryingEvents | None = None
    """The events its subscribers are held by (readiness lists them); None without subscribers."""

    def documented(self, bootstrap_servers: str) -> KafkaBroker:
        """A broker that is never started, for the AsyncAPI document: the same publishers, and one subscriber per
        event this service consumes (its schema and its line), where the running broker has one per lane."""
        broker = KafkaBroker(bootstrap_servers)
        declare_publishers(broker, self.publishes)
        for model, subscription in self.handlers.items():
            broker.subscriber(model.event_type, title=f"{model.event_type}:{self.service}",
                              description=subscription.description)(_documentation_only(model))  # fmt: skip
        return broker


def _documentation_only(model: type[EventData]) -> Any:
    async def handle(data: EventData) -> None:  # pragma: no cover - never subscribed
        raise NotImplementedError

    handle.__annotations__ = {"data": model, "return": None}
    return handle


def service_broker(
    settings: ServiceSettings,
    service: str,
    publishes: Iterable[type[EventData]],
    handlers: EventHandlers,
    group: str,
) -> ServiceBroker:
    """The broker of a service: a batch subscriber per lane of the events it handles (unless consumers are off),
    in the consumer group ``group`` (``….urgent`` for the urgent lane), and a publisher per event it publishes."""
    publishes = tuple(publishes)
    broker = new_broker(settings, client_id=f"stepwise-{service.replace('_', '-')}", publishes=bool(publishes))
    retrying = None
    if handlers and settings.kafka_consumers_enabled:
        retrying = RetryingEvents()
        broker.include_router(subscribe(settings, group, handlers, retrying))
    return ServiceBroker(broker, declare_publishers(broker, publishes), handlers, publishes, service, retrying)


def declare_publishers(broker: KafkaBroker, events: Iterable[type[EventData]]) -> dict[str, DefaultPublisher]:
    """One documented publisher per event type, keyed by topic (= event type)."""
    return {
        model.event_type: broker.publisher(
            model.event_type,
            title=f"{model.event_type}:publish",
            description=(model.__doc__ or "").strip() or None,
            schema=model,
            include_in_schema=True,
        )
        for model in events
    }


def relay_publish(publishers: dict[str, DefaultPublisher]) -> Any:
    """The outbox relay's publish function: hand a stored record to its declared publisher's producer, in a span
    continuing the trace its event carries (``ce_traceparent``, stored when the change was written); the future of
    the broker's acknowledgement."""

    async def publish(record: Document) -> asyncio.Future[RecordMetadata]:
        headers = {name: value for name, value in record["headers"]}
        attributes = {"messaging.system": "kafka", "messaging.destination.name": record["topic"],
                      "messaging.operation.type": "send"}  # fmt: skip
        with continued(f"{record['topic']} publish", headers.get("ce_traceparent"), SpanKind.PRODUCER, attributes):
            return await publishers[record["topic"]].publish(record["value"].encode(), key=record["key"].encode(),
                                                             headers=headers, no_confirm=True)  # fmt: skip

    return publish


KEPT_FOR_EVER = "-1"
"""``retention.ms`` of the ``iop.*`` topics: no time limit. The caseload rebuilds its projection from the whole
history; the records are small and pseudonymous (docs/deployment.md, "Topics and retention")."""


def topic_configs(topic: str, settings: ServiceSettings) -> dict[str, str]:
    """The configuration a topic is created with: the ``iop.*`` topics are kept without a time limit."""
    configs = {"min.insync.replicas": str(settings.kafka_topic_min_insync_replicas)}
    return configs | ({"retention.ms": KEPT_FOR_EVER} if topic.startswith("iop.") else {})


async def ensure_topics(settings: ServiceSettings, topics: Iterable[str]) -> None:
    """Create the topics a service reads or writes, if missing. Idempotent; safe with many instances."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                topic,
                settings.kafka_topic_partitions,
                settings.kafka_topic_replication,
                topic_configs=topic_configs(topic, settings),
            )
            for topic in sorted(set(topics) - existing)
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another instance was quicker
                await admin.create_topics(wanted)
            await _until_known(admin, {topic.name for topic in wanted})
            log.info("created topics %s", [topic.name for topic in wanted])
    finally:
        await admin.close()


TOPICS_KNOWN_WITHIN = 30.0
"""How long a new topic may take to reach the brokers' metadata before the service starts anyway (its consumer
then waits for it, logging that it is not found)."""


async def _until_known(admin: AIOKafkaAdminClient, topics: set[str]) -> None:
    """Wait until the brokers' metadata lists ``topics``: a consumer subscribing to a topic created a moment ago
    otherwise logs an ERROR that it does not exist, on a start that has nothing wrong."""
    clock = asyncio.get_running_loop()
    deadline = clock.time() + TOPICS_KNOWN_WITHIN
    while clock.time() < deadline:
        if topics <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.05)


async def start(
    settings: ServiceSettings, broker: KafkaBroker, topics: Iterable[str], dependencies: Dependencies
) -> bool:
    """Create the missing topics and start the broker: True. False when the brokers refuse this service's transport
    settings (a login refused, a certificate not trusted): a configuration mistake, logged as an error naming what
    to set and shown by readiness as ``kafka`` misconfigured (``start_once_accepted`` then tries again). Brokers
    that do not answer at all raise, as they always did."""
    try:
        await ensure_topics(settings, topics)
    except KafkaConnectionError:
        why = await refusal(settings)
        if why is None:
            raise
        dependencies.failed(DependencyDown(KAFKA, why, misconfigured=True))
        return False
    await broker.connect()
    colour_only_on_a_terminal()  # FastStream makes its broker's logger as it connects, and logs as it starts
    await broker.start()
    dependencies.ok(KAFKA)
    return True


RETRY_REFUSED_SECONDS = (1.0, 30.0)
"""First and longest wait between two tries of brokers that refused our settings."""


async def start_once_accepted(
    settings: ServiceSettings,
    broker: KafkaBroker,
    topics: Sequence[str],
    dependencies: Dependencies,
    then: Sequence[Coroutine[Any, Any, None]],
) -> None:
    """After ``start`` returned False: try again, waiting longer each time (up to 30 s), until the brokers accept
    our settings (fixed on their side: the user created, the certificate renewed), then run ``then`` (the relay,
    the timers: what needs the broker). Every refusal is in the log (aiokafka's error) and in readiness."""
    wait, longest = RETRY_REFUSED_SECONDS
    try:
        while True:
            await asyncio.sleep(wait)
            wait = min(wait * 2, longest)
            try:
                if await start(settings, broker, topics, dependencies):
                    break
            except KafkaError as error:
                dependencies.failed(DependencyDown(KAFKA, f"unreachable ({type(error).__name__})"))
    except BaseException:  # stopped before the brokers accepted us: what waited never starts
        for waiting in then:
            waiting.close()
        raise
    log.info("the brokers accept our settings now: starting what needs them")
    await asyncio.gather(*then)
