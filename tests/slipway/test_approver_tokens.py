"""Approvers' tokens: issued once, kept as hashes, checked for their holder alone."""

from __future__ import annotations

import stat

import pytest
from pydantic import SecretStr

from slipway.approver_tokens import ApproverTokens
from slipway.errors import InvalidRequest
from slipway.home import SlipwayHome


def test_a_token_counts_for_its_holder_only_and_is_never_kept(tmp_path) -> None:
    tokens = ApproverTokens(SlipwayHome(tmp_path / "home"))
    alice, bob = tokens.issue("alice"), tokens.issue("bob")
    assert tokens.verify("alice", alice) and tokens.verify("bob", bob)
    assert not tokens.verify("bob", alice) and not tokens.verify("carol", alice)
    assert not tokens.verify("alice", SecretStr(alice.get_secret_value() + "x"))
    stored = tmp_path / "home" / "keys" / "approvers.json"
    assert alice.get_secret_value() not in stored.read_text()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert [t.name for t in tokens.list()] == ["alice", "bob"]


def test_issuing_again_replaces_and_revoking_removes(tmp_path) -> None:
    tokens = ApproverTokens(SlipwayHome(tmp_path / "home"))
    old = tokens.issue("alice")
    new = tokens.issue("alice")
    assert not tokens.verify("alice", old) and tokens.verify("alice", new)
    assert tokens.revoke("alice") and not tokens.revoke("alice")
    assert not tokens.verify("alice", new)


@pytest.mark.parametrize("name", ["", "a b", "-alice", "alice/../x", "a" * 64])
def test_a_name_that_is_no_user_name_is_refused(tmp_path, name: str) -> None:
    with pytest.raises(InvalidRequest, match="is not a user name"):
        ApproverTokens(SlipwayHome(tmp_path / "home")).issue(name)
