"""One HTTP client per process and kind, for the platform's own short requests.

``httpx.get`` and friends build a client for every call, and each new
client loads the CA bundle: some 20 ms of CPU (40 ms on a busy 2-core host).
`slipway up` probes its components ten times a second while they start, a
release probes ``/healthz`` every 50 ms and its analysis queries Prometheus
for minutes: they share one pooled client per process instead, which also
keeps its connections open. A forked child makes its own, as the parent's
connections are not its own.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = ["shared_client"]


def shared_client(*, trust_env: bool = True) -> httpx.Client:
    """This process's client; timeouts and auth are given per request.

    Args:
        trust_env: Read proxies and CA settings from the environment, as
            ``httpx.get`` does; probes of the deploy target's loopback ports
            say False, so that no proxy stands between them and the service.
    """
    return _client_of(os.getpid(), trust_env=trust_env)


@functools.cache
def _client_of(pid: int, *, trust_env: bool) -> httpx.Client:
    import httpx  # not at import: `up` imports the kernel before it needs a client

    return httpx.Client(trust_env=trust_env)
