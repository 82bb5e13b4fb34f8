"""Email as a Prefect notification block, so automations can send mail to a team.

Prefect's ``send-notification`` action takes only blocks with the ``notify``
capability, and prefect-email's `EmailServerCredentials` has none (it backs
the ``email_send_message`` task instead). `EmailNotification` is the smallest
bridge between the two: it keeps prefect-email's credentials block, nested,
and sends one plain-text message through its SMTP connection.

Prefect's server runs the action, so it must know this class: the package
declares this module as a ``prefect.collections`` entry point, which Prefect
imports before it looks a block type up.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

from prefect.blocks.abstract import NotificationBlock, NotificationError
from prefect_email import EmailServerCredentials
from pydantic import Field, field_validator

__all__ = ["EmailNotification"]


class EmailNotification(NotificationBlock):
    """Sends a notification as an email through prefect-email's SMTP credentials.

    Example:
        ```python
        from blocks.notifications import EmailNotification
        from prefect_email import EmailServerCredentials

        EmailNotification(
            credentials=EmailServerCredentials(smtp_server="smtp.example.com",
                                               smtp_type="STARTTLS", username="alerts"),
            email_from="slipway@example.com",
            email_to=["payments@example.com"],
        ).save("team-payments")
        ```
    """

    _block_type_name = "Slipway Email Notification"
    _block_type_slug = "slipway-email-notification"
    _documentation_url = None

    credentials: EmailServerCredentials = Field(
        title="SMTP server",
        description="prefect-email's server credentials: host, port, TLS mode, login.",
    )
    email_from: str = Field(
        title="From", description="The sender address, e.g. slipway@example.com."
    )
    email_to: list[str] = Field(
        title="To", description="Who receives the notifications: one or more addresses."
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, title="Timeout", description="Seconds to wait for the SMTP server."
    )

    @field_validator("email_from")
    @classmethod
    def _one_address(cls, value: str) -> str:
        return _address(value)

    @field_validator("email_to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one recipient")
        return [_address(v) for v in value]

    async def notify(self, body: str, subject: str | None = None) -> None:
        """Send ``body`` to every recipient; raises `NotificationError` when asked to."""
        message = EmailMessage()
        message["Subject"] = subject or "Slipway notification"
        message["From"] = self.email_from
        message["To"] = ", ".join(self.email_to)
        message.set_content(body)
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as e:
            self.logger.error("email to %s failed: %s", ", ".join(self.email_to), e)
            if self._raise_on_failure:
                raise NotificationError(log=f"{type(e).__name__}: {e}") from e

    def _send(self, message: EmailMessage) -> None:
        server = self.credentials.get_server()
        try:
            server.timeout = self.timeout_seconds
            server.send_message(message)
        finally:
            server.quit()


def _address(value: str) -> str:
    value = value.strip()
    local, at, domain = value.partition("@")
    if not at or not local or not domain or any(c.isspace() or c in ",;<>" for c in value):
        raise ValueError(f"{value!r} is not an email address")
    return value
