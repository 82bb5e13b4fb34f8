"""Prefect's API clients share one verified TLS context instead of loading the CA bundle each.

Stands in for PrefectHQ/prefect#19106 (custom SSL contexts, to reuse one
across clients), open and unmerged as of Prefect 3.9.1.

Every ``PrefectClient`` and ``SyncPrefectClient`` builds a new
``ssl.create_default_context(cafile=certifi.where())``, whatever the API's
scheme: some 23 ms of CPU here, as OpenSSL 3 parses the whole CA bundle each
time (python/cpython#95031). Each ``Block.load`` and ``Variable.get`` makes
a client, so `slipway up` paid it dozens of times across its processes while
the platform started, on the same 2 cores as Prefect's server.

`apply` gives Prefect's client module an ``ssl`` whose
``create_default_context(cafile=...)`` returns the context it built for that
file before. Such a context is only read after it is built (httpx shares one
across a pool's connections), so sharing it changes nothing but the cost;
every other use of ``ssl`` there (the unverified context of
``PREFECT_API_TLS_INSECURE_SKIP_VERIFY``, which Prefect then changes) goes to
the real module. A CA file replaced on disk is read again by a new process.
"""

from __future__ import annotations

import ssl
import threading
from types import ModuleType
from typing import Any

from slipway.prefect_patches.base import Patch

__all__ = ["PATCH", "SYNC_PATCH", "apply"]

_UPSTREAM = "https://github.com/PrefectHQ/prefect/pull/19106"
PATCH = Patch(
    name="client-tls",
    module="prefect.client.orchestration",
    qualname="PrefectClient.__init__",
    upstream=_UPSTREAM,
    fingerprint="09884c986104a296",
)
SYNC_PATCH = Patch(
    name="client-tls-sync",
    module="prefect.client.orchestration",
    qualname="SyncPrefectClient.__init__",
    upstream=_UPSTREAM,
    fingerprint="e366dcbc0ac6866d",
)


class _SharedContexts(ModuleType):
    """The `ssl` module, but one verified context per CA file."""

    def __init__(self) -> None:
        super().__init__("ssl")
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)

    def create_default_context(self, *args: Any, **kwargs: Any) -> ssl.SSLContext:
        """Prefect's verified context (``cafile=`` alone), once per file; anything else as `ssl`'s."""
        cafile = kwargs.get("cafile")
        if args or set(kwargs) != {"cafile"} or not isinstance(cafile, str):
            return ssl.create_default_context(*args, **kwargs)
        with self._lock:
            if cafile not in self._contexts:
                self._contexts[cafile] = ssl.create_default_context(cafile=cafile)
            return self._contexts[cafile]


def apply() -> bool:
    """Share the verified context in this process (and its forks); safe to call twice.

    Returns whether it is in place (not when Prefect's clients changed since this was written).
    """
    from prefect.client import orchestration

    if isinstance(getattr(orchestration, "ssl", None), _SharedContexts):
        return True
    if not (PATCH.applicable() and SYNC_PATCH.applicable()):
        return False
    setattr(orchestration, "ssl", _SharedContexts())  # noqa: B010 - the module's own name
    return True
