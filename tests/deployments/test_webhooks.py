"""Provider rules on their own: signatures, event kinds, delivery ids, push payloads."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from deployments.bridge_services import PreviewBranches
from deployments.webhooks import (
    Provider,
    delivery_id,
    delivery_key,
    event_id,
    event_kind,
    parse_push,
    push_event,
    signature_present,
    signature_valid,
)
from slipway.errors import InvalidRequest
from slipway.previews import PreviewPolicy

# GitHub's published test vector for X-Hub-Signature-256.
GH_SECRET = "It's a Secret to Everybody"
GH_BODY = b"Hello, World!"
GH_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_githubs_published_test_vector_verifies():
    headers = {"X-Hub-Signature-256": GH_SIGNATURE}
    assert signature_valid(Provider.GITHUB, headers, GH_BODY, GH_SECRET)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature-256": GH_SIGNATURE.replace("757", "758")},
        {"X-Hub-Signature-256": GH_SIGNATURE.removeprefix("sha256=")},
        {"X-Hub-Signature-256": "sha1=" + GH_SIGNATURE[7:]},
    ],
)
def test_missing_or_bad_github_signatures_fail(headers):
    assert not signature_valid(Provider.GITHUB, headers, GH_BODY, GH_SECRET)


def test_github_signature_does_not_verify_another_body():
    headers = {"X-Hub-Signature-256": GH_SIGNATURE}
    assert not signature_valid(Provider.GITHUB, headers, GH_BODY + b" ", GH_SECRET)


def test_gitea_signs_with_bare_hex_and_gitlab_sends_the_token():
    bare = hmac.new(b"s3", b"{}", hashlib.sha256).hexdigest()
    assert signature_valid(Provider.GITEA, {"X-Gitea-Signature": bare}, b"{}", "s3")
    assert not signature_valid(Provider.GITEA, {"X-Gitea-Signature": bare}, b"{} ", "s3")
    assert signature_valid(Provider.GITLAB, {"X-Gitlab-Token": "s3"}, b"{}", "s3")
    assert not signature_valid(Provider.GITLAB, {"X-Gitlab-Token": "s4"}, b"{}", "s3")
    assert not signature_valid(Provider.GITLAB, {}, b"{}", "s3")


def test_event_kinds_and_delivery_ids_per_provider():
    assert event_kind(Provider.GITHUB, {"X-GitHub-Event": "push"}) == "push"
    assert event_kind(Provider.GITEA, {"X-Gitea-Event": "ping"}) == "ping"
    assert event_kind(Provider.GITLAB, {"X-Gitlab-Event": "Push Hook"}) == "push"
    assert event_kind(Provider.GITLAB, {"X-Gitlab-Event": "Issue Hook"}) == "Issue Hook"
    assert delivery_id(Provider.GITHUB, {"X-GitHub-Delivery": "d-1"}, b"") == "d-1"
    assert delivery_id(Provider.GITLAB, {"X-Gitlab-Event-UUID": "u-1"}, b"") == "u-1"
    assert delivery_id(Provider.GITLAB, {}, b"x").startswith("sha256:")


def test_a_redelivery_gets_the_same_key_and_providers_do_not_collide():
    key = delivery_key(Provider.GITHUB, "d-1", b"{}")
    assert key == delivery_key(Provider.GITHUB, "d-1", b"{}")
    assert event_id(key) == event_id(delivery_key(Provider.GITHUB, "d-1", b"{}"))
    assert key != delivery_key(Provider.GITHUB, "d-2", b"{}")
    assert key != delivery_key(Provider.GITLAB, "d-1", b"{}")


def test_a_delivery_id_alone_cannot_make_another_push_a_duplicate():
    # The id header is not signed: an old body sent under a future push's id
    # must not make that push a duplicate when it comes.
    genuine = delivery_key(Provider.GITHUB, "d-1", b'{"after": "b"}')
    assert genuine != delivery_key(Provider.GITHUB, "d-1", b'{"after": "a"}')


def test_a_signature_header_is_looked_for_before_the_body_is_read():
    assert signature_present(Provider.GITHUB, {"X-Hub-Signature-256": "sha256=00"})
    assert not signature_present(Provider.GITHUB, {"X-Gitea-Signature": "00"})
    assert signature_present(Provider.GITEA, {"X-Gitea-Signature": "00"})
    assert signature_present(Provider.GITLAB, {"X-Gitlab-Token": "t"})
    assert not signature_present(Provider.GITLAB, {"X-Gitlab-Token": ""})


def _github_push(**overrides):
    payload = {
        "ref": "refs/heads/main",
        "before": "a" * 40,
        "after": "b" * 40,
        "repository": {"name": "payments", "full_name": "acme/payments"},
        "pusher": {"name": "ada"},
        "commits": [
            {"added": ["docs/new.md"], "modified": ["app/x.py"], "removed": []},
            {"added": [], "modified": ["app/x.py"], "removed": ["old.txt"]},
        ],
    }
    payload.update(overrides)
    return json.dumps(payload).encode()


def test_github_push_is_read_with_changed_paths_once_each():
    push = parse_push(Provider.GITHUB, _github_push())
    assert (push.repository, push.branch, push.after, push.pusher) == (
        "payments",
        "main",
        "b" * 40,
        "ada",
    )
    assert push.changed_paths == ("app/x.py", "docs/new.md", "old.txt")
    assert not push.deleted


def test_deleted_branch_and_tag_pushes_are_recognised():
    deleted = parse_push(Provider.GITHUB, _github_push(after="0" * 40, deleted=True))
    assert deleted.deleted
    tag = parse_push(Provider.GITHUB, _github_push(ref="refs/tags/v1"))
    assert tag.branch is None


def test_gitlab_push_is_read():
    body = json.dumps(
        {
            "ref": "refs/heads/feature/x",
            "before": "a" * 40,
            "after": "0" * 40,
            "project": {"name": "Payments", "path": "payments"},
            "user_username": "ada",
            "commits": [],
        }
    ).encode()
    push = parse_push(Provider.GITLAB, body)
    assert (push.repository, push.branch, push.pusher, push.deleted) == (
        "payments",
        "feature/x",
        "ada",
        True,
    )


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"ref": "refs/heads/main"}', b"null", b"[" * 100_000 + b"]" * 100_000],
    ids=["not-json", "list", "no-after", "null", "nested-too-deep"],
)
def test_malformed_push_payloads_are_refused(body):
    with pytest.raises(InvalidRequest, match="not a github push payload"):
        parse_push(Provider.GITHUB, body)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ref", "refs/heads/-x"),
        ("ref", "refs/heads/a..b"),
        ("ref", "refs/heads/fix.lock"),
        ("ref", "refs/heads/___"),
        ("ref", "refs/heads/x y"),
        ("ref", "refs/heads/$(id)"),
        ("ref", "refs/heads/--upload-pack=x"),
        ("ref", "refs/heads/a;rm -rf ~"),
        ("after", "not-a-sha"),
        ("before", "--upload-pack=x"),
    ],
)
def test_a_push_naming_a_ref_or_commit_git_would_refuse_is_refused(field, value):
    with pytest.raises(InvalidRequest, match="is not"):
        parse_push(Provider.GITHUB, _github_push(**{field: value}))


def test_the_push_time_is_read_when_the_sender_gives_it():
    repository = {"name": "payments", "pushed_at": 1700000000}
    assert parse_push(Provider.GITHUB, _github_push(repository=repository)).pushed_at == 1.7e9
    assert parse_push(Provider.GITHUB, _github_push()).pushed_at is None


def test_push_event_labels_say_what_triggers_filter_on():
    push = parse_push(Provider.GITHUB, _github_push())
    event = push_event(Provider.GITHUB, "k-1", "d-1", push, default_branch="main")
    assert event["event"] == "slipway.git.push"
    assert event["id"] == str(event_id("k-1"))
    assert event["payload"]["delivery"] == "d-1"
    resource = event["resource"]
    assert resource["prefect.resource.id"] == "slipway.service.payments"
    assert resource["slipway.git.default-branch"] == "true"
    assert resource["slipway.git.docs-changed"] == "true"
    assert event["payload"]["after"] == "b" * 40
    other = parse_push(Provider.GITHUB, _github_push(ref="refs/heads/dev", commits=[]))
    labels = push_event(Provider.GITHUB, "k-2", "d-2", other, default_branch="main")["resource"]
    assert labels["slipway.git.default-branch"] == "false"
    assert labels["slipway.git.docs-changed"] == "false"


def test_a_branch_the_preview_policy_does_not_allow_names_no_preview():
    push = parse_push(Provider.GITHUB, _github_push(ref="refs/heads/wip/try"))
    allowed = push_event(Provider.GITHUB, "k", "d", push, default_branch="main")
    refused = push_event(
        Provider.GITHUB, "k", "d", push, default_branch="main", preview_allowed=False
    )
    assert allowed["payload"]["preview_environment"] == "preview-wip-try"
    assert allowed["resource"]["slipway.git.preview"] == "true"
    assert refused["payload"]["preview_environment"] == ""
    assert refused["resource"]["slipway.git.preview"] == "false"


def test_the_bridge_rereads_the_preview_policy_and_keeps_the_last_when_it_cannot():
    policies = [PreviewPolicy(("feature/*",), 3), RuntimeError("Prefect is down")]

    def load() -> PreviewPolicy:
        found = policies[0]
        if isinstance(found, Exception):
            raise found
        return found

    branches = PreviewBranches(load, every=0.0)
    assert branches("feature/x") and not branches("wip")
    policies[0] = policies.pop()  # the next read fails: the last policy stays in force
    assert branches("feature/x") and not branches("wip")
    assert PreviewBranches(load, every=60.0)("wip")  # never read: the flow decides
