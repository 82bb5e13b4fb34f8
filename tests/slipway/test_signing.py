"""The record key: signatures that match only the exact record, and the key's own file."""

from __future__ import annotations

import stat
from datetime import UTC, datetime

import pytest

from slipway.errors import ConfigurationError
from slipway.home import SlipwayHome
from slipway.signing import SigningKey, ensure_signing_key, load_signing_key

RECORD = {"service": "pay", "environment": "prod", "sha": "a" * 40, "outcome": "succeeded"}


def test_a_signature_matches_only_the_record_and_key_it_was_made_with() -> None:
    key = SigningKey(b"k" * 32, datetime.now(UTC))
    signature = key.sign(RECORD)
    assert signature.startswith("hmac-sha256:") and key.verify(dict(RECORD), signature)
    assert not key.verify({**RECORD, "outcome": "failed"}, signature)
    assert not key.verify({**RECORD, "extra": "x"}, signature)
    assert not SigningKey(b"o" * 32, key.created).verify(RECORD, signature)
    assert "kkkk" not in repr(key)


def test_the_key_is_made_once_private_and_read_back(tmp_path) -> None:
    home = SlipwayHome(tmp_path / "home")
    made, created = ensure_signing_key(home)
    again, created_again = ensure_signing_key(home)
    assert created and not created_again
    assert again == made == load_signing_key(home)
    assert stat.S_IMODE((home.keys / "release-signing.key").stat().st_mode) == 0o600


def test_a_host_without_the_key_is_told_to_copy_it(tmp_path) -> None:
    with pytest.raises(
        ConfigurationError, match=r"copy the server home.s keys/release-signing\.key"
    ):
        load_signing_key(SlipwayHome(tmp_path / "worker"))
