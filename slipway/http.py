"""One HTTP client per process and kind, for the platform's own short requests.

``httpx.get`` and friends build a client for every call, and each new
client loads the CA bundle: some 20 ms of CPU (40 ms on a busy 2-core host).
A release analysis queries Prometheus a few times a second for minutes, a
release probes ``/healthz`` every 50 ms: they share one pooled client per
process instead, which also keeps its connections open.
"""

from __future__ import annotations

import functools

import httpx

__all__ = ["shared_client"]


@functools.cache
def shared_client(*, trust_env: bool = True) -> httpx.Client:
    """This process's client; timeouts and auth are given per request.

    Args:
        trust_env: Read proxies and CA settings from the environment, as
            ``httpx.get`` does; probes of the deploy target's loopback ports
            say False, so that no proxy stands between them and the service.
    """
    return httpx.Client(trust_env=trust_env)
