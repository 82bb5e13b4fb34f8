"""Provider rules on their own: signatures, event kinds, delivery ids, push payloads."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from deployments.bridge import push_event
from deployments.webhooks import (
    Provider,
    delivery_id,
    event_id,
    event_kind,
    parse_push,
    signature_valid,
)
from slipway.errors import InvalidRequest

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


def test_a_redelivery_gets_the_same_event_id_and_providers_do_not_collide():
    assert event_id(Provider.GITHUB, "d-1") == event_id(Provider.GITHUB, "d-1")
    assert event_id(Provider.GITHUB, "d-1") != event_id(Provider.GITHUB, "d-2")
    assert event_id(Provider.GITHUB, "d-1") != event_id(Provider.GITLAB, "d-1")


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


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"ref": "refs/heads/main"}', b"null"])
def test_malformed_push_payloads_are_refused(body):
    with pytest.raises(InvalidRequest, match="not a github push payload"):
        parse_push(Provider.GITHUB, body)


def test_push_event_labels_say_what_triggers_filter_on():
    push = parse_push(Provider.GITHUB, _github_push())
    event = push_event(Provider.GITHUB, "d-1", push, default_branch="main")
    assert event["event"] == "slipway.git.push"
    assert event["id"] == str(event_id(Provider.GITHUB, "d-1"))
    resource = event["resource"]
    assert resource["prefect.resource.id"] == "slipway.service.payments"
    assert resource["slipway.git.default-branch"] == "true"
    assert resource["slipway.git.docs-changed"] == "true"
    assert event["payload"]["after"] == "b" * 40
    other = parse_push(Provider.GITHUB, _github_push(ref="refs/heads/dev", commits=[]))
    labels = push_event(Provider.GITHUB, "d-2", other, default_branch="main")["resource"]
    assert labels["slipway.git.default-branch"] == "false"
    assert labels["slipway.git.docs-changed"] == "false"
