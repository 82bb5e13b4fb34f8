"""Hand the git hook's spooled deliveries to the bridge as soon as it takes them.

The post-receive hook (`deployments.post_receive`) spools a delivery when
the bridge does not answer. The bridge drains the spool itself, at start and
every few seconds after (`drain`), so a push made while the bridge was down
is queued once it is back, without a restart of the platform. A delivery
keeps its id and body, so one that did reach the bridge before is answered
"duplicate" and counted as sent.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Deliver", "Redelivery", "drain"]

logger = logging.getLogger(__name__)

Deliver = Callable[[dict[str, str], bytes], Awaitable[int]]
"""Hands one delivery (headers, body) to the bridge; returns the HTTP status it answered."""


@dataclass(frozen=True)
class Redelivery:
    """What one pass over the spool did."""

    sent: int
    """Deliveries the bridge took (2xx, a duplicate included); removed from the spool."""
    rejected: int
    """Deliveries the bridge refused (4xx); moved to ``rejected/`` for a person to look at."""
    kept: int
    """Deliveries that still could not be handed over (5xx, unreadable, or an error in the
    hand-over); left for the next pass."""


async def drain(spool: Path, deliver: Deliver) -> Redelivery:
    """Hand over every spooled delivery, oldest first; stop at the first one the bridge cannot take.

    Oldest first keeps a branch's pushes in order; stopping at a 5xx keeps
    a later push from overtaking an earlier one that must wait. A delivery
    whose hand-over raises (a bug, or a policy that cannot be read) is one
    push's trouble, not the bridge's: it is logged with its id and kept for
    the next pass, and the others go on. A file leaves the spool only when
    the bridge took it or refused it (set aside in ``rejected/``).
    """
    sent = rejected = failed = 0
    files = sorted(spool.glob("*.json"), key=_age) if spool.is_dir() else []
    for i, path in enumerate(files):
        try:
            delivery = json.loads(path.read_text())
            headers, body = dict(delivery["headers"]), str(delivery["body"]).encode()
        except FileNotFoundError:
            continue  # another pass took it
        except OSError as e:
            logger.error("spooled %s cannot be read now (%s); kept for the next pass", path.name, e)
            failed += 1
            continue
        except (ValueError, KeyError, TypeError) as e:
            logger.warning("spooled %s cannot be read (%s); set aside", path.name, e)
            _set_aside(spool, path)
            rejected += 1
            continue
        try:
            status = await deliver(headers, body)
        except Exception:
            logger.exception(
                "spooled push %s could not be handed to the bridge; kept for the next pass",
                headers.get("X-GitHub-Delivery", path.stem),
            )
            failed += 1
            continue
        if 200 <= status < 300:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            sent += 1
        elif status < 500:
            _set_aside(spool, path)
            logger.warning("the bridge refused spooled %s (%d); set aside", path.name, status)
            rejected += 1
        else:
            return Redelivery(sent, rejected, failed + len(files) - i)
    return Redelivery(sent, rejected, failed)


def _age(path: Path) -> tuple[float, str]:
    try:
        return path.stat().st_mtime, path.name
    except FileNotFoundError:
        return float("inf"), path.name


def _set_aside(spool: Path, path: Path) -> None:
    (spool / "rejected").mkdir(exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.replace(spool / "rejected" / path.name)
