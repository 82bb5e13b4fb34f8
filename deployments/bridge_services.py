"""What the bridge asks of the rest of the platform: which services exist, whether it is up.

Both answer from memory most of the time, because the bridge asks on every
push and a burst brings hundreds a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from slipway.home import SlipwayHome

__all__ = ["KNOWN_SERVICE_SECONDS", "Catalogued", "platform_ready"]

KNOWN_SERVICE_SECONDS = 2.0
"""How long a service seen in the catalog counts as known without a new look."""


class Catalogued:
    """Known services: the names in the service catalog.

    A name seen in the catalog within `KNOWN_SERVICE_SECONDS` is known without
    touching git (`known_now`), so a burst of pushes costs no catalog reads.
    Any other name makes it look again (the catalog's names are re-read only
    when its branch moved), so a service onboarded a moment ago is known at
    its first push, and one removed stops being known within that time.
    """

    def __init__(self, server: Any) -> None:
        from tasks.catalog import Catalog

        self._catalog = Catalog(server)
        self._lock = threading.Lock()
        self._tip: str | None = None
        self._names: frozenset[str] = frozenset()
        self._looked = float("-inf")

    def known_now(self, name: str) -> bool:
        """Whether ``name`` was in the catalog at a look within `KNOWN_SERVICE_SECONDS`; never blocks."""
        return name in self._names and time.monotonic() - self._looked < KNOWN_SERVICE_SECONDS

    def __call__(self, name: str) -> bool:
        """Whether ``name`` is in the catalog, looking at git when memory cannot say."""
        with self._lock:
            if self.known_now(name):
                return True
            now, current = time.monotonic(), self._catalog.tip()
            if current != self._tip:
                self._tip, self._names = current, self._catalog.names()
            self._looked = now
            return name in self._names


def platform_ready(home: SlipwayHome, *, every: float = 1.0) -> Callable[[], bool]:
    """Whether `slipway up` has registered the deployments and their triggers, read at most ``every`` s.

    Until then a push's event would find no trigger and start nothing, so the
    forwarder holds it (the bridge still accepts it). Without a running `up`
    (the bridge started by hand) there is nothing to wait for.
    """
    from deployments.state import read_state

    seen: list[float | bool] = [float("-inf"), False]

    def ready() -> bool:
        now = time.monotonic()
        if now - float(seen[0]) >= every:
            state = read_state(home)
            seen[:] = [now, state is None or state.ready_seconds is not None]
        return bool(seen[1])

    return ready
