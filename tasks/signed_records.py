"""Records that anyone may read and nobody may forge: signed rows of Prefect table artifacts.

Release and approval records live as versions of keyed table artifacts, so the
Artifacts page shows each history as it grows. Any caller of Prefect's API
can create or edit an artifact, so every row carries ``signature``: an HMAC
(`slipway.signing`) over the row exactly as it is stored, made with the
record key of the platform's hosts, which no API exposes. `read_verified`
hands back only rows whose signature matches; a forged or edited row is
refused, logged, and returned apart so a caller can say why something it was
asked for is not there.

Rows from before the record key existed carry no signature. They are kept as
history only while their artifact was created *and* last changed before the
key was made (times Prefect's server sets, not its callers): an old artifact
edited since is refused like a forgery.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prefect import get_client, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.objects import Artifact
from prefect.client.schemas.sorting import ArtifactSort
from prefect.exceptions import MissingContextError
from pydantic import BaseModel, ValidationError

from slipway.home import SlipwayHome
from slipway.signing import SigningKey, load_signing_key

__all__ = [
    "SIGNATURE",
    "Refused",
    "Verified",
    "publish_signed",
    "read_verified",
    "record_key",
    "verify_artifacts",
]

SIGNATURE = "signature"
"""The column that holds a row's signature."""

R = TypeVar("R", bound=BaseModel)


def _log() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def record_key() -> SigningKey:
    """The record key of this host's home (``$SLIPWAY_HOME``)."""
    return load_signing_key(SlipwayHome.from_env())


@dataclass(frozen=True)
class Refused:
    """A row that failed its check: forged, edited, or unsigned after the key existed."""

    artifact: str
    """The artifact's id."""
    row: dict[str, Any]
    """The row as it was found."""
    reason: str


@dataclass(frozen=True)
class Verified(Generic[R]):
    """The genuine records of a history, newest artifact first, and what was refused."""

    records: list[R] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def publish_signed(record: BaseModel, *, key: str, description: str) -> dict[str, str]:
    """Sign ``record`` and add it as the newest version of the table artifact ``key``.

    Returns:
        The row as stored, signature included.
    """
    row = {name: str(value) for name, value in record.model_dump(mode="json").items()}
    row.pop(SIGNATURE, None)
    row[SIGNATURE] = record_key().sign(row)
    create_table_artifact(table=[row], key=key, description=description)
    return row


def read_verified(key: str, model: type[R], *, limit: int = 200) -> Verified[R]:
    """The rows of every version of the table artifact ``key`` that pass their check."""
    return verify_artifacts(_versions(key, limit), model)


def verify_artifacts(
    artifacts: Iterable[Artifact | Mapping[str, Any]],
    model: type[R],
    *,
    belongs: Callable[[R, Artifact], bool] = lambda _record, _artifact: True,
) -> Verified[R]:
    """The rows of ``artifacts`` (as Prefect's API returns them) that pass their check, in order.

    A genuine record for which ``belongs`` says no (filed under another key)
    is left out without being refused.
    """
    signing = record_key()
    found: Verified[R] = Verified()
    for item in artifacts:
        artifact = item if isinstance(item, Artifact) else Artifact.model_validate(item)
        for row in _rows(artifact):
            reason = _problem(row, artifact, signing)
            if reason is None:
                try:
                    record = model.model_validate(row)
                except ValidationError as e:
                    reason = f"unreadable: {e.error_count()} field errors"
                else:
                    if belongs(record, artifact):
                        found.records.append(record)
                    continue
            _log().warning(
                "Refused a record of %s (artifact %s): %s", artifact.key, artifact.id, reason
            )
            found.refused.append(Refused(str(artifact.id), row, reason))
    return found


def _rows(artifact: Artifact) -> list[dict[str, Any]]:
    """The rows of a table artifact; one row saying what it held when it is no table."""
    try:
        data: Any = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        return [dict(row) for row in data or []]
    except (ValueError, TypeError):
        return [{"data": str(artifact.data)[:200]}]


def _problem(row: dict[str, Any], artifact: Artifact, signing: SigningKey) -> str | None:
    """Why ``row`` is not a genuine record, or None when it is."""
    signature = row.get(SIGNATURE)
    if not isinstance(signature, str) or not signature:
        times = [t for t in (artifact.created, artifact.updated) if t is not None]
        if times and max(times) < signing.created:
            return None  # history from before records were signed, untouched since
        return "it carries no signature, and was written after records were signed"
    unsigned = {k: v for k, v in row.items() if k != SIGNATURE}
    if not signing.verify(unsigned, signature):
        return "its signature does not match: the record was forged or edited"
    return None


def _versions(key: str, limit: int) -> list[Artifact]:
    body = {
        "artifacts": ArtifactFilter(key=ArtifactFilterKey(any_=[key])).model_dump(
            mode="json", exclude_unset=True
        ),
        "sort": ArtifactSort.CREATED_DESC.value,
        "limit": limit,
        "offset": 0,
    }
    # Not `read_artifacts`: it sends null run filters, which this server refuses,
    # and empty ones drop the records a flow wrote outside any task run.
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/artifacts/filter", json=body)
    return [Artifact.model_validate(item) for item in response.json()]
