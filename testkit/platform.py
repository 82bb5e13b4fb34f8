"""A platform's configuration on a Prefect server, for a new data directory; free ports; waiting."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, urlsplit

from slipway.home import Ports, SlipwayHome

__all__ = ["Platform", "authenticated_url", "configure_platform", "free_port", "wait_for"]

T = TypeVar("T")


_HANDED_OUT: set[int] = set()
_LOWEST = 20000


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections and ``bind(0)``."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return 32768, 60999
    return int(low), int(high)


def free_port() -> int:
    """A loopback port nobody listens on now, that no outgoing connection will take.

    A port from ``bind(0)`` lies in the kernel's ephemeral range, which every
    outgoing connection draws from too: between the pick and the child's bind,
    a connection of the busy suite could take it ("address already in use").
    So the port is drawn below that range, at random, never twice in a process.
    """
    low, _ = _ephemeral_range()
    pool = range(_LOWEST, low) if low - _LOWEST >= 1000 else range(low - 1000, low)
    for _ in range(200):
        port = random.choice(pool)  # noqa: S311 -- spreading picks, not a secret
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {pool.start}-{pool.stop - 1}")


def authenticated_url(url: str, auth: str) -> str:
    """``url`` with ``auth`` (``user:password``) as its user info, so a plain request logs in.

    Prefect's client does the same with ``PREFECT_API_AUTH_STRING``.

    >>> authenticated_url("http://127.0.0.1:4200/api", "u:p")
    'http://u:p@127.0.0.1:4200/api'
    """
    user, _, password = auth.partition(":")
    parts = urlsplit(url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return parts._replace(netloc=netloc).geturl()


def wait_for(
    check: Callable[[], T | None],
    *,
    timeout: float = 60,
    what: str = "condition",
    poll: float = 0.1,
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


@dataclass(frozen=True)
class Platform:
    """A configured platform: its data directory and the ports its blocks name."""

    home: SlipwayHome
    ports: Ports


def configure_platform(root: Path) -> Platform:
    """Save the ``default`` document of every block for a new home under ``root``.

    Needs a Prefect server. The caller points ``SLIPWAY_HOME`` at ``home.root``
    where flows need it.
    """
    from blocks import ALL_BLOCKS, DEFAULT_DOCUMENT, S3Connection
    from blocks.webhook import ensure_webhook_secret
    from slipway.signing import ensure_signing_key

    home = SlipwayHome(root / ".slipway")
    home.ensure()
    ensure_signing_key(home)  # as `slipway up` makes it: flows sign their records with it
    # Every part on a port of its own: a flow must never reach another checkout's Prometheus.
    ports = Ports(**{name: free_port() for name in Ports().as_dict()})
    for block_type in ALL_BLOCKS:
        if block_type is not S3Connection:
            block_type.local_default(home, ports).save(DEFAULT_DOCUMENT, overwrite=True)
    ensure_webhook_secret()
    return Platform(home=home, ports=ports)
