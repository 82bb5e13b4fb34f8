"""What every child of `slipway up` finds in its environment about talking to Prefect."""

from __future__ import annotations

import pytest

from deployments.components import child_env
from slipway.api_auth import ApiAuth
from slipway.home import Ports, SlipwayHome

_CLIENT_CSRF = "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED"


def _env(tmp_path, *, api_url: str | None = None) -> dict[str, str]:
    auth = ApiAuth.parse("slipway:not-a-real-password")
    return child_env(SlipwayHome(tmp_path), Ports(), "marker", auth=auth, api_url=api_url)


@pytest.fixture(autouse=True)
def _no_csrf_settings(monkeypatch):
    for name in (
        _CLIENT_CSRF,
        "PREFECT_SERVER_CSRF_PROTECTION_ENABLED",
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED",
    ):
        monkeypatch.delenv(name, raising=False)


def test_clients_of_our_own_unprotected_server_ask_for_no_csrf_token(tmp_path):
    assert _env(tmp_path)[_CLIENT_CSRF] == "false"
    assert _env(tmp_path, api_url=Ports().prefect_api_url)[_CLIENT_CSRF] == "false"


@pytest.mark.parametrize(
    "name", ["PREFECT_SERVER_CSRF_PROTECTION_ENABLED", "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"]
)
def test_a_server_with_csrf_protection_keeps_prefects_client(tmp_path, monkeypatch, name):
    monkeypatch.setenv(name, "true")
    assert _CLIENT_CSRF not in _env(tmp_path)


def test_a_remote_server_and_the_operators_choice_keep_their_setting(tmp_path, monkeypatch):
    assert _CLIENT_CSRF not in _env(tmp_path, api_url="http://127.0.0.1:4999/api")
    monkeypatch.setenv(_CLIENT_CSRF, "true")
    assert _env(tmp_path)[_CLIENT_CSRF] == "true"
