"""Adapters that reach people: intake's contact lookup and the SMTP sender."""

from __future__ import annotations

import json
import time
from email.message import EmailMessage

import aiosmtplib
import httpx

from stepwise_contract.webhooks import signed_headers

from .rendering import RenderedMessage
from .settings import NotificationsSettings


class DeliveryError(Exception):
    """A send that did not happen. ``permanent`` ones are not retried."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class ConsentWithdrawn(DeliveryError):
    """The consent naming this recipient was revoked or expired: the message must not go out."""

    def __init__(self) -> None:
        super().__init__("consent no longer in force", permanent=True)


class IntakeContacts:
    """Looks up contact data at send time, so no event and no notification document holds it."""

    def __init__(self, settings: NotificationsSettings) -> None:
        self._client = httpx.AsyncClient(
            base_url=settings.intake_url,
            headers={"Authorization": f"Bearer {settings.intake_token}"},
            timeout=10.0,
        )

    async def patient_contact(self, episode_id: str) -> tuple[str, str | None]:
        """The patient's email address and time zone (None when not recorded)."""
        try:
            response = await self._client.get(f"/v1/episodes/{episode_id}/contact")
        except httpx.HTTPError as error:
            raise DeliveryError(f"intake unreachable: {type(error).__name__}", permanent=False) from None
        if response.status_code == 404:
            raise DeliveryError("episode unknown to intake", permanent=True)
        if response.status_code in (401, 403):
            raise DeliveryError(f"intake refused the service token ({response.status_code})", permanent=False)
        if response.status_code != 200:
            raise DeliveryError(f"intake answered {response.status_code}", permanent=False)
        contact = response.json()
        if not contact.get("email"):
            raise DeliveryError("no email address on file", permanent=True)
        return str(contact["email"]), contact.get("timezone")

    async def supports(self, episode_id: str, scope: str) -> list[tuple[str, str]]:
        """(consent_id, recipient kind) of supports who may be told about ``scope`` now."""
        try:
            response = await self._client.get(f"/v1/episodes/{episode_id}/recipients", params={"scope": scope})
        except httpx.HTTPError as error:
            raise RuntimeError(f"intake unreachable: {type(error).__name__}") from None  # the consumer retries
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return [(entry["consent_id"], entry["recipient_kind"]) for entry in response.json()]

    async def consented_email(self, episode_id: str, consent_id: str) -> str:
        """The support's address, only while the consent naming them is in force (checked at send time)."""
        try:
            response = await self._client.get(f"/v1/episodes/{episode_id}/consents/{consent_id}/contact")
        except httpx.HTTPError as error:
            raise DeliveryError(f"intake unreachable: {type(error).__name__}", permanent=False) from None
        if response.status_code in (404, 410):
            raise ConsentWithdrawn
        if response.status_code != 200:
            raise DeliveryError(f"intake answered {response.status_code}", permanent=False)
        email = response.json().get("email")
        if not email:
            raise DeliveryError("no email address for this support", permanent=True)
        return str(email)

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
        code = response.status_code
        if code >= 400:
            # 408 and 429 and any 5xx are worth another try; other 4xx will not change by retrying.
            raise DeliveryError(f"webhook answered {code}", permanent=code < 500 and code not in (408, 429))

    async def close(self) -> None:
        await self._client.aclose()
