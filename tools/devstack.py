"""Backends and service processes for `make run` and the test suite.

Backends are picked in this order (see README, "Backends"):
1. KAFKA_BOOTSTRAP_SERVERS and MONGODB_URL are set: use them.
2. A Docker engine answers: start Apache Kafka and MongoDB with testcontainers.
3. Neither: start the pinned wire-compatible stand-ins (noida-db for Kafka, nx-27017 for MongoDB)
   on free loopback ports with their data in a temporary folder, and stop them afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Backends:
    kafka_bootstrap_servers: str
    mongodb_url: str
    kind: str
    """"configured", "testcontainers" or "stand-ins"."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until it holds; raise TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextlib.contextmanager
def backends() -> Iterator[Backends]:
    kafka, mongo = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URL")
    if kafka and mongo:
        yield Backends(kafka, mongo, "configured")
    elif docker_engine_answers():
        with _testcontainers() as started:
            yield started
    else:
        with _stand_ins() as started:
            yield started


@contextlib.contextmanager
def _testcontainers() -> Iterator[Backends]:
    # Imported here: only machines with a Docker engine take this path.
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.mongodb import MongoDbContainer

    # testcontainers' KafkaContainer boots Confluent's packaging of Apache Kafka (7.9 = Kafka 3.9) in KRaft mode.

    with (
        KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft() as kafka,
        MongoDbContainer("mongo:8.0") as mongo,
    ):
        url = mongo.get_connection_url()
        yield Backends(kafka.get_bootstrap_server(), url, "testcontainers")


def noida_binary() -> str:
    import noida_db

    return str(Path(noida_db.__file__).parent / "noida-db")


@contextlib.contextmanager
def _stand_ins() -> Iterator[Backends]:
    data = Path(tempfile.mkdtemp(prefix="stepwise-backends-"))
    kafka_port, mongo_port = free_port(), free_port()
    logs = [open(data / "kafka.log", "wb"), open(data / "mongo.log", "wb")]  # noqa: SIM115
    processes = [
        subprocess.Popen(
            [noida_binary(), "start", "--only", "kafka", "--host", "127.0.0.1",
             "--kafka-port", str(kafka_port), "--data-dir", str(data / "kafka")],
            stdout=logs[0], stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [str(Path(sys.executable).parent / "nx-27017"), "--host", "127.0.0.1", "-p", str(mongo_port),
             "--data-dir", str(data / "mongo"), "--log-file", str(data / "nx.log"),
             "--pid-file", str(data / "nx.pid")],
            stdout=logs[1], stderr=subprocess.STDOUT,
        ),
    ]  # fmt: skip
    (data / "mongo").mkdir(exist_ok=True)
    try:
        wait_until(lambda: port_open(kafka_port), 20, "the Kafka stand-in (noida-db)")
        wait_until(lambda: port_open(mongo_port), 20, "the MongoDB stand-in (nx-27017)")
        yield Backends(
            f"127.0.0.1:{kafka_port}", f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true", "stand-ins"
        )
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)  # SIGTERM lets noida-db write its snapshot
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()
        shutil.rmtree(data, ignore_errors=True)


SERVICES = {
    "intake": ("services.intake", "INTAKE_PORT"),
    "care_plan": ("services.care_plan", "CARE_PLAN_PORT"),
    "notifications": ("services.notifications", "NOTIFICATIONS_PORT"),
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
                [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200
            return False

        wait_until(ready, timeout, f"{self.name} to be ready", interval=0.1)

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
