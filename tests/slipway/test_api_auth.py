"""The Prefect API's auth string: its form, its file, and where clients find it."""

from __future__ import annotations

import stat

import pytest

from slipway.api_auth import (
    ApiAuth,
    client_api_auth,
    ensure_api_auth,
    read_api_auth,
)
from slipway.errors import ConfigurationError
from slipway.home import SlipwayHome


def test_a_generated_string_is_kept_0600_and_read_back_the_same(tmp_path) -> None:
    home = SlipwayHome(tmp_path / "home")
    assert read_api_auth(home) is None
    made, created = ensure_api_auth(home)
    again, created_again = ensure_api_auth(home)
    assert created and not created_again
    assert again.value.get_secret_value() == made.value.get_secret_value()
    path = home.keys / "prefect-api-auth"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert made.username == "slipway"
    made.require_strong("a test")  # generated ones are always strong enough


def test_the_string_never_shows_in_a_repr(tmp_path) -> None:
    auth = ApiAuth.parse("ops:correct-horse-battery-staple-42")
    assert "correct-horse" not in repr(auth) and "correct-horse" not in str(auth)
    assert auth.httpx()._auth_header.startswith("Basic ")


@pytest.mark.parametrize("raw", ["", "nocolon", ":password", "user:", "us er:pw", "u:p w"])
def test_anything_but_user_colon_password_is_refused(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="USER:PASSWORD"):
        ApiAuth.parse(raw)


def test_a_short_password_may_not_face_a_network() -> None:
    with pytest.raises(ConfigurationError, match="at least 24 characters"):
        ApiAuth.parse("slipway:short").require_strong("a public server")


def test_a_client_takes_the_homes_file_first_then_the_variable(tmp_path) -> None:
    home = SlipwayHome(tmp_path / "worker")
    assert client_api_auth(home, {}) is None
    variable = {"PREFECT_API_AUTH_STRING": "slipway:from-the-environment"}
    found = client_api_auth(home, variable)
    assert found is not None and found.value.get_secret_value() == "slipway:from-the-environment"
    made, _ = ensure_api_auth(home)
    found = client_api_auth(home, variable)
    assert found is not None
    assert found.value.get_secret_value() == made.value.get_secret_value()


def test_an_unreadable_file_is_refused_with_the_fix(tmp_path) -> None:
    home = SlipwayHome(tmp_path / "home")
    home.keys.mkdir(parents=True)
    (home.keys / "prefect-api-auth").write_text("no colon here\n")
    with pytest.raises(ConfigurationError, match="slipway up` generates one"):
        read_api_auth(home)
