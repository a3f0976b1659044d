"""`make run`: backends (configured, or started here: Apache Kafka and a MongoDB server; see tools/devstack.py),
the three services.

Prints the URLs and dev tokens; Ctrl-C stops everything it started.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import tempfile
import threading
from pathlib import Path

from tools.devstack import ServiceProcess, backends
from tools.servers import free_port
from tools.sms_sink import SmsSink
from tools.smtp_sink import SmtpSink

PORTS = {
    "intake": ("INTAKE_PORT", 8001),
    "care_plan": ("CARE_PLAN_PORT", 8002),
    "notifications": ("NOTIFICATIONS_PORT", 8003),
}


def dev_tokens() -> dict[str, str]:
    return {
        role: f"dev-{role}-{secrets.token_urlsafe(12)}"
        for role in ("clinician", "intake_staff", "admin", "notifications", "sms_provider")
    }


def main() -> None:
    tokens = dev_tokens()
    logs = Path(tempfile.mkdtemp(prefix="stepwise-run-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.ExitStack() as stack:
        started = stack.enter_context(backends())
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": started.kafka_bootstrap_servers,
            "MONGODB_URL": started.mongodb_url,
            "API_TOKENS": os.environ.get("API_TOKENS") or ",".join(f"{t}:{r}" for r, t in tokens.items()),
            "INTAKE_TOKEN": os.environ.get("INTAKE_TOKEN") or tokens["notifications"],
            # The walkthrough should show its mail at any hour; set both to try quiet hours locally.
            "QUIET_HOURS_START": os.environ.get("QUIET_HOURS_START", "00:00"),
            "QUIET_HOURS_END": os.environ.get("QUIET_HOURS_END", "00:00"),
        }
        ports = {name: int(os.environ.get(var, default)) for name, (var, default) in PORTS.items()}
        env["INTAKE_URL"] = os.environ.get("INTAKE_URL") or f"http://127.0.0.1:{ports['intake']}"
        if not os.environ.get("SMTP_HOST"):
            sink = stack.enter_context(SmtpSink(free_port(), print_messages=True))
            env |= {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port)}
        if not os.environ.get("SMS_PROVIDER_URL"):
            texts = stack.enter_context(SmsSink(free_port(), print_messages=True))
            env |= {"SMS_PROVIDER_URL": texts.url, "CONTACT_HASH_KEY": secrets.token_urlsafe(24)}
        services = [ServiceProcess(name, port, env, logs / f"{name}.log") for name, port in ports.items()]
        for service in services:
            stack.callback(service.stop)
            service.start()
        print("\nBackends:")
        for line in started.describe():
            print(f"  {line}")
        print(f"\nStepwise is running (service logs in {logs}):")
        for service in services:
            print(f"  {service.name:<14} {service.url}/docs")
        print(f"\n  dev token (clinician): {tokens['clinician']}")
        print(f"  other dev tokens:      intake_staff={tokens['intake_staff']} admin={tokens['admin']}")
        print(f"  SMS provider callback: sms_provider={tokens['sms_provider']}")
        print("  mail and texts sent to people are printed below. Ctrl-C stops everything.\n", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        print("\nstopping…", flush=True)


if __name__ == "__main__":
    main()
