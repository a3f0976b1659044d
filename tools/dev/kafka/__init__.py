"""Apache Kafka from Maven Central's jars: one KRaft node (broker and controller) on free loopback ports.

The version is pinned once, in ``pom.xml`` beside this file. The first start on a machine resolves the
jars with Maven (into ``~/.m2``) and caches the classpath under ``~/.cache/stepwise``; later starts
need neither the network nor Maven. Storage is formatted in a temporary folder, the broker's own log
goes to a file there, and the process is stopped with SIGTERM (a controlled shutdown) afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from tools.dev.servers import SaslListener, Server, cache_dir, free_port, start_server

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
HEAP = "768m"
"""The broker's heap ceiling: ample for a test broker, bounded on a 24 GiB machine shared with the suite."""


def version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    assert match, f"{POM} names no kafka.version"
    return match.group(1)


def java_and_maven() -> str | None:
    """None when Java 17+ and Maven are here; otherwise what is missing, in words."""
    if not shutil.which("java"):
        return "no java on PATH"
    if not shutil.which("mvn"):
        return "no mvn on PATH"
    printed = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr
    major = re.search(r'version "(\d+)', printed)
    if not major or int(major.group(1)) < 17:
        return f"Kafka {version()} needs Java 17 or later ({printed.splitlines()[0] if printed else 'no version'})"
    return None


def classpath() -> str:
    """The broker's classpath, resolved by Maven once per pom.xml and cached."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    cached = cache_dir() / f"kafka-{version()}-{digest}.classpath"
    if cached.exists():
        jars = cached.read_text().strip()
        if all(Path(jar).is_file() for jar in jars.split(":")):
            return jars
    print(f"resolving Apache Kafka {version()} from Maven Central (first run on this machine)…", flush=True)
    partial = cached.with_suffix(f".{os.getpid()}.partial")  # two first runs at once must not share a file
    result = subprocess.run(
        ["mvn", "-B", "-q", "-f", str(POM), "dependency:build-classpath", f"-Dmdep.outputFile={partial}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"Maven could not resolve Apache Kafka {version()}:\n{result.stdout[-3000:]}")
    partial.replace(cached)
    return cached.read_text().strip()


SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
SCRAM_USER = "stepwise"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
SUPER_USERS = ("User:ANONYMOUS", f"User:{SCRAM_USER}")
"""Who the authorizer lets do anything: PLAINTEXT clients (the suite's, and the broker itself) and the SCRAM listener's
own user. The deployment's principals (tools/deploy/kafka_acls.py) are users too, allowed only what ACLs grant
(tests/integration/test_kafka_acls.py grants them)."""


def server_properties(data: Path, port: int, controller_port: int, sasl_port: int | None = None) -> str:
    """The node's configuration. With ``sasl_port``, a second listener (SASL_PLAINTEXT) takes only clients that log
    in with SCRAM (the user is created when storage is formatted); PLAINTEXT stays the default and inter-broker one.
    Kafka's authorizer is on, as in a deployment: the super users do anything, other users what ACLs allow."""
    listeners, protocols = [f"PLAINTEXT://127.0.0.1:{port}"], ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
    if sasl_port:
        listeners.append(f"SASL_PLAINTEXT://127.0.0.1:{sasl_port}")
        protocols.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
    scram = [
        f"sasl.enabled.mechanisms={','.join(SCRAM_MECHANISMS)}",
        *(
            f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            for mechanism in SCRAM_MECHANISMS
        ),
    ]
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners={','.join(listeners)},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners={','.join(listeners)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={','.join(protocols)}",
            *(scram if sasl_port else []),
            f"authorizer.class.name={AUTHORIZER}",
            f"super.users={';'.join(SUPER_USERS)}",
            f"log.dirs={data / 'log'}",
            # As docker-compose.yml: topics are created by the services (and kafka-init), nothing else.
            "auto.create.topics.enable=false",
            "num.partitions=3",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=5",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "",
        ]
    )


def cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes in URL-safe base64, unpadded (as `kafka-storage random-uuid` prints)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@contextlib.contextmanager
def apache_kafka(folder: Path) -> Iterator[Server]:
    """Format storage in ``folder``, start the node, wait until it answers; SIGTERM it afterwards. Besides its
    PLAINTEXT listener it has a SASL_PLAINTEXT one (``server.sasl``) whose SCRAM user is created by the format, with
    the deployment's principals (``server.sasl.principals``: a password each), which no ACL allows anything yet."""
    from tools.deploy.kafka_acls import principals

    jars = classpath()
    port, controller_port, sasl_port = free_port(), free_port(), free_port()
    others = {name: secrets.token_urlsafe(18) for name in principals()}
    sasl = SaslListener(sasl_port, SCRAM_MECHANISMS, SCRAM_USER, secrets.token_urlsafe(18), others)
    properties = folder / "server.properties"
    properties.write_text(server_properties(folder, port, controller_port, sasl_port))
    log = folder / "kafka.log"
    java = ["java", f"-Dstepwise.kafka.log={log}", f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}"]
    # The SCRAM user of the SASL listener, created with the storage (--option=value: a value may start with "-").
    logins = {sasl.username: sasl.password, **sasl.principals}
    users = [
        f"--add-scram={mechanism}=[name={name},password={password}]"
        for mechanism in sasl.mechanisms
        for name, password in logins.items()
    ]
    storage = ["kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id()}", "-c", str(properties), *users]
    formatted = subprocess.run([*java, "-cp", jars, *storage], capture_output=True, text=True, check=False)
    if formatted.returncode != 0:
        raise RuntimeError(f"formatting Kafka storage failed:\n{formatted.stdout}{formatted.stderr}")
    command = [*java, f"-Xmx{HEAP}", "-Xms128m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
    command += ["-cp", jars, "kafka.Kafka", str(properties)]

    def started() -> bool:  # the listener opens before the broker has caught up with its metadata
        return log.exists() and "Kafka Server started" in log.read_text(errors="replace")

    name = f"Apache Kafka {version()}"
    with start_server(
        name, command, port, folder / "kafka.stdout", ready_within=90, stop_within=30, ready=started
    ) as server:
        server.log = log
        server.sasl = sasl
        yield server


async def committed_offset(
    servers: str, group: str, partition: TopicPartition, options: Mapping[str, Any] | None = None
) -> int:
    """The offset ``group`` committed on ``partition`` (-1 if none yet): for tests and benchmarks that wait for
    a consumer to have handled a record. ``options``: more of aiokafka's client options (a SASL login, TLS; see
    ``services.common.kafka.client_options``)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, **(options or {}))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[partition])
    except GroupCoordinatorNotAvailableError:  # a new broker creates its offsets topic for the first group
        return -1
    finally:
        await admin.close()
    committed = offsets.get(partition)
    return committed.offset if committed else -1


async def unconsumed(
    servers: str, group: str, topic: str | Sequence[str], options: Mapping[str, Any] | None = None
) -> int:
    """How many records of ``topic`` (or of each of several) ``group`` has not committed yet (0: it has handled all
    there are)."""
    topics = [topic] if isinstance(topic, str) else list(topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, **(options or {}))
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        partitions = [TopicPartition(one["topic"], p["partition"]) for one in described for p in one["partitions"]]
        try:
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        except GroupCoordinatorNotAvailableError:
            committed = {}
    finally:
        await admin.close()
    if not partitions:
        return 0
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, **(options or {}))
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return sum(max(0, end - max(0, committed[tp].offset if committed.get(tp) else 0)) for tp, end in ends.items())


async def records_on(
    servers: str, topic: str, options: Mapping[str, Any] | None = None
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of a topic, read from the beginning with a plain consumer (no group): for tests and tools
    that count what was published. ``options``: as for ``committed_offset``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, **(options or {}))
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, **(options or {}))
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(*partitions, timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()
