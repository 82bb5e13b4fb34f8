"""Live health of every environment: ``/healthz`` of each, probed in the background.

The portal asks each provisioned or deployed environment's ``/healthz`` every
`HealthBoard.interval` seconds and keeps the last answer, so a page shows
health at once instead of waiting on a slow service. The URL is built from
the catalog (the environment's port) and the deploy target's bind address,
never from a release record, so the portal only ever probes where the
platform itself runs services.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import httpx

__all__ = ["HealthBoard", "Probe", "Target"]

logger = logging.getLogger(__name__)

Target = tuple[str, str]
"""(service, environment)."""


@dataclass(frozen=True)
class Probe:
    """The last answer of one environment's ``/healthz``."""

    state: Literal["up", "down", "unknown"]
    detail: str
    checked_at: datetime | None = None
    version: str | None = None
    """The commit the service reported running, when it said."""


NOT_CHECKED = Probe("unknown", "not checked yet")


class HealthBoard:
    """The latest probe of every environment, refreshed in the background."""

    def __init__(self, *, interval: float = 15.0, timeout: float = 2.0) -> None:
        self.interval = interval
        self._timeout = timeout
        self._probes: dict[Target, Probe] = {}

    def get(self, service: str, environment: str) -> Probe:
        """The last probe of one environment; "not checked yet" before the first."""
        return self._probes.get((service, environment), NOT_CHECKED)

    async def refresh(self, targets: Mapping[Target, str], client: httpx.AsyncClient) -> None:
        """Probe every target at once; targets no longer listed are forgotten."""
        keys = list(targets)
        answers = await asyncio.gather(*(self._probe(client, targets[k]) for k in keys))
        self._probes = dict(zip(keys, answers, strict=True))

    async def _probe(self, client: httpx.AsyncClient, url: str) -> Probe:
        now = datetime.now(UTC)
        try:
            response = await client.get(url, timeout=self._timeout)
        except httpx.HTTPError as e:
            return Probe("down", f"no answer from {url} ({type(e).__name__})", now)
        if response.status_code != 200:
            return Probe("down", f"HTTP {response.status_code} from {url}", now)
        version = None
        try:
            body = response.json()
            found = body.get("version") if isinstance(body, dict) else None
            version = str(found) if isinstance(found, str) else None
        except ValueError:
            pass
        return Probe("up", "answers /healthz", now, version)
