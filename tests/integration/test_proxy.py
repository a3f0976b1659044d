"""The repository's Caddyfile (deploy/caddy/Caddyfile) run by Debian's Caddy in front of stub services on loopback:
each path prefix reaches its service with the prefix stripped, the console and the questionnaire pages keep their
paths, anything else is 404, plain HTTP is refused, and outside the clinic's networks only what the documented option
opens is reachable."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tools.dev import caddy
from tools.dev.servers import free_port, start_server

SERVICES = ("intake", "care_plan", "notifications", "authorizations", "caseload")
PREFIXES = {"intake": "/intake", "care_plan": "/care-plan", "notifications": "/notifications",
            "authorizations": "/authorizations", "caseload": "/caseload"}  # fmt: skip


class Echo(BaseHTTPRequestHandler):
    """A stub service: answers with its name, the path it was asked for and the forwarding headers."""

    def do_GET(self) -> None:
        body = json.dumps({"service": self.server.name, "path": self.path,  # type: ignore[attr-defined]
                           "forwarded_for": self.headers.get("X-Forwarded-For")}).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def stub_services() -> Iterator[dict[str, int]]:
    servers = {}
    for name in SERVICES:
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), Echo)
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
    try:
        yield {name: server.server_address[1] for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


@dataclass
class Proxy:
    url: str
    https_port: int
    http_port: int
    root_ca: Path


@contextlib.contextmanager
def proxy(folder: Path, upstreams: dict[str, int], **variables: str) -> Iterator[Proxy]:
    """Caddy running the repository's Caddyfile, its internal CA and state in ``folder``."""
    program = caddy.ensure()
    folder.mkdir(parents=True, exist_ok=True)
    https_port, http_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": str(folder), "XDG_DATA_HOME": str(folder / "data"),
        "XDG_CONFIG_HOME": str(folder / "config"), "STEPWISE_SITE": "localhost", "STEPWISE_TLS": "internal",
        "HTTPS_PORT": str(https_port), "HTTP_PORT": str(http_port),
        **{f"{name.upper()}_UPSTREAM": f"127.0.0.1:{port}" for name, port in upstreams.items()},
        **variables,
    }  # fmt: skip
    command = [str(program), "run", "--config", str(caddy.CADDYFILE), "--adapter", "caddyfile"]
    root = folder / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    running = Proxy(f"https://localhost:{https_port}", https_port, http_port, root)
    with start_server("Caddy", command, https_port, folder / "caddy.log", ready_within=30, env=env,
                      ready=lambda: _serves_tls(running)):  # fmt: skip
        yield running


def _serves_tls(running: Proxy) -> bool:
    """Its internal CA made and the site's certificate issued (after the root, on its own schedule: a handshake
    before it is an internal-error alert)."""
    if not running.root_ca.exists():
        return False
    try:
        get(running, "/")
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, int]]:
    if why := caddy.missing():
        pytest.skip(why)
    with stub_services() as ports:
        yield ports


@pytest.fixture(scope="module")
def clinic_proxy(upstreams: dict[str, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with proxy(tmp_path_factory.mktemp("caddy"), upstreams) as running:
        yield running


def get(proxy: Proxy, path: str) -> httpx.Response:
    """GET over HTTPS, trusting only the proxy's internal CA."""
    with httpx.Client(verify=ssl.create_default_context(cafile=proxy.root_ca), timeout=10) as client:
        return client.get(proxy.url + path)


@pytest.mark.parametrize("service", SERVICES)
def test_each_prefix_reaches_its_service_without_the_prefix(clinic_proxy: Proxy, service: str) -> None:
    response = get(clinic_proxy, f"{PREFIXES[service]}/v1/episodes/e-1?view=full")
    assert response.status_code == 200, response.text
    assert response.json() == {"service": service, "path": "/v1/episodes/e-1?view=full", "forwarded_for": "127.0.0.1"}
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.parametrize(("path", "service"), [("/console", "caseload"), ("/console/patients", "caseload"),
                                               ("/q/a-token", "intake"),
                                               ("/schemas/iop.session.missed.v1.json", "intake")])  # fmt: skip
def test_the_console_and_the_questionnaire_pages_keep_their_paths(clinic_proxy: Proxy, path: str, service: str) -> None:
    response = get(clinic_proxy, path)
    assert response.json()["service"] == service
    assert response.json()["path"] == path


@pytest.mark.parametrize("path", ["/", "/v1/patients", "/intakes/v1/x", "/health/ready", "/consoles"])
def test_any_other_path_is_not_found(clinic_proxy: Proxy, path: str) -> None:
    response = get(clinic_proxy, path)
    assert response.status_code == 404
    assert "service" not in response.text


def test_plain_http_is_refused_and_nothing_listens_for_it(clinic_proxy: Proxy) -> None:
    with httpx.Client(timeout=10) as client:
        response = client.get(f"http://localhost:{clinic_proxy.https_port}/intake/v1/patients")
    assert response.status_code == 400
    assert "service" not in response.text
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", clinic_proxy.http_port)):
        pass  # no listener on the HTTP port: no redirect that would take a token in the clear


def test_outside_the_clinic_only_the_opened_paths_answer(
    upstreams: dict[str, int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Loopback counts as outside here: the clinic's network is another one.
    opened = {"CLINIC_NETWORKS": "10.0.0.0/8", "OPEN_TO_OUTSIDE": "/q/* /console /console/*"}
    with proxy(tmp_path_factory.mktemp("caddy-outside"), upstreams, **opened) as outside:
        for path in ("/intake/v1/patients", "/care-plan/v1/groups", "/caseload/v1/caseload"):
            assert get(outside, path).status_code == 403, path
        assert get(outside, "/q/a-token").json()["service"] == "intake"
        assert get(outside, "/console").json()["service"] == "caseload"
    with proxy(tmp_path_factory.mktemp("caddy-closed"), upstreams, CLINIC_NETWORKS="10.0.0.0/8") as closed:
        assert get(closed, "/q/a-token").status_code == 403, "nothing is open to outside unless the option says so"
