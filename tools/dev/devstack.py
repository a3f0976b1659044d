"""Backends and service processes for `make run` and the test suite.

Each backend is picked on its own, in this order (docs/development.md, "Backends"):

Kafka
1. ``KAFKA_BOOTSTRAP_SERVERS`` is set: that cluster.
2. Java 17+ and Maven are here: Apache Kafka from Maven Central's jars (``tools/dev/kafka``), one KRaft node.
3. A Docker engine answers: Confluent's Kafka image under testcontainers.
4. Otherwise the stand-in noida-db (a pinned dev dependency), said in one line.

MongoDB
1. ``MONGODB_URL`` is set: that server.
2. ``STEPWISE_MONGODB_SERVER`` is set: the server it names (below), Docker or not.
3. A Docker engine answers: MongoDB itself (``mongo:8.0``) under testcontainers.
4. Otherwise ``nx-27017``.
``STEPWISE_MONGODB_SERVER`` names ``nx-27017`` (the pinned Python stand-in), ``ferretdb`` (FerretDB on SQLite,
built from the Go module proxy by ``tools/dev/ferretdb``; falls back to nx-27017, said in one line, where Go is
missing) or ``ferretdb-pg`` (FerretDB on a PostgreSQL cluster started here, ``tools/dev/postgres``: the second
server ``make test`` runs its store and spine tests on; no fallback: it fails naming what is missing). README
"Backends" gives the evidence for the default.

``STEPWISE_KAFKA_BROKER=noida-db`` picks the Kafka stand-in on purpose (to compare). Whatever is started runs
on free loopback ports with its data and logs in one temporary folder, and is stopped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tools.dev import ferretdb, kafka, postgres
from tools.dev.servers import Server, dying_with_parent, free_port, start_server, wait_until

ROOT = Path(__file__).resolve().parents[2]

MONGODB_SERVERS = ("ferretdb", "ferretdb-pg", "nx-27017")
KAFKA_BROKERS = ("apache-kafka", "noida-db")


@dataclass
class Backend:
    """One backend in use: its address, what it is, and the server process if we started it."""

    address: str
    name: str
    server: Server | None = None
    note: str = ""
    """Why this one and not the preferred one, when we fell back."""

    def describe(self) -> str:
        described = self.server.describe() if self.server else f"{self.name} at {self.address}"
        return f"{described}; {self.note}" if self.note else described


@dataclass(frozen=True)
class KafkaSasl:
    """The broker's listener that takes only a SCRAM login, and its user: the settings a service needs to use it."""

    bootstrap_servers: str
    username: str
    password: str = field(repr=False)
    mechanisms: tuple[str, ...] = ("SCRAM-SHA-512",)
    principals: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The deployment's principals (tools/deploy/kafka_acls.py) and their passwords: users allowed what ACLs grant."""

    def settings(
        self, mechanism: str = "SCRAM-SHA-512", password: str | None = None, principal: str | None = None
    ) -> dict[str, str]:
        """A service's environment for this listener (``password``: another one, to see it refused; ``principal``:
        log in as that deployment principal instead of the listener's super user)."""
        username = principal or self.username
        known = self.principals[principal] if principal else self.password
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": username,
            "KAFKA_SASL_PASSWORD": known if password is None else password,
        }


@dataclass
class Backends:
    kafka: Backend
    mongodb: Backend

    @property
    def kafka_bootstrap_servers(self) -> str:
        return self.kafka.address

    @property
    def kafka_sasl(self) -> KafkaSasl | None:
        """The SASL_PLAINTEXT listener with a SCRAM user, which only the Apache Kafka started here has (None for a
        configured cluster, testcontainers' or noida-db)."""
        sasl = self.kafka.server.sasl if self.kafka.server else None
        if sasl is None:
            return None
        return KafkaSasl(f"127.0.0.1:{sasl.port}", sasl.username, sasl.password, sasl.mechanisms, sasl.principals)

    @property
    def mongodb_url(self) -> str:
        return self.mongodb.address

    @property
    def kind(self) -> str:
        """A short name for both, as in "Apache Kafka 4.4.0 + FerretDB v1.24.2 (SQLite)"."""
        return f"{self.kafka.name} + {self.mongodb.name}"

    def describe(self) -> list[str]:
        return [f"Kafka:   {self.kafka.describe()}", f"MongoDB: {self.mongodb.describe()}"]


def docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _choice(variable: str, default: str, choices: tuple[str, ...]) -> str:
    chosen = os.environ.get(variable) or default
    if chosen not in choices:
        raise ValueError(f"{variable}={chosen!r}: choose one of {', '.join(choices)}")
    return chosen


@contextlib.contextmanager
def backends() -> Iterator[Backends]:
    broker_choice = _choice("STEPWISE_KAFKA_BROKER", "apache-kafka", KAFKA_BROKERS)
    store_choice = _choice("STEPWISE_MONGODB_SERVER", "nx-27017", MONGODB_SERVERS)
    folder = Path(tempfile.mkdtemp(prefix="stepwise-backends-"))
    docker: bool | None = None  # asked at most once, and only when a backend is not configured
    try:
        with contextlib.ExitStack() as running:

            def has_docker() -> bool:
                nonlocal docker
                if docker is None:
                    docker = docker_engine_answers()
                return docker

            broker = running.enter_context(_kafka(folder, broker_choice, has_docker))
            store = running.enter_context(_mongodb(folder, store_choice, has_docker))
            yield Backends(broker, store)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _kafka(folder: Path, wanted: str, has_docker: Callable[[], bool]) -> Iterator[Backend]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield Backend(configured, "Kafka (configured)")
        return
    missing = kafka.java_and_maven() if wanted == "apache-kafka" else "STEPWISE_KAFKA_BROKER=noida-db"
    if missing is None:
        (folder / "kafka").mkdir()
        with kafka.apache_kafka(folder / "kafka") as server:
            yield Backend(f"127.0.0.1:{server.port}", server.name, server)
    elif wanted == "apache-kafka" and has_docker():
        with _testcontainers_kafka() as address:
            yield Backend(address, "Kafka (Confluent 7.9 image, testcontainers)", note=f"not Apache Kafka: {missing}")
    else:
        with _noida_db(folder) as server:
            yield Backend(f"127.0.0.1:{server.port}", server.name, server, note=f"a stand-in, because {missing}")


@contextlib.contextmanager
def _mongodb(folder: Path, wanted: str, has_docker: Callable[[], bool]) -> Iterator[Backend]:
    configured = os.environ.get("MONGODB_URL")
    if configured:
        yield Backend(configured, "MongoDB (configured)")
        return
    if not os.environ.get("STEPWISE_MONGODB_SERVER") and has_docker():
        with _testcontainers_mongodb() as url:
            yield Backend(url, "MongoDB 8.0 (testcontainers)")
        return
    missing = ferretdb.missing() if wanted == "ferretdb" else None
    note = f"FerretDB unavailable: {missing}" if missing else ""
    with mongodb_server(folder, wanted) as (server, url):
        yield Backend(url, server.name, server, note)


@contextlib.contextmanager
def mongodb_server(folder: Path, wanted: str | None = None) -> Iterator[tuple[Server, str]]:
    """A MongoDB server run here (STEPWISE_MONGODB_SERVER: nx-27017, ferretdb when it can be built, or
    ferretdb-pg), with its URL. Its data stays in ``folder``: it can be stopped and started again (the fault
    suite's outage)."""
    wanted = wanted or _choice("STEPWISE_MONGODB_SERVER", "nx-27017", MONGODB_SERVERS)
    folder.mkdir(parents=True, exist_ok=True)
    if wanted == "ferretdb-pg":
        missing = ferretdb.missing() or postgres.missing()
        if missing:
            raise RuntimeError(f"STEPWISE_MONGODB_SERVER=ferretdb-pg: {missing}")
        with ferretdb.ferretdb_on_postgresql(folder / "ferretdb-pg") as server:
            yield server, f"mongodb://127.0.0.1:{server.port}/?directConnection=true"
        return
    if wanted == "ferretdb" and ferretdb.missing() is None:
        with ferretdb.ferretdb(folder / "ferretdb") as server:
            yield server, f"mongodb://127.0.0.1:{server.port}/?directConnection=true"
        return
    with _nx_27017(folder) as server:
        # Few connections per client: nx-27017 serves each database's commands from a small thread pool, and
        # a burst of concurrent slow ones can starve even its heartbeats (docs/development.md, "Backends").
        yield server, f"mongodb://127.0.0.1:{server.port}/?directConnection=true&maxPoolSize=4"


@contextlib.contextmanager
def _testcontainers_kafka() -> Iterator[str]:
    # Imported here: only machines with a Docker engine and no Java take this path. testcontainers' KafkaContainer
    # drives Confluent's packaging of Apache Kafka (7.9 = Kafka 3.9) in KRaft mode.
    from testcontainers.community.kafka import KafkaContainer

    with KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft() as container:
        yield container.get_bootstrap_server()


@contextlib.contextmanager
def _testcontainers_mongodb() -> Iterator[str]:
    from testcontainers.community.mongodb import MongoDbContainer

    with MongoDbContainer("mongo:8.0") as container:
        yield container.get_connection_url()


def noida_binary() -> str:
    import noida_db

    return str(Path(noida_db.__file__).parent / "noida-db")


@contextlib.contextmanager
def _noida_db(folder: Path) -> Iterator[Server]:
    port = free_port()
    command = [noida_binary(), "start", "--only", "kafka", "--host", "127.0.0.1", "--kafka-port", str(port),
               "--data-dir", str(folder / "noida-db")]  # fmt: skip
    # SIGTERM (start_server's way of stopping) lets noida-db write its snapshot.
    with start_server("noida-db 0.2.3 (Kafka stand-in)", command, port, folder / "noida-db.log", ready_within=20) as s:
        yield s


@contextlib.contextmanager
def _nx_27017(folder: Path) -> Iterator[Server]:
    port = free_port()
    (folder / "nx-27017").mkdir()
    command = [str(Path(sys.executable).parent / "nx-27017"), "--host", "127.0.0.1", "-p", str(port),
               "--data-dir", str(folder / "nx-27017"), "--log-file", str(folder / "nx.log"),
               "--pid-file", str(folder / "nx.pid")]  # fmt: skip
    with start_server(
        "nx-27017 0.8.1 (MongoDB stand-in)", command, port, folder / "nx-27017.out", ready_within=20
    ) as s:
        yield s


SERVICES = {
    "intake": ("services.intake", "INTAKE_PORT"),
    "care_plan": ("services.care_plan", "CARE_PLAN_PORT"),
    "notifications": ("services.notifications", "NOTIFICATIONS_PORT"),
    "authorizations": ("services.authorizations", "AUTHORIZATIONS_PORT"),
    "caseload": ("services.caseload", "CASELOAD_PORT"),
}


@dataclass
class ServiceProcess:
    """One service running as its own OS process, as in production."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, extra_env: dict[str, str] | None = None) -> ServiceProcess:
        module, port_variable = SERVICES[self.name]
        env = {**os.environ, **self.env, **(extra_env or {}), port_variable: str(self.port)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                dying_with_parent([sys.executable, "-m", module]),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_ready()
        return self

    def ready(self) -> bool:
        """/health/ready answers 200 now; raises if the process has exited."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200
        return False

    def wait_ready(self, timeout: float = 60) -> None:
        wait_until(self.ready, timeout, f"{self.name} to be ready", interval=0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
