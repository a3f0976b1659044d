"""The pipeline benchmark's own parts: its view of the SMTP sink (each mail read once), its knobs."""

from __future__ import annotations

import time
from email import message_from_string, policy
from email.message import EmailMessage
from unittest.mock import patch

from bench.pipeline import CARE_TEAM, QUICK, WELCOME, Arrivals, options
from tools.dev.smtp_sink import Mailbox, SmtpSink


def mail(to: str, subject: str) -> EmailMessage:
    message = message_from_string(f"To: {to}\nSubject: {subject}\n\nbody\n", policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def arrive(mailbox: Mailbox, *messages: EmailMessage) -> None:
    for message in messages:
        mailbox.messages.append(message)
        mailbox.received_at.append(time.monotonic())


def test_welcomes_and_alerts_as_they_arrive_the_first_of_each_kept() -> None:
    sink = SmtpSink(port=0)
    arrivals = Arrivals(sink)
    arrive(sink.mailbox, mail("a@example.org", WELCOME), mail(CARE_TEAM, "Safety alert: episode ep-1"))
    assert set(arrivals.welcomes()) == {"a@example.org"}
    first = arrivals.welcomes()["a@example.org"]

    arrive(sink.mailbox, mail("a@example.org", WELCOME), mail("b@example.org", WELCOME), mail("c@example.org", "Other"))
    assert set(arrivals.welcomes()) == {"a@example.org", "b@example.org"}
    assert arrivals.welcomes()["a@example.org"] == first
    assert set(arrivals.alerts()) == {"ep-1"}


def test_each_mail_is_read_once() -> None:
    sink = SmtpSink(port=0)
    arrivals = Arrivals(sink)
    arrive(sink.mailbox, *(mail(f"p{n}@example.org", WELCOME) for n in range(5)))
    with patch.object(sink.mailbox, "arrivals", wraps=sink.mailbox.arrivals) as read:
        arrivals.welcomes()
        arrivals.alerts()
        arrivals.welcomes()
    assert [call.kwargs["since"] for call in read.call_args_list] == [0, 5, 5]


def test_quick_sets_defaults_and_a_knob_given_still_wins() -> None:
    assert options([]).episodes == 1000
    assert options(["--quick"]).episodes == QUICK["episodes"]
    assert options(["--quick", "--episodes", "1000"]).episodes == 1000
    assert options(["--quick", "--no-scale"]).scale is False
    assert options(["--quick"]).soak == 0
