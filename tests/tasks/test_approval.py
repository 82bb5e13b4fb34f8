"""Who may approve, and records nobody can forge: against a real git catalog and Prefect server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import BaseModel, SecretStr

from blocks import GitServer
from slipway.approver_tokens import ApproverTokens
from slipway.home import SlipwayHome
from slipway.signing import ensure_signing_key
from tasks.approval import ApprovalForm, ApprovalRequest, group_approvers, judge
from tasks.catalog import Catalog, CatalogEntry
from tasks.signed_records import publish_signed, read_verified
from tests.flows.approval_helpers import give_group


class Note(BaseModel):
    service: str
    outcome: str
    signature: str = ""


@pytest.fixture
def server(tmp_path) -> GitServer:
    return GitServer(provider="local", root=tmp_path / "git")


def _entry(owner: str) -> CatalogEntry:
    return CatalogEntry(name="pay", owner=owner, port=8100, repository="/srv/git/pay.git")


def test_the_approvers_are_those_of_the_owning_group_in_the_catalog(server) -> None:
    give_group("payments", members=("alice", "bob"), approvers=("alice",), server=server)
    Catalog(server).save(_entry("group:payments"), message="add pay")
    assert group_approvers(server, _entry("group:payments")) == {"alice"}
    assert group_approvers(server, _entry("group:default/payments")) == {"alice"}
    assert group_approvers(server, _entry("group:nobody")) == frozenset()
    assert group_approvers(server, _entry("user:alice")) == frozenset()


def _request(authors: frozenset[str] = frozenset()) -> ApprovalRequest:
    return ApprovalRequest(
        service="pay",
        environment="prod",
        kind="release",
        subject="a1b2c3d4e5f6",
        description="",
        approvers=frozenset({"alice", "bob"}),
        authors=authors,
    )


def test_an_answer_counts_only_from_an_approver_with_their_token_who_did_not_make_it(
    tmp_path,
) -> None:
    tokens = ApproverTokens(SlipwayHome(tmp_path / "home"))
    alice, bob, carol = (tokens.issue(n) for n in ("alice", "bob", "carol"))

    def answer(who: str, token: SecretStr) -> ApprovalForm:
        return ApprovalForm(approve=True, approver=who, token=token)

    request = _request(authors=frozenset({"Alice"}))
    assert "made or asked for" in str(judge(request, answer("alice", alice), tokens))
    assert "not an approver" in str(judge(request, answer("carol", carol), tokens))
    assert "not bob's approver token" in str(judge(request, answer("bob", alice), tokens))
    assert "names no approver" in str(judge(request, answer(" ", bob), tokens))
    assert judge(request, answer("bob", bob), tokens) is None


@pytest.fixture
def home(prefect_server: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlipwayHome]:
    home = SlipwayHome(tmp_path / "home")
    monkeypatch.setenv("SLIPWAY_HOME", str(home.root))
    yield home


def _artifact(api: str, key: str, rows: list[dict[str, str]]) -> str:
    """Write a table artifact the way any caller of Prefect's API can."""
    body = {"key": key, "type": "table", "data": json.dumps(rows), "description": "forged"}
    response = httpx.post(f"{api}/artifacts/", json=body, timeout=10)
    response.raise_for_status()
    return str(response.json()["id"])


def test_a_forged_or_edited_record_is_refused(prefect_server: str, home: SlipwayHome) -> None:
    ensure_signing_key(home)
    key = f"notes-{int(time.time() * 1000)}"
    genuine = publish_signed(Note(service="pay", outcome="succeeded"), key=key, description="")
    _artifact(prefect_server, key, [{"service": "pay", "outcome": "forged"}])
    _artifact(prefect_server, key, [{**genuine, "outcome": "edited"}])  # a signature of another row
    _artifact(
        prefect_server, key, [{"service": "pay", "outcome": "x", "signature": "hmac-sha256:0"}]
    )

    found = read_verified(key, Note)
    assert [n.outcome for n in found.records] == ["succeeded"]
    reasons = sorted(r.reason for r in found.refused)
    assert len(reasons) == 3
    assert "no signature" in reasons[0] and "forged or edited" in reasons[1]


def test_unsigned_history_from_before_the_key_stays_until_someone_edits_it(
    prefect_server: str, home: SlipwayHome
) -> None:
    key = f"legacy-{int(time.time() * 1000)}"
    old = _artifact(prefect_server, key, [{"service": "pay", "outcome": "succeeded"}])
    time.sleep(0.05)
    ensure_signing_key(home)  # the upgrade: records are signed from now on
    assert [n.outcome for n in read_verified(key, Note).records] == ["succeeded"]

    edited = {"data": json.dumps([{"service": "pay", "outcome": "edited"}])}
    httpx.patch(f"{prefect_server}/artifacts/{old}", json=edited, timeout=10).raise_for_status()
    found = read_verified(key, Note)
    assert found.records == [] and "after records were signed" in found.refused[0].reason
