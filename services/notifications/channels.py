"""Adapters that reach people: intake's contact and consent lookups, and the email, SMS and webhook senders."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage, Message
from email.utils import formataddr, parseaddr
from typing import Any

import aiosmtplib
import httpx
from async_lru import alru_cache
from opentelemetry.trace import SpanKind

from services.common.auth import Role, bearer
from services.common.bulk import GatheredLookups
from services.common.dependencies import Dependencies, DependencyDown
from services.common.intake_client import INTAKE, IntakeClient, path
from services.common.tracing import tracer
from stepwise_contract import Channel, ConsentRecipientKind
from stepwise_contract.webhooks import signed_headers

from .rendering import RenderedMessage
from .settings import NotificationsSettings


class DeliveryError(Exception):
    """A send that did not happen. ``permanent`` ones are not retried. A transient one says the channel is down
    (readiness, probing), unless it is ``recipient_only``: the channel works, and refused this recipient for now
    (a relay's greylisting), so this message alone waits."""

    def __init__(self, reason: str, *, permanent: bool, recipient_only: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.recipient_only = recipient_only


class NotWanted(Exception):
    """The message must not go out after all (consent withdrawn, opt-out, schedule changed): cancelled."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Contact:
    """How to reach one person now; looked up at send time and never stored."""

    email: str | None
    phone: str | None
    timezone: str | None = None

    def address(self, channel: str) -> str:
        address = self.email if channel == "email" else self.phone
        if not address:
            raise DeliveryError(f"no {'email address' if channel == 'email' else 'mobile number'} on file",
                                permanent=True)  # fmt: skip
        return address


SMTP, SMS_PROVIDER, CARE_TEAM_WEBHOOK = "smtp", "sms_provider", "care_team_webhook"
SMTP_CLOSING = 421
"""The relay's "service not available, closing the channel": the relay, not the recipient."""
PLANNING_LOOKUPS_KEPT_SECONDS = 2.0
"""How long intake's answer to "who may hear of this episode" is reused while messages are planned."""


@dataclass(frozen=True)
class QuestionnaireLink:
    """Intake's answer to a link request: the URL holds a secret token, so it lives only while a message is sent."""

    url: str = field(repr=False)
    expires_at: str

    def __repr__(self) -> str:
        return f"QuestionnaireLink(url=<hidden>, expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class Audience:
    """Who may hear of an episode: its (pseudonymous) patient (None: intake does not know the episode) and, per
    scope asked, (consent_id, recipient kind) of the supports a consent in force allows to be told; when asked,
    the channels the patient has a contact point for (None: not asked, or an intake that does not say); whether
    the patient had an episode before this one (None: not known: intake did not say, or is older than the field)."""

    patient_id: str | None
    recipients: dict[str, list[tuple[str, ConsentRecipientKind]]]
    patient_channels: frozenset[Channel] | None = None
    earlier_episodes: bool | None = None

    def supports(self, scope: str) -> list[tuple[str, ConsentRecipientKind]]:
        return list(self.recipients.get(scope, []))


AUDIENCES_AT_ONCE = 100
"""Episodes one ``POST /v1/audiences`` asks intake about at most (intake's own limit)."""


@dataclass(frozen=True)
class AudienceQuestion:
    """What planning an event's messages asks intake of its episode: the supports per scope and, for the welcome,
    the patient's channels and contact."""

    episode_id: str
    scopes: frozenset[str]
    patient_channels: bool

    def asked(self) -> dict[str, Any]:
        both = {"patient_channels": True, "patient_contact": True} if self.patient_channels else {}
        return {"episode_id": self.episode_id, "scope": sorted(self.scopes), **both}


class IntakeContacts:
    """Looks up contact data and consents at intake at send time, so no event and no notification holds them.

    Intake not answering (or answering 5xx) is an outage and a refused token a configuration mistake: both
    raise ``DependencyDown`` (the event or the message waits, and readiness says why), never a lost message.
    """

    def __init__(
        self,
        settings: NotificationsSettings,
        dependencies: Dependencies,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._intake = IntakeClient(
            settings.intake_url, settings.intake_token.get_secret_value(), Role.NOTIFICATIONS, dependencies, transport
        )
        # While an event's messages are planned, the same question comes several times: who may hear of this
        # episode (its patient, the supports of each scope). One request answers it, kept briefly; concurrent
        # identical lookups share that request; failures are not kept. Contact data is not kept: the welcome's
        # audience brings the patient's contact with it (``_welcome_contacts``) for the welcome sent as it is planned,
        # which takes it within seconds or leaves it; a support's consent is checked again when a message is sent.
        self.audience = alru_cache(maxsize=4096, ttl=PLANNING_LOOKUPS_KEPT_SECONDS)(self._audience)
        self._audiences = GatheredLookups(self._ask_audiences, at_once=AUDIENCES_AT_ONCE)
        self._welcome_contacts: dict[str, tuple[float, Contact]] = {}

    async def patient_contact(self, episode_id: str) -> Contact:
        """The patient's email address, mobile number and time zone (None when not recorded): the one the welcome's
        audience brought seconds ago (taken once), else asked of intake now."""
        brought = self._welcome_contacts.pop(episode_id, None)
        if brought is not None and time.monotonic() - brought[0] <= PLANNING_LOOKUPS_KEPT_SECONDS:
            return brought[1]
        response = await self._intake.get(path("episodes", episode_id, "contact"))
        if response.status_code == 404:
            raise DeliveryError("episode unknown to intake", permanent=True)
        return _contact(response)

    async def consented_contact(self, episode_id: str, consent_id: str) -> Contact:
        """A support's contact (for the alumni group: the graduate's), only while the consent is in force."""
        response = await self._intake.get(path("episodes", episode_id, "consents", consent_id, "contact"))
        if response.status_code in (404, 410):
            raise NotWanted("consent no longer in force")
        return _contact(response)

    async def questionnaire_link(self, episode_id: str, instruments: list[str]) -> QuestionnaireLink:
        """A fresh single-use link to intake's questionnaire page for ``instruments`` (made at send time, never
        stored or logged: a refusal names the status only)."""
        response = await self._intake.post(path("episodes", episode_id, "questionnaire-links"),
                                           {"instruments": instruments})  # fmt: skip
        code = response.status_code
        if code != 201:  # 404: intake knows no such episode; 422: it takes none of these instruments
            raise DeliveryError(f"intake made no questionnaire link ({code})", permanent=code < 500 and code != 429)
        body = response.json()
        return QuestionnaireLink(url=str(body["url"]), expires_at=str(body["expires_at"]))

    async def episode_known(self, episode_id: str) -> bool:
        """Whether intake has the episode (asked afresh, never cached; no PII is read)."""
        response = await self._intake.get(path("episodes", episode_id, "patient"))
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise DependencyDown(INTAKE, f"answered {response.status_code}")
        return True

    async def _audience(self, episode_id: str, scopes: frozenset[str], patient_channels: bool = False) -> Audience:
        """With ``patient_channels`` (the welcome, whose message to the patient goes as it is planned): the patient's
        contact too, kept for that send alone (``patient_contact``). Asked with the other lanes' questions of the
        consumer batch in one request (``GatheredLookups``)."""
        body = await self._audiences.ask(AudienceQuestion(episode_id, scopes, patient_channels))
        if body is None:
            return Audience(None, {})
        if body.get("patient_contact") is not None:
            self._keep_for_the_welcome(episode_id, _contact_of(body["patient_contact"]))
        recipients = {scope: [(entry["consent_id"], entry["recipient_kind"]) for entry in entries]
                      for scope, entries in body["recipients"].items()}  # fmt: skip
        channels, earlier = body.get("patient_channels"), body.get("earlier_episodes")
        return Audience(str(body["patient_id"]), recipients, None if channels is None else frozenset(channels),
                        earlier if isinstance(earlier, bool) else None)  # fmt: skip

    async def _ask_audiences(self, questions: list[AudienceQuestion]) -> list[dict[str, Any] | None]:
        """Intake's answer to each question (None: it does not know the episode), in one request; an intake of an
        earlier release, without ``POST /v1/audiences``, is asked one episode at a time."""
        response = await self._intake.post(path("audiences"), {"episodes": [q.asked() for q in questions]})
        if response.status_code in (404, 405):
            return list(await asyncio.gather(*(self._ask_audience(question) for question in questions)))
        answers: list[dict[str, Any] | None] = _json(response)["audiences"]
        return answers

    async def _ask_audience(self, question: AudienceQuestion) -> dict[str, Any] | None:
        asked: list[tuple[str, str | int | float | bool | None]] = [("scope", s) for s in sorted(question.scopes)]
        asked += [("patient_channels", "true"), ("patient_contact", "true")] if question.patient_channels else []
        response = await self._intake.get(path("episodes", question.episode_id, "audience"), httpx.QueryParams(asked))
        if response.status_code == 404:
            return None
        answer: dict[str, Any] = _json(response)
        return answer

    def _keep_for_the_welcome(self, episode_id: str, contact: Contact) -> None:
        """Kept seconds at most: what the welcome's send does not take by then is dropped (and asked again)."""
        now = time.monotonic()
        for stale in [e for e, (at, _) in self._welcome_contacts.items() if now - at > PLANNING_LOOKUPS_KEPT_SECONDS]:
            del self._welcome_contacts[stale]
        self._welcome_contacts[episode_id] = (now, contact)

    async def close(self) -> None:
        await self._intake.close()


def _json(response: httpx.Response) -> Any:
    if response.status_code != 200:
        raise DeliveryError(f"intake answered {response.status_code}", permanent=False)
    return response.json()


def _contact(response: httpx.Response) -> Contact:
    return _contact_of(_json(response))


def _contact_of(contact: dict[str, Any]) -> Contact:
    return Contact(contact.get("email"), contact.get("phone"), contact.get("timezone"))


SMTP_SPAN = {"stepwise.channel": "email"}


SMTP_CHECKED_AFTER_SECONDS = 5.0
"""A connection unused for longer is asked NOOP before a message goes on it (a relay may have closed it meanwhile)."""
SMTP_KEPT_SECONDS = 60.0
"""A connection unused for longer is closed rather than used again (RFC 5321 4.5.3.2.7 has a relay wait at least five
minutes before it closes an idle one)."""
SMTP_KEPT_AT_MOST = 8
"""Idle connections kept open at most: a lane sends a few messages at once (``NOTIFICATIONS_CONCURRENCY``)."""


class SmtpConnections:
    """Connections to the clinic's relay, kept open between messages: the greeting, EHLO, STARTTLS and login happen
    once per connection, not once per message. One connection carries one message at a time; a connection that
    failed in any way is closed, never used again."""

    def __init__(self, settings: NotificationsSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []

    async def take(self) -> aiosmtplib.SMTP:
        """An open, logged-in connection: the most recently used one that still answers, or a new one."""
        while self._idle:
            smtp, since = self._idle.pop()
            idle = self._clock() - since
            if smtp.is_connected and idle <= SMTP_KEPT_SECONDS and await _answers(smtp, idle):
                return smtp
            smtp.close()
        password = self._settings.smtp_password
        smtp = aiosmtplib.SMTP(
            hostname=self._settings.smtp_host,
            port=self._settings.smtp_port,
            username=self._settings.smtp_username,
            password=password.get_secret_value() if password is not None else None,
            start_tls=self._settings.smtp_starttls,
            timeout=self._settings.smtp_timeout_seconds,
        )
        await smtp.connect()
        return smtp

    def give_back(self, smtp: aiosmtplib.SMTP) -> None:
        """A connection whose message went out (or was refused cleanly), for the next message."""
        self._idle.append((smtp, self._clock()))
        while len(self._idle) > SMTP_KEPT_AT_MOST:
            self._idle.pop(0)[0].close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()


async def _answers(smtp: aiosmtplib.SMTP, idle: float) -> bool:
    """Whether a connection unused for ``idle`` seconds can carry a message (asked only after a pause)."""
    if idle <= SMTP_CHECKED_AFTER_SECONDS:
        return True
    try:
        await smtp.noop()
    except (aiosmtplib.SMTPException, OSError):
        return False
    return True


UTF8_QP = Charset("utf-8")
UTF8_QP.body_encoding = QP
"""A text's body in UTF-8, quoted-printable: as written where it is ASCII, 7-bit clean whatever a template holds."""


def composed(sender: tuple[str, str], to: str, message: RenderedMessage, message_id: str) -> Message:
    """The email from ``sender`` (its display name, empty for none, and its address) to ``to``. The classic message
    class (``compat32``) takes headers as given where ``EmailMessage`` parses each one and folds it again: a fifth of
    the CPU (about 0.23 ms an email instead of 1.1 ms; docs/performance.md, "Issue 31, sixth round"). An address that
    is not ASCII is written as it is (SMTPUTF8), which only ``EmailMessage`` does."""
    name, address = sender
    subject = " ".join(message.subject.split())  # one line whatever the template gave
    if not (address.isascii() and to.isascii()):
        email = EmailMessage()
        email["From"], email["To"], email["Subject"] = formataddr(sender), to, subject
        email["Message-ID"] = message_id
        email.set_content(message.body)
        return email
    mail = Message()
    mail["From"] = formataddr((name, address), "utf-8")  # a display name not in ASCII: encoded (RFC 2047)
    mail["To"] = to
    mail["Subject"] = subject if subject.isascii() else Header(subject, "utf-8", header_name="Subject").encode()
    mail["Message-ID"] = message_id
    mail.set_payload(message.body, UTF8_QP)  # text/plain, its charset and its transfer encoding
    return mail


class EmailSender:
    """Sends an email through the clinic's relay over a kept connection (``SmtpConnections``)."""

    def __init__(self, settings: NotificationsSettings, connections: SmtpConnections | None = None) -> None:
        self._connections = connections or SmtpConnections(settings)
        self._sender = parseaddr(settings.smtp_from)
        """SMTP_FROM's display name and address, the address the envelope's too."""

    async def send(self, notification_id: str, to: str, message: RenderedMessage) -> None:
        # A stable Message-ID lets a receiving system spot the rare resend after a crash.
        email = composed(self._sender, to, message, f"<{notification_id}@stepwise>")
        try:
            with tracer.start_as_current_span("smtp send", kind=SpanKind.CLIENT, attributes=SMTP_SPAN):
                await self._send(email, to)
        except aiosmtplib.SMTPAuthenticationError as error:
            raise DependencyDown(
                SMTP, f"refused our login ({error.code}): check SMTP_USERNAME and SMTP_PASSWORD", misconfigured=True
            ) from None
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refusal.code for refusal in error.recipients]
            # 4xx: this recipient, for now (greylisting, a full mailbox); 421 alone is the relay closing down.
            raise DeliveryError(f"recipient refused ({codes})", permanent=all(c >= 500 for c in codes),
                                recipient_only=SMTP_CLOSING not in codes) from None  # fmt: skip
        except aiosmtplib.SMTPResponseException as error:
            raise DeliveryError(f"SMTP {error.code}", permanent=error.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            raise DeliveryError(f"SMTP unavailable: {type(error).__name__}", permanent=False) from None

    async def _send(self, email: Message, to: str) -> None:
        smtp = await self._connections.take()
        try:
            await smtp.send_message(email, sender=self._sender[1], recipients=[to])
        except BaseException:
            smtp.close()
            raise
        self._connections.give_back(smtp)

    async def close(self) -> None:
        await self._connections.close()


async def _post(
    client: httpx.AsyncClient, url: str, what: str, dependency: str, when_refused: str, **request: Any
) -> None:
    """POST to a provider: unreachable or 408/429/5xx is transient, a refused credential a configuration mistake
    (``when_refused`` says what to set), another 4xx permanent."""
    try:
        response = await client.post(url, **request)
    except httpx.HTTPError as error:
        raise DeliveryError(f"{what} unreachable: {type(error).__name__}", permanent=False) from None
    if response.status_code in (401, 403):
        detail = f"refused our credentials ({response.status_code}): {when_refused}"
        raise DependencyDown(dependency, detail, misconfigured=True)
    _raise_for_answer(what, response.status_code)


def _raise_for_answer(what: str, code: int) -> None:
    if code >= 400:
        # 408 and 429 and any 5xx are worth another try; other 4xx will not change by retrying.
        raise DeliveryError(f"{what} answered {code}", permanent=code < 500 and code not in (408, 429))


class SmsSender:
    """Sends a text through the clinic's SMS provider: a JSON POST, retried safely under an idempotency key.

    Body: ``{"to", "from", "body", "reference"}``; headers: ``Authorization: Bearer <token>`` and
    ``Idempotency-Key: <notification id>``, so a provider that honours it drops a resend after a crash.
    """

    def __init__(self, settings: NotificationsSettings, timeout: float = 10.0) -> None:
        self._url = settings.sms_provider_url
        self._from = settings.sms_from
        self._client = httpx.AsyncClient(
            timeout=timeout, headers=bearer(settings.sms_provider_token.get_secret_value())
        )

    @property
    def configured(self) -> bool:
        return bool(self._url)

    async def send(self, notification_id: str, to: str, message: RenderedMessage) -> None:
        if not self._url:
            raise DeliveryError("no SMS provider configured", permanent=True)
        body = {"to": to, "from": self._from, "body": message.body, "reference": notification_id}
        await _post(self._client, self._url, "SMS provider", SMS_PROVIDER,
                    "set SMS_PROVIDER_TOKEN to the token the provider gave the clinic",
                    json=body, headers={"Idempotency-Key": notification_id})  # fmt: skip

    async def close(self) -> None:
        await self._client.aclose()


class WebhookSender:
    """POSTs a JSON body signed per stepwise_contract.webhooks (HMAC-SHA256 over timestamp and body)."""

    def __init__(self, secret: str, timeout: float = 10.0) -> None:
        self._secret = secret
        self._client = httpx.AsyncClient(timeout=timeout)

    async def send(self, notification_id: str, url: str, payload: dict[str, object]) -> None:
        body = json.dumps(payload, sort_keys=True).encode()
        headers = signed_headers(self._secret, int(time.time()), body, notification_id)
        await _post(self._client, url, "webhook", CARE_TEAM_WEBHOOK, "WEBHOOK_SECRET must be the secret the receiver "
                    "checks", content=body, headers=headers)  # fmt: skip

    async def close(self) -> None:
        await self._client.aclose()
