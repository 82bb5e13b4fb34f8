"""The platform's record key: what makes a release or approval record impossible to forge.

Records of releases and approvals are kept where any caller of Prefect's API
can read and write (artifacts), so each carries an HMAC-SHA256 signature made
with a key that no API, block or flow parameter exposes: a 0600 file in the
home (``keys/release-signing.key``), which `slipway up` generates on a new
home and the flow-run processes of the platform's hosts read. A record whose
signature does not match was forged or edited, and is refused.

The key file also says when it was made. Records from before that moment
carry no signature; `SigningKey.created` lets the history accept those alone.

>>> key = SigningKey(b"k" * 32, datetime(2026, 1, 1, tzinfo=UTC))
>>> key.verify({"sha": "abc"}, key.sign({"sha": "abc"}))
True
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from slipway.errors import ConfigurationError
from slipway.private import write_private

if TYPE_CHECKING:
    from pathlib import Path

    from slipway.home import SlipwayHome

__all__ = ["SIGNING_KEY_FILE", "SigningKey", "canonical", "ensure_signing_key", "load_signing_key"]

SIGNING_KEY_FILE = "release-signing.key"
"""File name under ``<home>/keys/``: the key in hex, then when it was made (ISO 8601)."""


def canonical(record: Mapping[str, object]) -> bytes:
    """The bytes a signature covers: the record as JSON with sorted keys, no spaces."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class SigningKey:
    """The HMAC key and when it was made; the key never shows in a repr."""

    secret: bytes = field(repr=False)
    """32 random bytes."""
    created: datetime
    """When `slipway up` made it: records before this moment were never signed."""

    def sign(self, record: Mapping[str, object]) -> str:
        """``hmac-sha256:<hex>`` over `canonical` ``record``."""
        digest = hmac.new(self.secret, canonical(record), hashlib.sha256).hexdigest()
        return f"hmac-sha256:{digest}"

    def verify(self, record: Mapping[str, object], signature: str) -> bool:
        """Whether ``signature`` was made by this key over exactly ``record``; constant time."""
        return hmac.compare_digest(self.sign(record).encode(), signature.encode())


def _path(home: SlipwayHome) -> Path:
    return home.keys / SIGNING_KEY_FILE


def load_signing_key(home: SlipwayHome) -> SigningKey:
    """The home's record key.

    Raises:
        ConfigurationError: there is none (this host was never given it), or
            the file is unreadable.
    """
    path = _path(home)
    try:
        hexed, made = path.read_text().split()
        return SigningKey(bytes.fromhex(hexed), datetime.fromisoformat(made))
    except FileNotFoundError as e:
        raise ConfigurationError(
            f"this host has no record key ({path}), so it can neither sign nor check "
            "release and approval records",
            hint="start the platform with `slipway up`, which makes it; on a worker host, copy "
            f"the server home's keys/{SIGNING_KEY_FILE} there (mode 0600)",
        ) from e
    except ValueError as e:
        raise ConfigurationError(
            f"{path} is not a record key",
            hint="restore it from the server host or a backup; a new key cannot check old records",
        ) from e


def ensure_signing_key(home: SlipwayHome) -> tuple[SigningKey, bool]:
    """The home's record key, made (0600) when it has none; and whether it was just made."""
    if _path(home).exists():
        return load_signing_key(home), False
    key = SigningKey(secrets.token_bytes(32), datetime.now(UTC))
    write_private(_path(home), f"{key.secret.hex()} {key.created.isoformat()}\n")
    return key, True
