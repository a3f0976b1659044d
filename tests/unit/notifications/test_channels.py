"""The email a message becomes: what a mail program reads back is what the template rendered, in any script."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtplib.email import flatten_message
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.channels import composed
from services.notifications.rendering import RenderedMessage

SENDER = ("Clínica Care team", "care-team@clinic.example")
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=300)
LINES = st.lists(TEXT, max_size=5).map("\n".join)


def read_back(sender: tuple[str, str], to: str, message: RenderedMessage) -> EmailMessage:
    """The email as a receiving mail program reads it."""
    email = composed(sender, to, message, "<n-1@stepwise>")
    flat = flatten_message(email, utf8=not to.isascii())  # as aiosmtplib sends it
    parsed = message_from_bytes(flat, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@given(subject=TEXT, body=LINES)
def test_the_subject_and_the_text_read_back_as_rendered(subject: str, body: str) -> None:
    email = read_back(SENDER, "pat@example.org", RenderedMessage(subject=subject, body=body))
    assert str(email["Subject"]) == " ".join(subject.split())
    assert email.get_content().replace("\r\n", "\n").rstrip("\n") == body.rstrip("\n")


def test_the_headers_a_mail_program_shows() -> None:
    email = read_back(SENDER, "pat@example.org", RenderedMessage(subject="Your schedule", body="See you on Monday."))
    assert (email["From"].addresses[0].display_name, email["From"].addresses[0].addr_spec) == (
        "Clínica Care team", "care-team@clinic.example"
    )  # fmt: skip
    assert (str(email["To"]), str(email["Message-ID"])) == ("pat@example.org", "<n-1@stepwise>")
    assert email["Content-Transfer-Encoding"] == "quoted-printable" and email.get_content_charset() == "utf-8"


def test_an_address_not_in_ascii_is_written_as_it_is() -> None:
    email = read_back(SENDER, "josé@exämple.org", RenderedMessage(subject="Welcome", body="Hello"))
    assert str(email["To"]) == "josé@exämple.org" and email.get_content().strip() == "Hello"


def test_a_subject_is_one_line_whatever_the_template_gave() -> None:
    email = composed(SENDER, "pat@example.org", RenderedMessage(subject="Welcome\r\nBcc: x@y.z", body="Hi"), "<n@s>")
    assert email["Bcc"] is None and str(email["Subject"]) == "Welcome Bcc: x@y.z"
