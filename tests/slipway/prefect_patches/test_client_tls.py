"""Prefect's API clients load the CA bundle once per process, not once per client."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY, temporary_settings

from slipway.prefect_patches import client_tls

API = "http://127.0.0.1:9/api"


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The arguments of every TLS context the real `ssl` builds; Prefect's clients as upstream."""
    calls: list[dict[str, Any]] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    for client in (PrefectClient, SyncPrefectClient):  # undoes `apply`, here and after
        upstream = getattr(client.__init__, "__wrapped__", client.__init__)
        monkeypatch.setattr(client, "__init__", upstream)
    return calls


def context_of(client: PrefectClient | SyncPrefectClient) -> ssl.SSLContext:
    """The TLS context the client's connections are made with."""
    context = client._client._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert isinstance(context, ssl.SSLContext)
    return context


def test_without_the_patch_every_client_loads_the_ca_bundle(built):
    for _ in range(3):
        PrefectClient(API)
        SyncPrefectClient(API)

    assert len(built) == 6
    assert all(call.get("cafile") for call in built)


def test_with_the_patch_clients_share_one_verified_context(built):
    assert client_tls.apply()
    assert client_tls.apply()  # a second call wraps nothing twice
    clients = [make(API) for _ in range(3) for make in (PrefectClient, SyncPrefectClient)]

    assert len(built) == 1 and built[0].get("cafile")
    shared = context_of(clients[0])
    assert all(context_of(c) is shared for c in clients)
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname


def test_clients_share_a_context_only_with_the_same_http2_setting(built):
    """httpcore sets a context's ALPN protocols on every connect, from its client's http2."""
    assert client_tls.apply()
    http1 = [PrefectClient(API, httpx_settings={"http2": False}) for _ in range(2)]
    http2 = [SyncPrefectClient(API, httpx_settings={"http2": True}) for _ in range(2)]

    assert len(built) == 2
    assert context_of(http1[0]) is context_of(http1[1])
    assert context_of(http2[0]) is context_of(http2[1])
    assert context_of(http1[0]) is not context_of(http2[0])


def test_a_client_with_its_own_verify_or_cert_shares_nothing(built):
    assert client_tls.apply()
    own = ssl.create_default_context()
    client = PrefectClient(API, httpx_settings={"verify": own})
    assert context_of(client) is own
    assert len(built) == 1  # `own`: Prefect built none for the client, nor did the patch

    # httpx loads a client's ``cert`` into its context: never into a shared one.
    assert client_tls._SharedContexts().verify({"cert": "client.pem"}) is None


def test_the_insecure_context_is_still_built_for_each_client(built):
    assert client_tls.apply()
    with temporary_settings({PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
        PrefectClient(API)
        SyncPrefectClient(API)

    assert built == [{}, {}]  # Prefect turns verification off on each: never a shared one


def test_a_primed_context_is_the_one_the_first_client_shares(built):
    """What a warm parent of flow runs does, so that its forks build none."""
    client_tls.prime()
    assert len(built) == 1
    clients = [PrefectClient(API), SyncPrefectClient(API)]

    assert len(built) == 1
    assert context_of(clients[0]) is context_of(clients[1])


def test_a_replaced_ca_file_is_read_again(built, tmp_path):
    import certifi
    from prefect.settings import PREFECT_API_SSL_CERT_FILE

    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    with temporary_settings({PREFECT_API_SSL_CERT_FILE: str(bundle)}):
        assert client_tls.apply()
        first = PrefectClient(API)
        assert context_of(PrefectClient(API)) is context_of(first)
        bundle.write_bytes(bundle.read_bytes() + b"\n")
        replaced = PrefectClient(API)

    assert [call.get("cafile") for call in built] == [str(bundle), str(bundle)]
    assert context_of(replaced) is not context_of(first)
