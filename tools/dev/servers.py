"""Starting a backend server as a child process on a free loopback port, and what we learn of it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def dying_with_parent(command: Sequence[str]) -> list[str]:
    """``command`` run so that Linux sends it SIGTERM when the process that started it dies, even by SIGKILL:
    an interrupted test run leaves no broker, database or service behind. util-linux's setpriv sets the
    signal and execs the command (same pid); where it is missing, the command as it is."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "TERM", "--", *command] if setpriv else list(command)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until it holds; raise TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def cache_dir() -> Path:
    """Where downloaded or built backends are kept between runs (``STEPWISE_CACHE_DIR``, else ~/.cache/stepwise)."""
    folder = Path(os.environ.get("STEPWISE_CACHE_DIR") or Path.home() / ".cache" / "stepwise")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MiB (Linux), or None if it cannot be read."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux)."""
    return _used(Path(f"/proc/{pid}/stat").read_text())


def thread_cpu_seconds(pid: int, named: str) -> float:
    """User + system CPU time used so far by the threads of a process whose name has ``named`` in it (Linux), e.g. a
    JVM's JIT compiler threads ("CompilerThre")."""
    used = 0.0
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            text = stat.read_text()
            if named in text[text.index("(") + 1 : text.rindex(")")]:
                used += _used(text)
    return used


def _used(stat: str) -> float:
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class SaslListener:
    """A broker's second listener, which takes only clients that log in (SASL), and the user created for it."""

    port: int
    mechanisms: tuple[str, ...]
    username: str
    password: str = field(repr=False)
    principals: Mapping[str, str] = field(default_factory=dict, repr=False)
    """More SCRAM users: the deployment's principals (tools/deploy/kafka_acls.py), by name, with their passwords."""


@dataclass
class Server:
    """A backend we started: what it is, where it listens, how long it took, where it logs. It can be stopped
    and started again on the same port with the same data (the fault suite's outages)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    started_in: float
    log: Path
    command: Sequence[str] = ()
    output: Path | None = None
    env: dict[str, str] | None = None
    ready: Callable[[], bool] = lambda: True
    ready_within: float = 60
    stop_within: float = 10
    sasl: SaslListener | None = None
    """Apache Kafka's listener that requires a SCRAM login, with its user (None for every other server)."""

    def describe(self) -> str:
        rss = rss_mb(self.process.pid)
        memory = f", RSS {rss:.0f} MiB" if rss is not None else ""
        where = f"127.0.0.1:{self.port}" + (f", SCRAM on :{self.sasl.port}" if self.sasl else "")
        return f"{self.name} on {where} (started in {self.started_in:.1f} s{memory}; log {self.log})"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_within``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=self.stop_within)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def start(self) -> None:
        """Run the command again (after ``stop``) and wait until it answers."""
        assert self.process.poll() is not None, f"{self.name} is running"
        began = time.monotonic()
        self.process = _launch(self.command, self.output or self.log, self.env, append=True)
        _wait_for(self.name, self.process, self.port, self.ready, self.ready_within, self.output or self.log)
        self.started_in = time.monotonic() - began


def _launch(
    command: Sequence[str], output: Path, env: dict[str, str] | None, *, append: bool = False
) -> subprocess.Popen[bytes]:
    with open(output, "ab" if append else "wb") as log:
        return subprocess.Popen(dying_with_parent(command), stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait_for(
    name: str, process: subprocess.Popen[bytes], port: int, ready: Callable[[], bool], within: float, output: Path
) -> None:
    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {output}")
        return port_open(port) and ready()

    wait_until(answers, within, name, interval=0.1)


@contextlib.contextmanager
def start_server(
    name: str,
    command: Sequence[str],
    port: int,
    output: Path,
    *,
    ready_within: float,
    stop_within: float = 10,
    env: dict[str, str] | None = None,
    ready: Callable[[], bool] = lambda: True,
) -> Iterator[Server]:
    """Run ``command`` until its port answers and ``ready`` holds; on leaving, SIGTERM it (SIGKILL after
    ``stop_within``)."""
    began = time.monotonic()
    process = _launch(command, output, env)
    server = Server(name, port, process, 0.0, output, command, output, env, ready, ready_within, stop_within)
    try:
        _wait_for(name, process, port, ready, ready_within, output)
        server.started_in = time.monotonic() - began
        yield server
    finally:
        server.stop()
