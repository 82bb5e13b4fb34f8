"""What the bridge asks of the platform: which services exist, is it up, which branches preview.

Each answers from memory most of the time, because the bridge asks on every
push and a burst brings hundreds a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from slipway.home import SlipwayHome
from slipway.previews import PreviewPolicy

__all__ = [
    "KNOWN_SERVICE_SECONDS",
    "PREVIEW_POLICY_SECONDS",
    "Catalogued",
    "PreviewBranches",
    "platform_ready",
]

logger = logging.getLogger("deployments.bridge")

KNOWN_SERVICE_SECONDS = 2.0
"""How long a service seen in the catalog counts as known without a new look."""
PREVIEW_POLICY_SECONDS = 10.0
"""How long the preview policy read from the platform block is used before it is read again."""


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


class PreviewBranches:
    """Whether a pushed branch gets a preview: the platform block's policy, re-read now and then.

    The policy is read at most every `PREVIEW_POLICY_SECONDS`, so an edit in
    the UI reaches the bridge within that time. When it cannot be read the
    last one read stays in force; before any was read, a branch is let
    through and the provisioning flow, which checks the policy itself, decides.
    """

    def __init__(self, load: Callable[[], PreviewPolicy], *, every: float = PREVIEW_POLICY_SECONDS):
        self._load = load
        self._every = every
        self._lock = threading.Lock()
        self._policy: PreviewPolicy | None = None
        self._read = float("-inf")

    def __call__(self, branch: str) -> bool:
        """Whether ``branch`` may have a preview environment; may read the block (blocks)."""
        with self._lock:
            now = time.monotonic()
            if now - self._read >= self._every:
                self._read = now
                try:
                    self._policy = self._load()
                except Exception as e:
                    logger.warning("the preview policy could not be read, keeping the last: %s", e)
            return self._policy is None or self._policy.allows(branch)


def platform_ready(home: SlipwayHome, *, every: float = 1.0) -> Callable[[], bool]:
    """Whether `slipway up` has registered the deployments and their triggers, read at most ``every`` s.

    Until then a push's event would find no trigger and start nothing, so the
    forwarder holds it (the bridge still accepts it). `up` reports ready
    before registration ends (`deployments.startup`), so this reads the
    registration record, not the ready time. Without a running `up` (the
    bridge started by hand) there is nothing to wait for.
    """
    from deployments.startup import read_registration
    from deployments.state import read_state

    seen: list[float | bool] = [float("-inf"), False]

    def ready() -> bool:
        now = time.monotonic()
        if now - float(seen[0]) >= every:
            state = read_state(home)
            registration = None if state is None else read_registration(home, state.marker)
            registered = registration is not None and registration.state == "registered"
            seen[:] = [now, state is None or state.role == "worker" or registered]
        return bool(seen[1])

    return ready
