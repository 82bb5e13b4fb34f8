"""Prefect's API clients share one verified TLS context instead of loading the CA bundle each.

Stands in for PrefectHQ/prefect#19106 (custom SSL contexts, to reuse one
across clients), open and unmerged as of Prefect 3.9.1.

Every ``PrefectClient`` and ``SyncPrefectClient`` builds a new
``ssl.create_default_context(cafile=certifi.where())``, whatever the API's
scheme: some 23 ms of CPU here, as OpenSSL 3 parses the whole CA bundle each
time (python/cpython#95031). Each ``Block.load`` and ``Variable.get`` makes
a client, so `slipway up` paid it dozens of times across its processes while
the platform started, on the same 2 cores as Prefect's server.

`apply` wraps both clients' ``__init__``: a client given no ``verify`` or
``cert`` of its own gets, as its ``verify``, the context built before for
the same CA file (Prefect's own choice of it) and the same HTTP/2 setting;
Prefect then builds none. A shared context is not only read: httpcore sets
its ALPN protocols on every connect (``http/1.1``, plus ``h2`` when the
client has HTTP/2 on), as httpx shares one context across a pool's
connections anyway. Clients that share one therefore always set the same
protocols, and a client with its own ``cert`` (which httpx loads into the
context) or ``verify`` never shares. The unverified context of
``PREFECT_API_TLS_INSECURE_SKIP_VERIFY`` stays Prefect's, one per client.
A CA file replaced on disk (another inode, size or modification time) is
read again.

`prime` builds the default context ahead, in a warm parent that forks flow
runs, so the runs start with it.
"""

from __future__ import annotations

import functools
import ssl
import threading
from collections.abc import Callable
from typing import Any

from slipway.prefect_patches.base import Patch, file_stamp

__all__ = ["PATCH", "SYNC_PATCH", "apply", "prime"]

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


_MARK = "_slipway_shares_tls"
"""Set on a client's ``__init__`` that `apply` wrapped."""


class _SharedContexts:
    """One verified context per CA file and HTTP/2 setting."""

    def __init__(self) -> None:
        self._contexts: dict[tuple[str, object, bool], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def verify(self, httpx_settings: dict[str, Any]) -> ssl.SSLContext | None:
        """The context a client with these settings shares, or None when it must build its own."""
        from prefect.settings import (
            PREFECT_API_ENABLE_HTTP2,
            PREFECT_API_SSL_CERT_FILE,
            PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
        )

        own = {"verify", "cert"} & httpx_settings.keys()
        if own or PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value():
            return None
        import certifi

        cafile = PREFECT_API_SSL_CERT_FILE.value() or certifi.where()  # as Prefect chooses it
        http2 = bool(httpx_settings.get("http2", PREFECT_API_ENABLE_HTTP2.value()))
        key = (cafile, file_stamp(cafile), http2)  # a missing file: ssl says so, as upstream
        with self._lock:
            if key not in self._contexts:
                self._contexts[key] = ssl.create_default_context(cafile=cafile)
            return self._contexts[key]


_CONTEXTS = _SharedContexts()


def _sharing(init: Callable[..., None], contexts: _SharedContexts) -> Callable[..., None]:
    @functools.wraps(init)
    def init_sharing(
        self: object, *args: Any, httpx_settings: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        settings = dict(httpx_settings or {})
        shared = contexts.verify(settings)
        if shared is not None:
            settings["verify"] = shared
        init(self, *args, httpx_settings=settings, **kwargs)

    setattr(init_sharing, _MARK, True)
    return init_sharing


def apply() -> bool:
    """Share the verified contexts in this process (and its forks); safe to call twice.

    Returns whether it is in place (not when Prefect's clients changed since this was written).
    """
    from prefect.client.orchestration import PrefectClient, SyncPrefectClient

    classes = (PrefectClient, SyncPrefectClient)
    if all(getattr(c.__init__, _MARK, False) for c in classes):
        return True
    if not (PATCH.applicable() and SYNC_PATCH.applicable()):
        return False
    global _CONTEXTS
    _CONTEXTS = _SharedContexts()
    for client in classes:
        setattr(client, "__init__", _sharing(client.__init__, _CONTEXTS))  # noqa: B010
    return True


def prime() -> None:
    """Build the context a client with Prefect's default settings shares, ahead of the first."""
    if apply():
        _CONTEXTS.verify({})
