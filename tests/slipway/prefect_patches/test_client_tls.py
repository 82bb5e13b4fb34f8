"""Prefect's API clients load the CA bundle once per process, not once per client."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from prefect.client import orchestration
from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY, temporary_settings

from slipway.prefect_patches import client_tls

API = "http://127.0.0.1:9/api"


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The arguments of every TLS context the real `ssl` builds; Prefect's `ssl` restored after."""
    calls: list[dict[str, Any]] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    monkeypatch.setattr(orchestration, "ssl", orchestration.ssl)  # undoes `apply`
    return calls


def test_without_the_patch_every_client_loads_the_ca_bundle(built):
    for _ in range(3):
        PrefectClient(API)
        SyncPrefectClient(API)

    assert len(built) == 6
    assert all(call.get("cafile") for call in built)


def test_with_the_patch_clients_share_one_verified_context(built):
    assert client_tls.apply()
    assert client_tls.apply()  # a second call wraps nothing twice
    for _ in range(3):
        PrefectClient(API)
        SyncPrefectClient(API)

    assert len(built) == 1
    shared = orchestration.ssl.create_default_context(cafile=built[0]["cafile"])
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname


def test_the_insecure_context_is_still_built_for_each_client(built):
    assert client_tls.apply()
    with temporary_settings({PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
        PrefectClient(API)
        SyncPrefectClient(API)

    assert built == [{}, {}]  # Prefect turns verification off on each: never a shared one
