"""Adapters that reach people: intake's contact and consent lookups, and the email, SMS and webhook senders."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
import httpx

from stepwise_contract import ConsentRecipientKind
from stepwise_contract.webhooks import signed_headers

from .rendering import RenderedMessage
from .settings import NotificationsSettings


class DeliveryError(Exception):
    """A send that did not happen. ``permanent`` ones are not retried."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


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


class IntakeContacts:
    """Looks up contact data and consents at intake at send time, so no event and no notification holds them."""

    def __init__(self, settings: NotificationsSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            base_url=settings.intake_url,
            headers={"Authorization": f"Bearer {settings.intake_token}"},
            timeout=10.0,
            transport=transport,
        )

    async def patient_contact(self, episode_id: str) -> Contact:
        """The patient's email address, mobile number and time zone (None when not recorded)."""
        response = await self._get(f"/v1/episodes/{episode_id}/contact")
        if response.status_code == 404:
            raise DeliveryError("episode unknown to intake", permanent=True)
        self._check(response)
        contact = response.json()
        return Contact(contact.get("email"), contact.get("phone"), contact.get("timezone"))

    async def consented_contact(self, episode_id: str, consent_id: str) -> Contact:
        """A support's contact (for the alumni group: the graduate's), only while the consent is in force."""
        response = await self._get(f"/v1/episodes/{episode_id}/consents/{consent_id}/contact")
        if response.status_code in (404, 410):
            raise NotWanted("consent no longer in force")
        self._check(response)
        contact = response.json()
        return Contact(contact.get("email"), contact.get("phone"), contact.get("timezone"))

    async def supports(self, episode_id: str, scope: str) -> list[tuple[str, ConsentRecipientKind]]:
        """(consent_id, recipient kind) of everyone a consent in force allows to hear about ``scope`` now."""
        response = await self._lookup(f"/v1/episodes/{episode_id}/recipients", {"scope": scope})
        if response is None:
            return []
        return [(entry["consent_id"], entry["recipient_kind"]) for entry in response.json()]

    async def patient_of(self, episode_id: str) -> str | None:
        """The pseudonymous id of the episode's patient (None: intake does not know the episode)."""
        response = await self._lookup(f"/v1/episodes/{episode_id}/patient")
        return None if response is None else str(response.json()["patient_id"])

    async def _lookup(self, path: str, params: dict[str, str] | None = None) -> httpx.Response | None:
        """For event handlers: a failure raises, so the consumer retries the event; None on 404."""
        try:
            response = await self._client.get(path, params=params)
        except httpx.HTTPError as error:
            raise RuntimeError(f"intake unreachable: {type(error).__name__}") from None
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response

    async def _get(self, path: str) -> httpx.Response:
        try:
            return await self._client.get(path)
        except httpx.HTTPError as error:
            raise DeliveryError(f"intake unreachable: {type(error).__name__}", permanent=False) from None

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code in (401, 403):
            raise DeliveryError(f"intake refused the service token ({response.status_code})", permanent=False)
        if response.status_code != 200:
            raise DeliveryError(f"intake answered {response.status_code}", permanent=False)

    async def close(self) -> None:
        await self._client.aclose()


class EmailSender:
    def __init__(self, settings: NotificationsSettings) -> None:
        self._settings = settings

    async def send(self, notification_id: str, to: str, message: RenderedMessage) -> None:
        email = EmailMessage()
        email["From"] = self._settings.smtp_from
        email["To"] = to
        email["Subject"] = message.subject
        # A stable Message-ID lets a receiving system spot the rare resend after a crash.
        email["Message-ID"] = f"<{notification_id}@stepwise>"
        email.set_content(message.body)
        try:
            await aiosmtplib.send(
                email,
                hostname=self._settings.smtp_host,
                port=self._settings.smtp_port,
                username=self._settings.smtp_username,
                password=self._settings.smtp_password,
                start_tls=self._settings.smtp_starttls,
                timeout=self._settings.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refusal.code for refusal in error.recipients]
            raise DeliveryError(f"recipient refused ({codes})", permanent=all(c >= 500 for c in codes)) from None
        except aiosmtplib.SMTPResponseException as error:
            raise DeliveryError(f"SMTP {error.code}", permanent=error.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            raise DeliveryError(f"SMTP unavailable: {type(error).__name__}", permanent=False) from None


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
            timeout=timeout, headers={"Authorization": f"Bearer {settings.sms_provider_token}"}
        )

    @property
    def configured(self) -> bool:
        return bool(self._url)

    async def send(self, notification_id: str, to: str, message: RenderedMessage) -> None:
        if not self._url:
            raise DeliveryError("no SMS provider configured", permanent=True)
        body = {"to": to, "from": self._from, "body": message.body, "reference": notification_id}
        try:
            response = await self._client.post(self._url, json=body, headers={"Idempotency-Key": notification_id})
        except httpx.HTTPError as error:
            raise DeliveryError(f"SMS provider unreachable: {type(error).__name__}", permanent=False) from None
        _raise_for_answer("SMS provider", response.status_code)

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
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise DeliveryError(f"webhook unreachable: {type(error).__name__}", permanent=False) from None
        _raise_for_answer("webhook", response.status_code)

    async def close(self) -> None:
        await self._client.aclose()
