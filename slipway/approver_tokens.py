"""Approvers' tokens: the credential a person shows with an approval, kept only as hashes.

Prefect's server knows one shared credential, so it cannot tell who resumed
a paused run. An approval therefore names its approver and carries that
approver's own token. `slipway approver issue NAME` makes one, prints it
once, and keeps only a salted SHA-256 of it in ``<home>/keys/approvers.json``
(0600): no API, block or flow parameter exposes it, and the flow-run
processes of the platform's hosts read it to check an approval. Issuing again
replaces the old token; revoking removes it.

Tokens are 256 random bits, so a salted SHA-256 is as good as a slow hash:
there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from slipway.errors import ConfigurationError, InvalidRequest
from slipway.private import write_private

if TYPE_CHECKING:
    from pathlib import Path

    from slipway.home import SlipwayHome

__all__ = ["APPROVERS_FILE", "ApproverTokens", "IssuedToken"]

APPROVERS_FILE = "approvers.json"
"""File name under ``<home>/keys/``."""

_NAME = re.compile(r"^[A-Za-z0-9]+([-_.][A-Za-z0-9]+)*$")
"""A Backstage entity name: how the catalog's groups name their members and approvers."""
_PREFIX = "slw_"


@dataclass(frozen=True)
class IssuedToken:
    """What `ApproverTokens.list` shows of a token: never the token."""

    name: str
    issued_at: datetime


class ApproverTokens:
    """The approvers' token hashes of one home."""

    def __init__(self, home: SlipwayHome) -> None:
        self._path: Path = home.keys / APPROVERS_FILE

    def issue(self, name: str) -> SecretStr:
        """A new token for ``name``, replacing any earlier one; only its hash is kept.

        Raises:
            InvalidRequest: ``name`` is not a user name as the catalog's groups
                list them (letters and digits joined by ``-``, ``_`` or ``.``).
        """
        _check_name(name)
        token = _PREFIX + secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        entries = self._read()
        entries[name] = {
            "salt": salt,
            "hash": _digest(salt, token),
            "issued_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._write(entries)
        return SecretStr(token)

    def revoke(self, name: str) -> bool:
        """Remove ``name``'s token; returns whether there was one."""
        entries = self._read()
        if entries.pop(name, None) is None:
            return False
        self._write(entries)
        return True

    def list(self) -> list[IssuedToken]:
        """Who holds a token, and since when; sorted by name."""
        return [
            IssuedToken(name, datetime.fromisoformat(str(entry["issued_at"])))
            for name, entry in sorted(self._read().items())
        ]

    def verify(self, name: str, token: SecretStr) -> bool:
        """Whether ``token`` is the one issued to ``name``; constant time, False for anyone else."""
        entry = self._read().get(name)
        if entry is None:
            return False
        found = _digest(str(entry["salt"]), token.get_secret_value())
        return hmac.compare_digest(found.encode(), str(entry["hash"]).encode())

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise ConfigurationError(
                f"{self._path} is not readable JSON",
                hint="restore it from a backup, or delete it and issue every approver a new token",
            ) from e
        if not isinstance(data, dict):
            raise ConfigurationError(f"{self._path} does not hold approvers by name")
        return data

    def _write(self, entries: dict[str, dict[str, Any]]) -> None:
        write_private(self._path, json.dumps(entries, indent=2, sort_keys=True) + "\n")


def _check_name(name: str) -> str:
    if len(name) > 63 or not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"approver name {name!r} is not a user name",
            hint="use the name the group lists: letters and digits joined by '-', '_' or '.'",
        )
    return name


def _digest(salt: str, token: str) -> str:
    return hashlib.sha256(f"{salt}:{token}".encode()).hexdigest()
