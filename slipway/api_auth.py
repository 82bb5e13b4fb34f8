"""The Prefect API's auth string: the one credential every part of the platform shows Prefect.

Prefect's server refuses every API request without it (HTTP basic auth,
``PREFECT_SERVER_API_AUTH_STRING``); its clients, workers and CLI send it
(``PREFECT_API_AUTH_STRING``), and the UI asks for it. `slipway up` generates
it on a new home and keeps it in ``<home>/keys/prefect-api-auth`` (0600); a
worker host is given the same file, or the variable. It is never printed:
`ApiAuth` holds it as a `SecretStr`.

>>> ApiAuth.parse("slipway:" + "x" * 32).username
'slipway'
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import SecretStr

from slipway.errors import ConfigurationError
from slipway.private import write_private

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from slipway.home import SlipwayHome

__all__ = [
    "API_AUTH_FILE",
    "CLIENT_VARIABLE",
    "MIN_PUBLIC_PASSWORD",
    "SERVER_VARIABLE",
    "ApiAuth",
    "client_api_auth",
    "ensure_api_auth",
    "http_auth",
    "read_api_auth",
]

API_AUTH_FILE = "prefect-api-auth"
"""File name under ``<home>/keys/``; it holds ``user:password`` and a newline."""
CLIENT_VARIABLE = "PREFECT_API_AUTH_STRING"
"""What Prefect's clients, workers and CLI read."""
SERVER_VARIABLE = "PREFECT_SERVER_API_AUTH_STRING"
"""What Prefect's server checks every request against; the server process alone gets it."""
MIN_PUBLIC_PASSWORD = 24
"""Characters a password needs before the server may be reached beyond loopback."""

_USER = "slipway"
_HINT = (
    "write `USER:PASSWORD` (no spaces) into {path} with mode 0600, or delete the file and "
    "`slipway up` generates one"
)


@dataclass(frozen=True)
class ApiAuth:
    """``user:password`` for Prefect's basic auth, wrapped so it never shows in a repr or log."""

    value: SecretStr
    """The whole ``user:password``."""

    @classmethod
    def parse(cls, raw: str, *, source: str = "the auth string") -> ApiAuth:
        """Check the form Prefect's server and UI expect: a user, a colon, a password.

        Raises:
            ConfigurationError: it is not ``user:password``, or has white space in it.
        """
        text = raw.strip()
        user, colon, password = text.partition(":")
        if not colon or not user or not password or any(c.isspace() for c in text):
            raise ConfigurationError(
                f"{source} is not of the form USER:PASSWORD",
                hint=_HINT.format(path=source),
            )
        return cls(SecretStr(text))

    @classmethod
    def generate(cls) -> ApiAuth:
        """A new random string: user ``slipway``, a 43-character password."""
        return cls(SecretStr(f"{_USER}:{secrets.token_urlsafe(32)}"))

    @property
    def username(self) -> str:
        """The user part, which the UI's login asks for with the password."""
        return self.value.get_secret_value().partition(":")[0]

    def require_strong(self, purpose: str) -> None:
        """Refuse a password too short to face a network beyond this host.

        Raises:
            ConfigurationError: it has fewer than `MIN_PUBLIC_PASSWORD` characters.
        """
        if len(self.value.get_secret_value().partition(":")[2]) < MIN_PUBLIC_PASSWORD:
            raise ConfigurationError(
                f"the Prefect API's auth string is too weak for {purpose}",
                hint=f"use a password of at least {MIN_PUBLIC_PASSWORD} characters in "
                f"<home>/keys/{API_AUTH_FILE}, or delete the file and `slipway up` generates one",
            )

    def httpx(self) -> httpx.BasicAuth:
        """The same credential for a plain httpx client."""
        import httpx

        user, _, password = self.value.get_secret_value().partition(":")
        return httpx.BasicAuth(user, password)


def _file(home: SlipwayHome) -> Path:
    return home.keys / API_AUTH_FILE


def read_api_auth(home: SlipwayHome) -> ApiAuth | None:
    """The home's auth string, or None when it has none yet.

    Raises:
        ConfigurationError: the file exists but does not hold ``user:password``.
    """
    path = _file(home)
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    return ApiAuth.parse(raw, source=str(path))


def ensure_api_auth(home: SlipwayHome) -> tuple[ApiAuth, bool]:
    """The home's auth string, generated (0600) when it has none; and whether it was just made."""
    found = read_api_auth(home)
    if found is not None:
        return found, False
    made = ApiAuth.generate()
    write_private(_file(home), made.value.get_secret_value() + "\n")
    return made, True


def client_api_auth(home: SlipwayHome, environ: dict[str, str] | None = None) -> ApiAuth | None:
    """What a client of this home's platform sends: the home's file, else ``PREFECT_API_AUTH_STRING``.

    A worker host gets the server's string either way: a copy of the server
    home's file, or the variable.
    """
    found = read_api_auth(home)
    if found is not None:
        return found
    env = os.environ if environ is None else environ
    raw = env.get(CLIENT_VARIABLE, "")
    return ApiAuth.parse(raw, source=CLIENT_VARIABLE) if raw.strip() else None


def http_auth() -> httpx.BasicAuth | None:
    """For a platform process's own httpx requests to Prefect: the auth its environment carries.

    `slipway up` gives every child ``PREFECT_API_AUTH_STRING``; Prefect's own
    client reads it by itself, plain httpx clients take it from here.
    """
    raw = os.environ.get(CLIENT_VARIABLE, "")
    return ApiAuth.parse(raw, source=CLIENT_VARIABLE).httpx() if raw.strip() else None
