"""Resend webhook deliveries that the post-receive hook could not hand over.

`slipway up` calls `redeliver` once the bridge is healthy. A delivery keeps
its original id, so one that did reach Prefect before is not doubled.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["Redelivery", "redeliver"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Redelivery:
    """What one pass over the spool did."""

    sent: int
    """Deliveries the bridge accepted; removed from the spool."""
    rejected: int
    """Deliveries the bridge refused (4xx); moved to ``rejected/`` for a person to look at."""
    kept: int
    """Deliveries that still could not be sent; left for the next pass."""


def redeliver(spool: Path, bridge_url: str, *, timeout: float = 5.0) -> Redelivery:
    """Send every spooled delivery to the bridge as it is now, oldest first.

    The bridge may have moved since the push was spooled, so the recorded URL
    is not used.
    """
    sent = rejected = kept = 0
    files = sorted(spool.glob("*.json"), key=lambda p: p.stat().st_mtime) if spool.is_dir() else []
    for path in files:
        delivery = json.loads(path.read_text())
        try:
            response = httpx.post(
                bridge_url,
                content=delivery["body"].encode(),
                headers=delivery["headers"],
                timeout=timeout,
            )
        except httpx.HTTPError as e:
            logger.warning("could not redeliver %s: %s", path.name, type(e).__name__)
            kept += 1
            continue
        if response.is_success:
            path.unlink()
            sent += 1
        elif response.status_code < 500:
            (spool / "rejected").mkdir(exist_ok=True)
            path.replace(spool / "rejected" / path.name)
            logger.warning("the bridge refused %s (%d)", path.name, response.status_code)
            rejected += 1
        else:
            kept += 1
    return Redelivery(sent, rejected, kept)
